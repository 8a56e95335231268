"""Import runs exported by ``neptune-exporter``: its Parquet files, one job per run.

`neptune-exporter <https://github.com/neptune-ai/neptune-exporter>`_ writes
every Neptune run (2.x or 3.x) to ``<data-path>/<sanitized project>/
<sanitized run>_part_<n>.parquet``, one row per attribute value in its
documented schema: ``project_id``, ``run_id``, ``attribute_path``,
``attribute_type``, ``step`` (decimal(18, 6)), ``timestamp`` (ms, UTC) and a
typed value column per type (``int_value``, ``float_value``, ``string_value``,
``bool_value``, ``datetime_value``, ``string_set_value``, …). A run counts as
exported once its ``part_0`` exists (the exporter renames part 0 last), so
runs without one (an export still under way or cut off) are skipped.

The path given may be the data path (a directory of project directories) or
one project directory. Each run becomes a job:

- id ``neptune-<run slug>-<hash of project_id and run_id>`` (the real ids in
  the columns, not the file names), so importing again finds the same job;
- name: ``sys/custom_run_id`` when there is one, else the run id (what the
  exporter's own loaders name a run);
- ``config``: the parameters (``float``, ``int``, ``string``, ``bool``,
  ``datetime`` as ISO 8601, ``string_set`` as a sorted list) outside
  ``sys/``, nested along their path (``parameters/lr`` →
  ``{"parameters": {"lr": ...}}``);
- ``tags``: ``neptune``, ``project=<project_id>``, ``experiment=<sys/name>``
  (Neptune 3's experiment; Neptune 2's run name), ``forked_from=<parent>``
  for a fork, then ``sys/tags`` and ``sys/group_tags`` (sets: sorted; 100 characters each,
  100 tags at most);
- metrics: the ``float_series`` attributes, mapped as
  :mod:`trainvis.importers.names` says; steps are Neptune's decimal steps
  times ``step_multiplier`` (as the exporter's ``--step-multiplier``), which
  must come out whole; a step's timestamp is the latest of its points;
  string, histogram and file series are left out;
- status: ``failed`` when ``sys/failed`` is true, else ``completed``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from trainvis.importers.names import job_id
from trainvis.importers.progress import Progress
from trainvis.importers.rows import ImportedJob, RowBuilder
from trainvis.importers.sink import OnJob, TransferError, write_all

log = logging.getLogger("trainvis.importers")
MAX_NAME = 200
MAX_TAGS = 100
MAX_TAG = 100
#: The columns read (the exporter's schema has file and histogram columns too).
COLUMNS = [
    "project_id",
    "run_id",
    "attribute_path",
    "attribute_type",
    "step",
    "timestamp",
    "int_value",
    "float_value",
    "string_value",
    "bool_value",
    "datetime_value",
    "string_set_value",
]
PARAMETER_COLUMNS = {
    "float": "float_value",
    "int": "int_value",
    "string": "string_value",
    "bool": "bool_value",
    "datetime": "datetime_value",
    "string_set": "string_set_value",
}
_PART = re.compile(r"^(?P<prefix>.+)_part_(?P<part>\d+)\.parquet$")


def _parquet() -> Any:
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise TransferError(
            "importing neptune-exporter files needs pyarrow: pip install 'trainvis[parquet]'"
        ) from exc
    return pq


def find_runs(path: str | Path) -> list[list[Path]]:
    """The part files of every completely exported run under ``path``, in part order.

    ``path`` is the exporter's data path or one project directory in it.

    Raises:
        TransferError: ``path`` is not a directory.
    """
    root = Path(path).expanduser().resolve()
    if not root.is_dir():
        raise TransferError(f"{path}: not a directory")
    runs: list[list[Path]] = []
    incomplete = 0
    for directory in [root, *sorted(item for item in root.iterdir() if item.is_dir())]:
        parts: dict[str, dict[int, Path]] = {}
        for item in directory.iterdir():
            match = _PART.match(item.name)
            if match and item.is_file():
                parts.setdefault(match["prefix"], {})[int(match["part"])] = item
            elif item.name.endswith(".parquet.tmp"):
                incomplete += 1
        for prefix in sorted(parts):
            numbered = parts[prefix]
            if 0 not in numbered:
                incomplete += 1
                continue
            runs.append([numbered[number] for number in sorted(numbered)])
    if incomplete:
        log.warning("%s: %d incompletely exported part(s) skipped", path, incomplete)
    return runs


@dataclass
class _Run:
    """What the parts of one run hold, gathered as they are read."""

    project_id: str | None = None
    run_id: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    builder: RowBuilder = field(default_factory=RowBuilder)
    skipped: dict[str, int] = field(default_factory=dict)


def _param(kind: str, value: Any) -> Any:
    if kind == "datetime" and isinstance(value, datetime):
        return value.isoformat()
    if kind == "string_set" and value is not None:
        return sorted(value)
    return value


def _step(value: Decimal, multiplier: int, where: str) -> int:
    scaled = value * multiplier
    whole = int(scaled)
    if scaled != whole:
        raise TransferError(
            f"{where}: step {value} is not a whole number; pass a step multiplier "
            "(--step-multiplier, e.g. 1000) as for neptune-exporter's load"
        )
    return whole


def read_run(
    parts: list[Path], *, step_multiplier: int = 1, on_bytes: Callable[[int], None] | None = None
) -> _Run:
    """Every parameter and float-series point in one run's part files."""
    pq = _parquet()
    run = _Run()
    for part in parts:
        for batch in pq.ParquetFile(part).iter_batches(columns=COLUMNS, batch_size=65536):
            data = {name: batch.column(name).to_pylist() for name in COLUMNS}
            for index, kind in enumerate(data["attribute_type"]):
                if run.run_id is None:
                    run.project_id = data["project_id"][index]
                    run.run_id = data["run_id"][index]
                path = data["attribute_path"][index]
                if kind == "float_series":
                    step = data["step"][index]
                    value = data["float_value"][index]
                    if step is None or value is None:
                        continue
                    stamp = data["timestamp"][index]
                    run.builder.add(
                        path,
                        _step(step, step_multiplier, f"{part.name}: {path}"),
                        float(value),
                        stamp.timestamp() if stamp is not None else None,
                    )
                elif kind in PARAMETER_COLUMNS:
                    run.params[path] = _param(kind, data[PARAMETER_COLUMNS[kind]][index])
                else:
                    run.skipped[kind] = run.skipped.get(kind, 0) + 1
        if on_bytes is not None:
            on_bytes(part.stat().st_size)
    return run


def _nested(params: dict[str, Any]) -> dict[str, Any]:
    """``{"a/b": 1}`` → ``{"a": {"b": 1}}`` (Neptune's namespaces never hold a value too)."""
    config: dict[str, Any] = {}
    for path in sorted(params):
        *namespaces, leaf = path.split("/")
        node = config
        for name in namespaces:
            child = node.setdefault(name, {})
            if not isinstance(child, dict):  # a value where a namespace is: keep the full path
                node = config
                leaf = path
                break
            node = child
        node[leaf] = params[path]
    return config


def build_job(run: _Run, parts: list[Path]) -> ImportedJob:
    """The job for one exported run (see the module doc)."""
    if run.run_id is None or run.project_id is None:
        raise TransferError(f"{parts[0]}: no rows (not a neptune-exporter run file?)")
    system = {key[4:]: value for key, value in run.params.items() if key.startswith("sys/")}
    user = {key: value for key, value in run.params.items() if not key.startswith("sys/")}
    name = str(system.get("custom_run_id") or run.run_id)[:MAX_NAME]
    tags = ["neptune", f"project={run.project_id}"]
    if system.get("name"):
        tags.append(f"experiment={system['name']}")
    if system.get("forking/parent"):
        tags.append(f"forked_from={system['forking/parent']}")
    for key in ("tags", "group_tags"):
        tags.extend(str(tag) for tag in system.get(key) or ())
    unique = list(dict.fromkeys(tag[:MAX_TAG] for tag in tags if tag))[:MAX_TAGS]
    rows, points = run.builder.build()
    spec: dict[str, Any] = {
        "id": job_id("neptune", name, f"{run.project_id}\0{run.run_id}"),
        "name": name,
        "config": _nested(user),
        "tags": unique,
    }
    job = ImportedJob(
        spec=spec,
        rows=rows,
        status="failed" if system.get("failed") is True else "completed",
        points=points,
    )
    if job.last_step:
        spec["total_steps"] = job.last_step
    if run.skipped:
        log.info("%s: left out %s", name, ", ".join(f"{n} {k}" for k, n in run.skipped.items()))
    if run.builder.skipped:
        log.warning("%s: %d points at negative steps skipped", name, run.builder.skipped)
    return job


def iter_jobs(
    path: str | Path, *, step_multiplier: int = 1, progress: Progress | None = None
) -> Iterator[ImportedJob]:
    """One :class:`ImportedJob` per exported run, read lazily (one run in memory)."""
    if step_multiplier < 1:
        raise TransferError(f"step multiplier {step_multiplier}: must be 1 or more")
    runs = find_runs(path)
    if not runs:
        raise TransferError(f"{path}: no neptune-exporter runs (*_part_0.parquet) in it")
    bar = progress or Progress()
    total = sum(part.stat().st_size for parts in runs for part in parts)
    task = bar.add(f"read {len(runs)} Neptune run(s)", total=total)
    for parts in runs:
        run = read_run(
            parts,
            step_multiplier=step_multiplier,
            on_bytes=lambda amount: bar.advance(task, amount),
        )
        yield build_job(run, parts)


def import_neptune(
    path: str | Path,
    *,
    url: str | None = None,
    db: str | None = None,
    step_multiplier: int = 1,
    force: bool = False,
    progress: bool = False,
    on_job: OnJob | None = None,
) -> list[str]:
    """Import every run that neptune-exporter wrote under ``path``; returns the job ids.

    Args:
        path: the exporter's ``--data-path`` (default ``./exports/data``) or
            one project directory in it.
        url: server root to send to (default ``TRAINVIS_URL``).
        db: store to write to directly (wins over ``url``).
        step_multiplier: multiply Neptune's decimal steps by this to make
            them whole (use the same one for every import of a project).
        force: upload the rows even when the job already holds as many points.
        progress: draw a progress bar on stderr.
        on_job: called with each job and ``"created"``/``"updated"``/``"unchanged"``.

    Raises:
        TransferError: no such directory, no exported runs in it, a step
            that is not whole, or pyarrow is missing.
        ApiError, ServerUnavailable: the destination refused or is unreachable.
    """
    return write_all(
        lambda bar: iter_jobs(path, step_multiplier=step_multiplier, progress=bar),
        url=url,
        db=db,
        force=force,
        progress=progress,
        on_job=on_job,
    )
