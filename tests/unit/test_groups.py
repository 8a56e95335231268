"""Compare groups (issue 16): group keys of a job and the mean line with its band."""

from __future__ import annotations

import math

import numpy as np

from trainvis.charts.groups import (
    RunPoints,
    config_value_text,
    group_keys,
    group_mean,
    valid_group_by,
)
from trainvis.models import JobStatus, TrainingJob


def run(xs: list[float], ys: list[float]) -> RunPoints:
    return RunPoints(np.array(xs, dtype=np.float64), np.array(ys, dtype=np.float64))


def test_group_mean_of_no_points_is_empty() -> None:
    line = group_mean([run([], []), run([], [])], 16)
    assert line.xs.size == line.mean.size == line.low.size == line.high.size == 0
    assert group_mean([], 16).xs.size == 0


def test_a_run_without_finite_values_does_not_count() -> None:
    line = group_mean([run([1, 2], [math.nan, math.inf]), run([1, 2], [4.0, 6.0])], 16)
    assert line.xs.tolist() == [1.0, 2.0]
    assert line.mean.tolist() == [4.0, 6.0]
    assert line.low.tolist() == line.high.tolist() == [4.0, 6.0]
    only_nan = group_mean([run([1, 2], [math.nan, math.nan])], 16)
    assert only_nan.xs.tolist() == [1.0, 2.0] and np.isnan(only_nan.mean).all()


def test_runs_are_interpolated_inside_their_range_only() -> None:
    line = group_mean([run([0, 10, 20, 30], [1, 1, 1, 1]), run([10, 30], [3, 5])], 16)
    assert line.xs.tolist() == [0, 10, 20, 30]
    assert line.mean.tolist() == [1.0, 2.0, 2.5, 3.0]  # the second run starts at 10
    assert line.low.tolist() == [1.0, 1.0, 1.0, 1.0]
    assert line.high.tolist() == [1.0, 3.0, 4.0, 5.0]


def test_more_distinct_x_than_max_points_become_equal_width_buckets() -> None:
    xs = list(range(100))
    line = group_mean([run(xs, [float(x) for x in xs]), run(xs, [0.0] * 100)], 20)
    assert line.xs.size == 20
    assert line.xs[0] == 2.0 and line.xs[-1] == 97.0  # mean x of steps 0-4 and 95-99
    assert line.mean[0] == 1.0 and line.high[0] == 2.0 and line.low[0] == 0.0


def test_group_keys_and_config_values() -> None:
    job = TrainingJob(
        id="job-1",
        name="a",
        status=JobStatus.RUNNING,
        model_name=None,
        config={"optim": {"name": "adam", "lr": 0.001, "betas": [0.9, 0.99]}, "amp": True},
        tags=["x", "y", "x"],
    )
    assert group_keys(job, "tag") == ["x", "y"]
    assert group_keys(job, "status") == ["running"]
    assert group_keys(job, "model_name") == [None]
    assert group_keys(job, "config.optim.name") == ["adam"]
    assert group_keys(job, "config.optim.lr") == ["0.001"]
    assert group_keys(job, "config.amp") == ["true"]
    assert group_keys(job, "config.optim.betas") == ["[0.9,0.99]"]
    assert group_keys(job, "config.optim.missing") == [None]
    assert group_keys(job, "config.amp.deeper") == [None]
    assert group_keys(TrainingJob(id="job-2", name="b"), "tag") == [None]
    assert config_value_text({"a": None}, "a") == "null"
    assert [valid_group_by(v) for v in ("config.a", "tag", "config", "config..a", "tag\n")] == [
        True,
        True,
        False,
        False,
        False,
    ]
