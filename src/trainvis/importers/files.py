"""Import files written by ``trainvis export`` (JSON, Parquet) or any history CSV/JSON.

- JSON: the export document ``{"format": "trainvis-export", "job": ..., "rows": [...]}``
  brings its job back under the same id, name, model, config, tags and status.
  A history body ``{"data": [rows]}`` or a bare list of rows works too.
- Parquet: a file written by ``trainvis export --format parquet`` (the job is
  in its metadata); other Parquet files need the columns ``step`` and metrics.
- CSV: ``step,epoch,timestamp,<metric>…`` as the server and ``trainvis
  export`` write it; empty cells are absent values.

A file without job information becomes a job named after the file, with the
id ``file-<name>-<hash of the absolute path>`` (so importing it twice finds
the same job). ``job_id``/``name`` override either.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from trainvis.importers.names import job_id as make_job_id
from trainvis.importers.rows import ImportedJob, Row
from trainvis.importers.sink import OnJob, TransferError, write_all
from trainvis.models import NONFINITE_STRINGS

FILE_FORMATS = ("json", "csv", "parquet")
#: Job fields an export carries that ``POST /training/jobs`` accepts.
SPEC_FIELDS = ("name", "model_name", "total_epochs", "total_steps", "config", "tags")
ATTRIBUTES = ("step", "epoch", "timestamp")


def _spec(path: Path, job: dict[str, Any] | None, job_id: str | None, name: str | None) -> Any:
    spec: dict[str, Any] = {}
    if job:
        spec = {key: job[key] for key in SPEC_FIELDS if job.get(key) is not None}
        spec["id"] = job.get("id")
    if name:
        spec["name"] = name
    spec.setdefault("name", path.stem or "imported")
    if job_id:
        spec["id"] = job_id
    if not spec.get("id"):
        spec["id"] = make_job_id("file", path.stem, str(path.resolve()))
    return spec


def _job(spec: dict[str, Any], rows: list[Row], status: str) -> ImportedJob:
    points = sum(1 for row in rows for key in row if key not in ATTRIBUTES)
    return ImportedJob(spec=spec, rows=rows, status=status, points=points)


def read_json(path: Path, *, job_id: str | None = None, name: str | None = None) -> ImportedJob:
    """An export document, a history body or a list of rows (see the module doc)."""
    try:
        document = json.loads(path.read_bytes())
    except ValueError as exc:
        raise TransferError(f"{path}: not JSON ({exc})") from exc
    job: dict[str, Any] | None = None
    if isinstance(document, dict) and "rows" in document:
        job, rows = document.get("job"), document["rows"]
    elif isinstance(document, dict) and "data" in document:
        rows = document["data"]
    else:
        rows = document
    if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
        raise TransferError(f"{path}: expected rows (a list of objects)")
    status = str(job.get("status") or "pending") if isinstance(job, dict) else "completed"
    return _job(_spec(path, job if isinstance(job, dict) else None, job_id, name), rows, status)


def _cell(value: str, where: str) -> Any:
    if value in NONFINITE_STRINGS:
        return value
    try:
        return float(value)
    except ValueError:
        raise TransferError(f"{where}: {value!r} is not a number") from None


def read_csv(path: Path, *, job_id: str | None = None, name: str | None = None) -> ImportedJob:
    """A history CSV (see the module doc); numbers are parsed, ``NaN`` etc. kept."""
    rows: list[Row] = []
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if not reader.fieldnames or "step" not in reader.fieldnames:
            raise TransferError(f"{path}: the CSV needs a 'step' column")
        for line, record in enumerate(reader, start=2):
            row: Row = {}
            for key, value in record.items():
                if value is None or value == "" or key is None:
                    continue
                where = f"{path}:{line} {key}"
                if key == "step":
                    try:
                        row["step"] = int(value)
                    except ValueError:
                        raise TransferError(f"{where}: {value!r} is not a step") from None
                elif key == "timestamp":
                    row["timestamp"] = value
                else:
                    row[key] = _cell(value, where)
            rows.append(row)
    return _job(_spec(path, None, job_id, name), rows, "completed")


def read_parquet(path: Path, *, job_id: str | None = None, name: str | None = None) -> ImportedJob:
    """A Parquet file from ``trainvis export`` (or any with a ``step`` column)."""
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise TransferError("Parquet needs pyarrow: pip install 'trainvis[parquet]'") from exc
    table = pq.read_table(path)
    if "step" not in table.column_names:
        raise TransferError(f"{path}: the Parquet file needs a 'step' column")
    meta = table.schema.metadata or {}
    job = json.loads(meta[b"trainvis.job"]) if b"trainvis.job" in meta else None
    rows: list[Row] = []
    for record in table.to_pylist():
        row: Row = {}
        for key, value in record.items():
            if value is None:
                continue
            if key == "timestamp" and hasattr(value, "timestamp"):
                value = value.timestamp()
            row[key] = value
        rows.append(row)
    status = str(job.get("status") or "pending") if job else "completed"
    return _job(_spec(path, job, job_id, name), rows, status)


READERS: dict[str, Callable[..., ImportedJob]] = {
    "json": read_json,
    "csv": read_csv,
    "parquet": read_parquet,
}


def import_file(
    path: str | Path,
    *,
    fmt: str | None = None,
    url: str | None = None,
    db: str | None = None,
    job_id: str | None = None,
    name: str | None = None,
    force: bool = False,
    progress: bool = False,
    on_job: OnJob | None = None,
) -> str:
    """Import one file (format from ``fmt`` or the file's suffix); returns the job id.

    Raises:
        TransferError: unreadable file, unknown format, or the id is taken by
            a job of another name (pass ``job_id`` to import it beside it).
        ApiError, ServerUnavailable: the destination refused or is unreachable.
    """
    source = Path(path).expanduser()
    kind = fmt or source.suffix.lstrip(".").lower()
    reader = READERS.get(kind)
    if reader is None:
        raise TransferError(f"{path}: unknown format {kind!r} (one of {', '.join(FILE_FORMATS)})")
    if not source.is_file():
        raise TransferError(f"{path}: no such file")
    job = reader(source, job_id=job_id, name=name)
    ids = write_all(
        lambda bar: [job],
        url=url,
        db=db,
        force=force,
        progress=progress,
        on_job=on_job,
    )
    return ids[0]
