"""Issue 24: the nights in a picture, from the runs' own summary artifacts.

Two real `extract_records` runs on the simulator (the second answered by the ledger),
then the `nights_chart` flow: its figures are the runs' summaries, and its Markdown
artifact on its own flow run holds the chart as a PNG and the table of figures.
"""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pytest

from prefect_openai_chat.examples.tickets import sample_tickets_path
from prefect_openai_chat.simulator import Simulator

pytest.importorskip("matplotlib", reason="the chart needs the charts extra (matplotlib)")


@pytest.mark.usefixtures("isolated_results")
def test_nights_chart_reads_the_summaries_and_publishes_a_picture(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Night 1 meets 429s and sloppy answers; night 2 is all from the ledger."""
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from prefect_openai_chat import ChatModel, OpenAICredentials
    from prefect_openai_chat.extraction.spec import ExtractionSpec
    from prefect_openai_chat.flows import extract_records
    from prefect_openai_chat.flows.options import RunOptions
    from prefect_openai_chat.nights.chart import render
    from prefect_openai_chat.nights.flow import ARTIFACT_KEY, nights_chart
    from prefect_openai_chat.simulator.request_log import read_request_log

    source = tmp_path / "tickets.jsonl"
    source.write_text("".join(sample_tickets_path().read_text().splitlines(True)[:6]))
    spec = ExtractionSpec(
        schema="prefect_openai_chat.examples.tickets:SupportTicket",
        prompt="Subject: {subject}\n\n{body}",
        key_field="ticket_id",
    )
    run = RunOptions(cache=str(tmp_path / "ledger.sqlite"))
    log = tmp_path / "requests.jsonl"
    summaries = []
    # The flaky profile, with its 429 rate_limit_exceeded made frequent and short, and
    # answers missing fields so that some records are re-asked.
    faults = {"429": 0.3, "missing-fields": 0.3}
    with Simulator(
        profile="flaky", seed=11, fault_rates=faults, retry_after_s=0.05, request_log=str(log)
    ) as sim:
        model = ChatModel(
            credentials=OpenAICredentials(base_url=sim.base_url, api_key=sim.api_key),
            model="gpt-4o-mini-2024-07-18",
        )
        for night in (1, 2):
            caplog.clear()
            summaries.append(
                extract_records(
                    str(source),
                    str(tmp_path / f"night-{night}.jsonl"),
                    str(tmp_path / f"night-{night}.bad.jsonl"),
                    spec=spec,
                    chat_model=model,
                    run=run,
                )
            )
    sent_429 = sum(entry["status"] == 429 for entry in read_request_log(log))
    first, second = summaries
    assert sent_429 > 0 and first["http_429s"] == sent_429  # each 429 the simulator sent
    assert first["reprompted"] > 0 and first["from_cache"] == 0
    # The second night asked nothing: no re-ask, no 429, every record from the ledger.
    assert second["from_cache"] == 6
    assert (second["reprompted"], second["repaired"], second["http_429s"]) == (0, 0, 0)
    # The chunk's log line and the run's say it in the same words.
    said = [
        r.getMessage() for r in caplog.records if "6 from the ledger (all of them" in r.getMessage()
    ]
    assert [m.split(":")[0] for m in said] == ["extract SupportTicket chunk", "extract-records"]

    figures = nights_chart(last=2)
    assert [f["records"] for f in figures] == [6.0, 6.0]
    assert [f["from_cache"] for f in figures] == [0.0, 6.0]  # oldest first
    assert [f["http_429s"] for f in figures] == [float(sent_429), 0.0]
    assert [f["reprompted"] for f in figures] == [float(first["reprompted"]), 0.0]
    assert [f["cost_usd"] for f in figures] == [s["cost_usd"] for s in summaries]
    assert figures[0]["valid_share"] == first["valid"] / 6

    with get_client(sync_client=True) as client:
        (artifact, *_) = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[ARTIFACT_KEY])),
            sort="CREATED_DESC",
            limit=1,
        )
    text = str(artifact.data)
    png = base64.b64decode(re.search(r"data:image/png;base64,([A-Za-z0-9+/=]+)", text)[1])
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
    assert "| night | run | cost (USD) |" in text and text.count("\n| ") == 2 + 1  # 2 nights

    from prefect_openai_chat.nights.figures import read_nights

    assert render(read_nights(last=2), "svg").startswith(b"<?xml")


def test_a_summary_without_429s_shows_the_panel_as_not_recorded() -> None:
    """An artifact written before the summary counted 429 answers: no figure, not 0."""
    from prefect_openai_chat.nights.chart import markdown
    from prefect_openai_chat.nights.figures import FIGURES, night_from_rows

    rows = [{"metric": "records", "value": "6"}, {"metric": "retries", "value": "2"}]
    old = night_from_rows("run-1", "old-night", None, rows)
    assert old.get("http_429s") is None and old.get("retries") == 2.0
    cells = markdown([old]).splitlines()[-1].strip("| ").split(" | ")[2:]
    shown = {name: cell for (_, name), cell in zip(FIGURES, cells, strict=True)}
    assert (shown["429 answers"], shown["in-call retries"]) == ("-", "2")


def test_nights_output_of_another_kind_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from prefect_openai_chat.cli import main

    assert main(["nights", "--output", "nights.xlsx"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "prefect-openai-chat nights: error: --output 'nights.xlsx': use .html, .svg or .png"
        " as the extension, e.g. nights.html"
    ]
