"""Cross-replica realtime over PostgreSQL ``LISTEN/NOTIFY``.

Several API replicas share one database; a row stored through replica A must
reach SSE subscribers on replica B. :class:`PostgresBroker` is the in-process
broker plus two connections of its own:

- *publishing*: events are delivered to local subscribers at once (exactly as
  :class:`~trainvis.realtime.broker.InProcessBroker` does) and queued for a
  notifier task, which sends them with ``pg_notify`` after the write committed.
  A notification carries only ``(job_id, seq)`` for rows (the newest seq of a
  batch; several batches of a job waiting together collapse into one), or the
  small status / alert / deleted event: payloads stay far below PostgreSQL's
  8,000-byte limit (an alert too long for it travels as its id, and receivers
  read it from the store). Each replica tags its notifications with a random origin id and skips
  its own.
- *listening* (``application_name='trainvis-listener'``): a row notification is
  delivered as a row *without bytes*, so the subscriptions read the rows from
  the store (``rows_since``), which is what keeps resume lossless. When the
  connection drops, it reconnects with backoff, ``LISTEN``\\ s again and then
  tells every local subscription the job's newest stored seq: whatever was
  committed while nobody listened is read from the store, nothing is lost.

Both connections are the broker's own (not pooled) and are replaced whenever
they fail, whatever they were doing; the backoff is capped at a second, so
after a restart or a cut of every connection the pair is live again within
about a second of the database answering.

A notification lost between replicas therefore delays rows (until the next
notification of that job, or the next reconnect) but never drops them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Sequence
from typing import Any

import anyio
import orjson
import psycopg
from psycopg import sql

from trainvis.config import Settings
from trainvis.errors import JobNotFound
from trainvis.models import JobStatus, StatusChange
from trainvis.realtime.broker import COALESCE_WINDOW, PAGE_SIZE, InProcessBroker
from trainvis.realtime.sse import alert_event, deleted_event, status_event
from trainvis.realtime.subscription import ALERT, DELETED, ROW, STATUS, Item
from trainvis.store.base import MetricStore, StoreError

log = logging.getLogger("trainvis.realtime")

CHANNEL = "trainvis_events"
LISTENER_NAME = "trainvis-listener"
NOTIFIER_NAME = "trainvis-notifier"
#: PostgreSQL rejects payloads of 8,000 bytes or more; stay well below.
MAX_PAYLOAD = 7000


class PostgresBroker(InProcessBroker):
    """A :class:`~trainvis.realtime.broker.Broker` that fans out across replicas."""

    def __init__(
        self,
        store: MetricStore,
        url: str,
        *,
        channel: str = CHANNEL,
        queue_size: int = 1024,
        coalesce_window: float = COALESCE_WINDOW,
        page_size: int = PAGE_SIZE,
        handle_signals: bool = True,
        reconnect_delay: float = 0.2,
        max_reconnect_delay: float = 1.0,
        health_interval: float = 5.0,
    ) -> None:
        super().__init__(
            store,
            queue_size=queue_size,
            coalesce_window=coalesce_window,
            page_size=page_size,
            handle_signals=handle_signals,
            poll_interval=0.0,  # LISTEN/NOTIFY tells every replica about every row
        )
        from trainvis.store.postgres import normalize_url

        self.url = normalize_url(url)
        self.channel = channel
        self.origin = uuid.uuid4().hex[:12]
        self.reconnect_delay = reconnect_delay
        self.max_reconnect_delay = max_reconnect_delay
        self.health_interval = health_interval
        #: Backend pid of the listening connection (None while disconnected).
        self.listener_pid: int | None = None
        #: Times the listener (re)connected; 1 after a clean start.
        self.connects = 0
        self._outbox: list[dict[str, Any]] = []
        self._pending_rows: dict[str, dict[str, Any]] = {}
        self._outbox_ready: asyncio.Event | None = None
        self._listening: asyncio.Event | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Start the listener and notifier; waits (up to 5 s) until it listens."""
        await super().start()
        self._loop = asyncio.get_running_loop()
        self._outbox_ready = asyncio.Event()
        self._listening = asyncio.Event()
        self._tasks = [
            asyncio.create_task(self._listen_forever(), name="trainvis-pg-listener"),
            asyncio.create_task(self._notify_forever(), name="trainvis-pg-notifier"),
        ]
        if self._outbox:
            self._outbox_ready.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._listening.wait(), 5.0)

    async def stop(self) -> None:
        """Send what is queued (up to 2 s), stop both connections, close every stream."""
        if self._outbox and self._listening is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._drained(), 2.0)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        self.listener_pid = None
        await super().stop()

    async def _drained(self) -> None:
        while self._outbox:
            await asyncio.sleep(0.01)

    # ------------------------------------------------------------ publishing

    def publish_rows(self, job_id: str, rows: Sequence[tuple[int, dict[str, Any]]]) -> None:
        """Deliver locally and announce the batch's newest seq to other replicas."""
        super().publish_rows(job_id, rows)
        last = _last_seq(rows)
        if last <= 0:
            return
        pending = self._pending_rows.get(job_id)
        if pending is not None:  # still unsent: one notification carries both
            pending["s"] = max(pending["s"], last)
            return
        event = {"k": "rows", "j": job_id, "s": last}
        self._pending_rows[job_id] = event
        self._post(event)

    def publish_status(self, change: StatusChange) -> None:
        """Deliver locally and announce the status change to other replicas."""
        super().publish_status(change)
        event = {
            "k": "status",
            "j": change.job_id,
            "s": change.status.value,
            "p": change.previous_status.value,
            "m": change.message,
            "t": change.timestamp,
        }
        if len(_encode(self.origin, event)) > MAX_PAYLOAD:
            event["m"], event["x"] = None, 1  # too long: receivers read it from the store
        self._post(event)

    def publish_alert(self, job_id: str, event: dict[str, Any]) -> None:
        """Deliver locally and announce the job event to other replicas."""
        super().publish_alert(job_id, event)
        message: dict[str, Any] = {"k": "alert", "j": job_id, "e": event}
        if len(_encode(self.origin, message)) > MAX_PAYLOAD:
            message = {"k": "alert", "j": job_id, "i": event["id"]}
        self._post(message)

    def publish_deleted(self, job_id: str) -> None:
        """Deliver locally and announce the deletion to other replicas."""
        super().publish_deleted(job_id)
        self._pending_rows.pop(job_id, None)
        self._post({"k": "deleted", "j": job_id})

    def _post(self, event: dict[str, Any]) -> None:
        loop = self._loop
        if loop is not None and _off_loop(loop):
            loop.call_soon_threadsafe(self._post, event)
            return
        self._outbox.append(event)
        if self._outbox_ready is not None:
            self._outbox_ready.set()

    # ------------------------------------------------------------ notifier

    async def _notify_forever(self) -> None:
        assert self._outbox_ready is not None
        conn: psycopg.AsyncConnection[Any] | None = None
        try:
            while True:
                await self._outbox_ready.wait()
                self._outbox_ready.clear()
                conn = await self._send(conn)
        finally:
            if conn is not None:
                await conn.close()

    async def _send(
        self, conn: psycopg.AsyncConnection[Any] | None
    ) -> psycopg.AsyncConnection[Any] | None:
        """Send the whole outbox in one statement, retried until it succeeds.

        A connection that served before and fails now (typically it was cut while
        idle) is replaced at once; further failures back off.
        """
        delay = 0.0 if conn is not None else self.reconnect_delay
        while True:
            batch = list(self._outbox)
            if not batch:
                return conn
            payloads = [_encode(self.origin, event) for event in batch]
            try:
                if conn is None or conn.closed:
                    conn = await self._connect(NOTIFIER_NAME)
                await conn.execute(
                    "SELECT pg_notify(%s, payload) FROM unnest(%s::text[]) AS payload",
                    (self.channel, payloads),
                )
            except (psycopg.Error, OSError) as exc:
                log.warning("NOTIFY failed (%s); retrying in %.1f s", exc, delay)
                await _close_quietly(conn)
                conn = None
                await asyncio.sleep(delay)
                delay = self._backoff(delay)
                continue
            del self._outbox[: len(batch)]
            for event in batch:
                if event["k"] == "rows" and self._pending_rows.get(event["j"]) is event:
                    del self._pending_rows[event["j"]]
            return conn

    # ------------------------------------------------------------ listener

    async def _listen_forever(self) -> None:
        assert self._listening is not None
        delay = self.reconnect_delay
        while True:
            conn: psycopg.AsyncConnection[Any] | None = None
            try:
                conn = await self._connect(LISTENER_NAME)
                await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))
                self.listener_pid = conn.info.backend_pid
                self.connects += 1
                self._listening.set()
                await self._resync()
                delay = 0.0  # it worked: the first reconnection after a loss is immediate
                while True:
                    async for note in conn.notifies(timeout=self.health_interval):
                        await self._receive(note.payload)
                    await conn.execute("SELECT 1")  # a dead connection shows up here
            except (psycopg.Error, OSError, StoreError) as exc:
                log.warning("LISTEN connection lost (%s); reconnecting in %.1f s", exc, delay)
            except Exception:  # a bug must not end cross-replica delivery for good
                log.exception("the LISTEN loop failed; reconnecting in %.1f s", delay)
            finally:
                self._listening.clear()
                self.listener_pid = None
                await _close_quietly(conn)
            await asyncio.sleep(delay)
            delay = self._backoff(delay)

    def _backoff(self, delay: float) -> float:
        """The delay after ``delay``: doubled, from ``reconnect_delay`` up to the maximum."""
        return min(max(delay * 2, self.reconnect_delay), self.max_reconnect_delay)

    async def _resync(self) -> None:
        """After (re)connecting: every local subscription catches up from the store."""
        for job_id in list(self._subscribers):
            try:
                last = await anyio.to_thread.run_sync(self.store.last_seq, job_id)
            except JobNotFound:
                self.deliver(job_id, [Item(DELETED, 0, deleted_event(job_id))])
                continue
            if last > 0:
                self.deliver(job_id, [Item(ROW, last, None)])

    async def _receive(self, payload: str) -> None:
        try:
            origin, event = orjson.loads(payload)
            kind, job_id = event["k"], event["j"]
        except (orjson.JSONDecodeError, ValueError, KeyError, TypeError):
            log.warning("ignoring a malformed notification: %.200r", payload)
            return
        if origin == self.origin or not self.has_subscribers(job_id):
            return
        if kind == "rows":
            self.deliver(job_id, [Item(ROW, int(event["s"]), None)])
        elif kind == "deleted":
            self.deliver(job_id, [Item(DELETED, 0, deleted_event(job_id))])
        elif kind == "status":
            message = event.get("m")
            if event.get("x"):
                with contextlib.suppress(JobNotFound):
                    job = await anyio.to_thread.run_sync(self.store.get_job, job_id)
                    message = job.message
            change = StatusChange(
                job_id, JobStatus(event["s"]), JobStatus(event["p"]), message, float(event["t"])
            )
            self.deliver(job_id, [Item(STATUS, 0, status_event(change))])
        elif kind == "alert":
            await self._receive_alert(job_id, event)

    async def _receive_alert(self, job_id: str, event: dict[str, Any]) -> None:
        payload = event.get("e")
        if payload is None:  # too long for a notification: read it from the store
            try:
                stored = await anyio.to_thread.run_sync(
                    self.store.get_event, job_id, int(event["i"])
                )
            except JobNotFound:
                return
            if stored is None:
                return
            payload = stored.to_wire()
        self.deliver(job_id, [Item(ALERT, 0, alert_event(payload))])

    async def _connect(self, name: str) -> psycopg.AsyncConnection[Any]:
        return await psycopg.AsyncConnection.connect(
            self.url,
            autocommit=True,
            application_name=name,
            connect_timeout=10,
            keepalives=1,
            keepalives_idle=10,
            keepalives_interval=5,
            keepalives_count=3,
        )


def make_postgres_broker(settings: Settings, store: MetricStore) -> PostgresBroker:
    """The broker for a ``postgresql://`` ``settings.db``."""
    return PostgresBroker(store, settings.db, queue_size=settings.sse_queue_size)


def _last_seq(rows: Sequence[tuple[int, dict[str, Any]]]) -> int:
    """The newest seq of a write's rows, without building them where the store says it."""
    known = getattr(rows, "last_seq", None)
    if isinstance(known, int):
        return known
    return max((seq for seq, _ in rows), default=0)


def _encode(origin: str, event: dict[str, Any]) -> str:
    return orjson.dumps([origin, event]).decode()


def _off_loop(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is not loop
    except RuntimeError:
        return True


async def _close_quietly(conn: psycopg.AsyncConnection[Any] | None) -> None:
    if conn is not None:
        with contextlib.suppress(psycopg.Error, OSError):
            await conn.close()
