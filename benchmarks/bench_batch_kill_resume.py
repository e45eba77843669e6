"""A large Batch API night killed at several points and resumed, next to the same night
run through once (issue 26, goal 5: resumable after a kill at any point).

The same `--records` distinct sample tickets (JSONL) go through the `extract_records`
flow itself with `RunOptions(via="batch")` and a record ledger of their own, in a fresh
child process per run (`bench_batch_million.py`'s child: a Prefect test API, the
simulator's batches time-scaled to `--batch-s` seconds). First the night runs through
once, the reference. Then, for each kill point (a share of the reference's wall time,
counted from the end of the process's start-up, so the kills land in every phase:
reading the source, uploading, waiting, collecting, settling, writing out), a fresh
night is started, its process group is killed with
SIGKILL at that moment, and the same command is run again on the same folder: it
resumes from the record ledger and the run's batch ledger.

Figures per kill point, next to the reference from the same run: every record once
(records in = rows out, one row per input line, no key twice), batch lines the
simulator answered and batches it created (a resumed night must not pay a line twice:
ratio 1.000), online requests, and files left in the account's storage.

Run: python benchmarks/bench_batch_kill_resume.py [--records 50000]
     [--kill-at 0.05,0.3,0.6,0.9] [--batch-s 2] [--poll-s 0.5]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import child_figures, verdict
from bench_batch_million import every_record_once, write_source

from prefect_openai_chat.simulator import Simulator

HERE = Path(__file__).resolve().parent


def night_command(source: Path, sim: Simulator, work: Path, poll_s: float) -> list[str]:
    """The child night of `bench_batch_million.py` over `source`, writing into `work`."""
    script = str(HERE / "bench_batch_million.py")
    return [sys.executable, script, "--child", str(source), sim.base_url, sim.api_key,
            str(work), str(poll_s)]  # fmt: skip


def paid(sim: Simulator) -> tuple[int, int, int, int]:
    """(batch lines answered, batches created, online requests, files stored) so far."""
    stats = sim.stats()
    return stats.batch_requests, stats.batches_created, stats.requests, stats.files_stored


def run_night(
    source: Path, sim: Simulator, work: Path, poll_s: float, kill_after_s: float | None
) -> tuple[dict[str, float], float]:
    """One night (killed after `kill_after_s` and run again, when given); its figures and
    the seconds the first process ran (the whole run's, when not killed)."""
    work.mkdir()
    command = night_command(source, sim, work, poll_s)
    env = {**os.environ, "PREFECT_LOGGING_LEVEL": "WARNING"}
    ran = 0.0
    if kill_after_s is not None:
        started = time.perf_counter()
        first = subprocess.Popen(
            command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        try:
            first.wait(timeout=kill_after_s)
        except subprocess.TimeoutExpired:
            os.killpg(first.pid, signal.SIGKILL)  # the night and its Prefect test server
            first.wait()
        ran = time.perf_counter() - started
    started = time.perf_counter()
    figures = child_figures(command, f"the night in {work.name}", env=env)
    return figures, ran or time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--records", type=int, default=50_000)
    parser.add_argument("--kill-at", default="0.05,0.3,0.6,0.9")
    parser.add_argument("--batch-s", type=float, default=2.0, help="seconds a batch takes")
    parser.add_argument("--poll-s", type=float, default=0.5, help="poll_interval_s")
    args = parser.parse_args()
    shares = [float(share) for share in args.kill_at.split(",")]
    print(f"load average before: {os.getloadavg()}", flush=True)
    ok = True
    with (
        tempfile.TemporaryDirectory(prefix="bench-kill-resume-") as tmp,
        Simulator(profile="ideal", seed=7, subprocess=True, batch_duration_s=args.batch_s) as sim,
    ):
        source = Path(tmp) / "tickets.jsonl"
        write_source(source, args.records)
        before = paid(sim)
        reference, whole = run_night(source, sim, Path(tmp) / "reference", args.poll_s, None)
        ref_paid = [a - b for a, b in zip(paid(sim), before, strict=True)]
        ref_once = every_record_once(Path(tmp) / "reference", args.records, reference)
        wall = reference["wall_s"]
        start_up = whole - wall  # the process, its Prefect test API and imports, before the night
        print(
            f"reference, run through: {reference['records']:.0f} records in"
            f" {wall:.0f} s of night after {start_up:.0f} s of start-up"
            f" ({reference['valid']:.0f} valid,"
            f" {reference['quarantined']:.0f} quarantined), every record once: {ref_once};"
            f" {ref_paid[0]} batch lines in {ref_paid[1]} batches, {ref_paid[2]} online"
            f" requests, {ref_paid[3]} files left in storage",
            flush=True,
        )
        ok = ok and ref_once
        for share in shares:
            before = paid(sim)
            work = Path(tmp) / f"killed-at-{share:g}"
            figures, ran = run_night(source, sim, work, args.poll_s, start_up + share * wall)
            spent = [a - b for a, b in zip(paid(sim), before, strict=True)]
            once = every_record_once(work, args.records, figures)
            ratio = spent[0] / ref_paid[0] if ref_paid[0] else float("nan")
            print(
                f"killed at {share:.0%} of the night ({ran:.0f} s after the process started),"
                " resumed:"
                f" every record once: {once}; {spent[0]} batch lines ({ratio:.3f} of the"
                f" reference) in {spent[1]} batches, {spent[2]} online requests,"
                f" {spent[3]} files left in storage; the resumed run {figures['wall_s']:.0f} s",
                flush=True,
            )
            ok = (
                verdict(
                    f"killed at {share:.0%} and resumed",
                    once and spent[0] == ref_paid[0] and spent[2] == ref_paid[2],
                    f"every record once: {once}; batch lines {spent[0]} vs {ref_paid[0]} run"
                    f" through ({ratio:.3f}), online requests {spent[2]} vs {ref_paid[2]}",
                )
                and ok
            )
    print(f"load average after: {os.getloadavg()}", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
