"""Settings: the one declaration of what the server can be told.

:class:`Settings` (pydantic-settings) is the only place a setting is declared:
its name, type, default, bounds and help. Everything else is derived from it —
the ``TRAINVIS_*`` environment variables (pydantic-settings reads them), the
``trainvis serve`` flags (:func:`trainvis.cli` builds one per field), and the
README's configuration table (:func:`settings_table`, checked by a test).
Configuration flows one way: flags and environment become a ``Settings``,
which is handed to ``create_app``. Nothing reads the environment at import time.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

WebhookFormat = Literal["json", "slack", "feishu", "dingtalk", "wecom"]
Severity = Literal["info", "warning", "critical"]
#: Shortest token accepted (issue 13: short tokens are guessable).
MIN_TOKEN_LENGTH = 16


class Settings(BaseSettings):
    """Server settings. Build with :meth:`from_env`, or directly in tests.

    Each field's ``description`` is its help text (flags and README). Fields with
    ``json_schema_extra={"flag": False}`` are environment-only.
    """

    model_config = SettingsConfigDict(
        env_prefix="TRAINVIS_",
        env_ignore_empty=True,
        frozen=True,
        extra="forbid",
        validate_default=True,
    )

    db: str = Field(default="./trainvis.db", description="SQLite file path or postgresql:// URL")
    host: str = Field(default="127.0.0.1", description="interface to listen on")
    port: int = Field(default=8000, ge=0, le=65535, description="TCP port to listen on")
    api_token: str | None = Field(
        default=None,
        description="bearer token required for every write (POST/PUT/PATCH/DELETE), 16+ characters",
    )
    read_token: str | None = Field(
        default=None,
        description="bearer token required for reads; alone, it protects writes as well",
    )
    cors_origins: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(), description="comma-separated origins allowed by CORS (off when empty)"
    )
    sse_heartbeat: float = Field(
        default=15.0, gt=0, description="seconds between SSE heartbeat comments"
    )
    sse_retry_ms: int = Field(
        default=3000, ge=0, description="reconnect delay the SSE stream advises (retry:)"
    )
    sse_queue_size: int = Field(
        default=1024, ge=1, description="events buffered per SSE subscriber before catch-up"
    )
    max_body_bytes: int = Field(
        default=16 * 1024 * 1024, ge=1, description="largest accepted request body in bytes"
    )
    max_rows: int = Field(
        default=10_000, ge=1, description="most metric rows accepted in one request"
    )
    max_metrics_per_job: int = Field(
        default=10_000, ge=1, description="most distinct metric names one job may have"
    )
    max_subscribers_per_job: int = Field(
        default=1_000, ge=1, description="open SSE streams allowed per job (503 beyond)"
    )
    max_subscribers: int = Field(
        default=4_000, ge=1, description="open SSE streams allowed in total (503 beyond)"
    )
    header_timeout: float = Field(
        default=10.0, gt=0, description="seconds a client may take to send a request's headers"
    )
    body_timeout: float = Field(
        default=30.0, gt=0, description="seconds a client may pause while sending a request body"
    )
    body_deadline: float = Field(
        default=120.0, gt=0, description="seconds a client may take to send a whole request body"
    )
    send_timeout: float = Field(
        default=30.0,
        gt=0,
        description="seconds a client may stop reading a response before it is cut",
    )
    max_streaming_reads: int = Field(
        default=2, ge=1, description="full-history reads streamed at once (others wait)"
    )
    streaming_read_wait: float = Field(
        default=10.0, ge=0, description="seconds a history stream waits for a slot (then 503)"
    )
    insecure: bool = Field(default=False, description="allow a non-loopback host without a token")
    log_level: Literal["critical", "error", "warning", "info", "debug", "trace"] = Field(
        default="info", description="log level of the server"
    )
    health: bool = Field(default=True, description="run the training-health detectors on ingest")
    health_spike_z: float = Field(
        default=8.0, gt=0, description="spike threshold in robust standard deviations (MAD)"
    )
    health_spike_window: int = Field(
        default=32, ge=4, description="residuals in the spike detector's robust window"
    )
    health_divergence_window: int = Field(
        default=50, ge=2, description="points over which a rising loss is divergence"
    )
    health_divergence_rise: float = Field(
        default=0.25, gt=0, description="relative rise of the smoothed loss that diverges"
    )
    health_plateau_window: int = Field(
        default=1000, ge=1, description="points without a new best that make a plateau"
    )
    health_gpu_idle_threshold: float = Field(
        default=10.0, ge=0, le=100, description="GPU utilization (%) under which a GPU is idle"
    )
    health_gpu_idle_seconds: float = Field(
        default=300.0, gt=0, description="seconds a GPU must idle (while running) to alert"
    )
    webhook_url: str | None = Field(
        default=None, description="URL that gets a JSON POST for every alert (off when empty)"
    )
    webhook_format: WebhookFormat = Field(
        default="json",
        description="webhook payload: json (the event), slack ({text}), feishu (Feishu/Lark bot), "
        "dingtalk or wecom (their group robots)",
    )
    webhook_secret: str | None = Field(
        default=None,
        description="signing secret of a feishu or dingtalk bot (its signature check)",
    )
    webhook_min_severity: Severity = Field(
        default="warning", description="least severity sent to the webhook"
    )
    webhook_attempts: int = Field(
        default=5, ge=1, description="delivery attempts per alert (backoff doubles from 1 s)"
    )

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: Any) -> Any:
        return _split(value) if isinstance(value, str) else value

    @field_validator("webhook_url", "webhook_secret", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        return None if value == "" else value

    @field_validator("webhook_secret")
    @classmethod
    def _secret_is_signed(cls, value: str | None, info: ValidationInfo) -> str | None:
        """A secret only where the format signs (a WeCom or Slack secret would be ignored)."""
        fmt = info.data.get("webhook_format")
        if value is not None and fmt is not None and fmt not in ("feishu", "dingtalk"):
            raise ValueError(
                f"webhook_secret signs feishu and dingtalk webhooks only, not {fmt!r} "
                "(set --webhook-format, or drop the secret)"
            )
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower_level(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    @field_validator("api_token", "read_token")
    @classmethod
    def _long_enough(cls, value: str | None, info: ValidationInfo) -> str | None:
        """Tokens of at least 16 characters (issue 13: short tokens are guessable)."""
        if value is not None and len(value) < MIN_TOKEN_LENGTH:
            name = info.field_name or "token"
            raise ValueError(
                f"{name} (--{name.replace('_', '-')}, TRAINVIS_{name.upper()}) must be at "
                f"least {MIN_TOKEN_LENGTH} characters long; generate one with: "
                'python -c "import secrets; print(secrets.token_urlsafe(32))"'
            )
        return value

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Defaults, then ``TRAINVIS_*`` variables, then non-None ``overrides``.

        Raises:
            ValueError: a variable or override that does not parse (names it).
        """
        given = {key: value for key, value in overrides.items() if value is not None}
        try:
            if environ is None:
                return cls(**given)  # pydantic-settings reads os.environ; init values win
            values: dict[str, Any] = {}
            for name in cls.model_fields:
                raw = environ.get(f"TRAINVIS_{name.upper()}")
                if raw is not None and raw != "":
                    values[name] = raw
            # model_validate reads nothing but ``values`` (no os.environ).
            return cls.model_validate({**values, **given})
        except ValidationError as exc:
            raise ValueError(_describe(exc, set(given))) from None


def _describe(exc: ValidationError, flags: set[str]) -> str:
    """The first error, named as the user wrote it (variable or flag)."""
    error = exc.errors()[0]
    name = str(error["loc"][0]) if error["loc"] else "settings"
    source = f"--{name.replace('_', '-')}" if name in flags else f"TRAINVIS_{name.upper()}"
    return f"{source} ({name}): {error['msg']}"


def _split(raw: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.split(",") if part.strip())


@dataclass(frozen=True)
class Setting:
    """One row of the configuration table, derived from :class:`Settings`."""

    name: str
    default: Any
    help: str

    @property
    def env(self) -> str:
        return f"TRAINVIS_{self.name.upper()}"

    @property
    def flag(self) -> str:
        return f"--{self.name.replace('_', '-')}"


#: Every setting: name, default and help (derived from :class:`Settings`).
SETTINGS: tuple[Setting, ...] = tuple(
    Setting(name, field.default, field.description or "")
    for name, field in Settings.model_fields.items()
)


def settings_table() -> str:
    """The README's configuration table (Markdown), one row per setting."""
    lines = ["| flag | variable | default | meaning |", "|---|---|---|---|"]
    for item in SETTINGS:
        default = _shown(item.default)
        lines.append(f"| `{item.flag}` | `{item.env}` | {default} | {item.help} |")
    return "\n".join(lines)


def _shown(value: Any) -> str:
    if value is None or value == ():
        return "none"
    if isinstance(value, bool):
        return "on" if value else "off"
    return f"`{value}`"


def default_db() -> str:
    """The store the SDK's local mode and ``trainvis serve`` share by default."""
    return os.environ.get("TRAINVIS_DB") or "./trainvis.db"
