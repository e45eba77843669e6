"""The runner (thread, subprocess, async), admin endpoints, profiles, CLI, flat memory."""

from __future__ import annotations

import asyncio
import gc
import itertools
import subprocess
import sys
import time
import tracemalloc

import httpx
import openai
import pytest

from prefect_openai_chat.simulator import PROFILES, Simulator, SimulatorSettings, create_app

USER = [{"role": "user", "content": "hello"}]


def test_start_and_stop_are_fast() -> None:
    start = time.monotonic()
    sim = Simulator().start()
    started = time.monotonic() - start
    assert sim.running and sim.api_key == "sk-simulator"
    sim.client().models.list()
    start = time.monotonic()
    sim.stop()
    assert started < 0.5 and time.monotonic() - start < 0.5
    assert not sim.running
    with pytest.raises(RuntimeError, match="not running"):
        _ = sim.base_url


def test_stats_reset_and_configure(fresh_simulator: Simulator) -> None:
    client = fresh_simulator.client()
    client.chat.completions.create(model="gpt-4o-mini", messages=USER)  # type: ignore[arg-type]
    stats = fresh_simulator.stats()
    assert stats.requests == 1 and stats.concurrent_peak == 1 and stats.in_flight == 0
    assert stats.tokens_by_key["sk-simulator"]["prompt"] == 8 and stats.prompt_tokens == 8
    fresh_simulator.configure(fault_rates={"503": 1.0})
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model="gpt-4o-mini", messages=USER)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown fault"):
        fresh_simulator.configure(fault_rates={"nope": 1.0})
    fresh_simulator.reset()
    assert fresh_simulator.stats().requests == 0


async def test_async_context_and_concurrency_peak() -> None:
    async with Simulator(ttft_s=0.05) as sim:
        async with sim.async_client() as client:
            await asyncio.gather(
                *(
                    client.chat.completions.create(model="gpt-4o-mini", messages=USER)
                    for _ in range(8)
                )
            )  # type: ignore[arg-type]
        stats = sim.stats()
    assert stats.requests == 8 and stats.concurrent_peak >= 4


def test_subprocess_mode_uses_admin_endpoints() -> None:
    with Simulator(profile="flaky", seed=7, subprocess=True, script=["503"]) as sim:
        client = sim.client()
        with pytest.raises(openai.InternalServerError):
            client.chat.completions.create(model="gpt-4o-mini", messages=USER)  # type: ignore[arg-type]
        assert sim.stats().by_status == {503: 1}
        assert sim.configure(rpm=50).rpm == 50 and sim.settings.rpm == 50
        sim.reset()
        assert sim.stats().requests == 0
        raw = httpx.get(sim.url + "/_simulator/settings").json()
        assert raw["fault_rates"]["429"] == 0.03


@pytest.mark.parametrize("profile", list(PROFILES))
def test_every_profile_serves(profile: str) -> None:
    with Simulator(profile=profile, seed=1) as sim:
        client = sim.client(timeout=2)
        outcomes = set()
        for _ in range(5):
            try:
                client.chat.completions.create(model="gpt-4o-mini", messages=USER)  # type: ignore[arg-type]
                outcomes.add("ok")
            except openai.APIError as exc:
                outcomes.add(type(exc).__name__)
        assert "ok" in outcomes
    assert isinstance(PROFILES[profile], SimulatorSettings)


def test_profiles_shape() -> None:
    assert PROFILES["ideal"].fault_rates == {}
    assert 0.03 <= sum(PROFILES["flaky"].fault_rates.values()) <= 0.1
    assert PROFILES["rate-limited"].rpm and PROFILES["rate-limited"].tpm
    assert PROFILES["outage"].outages
    assert 0.15 <= sum(PROFILES["sloppy-json"].fault_rates.values()) <= 0.2
    chaos = PROFILES["chaos"]
    assert chaos.outages and chaos.rpm and len(chaos.fault_rates) > 15


def test_cli_help_documents_every_profile_and_fault() -> None:
    from prefect_openai_chat.simulator import FAULTS

    out = subprocess.run(
        [sys.executable, "-m", "prefect_openai_chat.simulator", "--help"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    for name in [*PROFILES, *FAULTS, "--time-scale", "--outage", "--fault", "--seed"]:
        assert name in out


def test_cli_serves_in_the_foreground() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "prefect_openai_chat.simulator", "--port", "0", "--seed", "7",
         "--fault", "503=1.0", "--model", "local-llm=4096"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip().rsplit(" ", 1)[1]
        client = openai.OpenAI(base_url=url, api_key="sk-simulator", max_retries=0)
        with pytest.raises(openai.InternalServerError):
            client.chat.completions.create(model="local-llm", messages=USER)  # type: ignore[arg-type]
    finally:
        process.terminate()
        process.wait(5)


def test_cli_rejects_bad_options_clearly() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "prefect_openai_chat.simulator", "--host", "192.0.2.1", "--port", "0"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2 and "loopback" in result.stderr
    result = subprocess.run(
        [sys.executable, "-m", "prefect_openai_chat.simulator", "--fault", "503", "--port", "0"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2 and "NAME=VALUE" in result.stderr


def test_add_parser_and_run_for_the_lead_cli() -> None:
    import argparse

    from prefect_openai_chat.simulator.cli import add_parser, settings_from_args

    parser = argparse.ArgumentParser(prog="prefect-openai-chat")
    add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(
        [
            "simulator",
            "--profile",
            "flaky",
            "--seed",
            "7",
            "--outage",
            "#2:4:refuse",
            "--script",
            "503",
            "ok",
        ]
    )
    settings = settings_from_args(args)
    assert settings.seed == 7 and settings.fault_rates == PROFILES["flaky"].fault_rates
    assert settings.outages[0].from_request == 2 and settings.outages[0].mode == "refuse"
    assert settings.script == ["503", "ok"]


@pytest.mark.slow  # ~10 s: started early, not last
def test_memory_stays_flat_over_many_requests() -> None:
    app = create_app(profile="chaos", hang_s=0, stall_s=0, outages=[], rpm=None, tpm=None)
    from starlette.testclient import TestClient

    body = {"model": "gpt-4o-mini", "messages": USER, "response_format": {"type": "json_object"}}
    body["messages"] = [{"role": "user", "content": "json please, ada@example.org"}]
    headers = {"authorization": "Bearer sk-simulator"}
    with TestClient(app) as http:
        for _ in range(150):
            http.post("/v1/chat/completions", json=body, headers=headers)
        tracemalloc.start()
        sizes = []
        for _ in range(3):  # three equal windows: a leak grows each by the same amount
            gc.collect()
            sizes.append(tracemalloc.get_traced_memory()[0])
            for _ in range(300):
                http.post("/v1/chat/completions", json=body, headers=headers)
        gc.collect()
        sizes.append(tracemalloc.get_traced_memory()[0])
        tracemalloc.stop()
    assert app.state.sim.stats().requests == 1050
    growth = [b - a for a, b in itertools.pairwise(sizes)]
    # Caches fill in the first window; per-request state would add about the same to every
    # window, while one window alone swings by tens of KB either way (the allocator, the
    # test client's threads). Over the last two windows (600 requests) a leak of 200 bytes
    # a request would add 120,000 bytes.
    assert sizes[-1] - sizes[1] < 120_000, f"growth per window {growth}"


def test_simulator_imports_only_tokens_from_the_package() -> None:
    import pathlib
    import re

    import prefect_openai_chat.simulator as package

    folder = pathlib.Path(package.__file__).parent
    for path in folder.glob("*.py"):
        for target in re.findall(
            r"^\s*(?:from|import) (prefect_openai_chat\S*)", path.read_text(), re.M
        ):
            assert target.startswith(
                ("prefect_openai_chat.simulator", "prefect_openai_chat.tokens")
            ), (path, target)
        assert not re.search(r"^\s*(?:from|import) prefect\b", path.read_text(), re.M), path
