"""Realtime fan-out: publish stored rows, status changes, alerts and deletions to SSE subscribers.

:class:`Broker` is the transport-agnostic interface the API calls after each
commit. :class:`InProcessBroker` implements it inside one server process: each
event is serialized once, events of a job published within a few milliseconds
are coalesced into one shared :class:`~trainvis.realtime.subscription.Batch`,
and each subscriber gets it through a bounded queue. A subscriber that falls
behind reads the missing rows from the store instead (see ``subscription.py``),
so a broker that only knows "row ``seq`` of job ``J`` is stored" (PostgreSQL
``LISTEN/NOTIFY``) can drive the same subscriptions through :meth:`Fanout.deliver`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
from collections.abc import Callable, Iterable, Sequence
from types import FrameType
from typing import Any, Protocol

import anyio

from trainvis.errors import JobNotFound
from trainvis.models import StatusChange
from trainvis.realtime.sse import alert_event, deleted_event, metrics_event, status_event
from trainvis.realtime.subscription import ALERT, DELETED, ROW, STATUS, Batch, Item, Subscription
from trainvis.store.base import MetricStore

log = logging.getLogger("trainvis.realtime")

#: Default coalescing window: events of one job published within it share one write.
COALESCE_WINDOW = 0.005
#: Seconds between checks for rows written by other processes (0: never).
POLL_INTERVAL = 1.0
#: Rows read per store query while a subscriber catches up.
PAGE_SIZE = 500


class Broker(Protocol):
    """What the API needs from a realtime broker (in-process or PostgreSQL)."""

    async def start(self) -> None:
        """Start delivering; called in the app's lifespan startup on the event loop."""
        ...

    async def stop(self) -> None:
        """End every open stream cleanly; called in the lifespan shutdown."""
        ...

    def publish_rows(self, job_id: str, rows: Sequence[tuple[int, dict[str, Any]]]) -> None:
        """Announce ``(seq, wire row)`` pairs just committed. Never blocks."""
        ...

    def publish_status(self, change: StatusChange) -> None:
        """Announce a committed status change. Never blocks."""
        ...

    def publish_deleted(self, job_id: str) -> None:
        """Announce that a job was deleted; its streams end after a ``deleted`` event."""
        ...

    def publish_alert(self, job_id: str, event: dict[str, Any]) -> None:
        """Announce a stored job event (wire shape) as ``event: alert``. Never blocks."""
        ...

    def subscribe(self, job_id: str) -> Subscription:
        """A subscription to ``job_id``; call ``begin`` on it once the cursor is known."""
        ...

    @property
    def subscriber_count(self) -> int:
        """Open subscriptions over all jobs."""
        ...

    def subscribers_of(self, job_id: str) -> int:
        """Open subscriptions to ``job_id``."""
        ...


class Fanout:
    """Subscriptions by job, per-job coalescing and delivery; shared by every broker.

    Everything runs on the event loop thread. ``deliver`` is the single entry
    point: it takes already-encoded items (or rows without bytes) for one job.
    """

    def __init__(
        self,
        store: MetricStore,
        *,
        queue_size: int = 1024,
        coalesce_window: float = COALESCE_WINDOW,
        page_size: int = PAGE_SIZE,
    ) -> None:
        self.store = store
        self.queue_size = queue_size
        self.coalesce_window = coalesce_window
        self.page_size = page_size
        self._subscribers: dict[str, set[Subscription]] = {}
        self._pending: dict[str, list[Item]] = {}
        self._closing = False

    @property
    def subscriber_count(self) -> int:
        """Open subscriptions over all jobs (a debugging and test aid)."""
        return sum(len(subs) for subs in self._subscribers.values())

    @property
    def pending_jobs(self) -> int:
        """Jobs with events waiting for the coalescing window to close."""
        return len(self._pending)

    def subscribers_of(self, job_id: str) -> int:
        """Open subscriptions to ``job_id``."""
        return len(self._subscribers.get(job_id, ()))

    def has_subscribers(self, job_id: str) -> bool:
        """Whether anyone listens to ``job_id`` (publishers skip encoding otherwise)."""
        return job_id in self._subscribers

    def subscribe(self, job_id: str) -> Subscription:
        """Register a subscription. After shutdown began it is born closed."""
        sub = Subscription(
            self.store,
            job_id,
            limit=self.queue_size,
            page_size=self.page_size,
            on_release=self._unsubscribe,
            closed=self._closing,
        )
        if not self._closing:
            self._subscribers.setdefault(job_id, set()).add(sub)
        return sub

    def _unsubscribe(self, sub: Subscription) -> None:
        subs = self._subscribers.get(sub.job_id)
        if subs is None:
            return
        subs.discard(sub)
        if not subs:
            del self._subscribers[sub.job_id]

    def deliver(self, job_id: str, items: Iterable[Item]) -> None:
        """Queue items of one job; they reach subscribers when the window closes."""
        if job_id not in self._subscribers:
            return
        pending = self._pending.get(job_id)
        if pending is not None:
            pending.extend(items)
            return
        self._pending[job_id] = list(items)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # not on the loop (a synchronous caller): deliver now
            self._flush(job_id)
            return
        if self.coalesce_window > 0:
            loop.call_later(self.coalesce_window, self._flush, job_id)
        else:
            loop.call_soon(self._flush, job_id)

    def _flush(self, job_id: str) -> None:
        items = self._pending.pop(job_id, None)
        if not items:
            return
        batch = Batch(items)
        for sub in list(self._subscribers.get(job_id, ())):
            sub.offer(batch)

    def close_all(self) -> None:
        """Close every subscription (shutdown); later ones are born closed."""
        self._closing = True
        for job_id in list(self._pending):
            self._flush(job_id)
        for subs in list(self._subscribers.values()):
            for sub in list(subs):
                sub.close()


class InProcessBroker(Fanout):
    """The single-process broker: publishers and subscribers share one event loop.

    ``start`` also chains the process's SIGINT/SIGTERM handlers (when run on the
    main thread under a server that installed some, as uvicorn does) so that
    open streams end as soon as shutdown begins; otherwise uvicorn would wait
    for them until its graceful-shutdown timeout.
    """

    def __init__(
        self,
        store: MetricStore,
        *,
        queue_size: int = 1024,
        coalesce_window: float = COALESCE_WINDOW,
        page_size: int = PAGE_SIZE,
        handle_signals: bool = True,
        poll_interval: float = POLL_INTERVAL,
    ) -> None:
        super().__init__(
            store, queue_size=queue_size, coalesce_window=coalesce_window, page_size=page_size
        )
        self.handle_signals = handle_signals
        self.poll_interval = poll_interval
        self._restore_signals: Callable[[], None] = _noop
        self._poller: asyncio.Task[None] | None = None
        #: Newest seq announced per watched job (ours or found by polling).
        self._announced: dict[str, int] = {}

    async def start(self) -> None:
        """Reset the closing state and hook shutdown signals (see the class doc)."""
        self._closing = False
        if self.handle_signals:
            loop = asyncio.get_running_loop()

            def on_exit_signal() -> None:  # runs in the signal handler: hop onto the loop
                loop.call_soon_threadsafe(self.close_all)

            self._restore_signals = chain_exit_signals(on_exit_signal)
        if self.poll_interval > 0:
            self._poller = asyncio.create_task(self._poll_store())

    async def stop(self) -> None:
        """Close every stream, stop polling and restore the signal handlers."""
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
            self._poller = None
        self.close_all()
        self._restore_signals()
        self._restore_signals = _noop

    async def _poll_store(self) -> None:
        """Notice rows that other processes wrote to the same database.

        The SDK's local mode, ``trainvis import --db`` or a second server on
        the same SQLite file write without telling this process; once a
        second, each watched job's stored ``last_seq`` is compared with the
        newest one announced here, and a larger one is announced (subscribers
        then read the rows from the store). A job deleted elsewhere ends its
        streams.
        """
        while True:
            await asyncio.sleep(self.poll_interval)
            for job_id in list(self._subscribers):
                try:
                    seq = await anyio.to_thread.run_sync(self.store.last_seq, job_id)
                except JobNotFound:
                    self.publish_deleted(job_id)
                    continue
                except Exception:  # the store is briefly unavailable: try next round
                    log.warning("polling job %s for new rows failed", job_id, exc_info=True)
                    continue
                if seq > self._announced.get(job_id, 0):
                    self._announced[job_id] = seq
                    self.deliver(job_id, [Item(ROW, seq)])
            for job_id in list(self._announced):
                if job_id not in self._subscribers:
                    del self._announced[job_id]

    def publish_rows(self, job_id: str, rows: Sequence[tuple[int, dict[str, Any]]]) -> None:
        """Encode each row once as a ``metrics`` event and fan it out."""
        if job_id in self._subscribers and rows:
            items = [Item(ROW, seq, metrics_event(seq, row)) for seq, row in rows]
            self._announced[job_id] = max(self._announced.get(job_id, 0), items[-1].seq)
            self.deliver(job_id, items)

    def publish_status(self, change: StatusChange) -> None:
        """Fan a ``status`` event out to the job's subscribers."""
        if change.job_id in self._subscribers:
            self.deliver(change.job_id, [Item(STATUS, 0, status_event(change))])

    def publish_deleted(self, job_id: str) -> None:
        """Fan a ``deleted`` event out; each stream closes after writing it."""
        if job_id in self._subscribers:
            self.deliver(job_id, [Item(DELETED, 0, deleted_event(job_id))])

    def publish_alert(self, job_id: str, event: dict[str, Any]) -> None:
        """Fan an ``alert`` event (a stored job event) out to the job's subscribers."""
        if job_id in self._subscribers:
            self.deliver(job_id, [Item(ALERT, 0, alert_event(event))])


def _noop() -> None:
    return None


def chain_exit_signals(callback: Callable[[], None]) -> Callable[[], None]:
    """Run ``callback`` before the current SIGINT/SIGTERM handlers; returns an undo.

    Only Python-level handlers are chained (uvicorn's ``handle_exit``, Python's
    default SIGINT handler); default and ignored dispositions are left alone, as
    is everything when not on the main thread (where signals cannot be set).
    """
    if threading.current_thread() is not threading.main_thread():
        return _noop
    installed: dict[int, tuple[Any, Any]] = {}
    for signum in (signal.SIGINT, signal.SIGTERM):
        previous = signal.getsignal(signum)
        if not callable(previous):
            continue

        def handler(number: int, frame: FrameType | None, previous: Any = previous) -> None:
            try:
                callback()
            except Exception:  # never let our hook stop the server's own handler
                log.exception("closing SSE streams on signal %s failed", number)
            previous(number, frame)

        signal.signal(signum, handler)
        installed[signum] = (handler, previous)

    def restore() -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for signum, (handler, previous) in installed.items():
            if signal.getsignal(signum) is handler:
                signal.signal(signum, previous)

    return restore
