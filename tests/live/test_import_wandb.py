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
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import require_service
from tests.live.import_checks import (
    STEPS,
    assert_cli_sends_runs_to_a_server,
    assert_importing_twice_changes_nothing,
    assert_jobs_value_for_value,
    merge_parts,
)
from trainvis.importers import TransferError
from trainvis.importers.wandb import import_wandb
from trainvis.store import MetricStore

pytestmark = pytest.mark.slow

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
    return root, {name: merge_parts(parts) for name, parts in logged.items()}


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
    assert_jobs_value_for_value(
        import_wandb,
        root / "wandb",
        source="wandb",
        runs=runs,
        expected=EXPECTED_JOBS,
        db_url=db_url,
        store=store,
    )


def test_importing_twice_changes_nothing(
    wandb_dir: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    root, _ = wandb_dir
    # The directory above wandb/ is found too; one run directory alone is its run.
    one = sorted((root / "wandb").glob("offline-run-*"))[2]
    assert_importing_twice_changes_nothing(
        import_wandb, root, one, expected=EXPECTED_JOBS, db=str(tmp_path / "twice.db")
    )


@pytest.mark.live
def test_cli_sends_runs_to_a_server(wandb_dir: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    root, runs = wandb_dir
    assert_cli_sends_runs_to_a_server(
        "wandb", root / "wandb", runs=runs, expected=EXPECTED_JOBS, tmp_path=tmp_path
    )


def test_nothing_to_import_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(TransferError, match="no such file or directory"):
        import_wandb(tmp_path / "nope", db=str(tmp_path / "x.db"))
    (tmp_path / "wandb" / "offline-run-x").mkdir(parents=True)
    with pytest.raises(TransferError, match="no W&B run logs"):
        import_wandb(tmp_path, db=str(tmp_path / "x.db"))
