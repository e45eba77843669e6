"""`ExtractionSpec` and `RunOptions`: checked when made, shown as forms, plain JSON in a
deployment, and the one way the flows, the chunk task and the cache key take their options.
"""

from __future__ import annotations

import ast
import json
import warnings
from pathlib import Path
from typing import Any

import pytest
from flow_support import sample_tickets, write_jsonl

from prefect_openai_chat import ChatModel, ExtractionSpec, RunOptions
from prefect_openai_chat.errors import ChatError, InvalidInputError
from prefect_openai_chat.flows import extract_records
from prefect_openai_chat.simulator import Simulator

SCHEMA_PATH = "prefect_openai_chat.examples.tickets:SupportTicket"
PROMPT = "Subject: {subject}\n\n{body}"
FLOWS = Path(__file__).resolve().parents[2] / "prefect_openai_chat" / "flows"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"schema": "SupportTicket"}, "import path 'package.module:Model'"),
        ({"schema": SCHEMA_PATH, "mode": "xml"}, "'auto', 'json_schema', 'json_object' or"),
        ({"schema": SCHEMA_PATH, "prompt": "{0}"}, "positional field {0}"),
        ({"schema": SCHEMA_PATH, "max_reprompts": -1}, "greater than or equal to 0"),
    ],
)
def test_a_bad_spec_is_refused_when_made(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ChatError, match=message):  # InvalidInputError, PromptTemplateError
        ExtractionSpec(**fields)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"shards": 4, "via": "batch", "cache": False}, "Batch API shards claim their requests"),
        ({"shard_deployment": "d/s", "return_rows": True}, "return_rows=True keeps the rows"),
        ({"via": "batch", "per_record_tasks": True}, "per_record_tasks=True runs records online"),
        ({"batch_api": {"poll_interval_s": 1}}, "batch_api options are for via='batch'"),
        ({"via": "batch", "batch_api": {"poll_every": 1}}, "Extra inputs are not permitted"),
        ({"chunk_size": 0}, "chunk_size and concurrency must be at least 1"),
        ({"via": "later"}, "'online' or 'batch'"),
    ],
)
def test_an_invalid_run_cannot_be_built(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        RunOptions(**fields)


def test_the_flow_parameters_are_nested_forms_of_plain_json() -> None:
    schema = extract_records.parameters.model_dump()
    properties, definitions = schema["properties"], schema["definitions"]
    # the six parameters and nothing else: the deprecated flat keywords are no field
    assert list(properties) == ["source", "output", "quarantine", "spec", "chat_model", "run"]
    assert schema["required"] == ["source", "output", "quarantine"]
    for name, model in (("spec", "ExtractionSpec"), ("run", "RunOptions")):
        refs = [choice.get("$ref") for choice in properties[name]["anyOf"]]
        assert f"#/definitions/{model}" in refs  # a nested form, not a free dict
        assert definitions[model]["type"] == "object"
    spec = definitions["ExtractionSpec"]["properties"]
    assert spec["schema"]["type"] == "string"  # an import path in a deployment
    assert spec["mode"]["enum"] == ["auto", "json_schema", "json_object", "tools"]
    run = definitions["RunOptions"]["properties"]
    assert run["via"]["enum"] == ["online", "batch"]
    assert "BatchApiOptions" in json.dumps(run["batch_api"])
    json.dumps(schema)  # all of it JSON


def test_a_run_given_plain_dicts_runs_as_a_deployment_would(
    fresh_sim: Simulator, chat_model: ChatModel, tmp_path: Path
) -> None:
    source = write_jsonl(tmp_path / "tickets.jsonl", sample_tickets(6))
    summary = extract_records(
        source=str(source),
        output=str(tmp_path / "out.jsonl"),
        quarantine=str(tmp_path / "quarantine.jsonl"),
        spec={"schema": SCHEMA_PATH, "prompt": PROMPT, "key_field": "ticket_id"},
        chat_model=chat_model,
        run={"chunk_size": 4, "concurrency": 2, "cache": str(tmp_path / "ledger.sqlite")},
    )
    assert summary["records"] == 6 == summary["valid"] + summary["quarantined"]
    assert fresh_sim.stats().requests >= 6


def test_flat_keywords_still_run_with_a_deprecation_warning(
    fresh_sim: Simulator, chat_model: ChatModel, tmp_path: Path
) -> None:
    source = write_jsonl(tmp_path / "tickets.jsonl", sample_tickets(2))
    with pytest.warns(DeprecationWarning, match="spec=ExtractionSpec"):
        summary = extract_records(
            source=str(source),
            output=str(tmp_path / "out.jsonl"),
            quarantine=str(tmp_path / "quarantine.jsonl"),
            schema=SCHEMA_PATH,
            prompt=PROMPT,
            chat_model=chat_model,
            batch_size=1,
        )
    assert summary["records"] == 2


def test_flat_keywords_next_to_their_object_are_refused(tmp_path: Path) -> None:
    spec = ExtractionSpec(schema=SCHEMA_PATH, prompt=PROMPT)
    with pytest.warns(DeprecationWarning), pytest.raises(InvalidInputError, match="set them in"):
        extract_records(
            source=[], output="o.jsonl", quarantine="q.jsonl", spec=spec, chat_model="m",
            key_field="id",
        )  # fmt: skip


def test_unknown_keywords_are_refused_before_any_run() -> None:
    with pytest.raises(InvalidInputError, match=r"unexpected keyword argument\(s\) \['sheme'\]"):
        extract_records(source=[], output="o.jsonl", quarantine="q.jsonl", sheme=SCHEMA_PATH)


def test_the_deprecation_warning_points_at_the_caller() -> None:
    with pytest.warns(DeprecationWarning) as caught, pytest.raises(InvalidInputError):
        extract_records(
            source=[], output="o.jsonl", quarantine="q.jsonl", schema=SCHEMA_PATH,
            run=RunOptions(), batch_size=2,
        )  # fmt: skip
    assert caught[0].filename == __file__


def test_a_deployment_saved_with_flat_parameters_still_validates() -> None:
    with pytest.warns(DeprecationWarning, match="batch_size="):
        parameters = extract_records.validate_parameters(
            {"source": [], "output": "o.jsonl", "quarantine": "q.jsonl", "chat_model": "m",
             "schema": SCHEMA_PATH, "prompt": PROMPT, "batch_size": 3, "concurrency": 2}
        )  # fmt: skip
    assert set(parameters) == {"source", "output", "quarantine", "spec", "chat_model", "run"}
    assert parameters["spec"] == ExtractionSpec(schema=SCHEMA_PATH, prompt=PROMPT)
    assert (parameters["run"].chunk_size, parameters["run"].concurrency) == (3, 2)
    with pytest.warns(DeprecationWarning, match="batch_size="):
        parameters = extract_records.validate_parameters(
            {"source": [], "output": "o.jsonl", "quarantine": "q.jsonl", "chat_model": "m",
             "spec": {"schema": SCHEMA_PATH}, "flat": {"batch_size": 3}}
        )  # fmt: skip
    assert parameters["run"].chunk_size == 3 and "flat" not in parameters
    empty = {"source": [], "output": "o.jsonl", "quarantine": "q.jsonl", "flat": {}}
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)  # nothing to fold: no warning
        assert "flat" not in extract_records.validate_parameters(empty)


def _imports(path: Path) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            modules.add(node.module)
            modules.update(f"{node.module}.{alias.name}" for alias in node.names)
    return modules


def test_flows_import_no_circle_and_only_the_public_tasks_api() -> None:
    graph = {
        path.stem: {
            name.split(".")[2]
            for name in _imports(path)
            if name.startswith("prefect_openai_chat.flows.") and name.count(".") >= 2
        }
        - {path.stem}
        for path in FLOWS.glob("*.py")
        if path.stem != "__init__"
    }
    graph = {module: {m for m in deps if m in graph} for module, deps in graph.items()}

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        return any(
            dep == goal or (dep not in seen and reaches(dep, goal, seen | {dep}))
            for dep in graph[start]
        )

    assert [m for m in graph if reaches(m, m, set())] == []
    modules = {
        node.module
        for path in FLOWS.rglob("*.py")
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.ImportFrom) and node.module
    }
    inside_tasks = {m for m in modules if m.startswith("prefect_openai_chat.tasks.")}
    assert inside_tasks == set()  # flows take what they need from `prefect_openai_chat.tasks`
