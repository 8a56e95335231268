"""Per-device GPU series folded into one mean per field, with the min/max across devices.

The GPU chart's ``aggregate=true`` view (issue 16): a node with 8 or 64 GPUs
draws one line per field (utilization, memory, …) instead of one per device,
and a band shows how far the devices spread. Pure functions on
:class:`~trainvis.series.Series`; no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from trainvis.charts.config import GPU_FIELD_LABELS
from trainvis.models import parse_gpu_series
from trainvis.series import Series

FloatArray = npt.NDArray[np.float64]
#: Metric name of a field's cross-device mean (never a name a device series has).
AGGREGATE_PREFIX = "gpu_mean."


@dataclass(frozen=True)
class DeviceAggregate:
    """One field across devices: the mean per step and the min/max envelope.

    Attributes:
        field: the device field (``utilization``, ``memory_used``, …).
        devices: the per-device metric names folded in, in the given order.
        mean: ``AGGREGATE_PREFIX + field`` over the union of the devices'
            steps; the mean of the finite values at each step (NaN where no
            device has one). Epochs and timestamps come from the first device
            that has the step.
        low, high: per step, the min and max of the devices' finite values
            (NaN where none), aligned with ``mean``.
    """

    field: str
    devices: list[str]
    mean: Series
    low: FloatArray
    high: FloatArray


def aggregate_devices(series: Mapping[str, Series]) -> tuple[list[DeviceAggregate], list[str]]:
    """Fold the per-device GPU series of ``series`` into one aggregate per field.

    Returns:
        The aggregates (fields in the chart's order: utilization, memory,
        total memory, temperature, power, then others by name) and the names
        of the series left as they are: those that are not per device and not
        a host's mean (``gpu_utilization``, ``gpu_memory``). Host means
        (``gpu/<host>/utilization``) are dropped: the cross-device aggregate
        covers them. No per-device series: no aggregates, every name kept.
    """
    fields: dict[str, list[str]] = {}
    kept: list[str] = []
    for name in series:
        gpu = parse_gpu_series(name)
        if gpu is None:
            kept.append(name)
        elif gpu.device is not None:
            fields.setdefault(gpu.field, []).append(name)
        # else a host's mean: the aggregate covers it
    if not fields:
        return [], list(series)
    rank = {name: position for position, name in enumerate(GPU_FIELD_LABELS)}
    ordered = sorted(fields, key=lambda field: (rank.get(field, len(rank)), field))
    return [_fold(field, [series[name] for name in fields[field]]) for field in ordered], kept


def _fold(field: str, devices: list[Series]) -> DeviceAggregate:
    steps = np.unique(np.concatenate([device.steps for device in devices]))
    total = np.zeros(steps.size)
    count = np.zeros(steps.size)
    low = np.full(steps.size, np.nan)
    high = np.full(steps.size, np.nan)
    with_time = all(d.epochs is not None and d.timestamps is not None for d in devices)
    epochs = np.full(steps.size, np.nan) if with_time else None
    stamps = np.full(steps.size, np.nan) if with_time else None
    for device in devices:
        pos = np.searchsorted(steps, device.steps)  # steps are unique per device
        values = np.asarray(device.values, dtype=np.float64)
        finite = np.isfinite(values)
        at, good = pos[finite], values[finite]
        total[at] += good
        count[at] += 1
        low[at] = np.fmin(low[at], good)
        high[at] = np.fmax(high[at], good)
        if epochs is not None and stamps is not None:
            fresh = np.isnan(stamps[pos])
            epochs[pos[fresh]] = np.asarray(device.epochs)[fresh]
            stamps[pos[fresh]] = np.asarray(device.timestamps)[fresh]
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(count > 0, total / np.maximum(count, 1), np.nan)
    series = Series(AGGREGATE_PREFIX + field, steps.astype(np.int64), mean, epochs, stamps)
    return DeviceAggregate(field, [device.metric for device in devices], series, low, high)
