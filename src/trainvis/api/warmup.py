"""Startup warm-up: a fresh process pays its first-use costs before it serves.

The first chart request after a restart used to pay for code that is loaded or
set up on first use, not at import: anyio's asyncio backend and its first
worker thread (the first ``run_in_threadpool``, about 8 ms on the bench
machine), ``numpy.ma`` (``np.unique`` and ``np.union1d``, which downsampling
uses, import it on their first call: about 6 ms) and tsdownsample's first
call. :func:`warm_up` builds and renders one small smoothed, downsampled chart
through the same code as a request, in a worker thread, while the app starts
(uvicorn accepts connections only after the lifespan's startup). It reads and
writes nothing: the builders are pure functions.
"""

from __future__ import annotations

import numpy as np

from trainvis.api.responses import JSONBody
from trainvis.charts import ChartQuery, build_chart
from trainvis.charts.downsample import MIN_POINTS
from trainvis.series import Series

#: Enough points that the chart is downsampled (``max_points`` below).
WARM_POINTS = 256


def warm_up() -> None:
    """Build and render a small smoothed, downsampled loss chart, and drop it."""
    steps = np.arange(WARM_POINTS, dtype=np.int64)
    values = 1.0 / np.arange(1, WARM_POINTS + 1, dtype=np.float64)
    values[WARM_POINTS // 2] = np.nan  # a gap marker: the non-finite path too
    series = {"train_loss": Series("train_loss", steps, values)}
    query = ChartQuery(smooth=True, max_points=MIN_POINTS)
    config, meta = build_chart("loss", series, query=query)
    JSONBody({"data": config, "meta": meta})
