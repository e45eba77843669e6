"""Serve the nightly ticket extraction from one process: no work pool, no worker.

The schedule, concurrency limit and parameters come from `deployments/prefect.yaml`,
so the served deployment and the work-pool deployment never drift apart. It is served
under a name of its own, `extract-records/nightly-served`: serving under the name
`prefect deploy` used would replace that deployment (and its pull steps, so the next
worker run would fail), and stopping `serve.py` pauses the deployment it served.
Paths in the parameters are relative to the repository root; `main` runs from there.

Usage (the ChatModel block "nightly-chat-model" must exist, see deployments/README.md):
    python deployments/serve.py          # serve; a run every night at 02:00 Europe/Berlin
    python deployments/serve.py --once   # run the flow once now, in this process, and exit

Example:
    >>> import importlib.util, pathlib
    >>> spec = importlib.util.spec_from_file_location("serve", pathlib.Path("deployments/serve.py"))
    >>> serve = importlib.util.module_from_spec(spec); spec.loader.exec_module(serve)
    >>> config = serve.load_deployment_config()
    >>> [(s.cron, s.timezone) for s in serve.schedules_of(config)]
    [('0 2 * * *', 'Europe/Berlin')]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import yaml
from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
from prefect.schedules import Cron, Schedule

if TYPE_CHECKING:
    from prefect import Flow
    from prefect.deployments.runner import RunnerDeployment

PROJECT_ROOT = Path(__file__).resolve().parent.parent
PREFECT_YAML = Path(__file__).resolve().with_name("prefect.yaml")
DEPLOYMENT_NAME = "nightly-ticket-extraction"  # in prefect.yaml, run by a worker
SERVED_NAME = "nightly-served"  # served by this script; never the worker's deployment


def load_deployment_config(
    path: Path = PREFECT_YAML, name: str = DEPLOYMENT_NAME
) -> dict[str, Any]:
    """The deployment called `name` in the project file at `path`, as a dict."""
    try:
        project = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise SystemExit(f"cannot read the Prefect project file {path}: {exc}") from exc
    for deployment in project.get("deployments") or []:
        if deployment.get("name") == name:
            return dict(deployment)
    names = [d.get("name") for d in project.get("deployments") or []]
    raise SystemExit(f"no deployment named {name!r} in {path}; it has {names}")


def schedules_of(config: dict[str, Any]) -> list[Schedule]:
    """The cron schedules of a deployment config, with their time zones."""
    out = []
    for item in config.get("schedules") or []:
        if "cron" not in item:
            raise SystemExit(f"serve.py handles cron schedules only, got {item!r}")
        out.append(
            Cron(item["cron"], timezone=item.get("timezone"), active=item.get("active", True))
        )
    return out


def concurrency_of(config: dict[str, Any]) -> ConcurrencyLimitConfig | None:
    """The deployment's concurrency limit (`1` means runs never overlap)."""
    limit = config.get("concurrency_limit")
    if limit is None:
        return None
    if isinstance(limit, int):
        return ConcurrencyLimitConfig(limit=limit)
    strategy = limit.get("collision_strategy") or "ENQUEUE"
    return ConcurrencyLimitConfig(
        limit=limit["limit"], collision_strategy=ConcurrencyLimitStrategy(strategy)
    )


def build_deployment(
    config: dict[str, Any] | None = None,
    flow: Flow[..., Any] | None = None,
    name: str = SERVED_NAME,
) -> RunnerDeployment:
    """`extract_records` (or `flow`) deployed as `name`, with the schedule etc. of `config`."""
    config = config or load_deployment_config()
    if flow is None:
        from prefect_openai_chat.flows.extract_records import extract_records

        flow = extract_records
    deployment = flow.to_deployment(
        name=name,
        schedules=schedules_of(config),
        concurrency_limit=concurrency_of(config),
        parameters=dict(config.get("parameters") or {}),
        description=config.get("description"),
        tags=list(config.get("tags") or []),
    )
    return cast("RunnerDeployment", deployment)  # a sync flow's to_deployment is not awaited


def main(argv: list[str] | None = None) -> int:
    """Serve the deployment until interrupted, or run the flow once with `--once`."""
    parser = argparse.ArgumentParser(description="Serve the nightly ticket extraction.")
    parser.add_argument(
        "--once", action="store_true", help="run the flow once now with the same parameters"
    )
    parser.add_argument(
        "--prefect-file", type=Path, default=PREFECT_YAML, help="the Prefect project file"
    )
    args = parser.parse_args(argv)
    config = load_deployment_config(args.prefect_file)
    os.chdir(PROJECT_ROOT)  # the parameters' paths are relative to the repository root
    if args.once:
        from prefect_openai_chat.flows.extract_records import extract_records

        result = extract_records(**config.get("parameters", {}))
        print(result)
        return 0
    from prefect import serve

    serve(build_deployment(config))
    return 0


if __name__ == "__main__":
    sys.exit(main())
