"""The request log: every chat request as a JSON line, with its status, faults and body."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import openai
import pytest

from prefect_openai_chat.simulator import OutageWindow, Simulator
from prefect_openai_chat.simulator.request_log import read_request_log


def _ask(sim: Simulator, text: str) -> None:
    sim.client().chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": text}]
    )


@pytest.mark.parametrize("subprocess", [False, True])
def test_each_request_is_logged_with_status_faults_and_body(
    tmp_path: Path, subprocess: bool
) -> None:
    path = tmp_path / "requests.jsonl"
    with Simulator(script=["503", "ok"], request_log=str(path), subprocess=subprocess) as sim:
        with pytest.raises(openai.InternalServerError):
            _ask(sim, "record A-1")
        _ask(sim, "record B-2")
        sim.reset()  # counters and the script restart; the log is only appended to
        with pytest.raises(openai.InternalServerError):
            _ask(sim, "record C-3")
        entries = read_request_log(path)
    assert [(e["i"], e["status"], e["faults"]) for e in entries] == [
        (0, 503, ["503"]),
        (1, 200, []),
        (0, 503, ["503"]),
    ]
    bodies = [json.loads(e["body"])["messages"][0]["content"] for e in entries]
    assert bodies == ["record A-1", "record B-2", "record C-3"]
    assert entries[0]["t"] <= entries[1]["t"] <= entries[2]["t"]


def test_a_refused_request_is_logged_without_a_status(tmp_path: Path) -> None:
    path = tmp_path / "requests.jsonl"
    refuse = OutageWindow(from_request=0, to_request=1, mode="refuse")
    with Simulator(outages=[refuse], request_log=str(path)) as sim:
        with pytest.raises(openai.APIConnectionError):
            _ask(sim, "record D-4")
        sim.configure(request_log=None)
        _ask(sim, "not logged")
    (entry,) = read_request_log(path)
    assert entry["status"] is None and entry["faults"] == ["outage"]
    assert "record D-4" in entry["body"]


def test_a_client_gone_before_its_body_is_logged_and_not_left_in_flight(tmp_path: Path) -> None:
    path = tmp_path / "requests.jsonl"
    with Simulator(request_log=str(path)) as sim:
        with socket.create_connection((sim.host, sim.port)) as raw:
            raw.sendall(
                b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                b"Authorization: Bearer sk-simulator\r\nContent-Type: application/json\r\n"
                b'Content-Length: 1000\r\n\r\n{"model": "gpt-4o-mini", "mess'
            )  # then the client dies (SIGKILL) before sending the rest
        deadline = time.monotonic() + 5
        while not path.exists() or not read_request_log(path):
            assert time.monotonic() < deadline, "the request was never logged"
            time.sleep(0.02)
        while sim.stats().in_flight:
            assert time.monotonic() < deadline, "the request stayed in flight"
            time.sleep(0.02)
        _ask(sim, "still serving")
    first, second = read_request_log(path)
    assert first["body"] == "" and "still serving" in second["body"]
