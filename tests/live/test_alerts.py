"""Health alerts on the SSE stream of a real server (issue 10).

A finding stored on ingest (and a note) reaches an open stream as ``event:
alert`` whose data is exactly the event the events API lists; it comes after
the rows that caused it and carries no ``id:`` (it never moves the resume point).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Coroutine
from typing import Any

import httpx
import pytest

from tests.conftest import API, ServerProcess
from tests.live.conftest import Event, SSEStream, async_client, open_stream
from trainvis.demo import simulate

pytestmark = pytest.mark.live


def run(main: Callable[[], Coroutine[Any, Any, None]], timeout: float = 60) -> None:
    asyncio.run(asyncio.wait_for(main(), timeout))


async def post_rows(http: httpx.AsyncClient, job_id: str, rows: Any) -> None:
    response = await http.post(
        f"{API}/training/{job_id}/metrics",
        content=json.dumps(rows),  # Python's json writes NaN as the bare token
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 201, response.text


async def next_alert(stream: SSEStream, timeout: float = 10.0) -> tuple[Event, list[Event]]:
    """The next ``alert`` and the ``metrics`` events seen before it."""
    rows: list[Event] = []
    while True:
        event = await stream.next(timeout=timeout)
        if event.event == "alert":
            return event, rows
        if event.event == "metrics":
            rows.append(event)


def test_spike_nan_and_note_arrive_as_alert_events(live_server: ServerProcess) -> None:
    async def main() -> None:
        async with async_client(live_server.url) as http:
            created = await http.post(f"{API}/training/jobs", json={"name": "alerts"})
            job = created.json()["data"]["id"]
            async with open_stream(http, job) as stream:
                assert (await stream.next()).json()["type"] == "snapshot"
                rows = list(simulate(300, eval_every=50, seed=5))
                await post_rows(http, job, rows)
                spike, before = await next_alert(stream)
                assert spike.id is None
                assert len(before) == 300, "the rows come first, then their alert"
                assert spike.json()["kind"] == "spike" and spike.json()["step"] == 135

                await post_rows(http, job, [{"step": 301, "train_loss": float("nan")}])
                nan, _ = await next_alert(stream)
                assert nan.json()["kind"] == "nonfinite" and nan.json()["value"] == "NaN"

                note = await http.post(
                    f"{API}/training/{job}/events", json={"message": "restarted from checkpoint"}
                )
                assert note.status_code == 201
                marker, _ = await next_alert(stream)
                assert marker.json() == note.json()["data"]

                listed = (await http.get(f"{API}/training/{job}/events")).json()["data"]
                assert list(reversed(listed)) == [
                    spike.json(),
                    nan.json(),
                    marker.json(),
                ]
                assert "event: alert" in stream.raw

    run(main)


def test_alerts_do_not_move_the_resume_point(live_server: ServerProcess) -> None:
    async def main() -> None:
        async with async_client(live_server.url) as http:
            job = (await http.post(f"{API}/training/jobs", json={"name": "r"})).json()["data"]["id"]
            async with open_stream(http, job) as stream:
                await stream.next()
                await post_rows(http, job, [{"step": 1, "loss": float("nan")}])
                alert, rows = await next_alert(stream)
                assert [row.id for row in rows] == ["1"] and alert.id is None
            await post_rows(http, job, [{"step": 2, "loss": 1.0}])
            async with open_stream(http, job, last_event_id=1) as resumed:
                await resumed.next()
                replayed = await resumed.next()
                assert replayed.event == "metrics" and replayed.id == "2"

    run(main)
