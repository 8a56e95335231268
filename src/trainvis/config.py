"""Settings: the one place that reads the environment.

Configuration flows one way: CLI flags and ``TRAINVIS_*`` variables become a
:class:`Settings`, which is handed to ``create_app``. Nothing reads the
environment at import time.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any


@dataclass(frozen=True)
class Setting:
    name: str
    default: Any
    help: str


#: Every setting: name, default and help. ``TRAINVIS_<NAME>`` overrides it.
SETTINGS: tuple[Setting, ...] = (
    Setting("db", "./trainvis.db", "SQLite file path or postgresql:// URL"),
    Setting("host", "127.0.0.1", "interface to listen on"),
    Setting("port", 8000, "TCP port to listen on"),
    Setting("api_token", None, "bearer token required for every write (POST/PUT/DELETE)"),
    Setting("read_token", None, "bearer token required for reads as well"),
    Setting("cors_origins", (), "comma-separated origins allowed by CORS (off when empty)"),
    Setting("sse_heartbeat", 15.0, "seconds between SSE heartbeat comments"),
    Setting("sse_retry_ms", 3000, "reconnect delay the SSE stream advises (retry:)"),
    Setting("sse_queue_size", 1024, "events buffered per SSE subscriber before catch-up"),
    Setting("max_body_bytes", 16 * 1024 * 1024, "largest accepted request body in bytes"),
    Setting("max_rows", 10_000, "most metric rows accepted in one request"),
    Setting("max_metrics_per_job", 10_000, "most distinct metric names one job may have"),
    Setting("max_subscribers_per_job", 1_000, "open SSE streams allowed per job (503 beyond)"),
    Setting("max_subscribers", 4_000, "open SSE streams allowed in total (503 beyond)"),
    Setting("header_timeout", 10.0, "seconds a client may take to send a request's headers"),
    Setting("body_timeout", 30.0, "seconds a client may pause while sending a request body"),
    Setting("body_deadline", 120.0, "seconds a client may take to send a whole request body"),
    Setting("send_timeout", 30.0, "seconds a client may stop reading a response before it is cut"),
    Setting("max_streaming_reads", 2, "full-history reads streamed at once (others wait)"),
    Setting("streaming_read_wait", 10.0, "seconds a history stream waits for a slot (then 503)"),
    Setting("insecure", False, "allow a non-loopback host without a write token"),
    Setting("log_level", "info", "log level of the server"),
    Setting("health", True, "run the training-health detectors on ingest"),
    Setting("health_spike_z", 8.0, "spike threshold in robust standard deviations (MAD)"),
    Setting("health_spike_window", 32, "residuals in the spike detector's robust window"),
    Setting("health_divergence_window", 50, "points over which a rising loss is divergence"),
    Setting("health_divergence_rise", 0.25, "relative rise of the smoothed loss that diverges"),
    Setting("health_plateau_window", 1000, "points without a new best that make a plateau"),
    Setting("health_gpu_idle_threshold", 10.0, "GPU utilization (%) under which a GPU is idle"),
    Setting("health_gpu_idle_seconds", 300.0, "seconds a GPU must idle (while running) to alert"),
    Setting("webhook_url", None, "URL that gets a JSON POST for every alert (off when empty)"),
    Setting("webhook_format", "json", "webhook payload: json (the event) or slack ({text})"),
    Setting("webhook_min_severity", "warning", "least severity sent to the webhook"),
    Setting("webhook_attempts", 5, "delivery attempts per alert (backoff doubles from 1 s)"),
)

WEBHOOK_FORMATS = ("json", "slack")
SEVERITIES = ("info", "warning", "critical")


@dataclass(frozen=True)
class Settings:
    """Server settings. Build with :meth:`from_env` or directly in tests."""

    db: str = "./trainvis.db"
    host: str = "127.0.0.1"
    port: int = 8000
    api_token: str | None = None
    read_token: str | None = None
    cors_origins: tuple[str, ...] = field(default_factory=tuple)
    sse_heartbeat: float = 15.0
    sse_retry_ms: int = 3000
    sse_queue_size: int = 1024
    max_body_bytes: int = 16 * 1024 * 1024
    max_rows: int = 10_000
    max_metrics_per_job: int = 10_000
    max_subscribers_per_job: int = 1_000
    max_subscribers: int = 4_000
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    body_deadline: float = 120.0
    send_timeout: float = 30.0
    max_streaming_reads: int = 2
    streaming_read_wait: float = 10.0
    insecure: bool = False
    log_level: str = "info"
    health: bool = True
    health_spike_z: float = 8.0
    health_spike_window: int = 32
    health_divergence_window: int = 50
    health_divergence_rise: float = 0.25
    health_plateau_window: int = 1000
    health_gpu_idle_threshold: float = 10.0
    health_gpu_idle_seconds: float = 300.0
    webhook_url: str | None = None
    webhook_format: str = "json"
    webhook_min_severity: str = "warning"
    webhook_attempts: int = 5

    def __post_init__(self) -> None:
        """Reject settings the server cannot run with (``ValueError`` names them)."""
        if self.webhook_format not in WEBHOOK_FORMATS:
            raise ValueError(f"webhook_format must be one of {', '.join(WEBHOOK_FORMATS)}")
        if self.webhook_min_severity not in SEVERITIES:
            raise ValueError(f"webhook_min_severity must be one of {', '.join(SEVERITIES)}")
        if self.health_spike_window < 4 or self.health_divergence_window < 2:
            raise ValueError("health_spike_window must be >= 4, health_divergence_window >= 2")
        if self.max_streaming_reads < 1:
            raise ValueError("max_streaming_reads must be >= 1")
        if self.health_plateau_window < 1 or self.webhook_attempts < 1:
            raise ValueError("health_plateau_window and webhook_attempts must be >= 1")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Defaults, then ``TRAINVIS_*`` variables, then non-None ``overrides``.

        Raises:
            ValueError: a variable that does not parse (names the variable).
        """
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for item in fields(cls):
            raw = env.get(f"TRAINVIS_{item.name.upper()}")
            if raw is None or raw == "":
                continue
            values[item.name] = _coerce(item.name, raw, getattr(cls(), item.name))
        values.update({key: value for key, value in overrides.items() if value is not None})
        if isinstance(values.get("cors_origins"), str):
            values["cors_origins"] = _split(values["cors_origins"])
        return cls(**values)


def _split(raw: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def _coerce(name: str, raw: str, default: Any) -> Any:
    try:
        if isinstance(default, bool):
            return raw.lower() in ("1", "true", "yes", "on")
        if isinstance(default, int):
            return int(raw)
        if isinstance(default, float):
            return float(raw)
        if isinstance(default, tuple):
            return _split(raw)
    except ValueError:
        raise ValueError(f"TRAINVIS_{name.upper()}={raw!r} is not a valid value") from None
    return raw


def default_db() -> str:
    """The store the SDK's local mode and ``trainvis serve`` share by default."""
    return os.environ.get("TRAINVIS_DB") or "./trainvis.db"
