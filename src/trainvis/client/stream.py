"""Following a job's live stream from the client side (``trainvis tail``).

:class:`EventParser` reads ``text/event-stream`` lines as the WHATWG
EventSource does (``data:`` lines joined with ``\\n``, comments and unknown
fields ignored, ``retry:`` remembered). :class:`JobFollower` connects to
``GET …/training/{job}/stream`` with ``httpx`` and yields what happened, in
order, as typed items; when the connection drops it waits (the server's
``retry:`` advice, doubling while the server stays away, up to ``max_delay``)
and reconnects with ``Last-Event-ID`` set to the last row it saw, so the server
replays every row stored meanwhile: nothing is lost, nothing repeated. Before
the first row, the resume point is the snapshot's ``last_id`` (a server without
it: 0 for a job with no rows yet, else only live rows after a reconnect).
Alerts are not replayed by the server: after every snapshot the follower reads
the job's events list and yields those it has not seen (by id).

This module imports nothing from the server side (the SDK installs without it).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from trainvis.client.http import (
    API_PREFIX,
    USER_AGENT,
    ApiClient,
    ApiError,
    ServerUnavailable,
    _error_from,
)

#: Seconds without a byte (heartbeats included) after which a connection is dead.
READ_TIMEOUT = 45.0
#: Longest wait between two reconnection attempts.
MAX_DELAY = 30.0
#: Wait before the first reconnect when the server has not advised one.
DEFAULT_DELAY = 1.0
#: Events read back after a reconnect to find the alerts missed meanwhile.
ALERT_CATCH_UP = 100


@dataclass(frozen=True)
class ServerEvent:
    """One dispatched event: ``event`` (``message`` when unnamed), ``data``, ``id``."""

    event: str
    data: str
    id: str | None = None

    def json(self) -> Any:
        """``data`` decoded as JSON (the server's ``NaN`` tokens included)."""
        return json.loads(self.data)


@dataclass
class EventParser:
    """Turns stream lines into :class:`ServerEvent` s (feed lines without their newline)."""

    retry_ms: int | None = None
    _event: str = ""
    _data: list[str] = field(default_factory=list)
    _id: str | None = None

    def feed(self, line: str) -> ServerEvent | None:
        """Take one line; returns the event a blank line dispatches, else None."""
        if line == "":
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:
            self._id = value
        elif name == "retry" and value.isdigit():
            self.retry_ms = int(value)
        return None

    def _dispatch(self) -> ServerEvent | None:
        event, data, ident = self._event or "message", self._data, self._id
        self._event, self._data, self._id = "", [], None
        if not data:
            return None
        return ServerEvent(event, "\n".join(data), ident)


# ----------------------------------------------------------------- what a follower yields


@dataclass(frozen=True)
class Snapshot:
    """The job as it is at (re)connection; ``reconnected`` is False the first time."""

    job: dict[str, Any]
    reconnected: bool


@dataclass(frozen=True)
class Row:
    """One stored metrics row and its stream id."""

    seq: int
    row: dict[str, Any]


@dataclass(frozen=True)
class StatusChange:
    """``{job_id, status, previous_status, message, timestamp}``."""

    change: dict[str, Any]


@dataclass(frozen=True)
class Alert:
    """A job event (health finding or note) as ``GET …/events`` lists it."""

    event: dict[str, Any]
    missed: bool = False


@dataclass(frozen=True)
class Deleted:
    """The job was deleted; the follower stops."""

    job_id: str


@dataclass(frozen=True)
class Disconnected:
    """The connection dropped (``reason``); the next attempt is in ``delay`` seconds."""

    reason: str
    delay: float


Item = Snapshot | Row | StatusChange | Alert | Deleted | Disconnected


class _Dropped(Exception):
    """The connection ended or failed; worth reconnecting (``retry_after`` in seconds)."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


class JobFollower:
    """Follows one job's stream, reconnecting and resuming until closed or deleted.

    Args:
        url: the server root (``http://host:8000``).
        job_id: the job to follow.
        token: bearer token (a read token where reads are protected).
        since: start after this stream id (0: from the first row); None: new rows only.
        read_timeout: seconds of silence (no heartbeat either) that mean a dead connection.
        max_delay: longest wait between reconnection attempts.
        sleep: how to wait (tests may pass a faster one).
    """

    def __init__(
        self,
        url: str,
        job_id: str,
        *,
        token: str | None = None,
        since: int | None = None,
        read_timeout: float = READ_TIMEOUT,
        max_delay: float = MAX_DELAY,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.api = ApiClient(url, token=token, transport=transport)
        self.job_id = job_id
        self.last_id = since
        self.max_delay = max_delay
        self._sleep = sleep
        self._retry_ms: int | None = None
        #: Alerts up to this id predate the follower; later ones are shown once each.
        self._alert_floor: int | None = None
        self._alerts_seen: set[int] = set()
        headers = {"User-Agent": USER_AGENT, "Accept": "text/event-stream"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._http = httpx.Client(
            base_url=self.api.url + API_PREFIX,
            headers=headers,
            timeout=httpx.Timeout(10.0, read=read_timeout),
            transport=transport,
        )

    def close(self) -> None:
        """Close both connection pools."""
        self._http.close()
        self.api.close()

    def items(self) -> Iterator[Item]:
        """Everything that happens to the job, in order, across reconnections.

        Ends after :class:`Deleted`. The first connection's failure raises:
        :class:`~trainvis.client.http.ServerUnavailable` (unreachable) or
        :class:`~trainvis.client.http.ApiError` (unknown job, refused token). Later
        ones are retried for ever (a 401/403 still raises).
        """
        failures = 0
        connected_once = False
        newest = self.api.list_events(self.job_id, limit=1)  # 404 for an unknown job
        self._alert_floor = max((_event_id(item) for item in newest), default=0)
        while True:
            try:
                for item in self._connection(reconnected=connected_once):
                    if isinstance(item, Snapshot):
                        connected_once, failures = True, 0
                    yield item
                    if isinstance(item, Deleted):
                        return
                reason, retry_after = "the server ended the stream", None
            except _Dropped as exc:
                if not connected_once:
                    raise ServerUnavailable(str(exc)) from None
                reason, retry_after = str(exc), exc.retry_after
            except ApiError as exc:
                if exc.status_code == 404 and connected_once:
                    yield Deleted(self.job_id)
                    return
                raise
            delay = self._delay(failures, retry_after)
            failures += 1
            yield Disconnected(reason, delay)
            self._sleep(delay)

    def _delay(self, failures: int, retry_after: float | None) -> float:
        first = self._retry_ms / 1000 if self._retry_ms is not None else DEFAULT_DELAY
        delay = min(self.max_delay, max(first, 0.05) * 2.0**failures)
        return float(max(delay, min(retry_after or 0.0, self.max_delay)))

    def _connection(self, *, reconnected: bool) -> Iterator[Item]:
        """One connection: the snapshot, alerts not shown yet, then replayed and live events."""
        headers = {} if self.last_id is None else {"Last-Event-ID": str(self.last_id)}
        parser = EventParser()
        try:
            with self._http.stream(
                "GET", f"/training/{self.job_id}/stream", headers=headers
            ) as response:
                if response.status_code != 200:
                    response.read()
                    _raise_for(response)
                for line in response.iter_lines():
                    event = parser.feed(line)
                    if parser.retry_ms is not None:
                        self._retry_ms = parser.retry_ms
                    if event is None:
                        continue
                    yield from self._handle(event, reconnected=reconnected)
        except httpx.TransportError as exc:
            reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            raise _Dropped(reason) from None
        except httpx.DecodingError as exc:
            raise _Dropped(f"undecodable stream: {exc}") from None

    def _handle(self, event: ServerEvent, *, reconnected: bool) -> Iterator[Item]:
        payload = _decode(event)
        if event.event == "metrics" and isinstance(payload, dict):
            seq = int(event.id) if event.id and event.id.isdigit() else None
            if seq is not None and self.last_id is not None and seq <= self.last_id:
                return  # already shown (ids only grow within a job)
            if seq is not None:
                self.last_id = seq
            yield Row(seq or 0, payload)
        elif event.event == "message" and isinstance(payload, dict):
            if payload.get("type") == "snapshot" and isinstance(payload.get("job"), dict):
                if self.last_id is None:
                    self.last_id = _resume_point(payload)
                yield Snapshot(payload["job"], reconnected)
                yield from self._catch_up_alerts(missed=reconnected)
        elif event.event == "status" and isinstance(payload, dict):
            yield StatusChange(payload)
        elif event.event == "alert" and isinstance(payload, dict):
            if self._new_alert(payload):
                yield Alert(payload)
        elif event.event == "deleted":
            yield Deleted(self.job_id)

    def _catch_up_alerts(self, *, missed: bool) -> Iterator[Item]:
        """The job's alerts stored since the follower started and not yet shown."""
        try:
            events = self.api.list_events(self.job_id, limit=ALERT_CATCH_UP)
        except ServerUnavailable as exc:
            raise _Dropped(f"reading the events list failed: {exc}") from None
        for item in sorted(events, key=_event_id):
            if self._new_alert(item):
                yield Alert(item, missed=missed)

    def _new_alert(self, event: dict[str, Any]) -> bool:
        """True the first time an alert newer than the follower's start is seen."""
        ident = _event_id(event)
        if ident <= (self._alert_floor or 0) or ident in self._alerts_seen:
            return False
        self._alerts_seen.add(ident)
        return True


def _event_id(event: dict[str, Any]) -> int:
    ident = event.get("id")
    return ident if isinstance(ident, int) else 0


def _resume_point(snapshot: dict[str, Any]) -> int | None:
    """Where rows of a connection start: the snapshot's ``last_id`` (0 for an empty job)."""
    last_id = snapshot.get("last_id")
    if isinstance(last_id, int):
        return last_id
    job = snapshot.get("job") or {}
    return 0 if not job.get("point_count") else None


def _decode(event: ServerEvent) -> Any:
    try:
        return event.json()
    except ValueError:
        return None


def _raise_for(response: httpx.Response) -> None:
    """A non-200 answer to the stream request: retry 5xx/429, raise the rest."""
    if response.status_code >= 500 or response.status_code == 429:
        after = response.headers.get("Retry-After", "")
        raise _Dropped(f"HTTP {response.status_code}", float(after) if after.isdigit() else None)
    error = _error_from(response)
    if isinstance(error, ApiError):
        raise error
    raise _Dropped(str(error))
