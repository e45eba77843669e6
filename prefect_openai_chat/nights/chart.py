"""The nights in a picture: one small panel per figure, night after night (matplotlib).

matplotlib draws it without a browser, a network or JavaScript: a PNG or an SVG file, an
HTML page with the SVG inline, and a Markdown artifact with the PNG as a data URI, which
the Prefect UI shows on the flow run (its Markdown artifacts run no JavaScript, so a
Vega-Lite or Plotly chart would show as text there).

Example:
    >>> from prefect_openai_chat.nights.figures import Night
    >>> nights = [Night("a", "calm-owl", None, {"records": 10.0, "valid": 9.0})]
    >>> render(nights, "svg")[:5]
    b'<?xml'
"""

from __future__ import annotations

import base64
import html
import io
from typing import Any

from prefect_openai_chat.nights.figures import FIGURES, Night

FORMATS = ("png", "svg", "html")
MISSING = "not recorded by these runs"


def _label(night: Night) -> str:
    return night.started.strftime("%m-%d %H:%M") if night.started else night.name


def render(nights: list[Night], fmt: str = "png", title: str = "extract-records") -> bytes:
    """The chart of `nights` (oldest first) as PNG or SVG bytes."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    columns = 4
    rows = -(-len(FIGURES) // columns)
    figure = Figure(figsize=(3.2 * columns, 2.6 * rows), dpi=90, layout="constrained")
    figure.suptitle(f"{title}: the last {len(nights)} nights", fontsize=12)
    axes = figure.subplots(rows, columns, squeeze=False).flatten()
    labels = [_label(night) for night in nights]
    positions = list(range(len(nights)))
    for ax, (metric, name) in zip(axes, FIGURES, strict=False):
        values = [night.get(metric) for night in nights]
        ax.set_title(name, fontsize=10)
        if all(value is None for value in values):
            ax.text(0.5, 0.5, MISSING, ha="center", va="center", fontsize=8, color="gray")
            ax.set_xticks([])
            ax.set_yticks([])
            continue
        shown = [float("nan") if value is None else value for value in values]
        if metric in ("valid_share", "p95_latency_s", "cost_usd"):
            ax.plot(positions, shown, marker="o", markersize=3, color="#2563eb")
        else:
            ax.bar(positions, shown, color="#f59e0b" if metric == "quarantined" else "#64748b")
            ax.set_ylim(0, max(1.0, *(v for v in values if v is not None)) * 1.1)
        if metric == "valid_share":
            ax.set_ylim(min(0.9, *(v for v in values if v is not None)) - 0.01, 1.005)
        step = max(1, len(nights) // 6)
        ax.set_xticks(positions[::step], labels[::step], rotation=30, ha="right", fontsize=7)
        ax.tick_params(axis="y", labelsize=7)
        ax.grid(axis="y", alpha=0.3)
    for ax in axes[len(FIGURES) :]:
        ax.axis("off")
    out = io.BytesIO()
    figure.savefig(out, format=fmt, metadata={"Date": None} if fmt == "svg" else None)
    return out.getvalue()


def markdown(nights: list[Night], title: str = "extract-records") -> str:
    """A Markdown artifact: the chart as a PNG data URI, then a table of the figures."""
    if not nights:
        return f"No completed `{title}` run with a summary artifact yet."
    png = base64.b64encode(render(nights, "png", title)).decode("ascii")
    header = "| night | run | " + " | ".join(name for _, name in FIGURES) + " |"
    rule = "|" + "---|" * (len(FIGURES) + 2)
    lines = [
        f"![{title}: the last {len(nights)} nights](data:image/png;base64,{png})",
        "",
        header,
        rule,
    ]
    for night in reversed(nights):  # the newest first, as the UI lists runs
        cells = " | ".join(_text(night.get(metric)) for metric, _ in FIGURES)
        lines.append(f"| {_label(night)} | {night.name} | {cells} |")
    return "\n".join(lines)


def page(nights: list[Night], title: str = "extract-records") -> str:
    """A self-contained HTML page: the SVG chart inline, no script, no network."""
    svg = render(nights, "svg", title).decode("utf-8") if nights else f"<p>{MISSING}</p>"
    svg = svg[svg.index("<svg") :] if "<svg" in svg else svg
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}: nights</title></head>"
        f"<body style='font-family:sans-serif'>{svg}</body></html>\n"
    )


def _text(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:g}"
