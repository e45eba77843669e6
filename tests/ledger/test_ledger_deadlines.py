"""Issue #21: a PostgreSQL ledger that goes away or freezes mid-run costs records, not the night.

Real flows, the real `openai` client and the simulator over HTTP; the ledger is the real
PostgreSQL server behind a loopback TCP proxy (`proxy_support.TcpProxy`) that the test cuts
or freezes once the run has paid for a few records. The ledger's deadlines are shortened
(module constants of `extraction/ledger/postgres.py`) so that the tests stay short; each
test bounds its own wall time.
"""

from __future__ import annotations

import contextvars
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from model_support import fast_model
from proxy_support import TcpProxy

from prefect_openai_chat.errors import LedgerError
from prefect_openai_chat.examples.tickets import TICKET_PROMPT, SupportTicket, sample_tickets_path
from prefect_openai_chat.extraction.ledger import PostgresLedger, postgres
from prefect_openai_chat.flows import extract_records
from prefect_openai_chat.simulator import Simulator

pytestmark = pytest.mark.filterwarnings('ignore:Field name "schema"')
RECORDS = 10
WALL_LIMIT_S = 90.0  # far above what the run needs; a hang fails the test instead


@pytest.fixture(autouse=True)
def _harness(isolated_results: None) -> None:
    """The session's Prefect test API; task results per test."""


@pytest.fixture
def short_deadlines(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(postgres, "PATIENCE_S", 2.0)
    monkeypatch.setattr(postgres, "CONNECT_TIMEOUT_S", 2.0)
    monkeypatch.setattr(postgres, "STATEMENT_TIMEOUT_S", 1.0)
    monkeypatch.setattr(postgres, "STATEMENT_GRACE_S", 1.0)


@pytest.fixture
def proxy(postgres_ledger_url: str) -> Iterator[TcpProxy]:
    parts = urlsplit(postgres_ledger_url)
    server = TcpProxy((parts.hostname or "127.0.0.1", parts.port or 5432))
    yield server
    server.close()


@pytest.fixture(scope="module")
def slow_sim() -> Iterator[Simulator]:
    with Simulator(profile="ideal", seed=29, ttft_s=0.2) as simulator:
        yield simulator


def _tickets_file(tmp_path: Path) -> Path:
    lines = sample_tickets_path().read_text(encoding="utf-8").splitlines()[:RECORDS]
    path = tmp_path / "tickets.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def _run_and_break(
    sim: Simulator, proxy: TcpProxy, url: str, tmp_path: Path, how: str
) -> dict[str, Any]:
    """Run the flow on the proxied ledger; cut or freeze the proxy after 3 paid records."""
    sim.reset()
    result: dict[str, Any] = {}
    context = contextvars.copy_context()

    def run() -> None:
        try:
            result["summary"] = context.run(
                extract_records,
                source=str(_tickets_file(tmp_path)),
                schema=SupportTicket,
                chat_model=fast_model(sim.base_url, sim.api_key),
                prompt=TICKET_PROMPT,
                output=str(tmp_path / "out.jsonl"),
                quarantine=str(tmp_path / "bad.jsonl"),
                key_field="ticket_id",
                batch_size=2,
                concurrency=2,
                cache=proxy.url_for(url),
            )
        except BaseException as exc:
            result["error"] = exc

    started = time.monotonic()
    flow = threading.Thread(target=run, daemon=True)
    flow.start()
    while sim.stats().requests < 3 and flow.is_alive():
        time.sleep(0.01)
    proxy.freeze() if how == "frozen" else proxy.cut()
    flow.join(WALL_LIMIT_S)
    assert not flow.is_alive(), f"the run hung with the ledger {how}"
    result["wall_s"] = time.monotonic() - started
    return result


@pytest.mark.parametrize("how", ["cut", "frozen"])
def test_a_ledger_lost_mid_run_costs_records_not_the_run(
    slow_sim: Simulator,
    proxy: TcpProxy,
    postgres_ledger_url: str,
    short_deadlines: None,
    tmp_path: Path,
    how: str,
) -> None:
    result = _run_and_break(slow_sim, proxy, postgres_ledger_url, tmp_path, how)

    assert "error" not in result, repr(result.get("error"))
    assert result["wall_s"] < 30  # seconds of patience, not a hang
    summary = result["summary"]
    rows, bad = _jsonl(tmp_path / "out.jsonl"), _jsonl(tmp_path / "bad.jsonl")
    assert summary["records"] == RECORDS == len(rows) + len(bad)  # every record, once
    paid = slow_sim.stats().requests
    assert len(rows) == summary["valid"] == paid  # every answer paid for is in the output
    assert 3 <= paid < RECORDS  # records after the loss were not sent
    assert bad, "some records were not sent"
    masked = postgres.masked_url(proxy.url_for(postgres_ledger_url))
    for row in bad:
        assert row["outcome"] == "error"
        assert row["reason"].startswith(f"the record ledger at {masked} could not be reached")
        assert row["reason"].endswith("; not sent")
        assert "within 2 s" in row["reason"] or "waited 2 s for it" in row["reason"]


def test_an_unreachable_ledger_gives_up_within_its_patience_and_masks_the_password() -> None:
    url = "postgresql://etl:s3cret@127.0.0.1:1/night"  # nothing listens on port 1
    ledger = PostgresLedger(url, connect=False, patience_s=2.0)
    started = time.monotonic()
    with pytest.raises(LedgerError) as raised:
        ledger.claim_many(["k"], "worker", 60)
    took = time.monotonic() - started
    message = str(raised.value)
    assert message.startswith(
        "the record ledger at postgresql://etl:***@127.0.0.1:1/night could not be reached"
        " within 2 s:"
    ), message
    assert "s3cret" not in message
    assert 1.0 <= took < 10.0  # it tried again for its patience, then gave up
    started = time.monotonic()
    with pytest.raises(LedgerError):
        ledger.complete("k", "{}")  # given up: at once, not another patience
    assert time.monotonic() - started < 0.5
    again = PostgresLedger(url, connect=False, patience_s=2.0)
    started = time.monotonic()
    with pytest.raises(LedgerError, match=r"could not be reached \(one more try"):
        again.get_many(["k"])  # a new batch a moment later: one try, not a second wait
    assert time.monotonic() - started < 1.0
    ledger.close()
    again.close()
