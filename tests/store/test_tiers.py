"""Band charts from min/max tiers are the charts drawn from every point (issue 15).

Random series (appends, re-posted and out-of-order steps, so blocks, block
rewrites, compactions and head points all occur; cells and blocks shrunk;
some blocks without a tier, as written before tiers) are read back as tiers
over random windows and drawn as ``band=minmax``
charts: the chart must equal the one drawn from the whole series, on both
stores. Then the real endpoints on the default sizes: a long run's band chart,
and a band compare of two long runs, come from the tiers (the series cache
stays empty) and equal the answers drawn from the points.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import orjson
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, event, given, settings
from hypothesis import strategies as st

from tests.conftest import API
from trainvis.charts import ChartQuery, build_chart, default_config, resolve_params
from trainvis.charts.compare import CompareRun, build_compare
from trainvis.charts.tiers import TieredSeries, tiered_series
from trainvis.models import JobCreate, MetricRow
from trainvis.store import blocks, open_store
from trainvis.store.base import MetricStore
from trainvis.store.sql import SQLStore

SMALL = dict(BLOCK_POINTS=16, DIRECT_MIN=6, SEALED_MIN=12, TIER_SHIFT=2)


@pytest.fixture
def tiny_store(db_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[MetricStore]:
    for name, value in SMALL.items():
        monkeypatch.setattr(blocks, name, value)
    opened = open_store(db_url)
    try:
        yield opened
    finally:
        opened.close()


@st.composite
def writes(draw: st.DrawFn) -> list[list[tuple[int, float]]]:
    """Batches of ``(step, value)``: runs above the top, and scattered re-posts."""
    batches: list[list[tuple[int, float]]] = []
    top = 0
    for _ in range(draw(st.integers(1, 8))):
        if draw(st.booleans()):
            count = draw(st.integers(1, 150))
            stride = draw(st.sampled_from([1, 1, 2, 3]))
            steps = [top + stride * offset for offset in range(count)]
            top = steps[-1] + 1
        else:
            steps = draw(st.lists(st.integers(0, max(top, 1)), min_size=1, max_size=10))
        values = draw(
            st.lists(
                st.one_of(
                    st.floats(-1e6, 1e6, allow_nan=False, width=64),
                    st.sampled_from([0.0, 1.0, -1.0]),  # ties: the first step must win
                ),
                min_size=len(steps),
                max_size=len(steps),
            )
        )
        batches.append(list(zip(steps, values, strict=True)))
    return batches


def _chart(series: dict[str, Any], query: ChartQuery) -> Any:
    """The chart as JSON values (a band bound of zero may be 0.0 or -0.0: equal)."""
    chart = build_chart("loss", series, query=query)
    return orjson.loads(orjson.dumps(chart, option=orjson.OPT_SERIALIZE_NUMPY))


@pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisDeprecationWarning")
@settings(
    max_examples=60,
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target],
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    batches=writes(),
    window=st.tuples(st.integers(0, 300), st.integers(0, 1200)),
    max_points=st.sampled_from([16, 18, 24, 40]),
    poison=st.sampled_from([False, False, False, True]),
    legacy=st.booleans(),
)
def test_a_band_chart_from_tiers_is_the_chart_of_every_point(
    tiny_store: MetricStore,
    batches: list[list[tuple[int, float]]],
    window: tuple[int, int],
    max_points: int,
    poison: bool,
    legacy: bool,
) -> None:
    store = tiny_store
    job = store.create_job(JobCreate(name="tiers")).id
    for batch in batches:
        store.write_metrics(job, [MetricRow(step, {"train_loss": v}) for step, v in batch])
    if poison:  # a NaN somewhere: the tiers must decline, the points answer
        store.write_metrics(job, [MetricRow(batches[0][0][0], {"train_loss": math.nan})])
    if legacy:  # blocks written before tiers (schema 4) have none: read as points
        assert isinstance(store, SQLStore)
        with store._write() as conn:
            store.dialect.run(conn, "UPDATE blocks SET tiers = NULL WHERE mod(first_step, 3) = 0")
    lo, hi = min(window), max(window)
    query = ChartQuery(
        band="minmax", smooth=False, max_points=max_points, start_step=lo, end_step=hi
    )
    params = resolve_params(default_config("loss"), query)
    cells = store.read_cells(job, "train_loss", start_step=lo, end_step=hi)
    assert cells is not None
    full = store.read_series(job, ["train_loss"])["train_loss"]
    inside = (full.steps >= lo) & (full.steps <= hi)
    assert cells.points == int(inside.sum())
    assert cells.nonfinite == int((~np.isfinite(full.values[inside])).sum())
    tiered = tiered_series("train_loss", cells, params)
    event("drawn from tiers" if tiered is not None else "declined")
    if tiered is None:
        return
    assert isinstance(tiered, TieredSeries)
    assert len(tiered) < cells.points
    assert _chart({"train_loss": tiered}, query) == _chart({"train_loss": full}, query)


def test_the_band_chart_of_a_long_run_is_read_from_tiers(client: TestClient) -> None:
    """Default sizes: 300,000 points, a 2,000-point band chart. The answer equals the
    chart of every point (read afterwards through the cache) and nothing was
    read into the cache for it."""
    job = client.post(f"{API}/training/jobs", json={"name": "long"}).json()["data"]["id"]
    rng = np.random.default_rng(3)
    values = (1 + np.exp(-np.arange(300_000) / 50_000)) * (1 + 0.05 * rng.standard_normal(300_000))
    values[123_457] = 40.0  # a one-step spike the band must keep
    store = client.app.state.store
    for start in range(0, 300_000, 10_000):
        store.write_metrics(
            job,
            [
                MetricRow(step, {"train_loss": float(values[step])})
                for step in range(start, start + 10_000)
            ],
        )
    cache = client.app.state.series_cache
    params = {"band": "minmax", "smooth": "false", "max_points": 2000}
    tiered = client.get(f"{API}/training/{job}/loss", params=params).json()
    assert cache.cached_points == 0  # drawn from tiers: no series was read
    data = tiered["data"]["data"]["datasets"]
    assert max(point["y"] for point in data[0]["data"]) == 40.0
    full = store.read_series(job, ["train_loss"])
    config, meta = build_chart("loss", full, query=ChartQuery(band="minmax", smooth=False))
    assert tiered["meta"]["points_total"] == 300_000 == meta["points_total"]
    assert orjson.loads(orjson.dumps(tiered["data"])) == orjson.loads(
        orjson.dumps(config, option=orjson.OPT_SERIALIZE_NUMPY)
    )


def test_a_band_compare_of_long_runs_is_read_from_tiers(client: TestClient) -> None:
    """Two runs of 200,000 points (one with a spike) on the compare page's band:
    each run's line comes from its tier and the answer equals the compare of
    the whole series, last and best values included."""
    store = client.app.state.store
    rng = np.random.default_rng(5)
    jobs = []
    for run in range(2):
        job = client.post(f"{API}/training/jobs", json={"name": f"run {run}"}).json()["data"]["id"]
        values = (2 - run + np.exp(-np.arange(200_000) / 40_000)) * (
            1 + 0.05 * rng.standard_normal(200_000)
        )
        values[77_777] = 0.001 * (run + 1)  # a one-step dip: the best value
        for start in range(0, 200_000, 10_000):
            store.write_metrics(
                job,
                [
                    MetricRow(step, {"val_loss": float(values[step])})
                    for step in range(start, start + 10_000)
                ],
            )
        jobs.append(job)
    params = {"jobs": ",".join(jobs), "metric": "val_loss", "band": "minmax", "smooth": "false"}
    tiered = client.get(f"{API}/training/compare", params=params).json()
    assert client.app.state.series_cache.cached_points == 0  # no run was read whole
    runs = [
        CompareRun.of(store.get_job(job), store.read_series(job, ["val_loss"])["val_loss"], query)
        for job, query in zip(jobs, [ChartQuery(band="minmax", smooth=False)] * 2, strict=True)
    ]
    config, meta = build_compare("val_loss", runs, query=ChartQuery(band="minmax", smooth=False))
    expected = orjson.loads(orjson.dumps({"data": config, "meta": meta}))
    assert tiered["data"] == expected["data"]
    assert tiered["meta"] == expected["meta"]
    assert [job["best"] for job in tiered["meta"]["jobs"]] == [0.001, 0.002]


def test_a_replaced_extreme_is_found_again_from_tiers_earliest_step_first(
    store: MetricStore,
) -> None:
    """Re-posting the steps that held a metric's minimum and maximum rescans them
    from the tiers: each new extreme is held twice, in the middle block (read
    from its stored tier) and in the last one; the earliest step wins."""
    job = store.create_job(JobCreate(name="rescan")).id
    values = dict.fromkeys(range(3 * 4096), 1.0)
    values.update({100: -2.0, 5000: -1.0, 11000: -1.0, 200: 10.0, 6000: 9.0, 12000: 9.0})
    for start in range(0, 3 * 4096, 4096):  # three blocks
        store.write_metrics(
            job, [MetricRow(step, {"loss": values[step]}) for step in range(start, start + 4096)]
        )
    store.write_metrics(job, [MetricRow(100, {"loss": 3.0}), MetricRow(200, {"loss": 0.0})])
    assert isinstance(store, SQLStore)
    with store._read() as conn:
        row = store.dialect.run(
            conn, "SELECT min_value, min_step, max_value, max_step FROM metrics WHERE name = 'loss'"
        ).fetchone()
        blocks_held = store.dialect.scalar(conn, "SELECT count(*) FROM blocks")
    assert blocks_held == 3
    assert tuple(row) == (-1.0, 5000, 9.0, 6000)
