"""Domain types and wire schemas.

``TrainingJob``, ``JobStatus`` and ``TrainingMetrics`` keep the seed's names.
``TrainingMetrics`` is a plain dataclass a user may subclass with new fields;
any other numeric key sent over the wire is a custom metric, so adding one
needs no code change at all.

Metric rows are validated by :func:`parse_metric_rows` rather than by pydantic:
rows carry arbitrary keys and arrive ten thousand at a time, and a hand-rolled
pass over ``dict`` objects is an order of magnitude cheaper. The pydantic models
here describe the same rows for the OpenAPI schema.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal, NamedTuple, overload

import annotated_types
import orjson
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from trainvis.errors import InvalidArgument

JOB_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
METRIC_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_./-]{0,127}$")
GENERATED_ID_RE = re.compile(r"^job-(\d+)$")

#: Keys of a metric row that are row attributes, not metrics.
ROW_ATTRIBUTES = frozenset({"step", "epoch", "timestamp", "gpus"})
#: Per-device fields of a ``gpus`` entry, flattened to ``gpu{index}.{field}``.
GPU_FIELDS = ("utilization", "memory_used", "memory_total", "temperature", "power")
_GPU_DEVICE_RE = re.compile(r"^gpu(\d+)\.([A-Za-z0-9_]+)$")
_GPU_HOST_RE = re.compile(r"^gpu/([A-Za-z0-9_.-]{1,64})/(?:(\d+)\.)?([A-Za-z0-9_]+)$")


class GpuSeries(NamedTuple):
    """What a GPU series name says: host (None on a single host), device index
    (None for the host's mean) and field (``utilization``, ``memory_used``, ...)."""

    host: str | None
    device: int | None
    field: str


def parse_gpu_series(name: str) -> GpuSeries | None:
    """Read a per-device or per-host GPU series name; None for any other metric.

    One host: ``gpu0.utilization`` → (None, 0, ``utilization``). A run on several
    nodes (issue 17, written by :class:`trainvis.gpu.GpuSampler`):
    ``gpu/node-a/1.power`` → (``node-a``, 1, ``power``) and the host's mean
    ``gpu/node-a/utilization`` → (``node-a``, None, ``utilization``).
    """
    device = _GPU_DEVICE_RE.match(name)
    if device:
        return GpuSeries(None, int(device.group(1)), device.group(2))
    hosted = _GPU_HOST_RE.match(name)
    if hosted:
        index = hosted.group(2)
        return GpuSeries(hosted.group(1), None if index is None else int(index), hosted.group(3))
    return None


#: The seed's known metric fields.
KNOWN_METRICS = (
    "train_loss",
    "val_loss",
    "learning_rate",
    "gpu_utilization",
    "gpu_memory",
    "accuracy",
    "f1",
)
#: Metrics for which "best" is the maximum (matched as substrings).
MAX_IS_BEST = ("accuracy", "f1", "precision", "recall", "auc")
#: Non-finite values travel as these strings in strict JSON.
NONFINITE_STRINGS = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
MAX_STEP = 2**62
#: Bounds of a 64-bit signed integer: every integer the API takes fits (DESIGN
#: "Integers"); a larger one is a 422 naming the parameter, never a 500.
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
#: Largest ``N`` of a client id ``job-N`` that raises the id counter. A larger
#: one is still a valid id but leaves the counter alone, so the counter (and
#: ``counter + 1``) always fits a 64-bit column, however big a client's number.
MAX_COUNTED_ID = 2**62
#: Latest Unix time a timestamp may name (year 3000); the earliest is 0.
MAX_TIMESTAMP = 32503680000.0
#: Largest ``config`` of a job, as serialized JSON (it is returned by every job list).
MAX_CONFIG_BYTES = 64 * 1024
#: GPU device indexes run from 0 to this bound (exclusive).
MAX_GPU_INDEX = 1024
#: An integer query parameter within 64 bits (add ``Query(ge=...)``). Plain
#: annotations only, so the OpenAPI document keeps ``minimum``/``maximum``.
Int64 = Annotated[int, annotated_types.Ge(INT64_MIN), annotated_types.Le(INT64_MAX)]


def json_integer(value: Any) -> Any:
    """A before-validator for integer body fields: a JSON number or nothing (numeric
    strings and booleans are not numbers); ``10.0`` is 10 as in JSON Schema.

    A ``field_validator``, not an annotation, so the OpenAPI bounds stay intact.
    """
    if isinstance(value, str | bool):
        raise ValueError("must be a JSON integer (numeric strings are not numbers)")
    return value


def counted_id_number(job_id: str) -> int | None:
    """``N`` when the client id ``job_id`` is ``job-N`` and should raise the id counter.

    Only numbers up to :data:`MAX_COUNTED_ID` count: a client id such as
    ``job-99999999999999999999999`` is accepted but cannot push the counter
    past what a 64-bit column (and the next generated id) can hold.
    """
    match = GENERATED_ID_RE.match(job_id)
    if match is None:
        return None
    number = int(match.group(1))
    return number if number <= MAX_COUNTED_ID else None


def usable_counter(stored: int, used_ids: Callable[[], Iterable[str]]) -> int:
    """The id counter to continue from: ``stored`` unless an older release let a
    client id push it beyond :data:`MAX_COUNTED_ID` (then every generated id
    failed). Such a counter restarts from the highest counted id in
    ``used_ids()``; generated ids still skip every id ever used."""
    if stored <= MAX_COUNTED_ID:
        return stored
    numbers = (counted_id_number(job_id) for job_id in used_ids())
    return max((number for number in numbers if number is not None), default=0)


class JobStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATUSES


TERMINAL_STATUSES = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED})


def best_direction(metric: str) -> str | None:
    """Return ``"min"`` for losses, ``"max"`` for accuracy-like metrics, else None."""
    if "loss" in metric:
        return "min"
    if any(token in metric for token in MAX_IS_BEST):
        return "max"
    return None


# --------------------------------------------------------------------------- values


def encode_value(value: float) -> float | str:
    """A float as strict JSON allows it: non-finite values become strings."""
    if math.isfinite(value):
        return value
    if math.isnan(value):
        return "NaN"
    return "Infinity" if value > 0 else "-Infinity"


def format_timestamp(ts: float | None) -> str | None:
    """Unix seconds as ISO 8601 UTC with milliseconds and ``Z``."""
    if ts is None:
        return None
    return _format_timestamp(ts)


@functools.lru_cache(maxsize=8192)
def _format_timestamp(ts: float) -> str:
    try:
        moment = datetime.fromtimestamp(ts, tz=UTC)
    except (OverflowError, OSError, ValueError):
        # Ingest keeps timestamps in range; a row an older release stored
        # outside it is shown at the nearest representable instant instead
        # of breaking every read of its job.
        return "0001-01-01T00:00:00.000Z" if not ts > 0 else "9999-12-31T23:59:59.999Z"
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def parse_timestamp(value: Any, loc: list[Any]) -> float:
    """ISO 8601 string or Unix seconds → Unix seconds; raises InvalidArgument."""
    if isinstance(value, bool):
        raise _invalid(loc, "timestamp must be ISO 8601 or Unix seconds")
    if isinstance(value, int | float):
        if not 0 <= value <= MAX_TIMESTAMP:  # NaN fails too; a huge int does not overflow
            raise _invalid(loc, TIMESTAMP_RANGE)
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise _invalid(loc, "timestamp must be ISO 8601 or Unix seconds") from None
        try:
            return datetime_seconds(moment)
        except ValueError:
            raise _invalid(loc, TIMESTAMP_RANGE) from None
    raise _invalid(loc, "timestamp must be ISO 8601 or Unix seconds")


TIMESTAMP_RANGE = "timestamp is out of range (1970-01-01 to 3000-01-01 UTC)"
#: The ISO form in the OpenAPI document: years 1971-2998, which no UTC offset
#: can take out of the accepted range (the edge years work too, within it).
IsoTimestamp = Annotated[
    datetime,
    WithJsonSchema(
        {
            "type": "string",
            "format": "date-time",
            "pattern": r"^(197[1-9]|19[89][0-9]|2[0-8][0-9]{2}|29[0-8][0-9]|299[0-8])-",
        }
    ),
]


def datetime_seconds(moment: datetime) -> float:
    """``moment`` (UTC when naive) as Unix seconds within ``[0, MAX_TIMESTAMP]``.

    Raises:
        ValueError: outside that range (``0001-01-01T00:00:00+01:00`` is
            before year 1 in UTC and could never be formatted back).
    """
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    try:
        seconds = moment.timestamp()
    except (OverflowError, OSError, ValueError):
        raise ValueError(TIMESTAMP_RANGE) from None
    if not 0 <= seconds <= MAX_TIMESTAMP:
        raise ValueError(TIMESTAMP_RANGE)
    return seconds


def _invalid(loc: list[Any], message: str, value: Any = None) -> InvalidArgument:
    return InvalidArgument(
        f"{'.'.join(str(part) for part in loc[1:]) or 'body'}: {message}",
        details=[{"loc": loc, "msg": message, "type": "value_error"}],
    )


def _number(value: Any, loc: list[Any]) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise _invalid(loc, "must be a number")
    if isinstance(value, str):
        if value not in NONFINITE_STRINGS:
            raise _invalid(loc, "must be a number (strings other than NaN/Infinity are rejected)")
        return NONFINITE_STRINGS[value]
    try:
        return float(value)
    except OverflowError:
        raise _invalid(loc, "number is out of range") from None


# --------------------------------------------------------------------------- rows


@dataclass(slots=True)
class MetricRow:
    """One validated row: a step, its attributes and flat metric values."""

    step: int
    values: dict[str, float]
    epoch: float | None = None
    timestamp: float | None = None


def _integral(value: Any) -> int | None:
    """An int, or a float with an integral value (JSON has one number type); else None."""
    if type(value) is int:
        return value
    if type(value) is float and value.is_integer():
        return int(value)
    return None


def _parse_gpus(raw: Any, loc: list[Any], values: dict[str, float]) -> None:
    if not isinstance(raw, list):
        raise _invalid(loc, "gpus must be a list of objects")
    for position, device in enumerate(raw):
        dloc = [*loc, position]
        if not isinstance(device, dict):
            raise _invalid(dloc, "each gpus entry must be an object")
        raw_index = device.get("index")
        index = position if raw_index is None else _integral(raw_index)
        if index is None or not 0 <= index < MAX_GPU_INDEX:
            raise _invalid([*dloc, "index"], f"index must be an integer 0-{MAX_GPU_INDEX - 1}")
        for key, value in device.items():
            if key == "index" or value is None:
                continue
            if key not in GPU_FIELDS:
                raise _invalid(
                    [*dloc, key], f"unknown gpus field (allowed: {', '.join(GPU_FIELDS)})"
                )
            number = _number(value, [*dloc, key])
            if key == "utilization" and math.isfinite(number) and not 0 <= number <= 100:
                raise _invalid([*dloc, key], "utilization must be between 0 and 100")
            values[f"gpu{index}.{key}"] = number


_VALID_NAMES: dict[str, bool] = {}


def _valid_metric_name(key: Any) -> bool:
    """Whether ``key`` is a legal metric name (memoized: rows repeat their keys)."""
    known = _VALID_NAMES.get(key) if isinstance(key, str) else False
    if known is None:
        known = bool(METRIC_NAME_RE.match(key))
        if len(_VALID_NAMES) < 100_000:
            _VALID_NAMES[key] = known
    return known


#: A flat per-device key, ``gpu{index}.{field}``: validated like a ``gpus`` entry.
FLAT_GPU_RE = re.compile(r"^gpu([0-9]+)\.(" + "|".join(GPU_FIELDS) + r")$")


def _check_range(key: str, number: float, loc: list[Any]) -> None:
    """Range checks of the GPU metrics; ``gpu{i}.{field}`` is checked as in ``gpus``."""
    if key == "gpu_utilization" or key == "gpu_memory":
        if not math.isfinite(number):
            return
        if key == "gpu_utilization" and not 0 <= number <= 100:
            raise _invalid(loc, "gpu_utilization must be between 0 and 100")
        if key == "gpu_memory" and number < 0:
            raise _invalid(loc, "gpu_memory must be >= 0")
        return
    flat = FLAT_GPU_RE.match(key)
    if flat is None:
        return
    if not int(flat.group(1)) < MAX_GPU_INDEX:
        raise _invalid(loc, f"the device index must be an integer 0-{MAX_GPU_INDEX - 1}")
    if flat.group(2) == "utilization" and math.isfinite(number) and not 0 <= number <= 100:
        raise _invalid(loc, "utilization must be between 0 and 100")


def parse_metric_row(raw: Any, loc: list[Any]) -> MetricRow:
    """Validate one posted row. ``loc`` is the error location prefix.

    Raises:
        InvalidArgument: naming the field, for anything the contract rejects.
    """
    if not isinstance(raw, dict):
        raise _invalid(loc, "each row must be a JSON object")
    step = raw.get("step")
    if step is None:
        raise _invalid([*loc, "step"], "step is required")
    if type(step) is not int:
        step = _integral(step)
        if step is None:
            raise _invalid([*loc, "step"], "step must be an integer")
    if not 0 <= step <= MAX_STEP:
        raise _invalid([*loc, "step"], f"step must be an integer from 0 to {MAX_STEP}")
    values: dict[str, float] = {}
    epoch: float | None = None
    timestamp: float | None = None
    for key, value in raw.items():
        if value is None or key == "step":
            continue
        if key in ROW_ATTRIBUTES:
            kloc = [*loc, key]
            if key == "epoch":
                epoch = _number(value, kloc)
                if not 0 <= epoch <= MAX_STEP:  # NaN and infinities fail too
                    raise _invalid(kloc, f"epoch must be a number from 0 to {MAX_STEP}")
            elif key == "timestamp":
                timestamp = parse_timestamp(value, kloc)
            else:
                _parse_gpus(value, kloc, values)
            continue
        if not _valid_metric_name(key):
            raise _invalid([*loc, key], "invalid metric name (letters, digits, _ . / -; max 128)")
        kind = type(value)
        if kind is float:
            number = value
        elif kind is int and -(2**1023) < value < 2**1023:
            number = float(value)
        else:
            number = _number(value, [*loc, key])
        if key[:3] == "gpu":  # gpu_utilization, gpu_memory, gpu{i}.{field}
            _check_range(key, number, [*loc, key])
        values[key] = number
    return MetricRow(step=step, values=values, epoch=epoch, timestamp=timestamp)


def parse_metric_rows(body: Any, *, max_rows: int) -> list[MetricRow]:
    """Validate a POST body: one row object or a list of them.

    Raises:
        InvalidArgument: a bad row (nothing of the request is stored).
        PayloadTooLarge: more than ``max_rows`` rows.
    """
    from trainvis.errors import PayloadTooLarge

    if isinstance(body, dict):
        return [parse_metric_row(body, ["body"])]
    if not isinstance(body, list):
        raise _invalid(["body"], "body must be a metric row object or an array of rows")
    if len(body) > max_rows:
        raise PayloadTooLarge(
            f"{len(body)} rows in one request; the limit is {max_rows}",
            details={"rows": len(body), "limit": max_rows},
        )
    if not body:
        raise _invalid(["body"], "the array of rows is empty")
    return [parse_metric_row(raw, ["body", index]) for index, raw in enumerate(body)]


def format_timestamps(seconds: Any) -> list[str]:
    """Vectorised :func:`format_timestamp` for a numpy array of Unix seconds."""
    import numpy as np

    millis = np.floor(np.asarray(seconds, dtype=np.float64) * 1000).astype("datetime64[ms]")
    return [text + "Z" for text in np.datetime_as_string(millis, unit="ms").tolist()]


def row_to_wire(
    step: int, epoch: float | None, timestamp: float | None, values: Mapping[str, float]
) -> dict[str, Any]:
    """A stored row as history, SSE and exports return it (strict JSON)."""
    row: dict[str, Any] = {"step": step}
    if epoch is not None:
        row["epoch"] = _plain_number(epoch)
    row["timestamp"] = format_timestamp(timestamp)
    for name, value in values.items():
        row[name] = encode_value(value)
    return row


# --------------------------------------------------------------------------- seed types


@dataclass
class TrainingMetrics:
    """One training step's metrics, with the seed's field names.

    Subclass it to add fields (``new_metric: float | None = None``); every
    numeric field that is not ``None`` becomes a metric. ``custom`` holds any
    other metric by name, and ``gpus`` the per-device readings.
    """

    step: int
    epoch: float | None = None
    train_loss: float | None = None
    val_loss: float | None = None
    learning_rate: float | None = None
    gpu_utilization: float | None = None
    gpu_memory: float | None = None
    accuracy: float | None = None
    f1: float | None = None
    timestamp: float | str | None = None
    gpus: list[dict[str, Any]] | None = None
    custom: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The row as the REST API accepts it (``None`` fields left out)."""
        row: dict[str, Any] = {}
        for item in dataclasses.fields(self):
            if item.name == "custom":
                continue
            value = getattr(self, item.name)
            if value is not None:
                row[item.name] = value
        row.update(self.custom)
        return row


@dataclass
class TrainingJob:
    """A stored training job as the store returns it."""

    id: str
    name: str
    status: JobStatus = JobStatus.PENDING
    model_name: str | None = None
    total_epochs: int | None = None
    total_steps: int | None = None
    config: dict[str, Any] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)
    message: str | None = None
    created_at: float = 0.0
    updated_at: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None
    current_step: int | None = None
    current_epoch: float | None = None
    point_count: int = 0
    row_count: int = 0
    last_seq: int = 0
    first_timestamp: float | None = None
    metric_names: list[str] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    eta_seconds: float | None = None
    #: Stored events by severity: ``{"info": n, "warning": n, "critical": n}``.
    alerts: dict[str, int] = field(default_factory=lambda: {"info": 0, "warning": 0, "critical": 0})
    #: Statistics of the metrics a list asked for with ``stats=`` (issue 16); None: not asked.
    stats: dict[str, dict[str, Any]] | None = None

    @property
    def progress(self) -> float | None:
        if not self.total_steps or self.current_step is None:
            return None
        return max(0.0, min(1.0, self.current_step / self.total_steps))

    def to_wire(self) -> dict[str, Any]:
        """The job as every endpoint returns it."""
        return {
            "id": self.id,
            "name": self.name,
            "model_name": self.model_name,
            "status": self.status.value,
            "message": self.message,
            "total_epochs": self.total_epochs,
            "total_steps": self.total_steps,
            "config": self.config,
            "tags": self.tags,
            "created_at": format_timestamp(self.created_at),
            "updated_at": format_timestamp(self.updated_at),
            "started_at": format_timestamp(self.started_at),
            "finished_at": format_timestamp(self.finished_at),
            "current_step": self.current_step,
            "current_epoch": _plain_number(self.current_epoch),
            "progress": self.progress,
            "eta_seconds": self.eta_seconds,
            "metric_names": self.metric_names,
            "point_count": self.point_count,
            "summary": self.summary,
            "alerts": self.alerts,
            **({} if self.stats is None else {"stats": self.stats}),
        }


def _plain_number(value: float | None) -> float | int | None:
    if value is None:
        return None
    # an int only where it is exact: 1e20 as an int would not fit strict 64-bit JSON
    return int(value) if float(value).is_integer() and abs(value) < 2**53 else value


@dataclass(frozen=True)
class StatusChange:
    """A status transition, as published on the stream."""

    job_id: str
    status: JobStatus
    previous_status: JobStatus
    message: str | None
    timestamp: float

    def to_wire(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "status": self.status.value,
            "previous_status": self.previous_status.value,
            "message": self.message,
            "timestamp": format_timestamp(self.timestamp),
        }


@dataclass(frozen=True)
class WriteResult:
    """What one metrics write stored."""

    job_id: str
    accepted: int
    points: int
    last_step: int
    #: Builds the rows as stored, ``(seq, row)`` by seq; only called when
    #: someone listens, so ingest does not pay for it otherwise.
    rows_factory: Callable[[], list[tuple[int, dict[str, Any]]]]
    #: The newest sequence number the write gave out.
    last_seq: int | None = None
    #: ``pending`` → ``running`` when this write was the job's first (to publish).
    status_change: StatusChange | None = None

    @functools.cached_property
    def rows(self) -> StoredRows:
        """The rows as stored (merged with earlier values of the same step), by seq.

        Built on first use, so publishing to a job nobody watches costs nothing.
        """
        return StoredRows(self.rows_factory, last_seq=self.last_seq)

    def to_wire(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "accepted": self.accepted,
            "points": self.points,
            "last_step": self.last_step,
        }


class StoredRows(Sequence[tuple[int, dict[str, Any]]]):
    """A lazily built list of ``(seq, row)``."""

    def __init__(
        self,
        factory: Callable[[], list[tuple[int, dict[str, Any]]]],
        *,
        last_seq: int | None = None,
    ) -> None:
        self._factory = factory
        self._rows: list[tuple[int, dict[str, Any]]] | None = None
        #: Known without building the rows (brokers that only announce a seq).
        self.last_seq = last_seq

    def _load(self) -> list[tuple[int, dict[str, Any]]]:
        if self._rows is None:
            self._rows = self._factory()
        return self._rows

    def __len__(self) -> int:
        return len(self._load())

    @overload
    def __getitem__(self, index: int) -> tuple[int, dict[str, Any]]: ...

    @overload
    def __getitem__(self, index: slice) -> list[tuple[int, dict[str, Any]]]: ...

    def __getitem__(
        self, index: int | slice
    ) -> tuple[int, dict[str, Any]] | list[tuple[int, dict[str, Any]]]:
        return self._load()[index]


# --------------------------------------------------------------------------- schemas


def _no_nul(text: str) -> str:
    """Reject U+0000: PostgreSQL cannot store it, so no backend accepts it."""
    if "\x00" in text:
        raise ValueError("may not contain the NUL character")
    return text


#: Strings stored in text columns: PostgreSQL text cannot hold U+0000.
NO_NUL = r"^[^\x00]*$"
Text = Annotated[str, AfterValidator(_no_nul), Field(json_schema_extra={"pattern": NO_NUL})]
Tag = Annotated[
    str,
    Field(min_length=1, max_length=100, json_schema_extra={"pattern": NO_NUL}),
    AfterValidator(_no_nul),
]


def _check_config(config: dict[str, Any]) -> dict[str, Any]:
    """A job's ``config`` must serialize (64-bit integers, bounded nesting) within
    :data:`MAX_CONFIG_BYTES`: it is stored as JSON and returned by every job list."""
    try:
        size = len(orjson.dumps(config))
    except orjson.JSONEncodeError as exc:  # an integer beyond 64 bits, nesting > 254
        raise ValueError(f"cannot be stored as JSON ({exc})") from None
    if size > MAX_CONFIG_BYTES:
        raise ValueError(f"is {size} bytes as JSON; the limit is {MAX_CONFIG_BYTES}")
    return config


# The job fields a client sets, declared once for create and edit (issue 16).
JobName = Annotated[
    str,
    Field(min_length=1, max_length=200, json_schema_extra={"pattern": NO_NUL}),
    AfterValidator(_no_nul),
]
ModelName = Annotated[
    str, Field(max_length=200, json_schema_extra={"pattern": NO_NUL}), AfterValidator(_no_nul)
]
JobConfig = Annotated[
    dict[str, Any],
    AfterValidator(_check_config),
    Field(description=f"any JSON object, at most {MAX_CONFIG_BYTES // 1024} KiB serialized"),
]
JobTags = Annotated[list[Tag], Field(max_length=100)]


class JobCreate(BaseModel):
    """Body of ``POST /training/jobs``."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    name: JobName
    model_name: ModelName | None = None
    total_epochs: int | None = Field(default=None, gt=0, le=MAX_STEP)
    total_steps: int | None = Field(default=None, gt=0, le=MAX_STEP)
    config: JobConfig = Field(default_factory=dict)
    tags: JobTags = Field(default_factory=list)
    id: str | None = Field(default=None, pattern=JOB_ID_RE.pattern)

    _integers = field_validator("total_epochs", "total_steps", mode="before")(json_integer)


def _update_schema(schema: dict[str, Any]) -> None:
    """The schema says what the server accepts: at least one field, and ``null``
    only for ``model_name`` (the others are declared optional, not nullable)."""
    schema["minProperties"] = 1
    for name in ("name", "config", "tags"):
        field = schema["properties"][name]
        options = [item for item in field.pop("anyOf", []) if item.get("type") != "null"]
        if len(options) == 1:
            field.update(options[0])
        elif options:
            field["anyOf"] = options
        field.pop("default", None)


class JobUpdate(BaseModel):
    """Body of ``PATCH /training/jobs/{job_id}``: the fields to change, at least one.

    Validated as in :class:`JobCreate`; ``config`` and ``tags`` replace the stored
    ones; ``model_name: null`` clears it, ``null`` for the others is rejected.
    """

    model_config = ConfigDict(
        extra="forbid", protected_namespaces=(), json_schema_extra=_update_schema
    )

    name: JobName | None = None
    model_name: ModelName | None = None
    config: JobConfig | None = None
    tags: JobTags | None = None

    @field_validator("name", "config", "tags")
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        # Runs for values given only (defaults are not validated).
        if value is None:
            raise ValueError("may not be null")
        return value

    @model_validator(mode="after")
    def _not_empty(self) -> JobUpdate:
        if not self.model_fields_set:
            raise ValueError(f"give at least one of {', '.join(type(self).model_fields)}")
        return self

    def changes(self) -> dict[str, Any]:
        """The fields given, by name."""
        return {name: getattr(self, name) for name in self.model_fields_set}


class StatusUpdate(BaseModel):
    """Body of ``PUT /training/jobs/{job_id}/status``."""

    model_config = ConfigDict(extra="forbid")

    status: JobStatus
    message: Text | None = Field(default=None, max_length=2000)


NonFinite = Literal["NaN", "Infinity", "-Infinity"]
MetricValue = float | NonFinite | None
#: A percentage: a number from 0 to 100, or a non-finite value (kept, not range-checked).
Percent = Annotated[float, Field(ge=0, le=100)] | NonFinite | None
#: A size: a number >= 0, or a non-finite value.
NonNegative = Annotated[float, Field(ge=0)] | NonFinite | None


class GpuReading(BaseModel):
    """One device in a row's ``gpus`` list (flattened to ``gpu{index}.{field}``).

    Documentation of what :func:`parse_metric_row` accepts (the parser is the
    implementation; ``tests/unit/test_wire_schema.py`` checks the two agree).
    """

    model_config = ConfigDict(extra="forbid")

    index: int | None = Field(
        default=None,
        ge=0,
        lt=MAX_GPU_INDEX,
        description="device index; default (or null): the entry's position in the list",
    )
    utilization: Percent = None
    memory_used: MetricValue = None
    memory_total: MetricValue = None
    temperature: MetricValue = None
    power: MetricValue = None


def _flat_gpu_schema(schema: dict[str, Any]) -> None:
    """Custom metric names, and flat ``gpu{index}.{field}`` keys checked like ``gpus``."""
    schema["propertyNames"] = {"pattern": METRIC_NAME_RE.pattern}
    fields = "|".join(GPU_FIELDS)
    # An index of MAX_GPU_INDEX (1024) or more, leading zeros ignored (the test
    # checks this pattern against the parser's own bound).
    too_big = r"0*(?:[1-9][0-9]{4,}|[2-9][0-9]{3}|1[1-9][0-9]{2}|10[3-9][0-9]|102[4-9])"
    schema["patternProperties"] = {
        rf"^gpu{too_big}\.({fields})$": False,
        r"^gpu[0-9]+\.utilization$": {
            "anyOf": [
                {"type": "number", "minimum": 0, "maximum": 100},
                {"enum": list(NONFINITE_STRINGS)},
                {"type": "null"},
            ]
        },
    }


class MetricRowIn(BaseModel):
    """A metric row. Any other key matching the metric-name pattern is a custom
    metric; values are numbers, ``null`` (absent) or ``"NaN"``/``"Infinity"``/
    ``"-Infinity"``. (Documentation of :func:`parse_metric_rows`, which validates
    rows fast by hand; ``tests/unit/test_wire_schema.py`` feeds the parser's edge
    cases through this schema and checks that both accept and reject the same.)"""

    model_config = ConfigDict(extra="allow", json_schema_extra=_flat_gpu_schema)
    __pydantic_extra__: dict[str, MetricValue]

    step: int = Field(ge=0, le=MAX_STEP)
    epoch: float | None = Field(default=None, ge=0, le=MAX_STEP)
    timestamp: IsoTimestamp | Annotated[float, Field(ge=0, le=MAX_TIMESTAMP)] | None = Field(
        default=None, description="ISO 8601 or Unix seconds; default: server time"
    )
    train_loss: MetricValue = None
    val_loss: MetricValue = None
    learning_rate: MetricValue = None
    gpu_utilization: Percent = None
    gpu_memory: NonNegative = None
    accuracy: MetricValue = None
    f1: MetricValue = None
    gpus: list[GpuReading] | None = None


def iter_dataclass_values(obj: Any) -> Iterable[tuple[str, Any]]:
    """Field name/value pairs of a dataclass instance (for SDK helpers)."""
    for item in dataclasses.fields(obj):
        yield item.name, getattr(obj, item.name)
