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
import math
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trainvis.importers.progress import Progress
from trainvis.importers.rows import ImportedJob, LoggedRun, iter_logged_jobs
from trainvis.importers.sink import OnJob, TransferError, write_all

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
class _Run(LoggedRun):
    """One W&B run (``owner`` is its entity), gathered from one or more transaction logs."""

    summary: dict[str, Any] = field(default_factory=dict)
    last: dict[str, Any] = field(default_factory=dict)
    media: set[str] = field(default_factory=set)
    exit_code: int | None = None

    def read(self, log_file: Path) -> None:
        """Take in one log's records (a later log continues the run)."""
        self.exit_code = None
        for record in read_records(log_file):
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
        self.owner = body.get("entity") or self.owner
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

    def job_config(self) -> dict[str, Any]:
        """The run's config plus ``wandb_summary``: the hand-set summary values."""
        config = dict(self.config)
        summary = self.hand_set_summary()
        if summary:
            config.setdefault(SUMMARY_KEY, summary)
        return config

    def status(self) -> str:
        """Exit code 0 → completed; another exit code, or no exit record → failed."""
        return "completed" if self.exit_code == 0 else "failed"

    def missing(self) -> str | None:
        """A log with no run record, no name and no history was never written to."""
        if not self.project and not self.name and not self.builder.names:
            return "no run record in its log (nothing was written)"
        return None


def iter_jobs(path: str | Path, *, progress: Progress | None = None) -> Iterator[ImportedJob]:
    """One :class:`ImportedJob` per run under ``path``, read lazily (one run in memory)."""
    logs = find_runs(path)
    if not logs:
        raise TransferError(f"{path}: no W&B run logs (run-*.wandb) in it or below it")
    _check_wandb()
    yield from iter_logged_jobs(
        logs, lambda run_id: _Run(run_id=run_id), source="wandb", label="W&B", progress=progress
    )


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
