"""``trainvis import wandb`` on run directories written by the wandb package offline (issue 17).

A script run with ``WANDB_MODE=offline`` (no network) writes four runs the way
training scripts do: a finished run with a nested config, tags, a group, a
config update, 1,000 steps of several metrics (NaN and Infinity among them,
a step built from two ``log`` calls, a histogram), a hand-set summary; a run
that dies of an exception; a run finished with ``exit_code=2``; and a run
resumed in a second process (two directories, one run id). The script
records what it logged; every imported value is compared with that, through
the store and through the REST API; importing twice changes nothing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import API, ServerProcess, require_service
from trainvis.importers import TransferError
from trainvis.importers.wandb import import_wandb
from trainvis.store import MetricStore, open_store

pytestmark = pytest.mark.slow

STEPS = 1000

SCRIPT = textwrap.dedent(
    """
    import json, math, sys, time
    import wandb

    kind, out = sys.argv[1], sys.argv[2]
    logged = {}  # step -> {key: value}; NaN/Infinity as the wire spells them

    def put(step, values):
        for key, value in values.items():
            if isinstance(value, float) and not math.isfinite(value):
                value = "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
            logged.setdefault(step, {})[key] = value

    started = time.time()
    if kind == "finished":
        run = wandb.init(
            project="vision", name="resnet-finished", group="sweep-1", job_type="train",
            tags=["cv", "baseline"],
            config={"lr": 0.1, "batch_size": 32,
                    "optimizer": {"name": "adam", "betas": [0.9, 0.999]}},
        )
        wandb.config.update({"epochs": 3})
        for step in range(STEPS):
            loss = math.nan if step == 500 else math.inf if step == 501 else 2.0 / (step + 1)
            values = {"train/loss": loss, "lr": 0.1 * 0.999 ** step, "grad norm": step * 0.01}
            if step % 100 == 0:
                wandb.log({"eval/loss": 3.0 / (step + 2)}, commit=False)
                put(step, {"eval/loss": 3.0 / (step + 2)})
                values["eval/accuracy"] = step / STEPS
                values["weights"] = wandb.Histogram([1.0, 2.0, 3.0])
            wandb.log(values)
            values.pop("weights", None)
            put(step, values)
        run.summary["best_accuracy"] = 0.99
        run.finish()
    elif kind == "crashed":
        wandb.init(project="vision", name="vit-crashed", config={"depth": 12})
        for step in range(10):
            wandb.log({"loss": 1.0 / (step + 1)}, step=step)
            put(step, {"loss": 1.0 / (step + 1)})
        json.dump({"rows": logged, "started": started, "ended": time.time()}, open(out, "w"))
        raise RuntimeError("out of memory")
    elif kind == "exit2":
        run = wandb.init(project="vision", name="exit-two")
        wandb.log({"loss": 0.5}, step=3)
        put(3, {"loss": 0.5})
        run.finish(exit_code=2)
    else:  # resume-0 / resume-1: one run id over two processes
        part = int(kind[-1])
        run = wandb.init(project="nlp", name="bert-resumed", id="resume01", resume="allow",
                         config={"layers": 12})
        for step in range(part * 5, part * 5 + 5):
            wandb.log({"train_loss": 10.0 - step}, step=step)
            put(step, {"train_loss": 10.0 - step})
        run.finish()
    json.dump({"rows": logged, "started": started, "ended": time.time()}, open(out, "w"))
    """
).replace("STEPS", str(STEPS))


def _env(root: Path) -> dict[str, str]:
    return {
        **os.environ,
        "WANDB_MODE": "offline",
        "WANDB_DIR": str(root),
        "WANDB_CONFIG_DIR": str(root / ".config"),
        "WANDB_CACHE_DIR": str(root / ".cache"),
        "WANDB_DATA_DIR": str(root / ".data"),
        "WANDB_SILENT": "true",
        "WANDB_DISABLE_GIT": "true",
    }


def _merge(parts: list[dict[str, Any]]) -> dict[str, Any]:
    rows: dict[int, dict[str, Any]] = {}
    for part in parts:
        for step, values in part["rows"].items():
            rows.setdefault(int(step), {}).update(values)
    return {
        "rows": rows,
        "started": min(part["started"] for part in parts),
        "ended": max(part["ended"] for part in parts),
    }


@pytest.fixture(scope="module")
def wandb_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """A directory with ``wandb/offline-run-*`` runs and ``{run name: what was logged}``."""
    try:
        import wandb  # noqa: F401
    except ImportError as exc:
        require_service("wandb", f"{exc} (pip install -e '.[import]')")
    root = tmp_path_factory.mktemp("wb")
    script = root / "train.py"
    script.write_text(SCRIPT, encoding="utf-8")
    logged: dict[str, list[dict[str, Any]]] = {}
    for kind, name in [
        ("finished", "resnet-finished"),
        ("crashed", "vit-crashed"),
        ("exit2", "exit-two"),
        ("resume-0", "bert-resumed"),
        ("resume-1", "bert-resumed"),
    ]:
        out = root / f"{kind}.json"
        done = subprocess.run(
            [sys.executable, str(script), kind, str(out)],
            env=_env(root),
            cwd=root,
            capture_output=True,
            text=True,
            timeout=240,
        )
        assert (done.returncode != 0) == (kind == "crashed"), done.stderr
        logged.setdefault(name, []).append(json.loads(out.read_text()))
    assert len(list((root / "wandb").glob("offline-run-*"))) == 5
    return root, {name: _merge(parts) for name, parts in logged.items()}


NAMES = {
    "train/loss": "train_loss",
    "lr": "learning_rate",
    "grad norm": "grad_norm",
    "eval/loss": "val_loss",
    "eval/accuracy": "accuracy",
    "loss": "train_loss",
    "train_loss": "train_loss",
}


def _unix(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def assert_same_history(rows: list[dict[str, Any]], run: dict[str, Any]) -> None:
    """Every step and value as logged; timestamps within the writer's window."""
    expected = {
        step: {"step": step, **{NAMES[key]: value for key, value in values.items()}}
        for step, values in run["rows"].items()
    }
    assert [row["step"] for row in rows] == sorted(expected)
    for row in rows:
        stamp = _unix(row.pop("timestamp"))
        assert run["started"] - 0.002 <= stamp <= run["ended"] + 0.002
        assert row == expected[row["step"]]


EXPECTED_JOBS = {
    "resnet-finished": (
        "completed",
        ["wandb", "project=vision", "group=sweep-1", "job_type=train", "cv", "baseline"],
        {
            "lr": 0.1,
            "batch_size": 32,
            "optimizer": {"name": "adam", "betas": [0.9, 0.999]},
            "epochs": 3,
            "wandb_summary": {"best_accuracy": 0.99},
        },
    ),
    "vit-crashed": ("failed", ["wandb", "project=vision"], {"depth": 12}),
    "exit-two": ("failed", ["wandb", "project=vision"], {}),
    "bert-resumed": ("completed", ["wandb", "project=nlp"], {"layers": 12}),
}


def test_runs_become_jobs_value_for_value(
    wandb_dir: tuple[Path, dict[str, Any]], db_url: str, store: MetricStore
) -> None:
    root, runs = wandb_dir
    seen: list[tuple[str, str]] = []
    ids = import_wandb(
        root / "wandb",
        db=db_url,
        on_job=lambda job, outcome: seen.append((job.spec["name"], outcome)),
    )
    # In the order the runs were written; the resumed run's two directories are one job.
    assert seen == [(name, "created") for name in EXPECTED_JOBS]
    for job_id, name in zip(ids, EXPECTED_JOBS, strict=True):
        assert job_id.startswith("wandb-")
        job = store.get_job(job_id)
        status, tags, config = EXPECTED_JOBS[name]
        assert (job.name, job.status.value, job.tags, job.config) == (name, status, tags, config)
        assert_same_history(list(store.iter_rows(job_id)), runs[name])
    finished = store.get_job(ids[0])
    assert finished.metric_names == [
        "accuracy",
        "grad_norm",
        "learning_rate",
        "train_loss",
        "val_loss",
    ]
    assert finished.summary["has_nan"] and finished.total_steps == STEPS - 1
    assert store.get_job(ids[3]).point_count == 10


def test_importing_twice_changes_nothing(
    wandb_dir: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    root, _ = wandb_dir
    db = str(tmp_path / "twice.db")
    ids = import_wandb(root, db=db)  # the directory above wandb/ is found too
    store = open_store(db)
    try:
        before = {
            job_id: (store.get_job(job_id), store.last_seq(job_id), list(store.iter_rows(job_id)))
            for job_id in ids
        }
        outcomes: list[str] = []
        assert import_wandb(root, db=db, on_job=lambda j, o: outcomes.append(o)) == ids
        assert outcomes == ["unchanged"] * len(ids)
        for job_id in ids:
            job = store.get_job(job_id)
            old_job, old_seq, old_rows = before[job_id]
            assert (store.last_seq(job_id), list(store.iter_rows(job_id))) == (old_seq, old_rows)
            assert (job.point_count, job.summary, job.status) == (
                old_job.point_count,
                old_job.summary,
                old_job.status,
            )
        assert store.list_jobs()[1] == len(EXPECTED_JOBS)
        # One run directory alone imports that run under the same id.
        one = sorted((root / "wandb").glob("offline-run-*"))[2]
        assert import_wandb(one, db=db) == [ids[2]]
    finally:
        store.close()


@pytest.mark.live
def test_cli_sends_runs_to_a_server(wandb_dir: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    root, runs = wandb_dir
    with ServerProcess(str(tmp_path / "live.db")) as server:
        command = [sys.executable, "-m", "trainvis", "import", "wandb", str(root / "wandb")]
        command += ["--url", server.url]
        done = subprocess.run(command, capture_output=True, text=True, timeout=240)
        assert done.returncode == 0, done.stderr
        lines = [line.split("\t") for line in done.stdout.splitlines()]
        assert [(line[1], line[-1]) for line in lines] == [
            ("created", name) for name in EXPECTED_JOBS
        ]
        for line, name in zip(lines, EXPECTED_JOBS, strict=True):
            response = httpx.get(f"{server.url}{API}/training/jobs/{line[0]}", timeout=30)
            job = response.json()["data"]
            status, tags, config = EXPECTED_JOBS[name]
            assert (job["name"], job["status"], job["tags"], job["config"]) == (
                name,
                status,
                tags,
                config,
            )
            response = httpx.get(
                f"{server.url}{API}/training/{line[0]}/metrics/history", timeout=30
            )
            assert_same_history(response.json()["data"], runs[name])
        again = subprocess.run(command, capture_output=True, text=True, timeout=240)
        assert [line.split("\t")[1] for line in again.stdout.splitlines()] == ["unchanged"] * 4


def test_nothing_to_import_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(TransferError, match="no such file or directory"):
        import_wandb(tmp_path / "nope", db=str(tmp_path / "x.db"))
    (tmp_path / "wandb" / "offline-run-x").mkdir(parents=True)
    with pytest.raises(TransferError, match="no W&B run logs"):
        import_wandb(tmp_path, db=str(tmp_path / "x.db"))
