"""The GPU sampler over a fake NVML (two devices); everything above ``pynvml`` is real."""

from __future__ import annotations

import logging
import sys
import time
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from trainvis import gpu
from trainvis.client.local import LocalClient
from trainvis.models import parse_gpu_series

#: Source of a fake ``pynvml`` with two devices. The live tests write it to a
#: file and put it on a subprocess's PYTHONPATH (``trainvis gpu-watch``).
FAKE_PYNVML = """
import os
from types import SimpleNamespace

NVML_TEMPERATURE_GPU = 0
MIB = 1024 * 1024
DEVICES = [
    {"uuid": "GPU-aaaa1111-0000-0000-0000-000000000000", "util": 50, "used": 1024,
     "total": 8192, "temp": 40, "power_mw": 100000},
    {"uuid": "GPU-bbbb2222-0000-0000-0000-000000000000", "util": 70, "used": 3072,
     "total": 8192, "temp": 60, "power_mw": None},
]
FAIL_INIT = os.environ.get("FAKE_NVML_FAIL_INIT") == "1"
calls = {"init": 0, "shutdown": 0}


class NVMLError(Exception):
    pass


class NVMLError_NotSupported(NVMLError):
    pass


def nvmlInit():
    if FAIL_INIT:
        raise NVMLError("Driver Not Loaded")
    calls["init"] += 1


def nvmlShutdown():
    calls["shutdown"] += 1


def nvmlDeviceGetCount():
    return len(DEVICES)


def nvmlDeviceGetHandleByIndex(index):
    if not 0 <= index < len(DEVICES):
        raise NVMLError("Invalid Argument")
    return ("handle", index)


def nvmlDeviceGetHandleByUUID(uuid):
    for index, device in enumerate(DEVICES):
        if device["uuid"] == uuid:
            return ("handle", index)
    raise NVMLError("Not Found")


def nvmlDeviceGetUUID(handle):
    return DEVICES[handle[1]]["uuid"].encode()


def nvmlDeviceGetUtilizationRates(handle):
    return SimpleNamespace(gpu=DEVICES[handle[1]]["util"], memory=10)


def nvmlDeviceGetMemoryInfo(handle):
    device = DEVICES[handle[1]]
    return SimpleNamespace(used=device["used"] * MIB, total=device["total"] * MIB,
                           free=(device["total"] - device["used"]) * MIB)


def nvmlDeviceGetTemperature(handle, sensor):
    assert sensor == NVML_TEMPERATURE_GPU
    return DEVICES[handle[1]]["temp"]


def nvmlDeviceGetPowerUsage(handle):
    power = DEVICES[handle[1]]["power_mw"]
    if power is None:
        raise NVMLError_NotSupported("Not Supported")
    return power
"""


def make_fake_nvml() -> Any:
    module = types.ModuleType("pynvml")
    exec(compile(FAKE_PYNVML, "fake_pynvml.py", "exec"), module.__dict__)
    return module


@pytest.fixture
def nvml(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    fake = make_fake_nvml()
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr(gpu, "_reported", set())
    yield fake


def test_sample_reads_both_devices_with_means_in_mib(nvml: Any) -> None:
    sample = gpu.sample(nvml, gpu.visible_devices(nvml))
    assert sample["gpu_utilization"] == 60.0
    assert sample["gpu_memory"] == 2048.0
    assert sample["gpus"] == [
        {
            "index": 0,
            "utilization": 50.0,
            "memory_used": 1024.0,
            "memory_total": 8192.0,
            "temperature": 40.0,
            "power": 100.0,
        },
        # power is not supported on device 1: left out, not an error
        {
            "index": 1,
            "utilization": 70.0,
            "memory_used": 3072.0,
            "memory_total": 8192.0,
            "temperature": 60.0,
        },
    ]


@pytest.mark.parametrize(
    ("visible", "expected_utilization"),
    [
        ("1", [70.0]),
        ("1,0", [70.0, 50.0]),
        ("GPU-bbbb2222-0000-0000-0000-000000000000", [70.0]),
        ("GPU-bbbb", [70.0]),  # a unique UUID prefix, as CUDA accepts
        ("0,7,1", [50.0]),  # CUDA stops at the first entry naming no device
        ("GPU-ffff,0", []),
        ("", []),
        ("0,0", [50.0]),
    ],
)
def test_visible_devices_honour_cuda_visible_devices(
    nvml: Any, visible: str, expected_utilization: list[float]
) -> None:
    handles = gpu.visible_devices(nvml, {"CUDA_VISIBLE_DEVICES": visible})
    devices = gpu.sample(nvml, handles)["gpus"]
    assert [device["utilization"] for device in devices] == expected_utilization
    # index is the position in CUDA's order (cuda:N), not NVML's
    assert [device["index"] for device in devices] == list(range(len(devices)))


def test_sampler_calls_back_at_once_and_stops_promptly(nvml: Any) -> None:
    samples: list[dict[str, Any]] = []
    sampler = gpu.GpuSampler.create(samples.append, interval=60.0)
    assert sampler is not None
    sampler.start()
    deadline = time.monotonic() + 5
    while not samples and time.monotonic() < deadline:
        time.sleep(0.01)
    started = time.monotonic()
    sampler.stop()
    assert time.monotonic() - started < 1.0
    assert len(samples) == 1 and samples[0]["gpu_utilization"] == 60.0
    assert nvml.calls == {"init": 1, "shutdown": 1}


def test_sampler_survives_a_failing_callback(nvml: Any, caplog: pytest.LogCaptureFixture) -> None:
    calls: list[int] = []

    def broken(sample: dict[str, Any]) -> None:
        calls.append(1)
        raise RuntimeError("boom")

    sampler = gpu.GpuSampler.create(broken, interval=0.01)
    assert sampler is not None
    with caplog.at_level(logging.ERROR, logger="trainvis.gpu"):
        sampler.start()
        deadline = time.monotonic() + 5
        while len(calls) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        sampler.stop()
    assert len(calls) >= 3
    assert len([r for r in caplog.records if "GPU sample failed" in r.message]) == 1


def test_no_pynvml_is_one_info_line(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import fails
    monkeypatch.setattr(gpu, "_reported", set())
    with caplog.at_level(logging.INFO, logger="trainvis.gpu"):
        assert gpu.GpuSampler.create(lambda s: None) is None
        assert gpu.GpuSampler.create(lambda s: None) is None
    lines = [r for r in caplog.records if r.name == "trainvis.gpu"]
    assert len(lines) == 1 and lines[0].levelno == logging.INFO
    assert "nvidia-ml-py is not installed" in lines[0].message


def test_no_driver_is_one_info_line(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("FAKE_NVML_FAIL_INIT", "1")
    monkeypatch.setitem(sys.modules, "pynvml", make_fake_nvml())
    monkeypatch.setattr(gpu, "_reported", set())
    with caplog.at_level(logging.INFO, logger="trainvis.gpu"):
        assert gpu.GpuSampler.create(lambda s: None) is None
        assert gpu.GpuSampler.create(lambda s: None) is None
    lines = [r for r in caplog.records if r.name == "trainvis.gpu"]
    assert [r.levelno for r in lines] == [logging.INFO]
    assert "Driver Not Loaded" in lines[0].message


def test_no_visible_gpu_releases_nvml(
    nvml: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    with caplog.at_level(logging.INFO, logger="trainvis.gpu"):
        assert gpu.GpuSampler.create(lambda s: None) is None
    assert nvml.calls == {"init": 1, "shutdown": 1}
    assert "no GPU visible" in caplog.text


def test_run_logs_gpu_samples_at_its_current_step(
    nvml: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import trainvis

    monkeypatch.delenv("TRAINVIS_URL", raising=False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1,0")
    db = str(tmp_path / "gpu.db")
    run = trainvis.init(name="gpu", db=db, gpu_interval=0.05, flush_interval=0.05)
    assert run._gpu is not None  # NVML present: monitoring on by default
    for step in range(5):
        run.log({"train_loss": 1.0 / (step + 1)}, step=step * 10)
        time.sleep(0.1)
    run.finish()
    client = LocalClient(db)
    rows = client.history(run.id)
    client.close()
    gpu_rows = [row for row in rows if "gpu_utilization" in row]
    assert gpu_rows, rows
    assert {row["step"] for row in gpu_rows} <= {0, 10, 20, 30, 40}
    first = gpu_rows[0]
    assert first["gpu_utilization"] == 60.0
    assert first["gpu0.utilization"] == 70.0  # cuda:0 is NVML device 1 here
    assert first["gpu1.power"] == 100.0
    assert "gpu0.power" not in first


def test_monitor_gpu_false_starts_no_sampler(
    nvml: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import trainvis

    monkeypatch.delenv("TRAINVIS_URL", raising=False)
    run = trainvis.init(name="no-gpu", db=str(tmp_path / "g.db"), monitor_gpu=False)
    run.finish()
    assert run._gpu is None and nvml.calls["init"] == 0


# ------------------------------------------------------------------ several nodes (issue 17)


def test_host_name_is_the_override_or_the_machine_reduced_to_name_characters(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """issue 17: the host in GPU series names (TRAINVIS_HOST_NAME simulates a node)."""
    assert gpu.host_name({"TRAINVIS_HOST_NAME": "node a.cluster/1"}) == "node-a.cluster-1"
    assert gpu.host_name({"TRAINVIS_HOST_NAME": "///"}) == "host"
    assert gpu.host_name({"TRAINVIS_HOST_NAME": "n" * 200}) == "n" * 64
    monkeypatch.setattr(gpu.socket, "gethostname", lambda: "gpu-box_7.example.org")
    assert gpu.host_name({}) == "gpu-box_7.example.org"
    assert gpu.host_name({"TRAINVIS_HOST_NAME": "  "}) == "gpu-box_7.example.org"


def test_two_nodes_of_eight_gpus_give_sixteen_valid_series_per_field(nvml: Any) -> None:
    """issue 17: host-qualified names, valid metric names, distinct across nodes."""
    from trainvis.models import METRIC_NAME_RE, parse_metric_rows

    nvml.DEVICES[:] = [
        {"uuid": f"GPU-{i:04x}", "util": 10 * i, "used": 1024, "total": 8192, "temp": 50,
         "power_mw": 200000}
        for i in range(8)
    ]  # fmt: skip
    names: set[str] = set()
    for host in ("node-a", "x" * 64):
        sampler = gpu.GpuSampler.create(lambda sample: None, host=host)
        assert sampler is not None
        reading = sampler.sample()
        sampler.stop()
        assert "gpus" not in reading and "gpu_utilization" not in reading
        assert reading[f"gpu/{host}/utilization"] == 35.0  # the host's mean
        assert reading[f"gpu/{host}/7.utilization"] == 70.0
        for name in reading:
            assert METRIC_NAME_RE.match(name), name
            parsed = parse_gpu_series(name)
            assert parsed is not None and parsed.host == host
        # the server stores them under these names
        [row] = parse_metric_rows([{"step": 1, **reading}], max_rows=10)
        assert set(row.values) == set(reading)
        names.update(reading)
    for field in ("utilization", "memory_used", "memory_total", "temperature", "power"):
        assert len([name for name in names if name.endswith(f".{field}")]) == 16


def test_parse_series_reads_both_schemes() -> None:
    assert parse_gpu_series("gpu3.power") == (None, 3, "power")
    assert parse_gpu_series("gpu/node-a.lan/12.memory_used") == ("node-a.lan", 12, "memory_used")
    assert parse_gpu_series("gpu/node-a/utilization") == ("node-a", None, "utilization")
    for other in ("gpu_utilization", "gpu_memory", "gpu/a/b/0.power", "gpux.power", "loss"):
        assert parse_gpu_series(other) is None


def test_gpu_chart_groups_and_labels_host_series_by_host() -> None:
    """issue 17: the GPU chart orders series host by host and labels them with the host."""
    import numpy as np

    from trainvis.charts import build_gpu_chart
    from trainvis.charts.select import gpu_axis_for, label_for, select_metrics
    from trainvis.health.monitor import GPU_UTILIZATION_RE
    from trainvis.series import Series

    names = [
        "gpu/node-b/0.utilization",
        "gpu/mem-01/1.temperature",
        "gpu/mem-01/utilization",
        "train_loss",
        "gpu/node-b/utilization",
        "gpu/mem-01/1.utilization",
        "gpu/mem-01/0.utilization",
        "gpu/mem-01/memory_used",
    ]
    chosen = select_metrics("gpu", names)
    assert chosen == [
        "gpu/mem-01/utilization",
        "gpu/mem-01/memory_used",
        "gpu/mem-01/0.utilization",
        "gpu/mem-01/1.utilization",
        "gpu/mem-01/1.temperature",
        "gpu/node-b/utilization",
        "gpu/node-b/0.utilization",
    ]
    assert label_for("gpu/node-b/0.utilization") == "node-b GPU 0 Utilization (%)"
    assert label_for("gpu/mem-01/memory_used") == "mem-01 GPU Memory (MiB)"
    assert label_for("gpu1.memory_used") == "GPU 1 Memory (MiB)"  # single host: unchanged
    # the axis comes from the field, not from "mem" in a host name
    assert gpu_axis_for("gpu/mem-01/0.utilization") == "y"
    assert gpu_axis_for("gpu/mem-01/1.temperature") == "y2"
    assert GPU_UTILIZATION_RE.match("gpu/node-b/0.utilization")
    assert GPU_UTILIZATION_RE.match("gpu/node-b/utilization")

    def series(name: str) -> Series:
        return Series(name, np.arange(3, dtype=np.int64), np.array([1.0, 2.0, 3.0]))

    config, meta = build_gpu_chart({name: series(name) for name in chosen})
    assert meta["hosts"] == {
        "mem-01": chosen[:5],
        "node-b": chosen[5:],
    }
    labels = [dataset["label"] for dataset in config["data"]["datasets"]]
    assert (
        labels[0] == "mem-01 GPU Utilization (%)" and labels[-1] == "node-b GPU 0 Utilization (%)"
    )
    _config, single = build_gpu_chart({"gpu0.utilization": series("gpu0.utilization")})
    assert "hosts" not in single


@pytest.mark.gpu
def test_real_nvml_reads_every_visible_device() -> None:
    pynvml = pytest.importorskip("pynvml")
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        pytest.skip(f"no NVIDIA driver: {exc}")
    try:
        handles = gpu.visible_devices(pynvml)
        if not handles:
            pytest.skip("no GPU visible")
        sample = gpu.sample(pynvml, handles)
    finally:
        pynvml.nvmlShutdown()
    print(sample)
    assert len(sample["gpus"]) == len(handles)
    assert 0 <= sample["gpu_utilization"] <= 100
    for device in sample["gpus"]:
        assert 0 < device["memory_total"] and 0 <= device["memory_used"] <= device["memory_total"]
