"""``trainvis import tensorboard`` on event files from ``torch.utils.tensorboard`` (issue 8).

The logdir holds three runs: two with 10,000 steps and several tags (simple-value,
tensor and double-precision scalars, NaN and Infinity, a tag that needs
sanitizing, ``epoch``), and one restarted from a checkpoint with
``purge_step``. Every imported value and step is compared with what was
written; importing twice changes nothing.
"""

from __future__ import annotations

import math
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tests.conftest import API, ServerProcess, require_service
from trainvis.importers import import_tensorboard
from trainvis.models import encode_value
from trainvis.store import MetricStore

pytestmark = pytest.mark.slow

STEPS = 10_000


@dataclass
class Run:
    """What a run's writer wrote: wire rows by step and the wall-clock window."""

    rows: dict[int, dict[str, Any]] = field(default_factory=dict)
    started: float = 0.0
    ended: float = 0.0

    def put(self, step: int, metric: str, value: float) -> None:
        self.rows.setdefault(step, {"step": step})[metric] = encode_value(value)


def f32(value: float) -> float:
    return float(np.float32(value))


def write_logdir(root: Path) -> dict[str, Run]:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as exc:  # torch is there; tensorboard is the optional part
        require_service("tensorboard", f"{exc} (pip install -e '.[tensorboard]')")
    runs: dict[str, Run] = {}

    run = runs["exp1/seed0"] = Run(started=time.time())
    writer = SummaryWriter(str(root / "exp1" / "seed0"))
    for step in range(STEPS):
        loss = math.nan if step == 5000 else math.inf if step == 5001 else 2.0 / (step + 1)
        writer.add_scalar("train/loss", loss, step)  # simple_value (float32)
        run.put(step, "train_loss", f32(loss))
        lr = 1e-3 * (1 - step / STEPS)
        writer.add_scalar("lr", lr, step, new_style=True)  # tensor scalar (float32)
        run.put(step, "learning_rate", f32(lr))
        writer.add_scalar("epoch", step // 1000, step)
        run.rows[step]["epoch"] = step // 1000
        if step % 10 == 0:
            writer.add_scalar("grad norm/layer 1", step * 0.01, step)
            run.put(step, "grad_norm/layer_1", f32(step * 0.01))
        if step % 100 == 0:
            val = 3.0 / (step + 2)
            writer.add_scalar("eval/loss", val, step, new_style=True, double_precision=True)
            run.put(step, "val_loss", val)  # double precision: exact
            writer.add_scalar("eval/accuracy", step / STEPS, step)
            run.put(step, "accuracy", f32(step / STEPS))
    writer.close()
    run.ended = time.time()

    run = runs["exp1/seed1"] = Run(started=time.time())
    writer = SummaryWriter(str(root / "exp1" / "seed1"))
    for step in range(STEPS):
        writer.add_scalar("Loss/train", 1.5 / (step + 1), step)
        run.put(step, "train_loss", f32(1.5 / (step + 1)))
        writer.add_scalar("custom.metric-x", -step, step)
        run.put(step, "custom.metric-x", f32(-step))
    writer.close()
    run.ended = time.time()

    run = runs["restarted"] = Run(started=time.time())
    writer = SummaryWriter(str(root / "restarted"))
    for step in range(200):
        writer.add_scalar("val/loss", step, step)
        if step < 150:
            run.put(step, "val_loss", float(step))
    writer.close()
    time.sleep(1.1)  # event file names sort by their creation second
    writer = SummaryWriter(str(root / "restarted"), purge_step=150)
    for step in range(150, 250):
        writer.add_scalar("val/loss", -step, step)
        run.put(step, "val_loss", float(-step))
    writer.close()
    run.ended = time.time()
    return runs


@pytest.fixture(scope="module")
def logdir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Run]]:
    root = tmp_path_factory.mktemp("tb") / "logs"
    return root, write_logdir(root)


def _unix(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def assert_same_history(rows: list[dict[str, Any]], run: Run) -> None:
    """Every step and value as written; timestamps within the writer's window."""
    assert [row["step"] for row in rows] == sorted(run.rows)
    for row in rows:
        stamp = _unix(row.pop("timestamp"))
        assert run.started - 0.002 <= stamp <= run.ended + 0.002
        assert row == run.rows[row["step"]]


def test_every_run_value_and_step_arrives(
    logdir: tuple[Path, dict[str, Run]], db_url: str, store: MetricStore
) -> None:
    root, runs = logdir
    seen: list[tuple[str, str]] = []
    ids = import_tensorboard(
        root, db=db_url, on_job=lambda job, outcome: seen.append((job.spec["name"], outcome))
    )
    assert seen == [(name, "created") for name in sorted(runs)]
    for job_id, name in zip(ids, sorted(runs), strict=True):
        assert job_id.startswith("tb-")
        job = store.get_job(job_id)
        assert (job.name, job.status.value, job.tags) == (name, "completed", ["tensorboard"])
        assert job.config == {"source": "tensorboard", "logdir": str(root.resolve()), "run": name}
        assert_same_history(list(store.iter_rows(job_id)), runs[name])
    seed0 = store.get_job(ids[0])
    assert seed0.metric_names == sorted(
        ["accuracy", "grad_norm/layer_1", "learning_rate", "train_loss", "val_loss"]
    )
    assert seed0.summary["has_nan"] and seed0.current_epoch == 9 and seed0.total_steps == 9999


def test_importing_twice_changes_nothing(
    logdir: tuple[Path, dict[str, Run]], tmp_path: Path
) -> None:
    from trainvis.store import open_store

    root, runs = logdir
    db = str(tmp_path / "twice.db")
    ids = import_tensorboard(root, db=db)
    store = open_store(db)
    try:
        before = {job_id: (store.get_job(job_id), list(store.iter_rows(job_id))) for job_id in ids}
        outcomes: list[str] = []
        assert import_tensorboard(root, db=db, on_job=lambda j, o: outcomes.append(o)) == ids
        assert outcomes == ["unchanged"] * len(ids)
        forced: list[str] = []
        assert import_tensorboard(root, db=db, force=True, on_job=lambda j, o: forced.append(o))
        assert forced == ["updated"] * len(ids)
        for job_id in ids:
            job = store.get_job(job_id)
            old_job, old_rows = before[job_id]
            assert list(store.iter_rows(job_id)) == old_rows
            assert (job.point_count, job.summary, job.status) == (
                old_job.point_count,
                old_job.summary,
                old_job.status,
            )
        assert len(store.list_jobs()[0]) == len(runs)
    finally:
        store.close()


@pytest.mark.live
def test_cli_imports_over_http_with_a_token(
    logdir: tuple[Path, dict[str, Run]], tmp_path: Path
) -> None:
    root, runs = logdir
    env = {"TRAINVIS_API_TOKEN": "s3cret-token-0123456"}
    with ServerProcess(str(tmp_path / "live.db"), env=env) as server:
        command = [sys.executable, "-m", "trainvis", "import", "tensorboard", str(root)]
        command += ["--url", server.url, "--name-prefix", "tb:"]
        refused = subprocess.run(command, capture_output=True, text=True, timeout=120)
        assert refused.returncode == 1 and "unauthorized" in refused.stderr
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=120,
            env={**server.env, "TRAINVIS_TOKEN": "s3cret-token-0123456"},
        )
        assert done.returncode == 0, done.stderr
        lines = [line.split("\t") for line in done.stdout.splitlines()]
        assert [(line[1], line[-1]) for line in lines] == [
            ("created", f"tb:{name}") for name in sorted(runs)
        ]
        for line, name in zip(lines, sorted(runs), strict=True):
            response = httpx.get(
                f"{server.url}{API}/training/{line[0]}/metrics/history", timeout=30
            )
            assert_same_history(response.json()["data"], runs[name])
        again = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=120,
            env={**server.env, "TRAINVIS_TOKEN": "s3cret-token-0123456"},
        )
        assert [line.split("\t")[1] for line in again.stdout.splitlines()] == ["unchanged"] * 3


def test_a_missing_or_empty_logdir_is_an_error(tmp_path: Path) -> None:
    from trainvis.importers import TransferError

    with pytest.raises(TransferError, match="not a directory"):
        import_tensorboard(tmp_path / "nope", db=str(tmp_path / "x.db"))
    (tmp_path / "empty" / "run").mkdir(parents=True)
    with pytest.raises(TransferError, match="no TensorBoard event files"):
        import_tensorboard(tmp_path / "empty", db=str(tmp_path / "x.db"))
