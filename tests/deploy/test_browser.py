"""The demo's run, as a person sees it in the Prefect UI, in headless Chromium.

`prefect-openai-chat demo` runs against a real `prefect server start`; the test opens
the flow run's page (the link the run logs), goes to its artifacts, opens the summary
table and checks that it shows the record counts the demo printed. Screenshots go to
the test's tmp folder and to `out/screenshots/` of the repository.

Chromium is Debian's (`scripts/install_browser.sh`), driven by Playwright through its
path; no browser is ever downloaded. Without it the test is skipped, unless
REQUIRE_BROWSER=1 (CI), which makes it fail instead.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from server_support import REPO_ROOT, PrefectServer, summary_artifact

pytestmark = pytest.mark.slow

CHROMIUM = Path(os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    # Loopback only: no name lookups for Google's hosts (sign-in, updates, autofill), which
    # Chromium tries even with background networking off. Its IPv6 reachability probe (a
    # UDP connect() to a public address, which sends no packet) remains.
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
RECORDS = 30
UI_TIMEOUT_MS = 45_000
SCREENSHOTS = REPO_ROOT / "out" / "screenshots"


def missing_browser() -> str | None:
    """Why the browser test cannot run here, or None."""
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is missing: run `bash scripts/install_browser.sh` (Debian's chromium)"
    if importlib.util.find_spec("playwright") is None:
        return "the playwright package is missing: pip install -e '.[test]'"
    return None


@pytest.fixture(scope="session")
def chromium() -> Path:
    """Debian's Chromium; skips without it (or without playwright), fails if REQUIRE_BROWSER=1.

    Session-scoped and requested first, so a skip or failure comes before the server starts.
    """
    missing = missing_browser()
    if missing:
        if os.environ.get("REQUIRE_BROWSER") == "1":
            pytest.fail(f"REQUIRE_BROWSER=1 but {missing}")
        pytest.skip(missing)
    return CHROMIUM


def run_demo(server: PrefectServer, output: Path) -> dict[str, Any]:
    """`prefect-openai-chat demo --simulate --records 30` against the test server."""
    command = [
        sys.executable, "-m", "prefect_openai_chat.cli", "demo",
        "--simulate", "--records", str(RECORDS), "--output", str(output),
    ]  # fmt: skip
    done = subprocess.run(
        command,
        cwd=output.parent,
        env=server.env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, f"the demo failed:\n{done.stdout}\n{done.stderr}"
    summary: dict[str, Any] = json.loads((output / "summary.json").read_text())
    return summary


def find_demo_run(output: Path) -> Any:
    """The demo's flow run on the server: the extract-records run that wrote to `output`."""
    from prefect import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=["extract-records"]))
        )
    mine = [r for r in runs if r.parameters.get("output") == str(output / "tickets.jsonl")]
    assert len(mine) == 1, f"expected one demo run writing to {output}, found {len(mine)}"
    return mine[0]


def table_rows(page: Any) -> dict[str, str]:
    """The rendered artifact table, as {metric: value}, read from the page's cells."""
    cells: list[list[str]] = page.eval_on_selector_all(
        "table tbody tr",
        "rows => rows.map(r => Array.from(r.querySelectorAll('td')).map(c => c.innerText.trim()))",
    )
    return {row[0]: row[1] for row in cells if len(row) >= 2}


@contextlib.contextmanager
def browser_page(chromium: Path, tmp_path: Path) -> Iterator[Any]:
    """A page of headless Chromium with a fresh, empty profile; closed after."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),
            executable_path=str(chromium),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1400, "height": 1000},
        )
        try:
            context.set_default_timeout(UI_TIMEOUT_MS)
            yield context.new_page()
        finally:
            context.close()


def save_screenshot(page: Any, folder: Path, name: str) -> Path:
    """Screenshot the page into `folder`, and copy it to out/screenshots/ of the repository."""
    path = folder / name
    page.screenshot(path=str(path), full_page=True)
    try:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, SCREENSHOTS / name)
    except OSError:  # a read-only checkout still has the copy in tmp
        pass
    return path


def test_flow_run_page_shows_the_summary_artifact(
    chromium: Path, prefect_server: PrefectServer, tmp_path: Path
) -> None:
    timings: dict[str, float] = {}
    mark = time.perf_counter()
    output = tmp_path / "demo"
    printed = run_demo(prefect_server, output)
    timings["demo"] = time.perf_counter() - mark
    assert printed["records"] == RECORDS
    assert printed["valid"] + printed["quarantined"] == RECORDS

    with prefect_server.settings():
        flow_run = find_demo_run(output)
        artifact = summary_artifact(flow_run.id)
    assert flow_run.state is not None and flow_run.state.is_completed()
    # The artifact on the server says what the demo printed.
    expected = {
        "records": str(RECORDS),
        "valid": str(printed["valid"]),
        "quarantined": str(printed["quarantined"]),
    }
    assert {k: artifact.rows[k] for k in expected} == expected

    with browser_page(chromium, tmp_path) as page:
        # The flow run's page: the link the run logs ("View at ...").
        page.goto(f"{prefect_server.url}/runs/flow-run/{flow_run.id}")
        page.get_by_text(flow_run.name, exact=True).first.wait_for()
        page.get_by_text("Completed", exact=True).first.wait_for()
        page.get_by_text("Artifacts", exact=True).first.click()
        card = page.locator("a", has_text="extract-records-summary").first
        card.wait_for()
        for key in ("extract-records-progress", "extract-records-quarantine"):
            page.get_by_text(key, exact=True).first.wait_for()
        save_screenshot(page, tmp_path, "flow-run.png")
        timings["run page"] = time.perf_counter() - mark

        # The summary artifact, opened from the run's page, renders as a table.
        card.click()
        page.wait_for_url(f"**/artifacts/artifact/{artifact.id}")
        page.locator("table tbody tr", has_text="quarantined").first.wait_for()
        shown = table_rows(page)
        page.get_by_text(flow_run.name, exact=True).first.wait_for()  # links back to the run
        shot = save_screenshot(page, tmp_path, "summary-artifact.png")
        timings["artifact page"] = time.perf_counter() - mark

    assert shown["records"] == str(RECORDS)
    assert int(shown["valid"]) + int(shown["quarantined"]) == RECORDS
    assert {k: shown[k] for k in expected} == expected
    assert shown == artifact.rows  # every metric the server holds, as rendered
    assert shot.stat().st_size > 10_000
    print("timings (s, cumulative):", {k: round(v, 1) for k, v in timings.items()})


def test_the_nights_chart_renders_on_its_flow_run(
    chromium: Path, prefect_server: PrefectServer, tmp_path: Path
) -> None:
    """Issue 24: two demo nights, `prefect-openai-chat nights`, and the chart as a person
    sees it on the nights flow run's artifact page: an image the browser decoded."""
    pytest.importorskip("matplotlib", reason="the chart needs the charts extra (matplotlib)")
    for night in (1, 2):
        run_demo(prefect_server, tmp_path / f"night-{night}")
    chart = tmp_path / "nights.png"
    done = subprocess.run(
        [sys.executable, "-m", "prefect_openai_chat.cli", "nights", "--last", "2",
         "--output", str(chart)],
        cwd=tmp_path, env=prefect_server.env, stdin=subprocess.DEVNULL,
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert done.returncode == 0, f"nights failed:\n{done.stdout}\n{done.stderr}"
    assert chart.read_bytes().startswith(b"\x89PNG")
    with prefect_server.settings():
        from prefect import get_client
        from prefect.client.schemas.filters import (
            ArtifactFilter,
            ArtifactFilterFlowRunId,
            FlowFilter,
            FlowFilterName,
        )

        with get_client(sync_client=True) as client:
            (nights_run,) = client.read_flow_runs(
                flow_filter=FlowFilter(name=FlowFilterName(any_=["extract-records-nights"])),
                limit=1,
            )
            (artifact,) = client.read_artifacts(
                artifact_filter=ArtifactFilter(
                    flow_run_id=ArtifactFilterFlowRunId(any_=[nights_run.id])
                )
            )
    with browser_page(chromium, tmp_path) as page:
        page.goto(f"{prefect_server.url}/runs/flow-run/{nights_run.id}")
        page.get_by_text(nights_run.name, exact=True).first.wait_for()
        page.get_by_text("Artifacts", exact=True).first.click()
        card = page.locator(f"a[href*='/artifacts/artifact/{artifact.id}']").first
        card.wait_for()
        card.click()
        page.wait_for_url(f"**/artifacts/artifact/{artifact.id}")
        image = page.locator("img[alt*='the last 2 nights']").first
        image.wait_for()
        width = image.evaluate("img => img.complete ? img.naturalWidth : 0")
        page.locator("table tbody tr").first.wait_for()
        shot = save_screenshot(page, tmp_path, "nights-artifact.png")
    assert width > 800  # decoded and drawn, not a broken-image icon
    assert shot.stat().st_size > 30_000
