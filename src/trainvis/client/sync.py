"""``trainvis sync``: replay the spool's unacknowledged operations.

Each journal that no live run holds (its ``flock`` is free) is read back, its
pending operations are delivered in order, an ``ack`` line is appended after
each, and a journal with nothing left is deleted. Replaying is safe: the
server upserts rows by (job, metric, step), ignores a ``create`` of a job that
exists and treats a repeated status as a no-op.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from trainvis.client.http import ApiClient, ServerUnavailable
from trainvis.client.spool import (
    Client,
    Held,
    JobGone,
    default_spool_dir,
    deliver,
    lock_file,
    read_journal,
    spooled_files,
)


@dataclass
class SyncReport:
    """What :func:`sync_spool` did."""

    uploaded_rows: int = 0
    files_done: int = 0
    files_left: list[str] = field(default_factory=list)
    skipped_live: int = 0
    messages: list[str] = field(default_factory=list)


def _sync_one(path: Path, handle: IO[bytes], client: Client, report: SyncReport) -> bool:
    spool = read_journal(path)
    if spool is None:
        report.messages.append(f"{path.name}: no header, left alone")
        return False
    if handle.seek(0, os.SEEK_END) and not _ends_with_newline(path):
        handle.write(b"\n")
    try:
        for op in spool.pending:
            deliver(client, spool.job_id, op)
            handle.write(b'{"t":"ack","n":%d}\n' % op.n)
            handle.flush()
            report.uploaded_rows += op.row_count
    except JobGone:
        report.messages.append(f"{path.name}: job {spool.job_id} no longer exists; dropped")
    except (ServerUnavailable, Held) as exc:
        report.messages.append(f"{path.name}: {exc}")
        return False
    return True


def _ends_with_newline(path: Path) -> bool:
    with path.open("rb") as handle:
        handle.seek(-1, os.SEEK_END)
        return handle.read(1) == b"\n"


def sync_spool(
    spool_dir: Path | None = None,
    *,
    url: str | None = None,
    only_url: str | None = None,
    token: str | None = None,
    client_factory: Callable[[str], Client] | None = None,
) -> SyncReport:
    """Upload every journal in ``spool_dir`` that no live run holds.

    Args:
        url: send everything to this server instead of the one each run used.
        only_url: sync only journals of runs that logged to this server.
        token: bearer token for the uploads.
        client_factory: builds the client for a server root (tests).

    Returns:
        A report; files that could not be completed stay for the next sync.
    """
    spool_dir = spool_dir or default_spool_dir()
    factory = client_factory or (lambda root: ApiClient(root, token=token))
    clients: dict[str, Client] = {}
    report = SyncReport()
    try:
        for path in spooled_files(spool_dir):
            _sync_path(path, url, only_url, factory, clients, report)
    finally:
        for client in clients.values():
            client.close()
    return report


def _sync_path(
    path: Path,
    url: str | None,
    only_url: str | None,
    factory: Callable[[str], Client],
    clients: dict[str, Client],
    report: SyncReport,
) -> None:
    try:
        handle = path.open("ab")
    except OSError as exc:
        report.messages.append(f"{path.name}: {exc}")
        return
    with handle:
        if not lock_file(handle):
            report.skipped_live += 1
            return
        spool = read_journal(path)
        if spool is None or (only_url and spool.url.rstrip("/") != only_url.rstrip("/")):
            return
        target = (url or spool.url).rstrip("/")
        if target not in clients:
            clients[target] = factory(target)
        if _sync_one(path, handle, clients[target], report):
            path.unlink(missing_ok=True)
            report.files_done += 1
        else:
            report.files_left.append(str(path))
