"""The Python SDK used inside training loops.

::

    import trainvis

    run = trainvis.init(name="bert-base", total_steps=1000, url="http://localhost:8000")
    for step in range(1000):
        run.log({"train_loss": loss}, step=step)
    run.finish()

It imports nothing of the server (``trainvis.api``); the store is imported
only in local mode (no ``url`` and no ``TRAINVIS_URL``).
"""

from __future__ import annotations

from typing import Any

from trainvis.client.http import ApiClient, ApiError, ServerUnavailable, TrainvisError
from trainvis.client.run import FinishResult, Run, current_run
from trainvis.client.start import ClientSettings, init
from trainvis.client.sync import SyncReport, sync_spool

__all__ = [
    "ApiClient",
    "ApiError",
    "ClientSettings",
    "FinishResult",
    "Run",
    "ServerUnavailable",
    "SyncReport",
    "TrainvisError",
    "current_run",
    "finish",
    "init",
    "log",
    "sync",
    "sync_spool",
]


def log(metrics: Any, step: int | None = None, *, epoch: float | None = None) -> None:
    """``log`` on the current run (the latest :func:`init` not finished).

    Raises:
        RuntimeError: no run is active.
    """
    run = current_run()
    if run is None:
        raise RuntimeError("no active run: call trainvis.init() first")
    run.log(metrics, step, epoch=epoch)


def finish(status: str = "completed", *, message: str | None = None) -> FinishResult:
    """``finish`` the current run; returns what is still spooled (0 without a run)."""
    run = current_run()
    return FinishResult(0) if run is None else run.finish(status, message=message)


def sync(url: str | None = None, *, token: str | None = None) -> SyncReport:
    """Upload the spool (what ``trainvis sync`` does); see :func:`sync_spool`."""
    import os

    return sync_spool(url=url, token=token or os.environ.get("TRAINVIS_TOKEN"))
