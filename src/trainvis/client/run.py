"""The run: ``trainvis.init`` → ``run.log`` → ``run.finish``.

``log`` converts the values (Python, numpy or torch scalars), stamps the row
with the step and the time and appends it to the sender's queue: a few
microseconds, no I/O, no lock. Everything else happens on the sender thread
(:mod:`trainvis.client.sender`).
"""

from __future__ import annotations

import atexit
import dataclasses
import json
import logging
import os
import re
import sys
import threading
import time
from collections.abc import Mapping
from types import TracebackType
from typing import Any

from trainvis.client.sender import Sender
from trainvis.client.spool import Client, Journal
from trainvis.models import TrainingMetrics

log = logging.getLogger("trainvis.client")
NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_./-]{0,127}$")
ROW_KEYS = frozenset({"step", "epoch", "timestamp", "gpus"})
TERMINAL = frozenset({"completed", "failed", "cancelled"})
#: The job fields :meth:`Run.update_job` may change.
EDITABLE = frozenset({"name", "model_name", "tags", "config"})


class FinishResult(int):
    """What :meth:`Run.finish` could not deliver.

    An ``int``, the number of rows still spooled (so ``run.finish() == 0``
    keeps meaning "every row arrived"), that also tells whether the final
    status is still waiting. Both stay in the journal for ``trainvis sync``.

    Attributes:
        status_pending: the final status has not reached the server yet.
    """

    status_pending: bool

    def __new__(cls, rows: int = 0, *, status_pending: bool = False) -> FinishResult:
        result = super().__new__(cls, rows)
        result.status_pending = status_pending
        return result

    @property
    def rows(self) -> int:
        """Rows not delivered."""
        return int(self)

    @property
    def delivered(self) -> bool:
        """Every row and the final status arrived."""
        return int(self) == 0 and not self.status_pending

    def __repr__(self) -> str:
        return f"FinishResult(rows={int(self)}, status_pending={self.status_pending})"


class Run:
    """One training job being logged. Create it with :func:`trainvis.init`.

    Attributes:
        id: the job id on the server (or in the local store).
        job: the job as the server returned it when the run started.
        target: the server root, or the store path in local mode.
        owns_status: whether :meth:`finish` sets the job's status (False on the
            ranks other than 0 of a distributed run: they only flush).
    """

    def __init__(
        self,
        client: Client,
        job: dict[str, Any],
        sender: Sender,
        *,
        start_step: int = 0,
        max_queue: int = 100_000,
        owns_status: bool = True,
    ) -> None:
        self.id: str = job["id"]
        self.owns_status = owns_status
        self.job = job
        self.target = client.target
        self._client = client
        self._sender = sender
        self._queue = sender.queue
        self._wake = sender.wake
        self._batch_size = sender.batch_size
        self._max_queue = max_queue
        self._next_step = start_step
        self._last_step = max(start_step - 1, 0)
        self._names: set[str] = set()
        self._warned: set[str] = set()
        self._gpu: Any = None
        self._system: Any = None
        self._finished = False
        self._lock = threading.Lock()
        self._pid = os.getpid()

    # ------------------------------------------------------------------ logging

    @property
    def step(self) -> int:
        """The step of the latest ``log`` (GPU samples are stamped with it)."""
        return self._last_step

    @property
    def finished(self) -> bool:
        return self._finished

    def log(
        self,
        metrics: Mapping[str, Any] | TrainingMetrics,
        step: int | None = None,
        *,
        epoch: float | None = None,
    ) -> None:
        """Queue one row of metrics; returns at once (no I/O).

        Args:
            metrics: metric name → number (int, float, numpy or torch scalar).
                ``step``, ``epoch``, ``timestamp`` and ``gpus`` keys are row
                attributes. A :class:`~trainvis.TrainingMetrics` is accepted too.
                ``None`` values are skipped; other non-numbers are skipped with
                a warning (once per name).
            step: the training step; default: one more than the previous row's.
            epoch: the (fractional) epoch.

        Raises:
            RuntimeError: the run is finished.
        """
        if self._finished:
            raise RuntimeError(f"run {self.id} is finished; start a new one with trainvis.init")
        if type(metrics) is not dict:
            metrics = self._as_mapping(metrics)
        row: dict[str, Any] = {}
        names = self._names
        for key, value in metrics.items():
            kind = type(value)
            if (kind is float or kind is int) and key in names:
                row[key] = value
            elif value is not None:
                self._slow_value(row, key, value)
        if step is None:
            step = row.pop("step", None)
            if step is None:
                step = self._next_step
        elif "step" in row:
            del row["step"]
        if epoch is not None:
            row["epoch"] = float(epoch)
        row["step"] = step
        row.setdefault("timestamp", time.time())
        self._next_step = step + 1
        self._last_step = step
        queue = self._queue
        queue.append(row)
        if len(queue) >= self._batch_size:
            self._wake.set()
            if len(queue) >= self._max_queue:
                self._backpressure()

    def _as_mapping(self, metrics: Any) -> Mapping[str, Any]:
        if isinstance(metrics, TrainingMetrics):
            return metrics.to_dict()
        if isinstance(metrics, Mapping):
            return metrics
        raise TypeError(f"log() takes a mapping or TrainingMetrics, not {type(metrics).__name__}")

    def _slow_value(self, row: dict[str, Any], key: Any, value: Any) -> None:
        if key in ROW_KEYS:
            row[key] = self._row_attribute(key, value)
            return
        if not isinstance(key, str) or not NAME_RE.match(key):
            self._warn(str(key), "invalid metric name (letters, digits, _ . / -; max 128)")
            return
        number = _to_number(value)
        if number is None:
            self._warn(key, f"not a number ({type(value).__name__})")
            return
        self._names.add(key)
        row[key] = number

    def _row_attribute(self, key: str, value: Any) -> Any:
        if key == "step":
            return int(value)
        if key == "epoch":
            return _to_number(value)
        if key == "gpus":
            return [dict(device) for device in value]
        return value

    def _warn(self, key: str, reason: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning("trainvis: metric %r skipped: %s", key, reason)

    def _backpressure(self) -> None:
        # The sender is far behind (it journals before it sends, so this means
        # the disk or the local store is stuck): wait rather than lose rows.
        log.warning("trainvis: %d rows waiting; log() waits for the sender", len(self._queue))
        while len(self._queue) >= self._max_queue // 2 and self._sender.is_alive():
            self._wake.set()
            time.sleep(0.01)

    def update_job(self, **fields: Any) -> None:
        """Edit the job: any of ``name``, ``model_name``, ``tags``, ``config`` (replaces
        the stored config). Returns at once: the edit is sent after the rows logged
        before it and, like them, spooled while the server is away (``trainvis sync``
        replays it). A value the server rejects is logged and dropped.

        Raises:
            TypeError: another field is named.
            RuntimeError: the run is finished.
        """
        unknown = set(fields) - EDITABLE
        if unknown:
            raise TypeError(f"update_job() cannot change {', '.join(sorted(unknown))}")
        if self._finished:
            raise RuntimeError(f"run {self.id} is finished; its job cannot be edited from it")
        if "config" in fields:
            fields["config"] = jsonable_config(fields["config"])
        if "tags" in fields:
            fields["tags"] = [str(tag) for tag in fields["tags"] or []]
        self.job.update(fields)
        self._sender.enqueue("update", {"fields": fields})

    def log_system(self, sample: Mapping[str, Any]) -> None:
        """Queue a system sample (GPU, system) at the current step, without advancing it."""
        if self._finished:
            return
        row = dict(sample)
        row["step"] = self._last_step
        row["timestamp"] = time.time()
        self._queue.append(row)

    # ------------------------------------------------------------------ lifecycle

    @property
    def spooled_rows(self) -> int:
        """Rows logged but not yet acknowledged by the server or the store."""
        return self._sender.undelivered_rows

    def flush(self, timeout: float | None = 30.0) -> bool:
        """Wait until every row logged so far is delivered; False on timeout."""
        if self._finished:
            return self._sender.undelivered_rows == 0
        return self._sender.flush(timeout)

    def finish(
        self, status: str = "completed", *, message: str | None = None, timeout: float = 30.0
    ) -> FinishResult:
        """Deliver what is left, set the job's final status and stop the threads.

        On a rank other than 0 of a distributed run it only delivers the rows:
        rank 0 sets the status.

        Until ``timeout`` it keeps retrying a server that is away (a restart, an
        outage); it stops early when the job was deleted or the server refuses
        the token (401/403). What is not delivered by then, rows and status,
        stays in the spool for ``trainvis sync`` and a warning says so.

        Args:
            status: ``completed``, ``failed`` or ``cancelled`` (or ``paused``).
            message: shown with the status.
            timeout: seconds to wait for the server.

        Returns:
            The number of rows still spooled (0 when every row arrived), with
            ``status_pending`` telling whether the status still waits
            (:class:`FinishResult`). Calling it again does nothing and returns 0.
        """
        with self._lock:
            if self._finished or os.getpid() != self._pid:
                # a forked child (a data-loader worker) must not end the parent's run
                return FinishResult(0)
            self._finished = True
        if self._gpu is not None:
            self._gpu.stop()
        if self._system is not None:
            self._system.stop()
        sender = self._sender
        final = status if self.owns_status else None
        result = FinishResult(
            sender.close(final, message, timeout), status_pending=sender.status_pending
        )
        _forget(self)
        if not sender.is_alive():  # a sender stuck in a request still holds the client
            self._client.close()
        if not result.delivered:
            self._warn_undelivered(result, status)
        return result

    def _warn_undelivered(self, result: FinishResult, status: str) -> None:
        them = "them"
        if result and result.status_pending:
            what = f"{result.rows} rows and the final status {status!r} of job {self.id} are"
        elif result.status_pending:
            what, them = f"the final status {status!r} of job {self.id} is", "it"
        else:
            what = f"{result.rows} rows of job {self.id} are"
        journal = self._sender.journal
        if journal is None:  # local mode: no journal, nothing to sync
            log.warning("trainvis: %s not written to %s and are lost", what, self.target)
            return
        why = " (the server refused the token: 401/403)" if self._sender.state == "held" else ""
        log.warning(
            "trainvis: %s not delivered yet%s; journaled in %s, 'trainvis sync' uploads %s "
            "once %s is reachable",
            what,
            why,
            journal.path,
            them,
            self.target,
        )

    def __enter__(self) -> Run:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        status, message = _status_for(exc)
        self.finish(status, message=message)

    def __repr__(self) -> str:
        return f"<trainvis.Run {self.id} on {self.target}>"


def _to_number(value: Any) -> float | None:
    """A float from int/float/numpy/torch scalars; None for anything else."""
    if isinstance(value, str | bytes | bool) or type(value).__name__ == "bool_":
        return None
    try:
        return float(value)
    except (TypeError, ValueError, RuntimeError):
        return None


def _status_for(exc: BaseException | None) -> tuple[str, str | None]:
    if exc is None:
        return "completed", None
    if isinstance(exc, KeyboardInterrupt):
        return "cancelled", "interrupted (KeyboardInterrupt)"
    if isinstance(exc, SystemExit) and exc.code in (0, None):
        return "completed", None
    return "failed", f"{type(exc).__name__}: {exc}"[:2000]


# ---------------------------------------------------------------------- process exit

_active: list[Run] = []
_uncaught: list[BaseException] = []
_hooked = False


def _remember(run: Run) -> None:
    global _hooked
    _active.append(run)
    if not _hooked:
        _hooked = True
        previous = sys.excepthook

        def hook(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
            _uncaught.append(exc)
            previous(kind, exc, tb)

        sys.excepthook = hook
        atexit.register(_finish_all)


def _forget(run: Run) -> None:
    if run in _active:
        _active.remove(run)


def current_run() -> Run | None:
    """The most recently started run that is not finished."""
    return _active[-1] if _active else None


def _finish_all() -> None:
    """At interpreter exit: finish every open run (failed after an uncaught exception)."""
    status, message = _status_for(_uncaught[-1] if _uncaught else None)
    for run in list(reversed(_active)):
        try:
            run.finish(status, message=message, timeout=10.0)
        except Exception:
            log.exception("trainvis: could not finish run %s at exit", run.id)


def journal_for(client: Client, job_id: str, spool_dir: Any) -> Journal:
    """A new journal for a remote run."""
    return Journal.create(spool_dir, url=client.target, job_id=job_id)


def jsonable_config(config: Any) -> dict[str, Any]:
    """A run's config as a JSON object: a mapping, a dataclass, an object with
    ``to_dict()`` or attributes (argparse); values JSON cannot hold become strings."""
    if config is None:
        return {}
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        config = dataclasses.asdict(config)
    elif not isinstance(config, Mapping):
        to_dict = getattr(config, "to_dict", None)
        config = to_dict() if callable(to_dict) else vars(config)
    cleaned: dict[str, Any] = json.loads(json.dumps(dict(config), default=str))
    return cleaned
