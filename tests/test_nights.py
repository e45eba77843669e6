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
def test_nights_chart_reads_the_summaries_and_publishes_a_picture(tmp_path: Path) -> None:
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from prefect_openai_chat import ChatModel, OpenAICredentials
    from prefect_openai_chat.flows import extract_records
    from prefect_openai_chat.nights.chart import render
    from prefect_openai_chat.nights.flow import ARTIFACT_KEY, nights_chart

    source = tmp_path / "tickets.jsonl"
    source.write_text("".join(sample_tickets_path().read_text().splitlines(True)[:6]))
    summaries = []
    with Simulator(profile="ideal", seed=11) as sim:
        model = ChatModel(
            credentials=OpenAICredentials(base_url=sim.base_url, api_key=sim.api_key),
            model="gpt-4o-mini-2024-07-18",
        )
        for night in (1, 2):
            summaries.append(
                extract_records(
                    source=str(source),
                    schema="prefect_openai_chat.examples.tickets:SupportTicket",
                    chat_model=model,
                    prompt="Subject: {subject}\n\n{body}",
                    output=str(tmp_path / f"night-{night}.jsonl"),
                    quarantine=str(tmp_path / f"night-{night}.bad.jsonl"),
                    key_field="ticket_id",
                    cache=str(tmp_path / "ledger.sqlite"),
                )
            )
    assert summaries[1]["from_cache"] == 6  # the second night came from the ledger

    figures = nights_chart(last=2)
    assert [f["records"] for f in figures] == [6.0, 6.0]
    assert [f["from_cache"] for f in figures] == [0.0, 6.0]  # oldest first
    assert [f["cost_usd"] for f in figures] == [s["cost_usd"] for s in summaries]
    assert figures[0]["valid_share"] == summaries[0]["valid"] / 6

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
