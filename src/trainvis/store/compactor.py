"""Compaction off the request path: a store's background compactor thread.

A write that fills a metric's head (or a job's step head) to a block's worth
does not compact it in its own transaction: it names the metric here, after
it commits, and this thread compacts it in a transaction of its own, a few
metrics at a time (issue 15). So no write request pays for a compaction, and
a job whose thousands of metrics fill their heads in the same batch does not
hold the database's write lock for seconds in one transaction.

Compaction changes where points are, never what they are, so it may run
late, twice or never: reads merge blocks and head either way. The thread
holds no state worth keeping, and a store closed with work pending drops it
(the next write of those metrics names them again). A write still compacts in
line once a head holds ``BACKLOG`` blocks' worth: a compactor that cannot keep
up never lets a head grow without bound.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable

log = logging.getLogger(__name__)

#: A head (points of a metric, steps of a job) this many blocks' worth long is
#: compacted in the write that fills it, not left to the compactor.
BACKLOG = 4
#: Metrics compacted per transaction: the write lock is held for a few at a time.
PER_TRANSACTION = 16

Work = Callable[[int, list[int]], None]
"""Compact the named metrics (and the step head) of one job, in one transaction."""


class Compactor:
    """A thread compacting what writes name (:meth:`request`), a job at a time."""

    def __init__(self, work: Work) -> None:
        self._work = work
        self._pending: dict[int, set[int]] = {}
        self._cond = threading.Condition()
        self._closed = False
        self._busy = False
        self._thread: threading.Thread | None = None

    def request(self, pk: int, metric_ids: Iterable[int]) -> None:
        """Have the job's metrics ``metric_ids`` (none: only its steps) compacted soon."""
        with self._cond:
            if self._closed:
                return
            self._pending.setdefault(pk, set()).update(metric_ids)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="trainvis-compactor", daemon=True
                )
                self._thread.start()
            self._cond.notify()

    def wait_idle(self, timeout: float) -> bool:
        """Wait until nothing is pending or running; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._pending and not self._busy, timeout)

    def close(self) -> None:
        """Stop the thread (after the transaction it is in); pending work is dropped."""
        with self._cond:
            self._closed = True
            self._pending.clear()
            self._cond.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=30)

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._pending or self._closed)
                if self._closed:
                    return
                pk, wanted = next(iter(self._pending.items()))
                batch = sorted(wanted)[:PER_TRANSACTION]
                wanted.difference_update(batch)
                if not wanted:
                    del self._pending[pk]
                self._busy = True
            try:
                self._work(pk, batch)
            except Exception:  # a fault (disk full, a closed pool) loses nothing: log it
                log.exception("background compaction of job %s failed", pk)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()
