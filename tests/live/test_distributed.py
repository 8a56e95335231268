"""Distributed training logs into one job (issue 17, part 2).

A real ``torch.distributed`` run: two ``torchrun`` agents (two "nodes", told
apart by ``TRAINVIS_HOST_NAME``) with two gloo workers each, rendezvous on
127.0.0.1, train a tiny DDP model and log through ``trainvis.init`` without an
id. Each node has two fake GPUs (the NVML boundary is faked as in
``tests/unit/test_gpu.py``; everything above ``pynvml`` is real).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
import threading
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import API, ServerProcess, free_port, require_service
from tests.unit.test_gpu import FAKE_PYNVML

pytestmark = pytest.mark.live

STEPS = 12
HOSTS = ("host-a", "host-b")
GPU_FIELDS = ("utilization", "memory_used", "memory_total", "temperature")

TRAIN = """
import json, os, time

import httpx
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

import trainvis

URL, OUT, STEPS = os.environ["TV_URL"], os.environ["TV_OUT"], int(os.environ["TV_STEPS"])
dist.init_process_group("gloo")
rank, world = dist.get_rank(), dist.get_world_size()
if rank == 0:
    time.sleep(1.0)  # the other ranks must wait for rank 0 to create the job
run = trainvis.init(
    name="ddp-two-nodes", url=URL, total_steps=STEPS, config={"world": world},
    gpu_interval=0.2, flush_interval=0.02,
)
torch.manual_seed(0)
model = DistributedDataParallel(torch.nn.Linear(8, 1))
optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
data = torch.Generator().manual_seed(rank)
target = torch.arange(8.0)
logged = {}
for step in range(STEPS):
    x = torch.randn(16, 8, generator=data)
    loss = torch.nn.functional.mse_loss(model(x).squeeze(1), x @ target)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    mean = loss.detach().clone()
    dist.all_reduce(mean)
    row = {f"rank{rank}/loss": loss.item()}
    if rank == 0:
        row["train_loss"] = mean.item() / world
    run.log(row, step=step)  # every rank posts the same steps at the same time
    logged[step] = row
status_before = None
if rank != 0:
    left = run.finish("failed")  # ranks > 0 only flush: this status is not theirs to set
dist.barrier()  # the other ranks have finished: the job must still be running
if rank == 0:
    job = httpx.get(f"{URL}/api/v1/visualization/training/jobs/{run.id}", timeout=10)
    status_before = job.json()["data"]["status"]
    left = run.finish()
with open(os.path.join(OUT, f"rank{rank}.json"), "w") as out:
    json.dump({"job": run.id, "left": int(left), "status_before": status_before,
               "host": os.environ["TRAINVIS_HOST_NAME"], "logged": logged}, out)
dist.destroy_process_group()
"""


def needs_torch() -> None:
    if importlib.util.find_spec("torch") is None:
        require_service("PyTorch", "torch is not installed (scripts/test installs the CPU build)")


def run_two_nodes(url: str, tmp_path: Path) -> list[dict[str, Any]]:
    """Both torchrun agents to the end; the ranks' reports, by rank."""
    script = tmp_path / "train_ddp.py"
    script.write_text(textwrap.dedent(TRAIN))
    fake = tmp_path / "fake_nvml"
    fake.mkdir()
    (fake / "pynvml.py").write_text(textwrap.dedent(FAKE_PYNVML))
    out = tmp_path / "out"
    out.mkdir()
    port, rdzv_id = free_port(), uuid.uuid4().hex
    agents = []
    for node, host in enumerate(HOSTS):
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(fake), os.environ.get("PYTHONPATH", "")]),
            "TRAINVIS_HOST_NAME": host,
            "TRAINVIS_SPOOL_DIR": str(tmp_path / f"spool-{host}"),
            "TV_URL": url,
            "TV_OUT": str(out),
            "TV_STEPS": str(STEPS),
            "OMP_NUM_THREADS": "1",
            "PYTHONWARNINGS": "ignore",
        }
        env.pop("TRAINVIS_URL", None)
        env.pop("CUDA_VISIBLE_DEVICES", None)
        command = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nnodes=2",
            f"--node-rank={node}",
            "--nproc-per-node=2",
            "--rdzv-backend=c10d",
            f"--rdzv-endpoint=127.0.0.1:{port}",
            f"--rdzv-id={rdzv_id}",
            "--local-addr=127.0.0.1",
            "--max-restarts=0",
            str(script),
        ]
        log = (tmp_path / f"torchrun-{host}.log").open("wb")
        agents.append(
            (subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT), log, host)
        )
    for proc, log, host in agents:
        try:
            proc.wait(timeout=150)
        except subprocess.TimeoutExpired:
            for other, _, _ in agents:
                other.kill()
        log.close()
        output = (tmp_path / f"torchrun-{host}.log").read_text(errors="replace")
        assert proc.returncode == 0, f"torchrun on {host} failed:\n{output[-6000:]}"
    return [json.loads((out / f"rank{rank}.json").read_text()) for rank in range(4)]


@pytest.mark.slow
def test_four_ranks_on_two_nodes_log_into_one_job(db_url: str, tmp_path: Path) -> None:
    """issue 17: one job, rank 0 owns the status, every rank's rows arrive, and
    each node's GPUs are their own host-qualified series in the GPU chart."""
    needs_torch()
    with (
        ServerProcess(db_url) as server,
        httpx.Client(base_url=server.url + API, timeout=30) as http,
    ):
        reports = run_two_nodes(server.url, tmp_path)
        job_id = reports[0]["job"]
        assert {report["job"] for report in reports} == {job_id}  # no explicit id: derived alike
        jobs = http.get("/training/jobs").json()["data"]
        assert [job["id"] for job in jobs] == [job_id]
        # The ranks > 0 had finished (only flushing) while the job stayed running.
        assert reports[0]["status_before"] == "running"
        job = http.get(f"/training/jobs/{job_id}").json()["data"]
        assert job["status"] == "completed"
        assert all(report["left"] == 0 for report in reports)

        history = http.get(f"/training/{job_id}/metrics/history").json()["data"]
        by_step = {row["step"]: row for row in history}
        for report in reports:  # no lost writes: every rank's value at every step
            for step, row in report["logged"].items():
                for name, value in row.items():
                    assert by_step[int(step)][name] == pytest.approx(value), (step, name)

        names = set(job["metric_names"])
        devices = {f"gpu/{host}/{index}" for host in HOSTS for index in (0, 1)}
        for field in GPU_FIELDS:  # 2 nodes x 2 fake GPUs: 4 distinct series per field
            assert {name for name in names if name.endswith(f".{field}")} == {
                f"{device}.{field}" for device in devices
            }
        assert {f"gpu/{host}/utilization" for host in HOSTS} <= names
        assert not any(name.startswith(("gpu0", "gpu1", "gpu_")) for name in names)

        chart = http.get(f"/training/{job_id}/gpu").json()
        meta = chart["meta"]
        assert list(meta["hosts"]) == list(HOSTS)  # grouped by host, in order
        shown = meta["metrics"]
        assert shown.index("gpu/host-a/1.utilization") < shown.index("gpu/host-b/utilization")
        datasets = chart["data"]["data"]["datasets"]
        labels = {dataset["metric"]: dataset["label"] for dataset in datasets}
        assert labels["gpu/host-a/0.utilization"] == "host-a GPU 0 Utilization (%)"
        assert labels["gpu/host-b/1.memory_used"] == "host-b GPU 1 Memory (MiB)"
        assert labels["gpu/host-b/utilization"] == "host-b GPU Utilization (%)"


def test_ranks_posting_the_same_steps_concurrently_lose_nothing(db_url: str) -> None:
    """issue 17: rows of one step from several ranks merge, whatever the order in
    which their concurrent requests land (both stores)."""
    ranks, steps = 6, 150
    with ServerProcess(db_url) as server, httpx.Client(base_url=server.url + API) as http:
        job_id = http.post("/training/jobs", json={"name": "merge"}).json()["data"]["id"]
        start = threading.Barrier(ranks)
        errors: list[BaseException] = []

        def rank(r: int) -> None:
            try:
                with httpx.Client(base_url=server.url + API, timeout=30) as own:
                    start.wait()
                    for first in range(0, steps, 10):
                        rows = [
                            {"step": step, f"rank{r}/loss": r + step / 1000}
                            for step in range(first, first + 10)
                        ]
                        own.post(f"/training/{job_id}/metrics", json=rows).raise_for_status()
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=rank, args=(r,)) for r in range(ranks)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert not errors
        history = http.get(f"/training/{job_id}/metrics/history", timeout=30).json()["data"]
    assert [row["step"] for row in history] == list(range(steps))
    for row in history:
        for r in range(ranks):
            assert row[f"rank{r}/loss"] == pytest.approx(r + row["step"] / 1000)
