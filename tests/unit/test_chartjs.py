"""Chart builders: Chart.js shape, labels, smoothing, NaN gaps, x modes, Recharts."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import trainvis
from trainvis.charts import (
    ChartQuery,
    GpuChartConfig,
    LossChartConfig,
    build_chart,
    build_gpu_chart,
    build_learning_rate_chart,
    build_loss_chart,
    build_metrics_chart,
    default_config,
    ema,
    resolve_params,
    select_metrics,
    to_recharts,
)
from trainvis.charts.aggregate import aggregate_devices
from trainvis.charts.config import PALETTE
from trainvis.charts.datasets import envelope_at, pick_window
from trainvis.charts.select import limit_metrics
from trainvis.errors import InvalidArgument
from trainvis.series import Series

T0 = 1_700_000_000.0


def make(metric: str, steps: Any, values: Any, *, with_time: bool = True) -> Series:
    steps_arr = np.asarray(steps, dtype=np.int64)
    return Series(
        metric=metric,
        steps=steps_arr,
        values=np.asarray(values, dtype=np.float64),
        epochs=steps_arr / 100.0 if with_time else None,
        timestamps=T0 + steps_arr * 0.5 if with_time else None,
    )


def loss_series(n: int = 50) -> dict[str, Series]:
    steps = np.arange(n) * 10
    return {
        "train_loss": make("train_loss", steps, 1.0 / (1.0 + np.arange(n))),
        "val_loss": make("val_loss", steps[::5], 1.2 / (1.0 + np.arange(0, n, 5))),
    }


def by_role(config: dict[str, Any], role: str) -> list[dict[str, Any]]:
    return [d for d in config["data"]["datasets"] if d["role"] == role]


def ys(dataset: dict[str, Any]) -> list[Any]:
    return [point["y"] for point in dataset["data"]]


def test_loss_chart_is_a_complete_strict_json_chartjs_config() -> None:
    config, meta = build_loss_chart(loss_series())
    assert config["type"] == "line"
    assert set(config) == {"type", "data", "options"}
    json.dumps(config, allow_nan=False)
    json.dumps(meta, allow_nan=False)
    labels = [d["label"] for d in config["data"]["datasets"]]
    assert labels == ["Train Loss", "Val Loss"]
    for dataset in config["data"]["datasets"]:
        assert dataset["role"] == "raw"
        assert dataset["metric"] in ("train_loss", "val_loss")
        assert dataset["borderColor"]
        assert all(set(point) == {"x", "y"} for point in dataset["data"])
    assert config["data"]["datasets"][0]["data"][1] == {"x": 10, "y": 0.5}
    options = config["options"]
    assert options["scales"]["x"]["type"] == "linear"
    assert options["scales"]["y"]["type"] == "linear"
    assert options["plugins"]["title"]["text"] == "Training Loss"
    assert options["interaction"]["mode"] in ("index", "nearest")
    assert meta["points_total"] == meta["points_returned"] == 60
    assert meta["downsampled"] is False
    assert isinstance(meta["algorithm"], str)
    assert meta["series"]["val_loss"]["points_returned"] == 10


def test_nan_and_infinity_become_null_gaps_and_are_marked() -> None:
    values = [1.0, math.nan, 0.8, math.inf, 0.6, -math.inf, 0.5]
    config, meta = build_loss_chart({"train_loss": make("train_loss", range(7), values)})
    raw = by_role(config, "raw")[0]
    assert ys(raw) == [1.0, None, 0.8, None, 0.6, None, 0.5]
    assert meta["nonfinite_count"] == 3
    assert meta["first_nonfinite_step"] == 1
    assert meta["series"]["train_loss"]["nonfinite_count"] == 3
    markers = by_role(config, "nonfinite")
    assert [point["x"] for point in markers[0]["data"]] == [1, 3, 5]
    assert ys(markers[0]) == [1.0, 0.8, 0.6]  # where the curve breaks off
    assert config["options"]["plugins"]["subtitle"]["display"] is True
    json.dumps(config, allow_nan=False)


def test_smoothing_adds_a_solid_smoothed_copy_over_a_faded_raw_series() -> None:
    series = loss_series()
    config, meta = build_loss_chart(series, smooth=True, smooth_factor=0.1)
    labels = [d["label"] for d in config["data"]["datasets"]]
    assert labels == ["Train Loss", "Train Loss (smoothed)", "Val Loss", "Val Loss (smoothed)"]
    raw, smoothed = config["data"]["datasets"][:2]
    assert raw["borderColor"].startswith("rgba(") and not smoothed["borderColor"].startswith(
        "rgba("
    )
    expected = ema(series["train_loss"].values, 0.1)
    np.testing.assert_allclose(ys(smoothed), expected)
    assert meta["smoothing"] == {"method": "ema", "smooth_factor": 0.1}
    assert meta["points_returned"] == 60  # counted over the raw series only


def test_smooth_factor_alone_has_no_effect() -> None:
    config, meta = build_loss_chart(loss_series(), smooth_factor=0.1)
    assert not by_role(config, "smoothed")
    assert meta["smoothing"] is None


def test_smoothing_runs_on_full_resolution_before_downsampling() -> None:
    rng = np.random.default_rng(0)
    values = rng.normal(size=50_000)
    series = {"train_loss": make("train_loss", np.arange(50_000), values)}
    config, meta = build_loss_chart(series, smooth=True, max_points=500)
    smoothed = by_role(config, "smoothed")[0]
    steps = np.array([point["x"] for point in smoothed["data"]])
    np.testing.assert_allclose(ys(smoothed), ema(values, 0.4)[steps])
    assert meta["downsampled"] is True
    assert meta["points_returned"] <= 500


@pytest.mark.parametrize(
    ("method", "extra", "meta_key"),
    [("moving_average", {"window": 5}, "window"), ("gaussian", {"sigma": 2.0}, "sigma")],
)
def test_other_smoothing_methods(method: str, extra: dict[str, Any], meta_key: str) -> None:
    config, meta = build_loss_chart(loss_series(), smooth=True, smooth_method=method, **extra)
    assert by_role(config, "smoothed")
    assert meta["smoothing"]["method"] == method
    assert meta["smoothing"][meta_key] == next(iter(extra.values()))


@pytest.mark.parametrize(
    ("options", "param"),
    [
        ({"smooth_factor": 0.0}, "smooth_factor"),
        ({"smooth_factor": 1.5}, "smooth_factor"),
        ({"smooth_factor": -0.1}, "smooth_factor"),
        ({"smooth_factor": math.nan}, "smooth_factor"),
        ({"x": "wall"}, "x"),
        ({"max_points": 1}, "max_points"),
        ({"max_points": 10**9}, "max_points"),
        ({"smooth_method": "median"}, "smooth_method"),
        ({"window": 0}, "window"),
        ({"sigma": 0.0}, "sigma"),
        ({"band": "quantile"}, "band"),
    ],
)
def test_bad_parameters_raise_invalid_argument_naming_the_query_field(
    options: dict[str, Any], param: str
) -> None:
    with pytest.raises(InvalidArgument) as caught:
        build_loss_chart(loss_series(), **options)
    assert caught.value.http_status == 422
    assert caught.value.details[0]["loc"] == ["query", param]
    assert caught.value.details[0]["type"] == "value_error"


def test_seed_loss_chart_config_changes_the_chart() -> None:
    custom = LossChartConfig(title="Custom Loss", colors=["#ff0000", "#00ff00"], smooth_factor=0.2)
    series = loss_series()
    config, meta = build_loss_chart(series, config=custom, smooth=True)
    assert config["options"]["plugins"]["title"]["text"] == "Custom Loss"
    smoothed = by_role(config, "smoothed")
    assert [d["borderColor"] for d in smoothed] == ["#ff0000", "#00ff00"]
    assert meta["smoothing"]["smooth_factor"] == 0.2
    np.testing.assert_allclose(ys(smoothed[0]), ema(series["train_loss"].values, 0.2))
    default, _ = build_loss_chart(series, smooth=True)
    assert default["data"]["datasets"][1]["borderColor"] != "#ff0000"


def test_chart_config_rejects_bad_values() -> None:
    with pytest.raises(ValueError):
        LossChartConfig(smooth_factor=0.0)
    with pytest.raises(ValueError):
        LossChartConfig(colors=[])


def test_downsampled_chart_keeps_the_spike_and_turns_animation_off() -> None:
    values = np.full(200_000, 0.5)
    values[::2] = 0.4
    values[150_001] = 99.0
    config, meta = build_loss_chart({"train_loss": make("train_loss", np.arange(200_000), values)})
    raw = by_role(config, "raw")[0]
    assert 99.0 in ys(raw)
    assert len(raw["data"]) <= 2000
    assert meta["downsampled"] is True
    assert meta["points_total"] == 200_000
    assert meta["points_returned"] == len(raw["data"])
    assert config["options"]["animation"] is False


def test_band_minmax_adds_an_envelope_pair_with_one_point_per_raw_point() -> None:
    rng = np.random.default_rng(4)
    series = {"train_loss": make("train_loss", np.arange(30_000), rng.normal(size=30_000))}
    config, meta = build_loss_chart(series, band="minmax", max_points=300)
    raw = by_role(config, "raw")[0]
    (low,) = by_role(config, "band_min")
    (high,) = by_role(config, "band_max")
    assert low["label"] == "Train Loss (min)" and high["label"] == "Train Loss (max)"
    datasets = config["data"]["datasets"]
    assert datasets.index(high) == datasets.index(low) + 1
    assert high["fill"] == "-1" and low["fill"] is False
    assert [p["x"] for p in low["data"]] == [p["x"] for p in raw["data"]]
    for lo, value, hi in zip(ys(low), ys(raw), ys(high), strict=True):
        assert lo <= value <= hi
    assert any(lo < hi for lo, hi in zip(ys(low), ys(high), strict=True))
    assert meta["band"] == "minmax"


def test_band_equals_the_values_when_nothing_is_merged() -> None:
    config, _ = build_loss_chart(loss_series(), band="minmax")
    raw = by_role(config, "raw")[0]
    assert ys(by_role(config, "band_min")[0]) == ys(raw) == ys(by_role(config, "band_max")[0])


def test_x_modes() -> None:
    series = loss_series()
    for mode, factor in (("epoch", 0.01), ("relative_time", 0.5)):
        config, meta = build_loss_chart(series, x=mode)
        xs = [p["x"] for p in config["data"]["datasets"][0]["data"]]
        assert xs == pytest.approx([step * factor for step in range(0, 500, 10)])
        assert config["options"]["scales"]["x"]["type"] == "linear"
        assert meta["x"] == mode
    config, _ = build_loss_chart(series, x="time")
    assert config["options"]["scales"]["x"]["type"] == "time"
    assert config["data"]["datasets"][0]["data"][1]["x"] == pytest.approx((T0 + 5.0) * 1000)
    config, meta = build_loss_chart(series, x="relative_time", t0=T0 - 10)
    assert config["data"]["datasets"][0]["data"][0]["x"] == pytest.approx(10.0)
    assert meta["t0"] == T0 - 10


def test_points_without_an_epoch_are_left_out_on_the_epoch_axis() -> None:
    series = make("train_loss", range(4), [4.0, 3.0, 2.0, 1.0])
    assert series.epochs is not None
    series.epochs[1] = math.nan
    config, _ = build_loss_chart({"train_loss": series}, x="epoch")
    assert [p["y"] for p in config["data"]["datasets"][0]["data"]] == [4.0, 2.0, 1.0]


def test_learning_rate_log_scale() -> None:
    series = {"learning_rate": make("learning_rate", range(100), np.geomspace(1e-3, 1e-6, 100))}
    config, meta = build_learning_rate_chart(series, log_scale=True)
    assert config["options"]["scales"]["y"]["type"] == "logarithmic"
    assert config["data"]["datasets"][0]["label"] == "Learning Rate"
    assert meta["log_scale"] is True
    linear, _ = build_learning_rate_chart(series)
    assert linear["options"]["scales"]["y"]["type"] == "linear"


def test_gpu_chart_puts_memory_on_the_right_axis_per_device() -> None:
    steps = range(20)
    names = [
        "gpu_utilization",
        "gpu_memory",
        "gpu0.utilization",
        "gpu0.memory_used",
        "gpu1.utilization",
        "gpu1.memory_used",
        "gpu1.temperature",
        "gpu1.power",
    ]
    chosen = select_metrics("gpu", [*reversed(names), "train_loss", "accuracy"])
    assert chosen == names
    series = {name: make(name, steps, np.linspace(10, 90, 20)) for name in chosen}
    config, _ = build_gpu_chart(series)
    datasets = {d["label"]: d for d in config["data"]["datasets"]}
    assert list(datasets) == [
        "GPU Utilization (%)",
        "GPU Memory (MiB)",
        "GPU 0 Utilization (%)",
        "GPU 0 Memory (MiB)",
        "GPU 1 Utilization (%)",
        "GPU 1 Memory (MiB)",
        "GPU 1 Temperature (°C)",
        "GPU 1 Power (W)",
    ]
    scales = config["options"]["scales"]
    assert datasets["GPU 0 Memory (MiB)"]["yAxisID"] == datasets["GPU Memory (MiB)"]["yAxisID"]
    memory_axis = scales[datasets["GPU 0 Memory (MiB)"]["yAxisID"]]
    assert memory_axis["position"] == "right"
    assert scales[datasets["GPU 0 Utilization (%)"]["yAxisID"]]["position"] == "left"
    assert scales[datasets["GPU 1 Temperature (°C)"]["yAxisID"]]["title"]["text"].endswith("(°C)")
    custom, _ = build_gpu_chart(series, config=GpuChartConfig(title="GPUs"))
    assert custom["options"]["plugins"]["title"]["text"] == "GPUs"


def test_gpu_chart_always_has_a_right_memory_axis() -> None:
    config, _ = build_gpu_chart({"gpu_utilization": make("gpu_utilization", [0, 1], [50, 60])})
    positions = [scale.get("position") for scale in config["options"]["scales"].values()]
    assert "right" in positions


def test_select_metrics_defaults_per_chart() -> None:
    names = [
        "val_loss",
        "train_loss",
        "eval_loss",
        "learning_rate",
        "lr_head",
        "gpu_memory",
        "gpu0.power",
        "f1",
        "accuracy",
        "bleu",
        "throughput/tokens",
    ]
    assert select_metrics("loss", names) == ["train_loss", "val_loss", "eval_loss"]
    assert select_metrics("learning_rate", names) == ["learning_rate", "lr_head"]
    assert select_metrics("gpu", names) == ["gpu_memory", "gpu0.power"]
    assert select_metrics("metrics", names) == ["accuracy", "f1", "bleu", "throughput/tokens"]
    assert select_metrics("metrics", names, ["f1", "bleu", "f1"]) == ["f1", "bleu"]


def test_metrics_chart_labels_metrics_by_name() -> None:
    series = {name: make(name, range(5), np.linspace(0.1, 0.9, 5)) for name in ("accuracy", "f1")}
    config, _ = build_metrics_chart(series)
    assert [d["label"] for d in config["data"]["datasets"]] == ["accuracy", "f1"]


def test_empty_and_val_only_jobs() -> None:
    config, meta = build_loss_chart({})
    assert config["data"]["datasets"] == []
    assert meta["points_total"] == 0 and meta["downsampled"] is False
    json.dumps(config, allow_nan=False)
    only_val = {"val_loss": make("val_loss", [100, 200], [0.9, 0.8])}
    config, meta = build_loss_chart(only_val, smooth=True)
    assert [d["label"] for d in config["data"]["datasets"]] == ["Val Loss", "Val Loss (smoothed)"]


def test_recharts_rows_are_keyed_by_label_and_shared_by_every_dataset() -> None:
    config, _ = build_loss_chart(loss_series(), smooth=True)
    converted = to_recharts(config, "step")
    datasets = converted["data"]["datasets"]
    rows = datasets[0]["data"]
    assert all(d["data"] == rows for d in datasets)
    assert [d["label"] for d in datasets] == [d["label"] for d in config["data"]["datasets"]]
    assert [d["borderColor"] for d in datasets] == [
        d["borderColor"] for d in config["data"]["datasets"]
    ]
    assert rows[0] == {
        "step": 0,
        "Train Loss": 1.0,
        "Train Loss (smoothed)": 1.0,
        "Val Loss": 1.2,
        "Val Loss (smoothed)": 1.2,
    }
    # Val loss (every 50 steps) is drawn through the train-loss rows in between.
    assert rows[1]["Val Loss"] == pytest.approx(1.2 + (0.2 - 1.2) * 10 / 50)
    for dataset in datasets:
        assert any(dataset["label"] in row for row in rows)
    json.dumps(converted, allow_nan=False)
    assert config["data"]["datasets"][0]["data"][0] == {"x": 0, "y": 1.0}  # input untouched


def test_recharts_keeps_gaps_and_names_the_x_key_after_the_mode() -> None:
    series = {"train_loss": make("train_loss", range(4), [1.0, math.nan, 0.5, 0.4])}
    config, _ = build_loss_chart(series, x="relative_time")
    rows = to_recharts(config, "relative_time")["data"]["datasets"][0]["data"]
    assert [row["relative_time"] for row in rows] == [0, 0.5, 1, 1.5]
    assert [row["Train Loss"] for row in rows] == [1.0, None, 0.5, 0.4]


def test_out_of_order_timestamps_are_drawn_in_time_order() -> None:
    series = make("train_loss", range(4), [4.0, 3.0, 2.0, 1.0])
    assert series.timestamps is not None
    series.timestamps[:] = [T0 + 3, T0 + 1, T0 + 2, T0 + 4]  # step 0 re-posted later
    config, _ = build_loss_chart({"train_loss": series}, x="time")
    data = config["data"]["datasets"][0]["data"]
    assert [p["y"] for p in data] == [3.0, 2.0, 4.0, 1.0]
    assert config["options"]["normalized"] is True  # sorted and unique once reordered


def test_repeated_epochs_are_not_declared_normalized() -> None:
    series = make("train_loss", range(4), [4.0, 3.0, 2.0, 1.0])
    assert series.epochs is not None
    series.epochs[:] = [0, 0, 1, 1]
    config, _ = build_loss_chart({"train_loss": series}, x="epoch")
    assert [p["x"] for p in config["data"]["datasets"][0]["data"]] == [0, 0, 1, 1]
    assert "normalized" not in config["options"]


def test_recharts_of_an_empty_chart() -> None:
    config, _ = build_metrics_chart({})
    assert to_recharts(config, "step")["data"]["datasets"] == []


# ----------------------------------------------------------------- issue 16

PALETTE_JS = Path(trainvis.__file__).parent / "dashboard" / "js" / "palette.js"


def _lab(color: str) -> np.ndarray:
    """CIELAB (D65) of ``#rrggbb``."""
    rgb = np.array([int(color[i : i + 2], 16) / 255 for i in (1, 3, 5)])
    linear = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    xyz = (
        np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]])
        @ linear
        / np.array([0.95047, 1.0, 1.08883])
    )
    f = np.where(xyz > 0.008856, np.cbrt(xyz), 7.787 * xyz + 16 / 116)
    return np.array([116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])])


def test_palette_has_twenty_distinguishable_colours() -> None:
    assert len(PALETTE) >= 20
    assert all(re.fullmatch(r"#[0-9a-f]{6}", color) for color in PALETTE)
    labs = [_lab(color) for color in PALETTE]
    closest = min(
        float(np.linalg.norm(labs[i] - labs[j]))
        for i in range(len(labs))
        for j in range(i + 1, len(labs))
    )
    assert closest > 20  # ΔE*76: clearly different side by side
    assert all(35 <= lab[0] <= 80 for lab in labs)  # readable on light and dark


@pytest.mark.parametrize("kind", ["loss", "gpu", "metrics", "learning_rate"])
def test_every_chart_draws_with_the_palette(kind: str) -> None:
    assert default_config(kind).colors == list(PALETTE)
    names = [f"gpu{i}.utilization" if kind == "gpu" else f"m{i}" for i in range(25)]
    series = {name: make(name, range(3), [1.0, 2.0, 3.0]) for name in names}
    config, _ = build_chart(kind, series)
    colours = [d["borderColor"] for d in config["data"]["datasets"] if d["role"] == "raw"]
    assert colours == [PALETTE[i % len(PALETTE)] for i in range(25)]


def test_browser_palette_matches_when_present() -> None:
    """The browser's js/palette.js lists the same colours in the same order.

    The job page's panels add that file; until it exists there is nothing to compare.
    """
    if not PALETTE_JS.exists():
        return
    listed = re.findall(r"#[0-9a-fA-F]{6}\b", PALETTE_JS.read_text(encoding="utf-8"))
    assert [color.lower() for color in listed] == list(PALETTE)


def test_builders_cut_to_the_step_range_after_smoothing_the_whole_series() -> None:
    values = np.random.default_rng(3).normal(size=300)
    series = {"train_loss": make("train_loss", range(300), values)}
    config, meta = build_loss_chart(series, smooth=True, start_step=100, end_step=199)
    raw, smoothed = by_role(config, "raw")[0], by_role(config, "smoothed")[0]
    assert [p["x"] for p in raw["data"]] == list(range(100, 200))
    assert ys(smoothed) == pytest.approx(ema(values, 0.4)[100:200].tolist(), rel=1e-12)
    assert meta["points_total"] == meta["series"]["train_loss"]["points_total"] == 100


def test_aggregate_devices_folds_each_field_over_the_union_of_steps() -> None:
    series = {
        "gpu_utilization": make("gpu_utilization", [0, 1, 2], [5.0, 5.0, 5.0]),
        "gpu/node-a/utilization": make("gpu/node-a/utilization", [0, 1, 2], [1.0, 1.0, 1.0]),
        "gpu0.utilization": make("gpu0.utilization", [0, 1, 2], [10.0, math.nan, 30.0]),
        "gpu1.utilization": make("gpu1.utilization", [1, 2, 3], [20.0, 50.0, 40.0]),
        "gpu1.power": make("gpu1.power", [0], [300.0]),
    }
    folded, kept = aggregate_devices(series)
    assert kept == ["gpu_utilization"]  # the host's mean is covered by the aggregate
    assert [item.field for item in folded] == ["utilization", "power"]
    util = folded[0]
    assert util.devices == ["gpu0.utilization", "gpu1.utilization"]
    assert util.mean.metric == "gpu_mean.utilization"
    assert util.mean.steps.tolist() == [0, 1, 2, 3]
    assert util.mean.values.tolist() == [10.0, 20.0, 40.0, 40.0]
    assert util.low.tolist() == [10.0, 20.0, 30.0, 40.0]
    assert util.high.tolist() == [10.0, 20.0, 50.0, 40.0]
    assert util.mean.timestamps is not None and util.mean.timestamps.tolist() == [
        T0 + s * 0.5 for s in range(4)
    ]
    none, everything = aggregate_devices({"gpu_memory": make("gpu_memory", [0], [1.0])})
    assert none == [] and everything == ["gpu_memory"]


def test_gpu_aggregate_hides_secondary_fields_and_keeps_the_legend_small() -> None:
    names = [f"gpu{d}.{field}" for d in range(16) for field in ("utilization", "power")]
    series = {
        name: make(name, range(10), np.linspace(0, 90, 10) + i) for i, name in enumerate(names)
    }
    config, meta = build_gpu_chart(series, aggregate=True)
    datasets = config["data"]["datasets"]
    assert [d["role"] for d in datasets] == ["mean", "band_min", "band_max"] * 2
    assert all(d.get("hidden") for d in datasets if d["metric"] == "gpu_mean.power")
    assert not any(d.get("hidden") for d in datasets if d["metric"] == "gpu_mean.utilization")
    assert config["options"]["plugins"]["legend"]["position"] == "top"
    assert meta["metrics"] == ["gpu_mean.utilization", "gpu_mean.power"]
    per_device, _ = build_gpu_chart(series)
    assert per_device["options"]["plugins"]["legend"]["position"] == "right"


def test_envelope_covers_every_step_of_the_window() -> None:
    values = np.zeros(1000)
    low, high = values - 1, values + 1
    high[437] = 99.0  # between kept points after downsampling
    series = make("m", range(1000), values)
    params = resolve_params(default_config("metrics"), ChartQuery(max_points=16, start_step=400))
    window = pick_window(series, params, t0=None)
    lows, highs = envelope_at(window, low, high)
    assert window.idx.size <= 16 and 437 not in window.idx.tolist()
    assert highs.max() == 99.0 and lows.min() == -1.0
    assert window.total == 600


def test_limit_metrics_keeps_the_first_and_names_the_rest() -> None:
    names = [f"m{i:03d}" for i in range(150)]
    shown, note = limit_metrics("metrics", names)
    assert shown == names[:20]
    assert note == {
        "metrics_total": 150,
        "metrics_omitted": 130,
        "metrics_omitted_names": names[20:40],
    }
    assert limit_metrics("loss", ["train_loss"]) == (
        ["train_loss"],
        {"metrics_total": 1, "metrics_omitted": 0, "metrics_omitted_names": []},
    )
