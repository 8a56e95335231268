"""Convert a Chart.js config to the row shape the seed's Recharts snippet reads.

The seed draws ``<LineChart data={data.data.datasets[0].data}>`` with one
``<Line dataKey={dataset.label} stroke={dataset.borderColor}>`` per dataset, so
every dataset's ``data`` becomes the same list of rows
``[{"step": 100, "Train Loss": 0.85, "Val Loss": 0.92}, ...]`` keyed by label,
with the x value under the x mode's name.

Recharts breaks a line at every row that lacks its key, and series are
sampled at different x (a validation loss every 1,000 steps, a downsampled
train loss elsewhere). A row between two points of a series therefore carries
the straight-line value between them, which is exactly the segment Chart.js
draws; real gaps (NaN/Inf) stay ``null`` and rows outside a series' x range
leave the key out. Marker datasets (``role: nonfinite``) only appear at their
own x.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
_NO_INTERPOLATION = frozenset({"nonfinite"})


def to_recharts(config: dict[str, Any], x: str = "step") -> dict[str, Any]:
    """The Recharts form of a Chart.js ``config`` built with x mode ``x``.

    Returns a new config (the input is not modified) whose datasets keep
    every key but ``data``, which is the shared row list.
    """
    datasets: list[dict[str, Any]] = config["data"]["datasets"]
    columns = [_column(dataset) for dataset in datasets]
    if columns:
        xs = np.unique(np.concatenate([column[0] for column in columns]))
    else:
        xs = np.empty(0)
    rows: list[dict[str, Any]] = [{x: _plain(value)} for value in xs.tolist()]
    for dataset, (dx, dy) in zip(datasets, columns, strict=True):
        exact_only = dataset.get("role") in _NO_INTERPOLATION
        _fill(rows, dataset["label"], xs, dx, dy, exact_only=exact_only)
    result = {key: value for key, value in config.items() if key != "data"}
    result = copy.deepcopy(result)
    result["data"] = {
        **{key: value for key, value in config["data"].items() if key != "datasets"},
        "datasets": [
            {**{k: v for k, v in dataset.items() if k != "data"}, "data": rows}
            for dataset in datasets
        ],
    }
    return result


def _plain(value: float) -> int | float:
    """Integral x values (steps) as ints, so rows read ``{"step": 100}``."""
    return int(value) if float(value).is_integer() and abs(value) < 2**53 else value


def _column(dataset: dict[str, Any]) -> tuple[FloatArray, FloatArray]:
    """A dataset's points as float arrays (NaN for null y), x known only."""
    pts = [p for p in dataset["data"] if p.get("x") is not None]
    dx = np.array([p["x"] for p in pts], dtype=np.float64)
    dy = np.array([math.nan if p["y"] is None else p["y"] for p in pts], dtype=np.float64)
    return dx, dy


def _fill(
    rows: list[dict[str, Any]],
    label: str,
    xs: FloatArray,
    dx: FloatArray,
    dy: FloatArray,
    *,
    exact_only: bool,
) -> None:
    """Write one dataset's values into the rows (see the module doc)."""
    if dx.size == 0:
        return
    right = np.searchsorted(dx, xs, side="left").clip(0, dx.size - 1)
    exact = dx[right] == xs
    inside = (xs >= dx[0]) & (xs <= dx[-1])
    left = (right - 1).clip(0, None)
    span = dx[right] - dx[left]
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = np.where(span > 0, (xs - dx[left]) / span, 0.0)
    between = dy[left] + frac * (dy[right] - dy[left])
    values = np.where(exact, dy[right], between)
    for position in np.flatnonzero(exact if exact_only else inside).tolist():
        value = float(values[position])
        rows[position][label] = value if math.isfinite(value) else None
