"""``trainvis import swanlab`` on run directories written by the swanlab package (issue 17).

A script writes five runs with SwanLab itself, in ``local`` and ``offline``
mode (no network, no login): a finished run with a nested config, tags, a
group, a config update and 1,000 steps of several metrics (NaN and Infinity
among them); a run that dies of an exception; an aborted run; and a run
resumed in a second process (two directories, one run id). The script
records what it logged; every imported value is compared with that, through
the store and through the REST API; importing twice changes nothing.

swanlab pins ``protobuf<7``, which nothing else in the extras needs, so it is
not in the ``import`` extra: without it installed this test skips.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
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
from trainvis.importers.swanlab import import_swanlab
from trainvis.store import MetricStore

pytestmark = pytest.mark.slow

SCRIPT = textwrap.dedent(
    """
    import json, math, sys, time
    import swanlab

    kind, out, logdir = sys.argv[1], sys.argv[2], sys.argv[3]
    logged = {}  # step -> {key: value}; NaN/Infinity as the wire spells them

    def put(step, values):
        for key, value in values.items():
            if isinstance(value, float) and not math.isfinite(value):
                value = "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
            logged.setdefault(step, {})[key] = value

    started = time.time()
    if kind == "finished":
        swanlab.init(
            project="vision", name="resnet-finished", group="sweep-1", job_type="train",
            tags=["cv", "baseline"], mode="local", log_dir=logdir,
            config={"lr": 0.1, "batch_size": 32,
                    "optimizer": {"name": "adam", "betas": [0.9, 0.999]}},
        )
        swanlab.config.update({"epochs": 3})
        for step in range(STEPS):
            loss = math.nan if step == 500 else math.inf if step == 501 else 2.0 / (step + 1)
            values = {"train/loss": loss, "lr": 0.1 * 0.999 ** step, "grad norm": step * 0.01}
            if step % 100 == 0:
                values["eval/loss"] = 3.0 / (step + 2)
                values["eval/accuracy"] = step / STEPS
            swanlab.log(values, step=step)
            put(step, values)
        time.sleep(11)  # outlive SwanLab's 10 s hardware sampling: __swanlab__.* scalars
        swanlab.finish()
    elif kind == "crashed":
        swanlab.init(project="vision", name="vit-crashed", config={"depth": 12},
                     mode="offline", log_dir=logdir)
        for step in range(10):
            swanlab.log({"loss": 1.0 / (step + 1)}, step=step)
            put(step, {"loss": 1.0 / (step + 1)})
        json.dump({"rows": logged, "started": started, "ended": time.time()}, open(out, "w"))
        raise RuntimeError("out of memory")
    elif kind == "aborted":
        swanlab.init(project="vision", name="stopped", mode="offline", log_dir=logdir)
        swanlab.log({"loss": 0.5}, step=3)
        put(3, {"loss": 0.5})
        swanlab.finish(state="aborted")
    else:  # resume-0 / resume-1: one run id over two processes
        part = int(kind[-1])
        swanlab.init(project="nlp", name="bert-resumed", id="bertresumed0000000000001",
                     resume="allow", config={"layers": 12}, mode="offline", log_dir=logdir)
        for step in range(part * 5, part * 5 + 5):
            swanlab.log({"train_loss": 10.0 - step}, step=step)
            put(step, {"train_loss": 10.0 - step})
        swanlab.finish()
    json.dump({"rows": logged, "started": started, "ended": time.time()}, open(out, "w"))
    """
).replace("STEPS", str(STEPS))


@pytest.fixture(scope="module")
def swanlog(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """A directory with ``swanlog/run-*`` runs and ``{run name: what was logged}``."""
    try:
        import swanlab  # noqa: F401
    except ImportError as exc:
        require_service("swanlab", f"{exc} (pip install -e '.[import]')")
    root = tmp_path_factory.mktemp("swan")
    script = root / "train.py"
    script.write_text(SCRIPT, encoding="utf-8")
    env = {**os.environ, "SWANLAB_SAVE_DIR": str(root / ".swanlab"), "HOME": str(root)}
    logged: dict[str, list[dict[str, Any]]] = {}
    for kind, name in [
        ("finished", "resnet-finished"),
        ("crashed", "vit-crashed"),
        ("aborted", "stopped"),
        ("resume-0", "bert-resumed"),
        ("resume-1", "bert-resumed"),
    ]:
        out = root / f"{kind}.json"
        # Run directories are named by the second they start (run-YYYYmmdd_HHMMSS-id),
        # which is the order the importer reports them in: start each in its own second.
        time.sleep(1.05 - time.time() % 1)
        done = subprocess.run(
            [sys.executable, str(script), kind, str(out), str(root / "swanlog")],
            env=env,
            cwd=root,
            capture_output=True,
            text=True,
            timeout=240,
        )
        assert (done.returncode != 0) == (kind == "crashed"), done.stderr
        logged.setdefault(name, []).append(json.loads(out.read_text()))
    assert len(list((root / "swanlog").glob("run-*"))) == 5
    # The finished run's log holds SwanLab's hardware metrics, which the import leaves out.
    finished = min((root / "swanlog").glob("run-*/run-*.swanlab"))
    assert b"__swanlab__." in finished.read_bytes()
    return root, {name: merge_parts(parts) for name, parts in logged.items()}


EXPECTED_JOBS = {
    "resnet-finished": (
        "completed",
        ["swanlab", "project=vision", "group=sweep-1", "job_type=train", "cv", "baseline"],
        {
            "lr": 0.1,
            "batch_size": 32,
            "optimizer": {"name": "adam", "betas": [0.9, 0.999]},
            "epochs": 3,
        },
    ),
    "vit-crashed": ("failed", ["swanlab", "project=vision"], {"depth": 12}),
    "stopped": ("cancelled", ["swanlab", "project=vision"], {}),
    "bert-resumed": ("completed", ["swanlab", "project=nlp"], {"layers": 12}),
}


def test_runs_become_jobs_value_for_value(
    swanlog: tuple[Path, dict[str, Any]], db_url: str, store: MetricStore
) -> None:
    root, runs = swanlog
    assert_jobs_value_for_value(
        import_swanlab,
        root / "swanlog",
        source="swanlab",
        runs=runs,
        expected=EXPECTED_JOBS,
        db_url=db_url,
        store=store,
    )


def test_importing_twice_changes_nothing(
    swanlog: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    root, _ = swanlog
    # The directory above swanlog/ is found too; one run directory alone is its run.
    one = sorted((root / "swanlog").glob("run-*"))[2]
    assert_importing_twice_changes_nothing(
        import_swanlab, root, one, expected=EXPECTED_JOBS, db=str(tmp_path / "twice.db")
    )


@pytest.mark.live
def test_cli_sends_runs_to_a_server(swanlog: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    root, runs = swanlog
    assert_cli_sends_runs_to_a_server(
        "swanlab", root / "swanlog", runs=runs, expected=EXPECTED_JOBS, tmp_path=tmp_path
    )


def test_nothing_to_import_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(TransferError, match="no such file or directory"):
        import_swanlab(tmp_path / "nope", db=str(tmp_path / "x.db"))
    (tmp_path / "swanlog" / "run-x").mkdir(parents=True)
    with pytest.raises(TransferError, match="no SwanLab run logs"):
        import_swanlab(tmp_path, db=str(tmp_path / "x.db"))
