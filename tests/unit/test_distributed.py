"""Rank-aware ``trainvis.init`` (issue 17): which job, who owns it, who samples GPUs.

The ranks run in this process one after the other, told apart by the
launcher's variables (``RANK``, ``LOCAL_RANK``, ...), against a real local
store; the real ``torchrun`` run is in ``tests/live/test_distributed.py``.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import trainvis
from tests.conftest import free_port
from tests.unit.test_gpu import make_fake_nvml
from trainvis import gpu
from trainvis.client import distributed
from trainvis.client.distributed import Ranks, attach_job, launch_key, shared_job_id
from trainvis.client.local import LocalClient
from trainvis.models import JOB_ID_RE

LAUNCH_VARS = (
    "RANK",
    "LOCAL_RANK",
    "WORLD_SIZE",
    "LOCAL_WORLD_SIZE",
    "GROUP_RANK",
    "NODE_RANK",
    "TORCHELASTIC_RUN_ID",
    "TORCHELASTIC_RESTART_COUNT",
    "SLURM_JOB_ID",
    "SLURM_STEP_ID",
    "TRAINVIS_HOST_NAME",
    "TRAINVIS_URL",
)


@pytest.fixture
def launcher(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Become one torchrun worker: its variables, and a fresh process's count of runs."""
    for name in LAUNCH_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setitem(sys.modules, "pynvml", None)

    def become(
        rank: int, local_rank: int, *, world: int = 4, local_world: int = 2, **extra: str
    ) -> None:
        env = {
            "RANK": rank,
            "LOCAL_RANK": local_rank,
            "WORLD_SIZE": world,
            "LOCAL_WORLD_SIZE": local_world,
            "GROUP_RANK": rank // local_world,
            "TORCHELASTIC_RUN_ID": "rdzv-1",
            **extra,
        }
        for name, value in env.items():
            monkeypatch.setenv(name, str(value))
        monkeypatch.setattr(distributed, "_started", Counter())

    yield become


def test_ranks_read_the_launcher_variables() -> None:
    env = {"RANK": "5", "LOCAL_RANK": "1", "WORLD_SIZE": "8", "LOCAL_WORLD_SIZE": "4"}
    ranks = Ranks.detect({**env, "GROUP_RANK": "1", "TORCHELASTIC_RESTART_COUNT": "2"})
    assert ranks == Ranks(5, 1, 8, 4, 1, 2)
    assert ranks.distributed and ranks.multi_node and not ranks.primary
    assert not ranks.node_primary
    single_node = Ranks.detect({**env, "RANK": "0", "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "8"})
    assert single_node.primary and single_node.node_primary and not single_node.multi_node
    alone = Ranks.detect({})
    assert alone == Ranks() and not alone.distributed
    assert Ranks.detect({"RANK": "x", "WORLD_SIZE": "2"}) == Ranks()  # unreadable: one process


def test_the_shared_id_is_the_same_on_every_rank_and_new_per_launch() -> None:
    """issue 17: without id=, ranks derive one job id from the launch and the name."""
    first = {"TORCHELASTIC_RUN_ID": "3f2a"}
    ids = {shared_job_id("bert base", Ranks(rank, 0, 4, 4), first) for rank in range(4)}
    assert len(ids) == 1
    [job_id] = ids
    assert job_id.startswith("bert-base-") and JOB_ID_RE.match(job_id)
    assert shared_job_id("bert base", Ranks(), {"TORCHELASTIC_RUN_ID": "9c1d"}) != job_id
    assert shared_job_id("eval", Ranks(), first) != job_id
    slurm = {"TORCHELASTIC_RUN_ID": "none", "SLURM_JOB_ID": "4242", "SLURM_STEP_ID": "0"}
    assert launch_key(slurm) == "slurm:4242.0"
    assert JOB_ID_RE.match(shared_job_id("...", Ranks(), slurm) or "")


def test_without_a_launch_key_rank_zero_goes_alone_and_the_others_must_be_told() -> None:
    static = {"TORCHELASTIC_RUN_ID": "none"}  # torchrun with a static rendezvous
    assert shared_job_id("run", Ranks(0, 0, 2, 2), static) is None
    with pytest.raises(ValueError, match="same id= on every rank"):
        shared_job_id("run", Ranks(1, 1, 2, 2), static)


def test_attach_waits_for_the_job_and_gives_up_after_the_wait(tmp_path: Path) -> None:
    client = LocalClient(str(tmp_path / "a.db"))
    creator = LocalClient(str(tmp_path / "a.db"))
    later = threading.Timer(0.4, lambda: creator.create_job({"id": "shared", "name": "x"}))
    later.start()
    started = time.monotonic()
    job = attach_job(client, "shared", deadline=started + 0.1, wait=10.0)
    later.join()
    assert job is not None and job["id"] == "shared"
    assert time.monotonic() - started >= 0.35
    assert attach_job(client, "missing", deadline=time.monotonic(), wait=0.3) is None
    client.close()
    creator.close()


def test_rank_zero_owns_the_job_and_its_status(launcher: Any, tmp_path: Path) -> None:
    """issue 17: one job for all ranks; a rank > 0 finishing (even failed) only flushes."""
    db = str(tmp_path / "ranks.db")
    launcher(0, 0)
    zero = trainvis.init(name="ddp", db=db, flush_interval=0.02)
    launcher(1, 1)
    one = trainvis.init(name="ddp", db=db, flush_interval=0.02)
    assert one.id == zero.id and not one.owns_status and zero.owns_status
    for step in range(3):
        zero.log({"train_loss": 1.0, "rank0/loss": 0.5}, step=step)
        one.log({"rank1/loss": 0.25}, step=step)
    assert one.finish("failed", message="rank 1 crashed") == 0
    client = LocalClient(db)
    assert client.get_job(zero.id)["status"] == "running"
    assert zero.finish() == 0
    job = client.get_job(zero.id)
    rows = client.history(zero.id)
    client.close()
    assert job["status"] == "completed"
    wanted = {"rank0/loss": 0.5, "rank1/loss": 0.25, "train_loss": 1.0}
    assert [row["step"] for row in rows] == [0, 1, 2]
    assert all({key: row.get(key) for key in wanted} == wanted for row in rows)


def test_a_rank_that_does_not_see_the_job_creates_it_without_touching_the_status(
    launcher: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rank > 0 whose rank 0 never comes loses no rows; rank 0 arriving late
    takes the job over (an elastic restart would too) instead of failing on 409."""
    monkeypatch.setattr(distributed, "JOB_WAIT", 0.2)
    db = str(tmp_path / "late.db")
    launcher(3, 1)
    three = trainvis.init(name="late", db=db, flush_interval=0.02, connect_timeout=0.2)
    three.log({"rank3/loss": 3.0}, step=7)
    assert three.finish() == 0
    client = LocalClient(db)
    # rows started it (first metrics start a job), but rank 3 never sets "completed"
    assert client.get_job(three.id)["status"] == "running"
    launcher(0, 0)
    zero = trainvis.init(name="late", db=db, flush_interval=0.02)
    assert zero.id == three.id
    zero.log({"train_loss": 1.0})  # the step counter starts at 0, not after step 7
    zero.finish()
    assert client.get_job(zero.id)["status"] == "completed"
    assert [row["step"] for row in client.history(zero.id)] == [0, 7]
    client.close()


def test_a_second_run_of_one_launch_is_a_second_job(launcher: Any, tmp_path: Path) -> None:
    launcher(0, 0)
    db = str(tmp_path / "two.db")
    first = trainvis.init(name="sweep", db=db)
    first.finish()
    second = trainvis.init(name="sweep", db=db)
    second.finish()
    assert first.id != second.id
    launcher(1, 1)  # another rank starts the same runs in the same order
    again = trainvis.init(name="sweep", db=db)
    again.finish()
    assert again.id == first.id


def test_a_rank_that_cannot_reach_the_server_spools_rows_but_no_status(
    launcher: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from trainvis.client.spool import spooled_files

    spool = tmp_path / "spool"
    monkeypatch.setenv("TRAINVIS_SPOOL_DIR", str(spool))
    launcher(1, 1)
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens
    run = trainvis.init(name="away", url=url, connect_timeout=0.3, flush_interval=0.02)
    run.log({"rank1/loss": 1.0}, step=0)
    assert run.finish(timeout=0.3) == 1
    [journal] = spooled_files(spool)
    kinds = [json.loads(line)["t"] for line in journal.read_text().splitlines()]
    assert kinds[:2] == ["run", "create"] and "rows" in kinds and "status" not in kinds


def test_gpus_are_sampled_once_per_node_and_named_after_the_host(
    launcher: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """issue 17: LOCAL_RANK 0 samples; two nodes give gpu/<host>/... series."""
    monkeypatch.setitem(sys.modules, "pynvml", make_fake_nvml())
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr(gpu, "_reported", set())
    db = str(tmp_path / "nodes.db")
    runs = []
    for rank, host in enumerate(("node-a", "node-a", "node-b", "node-b")):
        launcher(rank, rank % 2, TRAINVIS_HOST_NAME=host)
        runs.append(trainvis.init(name="nodes", db=db, gpu_interval=60, flush_interval=0.02))
    assert [run._gpu is not None for run in runs] == [True, False, True, False]
    for run in reversed(runs):
        run.finish()
    client = LocalClient(db)
    names = set(client.get_job(runs[0].id)["metric_names"])
    client.close()
    assert {f"gpu/{host}/{i}.utilization" for host in ("node-a", "node-b") for i in (0, 1)} <= names
    assert not {name for name in names if name.startswith(("gpu0", "gpu1", "gpu_"))}


def test_one_node_keeps_the_single_host_names(
    launcher: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", make_fake_nvml())
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    launcher(0, 0, world=2, local_world=2, TRAINVIS_HOST_NAME="node-a")
    run = trainvis.init(name="one-node", db=str(tmp_path / "one.db"), gpu_interval=60)
    run.finish()
    client = LocalClient(str(tmp_path / "one.db"))
    names = set(client.get_job(run.id)["metric_names"])
    client.close()
    assert {"gpu_utilization", "gpu0.utilization", "gpu1.memory_used"} <= names
    assert not any(name.startswith("gpu/") for name in names)
