"""Work-pool helpers shared by the tests that run shards on `prefect worker` processes.

A `process` work pool created through the API, workers started as process groups of
their own, and the SIGKILL of a worker with everything it started (as a lost machine
would stop them).
"""

from __future__ import annotations

import contextlib
import signal
import subprocess

import psutil


def create_process_pool(name: str) -> None:
    """What `prefect work-pool create NAME --type process` does, minus its registry lookup
    (call inside `PrefectServer.settings()`)."""
    from prefect import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.workers.process import ProcessWorker

    template = ProcessWorker.get_default_base_job_template()
    with get_client(sync_client=True) as client:
        client.create_work_pool(
            WorkPoolCreate(name=name, type="process", base_job_template=template),
            overwrite=True,
        )


def kill_tree(pid: int) -> None:
    """SIGKILL a process and everything it started, as a lost machine would stop them."""
    try:
        parent = psutil.Process(pid)
        family = [*parent.children(recursive=True), parent]
    except psutil.NoSuchProcess:
        return
    for process in family:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.send_signal(signal.SIGKILL)


def worker_of(pid: int, workers: list[subprocess.Popen[bytes]]) -> subprocess.Popen[bytes] | None:
    """The worker among `workers` that started process `pid`."""
    try:
        ancestors = {p.pid for p in psutil.Process(pid).parents()}
    except psutil.NoSuchProcess:
        return None
    return next((w for w in workers if w.pid in ancestors), None)
