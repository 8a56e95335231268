"""Import W&B run directories (``wandb/offline-run-*``, ``wandb/run-*``): one job per run.

A run directory holds the run's transaction log, ``run-<id>.wandb``. It is
read with the wandb package's own reader (``wandb leet inspect --json``,
which decodes the log with ``wandb-core`` and prints one JSON record a
line), so whatever wandb version wrote the log, the reader that knows its
format decodes it. The run, config, history, summary and exit records are
used; system metrics, files, console output and media are left out.

The path given may be a ``.wandb`` file, a run directory, a ``wandb``
directory or any directory above them (searched at any depth;
``latest-run`` links are not followed twice). Directories of one run id
(a run resumed with ``resume=``) are merged into one job, in the order they
were written.

Each job:

- id ``wandb-<run id>-<hash of entity, project and run id>``;
- name: the run's display name (its id when it has none);
- ``config``: the run's config as logged (nested dicts stay nested; W&B's
  own ``_wandb`` key left out), plus ``wandb_summary``: the summary values
  set by hand (``run.summary[...] = ...``), i.e. those that are not simply
  the last logged value of a metric;
- ``tags``: ``wandb``, ``project=<project>``, ``group=<group>`` and
  ``job_type=<job type>`` when set, then the run's tags (100 characters
  each, 100 tags at most);
- metrics: every numeric history key (``_step``, ``_runtime``,
  ``_timestamp`` and the keys of media objects left out; nested dicts
  arrive flattened as ``a.b``), mapped as :mod:`trainvis.importers.names`
  says, at the history row's step; ``_timestamp`` is the row's timestamp;
  ``NaN`` and ±``Infinity`` are kept;
- status: exit code 0 → ``completed``; another exit code, or no exit record
  (a crashed process) → ``failed``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trainvis.importers.names import job_id
from trainvis.importers.progress import Progress
from trainvis.importers.rows import ImportedJob, RowBuilder
from trainvis.importers.sink import TransferError, write_all

log = logging.getLogger("trainvis.importers")
OnJob = Callable[[ImportedJob, str], None]
MAX_NAME = 200
MAX_TAGS = 100
MAX_TAG = 100
NON_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
SUMMARY_KEY = "wandb_summary"


def _check_wandb() -> None:
    try:
        import wandb  # noqa: F401
    except ImportError as exc:
        raise TransferError(
            "importing W&B runs needs the wandb package: pip install 'trainvis[wandb]'"
        ) from exc


def find_runs(path: str | Path) -> list[Path]:
    """Every ``run-*.wandb`` log under ``path`` (or ``path`` itself), each once, sorted.

    Raises:
        TransferError: ``path`` does not exist.
    """
    root = Path(path).expanduser()
    if root.is_file():
        return [root.resolve()]
    if not root.is_dir():
        raise TransferError(f"{path}: no such file or directory")
    found: dict[Path, Path] = {}
    for item in root.rglob("run-*.wandb"):
        if "latest-run" in item.parts or not item.is_file():
            continue
        found.setdefault(item.resolve(), item)
    # Run directories are named <kind>-<YYYYmmdd_HHMMSS>-<id>: sorting by name is by time.
    return sorted(found, key=lambda item: (item.parent.name.split("-", 1)[-1], str(item)))


def read_records(log_file: Path) -> Iterator[dict[str, Any]]:
    """The records of one transaction log, decoded by wandb's own reader.

    Raises:
        TransferError: wandb is missing or its reader failed.
    """
    _check_wandb()
    command = [sys.executable, "-m", "wandb", "leet", "inspect", "--json", str(log_file)]
    env = {**os.environ, "WANDB_SILENT": "true", "WANDB_MODE": "offline"}
    with subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        env=env,
        text=True,
        encoding="utf-8",
    ) as process:
        assert process.stdout is not None and process.stderr is not None
        for line in process.stdout:
            if line.strip():
                yield json.loads(line)
        error = process.stderr.read()
        code = process.wait()
    if code != 0:
        raise TransferError(f"{log_file}: wandb could not read it ({error.strip() or code})")


def _number(value: Any) -> float | None:
    """A history value as a float, or None when it is not a number."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        return NON_FINITE.get(value)
    return None


@dataclass
class _Run:
    """One W&B run, gathered from one or more transaction logs."""

    run_id: str
    project: str = ""
    entity: str = ""
    name: str = ""
    group: str = ""
    job_type: str = ""
    tags: list[str] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    last: dict[str, Any] = field(default_factory=dict)
    media: set[str] = field(default_factory=set)
    exit_code: int | None = None
    builder: RowBuilder = field(default_factory=RowBuilder)

    def read(self, records: Iterator[dict[str, Any]]) -> None:
        """Take in one log's records (a later log continues the run)."""
        self.exit_code = None
        for record in records:
            kind = record.get("type")
            body = record.get(kind, {}) if isinstance(kind, str) else {}
            if kind == "run":
                self._run(body)
            elif kind == "config":
                self._config(body)
            elif kind == "history":
                self._history(body)
            elif kind == "summary":
                self.summary.update(body.get("update") or {})
                for key in body.get("remove") or ():
                    self.summary.pop(key, None)
            elif kind == "exit":
                self.exit_code = int(body.get("exit_code") or 0)

    def _run(self, body: dict[str, Any]) -> None:
        self.project = body.get("project") or self.project
        self.entity = body.get("entity") or self.entity
        self.name = body.get("display_name") or self.name
        self.group = body.get("run_group") or body.get("group") or self.group
        self.job_type = body.get("job_type") or self.job_type
        if "tags" in body:
            self.tags = [str(tag) for tag in body["tags"] or ()]
        self._config(body.get("config") or {})

    def _config(self, body: dict[str, Any]) -> None:
        for key, value in (body.get("update") or {}).items():
            if not key.startswith("_wandb"):
                self.config[key] = value
        for key in body.get("remove") or ():
            self.config.pop(key, None)

    def _history(self, body: dict[str, Any]) -> None:
        item: dict[str, Any] = body.get("item") or {}
        step = (body.get("step") or {}).get("num", item.get("_step"))
        if step is None:
            return
        stamp = _number(item.get("_timestamp"))
        media = {key[: -len("._type")] + "." for key in item if key.endswith("._type")}
        self.media.update(media)
        for key, value in item.items():
            if key.startswith("_"):
                continue
            self.last[key] = value
            number = _number(value)
            if number is None or any(key.startswith(prefix) for prefix in media):
                continue
            self.builder.add(key, int(step), number, stamp)

    def hand_set_summary(self) -> dict[str, Any]:
        """Summary values that are not just the last logged value of a history key
        (nor part of a logged media object)."""
        return {
            key: value
            for key, value in sorted(self.summary.items())
            if not key.startswith("_")
            and (key not in self.last or self.last[key] != value)
            and not any(key.startswith(prefix) for prefix in self.media)
        }


def build_job(run: _Run) -> ImportedJob:
    """The job for one W&B run (see the module doc)."""
    name = (run.name or run.run_id)[:MAX_NAME]
    tags = ["wandb"]
    if run.project:
        tags.append(f"project={run.project}")
    if run.group:
        tags.append(f"group={run.group}")
    if run.job_type:
        tags.append(f"job_type={run.job_type}")
    tags.extend(run.tags)
    config = dict(run.config)
    summary = run.hand_set_summary()
    if summary:
        config.setdefault(SUMMARY_KEY, summary)
    rows, points = run.builder.build()
    spec: dict[str, Any] = {
        "id": job_id("wandb", run.run_id, f"{run.entity}\0{run.project}\0{run.run_id}"),
        "name": name,
        "config": config,
        "tags": list(dict.fromkeys(tag[:MAX_TAG] for tag in tags if tag))[:MAX_TAGS],
    }
    job = ImportedJob(
        spec=spec,
        rows=rows,
        status="completed" if run.exit_code == 0 else "failed",
        points=points,
    )
    if job.last_step:
        spec["total_steps"] = job.last_step
    if run.builder.skipped:
        log.warning("%s: %d points at negative steps skipped", name, run.builder.skipped)
    return job


def _run_id(log_file: Path) -> str:
    """The run id in ``run-<id>.wandb``."""
    return log_file.stem[len("run-") :]


def iter_jobs(path: str | Path, *, progress: Progress | None = None) -> Iterator[ImportedJob]:
    """One :class:`ImportedJob` per run under ``path``, read lazily (one run in memory)."""
    logs = find_runs(path)
    if not logs:
        raise TransferError(f"{path}: no W&B run logs (run-*.wandb) in it or below it")
    _check_wandb()
    by_run: dict[str, list[Path]] = {}
    for log_file in logs:
        by_run.setdefault(_run_id(log_file), []).append(log_file)
    bar = progress or Progress()
    task = bar.add(f"read {len(by_run)} W&B run(s)", total=len(logs))
    for run_id in sorted(by_run, key=lambda key: logs.index(by_run[key][0])):
        run = _Run(run_id=run_id)
        for log_file in by_run[run_id]:
            run.read(read_records(log_file))
            bar.advance(task)
        if not run.project and not run.name and not run.builder.names:
            log.warning("%s: no run record in its log (nothing was written); skipped", run_id)
            continue
        yield build_job(run)


def import_wandb(
    path: str | Path,
    *,
    url: str | None = None,
    db: str | None = None,
    force: bool = False,
    progress: bool = False,
    on_job: OnJob | None = None,
) -> list[str]:
    """Import every W&B run log under ``path``; returns the job ids.

    Args:
        path: a ``wandb`` directory (``offline-run-*`` and ``run-*`` in it),
            a directory above one, a run directory or a ``.wandb`` file.
        url: server root to send to (default ``TRAINVIS_URL``).
        db: store to write to directly (wins over ``url``).
        force: upload the rows even when the job already holds as many points.
        progress: draw a progress bar on stderr.
        on_job: called with each job and ``"created"``/``"updated"``/``"unchanged"``.

    Raises:
        TransferError: nothing to import there, wandb is missing, or its
            reader failed on a log.
        ApiError, ServerUnavailable: the destination refused or is unreachable.
    """
    return write_all(
        lambda bar: iter_jobs(path, progress=bar),
        url=url,
        db=db,
        force=force,
        progress=progress,
        on_job=on_job,
    )
