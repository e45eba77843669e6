"""The sample tickets, the example schemas, and the deployment files that use them."""

from __future__ import annotations

import datetime as dt
import importlib
import importlib.util
import json
import os
import re
import subprocess
import sys
import typing
import zoneinfo
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from pydantic import BaseModel, ValidationError

from prefect_openai_chat.examples import tickets
from prefect_openai_chat.examples.tickets import (
    SCHEMA_FOR_KIND,
    TICKET_INSTRUCTIONS,
    TICKET_PROMPT,
    BugReport,
    RefundRequest,
    ShippingIssue,
    SupportTicket,
    TicketTriage,
    sample_tickets_path,
)

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "make_sample_data.py"
DATA = ROOT / "prefect_openai_chat" / "data" / "tickets.jsonl"
PREFECT_YAML = ROOT / "deployments" / "prefect.yaml"
SERVE = ROOT / "deployments" / "serve.py"
FIELDS = {"ticket_id", "channel", "received_at", "subject", "body"}
ALL_SCHEMAS = (SupportTicket, TicketTriage, RefundRequest, BugReport, ShippingIssue)
EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")


def _load(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def records() -> list[dict[str, Any]]:
    with DATA.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


@pytest.fixture(scope="module")
def generator() -> ModuleType:
    return _load(SCRIPT, "make_sample_data")


@pytest.fixture(scope="module")
def deployment() -> dict[str, Any]:
    project = yaml.safe_load(PREFECT_YAML.read_text(encoding="utf-8"))
    [found] = [d for d in project["deployments"] if d["name"] == "nightly-ticket-extraction"]
    return dict(found)


# --- the data file ----------------------------------------------------------------------


def test_data_file_has_300_well_formed_unique_tickets(records: list[dict[str, Any]]) -> None:
    assert len(records) == 300
    assert DATA.stat().st_size < 400_000
    ids = [r["ticket_id"] for r in records]
    assert ids == [f"T-{n:05d}" for n in range(1, 301)]  # unique, in order
    previous = dt.datetime.min.replace(tzinfo=dt.timezone.utc)
    for record in records:
        assert set(record) == FIELDS, record["ticket_id"]
        assert all(isinstance(record[f], str) for f in FIELDS)
        assert record["channel"] in {"email", "chat", "web"}
        received = dt.datetime.fromisoformat(record["received_at"])
        assert received.tzinfo is not None and received >= previous
        previous = received
        assert record["body"].strip()
        assert EMAIL.search(record["body"]), f"{record['ticket_id']} names no email address"
        TICKET_PROMPT.format(**record)  # the prompt template's fields exist in every record


def test_data_is_varied_like_real_tickets(records: list[dict[str, Any]]) -> None:
    bodies = [r["body"] for r in records]
    channels = {r["channel"]: 0 for r in records}
    for record in records:
        channels[record["channel"]] += 1
    assert min(channels.values()) >= 30
    for money in ("$", "€", "£", " USD", " EUR", " GBP"):
        assert sum(money in body for body in bodies) >= 2, money
    assert sum(bool(re.search(r"ORD-\d{5}", body)) for body in bodies) >= 100
    assert sum(bool(re.search(r"\b20\d\d-\d\d-\d\d\b", body)) for body in bodies) >= 100
    assert len({r["subject"] for r in records}) >= 40
    assert len(set(bodies)) == len(bodies)
    lengths = sorted(len(body) for body in bodies)
    assert lengths[0] < 80 and lengths[-1] > 3000 and lengths[150] > 150


def test_hard_cases_are_where_the_script_says(
    records: list[dict[str, Any]], generator: ModuleType
) -> None:
    by_id = {r["ticket_id"]: r for r in records}
    hard = {kind: by_id[ticket_id] for kind, ticket_id in generator.hard_case_ids(300).items()}
    assert set(hard) == set(generator.HARD_CASES)
    assert len(hard["very_long"]["body"]) > 4000
    assert not re.search(r"[$€£]|\d+\.\d\d", hard["no_amount"]["body"])
    assert len(re.findall(r"\$\d+\.\d\d", hard["two_amounts"]["body"])) >= 2
    assert "Bestellung" in hard["german"]["body"]
    assert "llegó" in hard["spanglish"]["body"]
    assert hard["nearly_empty"]["subject"] == ""
    assert hard["nearly_empty"]["body"].split("Message:")[1].strip() == "help??"
    assert "CHF" in hard["swiss_francs"]["body"]
    assert "Ignore all previous instructions" in hard["injection"]["body"]
    assert len(set(re.findall(r"ORD-\d{5}", hard["two_orders"]["body"]))) == 2


def test_script_regenerates_the_same_bytes(tmp_path: Path) -> None:
    out = tmp_path / "tickets.jsonl"
    command = [sys.executable, str(SCRIPT), "--count", "300", "--seed", "7", "--out", str(out)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert "wrote 300 tickets" in done.stdout
    assert out.read_bytes() == DATA.read_bytes()


def test_another_seed_or_count_gives_other_data(generator: ModuleType, tmp_path: Path) -> None:
    assert generator.generate(300, 8) != generator.generate(300, 7)
    small = generator.generate(25, 7)
    assert len(small) == 25 and len({r["ticket_id"] for r in small}) == 25
    with pytest.raises(SystemExit):
        generator.main(["--count", "0", "--out", str(tmp_path / "x.jsonl")])


def test_packaged_path_points_at_the_data() -> None:
    assert sample_tickets_path().resolve() == DATA.resolve()


# --- the example schemas ----------------------------------------------------------------


@pytest.mark.parametrize("schema", ALL_SCHEMAS, ids=lambda s: s.__name__)
def test_schemas_build_strict_json_schemas_with_described_fields(schema: type[BaseModel]) -> None:
    from prefect_openai_chat.extraction.schema import schema_spec

    json_schema = schema.model_json_schema()
    assert json_schema["type"] == "object"
    for name, field in schema.model_fields.items():
        assert field.description and field.description.endswith("."), f"{schema.__name__}.{name}"
    spec = schema_spec(schema)
    assert spec.strict, spec.not_strict_reason


def _ticket(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "customer_name": "Ada Lovelace",
        "email": "ada@example.org",
        "order_id": "ORD-48213",
        "product": "Pulse smartwatch",
        "category": "billing",
        "priority": "high",
        "amount": 149.0,
        "currency": "EUR",
        "incident_date": "2024-03-14",
        "summary": "Charged twice for one order.",
    }
    return {**base, **changes}


def test_business_rule_rejects_an_amount_without_currency() -> None:
    with pytest.raises(ValidationError, match="currency is required when amount is set"):
        SupportTicket.model_validate(_ticket(currency=None))
    assert SupportTicket.model_validate(_ticket(amount=None, currency=None)).amount is None
    assert SupportTicket.model_validate(_ticket()).incident_date == dt.date(2024, 3, 14)


def test_fields_normalise_what_models_write_and_reject_what_is_wrong() -> None:
    loose = SupportTicket.model_validate(
        _ticket(email=" <Ada@Example.ORG> ", order_id="#ord 48213", amount="", currency="n/a")
    )
    assert (loose.email, loose.order_id, loose.amount) == ("ada@example.org", "ORD-48213", None)
    wrong = {
        "email": "ada at example",
        "order_id": "48213",
        "category": "refund",
        "priority": "critical",
        "amount": -5,
        "currency": "CHF",
        "summary": "x" * 201,
    }
    for field, value in wrong.items():
        with pytest.raises(ValidationError) as caught:
            SupportTicket.model_validate(_ticket(**{field: value}))
        assert caught.value.errors()[0]["loc"][0] == field


def test_triage_routes_every_kind_to_a_schema() -> None:
    kinds = typing.get_args(TicketTriage.model_fields["kind"].annotation)
    assert set(SCHEMA_FOR_KIND) == set(kinds) == {"refund", "bug", "shipping", "other"}
    assert all(issubclass(schema, BaseModel) for schema in SCHEMA_FOR_KIND.values())
    with pytest.raises(ValidationError):
        TicketTriage(kind="bug", confidence=1.5, reason="Out of range.")
    with pytest.raises(ValidationError):
        RefundRequest(
            customer_name="A", email="a@b.co", amount=0, currency="USD", reason="other", summary="s"
        )


@pytest.mark.parametrize(
    "path", [f"prefect_openai_chat.examples.tickets:{s.__name__}" for s in ALL_SCHEMAS]
)
def test_import_paths_resolve(path: str) -> None:
    module_name, _, attr = path.partition(":")
    resolved = getattr(importlib.import_module(module_name), attr)
    assert resolved is getattr(tickets, attr) and issubclass(resolved, BaseModel)


# --- the deployment files ---------------------------------------------------------------


def test_prefect_yaml_declares_the_nightly_deployment(deployment: dict[str, Any]) -> None:
    from prefect.client.schemas.schedules import CronSchedule

    file_part, _, function = deployment["entrypoint"].partition(":")
    assert (file_part, function) == (
        "prefect_openai_chat/flows/extract_records.py",
        "extract_records",
    )
    [schedule] = deployment["schedules"]
    assert schedule["cron"] == "0 2 * * *"
    zoneinfo.ZoneInfo(schedule["timezone"])  # a real IANA zone
    CronSchedule(cron=schedule["cron"], timezone=schedule["timezone"])  # Prefect accepts it
    assert deployment["concurrency_limit"]["limit"] == 1
    assert deployment["work_pool"]["name"] == "llm-pool"
    project = yaml.safe_load(PREFECT_YAML.read_text(encoding="utf-8"))
    [pull] = project["pull"]
    assert "prefect.deployments.steps.set_working_directory" in pull


def test_prefect_yaml_parameters_name_blocks_and_match_the_examples(
    deployment: dict[str, Any],
) -> None:
    params = deployment["parameters"]
    assert params["chat_model"] == "nightly-chat-model"
    spec = params["spec"]  # an ExtractionSpec as plain JSON
    assert spec["schema"] == "prefect_openai_chat.examples.tickets:SupportTicket"
    assert spec["key_field"] == "ticket_id"
    assert (spec["prompt"], spec["instructions"]) == (TICKET_PROMPT, TICKET_INSTRUCTIONS)
    from prefect_openai_chat import ExtractionSpec, RunOptions

    assert ExtractionSpec(**spec).schema_class.__name__ == "SupportTicket"
    assert RunOptions(**params["run"]).chunk_size == 100
    assert (ROOT / params["source"]).resolve() == DATA.resolve()
    assert params["output"] != params["quarantine"]


def _strings(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (str(k), *_strings(v))]
    if isinstance(value, list):
        return [s for item in value for s in _strings(item)]
    return [str(value)]


def test_prefect_yaml_holds_no_secret(deployment: dict[str, Any]) -> None:
    for text in _strings(deployment):
        assert "sk-" not in text and not re.search(r"[A-Za-z0-9_-]{32,}", text), text
        assert not re.search(r"api[_-]?key|password|secret", text, re.IGNORECASE), text


def test_serve_imports_without_serving(monkeypatch: pytest.MonkeyPatch) -> None:
    import prefect
    from prefect.flows import Flow

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("importing serve.py must not serve")

    monkeypatch.setattr(prefect, "serve", refuse)
    monkeypatch.setattr(Flow, "serve", refuse)
    cwd = os.getcwd()
    serve = _load(SERVE, "serve_under_test")
    assert os.getcwd() == cwd
    assert callable(serve.main) and serve.DEPLOYMENT_NAME == "nightly-ticket-extraction"


def test_serve_uses_the_schedule_and_parameters_of_prefect_yaml(
    deployment: dict[str, Any],
) -> None:
    from prefect import flow

    serve = _load(SERVE, "serve_under_test")

    @flow(name="extract-records")
    def stand_in(
        source: str,
        output: str,
        quarantine: str,
        spec: dict[str, Any],
        chat_model: str,
        run: dict[str, Any] | None = None,
    ) -> None:
        """Same parameters as extract_records; never runs here."""

    runner_deployment = serve.build_deployment(flow=stand_in)
    assert runner_deployment.name == "nightly-served"  # never the worker's deployment
    [schedule] = runner_deployment.schedules
    assert (schedule.schedule.cron, schedule.schedule.timezone) == ("0 2 * * *", "Europe/Berlin")
    assert runner_deployment.concurrency_limit == 1
    assert runner_deployment.parameters == deployment["parameters"]
    with pytest.raises(SystemExit, match="no deployment named 'nope'"):
        serve.load_deployment_config(PREFECT_YAML, "nope")
