"""Crash and resume: SIGKILL a real `extract_records` process, run the same command again.

Each scenario starts this file as a child process (`--child CONFIG`: one `extract_records`
run, as a user's script runs it, against a Prefect API and a simulator that logs every
request), kills it with SIGKILL at one moment, reads what it had finished (the record
cache: a record is stored the moment it finishes), and runs the same command again.
Then it checks:

* every record ends exactly once, in the output or in the quarantine, and every
  quarantined record says why;
* the output files are whole (they parse, with the run's counts) and nothing is left
  beside them: no temporary file, no journal;
* the re-run sends no request for a record finished before the kill (the request log's
  bodies name their record), and sends one for every record that was not.

The moments: `early` (5% of the records finished), `mid-run` (50%, with last night's output
in place, which must survive the crash untouched), `near-end` (90%), and `commit` (between
the two moves of the journalled commit: the output moved, the quarantine not yet; the
re-run must finish the move and pay for nothing).

The kill at `commit` is deterministic: with `SOAK_KILL_BETWEEN_COMMITS=1` the child wraps
the `os` module of the commit (`flows/outputs/commit.py`), and SIGKILLs itself right after
the output is moved into place. The hook is in this child only; the product has none.

Run: python benchmarks/bench_crash_resume.py [--records 2000] [--moments early,mid-run,...]

`tests/reliability_soak/test_crash_resume.py` runs the same scenarios on fewer records.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MODEL = "gpt-4o-mini-2024-07-18"
SCHEMA = "prefect_openai_chat.examples.tickets:SupportTicket"
PROMPT = "[record {ticket_id}]\nSubject: {subject}\n\n{body}"  # each request names its record
MARK = re.compile(r"\[record ([A-Za-z0-9_-]+)\]")
KILL_AT = {"early": 0.05, "mid-run": 0.5, "near-end": 0.9}
OUTPUT_OF = {  # one output format per moment: every sink is crashed once
    "early": "valid.jsonl",
    "mid-run": "valid.parquet",
    "near-end": "valid.sqlite",
    "commit": "valid.jsonl",
}
MOMENTS = tuple(OUTPUT_OF)
RUN_TIMEOUT_S = 600.0


# --- the child: one run of the flow ------------------------------------------------------


class _KillAfterMovingOutput:
    """`os` as the commit module (`flows/outputs/commit.py`) sees it, except that moving
    `output` into place kills us."""

    def __init__(self, output: Path) -> None:
        self.output = output.absolute()

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)

    def replace(self, src: Any, dst: Any) -> None:
        os.replace(src, dst)
        if Path(dst).absolute() == self.output:
            os.kill(os.getpid(), signal.SIGKILL)


def child(config_path: str) -> None:
    """One `extract_records` run from a config file; prints `SUMMARY {...}`."""
    config = json.loads(Path(config_path).read_text(encoding="utf-8"))
    from prefect_openai_chat import ChatModel, ExtractionSpec, OpenAICredentials, RunOptions
    from prefect_openai_chat.flows import extract_records
    from prefect_openai_chat.flows.outputs import commit as sinks

    if os.environ.get("SOAK_KILL_BETWEEN_COMMITS") == "1":
        sinks.os = _KillAfterMovingOutput(Path(config["output"]))  # type: ignore[assignment]
    model = ChatModel(
        credentials=OpenAICredentials(base_url=config["base_url"], api_key=config["api_key"]),
        model=MODEL,
        timeouts={"read_s": 5.0},
        retries={"backoff_base_s": 0.01, "backoff_cap_s": 0.05},
    )
    summary = extract_records(
        source=config["source"],
        output=config["output"],
        quarantine=config["quarantine"],
        spec=ExtractionSpec(
            schema=SCHEMA,
            prompt=PROMPT,
            key_field="ticket_id",
        ),
        chat_model=model,
        run=RunOptions(
            chunk_size=config["batch_size"],
            concurrency=config["concurrency"],
            cache=config["cache"],
        ),
    )
    print("SUMMARY " + json.dumps(summary), flush=True)


# --- the parent: kill, look, re-run, check -----------------------------------------------


@dataclass
class Job:
    """One `extract_records` command and its files."""

    config: Path
    env: dict[str, str]
    output: Path
    quarantine: Path
    cache: Path
    log: Path

    def start(self, **env: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--child", str(self.config)],
            env={**self.env, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def run(self) -> tuple[dict[str, Any], str]:
        """Run the command to the end: its summary and what it printed."""
        process = self.start()
        out, _ = process.communicate(timeout=RUN_TIMEOUT_S)
        lines = [x for x in out.splitlines() if x.startswith("SUMMARY ")]
        if process.returncode != 0 or len(lines) != 1:
            raise RuntimeError(f"the re-run failed ({process.returncode}):\n{out[-3000:]}")
        return json.loads(lines[0][len("SUMMARY ") :]), out

    def finished(self) -> set[str]:
        """Keys of the records in the record cache: finished, outcome stored."""
        if not self.cache.exists():
            return set()
        try:
            with sqlite3.connect(self.cache, timeout=10) as db:
                rows = db.execute("SELECT outcome FROM records").fetchall()
        except sqlite3.OperationalError:  # the table is not made yet
            return set()
        return {str(json.loads(outcome)["key"]) for (outcome,) in rows}

    def requests(self) -> list[dict[str, Any]]:
        """The simulator's request log so far."""
        from prefect_openai_chat.simulator.request_log import read_request_log

        return read_request_log(self.log)


def make_job(
    folder: Path, sim: Any, api_url: str, records: list[dict[str, Any]], output: str
) -> Job:
    """Files and the command of one scenario under `folder` (`sim` must log its requests)."""
    data, out, home = folder / "data", folder / "out", folder / "prefect-home"
    for path in (data, out, home):
        path.mkdir(parents=True)
    source = data / "records.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    log = sim.settings.request_log
    if not log:
        raise ValueError("the simulator must log requests: Simulator(request_log=...)")
    job = Job(
        config=data / "config.json",
        env={
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
            "PREFECT_API_URL": api_url,
            "PREFECT_HOME": str(home),
            "PREFECT_LOGGING_LEVEL": "WARNING",
        },
        output=out / output,
        quarantine=out / "quarantine.jsonl",
        cache=data / "record-cache.sqlite",
        log=Path(log),
    )
    config = {
        "base_url": sim.base_url,
        "api_key": sim.api_key,
        "source": str(source),
        "output": str(job.output),
        "quarantine": str(job.quarantine),
        "cache": str(job.cache),
        "batch_size": max(10, len(records) // 10),
        "concurrency": 8,
    }
    job.config.write_text(json.dumps(config), encoding="utf-8")
    return job


def kill_when_finished(job: Job, share: float, total: int) -> set[str]:
    """Start the command, SIGKILL it once `share` of the records are finished; those keys."""
    process = job.start()
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while len(job.finished()) < share * total:
        if process.poll() is not None:
            out = process.stdout.read() if process.stdout else ""
            raise RuntimeError(f"the run ended before {share:.0%} were finished:\n{out[-3000:]}")
        if time.monotonic() > deadline:
            process.kill()
            raise RuntimeError("the run did not get far enough in time")
        time.sleep(0.01)
    os.kill(process.pid, signal.SIGKILL)
    process.communicate(timeout=RUN_TIMEOUT_S)
    return job.finished()


def settled_requests(job: Job, quiet_s: float = 0.5, limit_s: float = 5.0) -> list[dict[str, Any]]:
    """The request log once it has not grown for `quiet_s`: the simulator logs a killed
    client's request when it notices the closed socket, which may come after the kill."""
    entries, deadline = job.requests(), time.monotonic() + limit_s
    while time.monotonic() < deadline:
        time.sleep(quiet_s)
        latest = job.requests()
        if len(latest) == len(entries):
            break
        entries = latest
    return entries


def named(entries: list[dict[str, Any]]) -> tuple[set[str], int]:
    """The records the requests of `entries` name, and how many requests name none."""
    names, unnamed = set(), 0
    for entry in entries:
        match = MARK.search(entry["body"])
        if match is None and entry["status"] is None:
            continue  # a killed client's request, cut mid-body: logged when its socket closed
        if match is None:
            unnamed += 1
        else:
            names.add(match.group(1))
    return names, unnamed


@dataclass
class Resumed:
    """One scenario: what the kill left, what the re-run did, and what was wrong."""

    moment: str
    records: int
    finished_at_kill: int = 0
    rerun_requests: int = 0
    paid_again: int = 0
    lost: int = 0
    duplicates: int = 0
    leftovers: list[str] = field(default_factory=list)
    rerun_s: float = 0.0
    problems: list[str] = field(default_factory=list)

    def line(self) -> str:
        return (
            f"{self.moment:9s} finished at kill {self.finished_at_kill:>6,}/{self.records:,}"
            f"  re-run requests {self.rerun_requests:>6,}  paid again {self.paid_again}"
            f"  lost {self.lost}  duplicates {self.duplicates}"
            f"  files left {len(self.leftovers)}  re-run {self.rerun_s:.1f} s"
        )


def crash_and_resume(
    moment: str, records: list[dict[str, Any]], folder: Path, sim: Any, api_url: str
) -> Resumed:
    """Kill a run at `moment` (one of `MOMENTS`), run the same command again, check it."""
    from bench_chaos_soak import check_run  # the benchmarks folder is on sys.path

    report = Resumed(moment, len(records))
    problems = report.problems
    keys = {str(r["ticket_id"]) for r in records}
    job = make_job(folder, sim, api_url, records, OUTPUT_OF[moment])
    journal = job.output.with_name(f".{job.output.name}.commit")
    previous = None
    if moment == "mid-run":  # last night's output: a crash must leave it as it was
        job.output.write_bytes(b"last night's rows")
        previous = job.output.read_bytes()
    if moment == "commit":
        process = job.start(SOAK_KILL_BETWEEN_COMMITS="1")
        out, _ = process.communicate(timeout=RUN_TIMEOUT_S)
        if process.returncode != -signal.SIGKILL:
            raise RuntimeError(f"the run was not killed at the commit:\n{out[-3000:]}")
        finished = job.finished()
        if not (job.output.exists() and journal.exists() and not job.quarantine.exists()):
            problems.append("the kill did not land between the two moves of the commit")
        if len(finished) != len(records):
            problems.append(f"only {len(finished)} records finished before the commit")
    else:
        share = KILL_AT[moment]
        finished = kill_when_finished(job, share, len(records))
        if not share * len(records) <= len(finished) < len(records):
            problems.append(f"killed with {len(finished)} of {len(records)} finished")
        if previous is None and job.output.exists():
            problems.append("a killed run left a partial output in place")
        if previous is not None and job.output.read_bytes() != previous:
            problems.append("a killed run changed last night's output")
        if job.quarantine.exists():
            problems.append("a killed run left a quarantine file in place")
    report.finished_at_kill = len(finished)
    before = len(settled_requests(job))  # the killed run's last requests are logged too

    started = time.perf_counter()
    summary, said = job.run()
    report.rerun_s = time.perf_counter() - started
    counts, found = check_run(records, job.output, job.quarantine, summary)
    problems.extend(found)
    report.lost, report.duplicates = counts["lost"], counts["duplicates"]
    report.leftovers = sorted(
        p.name for p in job.output.parent.iterdir() if p not in (job.output, job.quarantine)
    )
    if report.leftovers:
        problems.append(f"files left beside the outputs: {report.leftovers}")
    again, unnamed = named(job.requests()[before:])
    report.rerun_requests = len(job.requests()) - before
    report.paid_again = len(again & finished)
    if report.paid_again:
        problems.append(f"records paid again: {sorted(again & finished)[:10]}")
    if again != keys - finished:
        missing = sorted(keys - finished - again)[:10]
        problems.append(f"unfinished records the re-run did not ask for: {missing}")
    if unnamed:
        first = next(e for e in job.requests()[before:] if not MARK.search(e["body"]))
        problems.append(
            f"{unnamed} requests name no record (status {first['status']}: {first['body'][:120]!r})"
        )
    if moment == "commit" and "a commit interrupted by a crash" not in said:
        problems.append("the re-run did not say it finished the interrupted commit")
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=2000, help="records (default 2,000)")
    parser.add_argument("--moments", default=",".join(MOMENTS), help="which kills to run")
    parser.add_argument("--child", metavar="CONFIG", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return 0

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _common import tickets
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    from prefect_openai_chat.simulator import Simulator

    records = tickets(args.records, seed=23)
    failed = False
    print(
        f"crash and resume: {args.records:,} records, simulator sloppy-json with 10 ms latency,"
        " concurrency 8; each run SIGKILLed, then the same command run again"
    )
    with tempfile.TemporaryDirectory() as tmp, prefect_test_harness(server_startup_timeout=120):
        api_url = str(PREFECT_API_URL.value())
        for moment in args.moments.split(","):
            folder = Path(tmp) / moment
            log = folder / "requests.jsonl"
            with Simulator(
                profile="sloppy-json", seed=23, ttft_s=0.01, request_log=str(log)
            ) as sim:
                report = crash_and_resume(moment, records, folder, sim, api_url)
            print(report.line())
            for problem in report.problems:
                print(f"  FAIL: {problem}")
            failed = failed or bool(report.problems)
    print("FAIL" if failed else "PASS: exactly once, nothing paid twice, no file left behind")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
