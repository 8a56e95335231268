"""The background thread that turns logged rows into batched requests.

``Run.log`` appends a row dict to :attr:`Sender.queue` (a ``deque``: appends
are atomic and cost well under a microsecond) and returns. The thread wakes
every ``flush_interval`` seconds, or as soon as ``batch_size`` rows wait,
moves the rows into operations of at most ``batch_size`` rows, journals each
operation (remote mode) and sends them in order over one client.

When the server is unreachable (connection errors, timeouts, 5xx) the head
operation is retried with exponential backoff while new rows keep being
journaled. Journaled operations beyond ``max_pending_rows`` rows are not kept in
memory; they are read back from the journal once the backlog has drained.
A server that refuses the run (401/403) is retried every ``max_backoff``
seconds; a deleted job (404) ends the sending.

:meth:`Sender.close` (``Run.finish``) keeps trying until its timeout, then
journals whatever is left, the final status included, for ``trainvis sync``
(issue 13); it does not wait for a server that refuses the run.
"""

from __future__ import annotations

import logging
import math
import random
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from trainvis.client.http import ServerUnavailable, encode_rows
from trainvis.client.spool import Client, Held, JobGone, Journal, Op, deliver, read_ops_from

log = logging.getLogger("trainvis.client")


@dataclass(frozen=True)
class QueuedOp:
    """A non-row operation in :attr:`Sender.queue`, sent after the rows queued before it."""

    kind: str
    data: dict[str, Any]


class Sender(threading.Thread):
    """Drains the row queue of one run into ``client`` (daemon thread).

    Args:
        client: where operations go.
        job_id: the run's job.
        journal: the write-ahead journal (remote mode) or None (local mode).
        batch_size: most rows per request.
        flush_interval: seconds between sends when fewer rows wait.
        max_backoff: longest wait between two attempts while the server is away.
        max_pending_rows: rows kept in memory while the server is away (the rest
            wait in the journal only).
    """

    def __init__(
        self,
        client: Client,
        job_id: str,
        *,
        journal: Journal | None,
        batch_size: int = 1000,
        flush_interval: float = 1.0,
        max_backoff: float = 10.0,
        max_pending_rows: int = 200_000,
    ) -> None:
        super().__init__(name=f"trainvis-sender-{job_id}", daemon=True)
        self.client = client
        self.job_id = job_id
        self.journal = journal
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.max_backoff = max_backoff
        self.max_pending_rows = max_pending_rows
        #: Rows waiting to be batched; ``Run.log`` appends here (and ``enqueue`` an edit).
        self.queue: deque[dict[str, Any] | QueuedOp] = deque()
        self._ops_queued = 0  # QueuedOps appended (by enqueue) ...
        self._ops_taken = 0  # ... and taken off the queue (by the thread)
        self.wake = threading.Event()
        self.delivered_rows = 0
        #: ``ok``, ``down`` (retrying), ``held`` (401/403, retrying) or ``gone`` (job deleted).
        self.state = "ok"
        self._pending: deque[Op] = deque()
        self._pending_rows = 0
        self._spilled_rows = 0
        self._spill_from = 0
        self._next_n = 1
        self._failures = 0
        self._next_attempt = 0.0
        self._drained = threading.Event()
        self._closing = False
        self._close_seen = False
        self._deadline = math.inf
        #: The status to send after the last row (its op is numbered when queued).
        self._final: dict[str, Any] | None = None
        self._final_n = 0  # the number of its operation, once queued
        self._final_wanted = False
        self._final_delivered = False
        self._refused_closing = False  # a 401/403 answered a try made after close()
        self._abandoned = False

    # ------------------------------------------------------------------ producer side

    def add(self, kind: str, data: dict[str, Any]) -> None:
        """Queue a non-row operation (``create``, ``status``) before :meth:`start`."""
        self._push(self._make_op(kind, data))

    def enqueue(self, kind: str, data: dict[str, Any]) -> None:
        """Queue a non-row operation (``update``) behind the rows logged so far: it is
        journaled and sent in order with them (issue 16)."""
        self._ops_queued += 1
        self.queue.append(QueuedOp(kind, data))
        self.wake.set()

    def flush(self, timeout: float | None) -> bool:
        """Wait until everything logged so far is delivered; False on timeout."""
        self._drained.clear()
        self.wake.set()
        return self._drained.wait(timeout)

    def close(self, status: str | None, message: str | None, timeout: float) -> int:
        """Send what is left, then ``status``; stop within ``timeout`` seconds.

        Until the timeout the thread keeps retrying an unreachable server (at
        least once a second). It stops early when the job is gone (404) or the
        server refused a try made after this call (401/403). Whatever is not
        delivered by then, the status included, stays in the journal for
        ``trainvis sync``; :attr:`status_pending` tells whether the status is
        among it.

        Returns:
            The number of rows not delivered (they stay in the journal).
        """
        if status is not None:
            self._final = {"status": status, "message": message}
            self._final_wanted = True
        self._deadline = time.monotonic() + max(0.0, timeout)
        self._closing = True
        self.wake.set()
        if self.is_alive():
            self.join(timeout + 0.5)
        if self.is_alive():  # stuck in a request: spool the rest from here
            self._abandoned = True
        if self.state != "gone":  # journal what the thread did not queue
            self._drain_queue(journal_only=True)
            final, self._final = self._final, None
            if final is not None and self.journal is not None:
                self.journal.append(self._make_op("status", final))
        left = self.undelivered_rows
        if self.journal is not None:
            done = self.state == "gone" or (
                left == 0 and not self._pending and not self.status_pending
            )
            self.journal.close(delete=done)
        return left

    @property
    def undelivered_rows(self) -> int:
        """Rows logged but not yet acknowledged (queued, pending or spilled)."""
        queued = len(self.queue) - (self._ops_queued - self._ops_taken)
        return max(0, queued) + self._pending_rows + self._spilled_rows

    @property
    def status_pending(self) -> bool:
        """Whether the status given to :meth:`close` still waits to be delivered.

        False once it arrived (or the server answered that it can never apply),
        and when the job is gone.
        """
        return self._final_wanted and not self._final_delivered and self.state != "gone"

    # ------------------------------------------------------------------ the thread

    def run(self) -> None:
        while not self._abandoned:
            self.wake.wait(self._wait_time())
            self.wake.clear()
            if self._abandoned:
                return
            # Read once: close() may set it while this pass runs, and a pass that
            # has not queued the status must not end the thread (issue 13).
            closing = self._closing
            if closing and not self._close_seen:
                self._close_seen = True
                self._next_attempt = 0.0  # one more try now, whatever the backoff had reached
            self._drain_queue()
            if closing and self._final is not None and not self.queue:
                op = self._make_op("status", self._final)
                self._final_n, self._final = op.n, None
                self._push(op)
            self._deliver_pending()
            idle = not self.queue and not self._pending and not self._spill_from
            if idle:
                self._drained.set()
            if closing and ((idle and self._final is None) or self._give_up()):
                return

    def _give_up(self) -> bool:
        """While closing: stop trying (close() journals what is left)."""
        if self.state == "gone" or (self.state == "held" and self._refused_closing):
            return True
        return time.monotonic() >= self._deadline

    def _wait_time(self) -> float:
        now = time.monotonic()
        wait = self.flush_interval
        backing_off = self.state in ("down", "held")
        if backing_off and (self._pending or self._spill_from):
            wait = min(wait, self._next_attempt - now)
        if self._closing:
            wait = min(wait, self._deadline - now) if backing_off else 0.0
        return max(0.0, wait)

    def _make_op(self, kind: str, data: dict[str, Any]) -> Op:
        if self.journal is not None:
            return Op(self.journal.next_n(), kind, data)
        n, self._next_n = self._next_n, self._next_n + 1
        return Op(n, kind, data)

    def _drain_queue(self, *, journal_only: bool = False) -> None:
        queue = self.queue
        while queue:
            if self.state == "gone":
                self._clear_queue()
                return
            rows: list[dict[str, Any]] = []
            other: QueuedOp | None = None
            while queue and len(rows) < self.batch_size:
                item = queue.popleft()
                if isinstance(item, QueuedOp):
                    self._ops_taken += 1
                    other = item
                    break
                rows.append(item)
            if rows:
                self._emit(self._make_op("rows", {"rows": rows}), journal_only=journal_only)
            if other is not None:
                self._emit(self._make_op(other.kind, other.data), journal_only=journal_only)

    def _emit(self, op: Op, *, journal_only: bool) -> None:
        if not journal_only:
            self._push(op)
        elif self.journal is not None:
            self.journal.append(op)

    def _clear_queue(self) -> None:
        taken = sum(isinstance(item, QueuedOp) for item in self.queue)
        self.queue.clear()
        self._ops_taken += taken

    def _push(self, op: Op) -> None:
        if self.journal is None:
            self._pending.append(op)
            self._pending_rows += op.row_count
            return
        if op.kind == "rows":
            op.encoded = encode_rows(op.data["rows"])
        self.journal.append(op)
        if self._spill_from or self._pending_rows > self.max_pending_rows:
            # Only in the journal until the in-memory backlog has drained.
            self._spill_from = self._spill_from or op.n
            self._spilled_rows += op.row_count
            return
        self._pending.append(op)
        self._pending_rows += op.row_count

    def _reload_spilled(self) -> None:
        """Read operations back from the journal once the in-memory backlog is empty."""
        if self.journal is None or not self._spill_from:
            return
        ops, complete = read_ops_from(self.journal.path, self._spill_from, self.max_pending_rows)
        for op in ops:
            if op.kind == "rows":
                op.encoded = encode_rows(op.data["rows"])
            self._pending.append(op)
            self._pending_rows += op.row_count
            self._spilled_rows -= op.row_count
        if complete or not ops:
            self._spill_from, self._spilled_rows = 0, 0
        else:
            self._spill_from = ops[-1].n + 1

    def _deliver_pending(self) -> None:
        if self.state == "gone" or time.monotonic() < self._next_attempt:
            return
        started = time.monotonic()
        while self._pending or self._spill_from:
            if not self._pending:
                self._reload_spilled()
                if not self._pending:
                    return
            op = self._pending[0]
            try:
                deliver(self.client, self.job_id, op)
            except ServerUnavailable as exc:
                self._backoff(exc)
                return
            except JobGone as exc:
                log.error(
                    "trainvis: job %s was deleted on the server; logging stops (%s)",
                    self.job_id,
                    exc,
                )
                self.state = "gone"
                self._discard_all()
                return
            except Held as exc:
                if self.state != "held":
                    log.error(
                        "trainvis: %s refused the run (%s); rows stay spooled, retried every "
                        "%g s and uploaded by 'trainvis sync' (with a valid token)",
                        self.client.target,
                        exc,
                        self.max_backoff,
                    )
                self.state = "held"
                self._refused_closing = self._closing
                self._next_attempt = time.monotonic() + self.max_backoff
                return
            self._acknowledge(self._pending.popleft())
            if time.monotonic() - started > self.flush_interval and self.queue:
                return  # journal the rows that arrived meanwhile, then go on

    def _acknowledge(self, op: Op) -> None:
        if self.journal is not None:
            self.journal.ack(op.n)
        self._pending_rows -= op.row_count
        self.delivered_rows += op.row_count
        if op.n == self._final_n:
            self._final_delivered = True
        if self._failures:
            log.info("trainvis: %s is reachable again; sending the backlog", self.client.target)
        elif self.state == "held":
            log.info("trainvis: %s accepts the run again; sending the backlog", self.client.target)
        self._failures = 0
        self.state = "ok"

    def _discard_all(self) -> None:
        for op in self._pending:
            if self.journal is not None:
                self.journal.ack(op.n)
        self._pending.clear()
        self._pending_rows = self._spilled_rows = self._spill_from = 0
        self._clear_queue()

    def _backoff(self, exc: Exception) -> None:
        self._failures += 1
        delay = min(self.max_backoff, 0.25 * 2 ** min(self._failures, 16))
        if self._closing:
            delay = min(delay, 1.0)
        self._next_attempt = time.monotonic() + delay * random.uniform(0.8, 1.0)
        if self._failures == 1:
            where = f"; rows are spooled to {self.journal.path}" if self.journal else ""
            log.warning(
                "trainvis: cannot reach %s (%s); retrying with backoff%s",
                self.client.target,
                exc,
                where,
            )
        self.state = "down"
