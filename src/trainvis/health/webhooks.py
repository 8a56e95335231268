"""Webhook notifications for alerts: a background worker with a bounded queue.

:meth:`WebhookNotifier.notify` never blocks and never raises: it drops the
alert (with a warning in the log) when the queue is full. A single worker task
posts alerts in order; a failed delivery (connection error, timeout, 429 or
5xx) is retried with exponential backoff (1 s, 2 s, 4 s, … capped at 60 s) up
to ``attempts`` tries, then given up (logged). Another 4xx answer is not
retried: the receiver rejected the payload.

Payloads (``format``):

- ``json``: ``{"type": "trainvis.alert", "text": "...", "event": <event>}``,
  ``event`` exactly as ``GET …/events`` returns it;
- ``slack``: ``{"text": "..."}`` (Slack incoming webhooks, Mattermost,
  Rocket.Chat and most chat tools accept it);
- ``feishu``: a Feishu / Lark custom bot, ``{"msg_type": "text", "content":
  {"text": "..."}}``; with a signing secret the body also carries
  ``timestamp`` (seconds) and ``sign`` = base64(HMAC-SHA256 keyed with
  ``f"{timestamp}\\n{secret}"`` over an empty message);
- ``dingtalk``: a DingTalk custom robot, ``{"msgtype": "text", "text":
  {"content": "..."}}``; with a signing secret the URL gains ``timestamp``
  (milliseconds) and ``sign`` = urlencode(base64(HMAC-SHA256 keyed with the
  secret over ``f"{timestamp}\\n{secret}"``));
- ``wecom``: a WeCom (企业微信) group robot, ``{"msgtype": "text", "text":
  {"content": "..."}}`` (cut to the 2,048 bytes it accepts; no signing).

The signature is computed again for every attempt (Feishu and DingTalk refuse a
timestamp more than an hour old). These services answer HTTP 200 with an error
code in the body (``code`` for Feishu, ``errcode`` for the others): a non-zero
code is a failed delivery, retried only when it says "rate limited".
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import logging
import time
import urllib.parse
from typing import Any

import httpx
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)

from trainvis.config import Settings
from trainvis.events import EventKind, JobEvent, Severity
from trainvis.version import __version__

log = logging.getLogger("trainvis.health")

QUEUE_SIZE = 1000
FIRST_DELAY = 1.0
MAX_DELAY = 60.0
TIMEOUT = 10.0
#: Seconds ``stop`` waits for queued alerts to go out.
DRAIN_TIMEOUT = 2.0
_ICONS = {Severity.INFO: "ℹ️", Severity.WARNING: "⚠️", Severity.CRITICAL: "🚨"}
#: Formats that sign their requests when a secret is set.
SIGNED_FORMATS = ("feishu", "dingtalk")
#: Longest text a WeCom robot accepts, in UTF-8 bytes.
WECOM_TEXT_BYTES = 2048
#: Codes in a 200 answer that mean "rate limited, try later" (Feishu's tenant limit,
#: DingTalk's "send too fast", WeCom's "api freq out of limit").
_RATE_LIMITED = {"feishu": {11232}, "dingtalk": {130101}, "wecom": {45009}}


def alert_text(event: JobEvent) -> str:
    """One line for humans: severity, job, what happened."""
    return (
        f"{_ICONS[event.severity]} trainvis {event.severity.value}: job {event.job_id}: "
        f"{event.message}"
    )


def payload(event: JobEvent, fmt: str) -> dict[str, Any]:
    """The JSON body posted for ``event`` in format ``fmt`` (unsigned; see :func:`signed`)."""
    text = alert_text(event)
    if fmt == "slack":
        return {"text": text}
    if fmt == "feishu":
        return {"msg_type": "text", "content": {"text": text}}
    if fmt == "dingtalk":
        return {"msgtype": "text", "text": {"content": text}}
    if fmt == "wecom":
        return {"msgtype": "text", "text": {"content": _cut_utf8(text, WECOM_TEXT_BYTES)}}
    return {"type": "trainvis.alert", "text": text, "event": event.to_wire()}


def _cut_utf8(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` UTF-8 bytes, on a character boundary."""
    encoded = text.encode()
    if len(encoded) <= limit:
        return text
    return encoded[: limit - 3].decode(errors="ignore") + "…"


def feishu_sign(secret: str, timestamp: int) -> str:
    """Feishu / Lark: base64(HMAC-SHA256 keyed with ``"{timestamp}\\n{secret}"``, over b"")."""
    key = f"{timestamp}\n{secret}".encode()
    return base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode()


def dingtalk_sign(secret: str, timestamp_ms: int) -> str:
    """DingTalk: base64(HMAC-SHA256 keyed with the secret over ``"{timestamp}\\n{secret}"``).

    The caller URL-encodes it into the query string.
    """
    message = f"{timestamp_ms}\n{secret}".encode()
    digest = hmac.new(secret.encode(), message, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def signed(
    url: str, body: dict[str, Any], fmt: str, secret: str | None, *, now: float | None = None
) -> tuple[str, dict[str, Any]]:
    """The URL and body to post, signed for Feishu or DingTalk when ``secret`` is set.

    Other formats (and no secret) come back unchanged. ``now``: Unix seconds
    (default: the current time).
    """
    if not secret or fmt not in SIGNED_FORMATS:
        return url, body
    now = time.time() if now is None else now
    if fmt == "feishu":
        timestamp = int(now)
        return url, {"timestamp": str(timestamp), "sign": feishu_sign(secret, timestamp), **body}
    timestamp_ms = int(now * 1000)
    query = urllib.parse.urlencode(
        {"timestamp": timestamp_ms, "sign": dingtalk_sign(secret, timestamp_ms)}
    )
    return f"{url}{'&' if '?' in url else '?'}{query}", body


def service_error(fmt: str, answer: Any) -> tuple[int, str] | None:
    """The error a Feishu, DingTalk or WeCom robot reported in a 2xx JSON answer, or None.

    Feishu answers ``{"code": 0, "msg": "success"}`` (older bots ``{"StatusCode": 0}``),
    DingTalk and WeCom ``{"errcode": 0, "errmsg": "ok"}``.
    """
    if fmt not in _RATE_LIMITED or not isinstance(answer, dict):
        return None
    for key in ("code", "StatusCode", "errcode"):
        code = answer.get(key)
        if isinstance(code, int) and code != 0:
            message = answer.get("msg") or answer.get("StatusMessage") or answer.get("errmsg")
            return code, str(message or "")
    return None


class WebhookNotifier:
    """Posts alerts to one URL from a background task (start/stop in the app lifespan)."""

    def __init__(
        self,
        url: str,
        *,
        fmt: str = "json",
        secret: str | None = None,
        min_severity: Severity = Severity.WARNING,
        attempts: int = 5,
        first_delay: float = FIRST_DELAY,
        max_delay: float = MAX_DELAY,
        timeout: float = TIMEOUT,
        queue_size: int = QUEUE_SIZE,
    ) -> None:
        self.url = url
        self.fmt = fmt
        self.secret = secret
        self.min_severity = min_severity
        self.attempts = attempts
        self.first_delay = first_delay
        self.max_delay = max_delay
        self.timeout = timeout
        self.queue_size = queue_size
        #: Alerts delivered, and given up after every attempt (a test and debugging aid).
        self.delivered = 0
        self.failed = 0
        self._queue: asyncio.Queue[JobEvent] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> WebhookNotifier | None:
        """The notifier ``settings`` ask for; None without ``webhook_url``."""
        if not settings.webhook_url:
            return None
        return cls(
            settings.webhook_url,
            fmt=settings.webhook_format,
            secret=settings.webhook_secret,
            min_severity=Severity(settings.webhook_min_severity),
            attempts=settings.webhook_attempts,
        )

    async def start(self) -> None:
        """Start the worker on the running loop."""
        self._loop = asyncio.get_running_loop()
        self._queue = asyncio.Queue(self.queue_size)
        self._task = asyncio.create_task(self._run(), name="trainvis-webhooks")

    async def stop(self, *, drain: float = DRAIN_TIMEOUT) -> None:
        """Let queued alerts go out (up to ``drain`` seconds), then stop the worker."""
        if self._queue is not None and self._task is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._queue.join(), drain)
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self._task = None

    def wants(self, event: JobEvent) -> bool:
        """Detector findings at or above the minimum severity (notes are never sent)."""
        return event.kind is not EventKind.NOTE and event.severity.rank >= self.min_severity.rank

    def notify(self, event: JobEvent) -> None:
        """Queue ``event`` for delivery; never blocks (drops it when the queue is full)."""
        if not self.wants(event) or self._queue is None or self._loop is None:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is not self._loop:  # called from a worker thread: hop onto the loop
            self._loop.call_soon_threadsafe(self._enqueue, event)
        else:
            self._enqueue(event)

    def _enqueue(self, event: JobEvent) -> None:
        assert self._queue is not None
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            log.warning("webhook queue full: dropped alert %s of job %s", event.id, event.job_id)

    async def _run(self) -> None:
        assert self._queue is not None
        headers = {"User-Agent": f"trainvis/{__version__}"}
        async with httpx.AsyncClient(timeout=self.timeout, headers=headers) as client:
            while True:
                event = await self._queue.get()
                try:
                    await self._deliver(client, event)
                finally:
                    self._queue.task_done()

    async def _deliver(self, client: httpx.AsyncClient, event: JobEvent) -> None:
        """POST ``event``; transient failures are retried with doubling delays."""
        body = payload(event, self.fmt)
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.attempts),
            wait=wait_exponential(multiplier=self.first_delay, max=self.max_delay),
            retry=retry_if_exception_type(_Transient),
            before_sleep=_log_retry,
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    await self._post(client, body)
        except (_Transient, _Rejected) as exc:
            self.failed += 1
            log.warning("webhook gave up on alert %s of job %s: %s", event.id, event.job_id, exc)
            return
        self.delivered += 1

    async def _post(self, client: httpx.AsyncClient, body: dict[str, Any]) -> None:
        """Send once (signed afresh when a secret is set).

        Raises:
            _Transient: a network error, 408, 429, 5xx or a robot's rate-limit code
                (worth another try).
            _Rejected: any other error status or robot error code (refused for good).
        """
        url, body = signed(self.url, body, self.fmt, self.secret)
        try:
            response = await client.post(url, json=body)
        except httpx.HTTPError as exc:
            raise _Transient(f"{type(exc).__name__}: {exc}") from None
        if response.is_success:
            self._check_answer(response)
            return
        status = response.status_code
        if status == 429 or status >= 500 or status == 408:
            raise _Transient(f"HTTP {status}")
        raise _Rejected(f"rejected with HTTP {status}")

    def _check_answer(self, response: httpx.Response) -> None:
        """Raise when a chat robot answered 200 with an error code in the body."""
        if self.fmt not in _RATE_LIMITED:
            return
        try:
            answer = response.json()
        except ValueError:
            return
        error = service_error(self.fmt, answer)
        if error is None:
            return
        code, message = error
        if code in _RATE_LIMITED[self.fmt]:
            raise _Transient(f"{self.fmt} rate limit (code {code}: {message})")
        raise _Rejected(f"{self.fmt} refused it (code {code}: {message})")


class _Transient(Exception):
    """A delivery failure worth retrying."""


class _Rejected(Exception):
    """A delivery the receiver refused for good (no retry)."""


def _log_retry(state: RetryCallState) -> None:
    outcome = state.outcome
    problem = outcome.exception() if outcome is not None else None
    delay = state.next_action.sleep if state.next_action is not None else 0.0
    log.info(
        "webhook attempt %d failed (%s); retrying in %.1f s", state.attempt_number, problem, delay
    )
