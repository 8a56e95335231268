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
    Setting("max_subscribers_per_job", 200, "open SSE streams allowed per job (503 beyond)"),
    Setting("max_subscribers", 2_000, "open SSE streams allowed in total (503 beyond)"),
    Setting("header_timeout", 10.0, "seconds a client may take to send a request's headers"),
    Setting("body_timeout", 30.0, "seconds a client may pause while sending a request body"),
    Setting("insecure", False, "allow a non-loopback host without a write token"),
    Setting("log_level", "info", "log level of the server"),
)


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
    max_subscribers_per_job: int = 200
    max_subscribers: int = 2_000
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    insecure: bool = False
    log_level: str = "info"

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
