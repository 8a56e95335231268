"""One SSE client's view of one job: a bounded queue plus catch-up from the store.

The only thing a subscription needs to hear from a broker is "row ``seq`` of
job ``J`` is stored" (an :class:`Item` whose ``data`` may be ``None``). It keeps
``cursor``, the seq of the last row it handed out, and guarantees every row
with a larger seq reaches the client once, in seq order:

- live: an item with ``seq == cursor + 1`` and its bytes attached is written
  as is (the broker serialized it once for everybody);
- catch-up: when the queue overflows, an item has no bytes, or a seq is
  missing (``seq > cursor + 1``), queued rows are dropped and the subscription
  reads ``store.rows_since(cursor)`` page by page until it has seen everything,
  then goes live again. Items with ``seq <= cursor`` are duplicates and skipped.

A store read that fails because the database is away (a restart, a failover)
does not end the stream: it is retried every :data:`STORE_RETRY` seconds,
with heartbeats meanwhile, and the rows stored in between follow once it works.

See ``ARCHITECTURE.md`` for why this is lossless.
"""

from __future__ import annotations

import asyncio
import functools
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import anyio

from trainvis.errors import JobNotFound
from trainvis.realtime.sse import StreamEnded, deleted_event, metrics_event, snapshot_event
from trainvis.store.base import StoreError

if TYPE_CHECKING:
    from trainvis.store.base import MetricStore

ROW, STATUS, DELETED, ALERT = 0, 1, 2, 3
#: Seconds between store reads while the database is away.
STORE_RETRY = 0.25


@dataclass(frozen=True, slots=True)
class Item:
    """One event for one job: a row (``seq`` > 0), a status change, an alert or the deletion.

    ``data`` is the encoded SSE event; ``None`` only for a row the broker did not
    carry (the subscriber then reads it from the store).
    """

    kind: int
    seq: int = 0
    data: bytes | None = None


class Batch:
    """Items of one job published within the coalescing window, encoded once.

    ``simple`` batches (every row carries its bytes, seqs consecutive) are written
    to every subscriber as the single shared ``blob``.
    """

    __slots__ = ("items", "blob", "first_seq", "last_seq", "rows", "simple", "deleted")

    def __init__(self, items: Sequence[Item]) -> None:
        self.items = tuple(items)
        seqs = [item.seq for item in self.items if item.kind == ROW]
        self.rows = len(seqs)
        self.first_seq = seqs[0] if seqs else 0
        self.last_seq = max(seqs) if seqs else 0
        self.deleted = any(item.kind == DELETED for item in self.items)
        self.simple = all(item.data is not None for item in self.items) and all(
            b == a + 1 for a, b in zip(seqs, seqs[1:], strict=False)
        )
        self.blob = b"".join(item.data for item in self.items if item.data) if self.simple else b""

    def __len__(self) -> int:
        return len(self.items)


class Subscription:
    """A subscriber to one job; implements :class:`~trainvis.realtime.sse.EventSource`.

    Create it through a broker's ``subscribe`` *before* reading the job, then call
    :meth:`begin` with the cursor: rows stored meanwhile are queued, never lost.
    All methods run on the event loop thread; only store reads go to a thread.
    """

    def __init__(
        self,
        store: MetricStore,
        job_id: str,
        *,
        limit: int,
        page_size: int,
        on_release: Callable[[Subscription], None],
        closed: bool = False,
    ) -> None:
        self.job_id = job_id
        self.cursor = 0
        self._store = store
        self._limit = max(1, limit)
        self._page = max(1, page_size)
        self._on_release: Callable[[Subscription], None] | None = on_release
        self._queue: deque[Batch] = deque()
        self._queued = 0
        self._wake = asyncio.Event()
        self._need_read = False  # rows must come from the store before going live
        self._dropped = False  # rows were dropped since the current store read began
        self._notified = 0  # highest row seq ever announced to this subscriber
        self._resnapshot = False  # status events were dropped: send a fresh snapshot
        self._ended = False  # the deleted event went out
        self._closed = closed  # closed by the server (shutdown)
        self._close_callbacks: list[Callable[[], None]] = []
        self._active_at: float | None = None  # loop time of the last write
        self._idle_after = 0.0
        self._idle_due = False  # the idle timer fired: a heartbeat is due
        self._timer: asyncio.TimerHandle | None = None
        #: Times this subscription switched to catch-up (overflow, gap, replay).
        self.catch_ups = 0

    # ------------------------------------------------------------ broker side

    def begin(self, cursor: int, *, replay: bool) -> None:
        """Start after ``cursor``; with ``replay``, read stored rows after it first."""
        self.cursor = cursor
        if replay:
            self._start_catch_up()

    def offer(self, batch: Batch) -> None:
        """Queue a batch (never blocks); on overflow switch to catch-up from the store."""
        if self._closed or self._ended:
            return
        self._notified = max(self._notified, batch.last_seq)
        # A batch is shared by every subscriber, so one batch larger than the limit
        # costs nothing extra; what is bounded is what piles up behind a slow client.
        if self._queued and self._queued + len(batch) > self._limit:
            self._overflow(batch)
        else:
            self._queue.append(batch)
            self._queued += len(batch)
        self._wake.set()

    def close(self) -> None:
        """End the stream from the server side (shutdown): wakes and cancels the writer."""
        if self._closed:
            return
        self._closed = True
        self._queue.clear()
        self._queued = 0
        self._cancel_timer()
        self._wake.set()
        for callback in self._close_callbacks:
            callback()

    def _overflow(self, batch: Batch) -> None:
        # Rows can be re-read from the store; status, alert and deletion events cannot.
        keep = [item for queued in (*self._queue, batch) for item in queued.items]
        keep = [item for item in keep if item.kind != ROW]
        if len(keep) > self._limit:
            keep = keep[-self._limit :]
            self._resnapshot = True
        self._queue = deque([Batch(keep)] if keep else [])
        self._queued = len(keep)
        self._dropped = True
        self._start_catch_up()

    def _start_catch_up(self) -> None:
        if not self._need_read:
            self.catch_ups += 1
        self._need_read = True

    # ------------------------------------------------------------ EventSource

    def on_close(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` when the server closes this subscription."""
        self._close_callbacks.append(callback)

    def release(self) -> None:
        """Unsubscribe and drop everything queued. Idempotent."""
        self._cancel_timer()
        self._queue.clear()
        self._queued = 0
        self._close_callbacks.clear()
        if self._on_release is not None:
            on_release, self._on_release = self._on_release, None
            on_release(self)

    @property
    def queued(self) -> int:
        """Items waiting in the queue (bounded by the queue size)."""
        return self._queued

    async def next_chunk(self, *, timeout: float) -> bytes | None:
        """The next bytes to write (several events coalesced), None after ``timeout`` idle.

        Raises:
            StreamEnded: after the ``deleted`` event, or once the server closed it.
        """
        loop = asyncio.get_running_loop()
        if self._active_at is None:
            self._active_at = loop.time()
        while True:
            if self._closed or self._ended:
                raise StreamEnded
            if self._resnapshot:
                self._resnapshot = False
                return await self._snapshot()
            if self._need_read:
                try:
                    chunk = await self._read_page()
                except StoreError:  # the database is away: keep the stream, read again
                    await asyncio.sleep(STORE_RETRY)
                    if loop.time() - (self._active_at or 0.0) >= timeout:
                        self._active_at = loop.time()
                        return None  # a heartbeat meanwhile
                    continue
            else:
                chunk = self._drain()
            if chunk:
                self._active_at, self._idle_due = loop.time(), False
                return chunk
            if self._need_read or self._queue or self._ended:
                continue
            if self._idle_due:
                self._active_at, self._idle_due = loop.time(), False
                return None
            self._wake.clear()
            if self._timer is None:
                self._idle_after = timeout
                self._timer = loop.call_at(self._active_at + timeout, self._check_idle)
            await self._wake.wait()

    def _check_idle(self) -> None:
        # One timer per subscription, re-armed only when it fires: a busy stream
        # does not create and cancel a timer for every event it writes.
        self._timer = None
        if self._active_at is None or self._closed:
            return
        loop = asyncio.get_running_loop()
        due = self._active_at + self._idle_after
        if loop.time() >= due - 0.001:
            self._idle_due = True
            self._wake.set()
        else:
            self._timer = loop.call_at(due, self._check_idle)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    async def _snapshot(self) -> bytes:
        try:
            job = await anyio.to_thread.run_sync(self._store.get_job, self.job_id)
        except JobNotFound:
            self._ended = True
            return deleted_event(self.job_id)
        return snapshot_event(job)

    async def _read_page(self) -> bytes:
        target = self._notified  # every seq announced so far is committed already
        self._dropped = False
        read = functools.partial(self._store.rows_since, self.job_id, self.cursor)
        try:
            rows = await anyio.to_thread.run_sync(functools.partial(read, limit=self._page))
        except JobNotFound:
            self._ended = True
            return deleted_event(self.job_id)
        parts = [metrics_event(seq, row) for seq, row in rows if seq > self.cursor]
        if rows:
            self.cursor = max(self.cursor, rows[-1][0])
        if len(rows) < self._page:  # read to the end: nothing stored up to target is missing
            self.cursor = max(self.cursor, target)
            self._need_read = self._dropped
        return b"".join(parts)

    def _drain(self) -> bytes:
        out: list[bytes] = []
        while self._queue and not self._need_read:
            batch = self._queue.popleft()
            self._queued -= len(batch)
            if batch.simple and (batch.rows == 0 or batch.first_seq == self.cursor + 1):
                out.append(batch.blob)
                self.cursor = max(self.cursor, batch.last_seq)
                self._ended = batch.deleted
            else:
                self._drain_items(batch, out)
            if self._ended:
                self._queue.clear()
                self._queued = 0
        return b"".join(out)

    def _drain_items(self, batch: Batch, out: list[bytes]) -> None:
        for index, item in enumerate(batch.items):
            if item.kind == ROW:
                if item.seq <= self.cursor:
                    continue  # already written (replayed from the store)
                if item.data is None or item.seq != self.cursor + 1:
                    rest = Batch(batch.items[index:])
                    self._queue.appendleft(rest)
                    self._queued += len(rest)
                    self._start_catch_up()
                    return
                self.cursor = item.seq
            if item.data is not None:
                out.append(item.data)
            if item.kind == DELETED:
                self._ended = True
                return
