"""The figures of past nights, read back from their `extract-records-summary` artifacts.

Every `extract_records` run ends with a summary table artifact (metric, value); a night
here is one flow run's table, so the chart needs nothing the runs did not already save.

Example:
    >>> night = night_from_rows("run-1", "silly-fox", None, [
    ...     {"metric": "records", "value": "300"}, {"metric": "valid", "value": "297"},
    ...     {"metric": "quarantined", "value": "3"}, {"metric": "cost_usd", "value": "0.0412"},
    ...     {"metric": "p95_latency_s", "value": "None"}])
    >>> night.valid_share, night.quarantined, night.p95_latency_s
    (0.99, 3.0, None)
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

SUMMARY_KEY = "extract-records-summary"
FIGURES = (
    ("cost_usd", "cost (USD)"),
    ("valid_share", "valid share"),
    ("quarantined", "quarantined records"),
    ("reprompted", "re-asked records"),
    ("http_429s", "429 answers"),
    ("retries", "in-call retries"),
    ("p95_latency_s", "latency p95 (s)"),
    ("from_cache", "from the ledger (no call)"),
)
"""What the chart shows, one panel each: the summary's metric and its title."""


@dataclass(frozen=True)
class Night:
    """One run's figures (None: the run's summary did not record it)."""

    run_id: str
    name: str
    started: datetime | None
    metrics: dict[str, float | None] = field(default_factory=dict)

    def get(self, metric: str) -> float | None:
        """A figure by its summary name, or `valid_share` (valid / records)."""
        if metric == "valid_share":
            return self.valid_share
        return self.metrics.get(metric)

    @property
    def valid_share(self) -> float | None:
        records, valid = self.metrics.get("records"), self.metrics.get("valid")
        return None if not records or valid is None else round(valid / records, 4)

    @property
    def quarantined(self) -> float | None:
        return self.metrics.get("quarantined")

    @property
    def p95_latency_s(self) -> float | None:
        return self.metrics.get("p95_latency_s")


def _number(text: Any) -> float | None:
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def night_from_rows(
    run_id: str, name: str, started: datetime | None, rows: list[dict[str, Any]]
) -> Night:
    """A night from the rows of a summary table artifact."""
    metrics = {str(row.get("metric")): _number(row.get("value")) for row in rows}
    return Night(run_id, name, started, metrics)


def _rows(data: Any) -> list[dict[str, Any]]:
    """A table artifact's rows, whether the API hands them as JSON text or as a list."""
    if isinstance(data, str):
        data = json.loads(data)
    return [row for row in data if isinstance(row, dict)] if isinstance(data, list) else []


def read_nights(
    flow_name: str = "extract-records", deployment: str | None = None, last: int = 30
) -> list[Night]:
    """The last `last` completed runs of `flow_name` (of `deployment`, "flow/deployment"
    or its name, when given) that have a summary, oldest first."""
    from prefect import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        ArtifactFilterKey,
        DeploymentFilter,
        DeploymentFilterName,
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.client.schemas.sorting import FlowRunSort

    deployment_filter = None
    if deployment:
        name = deployment.split("/", 1)[-1]
        deployment_filter = DeploymentFilter(name=DeploymentFilterName(any_=[name]))
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=[flow_name])),
            deployment_filter=deployment_filter,
            flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.COMPLETED]))
            ),
            sort=FlowRunSort.START_TIME_DESC,
            limit=last,
        )
        if not runs:
            return []
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=[SUMMARY_KEY]),
                flow_run_id=ArtifactFilterFlowRunId(any_=[run.id for run in runs]),
            )
        )
    tables = {artifact.flow_run_id: _rows(artifact.data) for artifact in artifacts}
    nights = [
        night_from_rows(str(run.id), run.name, run.start_time, tables[run.id])
        for run in runs
        if run.id in tables
    ]
    return sorted(nights, key=lambda n: (n.started is None, n.started or datetime.min))
