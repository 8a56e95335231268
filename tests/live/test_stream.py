"""The SSE stream against a real uvicorn with a real HTTP client (issue 4)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import API, ServerProcess
from tests.live.conftest import Event, ThreadedServer, async_client, open_stream

pytestmark = pytest.mark.live

Run = Callable[[Callable[[], Coroutine[Any, Any, None]]], None]


def run(main: Callable[[], Coroutine[Any, Any, None]], timeout: float = 60) -> None:
    asyncio.run(asyncio.wait_for(main(), timeout))


async def new_job(http: httpx.AsyncClient, **body: Any) -> str:
    response = await http.post(f"{API}/training/jobs", json={"name": "stream", **body})
    assert response.status_code == 201, response.text
    return str(response.json()["data"]["id"])


async def post_rows(http: httpx.AsyncClient, job_id: str, rows: Any) -> None:
    response = await http.post(  # Python's json: NaN goes out as the bare token
        f"{API}/training/{job_id}/metrics",
        content=json.dumps(rows),
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 201, response.text


async def set_status(
    http: httpx.AsyncClient, job_id: str, status: str, message: str | None = None
) -> None:
    response = await http.put(
        f"{API}/training/jobs/{job_id}/status", json={"status": status, "message": message}
    )
    assert response.status_code == 200, response.text


async def history(http: httpx.AsyncClient, job_id: str) -> list[dict[str, Any]]:
    response = await http.get(f"{API}/training/{job_id}/metrics/history")
    return list(response.json()["data"])


def ids(events: list[Event]) -> list[int]:
    return [int(event.id or -1) for event in events]


def test_snapshot_first_then_rows_posted_by_another_client(live_server: ServerProcess) -> None:
    async def main() -> None:
        async with async_client(live_server.url) as http, async_client(live_server.url) as writer:
            job = await new_job(http, total_steps=100)
            await post_rows(writer, job, {"step": 0, "train_loss": 1.0})
            async with open_stream(http, job) as stream:
                headers = stream.response.headers
                assert headers["content-type"].startswith("text/event-stream")
                assert headers["cache-control"] == "no-store"
                assert headers["x-accel-buffering"] == "no"
                assert "content-length" not in headers
                first = await stream.next()
                assert stream.raw[0].startswith("retry: ") and stream.retry == 3000
                assert first.event == "message" and first.id is None
                assert first.json()["type"] == "snapshot"
                assert first.json()["job"]["id"] == job
                assert first.json()["job"]["current_step"] == 0

                rows = [
                    {"step": 1, "epoch": 0.5, "train_loss": 0.9, "my/custom": 3},
                    {
                        "step": 2,
                        "train_loss": float("nan"),
                        "gpus": [{"index": 0, "utilization": 50}],
                    },
                ]
                await post_rows(writer, job, rows[0])
                await post_rows(writer, job, [rows[1]])
                got = await stream.take(2)
                assert [event.event for event in got] == ["metrics", "metrics"]
                assert ids(got) == [2, 3]  # the initial row had id 1
                stored = await history(http, job)
                assert [event.json() for event in got] == stored[1:]
                assert got[1].json()["train_loss"] == "NaN"

    run(main)


def test_status_events_then_deleted_closes_the_stream(live_server: ServerProcess) -> None:
    async def main() -> None:
        async with async_client(live_server.url) as http:
            job = await new_job(http)
            async with open_stream(http, job) as stream:
                assert (await stream.next()).json()["type"] == "snapshot"
                await set_status(http, job, "running")
                await set_status(http, job, "running")  # a no-op: no event
                await set_status(http, job, "completed", "done")
                await post_rows(http, job, {"step": 9, "val_loss": 0.1})  # late evaluation row
                running, completed, late = await stream.take(3)
                assert (running.event, running.id) == ("status", None)
                assert running.json() == {
                    "job_id": job,
                    "status": "running",
                    "previous_status": "pending",
                    "message": None,
                    "timestamp": running.json()["timestamp"],
                }
                assert running.json()["timestamp"].endswith("Z")
                assert completed.json()["status"] == "completed"
                assert completed.json()["message"] == "done"
                assert late.event == "metrics" and late.json()["step"] == 9  # still open
                assert (await http.delete(f"{API}/training/jobs/{job}")).status_code == 204
                rest = await stream.until_end()
                assert [event.event for event in rest if event.event != ":"] == ["deleted"]
                assert rest[-1].json() == {"job_id": job}
            assert (await http.get(f"{API}/training/{job}/stream")).status_code == 404

    run(main)


def test_unknown_job_is_404_in_the_error_envelope(live_server: ServerProcess) -> None:
    response = httpx.get(f"{live_server.url}{API}/training/nope/stream", timeout=10)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "job_not_found"
    bad = httpx.get(f"{live_server.url}{API}/training/nope/stream?since=-1", timeout=10)
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "validation_error"


def test_idle_stream_gets_heartbeats(sse_server: Callable[..., ServerProcess]) -> None:
    server = sse_server()

    async def main() -> None:
        async with async_client(server.url) as http:
            job = await new_job(http)
            async with open_stream(http, job) as stream:
                await stream.next()
                started = time.monotonic()
                beat = await stream.next(comments=True, timeout=5)
                assert beat.event == ":" and beat.data == "heartbeat"
                assert 0.3 < time.monotonic() - started < 3

    run(main)


def test_resume_after_disconnect_loses_and_repeats_nothing(live_server: ServerProcess) -> None:
    async def main() -> None:
        async with async_client(live_server.url) as http:
            job = await new_job(http)
            await set_status(http, job, "running")
            async with open_stream(http, job) as stream:
                await stream.next()
                await post_rows(
                    http, job, [{"step": s, "train_loss": 1 / (s + 1)} for s in range(3)]
                )
                seen = await stream.metrics_until(3)
            last_id = int(seen[-1].id or 0)
            # While away: rows, a rewrite of an old step and a status change.
            await post_rows(http, job, [{"step": s, "train_loss": 0.1} for s in range(3, 8)])
            await post_rows(http, job, {"step": 1, "val_loss": 0.5})
            await set_status(http, job, "paused", "preempted")
            expected = [4, 5, 6, 7, 8, 9]
            for index, resume in enumerate(({"last_event_id": last_id}, {"since": last_id})):
                async with open_stream(http, job, **resume) as stream:
                    snapshot = await stream.next()
                    assert snapshot.json()["job"]["status"] == "paused"
                    replayed = await stream.metrics_until(expected[-1])
                    assert ids(replayed) == expected
                    assert replayed[5].json()["step"] == 1
                    assert replayed[5].json()["val_loss"] == 0.5
                    await post_rows(http, job, {"step": 100 + index, "train_loss": 0.01})
                    live = await stream.next()
                    assert live.event == "metrics" and live.json()["step"] == 100 + index
                    new_last = int(live.id or 0)
                    expected.append(new_last)
            # Last-Event-ID wins over ?since=, and an id beyond the newest row just goes live.
            async with open_stream(http, job, since=0, last_event_id=new_last) as stream:
                await stream.next()
                await post_rows(http, job, {"step": 101, "train_loss": 0.01})
                assert (await stream.next()).json()["step"] == 101
            async with open_stream(http, job, last_event_id=10_000) as stream:
                await stream.next()
                await post_rows(http, job, {"step": 102, "train_loss": 0.01})
                assert (await stream.next()).json()["step"] == 102

    run(main)


def test_rows_posted_during_a_replay_arrive_once_in_order(live_server: ServerProcess) -> None:
    async def main() -> None:
        async with async_client(live_server.url) as http, async_client(live_server.url) as writer:
            job = await new_job(http)
            await post_rows(writer, job, [{"step": s, "loss": float(s)} for s in range(3000)])

            async def keep_writing() -> None:
                for step in range(3000, 3100):
                    await post_rows(writer, job, {"step": step, "loss": 1.0})

            async with open_stream(http, job, since=0) as stream:
                writing = asyncio.create_task(keep_writing())
                await stream.next()
                events = await stream.metrics_until(3100, timeout=30)
                await writing
            assert ids(events) == list(range(1, 3101))

    run(main)


def _slow_socket(port: int, path: str) -> socket.socket:
    """A client that sends the request and then does not read (tiny receive buffer)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    return sock


def _read_all_ids(sock: socket.socket, until: int) -> list[int]:
    sock.settimeout(20)
    buffer = b""
    found: list[int] = []
    while not found or found[-1] < until:
        chunk = sock.recv(1 << 20)
        assert chunk, "the slow stream ended early"
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        found.extend(int(line[4:]) for line in lines if line.startswith(b"id: "))
    return found


def test_slow_consumer_gets_every_row_and_does_not_delay_a_fast_one(
    threaded_server: Callable[..., ThreadedServer],
) -> None:
    server = threaded_server(queue_size=8)
    wide = {f"metric_{index:03d}": index / 7 for index in range(60)}  # ~1.5 KiB a row
    total = 4000

    async def main() -> None:
        async with async_client(server.url) as http, async_client(server.url) as writer:
            job = await new_job(http)
            slow = _slow_socket(server.port, f"{API}/training/{job}/stream")
            try:
                async with open_stream(http, job) as fast:
                    await fast.next()
                    # Both streams subscribed before the first row: the slow one's
                    # request may reach the server after the fast one's.
                    deadline = time.monotonic() + 10
                    while server.call(lambda: server.broker.subscribers_of(job)) < 2:
                        assert time.monotonic() < deadline, "the slow stream never subscribed"
                        await asyncio.sleep(0.01)
                    worst = 0.0
                    for start in range(0, total, 20):
                        rows = [{"step": s, **wide} for s in range(start, start + 20)]
                        await post_rows(writer, job, rows)
                        acked = time.monotonic()
                        await fast.metrics_until(start + 20)
                        worst = max(worst, time.monotonic() - acked)
                    assert worst < 1.0, f"the fast client waited {worst:.2f}s"
                catch_ups = server.call(
                    lambda: sum(
                        s.catch_ups for subs in server.broker._subscribers.values() for s in subs
                    )
                )
                assert catch_ups >= 1, "the slow client never fell behind: the test proves nothing"
                got = await asyncio.to_thread(_read_all_ids, slow, total)
                assert got == list(range(1, total + 1))
            finally:
                slow.close()

    run(main, timeout=120)


def test_connect_disconnect_cycles_leave_nothing_behind(
    threaded_server: Callable[..., ThreadedServer],
) -> None:
    server = threaded_server()

    async def main() -> None:
        async with async_client(server.url) as http:
            job = await new_job(http)
            await post_rows(http, job, {"step": 0, "loss": 1.0})
            tasks_before = server.task_count()
            for cycle in range(100):
                resume = {"since": 0} if cycle % 2 else {}
                async with open_stream(http, job, **resume) as stream:
                    await stream.next()
                    if cycle % 10 == 0:
                        await post_rows(http, job, {"step": cycle + 1, "loss": 1.0})
                        await stream.next()
            deadline = time.monotonic() + 5
            while (
                server.call(lambda: server.broker.subscriber_count) and time.monotonic() < deadline
            ):
                await asyncio.sleep(0.05)
            assert server.call(lambda: server.broker.subscriber_count) == 0
            assert server.call(lambda: server.broker.pending_jobs) == 0
            await asyncio.sleep(0.2)
            assert server.task_count() <= tasks_before
            assert (await http.get(f"{API}/training/jobs/{job}")).status_code == 200

    run(main)


def test_cycles_against_the_cli_server_keep_it_healthy(live_server: ServerProcess) -> None:
    assert live_server.proc is not None
    fds = Path(f"/proc/{live_server.proc.pid}/fd")

    async def main() -> None:
        async with async_client(live_server.url) as http:
            job = await new_job(http)
            baseline = len(list(fds.iterdir()))
            for _ in range(100):
                async with (
                    async_client(live_server.url) as other,
                    open_stream(other, job) as stream,
                ):
                    await stream.next()
            await asyncio.sleep(0.5)
            assert len(list(fds.iterdir())) <= baseline + 2  # sockets were closed
            async with open_stream(http, job) as stream:
                await stream.next()
                await post_rows(http, job, {"step": 1, "loss": 1.0})  # also starts the job
                assert (await stream.metrics_until(1))[-1].json()["step"] == 1

    run(main)


def test_sigterm_ends_open_streams_promptly(sse_server: Callable[..., ServerProcess]) -> None:
    server = sse_server()
    assert server.proc is not None

    async def main() -> None:
        async with async_client(server.url) as http:
            job = await new_job(http)
            async with open_stream(http, job) as first, open_stream(http, job) as second:
                await first.next()
                await second.next()
                assert server.proc is not None
                started = time.monotonic()
                os.kill(server.proc.pid, signal.SIGTERM)
                await first.until_end(timeout=4)
                await second.until_end(timeout=4)
                # The CLI's graceful-shutdown timeout is 5 s: this was the broker, not it.
                assert time.monotonic() - started < 2.5
        await asyncio.to_thread(server.proc.wait, 10)

    run(main)


def test_first_rows_start_a_pending_job_with_a_status_event(db_url: str) -> None:
    """issue 13: a pending job's first stored row makes it running, and its streams
    get the ``status`` event (as a PUT would send) before the row."""

    async def main(server: ServerProcess) -> None:
        async with async_client(server.url) as http:
            job = await new_job(http)
            async with open_stream(http, job) as stream:
                assert (await stream.next()).json()["job"]["status"] == "pending"
                await post_rows(http, job, [{"step": 0, "train_loss": 1.0}])
                status, row = await stream.take(2)
                assert status.event == "status" and status.json()["status"] == "running"
                assert status.json()["previous_status"] == "pending"
                assert row.event == "metrics" and row.json()["step"] == 0
                await post_rows(http, job, [{"step": 1, "train_loss": 0.5}])
                assert (await stream.next()).event == "metrics"  # no second status event
            got = (await http.get(f"{API}/training/jobs/{job}")).json()["data"]
            assert got["status"] == "running" and got["started_at"] is not None

    with ServerProcess(db_url, args=["--sse-heartbeat", "1"]) as server:
        run(lambda: main(server))


def test_stale_last_event_id_after_an_id_is_created_again(db_url: str) -> None:
    """issue 13: a deleted client id created again continues its stream ids above
    the deleted job's, so a browser reconnecting with the old Last-Event-ID gets
    every row of the new job (none is taken for one it already saw)."""

    async def main(server: ServerProcess) -> None:
        async with async_client(server.url) as http:
            job = await new_job(http, id="rerun")
            await post_rows(http, job, [{"step": s, "train_loss": 1.0} for s in range(5)])
            async with open_stream(http, job) as stream:
                await stream.next()
                await post_rows(http, job, {"step": 5, "train_loss": 1.0})
                stale = int((await stream.next()).id or 0)
                assert (await http.delete(f"{API}/training/jobs/{job}")).status_code == 204
                assert (await stream.until_end())[-1].event == "deleted"
            assert await new_job(http, id="rerun") == job
            await post_rows(http, job, [{"step": s, "train_loss": 0.5} for s in range(3)])
            async with open_stream(http, job, last_event_id=stale) as stream:
                snapshot = (await stream.next()).json()["job"]
                assert snapshot["point_count"] == 3
                replayed = await stream.take(3)
                assert [event.json()["step"] for event in replayed] == [0, 1, 2]
                assert all(int(event.id or 0) > stale for event in replayed)
                assert {event.json()["train_loss"] for event in replayed} == {0.5}

    with ServerProcess(db_url, args=["--sse-heartbeat", "1"]) as server:
        run(lambda: main(server))
