"""Import TensorBoard logdirs: every run directory with event files becomes a job.

Event files are read with the ``tensorboard`` package's
:class:`EventFileLoader` (its maintained reader, with the read-time
compatibility layers TensorBoard itself applies), so ``simple_value``
scalars (``tensorboardX``, TF 1, ``torch.utils.tensorboard`` by default) and
tensor scalars (TF 2, ``add_scalar(new_style=True)``) arrive alike. Every
point is kept (no reservoir sampling). A ``SessionLog.START`` event (a run
restarted from a checkpoint, ``SummaryWriter(purge_step=...)``) drops the
points at and after its step, as TensorBoard does.

Each job:

- id ``tb-<run slug>-<hash of the absolute logdir, run path and name prefix>``,
  so importing the same logdir again finds the same jobs;
- name: the name prefix plus the run's path relative to the logdir (the
  logdir's own name for event files directly in it);
- metrics: the scalar tags, mapped as :mod:`trainvis.importers.names` says;
  a step's timestamp is the latest wall time of its points;
- ``config``: ``{"source": "tensorboard", "logdir": ..., "run": ...}``, tag
  ``tensorboard``, ``total_steps`` the last step, status ``completed``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from trainvis.importers.names import job_id
from trainvis.importers.progress import Progress
from trainvis.importers.rows import ImportedJob, RowBuilder
from trainvis.importers.sink import OnJob, TransferError, write_all

log = logging.getLogger("trainvis.importers")
MAX_NAME = 200


def _tensorboard() -> Any:
    try:
        from tensorboard.backend.event_processing import event_file_loader, io_wrapper
    except ImportError as exc:
        raise TransferError(
            "importing TensorBoard logs needs the tensorboard package: "
            "pip install 'trainvis[tensorboard]'"
        ) from exc
    return event_file_loader, io_wrapper


def find_runs(logdir: str | Path) -> list[tuple[str, list[Path]]]:
    """``(run path relative to logdir, its event files in order)`` for every run, sorted.

    Raises:
        TransferError: ``logdir`` is not a directory.
    """
    root = Path(logdir).expanduser().resolve()
    if not root.is_dir():
        raise TransferError(f"{logdir}: not a directory")
    _, io_wrapper = _tensorboard()
    runs: list[tuple[str, list[Path]]] = []
    for directory in io_wrapper.GetLogdirSubdirectories(str(root)):
        path = Path(directory)
        files = sorted(
            item
            for item in path.iterdir()
            if item.is_file() and io_wrapper.IsTensorFlowEventsFile(str(item))
        )
        if files:
            runs.append((path.relative_to(root).as_posix(), files))
    return sorted(runs)


def _scalar(value: Any) -> float | None:
    """The number in a migrated scalar summary value (None if it is not one number)."""
    tensor = value.tensor
    if len(tensor.float_val) == 1:
        return float(tensor.float_val[0])
    if len(tensor.double_val) == 1:
        return float(tensor.double_val[0])
    from tensorboard.util import tensor_util

    array = tensor_util.make_ndarray(tensor)
    if array.size != 1 or array.dtype.kind not in "fiub":
        return None
    return float(array.reshape(()).item())


def read_run(files: list[Path], *, on_bytes: Callable[[int], None] | None = None) -> RowBuilder:
    """Every scalar point of one run's event files (read in order).

    ``on_bytes`` is told how much of the files has been read, roughly as it goes.
    """
    from tensorboard.compat.proto import event_pb2, summary_pb2

    event_file_loader, _ = _tensorboard()
    scalar_class = summary_pb2.DATA_CLASS_SCALAR
    start = event_pb2.SessionLog.START
    builder = RowBuilder()
    # A writer sends a tag's metadata with its first value only: remember it per run.
    classes: dict[str, int] = {}
    for path in files:
        size, done = path.stat().st_size, 0
        for count, event in enumerate(event_file_loader.EventFileLoader(str(path)).Load()):
            if event.HasField("summary"):
                for value in event.summary.value:
                    kind = classes.get(value.tag)
                    if not kind:
                        kind = classes[value.tag] = value.metadata.data_class
                    if kind != scalar_class:
                        continue
                    number = _scalar(value)
                    if number is not None:
                        builder.add(value.tag, event.step, number, event.wall_time)
            elif event.HasField("session_log") and event.session_log.status == start:
                builder.purge_from(event.step)
            if on_bytes is not None and count % 4096 == 4095:
                step = min(size - done, 4096 * (event.ByteSize() + 16))
                done += step
                on_bytes(step)
        if on_bytes is not None:
            on_bytes(size - done)
    if builder.skipped:
        log.warning("%s: %d points at negative steps skipped", files[0].parent, builder.skipped)
    return builder


def build_job(logdir: Path, run: str, builder: RowBuilder, *, name_prefix: str = "") -> ImportedJob:
    """The job for one run (see the module doc for ids, names and fields)."""
    label = logdir.name if run == "." else run
    name = (name_prefix + label)[:MAX_NAME] or "tensorboard"
    rows, points = builder.build()
    spec: dict[str, Any] = {
        "id": job_id("tb", name, f"{logdir}\0{run}\0{name_prefix}"),
        "name": name,
        "config": {"source": "tensorboard", "logdir": str(logdir), "run": run},
        "tags": ["tensorboard"],
    }
    job = ImportedJob(spec=spec, rows=rows, status="completed", points=points)
    if job.last_step:
        spec["total_steps"] = job.last_step
    return job


def iter_jobs(
    logdir: str | Path, *, name_prefix: str = "", progress: Progress | None = None
) -> Iterator[ImportedJob]:
    """One :class:`ImportedJob` per run of ``logdir``, read lazily (one run in memory)."""
    root = Path(logdir).expanduser().resolve()
    runs = find_runs(root)
    if not runs:
        raise TransferError(f"{logdir}: no TensorBoard event files in it or below it")
    bar = progress or Progress()
    total = sum(path.stat().st_size for _, files in runs for path in files)
    task = bar.add(f"read {len(runs)} run(s)", total=total)
    for run, files in runs:
        builder = read_run(files, on_bytes=lambda amount: bar.advance(task, amount))
        yield build_job(root, run, builder, name_prefix=name_prefix)


def import_tensorboard(
    logdir: str | Path,
    *,
    url: str | None = None,
    db: str | None = None,
    name_prefix: str = "",
    force: bool = False,
    progress: bool = False,
    on_job: OnJob | None = None,
) -> list[str]:
    """Import every run of ``logdir``; returns the job ids, in run order.

    Args:
        logdir: a TensorBoard log directory (runs are its subdirectories with
            event files, at any depth, itself included).
        url: server root to send to (default ``TRAINVIS_URL``).
        db: store to write to directly (wins over ``url``); see
            :func:`~trainvis.importers.sink.open_client`.
        name_prefix: put before every job name (part of the job id too).
        force: upload the rows even when the job already holds as many points.
        progress: draw a progress bar on stderr.
        on_job: called with each job and ``"created"``/``"updated"``/``"unchanged"``.

    Raises:
        TransferError: no such directory or no event files in it, the
            tensorboard package is missing, or a job id is taken by a job of
            another name.
        ApiError, ServerUnavailable: the destination refused or is unreachable.
    """
    return write_all(
        lambda bar: iter_jobs(logdir, name_prefix=name_prefix, progress=bar),
        url=url,
        db=db,
        force=force,
        progress=progress,
        on_job=on_job,
    )
