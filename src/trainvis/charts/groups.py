"""Groups of runs for compare (``group_by``) and their mean line with a min/max band.

:func:`group_keys` says which groups a job belongs to (a job sits in one group
per tag with ``group_by=tag``); :func:`group_mean` turns the groups' runs into
one mean per x bucket plus the smallest and largest run value in each bucket.
Pure functions, no I/O.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from trainvis.models import TrainingJob

FloatArray = npt.NDArray[np.float64]

#: What ``group_by`` accepts: ``config.<dotted path>``, ``tag``, ``model_name``, ``status``.
GROUP_BY_PATTERN = r"^(config\.[^.].*|tag|model_name|status)$"
_GROUP_BY_RE = re.compile(GROUP_BY_PATTERN)


def valid_group_by(group_by: str) -> bool:
    """True when ``group_by`` is one of the accepted shapes."""
    return _GROUP_BY_RE.fullmatch(group_by) is not None


def config_value_text(config: dict[str, Any], path: str) -> str | None:
    """The value at dotted ``path`` of a job's config as text (None when absent).

    Strings are written as they are, anything else as compact JSON
    (``0.001``, ``true``, ``null``, ``[1,2]``), the way the runs table's
    ``config.<path>=`` filter reads them.
    """
    node: Any = config
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    if isinstance(node, str):
        return node
    return json.dumps(node, separators=(",", ":"), sort_keys=True, allow_nan=False)


def group_keys(job: TrainingJob, group_by: str) -> list[str | None]:
    """The groups ``job`` belongs to under ``group_by`` (None: the job lacks the key).

    ``tag`` gives one group per tag (``[None]`` for a job without tags).
    """
    if group_by == "tag":
        return list(dict.fromkeys(job.tags)) or [None]
    if group_by == "model_name":
        return [job.model_name]
    if group_by == "status":
        return [job.status.value]
    return [config_value_text(job.config, group_by.removeprefix("config."))]


@dataclass(frozen=True)
class RunPoints:
    """One run's values in the requested window at full resolution (x finite)."""

    xs: FloatArray
    values: FloatArray


@dataclass(frozen=True)
class GroupLine:
    """A group's mean per bucket and its band (NaN where no run has a value)."""

    xs: FloatArray
    mean: FloatArray
    low: FloatArray
    high: FloatArray


def group_mean(runs: Sequence[RunPoints], max_points: int) -> GroupLine:
    """The mean over ``runs`` per x bucket, with the runs' min and max per bucket.

    Buckets are the distinct x values when there are at most ``max_points`` of
    them, else ``max_points`` equal-width bins over the runs' x range (a bin's x
    is the mean x of its points). A run's value in a bucket is the mean of its
    finite values there; a bucket a run has no value in, inside the run's own x
    range, takes the straight line between the run's neighbouring buckets (so a
    run logged every 1,000 steps still counts between its points). Runs never
    extend past their own first and last x. Non-finite values never count.
    """
    xs_all = np.concatenate([run.xs for run in runs]) if runs else np.empty(0)
    if xs_all.size == 0:
        empty = np.empty(0)
        return GroupLine(empty, empty, empty, empty)
    bucket_of, bucket_x = _buckets(xs_all, max_points)
    per_run = np.full((len(runs), bucket_x.size), np.nan)
    offset = 0
    for row, run in enumerate(runs):
        buckets = bucket_of[offset : offset + run.xs.size]
        offset += run.xs.size
        per_run[row] = _run_buckets(buckets, run.values, bucket_x.size)
    counted = np.isfinite(per_run)
    has_value = counted.any(axis=0)
    filled = np.where(counted, per_run, 0.0)
    total = filled.sum(axis=0)
    count = counted.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(has_value, total / np.maximum(count, 1), np.nan)
    low = np.where(has_value, np.where(counted, per_run, np.inf).min(axis=0), np.nan)
    high = np.where(has_value, np.where(counted, per_run, -np.inf).max(axis=0), np.nan)
    return GroupLine(bucket_x, mean, low, high)


def _buckets(xs: FloatArray, max_points: int) -> tuple[npt.NDArray[np.int64], FloatArray]:
    """Each point's bucket index and each bucket's x."""
    distinct = np.unique(xs)
    if distinct.size <= max_points:
        return np.searchsorted(distinct, xs).astype(np.int64), distinct
    lo, hi = float(distinct[0]), float(distinct[-1])
    scaled = (xs - lo) / (hi - lo) * max_points
    index = np.clip(np.floor(scaled), 0, max_points - 1).astype(np.int64)
    sums = np.bincount(index, weights=xs, minlength=max_points)
    counts = np.bincount(index, minlength=max_points)
    used = np.flatnonzero(counts)
    remap = np.full(max_points, -1, dtype=np.int64)
    remap[used] = np.arange(used.size)
    return remap[index], sums[used] / counts[used]


def _run_buckets(buckets: npt.NDArray[np.int64], values: FloatArray, size: int) -> FloatArray:
    """One run's mean per bucket, interpolated inside its range, NaN outside."""
    finite = np.isfinite(values)
    sums = np.bincount(buckets[finite], weights=values[finite], minlength=size)
    counts = np.bincount(buckets[finite], minlength=size)
    have = np.flatnonzero(counts)
    out = np.full(size, np.nan)
    if have.size == 0:
        return out
    means = sums[have] / counts[have]
    inside = np.arange(have[0], have[-1] + 1)
    out[inside] = np.interp(inside, have, means)
    return out
