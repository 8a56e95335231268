"""Webhook notifications: a receiver on loopback started by the test gets the alerts.

The receiver is a tiny ``http.server`` in a thread that answers with scripted
statuses (500, 500, then 200…) and records every body it got.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from trainvis.config import Settings
from trainvis.events import EventKind, JobEvent, Severity
from trainvis.health.webhooks import WebhookNotifier, payload


class Receiver:
    """An HTTP endpoint on 127.0.0.1 answering ``statuses`` in turn (then 200)."""

    def __init__(self, statuses: list[int] | None = None) -> None:
        self.statuses = list(statuses or [])
        self.bodies: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                receiver.bodies.append(json.loads(self.rfile.read(length)))
                receiver.headers.append(dict(self.headers))
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as started:
        yield started


def alert(
    kind: EventKind = EventKind.NONFINITE, severity: Severity = Severity.CRITICAL
) -> JobEvent:
    return JobEvent(
        id=7,
        job_id="job-001",
        kind=kind,
        step=500,
        message="train_loss is NaN at step 500 (its first non-finite value)",
        severity=severity,
        timestamp=1_700_000_000.0,
        metric="train_loss",
        value=float("nan"),
    )


async def deliver(notifier: WebhookNotifier, *events: JobEvent, until: int = 1) -> None:
    """Start the notifier, queue ``events``, wait until ``until`` were delivered or failed."""
    await notifier.start()
    try:
        for event in events:
            notifier.notify(event)
        deadline = time.monotonic() + 10
        while notifier.delivered + notifier.failed < until:
            assert time.monotonic() < deadline, "the webhook was not delivered in time"
            await asyncio.sleep(0.01)
    finally:
        await notifier.stop()


def test_json_payload_carries_the_event(receiver: Receiver) -> None:
    asyncio.run(deliver(WebhookNotifier(receiver.url), alert()))
    [body] = receiver.bodies
    assert body == {
        "type": "trainvis.alert",
        "text": "🚨 trainvis critical: job job-001: "
        "train_loss is NaN at step 500 (its first non-finite value)",
        "event": alert().to_wire(),
    }
    assert body["event"]["value"] == "NaN"
    assert receiver.headers[0]["Content-Type"] == "application/json"
    assert receiver.headers[0]["User-Agent"].startswith("trainvis/")


def test_slack_payload_is_just_text(receiver: Receiver) -> None:
    asyncio.run(deliver(WebhookNotifier(receiver.url, fmt="slack"), alert()))
    assert receiver.bodies == [{"text": payload(alert(), "slack")["text"]}]
    assert "job-001" in receiver.bodies[0]["text"] and "NaN" in receiver.bodies[0]["text"]


def test_a_receiver_that_fails_twice_gets_it_on_the_third_try() -> None:
    with Receiver([500, 503]) as flaky:
        notifier = WebhookNotifier(flaky.url, first_delay=0.05)
        started = time.monotonic()
        asyncio.run(deliver(notifier, alert()))
        elapsed = time.monotonic() - started
    assert len(flaky.bodies) == 3 and flaky.bodies[0] == flaky.bodies[2]
    assert notifier.delivered == 1 and notifier.failed == 0
    assert elapsed >= 0.05 + 0.1  # backoff doubled between the tries


def test_it_gives_up_after_the_attempts_and_does_not_retry_a_rejection() -> None:
    with Receiver([500] * 10) as down:
        notifier = WebhookNotifier(down.url, attempts=3, first_delay=0.01)
        asyncio.run(deliver(notifier, alert()))
        assert len(down.bodies) == 3 and notifier.failed == 1
    with Receiver([400]) as strict:
        notifier = WebhookNotifier(strict.url, first_delay=0.01)
        asyncio.run(deliver(notifier, alert()))
        assert len(strict.bodies) == 1 and notifier.failed == 1


def test_an_unreachable_receiver_is_retried_then_given_up() -> None:
    with Receiver() as gone:
        url = gone.url
    notifier = WebhookNotifier(url, attempts=2, first_delay=0.01, timeout=1.0)
    asyncio.run(deliver(notifier, alert()))
    assert notifier.failed == 1 and notifier.delivered == 0


def test_notes_and_less_severe_events_are_not_sent(receiver: Receiver) -> None:
    notifier = WebhookNotifier(receiver.url, min_severity=Severity.WARNING)
    note = alert(EventKind.NOTE, Severity.CRITICAL)
    plateau = alert(EventKind.PLATEAU, Severity.INFO)
    spike = alert(EventKind.SPIKE, Severity.WARNING)
    asyncio.run(deliver(notifier, note, plateau, spike))
    assert [body["event"]["kind"] for body in receiver.bodies] == ["spike"]


def test_notify_never_blocks_and_drops_beyond_the_queue() -> None:
    async def main() -> None:
        with Receiver() as slow:
            notifier = WebhookNotifier(slow.url, queue_size=2)
            await notifier.start()
            notifier._task.cancel()  # type: ignore[union-attr]  # nobody drains the queue
            started = time.perf_counter()
            for _ in range(100):
                notifier.notify(alert())
            assert time.perf_counter() - started < 0.1
            assert notifier._queue is not None and notifier._queue.qsize() == 2
            await notifier.stop(drain=0.01)

    asyncio.run(main())


def test_notify_from_a_worker_thread(receiver: Receiver) -> None:
    async def main() -> None:
        notifier = WebhookNotifier(receiver.url)
        await notifier.start()
        try:
            await asyncio.to_thread(notifier.notify, alert())
            deadline = time.monotonic() + 10
            while not notifier.delivered:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.01)
        finally:
            await notifier.stop()

    asyncio.run(main())
    assert len(receiver.bodies) == 1


def test_from_settings() -> None:
    assert WebhookNotifier.from_settings(Settings()) is None
    notifier = WebhookNotifier.from_settings(
        Settings(webhook_url="http://127.0.0.1:9/x", webhook_format="slack", webhook_attempts=2)
    )
    assert notifier is not None and notifier.fmt == "slack" and notifier.attempts == 2
    with pytest.raises(ValueError, match="webhook_format"):
        Settings(webhook_format="xml")
    with pytest.raises(ValueError, match="webhook_min_severity"):
        Settings.from_env({"TRAINVIS_WEBHOOK_MIN_SEVERITY": "loud"})


def test_serve_flags_map_onto_the_settings() -> None:
    from trainvis.cli import build_parser

    args = build_parser().parse_args(
        [
            "serve",
            "--webhook-url",
            "http://hooks.local/x",
            "--webhook-format",
            "slack",
            "--no-health",
        ]
    )
    assert (args.webhook_url, args.webhook_format, args.health) == (
        "http://hooks.local/x",
        "slack",
        False,
    )
    assert build_parser().parse_args(["serve"]).health is None  # the environment decides
