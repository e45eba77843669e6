"""`nights_chart`: a flow that charts the last nights of a flow and shows it in the UI.

Run it from the command line (`prefect-openai-chat nights`), or deploy it on a schedule
after the nightly run: each of its flow runs carries the chart as a Markdown artifact
(key `extract-records-nights`), and the artifact's page in the UI shows its latest.
"""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.artifacts import create_markdown_artifact

from prefect_openai_chat.nights.chart import markdown
from prefect_openai_chat.nights.figures import Night, read_nights

ARTIFACT_KEY = "extract-records-nights"


@flow(name="extract-records-nights")
def nights_chart(
    flow_name: str = "extract-records", deployment: str | None = None, last: int = 30
) -> list[dict[str, Any]]:
    """Chart the last `last` completed runs of `flow_name` (of `deployment` when given)
    as a Markdown artifact on this flow run; returns each night's figures, oldest first."""
    nights = read_nights(flow_name, deployment, last)
    title = f"{flow_name}/{deployment}" if deployment else flow_name
    create_markdown_artifact(
        markdown(nights, title),
        key=ARTIFACT_KEY,
        description=f"The last {len(nights)} nights of {title}: cost, valid share,"
        " quarantined, re-asks, 429s, retries, p95 latency.",
    )
    return [_as_dict(night) for night in nights]


def _as_dict(night: Night) -> dict[str, Any]:
    return {
        "run_id": night.run_id,
        "name": night.name,
        "started": night.started.isoformat() if night.started else None,
        "valid_share": night.valid_share,
        **night.metrics,
    }
