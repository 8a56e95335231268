"""The spool: a write-ahead journal per run, so that no logged row is lost.

A remote run appends every operation (rows, status changes, job edits, a job created
while the server was away) to ``<spool_dir>/<job>.<pid>.<random>.jsonl``
*before* sending it, and an ``ack`` line once the server has accepted it.
Whatever is not acknowledged when the process ends (the server stayed away,
or the process was killed) stays in the file, and
:func:`~trainvis.client.sync.sync_spool` (called
by ``trainvis sync`` and by the next :func:`trainvis.init`) replays it.
Replaying is safe: the server upserts rows by (job, metric, step).

A live run holds an exclusive ``flock`` on its journal, so a concurrent sync
skips it; the lock goes with the process. A fully acknowledged journal is
deleted.

File format, one JSON object a line::

    {"t": "run", "v": 1, "url": "...", "job_id": "...", "pid": 123, "created": 1.7e9}
    {"t": "create", "n": 1, "spec": {...}}
    {"t": "status", "n": 2, "status": "running", "message": null}
    {"t": "update", "n": 4, "fields": {"config": {...}}}
    {"t": "rows", "n": 3, "rows": [{"step": 0, "train_loss": 0.9, ...}, ...]}
    {"t": "ack", "n": 3}
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol

from trainvis.client.http import ApiError, encode_json, encode_rows

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no locking, sync may race a live run
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger("trainvis.client")
SUFFIX = ".jsonl"


class Client(Protocol):
    """What delivering an operation needs (ApiClient and LocalClient both fit)."""

    @property
    def target(self) -> str: ...

    def create_job(self, spec: dict[str, Any]) -> dict[str, Any]: ...

    def get_job(self, job_id: str) -> dict[str, Any]: ...

    def set_status(
        self, job_id: str, status: str, message: str | None = None
    ) -> dict[str, Any]: ...

    def update_job(self, job_id: str, **fields: Any) -> dict[str, Any]: ...

    def post_metrics(
        self, job_id: str, rows: list[dict[str, Any]], *, encoded: bytes | None = None
    ) -> dict[str, Any]: ...

    def close(self) -> None: ...


class JobGone(Exception):
    """The job no longer exists on the server (404): nothing left to deliver."""


class Held(Exception):
    """The server refuses us (401/403): keep everything spooled for ``trainvis sync``."""


@dataclass
class Op:
    """One journaled operation: ``create``, ``status``, ``update`` or ``rows``."""

    n: int
    kind: str
    data: dict[str, Any]
    encoded: bytes | None = None

    @property
    def row_count(self) -> int:
        return len(self.data.get("rows", ())) if self.kind == "rows" else 0

    def line(self) -> bytes:
        """The journal line of this operation."""
        if self.kind == "rows":
            if self.encoded is None:
                self.encoded = encode_rows(self.data["rows"])
            return b'{"t":"rows","n":%d,"rows":%s}\n' % (self.n, self.encoded)
        return encode_json({"t": self.kind, "n": self.n, **self.data}) + b"\n"


def default_spool_dir() -> Path:
    """``TRAINVIS_SPOOL_DIR``, else ``~/.trainvis/spool``."""
    configured = os.environ.get("TRAINVIS_SPOOL_DIR")
    return Path(configured).expanduser() if configured else Path.home() / ".trainvis" / "spool"


# --------------------------------------------------------------------------- delivery

#: Metric names the server rejected, warned about once per process.
_warned: set[str] = set()


def _strip_rejected(rows: list[dict[str, Any]], details: Any) -> list[dict[str, Any]] | None:
    """Rows without the fields a 422 names; None when ``details`` names none."""
    removed = False
    for item in details if isinstance(details, list) else []:
        loc = item.get("loc") if isinstance(item, dict) else None
        if not isinstance(loc, list) or len(loc) < 2 or not isinstance(loc[1], int):
            continue
        index = loc[1]
        if not 0 <= index < len(rows):
            continue
        key = loc[2] if len(loc) > 2 and isinstance(loc[2], str) else None
        if key is None or key == "step":
            rows[index] = {}
        else:
            rows[index].pop(key, None)
        if key not in _warned:
            _warned.add(str(key))
            log.warning("trainvis: the server rejected %r: %s", key, item.get("msg"))
        removed = True
    if not removed:
        return None
    attributes = {"step", "epoch", "timestamp"}
    return [row for row in rows if set(row) - attributes]


def _post_rows(
    client: Client, job_id: str, rows: list[dict[str, Any]], encoded: bytes | None
) -> None:
    for _attempt in range(50):  # every 422 removes at least one field
        if not rows:
            return
        try:
            client.post_metrics(job_id, rows, encoded=encoded)
            return
        except ApiError as exc:
            if exc.status_code == 413 and len(rows) > 1:
                half = len(rows) // 2
                _post_rows(client, job_id, rows[:half], None)
                _post_rows(client, job_id, rows[half:], None)
                return
            if exc.status_code != 422:
                raise
            stripped = _strip_rejected([dict(row) for row in rows], exc.details)
            if stripped is None:
                log.error("trainvis: dropped %d rows the server rejected: %s", len(rows), exc)
                return
            rows, encoded = stripped, None
    log.error("trainvis: dropped %d rows the server kept rejecting", len(rows))


def deliver(client: Client, job_id: str, op: Op) -> None:
    """Carry out ``op`` against ``client``.

    Returns when the operation is done, or can never succeed (the rejected
    part is logged and dropped).

    Raises:
        ServerUnavailable: retry later.
        JobGone: the job was deleted (404).
        Held: 401/403: keep it spooled.
    """
    try:
        if op.kind == "rows":
            _post_rows(client, job_id, op.data["rows"], op.encoded)
        elif op.kind == "create":
            try:
                client.create_job(op.data["spec"])
            except ApiError as exc:
                if exc.code != "job_exists":
                    raise
        elif op.kind == "status":
            try:
                client.set_status(job_id, op.data["status"], op.data.get("message"))
            except ApiError as exc:
                if exc.status_code != 409:
                    raise
                log.warning("trainvis: status %s not applied: %s", op.data["status"], exc)
        elif op.kind == "update":
            client.update_job(job_id, **op.data["fields"])
    except ApiError as exc:
        if exc.status_code == 404:
            raise JobGone(str(exc)) from exc
        if exc.status_code in (401, 403):
            raise Held(str(exc)) from exc
        log.error("trainvis: %s of job %s rejected, dropped: %s", op.kind, job_id, exc)


# --------------------------------------------------------------------------- journal


def lock_file(handle: IO[bytes]) -> bool:
    """Take the exclusive, non-blocking ``flock`` of a journal; False when a live run holds it."""
    if fcntl is None:
        return True
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


class Journal:
    """The append-only journal of one run; thread-safe, locked while open."""

    def __init__(self, path: Path, handle: IO[bytes], *, url: str, job_id: str) -> None:
        self.path = path
        self.url = url
        self.job_id = job_id
        self._handle: IO[bytes] | None = handle
        self._lock = threading.Lock()
        self._next_n = 1

    @classmethod
    def create(cls, spool_dir: Path, *, url: str, job_id: str) -> Journal:
        """A new journal file for ``job_id`` (the directory is created)."""
        spool_dir.mkdir(parents=True, exist_ok=True)
        path = spool_dir / f"{job_id}.{os.getpid()}.{uuid.uuid4().hex[:8]}{SUFFIX}"
        handle = path.open("ab")
        lock_file(handle)
        journal = cls(path, handle, url=url, job_id=job_id)
        header = {"t": "run", "v": 1, "url": url, "job_id": job_id, "pid": os.getpid()}
        journal._write(encode_json({**header, "created": time.time()}) + b"\n")
        return journal

    def _write(self, data: bytes) -> None:
        with self._lock:
            if self._handle is None:
                return
            self._handle.write(data)
            self._handle.flush()

    def next_n(self) -> int:
        """Reserve the next operation number."""
        with self._lock:
            n, self._next_n = self._next_n, self._next_n + 1
            return n

    def append(self, op: Op) -> None:
        """Write ``op`` (before it is sent)."""
        self._write(op.line())

    def ack(self, n: int) -> None:
        """Record that operation ``n`` was delivered."""
        self._write(b'{"t":"ack","n":%d}\n' % n)

    def close(self, *, delete: bool) -> None:
        """Sync and close the file (deleting it when nothing is left to deliver)."""
        with self._lock:
            handle, self._handle = self._handle, None
        if handle is None:
            return
        if delete:
            self.path.unlink(missing_ok=True)
        else:
            os.fsync(handle.fileno())
        handle.close()


@dataclass
class SpoolFile:
    """A journal as read back: its header and the operations not yet acknowledged."""

    path: Path
    url: str
    job_id: str
    pending: list[Op] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return sum(op.row_count for op in self.pending)


def _entries(path: Path) -> Iterator[dict[str, Any]]:
    """The journal's entries; a torn last line (the writer died mid-line) is skipped."""
    with path.open("rb") as handle:
        for raw in handle:
            try:
                entry = json.loads(raw)
            except ValueError:
                continue
            if isinstance(entry, dict):
                yield entry


def _as_op(entry: dict[str, Any]) -> Op | None:
    kind, n = entry.pop("t", None), entry.pop("n", None)
    if kind in ("rows", "create", "status", "update") and isinstance(n, int):
        return Op(n, kind, entry)
    return None


def read_journal(path: Path) -> SpoolFile | None:
    """Parse a journal: header and unacknowledged operations; None without a header."""
    header: dict[str, Any] | None = None
    ops: dict[int, Op] = {}
    for entry in _entries(path):
        kind = entry.get("t")
        if kind == "run":
            header = entry
        elif kind == "ack":
            ops.pop(entry.get("n"), None)  # type: ignore[arg-type]
        elif (op := _as_op(entry)) is not None:
            ops[op.n] = op
    if header is None:
        return None
    pending = [ops[n] for n in sorted(ops)]
    return SpoolFile(path, str(header.get("url", "")), str(header.get("job_id", "")), pending)


def read_ops_from(path: Path, first_n: int, max_rows: int) -> tuple[list[Op], bool]:
    """Operations numbered ``first_n`` or more, up to about ``max_rows`` rows (acks ignored).

    The sender reads back operations it journaled but did not keep in memory;
    none of those can have been acknowledged yet.

    Returns:
        The operations, and whether they reach the end of the file.
    """
    ops: list[Op] = []
    rows = 0
    for entry in _entries(path):
        n = entry.get("n")
        if entry.get("t") == "ack" or not isinstance(n, int) or n < first_n:
            continue
        op = _as_op(entry)
        if op is None:
            continue
        ops.append(op)
        rows += op.row_count
        if rows >= max_rows:
            return ops, False
    return ops, True


def spooled_files(spool_dir: Path) -> Iterator[Path]:
    """Journal files in ``spool_dir``, oldest first."""
    if not spool_dir.is_dir():
        return iter(())
    return iter(sorted(spool_dir.glob(f"*{SUFFIX}"), key=lambda p: p.stat().st_mtime))
