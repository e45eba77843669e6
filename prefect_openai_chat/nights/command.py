"""`prefect-openai-chat nights`: the last nights of a flow, as a chart file and in the UI."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

EXAMPLES = """examples:
  prefect-openai-chat nights                                  # extract-records, last 30
  prefect-openai-chat nights --last 60 --output nights.html   # .html, .svg or .png
  prefect-openai-chat nights --deployment nightly-ticket-extraction --output nights.png

The figures come from each run's `extract-records-summary` artifact on the Prefect API
(PREFECT_API_URL); the chart is also saved on this command's own flow run
(extract-records-nights) as a Markdown artifact, shown in the Prefect UI."""


def add_parser(commands: Any) -> argparse.ArgumentParser:
    """Register `nights` on the CLI's subparsers."""
    parser = commands.add_parser(
        "nights",
        help="chart the last nights of a flow: cost, valid share, quarantined, re-asks, latency",
        description="Chart the last completed runs of a flow (cost, valid share, quarantined,"
        " re-asks, 429s, retries, p95 latency) from their summary artifacts.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--flow", default="extract-records", help="the flow's name (default extract-records)"
    )
    parser.add_argument("--deployment", help="only the runs of this deployment")
    parser.add_argument(
        "--last", type=int, default=30, metavar="N", help="how many nights (default 30)"
    )
    parser.add_argument(
        "--output", metavar="FILE", help="write the chart here too: .html, .svg or .png"
    )
    parser.set_defaults(handler=run)
    return parser  # type: ignore[no-any-return]


def check_output(output: str | None) -> str | None:
    """The chart format of `output` (None without one); InvalidInputError for another kind."""
    from prefect_openai_chat.errors import InvalidInputError
    from prefect_openai_chat.nights.chart import FORMATS

    if output is None:
        return None
    fmt = Path(output).suffix.lower().lstrip(".")
    if fmt not in FORMATS:
        raise InvalidInputError(
            f"--output {output!r}: use .html, .svg or .png as the extension, e.g. nights.html"
        )
    return fmt


def check_charting() -> None:
    """InvalidInputError saying what to install when matplotlib is missing."""
    from prefect_openai_chat.errors import InvalidInputError

    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise InvalidInputError(
            "the chart needs matplotlib: pip install 'prefect-openai-chat[charts]'"
        ) from None


def run(args: argparse.Namespace) -> int:
    """Read the nights, publish the chart artifact, write the file, print the figures."""
    from prefect_openai_chat.demo import prefect_api, prefect_session, quiet_prefect_environment
    from prefect_openai_chat.errors import InvalidInputError

    if args.last < 1:
        raise InvalidInputError("--last must be at least 1")
    fmt = check_output(args.output)
    check_charting()
    quiet_prefect_environment()
    from prefect_openai_chat.nights.chart import page, render
    from prefect_openai_chat.nights.figures import read_nights
    from prefect_openai_chat.nights.flow import nights_chart

    with prefect_session():
        figures = nights_chart(args.flow, args.deployment, args.last)
        nights = read_nights(args.flow, args.deployment, args.last) if fmt else []
    _print(figures, args.flow)
    print(f"Prefect API: {prefect_api()}; the chart is on the extract-records-nights flow run")
    if fmt and args.output:
        title = f"{args.flow}/{args.deployment}" if args.deployment else args.flow
        data = page(nights, title).encode("utf-8") if fmt == "html" else render(nights, fmt, title)
        Path(args.output).write_bytes(data)
        print(f"chart: {args.output}")
    return 0


def _print(figures: list[dict[str, Any]], flow_name: str) -> None:
    from rich.console import Console
    from rich.table import Table

    from prefect_openai_chat.nights.figures import FIGURES

    table = Table(title=f"{flow_name}: the last {len(figures)} nights")
    table.add_column("run")
    for _, name in FIGURES:
        table.add_column(name, justify="right")
    for night in figures:
        cells = [night.get(metric) for metric, _ in FIGURES]
        table.add_row(night["name"], *("-" if c is None else f"{c:g}" for c in cells))
    Console().print(table)
