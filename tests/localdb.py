"""Read a job back from a local store (``LocalClient``), as the SDK's unit tests do."""

from __future__ import annotations

from typing import Any

from trainvis.client.local import LocalClient


def job(db: str, job_id: str) -> dict[str, Any]:
    """The job as ``GET /training/jobs/{id}`` gives it."""
    client = LocalClient(db)
    try:
        return client.get_job(job_id)
    finally:
        client.close()


def history(db: str, job_id: str, *, timestamps: bool = True) -> list[dict[str, Any]]:
    """The job's rows by step (without ``timestamp`` when ``timestamps`` is False)."""
    client = LocalClient(db)
    try:
        rows = client.history(job_id)
    finally:
        client.close()
    if timestamps:
        return rows
    return [{key: value for key, value in row.items() if key != "timestamp"} for row in rows]
