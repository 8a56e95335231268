"""Column blocks against a plain dict model, through the store API (issue 15).

Random interleavings of appended batches, re-posted and out-of-order steps,
NaN/±Infinity values, epochs given or not, job deletes (the id then created
again) and explicit compactions, on both stores. Block sizes (of points and
of steps) are shrunk so that a few dozen points make direct blocks, rewrites
of sealed blocks and compactions.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from trainvis.models import JobCreate, MetricRow, format_timestamp
from trainvis.store import blocks, open_store, step_blocks
from trainvis.store.base import MetricStore
from trainvis.store.common import wire_value
from trainvis.store.sql import SQLStore

METRICS = ("a", "b", "c")
VALUES = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False, width=64),
    st.sampled_from([math.nan, math.inf, -math.inf, 0.0, -0.0]),
)


@dataclass
class Step:
    """A stored step's attributes."""

    epoch: float | None
    timestamp: float
    seq: int


@dataclass
class Model:
    """What the store should hold: ``(metric, step) -> value`` and the steps."""

    points: dict[tuple[str, int], float] = field(default_factory=dict)
    steps: dict[int, Step] = field(default_factory=dict)

    @property
    def top(self) -> int:
        return max(self.steps, default=-1)


@st.composite
def batches(draw: st.DrawFn) -> tuple[str, Any]:
    """One operation: ``("write", rows)``, ``("delete", None)`` or ``("compact", None)``."""
    kind = draw(st.sampled_from(["append", "append", "scatter", "delete", "compact"]))
    if kind in ("delete", "compact"):
        return kind, None
    if kind == "append":  # a training loop's batch: consecutive steps above the top
        start = draw(st.integers(0, 3))  # added to the model's top when applied
        count = draw(st.integers(1, 40))
        steps: list[int] = [start + offset for offset in range(count)]
        relative = True
    else:  # re-posted and out-of-order steps anywhere
        steps = draw(st.lists(st.integers(0, 150), min_size=1, max_size=12))
        relative = False
    rows = []
    for step in steps:
        names = draw(st.sets(st.sampled_from(METRICS), min_size=1))
        epoch = draw(st.one_of(st.none(), st.sampled_from([0.0, 1.0, 2.5, 1e6])))
        stamp = 1.7e9 + draw(st.integers(0, 10**6)) / 64
        rows.append((step, {name: draw(VALUES) for name in sorted(names)}, epoch, stamp))
    return ("append" if relative else "scatter"), rows


def _apply(store: MetricStore, job: str, model: Model, op: tuple[str, Any]) -> str:
    kind, rows = op
    if kind == "delete":
        store.delete_job(job)
        model.points.clear()
        model.steps.clear()
        return store.create_job(JobCreate(name="again", id=job)).id
    if kind == "compact":
        assert isinstance(store, SQLStore)
        store.compact()
        return job
    base = model.top + 1 if kind == "append" else 0
    written = [
        MetricRow(step=base + step, values=dict(values), epoch=epoch, timestamp=stamp)
        for step, values, epoch, stamp in rows
    ]
    last_seq = store.last_seq(job)
    store.write_metrics(job, written)
    # A batch's steps get seqs last_seq + 1 … in step order; within it and
    # across batches a step keeps its epoch when the newer row has none.
    order = {step: index for index, step in enumerate(sorted({row.step for row in written}))}
    for row in written:
        old = model.steps.get(row.step)
        epoch = row.epoch if row.epoch is not None else (old.epoch if old else None)
        assert row.timestamp is not None
        model.steps[row.step] = Step(epoch, row.timestamp, last_seq + order[row.step] + 1)
        for name, value in row.values.items():
            model.points[(name, row.step)] = value
    return job


def _same(actual: np.ndarray, expected: list[float]) -> bool:
    wanted = np.asarray(expected, dtype=np.float64)
    return bool(np.array_equal(actual, wanted, equal_nan=True))


def _check(store: MetricStore, job: str, model: Model) -> None:
    series = store.read_series(job, list(METRICS))
    last, since = store.series_since(job, 0, list(METRICS), limit=100_000)
    for name in METRICS:
        steps = sorted(step for metric, step in model.points if metric == name)
        values = [model.points[(name, step)] for step in steps]
        if not steps:
            assert name not in series and name not in since
            continue
        for got in (series[name], since[name]):
            assert got.steps.tolist() == steps, name
            assert _same(got.values, values), name
        assert store.count_rows(job, metrics=[name]) == len(steps)
    if model.steps:
        assert last == store.last_seq(job)
    expected_rows = [
        {
            "step": step,
            **_head(model.steps[step]),
            **{
                name: wire_value(model.points[(name, step)])
                for name in METRICS
                if (name, step) in model.points
            },
        }
        for step in sorted(model.steps)
    ]
    assert list(store.iter_rows(job)) == expected_rows
    _check_steps(store, job, model)
    some = sorted(model.steps)[::3]
    exact = [
        {key: value for key, value in row.items() if key not in ("epoch", "timestamp")}
        for row in store.rows_at_steps(job, some, metrics=["a"])
    ]
    assert exact == [  # rows_at_steps keeps the rows without the metric
        {
            "step": step,
            **({"a": wire_value(model.points[("a", step)])} if ("a", step) in model.points else {}),
        }
        for step in some
    ]
    assert store.get_job(job).point_count == len(model.points)
    _check_stats(store, job, model)


def _head(step: Step) -> dict[str, Any]:
    """A stored step's epoch and timestamp as a row carries them."""
    stamp = {"timestamp": format_timestamp(step.timestamp)}
    return stamp if step.epoch is None else {"epoch": step.epoch, **stamp}


def _check_steps(store: MetricStore, job: str, model: Model) -> None:
    """Steps' seqs, epochs and timestamps through every read that uses them."""
    by_seq = sorted(model.steps, key=lambda step: model.steps[step].seq)
    seqs = [model.steps[step].seq for step in by_seq]
    for since in (0, *seqs[len(seqs) // 2 : len(seqs) // 2 + 1], *seqs[-1:]):
        newer = [step for step in by_seq if model.steps[step].seq > since]
        got = store.rows_since(job, since, limit=7)
        assert [seq for seq, _ in got] == [model.steps[step].seq for step in newer[:7]]
        assert [row["step"] for _, row in got] == newer[:7]
    series = store.read_series(job, list(METRICS), with_time=True)
    for got in series.values():
        steps = got.steps.tolist()
        epochs = [model.steps[step].epoch for step in steps]
        assert got.epochs is not None and got.timestamps is not None
        assert _same(got.epochs, [math.nan if e is None else e for e in epochs])
        assert got.timestamps.tolist() == [model.steps[step].timestamp for step in steps]
    ordered = sorted(model.steps)
    assert isinstance(store, SQLStore)
    d = store.dialect
    with store._read() as conn:  # the newest steps an ETA is estimated from
        pk = int(d.scalar(conn, "SELECT pk FROM jobs WHERE id = ?", (job,)))
        newest = step_blocks.newest(d, conn, d.recent_steps(conn, [pk], 20), 20)
    assert newest[pk] == [(step, model.steps[step].timestamp) for step in ordered[::-1][:20]]
    assert store.count_rows(job) == len(ordered)
    if ordered:
        lo, hi = ordered[len(ordered) // 3], ordered[-1] - 1
        assert store.count_rows(job, start_step=lo, end_step=hi) == sum(
            lo <= step <= hi for step in ordered
        )
        middle = list(store.iter_rows(job, start_step=lo, offset=2, limit=5))
        assert [row["step"] for row in middle] == [s for s in ordered if s >= lo][2:7]


def _check_stats(store: MetricStore, job: str, model: Model) -> None:
    """The per-metric statistics (rescanned from blocks when an extreme is replaced)."""
    assert isinstance(store, SQLStore)
    d = store.dialect
    with store._read() as conn:
        stats = d.run(
            conn,
            "SELECT name, count, nonfinite, min_value, min_step, max_value, max_step "
            "FROM metrics WHERE job_pk = (SELECT pk FROM jobs WHERE id = ?)",
            (job,),
        ).fetchall()
    for name, count, nonfinite, low, low_step, high, high_step in stats:
        points = sorted(
            (step, value) for (metric, step), value in model.points.items() if metric == name
        )
        finite = [(value, step) for step, value in points if math.isfinite(value)]
        assert (count, nonfinite) == (len(points), len(points) - len(finite)), name
        if not finite:
            assert low is None and high is None, name
            continue
        least = min(value for value, _ in finite)
        most = max(value for value, _ in finite)
        assert (low, high) == (least, most), name
        assert low_step == min(step for value, step in finite if value == least), name
        assert high_step == min(step for value, step in finite if value == most), name


@pytest.fixture
def small_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(blocks, "BLOCK_POINTS", 16)
    monkeypatch.setattr(blocks, "DIRECT_MIN", 6)
    monkeypatch.setattr(blocks, "SEALED_MIN", 12)
    monkeypatch.setattr(step_blocks, "STEP_BLOCK_ROWS", 8)
    monkeypatch.setattr(step_blocks, "_PAGE", 2)


@pytest.fixture
def shared_store(db_url: str, small_blocks: None) -> Iterator[MetricStore]:
    opened = open_store(db_url)
    try:
        yield opened
    finally:
        opened.close()


# psycopg's pool threads call ``random`` (retry jitter) while examples are drawn,
# which Hypothesis takes for a strategy using ``random``.
@pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisDeprecationWarning")
@settings(
    max_examples=40,
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target],  # shrinking is slow here
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(ops=st.lists(batches(), min_size=1, max_size=14))
def test_blocks_answer_like_a_dict(shared_store: MetricStore, ops: list[tuple[str, Any]]) -> None:
    store = shared_store
    job = store.create_job(JobCreate(name="model")).id
    model = Model()
    for op in ops:
        job = _apply(store, job, model, op)
        _check(store, job, model)
