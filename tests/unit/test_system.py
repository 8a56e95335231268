"""System metrics (issue 17, part 3): the psutil sampler against psutil's own readings.

Everything is real: psutil reads this machine and this process, the run writes
into a real SQLite store (local mode).
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

import trainvis
from tests.localdb import history
from tests.unit.test_gpu import make_fake_nvml
from trainvis import gpu
from trainvis.client import system
from trainvis.client.system import MIB, SystemSampler

KEYS = {
    "system.cpu_percent",
    "system.process_cpu_percent",
    "system.process_rss_mib",
    "system.memory_used_mib",
    "system.memory_percent",
    "system.disk_read_mib",
    "system.disk_write_mib",
    "system.net_sent_mib",
    "system.net_recv_mib",
}
#: Some containers have no disk counters (psutil gives None): those keys are left out.
DISK = {"system.disk_read_mib", "system.disk_write_mib"}
if psutil.disk_io_counters() is None:
    KEYS -= DISK
COUNTERS = sorted(key for key in KEYS if key.startswith(("system.disk", "system.net")))


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.delenv("TRAINVIS_URL", raising=False)
    monkeypatch.setitem(sys.modules, "pynvml", None)  # no GPU unless a test installs one
    yield str(tmp_path / "system.db")


def loopback_traffic(size: int) -> None:
    """Send ``size`` bytes over a loopback TCP connection (counted by ``lo``)."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        sender = socket.create_connection(server.getsockname())
        receiver, _ = server.accept()
        received = 0

        def drain() -> None:
            nonlocal received
            while received < size:
                chunk = receiver.recv(1 << 16)
                if not chunk:
                    return
                received += len(chunk)

        reader = threading.Thread(target=drain)
        reader.start()
        sender.sendall(b"x" * size)
        reader.join(10)
        sender.close()
        receiver.close()
    assert received == size


def test_sample_matches_psutils_own_readings() -> None:
    """Issue 17: every key present, each value agrees with psutil read right beside it."""
    sampler = SystemSampler(lambda sample: None, psutil=psutil, interval=60)
    sampler.prime()
    ballast = bytearray(64 * MIB)  # resident: the process's RSS grows by about this much
    ballast[::4096] = b"x" * len(ballast[::4096])
    sum(range(2_000_000))  # some CPU time in this process
    sample = sampler.sample()
    rss = psutil.Process().memory_info().rss / MIB
    memory = psutil.virtual_memory()

    assert set(sample) == KEYS
    assert all(isinstance(value, float) for value in sample.values())
    assert abs(sample["system.process_rss_mib"] - rss) <= max(0.05 * rss, 16.0)
    assert sample["system.process_rss_mib"] >= 64
    assert abs(sample["system.memory_used_mib"] - memory.used / MIB) <= 0.05 * memory.total / MIB
    assert abs(sample["system.memory_percent"] - memory.percent) <= 5.0
    assert 0.0 <= sample["system.cpu_percent"] <= 100.0
    cpus = psutil.cpu_count() or 1
    assert 0.0 <= sample["system.process_cpu_percent"] <= 100.0 * cpus
    assert sample["system.process_cpu_percent"] > 0.0  # the sum above took CPU time
    assert all(sample[key] >= 0.0 for key in COUNTERS)
    del ballast


def test_io_counters_count_from_start_and_never_go_down(tmp_path: Path) -> None:
    """Issue 17: disk and network counters start near 0 and grow with real traffic."""
    sampler = SystemSampler(lambda sample: None, psutil=psutil, interval=60)
    before_net = psutil.net_io_counters()
    sampler.prime()
    samples = [sampler.sample()]
    loopback_traffic(4 * MIB)
    with (tmp_path / "blob").open("wb") as handle:
        handle.write(os.urandom(8 * MIB))
        handle.flush()
        os.fsync(handle.fileno())
    samples.append(sampler.sample())
    samples.append(sampler.sample())
    after_net = psutil.net_io_counters()

    for key in COUNTERS:
        values = [sample[key] for sample in samples]
        assert values == sorted(values), (key, values)
    # loopback traffic is both sent and received; other processes only add to it
    grown = samples[-1]["system.net_sent_mib"] - samples[0]["system.net_sent_mib"]
    assert grown >= 3.9
    assert (
        samples[-1]["system.net_sent_mib"] <= (after_net.bytes_sent - before_net.bytes_sent) / MIB
    )
    assert samples[-1]["system.net_recv_mib"] - samples[0]["system.net_recv_mib"] >= 3.9


def test_run_logs_system_samples_and_the_thread_stops_at_finish(db: str) -> None:
    """Issue 17: ``monitor_system=True`` writes ``system.*`` rows at the run's steps."""
    run = trainvis.init(
        name="system", db=db, monitor_system=True, system_interval=0.05, flush_interval=0.05
    )
    sampler = run._system
    assert isinstance(sampler, SystemSampler) and sampler.alive
    for step in range(6):
        run.log({"train_loss": 1.0 / (step + 1)}, step=step * 10)
        time.sleep(0.1)
    run.finish()
    assert not sampler.alive
    assert not any(thread.name == "trainvis-system" for thread in threading.enumerate())

    rows = history(db, run.id)
    system_rows = [row for row in rows if "system.process_rss_mib" in row]
    assert len(system_rows) >= 3, rows
    assert {row["step"] for row in system_rows} <= {0, 10, 20, 30, 40, 50}
    rss = psutil.Process().memory_info().rss / MIB
    assert abs(system_rows[-1]["system.process_rss_mib"] - rss) <= max(0.25 * rss, 64.0)
    for key in COUNTERS:
        values = [row[key] for row in system_rows if key in row]
        assert values == sorted(values), (key, values)


def test_system_monitoring_follows_gpu_monitoring_by_default(
    db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 17: on with ``monitor_gpu`` (a GPU found, or asked for); off without a GPU."""
    run = trainvis.init(name="cpu-only", db=db)  # no NVML: neither sampler
    run.finish()
    assert run._gpu is None and run._system is None

    asked = trainvis.init(name="asked", db=db, monitor_gpu=True)  # asked, even with no GPU
    asked.finish()
    assert asked._gpu is None and asked._system is not None and not asked._system.alive

    off = trainvis.init(name="off", db=db, monitor_gpu=True, monitor_system=False)
    off.finish()
    assert off._system is None

    monkeypatch.setitem(sys.modules, "pynvml", make_fake_nvml())
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr(gpu, "_reported", set())
    found = trainvis.init(name="gpu-box", db=db)  # a GPU found: both on
    found.finish()
    assert found._gpu is not None and found._system is not None


def test_no_psutil_is_one_info_line(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, db: str
) -> None:
    """Issue 17: without psutil the run goes on, and the log says what to install."""
    monkeypatch.setitem(sys.modules, "psutil", None)
    monkeypatch.setattr(system, "_reported", set())
    with caplog.at_level("INFO", logger="trainvis.client"):
        run = trainvis.init(name="no-psutil", db=db, monitor_system=True)
        run.log({"train_loss": 1.0}, step=1)
        run.finish()
        assert SystemSampler.create(lambda sample: None) is None
    assert run._system is None
    assert caplog.text.count("pip install psutil") == 1
    rows = history(db, run.id)
    assert len(rows) == 1 and rows[0]["train_loss"] == 1.0
    assert not any(key.startswith("system.") for key in rows[0])
