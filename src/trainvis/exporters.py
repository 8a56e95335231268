"""Export a job's full history as CSV, JSON or Parquet.

The rows are streamed from the store (``iter_rows``) or, with a server URL,
read page by page from ``GET /training/{id}/metrics/history`` (10,000 rows a
request, by step), so a job of any size is written without holding it in memory.

Formats:

- ``csv``: the server's CSV exactly: ``step,epoch,timestamp,<metric>…`` (the
  job's ``metric_names``), timestamps ISO 8601 UTC, non-finite values as
  ``NaN``/``Infinity``/``-Infinity``, empty cells for absent values.
- ``json``: ``{"format": "trainvis-export", "version": 1, "job": <the job as
  GET /training/jobs/{id} returns it>, "rows": [<history rows>]}``, strict
  JSON, one row per line. ``trainvis import json`` reads it back (same id,
  name, config, tags, status and history).
- ``parquet`` (needs ``pyarrow``: ``trainvis[parquet]``): columns ``step``
  (int64), ``epoch`` (float64, null when absent), ``timestamp`` (timestamp[ms,
  UTC]) and one float64 column per metric (NaN and ±Infinity kept, null when
  absent); the job is in the schema metadata under ``trainvis.job``.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np
import orjson

from trainvis.client.http import ApiError
from trainvis.importers.sink import TransferClient, TransferError, resolve_target
from trainvis.models import NONFINITE_STRINGS

FORMATS = ("csv", "json", "parquet")
EXPORT_FORMAT = "trainvis-export"
EXPORT_VERSION = 1
#: Rows per history request (``--url``) and per Parquet row group chunk.
PAGE = 10_000
Row = dict[str, Any]
Out = str | os.PathLike[str] | IO[bytes]


class JobRows:
    """A job and its history rows, from a store or a server."""

    def __init__(self, job_id: str, *, url: str | None = None, db: str | None = None) -> None:
        server, store, token = resolve_target(url, db)
        self.job_id = job_id
        self._client: TransferClient | None = None
        self._store: Any = None
        try:
            if server:
                self._client = TransferClient(server, token=token, timeout=120.0)
                self.job = self._client.get_job(job_id)
            else:
                from trainvis.errors import JobNotFound
                from trainvis.store import open_store

                if "://" not in store and not Path(store.removeprefix("sqlite:///")).exists():
                    raise TransferError(f"no store at {store} (pass --db or --url)")
                self._store = open_store(store)
                try:
                    self.job = self._store.get_job(job_id).to_wire()
                except JobNotFound:
                    raise TransferError(f"no job {job_id!r} in {store}") from None
        except ApiError as exc:
            self.close()
            if exc.code == "job_not_found":
                raise TransferError(f"no job {job_id!r} on {server}") from None
            raise
        except BaseException:
            self.close()
            raise

    @property
    def metric_names(self) -> list[str]:
        """The job's metrics, in the order the server's CSV uses."""
        return list(self.job.get("metric_names") or [])

    def rows(self) -> Iterator[Row]:
        """Every row ordered by step (non-finite values as strings, timestamps ISO)."""
        if self._store is not None:
            yield from self._store.iter_rows(self.job_id)
            return
        assert self._client is not None
        start = 0
        while True:
            page = self._client.history_page(self.job_id, start_step=start, limit=PAGE)
            yield from page
            if len(page) < PAGE:
                return
            start = int(page[-1]["step"]) + 1

    def close(self) -> None:
        """Release the store or the HTTP connections."""
        if self._client is not None:
            self._client.close()
        if self._store is not None:
            self._store.close()


def write_csv(source: JobRows, out: IO[bytes]) -> int:
    """Write the CSV; returns the number of rows."""
    header = ["step", "epoch", "timestamp", *source.metric_names]
    text = io.TextIOWrapper(out, encoding="utf-8", newline="", write_through=True)
    try:
        writer = csv.writer(text, lineterminator="\n")
        writer.writerow(header)
        count = 0
        for row in source.rows():
            writer.writerow([row.get(key, "") for key in header])
            count += 1
        text.flush()
    finally:
        text.detach()
    return count


def write_json(source: JobRows, out: IO[bytes]) -> int:
    """Write the JSON document (one row per line); returns the number of rows."""
    head = {"format": EXPORT_FORMAT, "version": EXPORT_VERSION, "job": source.job}
    out.write(orjson.dumps(head)[:-1] + b', "rows": [')
    count = 0
    for row in source.rows():
        out.write((b"\n" if count == 0 else b",\n") + orjson.dumps(row))
        count += 1
    out.write(b"\n]}\n")
    return count


def _float(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, str):
        return NONFINITE_STRINGS[value]
    return float(value)


def _parquet_batch(rows: list[Row], names: list[str], schema: Any) -> Any:
    import pyarrow as pa

    stamps = np.array(
        [row["timestamp"][:-1] if row.get("timestamp") else "NaT" for row in rows],
        dtype="datetime64[ms]",
    )
    columns = [
        pa.array([row["step"] for row in rows], type=pa.int64()),
        pa.array([_float(row.get("epoch")) for row in rows], type=pa.float64()),
        pa.array(stamps, mask=np.isnat(stamps)).cast(pa.timestamp("ms", tz="UTC")),
        *(pa.array([_float(row.get(name)) for row in rows], type=pa.float64()) for name in names),
    ]
    return pa.RecordBatch.from_arrays(columns, schema=schema)


def write_parquet(source: JobRows, out: IO[bytes]) -> int:
    """Write the Parquet file; returns the number of rows.

    Raises:
        TransferError: pyarrow is not installed.
    """
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise TransferError("Parquet needs pyarrow: pip install 'trainvis[parquet]'") from exc
    names = source.metric_names
    fields = [
        pa.field("step", pa.int64(), nullable=False),
        pa.field("epoch", pa.float64()),
        pa.field("timestamp", pa.timestamp("ms", tz="UTC")),
        *(pa.field(name, pa.float64()) for name in names),
    ]
    meta = {b"trainvis.job": json.dumps(source.job).encode(), b"trainvis.format": b"1"}
    schema = pa.schema(fields, metadata=meta)
    count = 0
    with pq.ParquetWriter(out, schema) as writer:
        batch: list[Row] = []
        for row in source.rows():
            batch.append(row)
            if len(batch) >= PAGE * 5:
                writer.write_batch(_parquet_batch(batch, names, schema))
                count, batch = count + len(batch), []
        if batch or count == 0:
            writer.write_batch(_parquet_batch(batch, names, schema))
            count += len(batch)
    return count


WRITERS = {"csv": write_csv, "json": write_json, "parquet": write_parquet}


@contextlib.contextmanager
def _opened(out: Out) -> Iterator[IO[bytes]]:
    if isinstance(out, str | os.PathLike):
        if str(out) == "-":
            yield sys.stdout.buffer
            sys.stdout.buffer.flush()
            return
        path = Path(out)
        partial = path.with_name(path.name + ".partial")
        try:
            with partial.open("wb") as handle:
                yield handle
            partial.replace(path)  # no half-written export under the real name
        finally:
            partial.unlink(missing_ok=True)
        return
    yield out


def export_job(
    job_id: str, fmt: str, out: Out, *, url: str | None = None, db: str | None = None
) -> int:
    """Write the full history of ``job_id`` to ``out`` in ``fmt``; returns the row count.

    Args:
        job_id: the job to export.
        fmt: ``csv``, ``json`` or ``parquet`` (see the module doc).
        out: a file path (``"-"`` for stdout) or a binary file object.
        url: server root to read from (default ``TRAINVIS_URL``).
        db: store to read directly (wins over ``url``).

    Raises:
        TransferError: unknown format or job, or pyarrow missing for Parquet.
        ApiError, ServerUnavailable: the server refused or is unreachable.
    """
    writer = WRITERS.get(fmt)
    if writer is None:
        raise TransferError(f"unknown format {fmt!r} (choose from {', '.join(FORMATS)})")
    source = JobRows(job_id, url=url, db=db)
    try:
        with _opened(out) as handle:
            return writer(source, handle)
    finally:
        source.close()
