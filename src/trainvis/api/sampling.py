"""History downsampling: the chart downsampler applied to ``metrics/history``."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from trainvis.charts import downsample
from trainvis.store.base import MetricStore, Row
from trainvis.store.cache import SeriesCache


def downsampled_rows(
    store: MetricStore,
    cache: SeriesCache,
    job_id: str,
    metrics: Sequence[str] | None,
    start_step: int | None,
    end_step: int | None,
    max_points: int,
) -> list[Row]:
    """Rows at the union of the steps each metric keeps when downsampled.

    Each metric is reduced to ``max_points`` with the charts' extreme-keeping
    downsampler; the rows at the union of the kept steps are returned, carrying
    only the requested metrics.
    """
    names = list(metrics) if metrics is not None else store.get_job(job_id).metric_names
    series = cache.read(job_id, names, start_step=start_step, end_step=end_step)
    kept: list[np.ndarray] = []
    for data in series.values():
        result = downsample(data.steps, data.values, max_points)
        kept.append(data.steps[result.indices])
    if not kept:
        return []
    steps = np.unique(np.concatenate(kept))
    return store.rows_at_steps(job_id, steps.tolist(), metrics=metrics)
