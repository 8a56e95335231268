"""Import SwanLab run directories (``swanlog/run-*``, local or offline mode): one job per run.

SwanLab (0.10) writes every run, in ``local`` and ``offline`` mode alike, to
``<logdir>/run-<YYYYmmdd_HHMMSS>-<id>/``: the record log
``run-<id>.swanlab`` (the one ``swanlab sync`` uploads) and the config in
``files/config.yaml``. The log is read with SwanLab's own reader
(``DataStoreReader`` and its ``Record`` messages); a damaged tail ends the
log at the last good record, as it does for ``swanlab sync``. The start,
scalar and finish records are used; media, console lines and system
metadata are left out, and so are the hardware metrics SwanLab samples
every 10 s (scalars named ``__swanlab__.*``), as the W&B importer leaves
W&B's system metrics out.

The path given may be a ``.swanlab`` file, a run directory, a ``swanlog``
directory or any directory above them (searched at any depth). Directories
of one run id (a run resumed with ``resume=``) are merged into one job, in
the order they were written.

Each job:

- id ``swanlab-<run id>-<hash of workspace, project and run id>``;
- name: the experiment name (the run id when it has none);
- ``config``: the run's config as logged (the ``value`` of each entry of
  ``config.yaml``; nested dicts stay nested);
- ``tags``: ``swanlab``, ``project=<project>``, ``group=<group>`` and
  ``job_type=<job type>`` when set, then the run's tags (100 characters
  each, 100 tags at most);
- metrics: the scalar keys, mapped as :mod:`trainvis.importers.names` says,
  at their steps; a step's timestamp is the latest of its points; ``NaN``
  and ±``Infinity`` are kept;
- status: finished → ``completed``, crashed → ``failed``, aborted →
  ``cancelled``; no finish record (the process died; SwanLab reports such a
  run as crashed) → ``failed``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainvis.importers.progress import Progress
from trainvis.importers.rows import ImportedJob, LoggedRun, iter_logged_jobs
from trainvis.importers.sink import OnJob, TransferError, write_all

log = logging.getLogger("trainvis.importers")
SYSTEM_PREFIX = "__swanlab__."  # SwanLab's own hardware metrics
STATUS = {
    "RUN_STATE_FINISHED": "completed",
    "RUN_STATE_CRASHED": "failed",
    "RUN_STATE_ABORTED": "cancelled",
    "RUN_STATE_RUNNING": "failed",
}


def _swanlab() -> tuple[Any, Any, Any]:
    """SwanLab's log reader, its record message and its run-state enum."""
    try:
        from swanlab.proto.swanlab.record.v1.record_pb2 import Record
        from swanlab.proto.swanlab.run.v1 import run_pb2
        from swanlab.sdk.internal.core_python.store import DataStoreReader
    except ImportError as exc:
        raise TransferError(
            "importing SwanLab runs needs the swanlab package (0.10): "
            "pip install 'trainvis[swanlab]'"
        ) from exc
    return DataStoreReader, Record, run_pb2.RunState


def find_runs(path: str | Path) -> list[Path]:
    """Every ``run-*.swanlab`` log under ``path`` (or ``path`` itself), sorted by run time.

    Raises:
        TransferError: ``path`` does not exist.
    """
    root = Path(path).expanduser()
    if root.is_file():
        return [root.resolve()]
    if not root.is_dir():
        raise TransferError(f"{path}: no such file or directory")
    found = {item.resolve() for item in root.rglob("run-*.swanlab") if item.is_file()}
    # Run directories are named run-<YYYYmmdd_HHMMSS>-<id>: sorting by name is by time.
    return sorted(found, key=lambda item: (item.parent.name, str(item)))


def read_records(log_file: Path) -> Iterator[Any]:
    """The ``Record`` messages of one log, read with SwanLab's own reader.

    Raises:
        TransferError: swanlab is missing, or the file is not a SwanLab log.
    """
    reader_class, record_class, _ = _swanlab()
    reader = reader_class()
    try:
        reader.open(log_file)
    except Exception as exc:  # the reader raises its own DataStoreError or AssertionError
        raise TransferError(f"{log_file}: not a SwanLab run log ({exc})") from exc
    try:
        for data in reader:
            record = record_class()
            record.ParseFromString(data)
            yield record
    finally:
        reader.close()


def read_config(run_dir: Path) -> dict[str, Any]:
    """The run's config: the ``value`` of each entry of ``files/config.yaml``."""
    path = run_dir / "files" / "config.yaml"
    if not path.is_file():
        return {}
    import yaml

    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        log.warning("%s: config not read (%s)", path, exc)
        return {}
    if not isinstance(loaded, dict):
        return {}
    return {
        str(key): entry.get("value") if isinstance(entry, dict) and "value" in entry else entry
        for key, entry in loaded.items()
    }


def _seconds(stamp: Any) -> float | None:
    """A protobuf Timestamp as Unix seconds (None when unset)."""
    if not stamp.seconds and not stamp.nanos:
        return None
    return float(stamp.seconds) + float(stamp.nanos) / 1e9


@dataclass
class _Run(LoggedRun):
    """One SwanLab run (``owner`` is its workspace), gathered from one or more logs."""

    state: str | None = None
    started: bool = False

    def read(self, log_file: Path) -> None:
        """Take in one log's records and its directory's config (a later log continues)."""
        _, _, run_state = _swanlab()
        self.state = None
        for record in read_records(log_file):
            if record.HasField("start"):
                self._start(record.start)
            elif record.HasField("scalar"):
                scalar = record.scalar
                if scalar.key.startswith(SYSTEM_PREFIX):
                    continue
                self.builder.add(
                    scalar.key, int(scalar.step), scalar.value.number, _seconds(scalar.timestamp)
                )
            elif record.HasField("finish"):
                self.state = run_state.Name(record.finish.state)
        self.config.update(read_config(log_file.parent))

    def _start(self, start: Any) -> None:
        self.started = True
        self.project = start.project or self.project
        self.owner = start.workspace or self.owner
        self.name = start.name or self.name
        self.group = start.group or self.group
        self.job_type = start.job_type or self.job_type
        if start.tags:
            self.tags = [str(tag) for tag in start.tags]

    def status(self) -> str:
        """finished → completed, crashed or no finish record → failed, aborted → cancelled."""
        return STATUS.get(self.state or "", "failed")

    def missing(self) -> str | None:
        """A log without a start record holds no run."""
        return None if self.started else "no start record in its log"


def iter_jobs(path: str | Path, *, progress: Progress | None = None) -> Iterator[ImportedJob]:
    """One :class:`ImportedJob` per run under ``path``, read lazily (one run in memory)."""
    logs = find_runs(path)
    if not logs:
        raise TransferError(f"{path}: no SwanLab run logs (run-*.swanlab) in it or below it")
    _swanlab()
    yield from iter_logged_jobs(
        logs,
        lambda run_id: _Run(run_id=run_id),
        source="swanlab",
        label="SwanLab",
        progress=progress,
        weigh=lambda log_file: log_file.stat().st_size,
    )


def import_swanlab(
    path: str | Path,
    *,
    url: str | None = None,
    db: str | None = None,
    force: bool = False,
    progress: bool = False,
    on_job: OnJob | None = None,
) -> list[str]:
    """Import every SwanLab run log under ``path``; returns the job ids.

    Args:
        path: a ``swanlog`` directory (``run-*`` in it), a directory above
            one, a run directory or a ``.swanlab`` file.
        url: server root to send to (default ``TRAINVIS_URL``).
        db: store to write to directly (wins over ``url``).
        force: upload the rows even when the job already holds as many points.
        progress: draw a progress bar on stderr.
        on_job: called with each job and ``"created"``/``"updated"``/``"unchanged"``.

    Raises:
        TransferError: nothing to import there, swanlab is missing, or a
            file is not a SwanLab log.
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
