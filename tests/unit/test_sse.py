"""Byte-for-byte tests of the SSE encoder (after sse-starlette's tests/test_event.py)."""

from __future__ import annotations

import pytest

from trainvis.models import JobStatus, StatusChange, TrainingJob
from trainvis.realtime.sse import (
    HEARTBEAT,
    deleted_event,
    encode_event,
    encode_json_event,
    metrics_event,
    retry_field,
    snapshot_event,
    status_event,
)


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"data": "hello"}, b"data: hello\n\n"),
        ({"data": ""}, b"data: \n\n"),
        ({"data": b"raw bytes"}, b"data: raw bytes\n\n"),
        ({"data": "a\nb"}, b"data: a\ndata: b\n\n"),
        ({"data": "a\r\nb\rc\nd"}, b"data: a\ndata: b\ndata: c\ndata: d\n\n"),
        ({"data": "trailing\n"}, b"data: trailing\ndata: \n\n"),
        ({"data": "\n"}, b"data: \ndata: \n\n"),
        ({"data": "x", "event": "metrics"}, b"event: metrics\ndata: x\n\n"),
        ({"data": "x", "event": "me\ntr\r\nics\r"}, b"event: metrics\ndata: x\n\n"),
        ({"data": "x", "id": 42}, b"id: 42\ndata: x\n\n"),
        ({"data": "x", "id": "4\n2\r"}, b"id: 42\ndata: x\n\n"),
        ({"data": "x", "id": ""}, b"id: \ndata: x\n\n"),
        ({"retry": 3000}, b"retry: 3000\n\n"),
        ({"comment": "heartbeat"}, b": heartbeat\n\n"),
        ({"comment": "two\nlines"}, b": two\n: lines\n\n"),
        (
            {"data": "d1\nd2", "event": "e", "id": 7, "retry": 10, "comment": "c"},
            b": c\nevent: e\nid: 7\nretry: 10\ndata: d1\ndata: d2\n\n",
        ),
        ({"data": "héllo ✓"}, "data: héllo ✓\n\n".encode()),
        ({}, b"\n"),
    ],
)
def test_encode_event_bytes(kwargs: dict[str, object], expected: bytes) -> None:
    assert encode_event(**kwargs) == expected  # type: ignore[arg-type]


def test_encoded_event_cannot_inject_fields() -> None:
    payload = encode_event("ok\n\nevent: deleted\ndata: pwned", event="status\n\ndata: x")
    lines = payload.split(b"\n")
    assert lines[0] == b"event: status" + b"data: x"
    assert all(line.startswith((b"data: ", b"event: ")) for line in lines[:-2])
    assert payload.endswith(b"\n\n") and payload.count(b"\n\n") == 1


@pytest.mark.parametrize("event", [None, "metrics"])
@pytest.mark.parametrize("id_", [None, 5])
def test_json_fast_path_matches_generic_encoder(event: str | None, id_: int | None) -> None:
    payload = b'{"a":"b\\nc","n":1}'
    assert encode_json_event(payload, event=event, id=id_) == encode_event(
        payload, event=event, id=id_
    )


def test_metrics_event_carries_seq_and_row() -> None:
    row = {"step": 3, "timestamp": "2024-01-01T00:00:00.000Z", "train_loss": "NaN", "lr": 0.1}
    assert metrics_event(12, row) == (
        b"event: metrics\nid: 12\n"
        b'data: {"step":3,"timestamp":"2024-01-01T00:00:00.000Z","train_loss":"NaN","lr":0.1}\n\n'
    )


def test_status_event_bytes() -> None:
    change = StatusChange("job-001", JobStatus.COMPLETED, JobStatus.RUNNING, "done\nok", 0.5)
    assert status_event(change) == (
        b"event: status\n"
        b'data: {"job_id":"job-001","status":"completed","previous_status":"running",'
        b'"message":"done\\nok","timestamp":"1970-01-01T00:00:00.500Z"}\n\n'
    )


def test_deleted_event_bytes() -> None:
    assert deleted_event("job-7") == b'event: deleted\ndata: {"job_id":"job-7"}\n\n'


def test_snapshot_is_unnamed_and_has_no_id() -> None:
    job = TrainingJob(id="job-001", name="multi\nline", status=JobStatus.RUNNING, last_seq=9)
    payload = snapshot_event(job)
    assert payload.startswith(b'data: {"type":"snapshot","job":{"id":"job-001"')
    assert b"\nid:" not in payload and not payload.startswith((b"event:", b"id:"))
    assert payload.endswith(b"}}\n\n") and payload.count(b"\n") == 2


def test_snapshot_names_the_resume_point_when_given() -> None:
    """Issue 17: ``last_id`` lets a client that has seen no row yet resume exactly."""
    job = TrainingJob(id="job-001", name="x", last_seq=9)
    assert b'"last_id"' not in snapshot_event(job)
    payload = snapshot_event(job, last_id=9)
    assert payload.endswith(b'},"last_id":9}\n\n') and b"\nid:" not in payload


def test_retry_and_heartbeat() -> None:
    assert retry_field(2500) == b"retry: 2500\n\n"
    assert HEARTBEAT.startswith(b":") and HEARTBEAT.endswith(b"\n\n")
