"""Webhook notifications: a receiver on loopback started by the test gets the alerts.

The receiver is a tiny ``http.server`` in a thread that answers with scripted
statuses (500, 500, then 200…) and records every body it got.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import hmac
import json
import threading
import time
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from trainvis.cli import build_parser
from trainvis.config import Settings
from trainvis.events import EventKind, JobEvent, Severity
from trainvis.health.webhooks import (
    WECOM_TEXT_BYTES,
    WebhookNotifier,
    alert_text,
    dingtalk_sign,
    payload,
    service_error,
    signed,
)


class Receiver:
    """An HTTP endpoint on 127.0.0.1 answering ``statuses`` in turn (then 200).

    ``answers``: JSON bodies sent with those answers in turn (then none), as a
    chat robot answers 200 with an error code in the body.
    """

    def __init__(
        self, statuses: list[int] | None = None, answers: list[dict[str, Any]] | None = None
    ) -> None:
        self.statuses = list(statuses or [])
        self.answers = list(answers or [])
        self.bodies: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.paths: list[str] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                receiver.bodies.append(json.loads(self.rfile.read(length)))
                receiver.headers.append(dict(self.headers))
                receiver.paths.append(self.path)
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                answer = json.dumps(receiver.answers.pop(0)).encode() if receiver.answers else b""
                self.send_response(status)
                self.send_header("Content-Length", str(len(answer)))
                if answer:
                    self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(answer)

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


# ------------------------------------------------------------ Feishu, DingTalk, WeCom (issue 17)
#
# Each receiver checks a request as the service documents it: the body's shape,
# and the signature recomputed from the shared secret the way the service's own
# check does it (Feishu: HMAC-SHA256 keyed with "timestamp\nsecret" over an empty
# message, in the body; DingTalk: HMAC-SHA256 keyed with the secret over
# "timestamp\nsecret", URL-encoded into the query; both refuse a timestamp more
# than an hour away).

SECRET = "SEC0123456789abcdef-不要公开"


def feishu_accepts(body: dict[str, Any], secret: str) -> bool:
    """Feishu's signature check of a custom bot request (seconds, key = "ts\\nsecret")."""
    timestamp = body["timestamp"]
    if abs(int(timestamp) - time.time()) > 3600:
        return False
    key = f"{timestamp}\n{secret}".encode()
    expected = base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode()
    return hmac.compare_digest(expected, body["sign"])


def dingtalk_accepts(path: str, secret: str) -> bool:
    """DingTalk's signature check of a robot request (milliseconds, in the query)."""
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(path).query, strict_parsing=True)
    [timestamp], [sign] = query["timestamp"], query["sign"]
    if abs(int(timestamp) / 1000 - time.time()) > 3600:
        return False
    message = f"{timestamp}\n{secret}".encode()
    digest = hmac.new(secret.encode(), message, hashlib.sha256).digest()
    return hmac.compare_digest(base64.b64encode(digest).decode(), sign)


def test_feishu_payload_is_a_signed_text_message(receiver: Receiver) -> None:
    """Issue 17: a Feishu/Lark custom bot gets msg_type text, signed when a secret is set."""
    asyncio.run(deliver(WebhookNotifier(receiver.url, fmt="feishu", secret=SECRET), alert()))
    [body] = receiver.bodies
    assert set(body) == {"timestamp", "sign", "msg_type", "content"}
    assert body["msg_type"] == "text" and body["content"] == {"text": alert_text(alert())}
    assert isinstance(body["timestamp"], str) and body["timestamp"].isdigit()
    assert feishu_accepts(body, SECRET)
    assert not feishu_accepts(body, SECRET + "x")
    assert receiver.headers[0]["Content-Type"] == "application/json"


def test_feishu_without_a_secret_is_unsigned(receiver: Receiver) -> None:
    asyncio.run(deliver(WebhookNotifier(receiver.url, fmt="feishu"), alert()))
    assert receiver.bodies == [{"msg_type": "text", "content": {"text": alert_text(alert())}}]


def test_dingtalk_payload_is_text_signed_in_the_query() -> None:
    """Issue 17: a DingTalk robot gets msgtype text; timestamp and sign join its access_token."""
    with Receiver() as robot:
        url = robot.url + "?access_token=abc123"
        asyncio.run(deliver(WebhookNotifier(url, fmt="dingtalk", secret=SECRET), alert()))
    [body] = robot.bodies
    assert body == {"msgtype": "text", "text": {"content": alert_text(alert())}}
    [path] = robot.paths
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(path).query)
    assert query["access_token"] == ["abc123"] and len(query["timestamp"][0]) == 13
    assert dingtalk_accepts(path, SECRET)
    assert not dingtalk_accepts(path, "SECother")


def test_dingtalk_sign_is_url_encoded() -> None:
    """The base64 ``+``, ``/`` and ``=`` travel percent-encoded (a bare ``+`` reads as a space)."""
    body = payload(alert(), "dingtalk")
    for second in range(1_700_000_000, 1_700_000_100):
        url, same = signed("http://robot/send?access_token=t", body, "dingtalk", SECRET, now=second)
        sign = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)["sign"][0]
        if "+" in sign:
            break
    else:
        pytest.fail("no signature with a '+' in 100 tries")
    raw = urllib.parse.urlsplit(url).query
    assert same is body and "%2B" in raw and "+" not in raw
    assert sign == dingtalk_sign(SECRET, second * 1000)


def test_wecom_payload_is_text_cut_to_its_limit(receiver: Receiver) -> None:
    """Issue 17: a WeCom group robot gets msgtype text (content at most 2,048 UTF-8 bytes)."""
    asyncio.run(deliver(WebhookNotifier(receiver.url, fmt="wecom"), alert()))
    assert receiver.bodies == [{"msgtype": "text", "text": {"content": alert_text(alert())}}]
    long = dataclasses.replace(alert(), message="损失发散 " * 400)  # ~13 bytes a word: too long
    content = payload(long, "wecom")["text"]["content"]
    assert len(content.encode()) <= WECOM_TEXT_BYTES and content.endswith("…")
    assert content.startswith("🚨 trainvis critical: job job-001: 损失发散")


def test_a_robot_error_code_in_a_200_answer_is_a_failure() -> None:
    """A refused signature (DingTalk 310000) is given up at once; a rate limit is retried."""
    refusal = {"errcode": 310000, "errmsg": "sign not match"}
    with Receiver(answers=[refusal]) as robot:
        notifier = WebhookNotifier(robot.url, fmt="dingtalk", secret=SECRET, first_delay=0.01)
        asyncio.run(deliver(notifier, alert()))
    assert len(robot.bodies) == 1 and notifier.failed == 1 and notifier.delivered == 0

    busy = {"errcode": 45009, "errmsg": "api freq out of limit"}
    with Receiver(answers=[busy, {"errcode": 0, "errmsg": "ok"}]) as robot:
        notifier = WebhookNotifier(robot.url, fmt="wecom", first_delay=0.01)
        asyncio.run(deliver(notifier, alert()))
    assert len(robot.bodies) == 2 and notifier.delivered == 1

    feishu = {"code": 19021, "msg": "sign match fail or timestamp is not within one hour"}
    with Receiver(answers=[feishu]) as robot:
        notifier = WebhookNotifier(robot.url, fmt="feishu", secret="wrong", first_delay=0.01)
        asyncio.run(deliver(notifier, alert()))
    assert notifier.failed == 1
    assert service_error("feishu", {"StatusCode": 0, "StatusMessage": "success"}) is None
    assert service_error("slack", {"errcode": 1}) is None  # only the robots answer this way


def test_robot_formats_from_the_environment(receiver: Receiver) -> None:
    """The format and secret variables reach the notifier; a secret needs a signed format."""
    settings = Settings.from_env(
        {
            "TRAINVIS_WEBHOOK_URL": receiver.url,
            "TRAINVIS_WEBHOOK_FORMAT": "feishu",
            "TRAINVIS_WEBHOOK_SECRET": SECRET,
        }
    )
    notifier = WebhookNotifier.from_settings(settings)
    assert notifier is not None and notifier.secret == SECRET
    asyncio.run(deliver(notifier, alert()))
    assert feishu_accepts(receiver.bodies[0], SECRET)
    for fmt in ("dingtalk", "wecom"):
        assert Settings(webhook_format=fmt).webhook_format == fmt
    with pytest.raises(ValueError, match="webhook_secret"):
        Settings.from_env({"TRAINVIS_WEBHOOK_SECRET": SECRET})  # json: nothing would sign
    with pytest.raises(ValueError, match="webhook_secret"):
        Settings.from_env({}, webhook_format="wecom", webhook_secret=SECRET)
    args = build_parser().parse_args(
        ["serve", "--webhook-format", "dingtalk", "--webhook-secret", SECRET]
    )
    assert (args.webhook_format, args.webhook_secret) == ("dingtalk", SECRET)
