"""An in-memory cache of whole metric series, kept current by sequence number.

Charts need every point of a series (smoothing is exact only on full data), and
reading a million rows from the database takes most of a second. The cache
keeps each recently charted ``(job, metric)`` as numpy arrays and, on every
read, asks the store for the job's ``last_seq``: when rows were written since
(by this process, another replica or the SDK's local mode — the number lives in
the database), only those rows' points are fetched (``series_since``, raw
arrays) and merged in.
Re-posted steps get a new sequence number, so replacements are merged too.

It holds at most ``max_points`` values over all series and evicts the least
recently used job beyond that.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from trainvis.errors import JobNotFound
from trainvis.series import Series
from trainvis.store.base import MetricStore

#: Beyond this many new rows a job's series are re-read instead of merged.
CATCH_UP_LIMIT = 50_000
PAGE = 5_000


@dataclass
class _Arrays:
    steps: npt.NDArray[np.int64]
    values: npt.NDArray[np.float64]
    #: None until a chart on an epoch or time axis needs them.
    epochs: npt.NDArray[np.float64] | None
    timestamps: npt.NDArray[np.float64] | None

    def __len__(self) -> int:
        return int(self.steps.shape[0])


@dataclass
class _JobEntry:
    seq: int
    series: dict[str, _Arrays] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def points(self) -> int:
        return sum(len(arrays) for arrays in self.series.values())


class SeriesCache:
    """Whole-series reads through a bounded, self-refreshing cache."""

    def __init__(self, store: MetricStore, *, max_points: int = 8_000_000) -> None:
        self.store = store
        self.max_points = max_points
        self._jobs: OrderedDict[str, _JobEntry] = OrderedDict()
        self._lock = threading.Lock()

    def read(
        self,
        job_id: str,
        metrics: Sequence[str],
        *,
        start_step: int | None = None,
        end_step: int | None = None,
        with_time: bool = False,
    ) -> dict[str, Series]:
        """Like :meth:`MetricStore.read_series`, from memory.

        Epochs and timestamps are read (once) only when ``with_time`` asks.

        Raises:
            JobNotFound: the job does not exist (its cached series are dropped).
        """
        try:
            seq = self.store.last_seq(job_id)
        except JobNotFound:
            self.forget(job_id)
            raise
        entry = self._entry(job_id, seq)
        with entry.lock:
            if entry.seq < seq:
                self._catch_up(job_id, entry, seq)
            missing = [
                name
                for name in metrics
                if name not in entry.series or (with_time and entry.series[name].epochs is None)
            ]
            if missing:
                loaded = self.store.read_series(job_id, missing, with_time=with_time)
                for name, series in loaded.items():
                    entry.series[name] = _from_series(series)
            result = {
                name: _slice(name, entry.series[name], start_step, end_step)
                for name in metrics
                if name in entry.series
            }
        self._evict()
        return result

    def forget(self, job_id: str) -> None:
        """Drop a job's cached series (after a delete)."""
        with self._lock:
            self._jobs.pop(job_id, None)

    @property
    def cached_points(self) -> int:
        with self._lock:
            return sum(entry.points for entry in self._jobs.values())

    def _entry(self, job_id: str, seq: int) -> _JobEntry:
        with self._lock:
            entry = self._jobs.get(job_id)
            if entry is None or entry.seq > seq:
                entry = self._jobs[job_id] = _JobEntry(seq=seq)
            self._jobs.move_to_end(job_id)
            return entry

    def _catch_up(self, job_id: str, entry: _JobEntry, seq: int) -> None:
        if seq - entry.seq > CATCH_UP_LIMIT or not entry.series:
            entry.series.clear()
            entry.seq = seq
            return
        pages: dict[str, list[Series]] = {}
        cursor = entry.seq
        while cursor < seq:
            last, page = self.store.series_since(job_id, cursor, list(entry.series), limit=PAGE)
            if last <= cursor:
                break
            for name, series in page.items():
                pages.setdefault(name, []).append(series)
            cursor = last
        for name, parts in pages.items():
            entry.series[name] = _merge(entry.series[name], _joined(parts))
        entry.seq = max(seq, cursor)

    def _evict(self) -> None:
        with self._lock:
            total = sum(entry.points for entry in self._jobs.values())
            while total > self.max_points and len(self._jobs) > 1:
                _, oldest = self._jobs.popitem(last=False)
                total -= oldest.points


def _from_series(series: Series) -> _Arrays:
    if series.epochs is None or series.timestamps is None:
        return _Arrays(series.steps, series.values, None, None)
    return _Arrays(series.steps, series.values, series.epochs, series.timestamps)


def _slice(name: str, arrays: _Arrays, start: int | None, end: int | None) -> Series:
    lo = 0 if start is None else int(np.searchsorted(arrays.steps, start, side="left"))
    hi = len(arrays) if end is None else int(np.searchsorted(arrays.steps, end, side="right"))
    return Series(
        name,
        arrays.steps[lo:hi],
        arrays.values[lo:hi],
        None if arrays.epochs is None else arrays.epochs[lo:hi],
        None if arrays.timestamps is None else arrays.timestamps[lo:hi],
    )


def _joined(parts: list[Series]) -> _Arrays:
    """Pages of one metric as one update ordered by step (a later page's step wins)."""
    arrays = [_from_series(part) for part in parts]
    if len(arrays) == 1:
        return arrays[0]
    steps = np.concatenate([part.steps for part in arrays])
    order = np.argsort(steps, kind="stable")

    def column(get: Any) -> Any:
        return np.concatenate([get(part) for part in arrays])[order]

    return _Arrays(
        steps[order],
        column(lambda part: part.values),
        column(lambda part: part.epochs),
        column(lambda part: part.timestamps),
    )


def _merge(old: _Arrays, new: _Arrays) -> _Arrays:
    """``old`` with ``new`` applied: new steps appended or inserted, equal steps replaced."""
    timed = old.epochs is not None and old.timestamps is not None

    def joined(a: Any, b: Any, pick: Any = None) -> Any:
        both = np.concatenate([a, b])
        return both if pick is None else both[pick]

    if len(old) == 0 or new.steps[0] > old.steps[-1]:
        pick = None
        steps = joined(old.steps, new.steps)
    else:
        steps = np.concatenate([old.steps, new.steps])
        order = np.argsort(steps, kind="stable")
        steps = steps[order]
        keep = np.append(steps[1:] != steps[:-1], True)  # the last of equal steps is newest
        pick, steps = order[keep], steps[keep]
    return _Arrays(
        steps,
        joined(old.values, new.values, pick),
        joined(old.epochs, new.epochs, pick) if timed else None,
        joined(old.timestamps, new.timestamps, pick) if timed else None,
    )
