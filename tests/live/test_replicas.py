"""Two real ``trainvis serve`` replicas on one PostgreSQL database (issue 5).

Concurrent ingest through both, live rows across replicas over LISTEN/NOTIFY,
and recovery after the listening connection is killed with
``pg_terminate_backend``.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import API, ServerProcess
from tests.live.conftest import Event, SSEStream, async_client, open_stream

pytestmark = [pytest.mark.live, pytest.mark.postgres]
#: 2,000 characters that JSON-encode to ~9,000 bytes: more than a NOTIFY payload may carry.
LONG_MESSAGE = "\u2603\x01" * 1000


def run(main: Callable[[], Coroutine[Any, Any, None]], timeout: float = 90) -> None:
    asyncio.run(asyncio.wait_for(main(), timeout))


def pg_query(url: str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(sql.encode(), params).fetchall()


@pytest.fixture
def pg_db(pg_url: str) -> str:
    from tests.conftest import _fresh_pg_schema

    _fresh_pg_schema(pg_url)
    return pg_url


@pytest.fixture
def replicas(pg_db: str) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    """Replicas A and B on one database (heartbeat 0.5 s), both listening."""
    first = ServerProcess(pg_db, args=["--sse-heartbeat", "0.5"]).start()
    try:
        second = ServerProcess(pg_db, args=["--sse-heartbeat", "0.5"]).start()
    except BaseException:
        first.stop()
        raise
    try:
        try:
            wait_for(lambda: len(listener_pids(pg_db)) == 2, timeout=10)
        except AssertionError:
            pytest.fail(
                "the replicas do not LISTEN: trainvis.realtime.factory.make_broker must return "
                "trainvis.realtime.pg_broker.PostgresBroker for postgresql:// databases"
            )
        yield first, second
    finally:
        second.stop()
        first.stop()


def listener_pids(url: str, name: str = "trainvis-listener") -> set[int]:
    database = url.rsplit("/", 1)[1]
    rows = pg_query(
        url,
        "SELECT pid FROM pg_stat_activity WHERE datname = %s AND application_name = %s",
        (database, name),
    )
    return {int(row[0]) for row in rows}


def wait_for(condition: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.05)


async def new_job(http: httpx.AsyncClient) -> str:
    response = await http.post(f"{API}/training/jobs", json={"name": "replicas"})
    assert response.status_code == 201, response.text
    return str(response.json()["data"]["id"])


async def post_rows(http: httpx.AsyncClient, job_id: str, rows: list[dict[str, Any]]) -> None:
    response = await http.post(
        f"{API}/training/{job_id}/metrics",
        content=json.dumps(rows),
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 201, response.text


async def first_event(stream: SSEStream) -> Event:
    event = await stream.next()
    assert event.event == "message" and event.json()["type"] == "snapshot"
    return event


async def metrics_steps(stream: SSEStream, count: int, timeout: float = 10.0) -> list[Event]:
    found: list[Event] = []
    while len(found) < count:
        event = await stream.next(timeout=timeout)
        if event.event == "metrics":
            found.append(event)
    return found


# ---------------------------------------------------------------------- tests


def test_concurrent_ingest_through_both_replicas(
    replicas: tuple[ServerProcess, ServerProcess], pg_db: str
) -> None:
    """Each replica gets interleaved batches (disjoint steps plus step 0 every
    time); a stream on B sees every row; seqs are unique and gap-free."""
    a, b = replicas
    batches, size = 20, 50

    async def main() -> None:
        async with async_client(a.url) as http_a, async_client(b.url) as http_b:
            job = await new_job(http_a)
            async with open_stream(http_b, job, since=0) as stream:
                await first_event(stream)

                def ingest(http_url: str, parity: int) -> None:
                    with httpx.Client(base_url=http_url, timeout=30) as http:
                        for batch in range(batches):
                            base = 1 + 2 * size * batch + parity
                            rows = [{"step": 0, "shared": float(parity)}] + [
                                {"step": base + 2 * i, "v": float(i)} for i in range(size)
                            ]
                            response = http.post(f"{API}/training/{job}/metrics", json=rows)
                            assert response.status_code == 201, response.text

                threads = [
                    threading.Thread(target=ingest, args=(url, parity))
                    for parity, url in enumerate((a.url, b.url))
                ]
                for thread in threads:
                    thread.start()
                await asyncio.to_thread(lambda: [thread.join(60) for thread in threads])

                posted = 2 * batches * (size + 1)  # every row of every request: one seq
                events = []
                while not events or int(events[-1].id or 0) < posted:
                    event = await stream.next(timeout=10)
                    if event.event == "metrics":
                        events.append(event)
            seen = [int(event.id or 0) for event in events]
            assert seen == sorted(set(seen)), "ids grow strictly on the stream"
            steps = {event.json()["step"] for event in events}
            assert steps == set(range(0, 2 * size * batches + 1))
            history = (await http_a.get(f"{API}/training/{job}/metrics/history")).json()
            assert history["meta"]["total"] == 2 * size * batches + 1

        [(last_seq,)] = pg_query(pg_db, "SELECT last_seq FROM jobs WHERE id = %s", (job,))
        assert last_seq == posted
        seqs = [
            int(row[0])
            for row in pg_query(
                pg_db,
                "SELECT seq FROM steps JOIN jobs ON jobs.pk = steps.job_pk WHERE jobs.id = %s",
                (job,),
            )
        ]
        assert len(seqs) == len(set(seqs)) == 2 * size * batches + 1
        # Only step 0's superseded seqs are missing: 2 * batches posts of it, one kept.
        assert max(seqs) == posted and len(seqs) == posted - (2 * batches - 1)

    run(main)


def test_row_posted_to_a_reaches_stream_on_b_within_a_second(
    replicas: tuple[ServerProcess, ServerProcess],
) -> None:
    a, b = replicas

    async def main() -> None:
        async with async_client(a.url) as http_a, async_client(b.url) as http_b:
            job = await new_job(http_a)
            async with open_stream(http_b, job) as stream:
                await first_event(stream)
                for step in range(5):
                    started = time.monotonic()
                    await post_rows(http_a, job, [{"step": step, "train_loss": 1.0 / (step + 1)}])
                    [event] = await metrics_steps(stream, 1, timeout=5)
                    elapsed = time.monotonic() - started
                    assert event.json()["step"] == step and event.id == str(step + 1)
                    assert elapsed < 1.0, f"row took {elapsed:.2f}s to cross replicas"
                response = await http_a.put(
                    f"{API}/training/jobs/{job}/status",
                    json={"status": "paused", "message": LONG_MESSAGE},  # the rows started it
                )
                assert response.status_code == 200
                status = await stream.next(timeout=5)
                assert status.event == "status"
                assert status.json()["status"] == "paused"
                assert status.json()["message"] == LONG_MESSAGE
                assert (await http_a.delete(f"{API}/training/jobs/{job}")).status_code == 204
                assert (await stream.next(timeout=5)).event == "deleted"

    run(main)


def test_alerts_cross_replicas(replicas: tuple[ServerProcess, ServerProcess]) -> None:
    """A finding stored through A, and a note too long for a notification (it travels
    as its id and B reads it from the store), reach a stream on B (issue 10)."""
    a, b = replicas

    async def main() -> None:
        async with async_client(a.url) as http_a, async_client(b.url) as http_b:
            job = await new_job(http_a)
            async with open_stream(http_b, job) as stream:
                await first_event(stream)
                await post_rows(http_a, job, [{"step": 1, "train_loss": float("nan")}])
                alerts = []
                while len(alerts) < 1:
                    event = await stream.next(timeout=5)
                    if event.event == "alert":
                        alerts.append(event)
                assert alerts[0].json()["kind"] == "nonfinite" and alerts[0].id is None
                note = await http_a.post(
                    f"{API}/training/{job}/events", json={"message": LONG_MESSAGE}
                )
                assert note.status_code == 201, note.text
                event = await stream.next(timeout=5)
                assert event.event == "alert" and event.json() == note.json()["data"]
                listed = (await http_b.get(f"{API}/training/{job}/events")).json()["data"]
                assert listed[1] == alerts[0].json()

    run(main)


def test_streams_recover_after_listener_is_terminated(
    replicas: tuple[ServerProcess, ServerProcess], pg_db: str
) -> None:
    a, b = replicas

    async def main() -> None:
        async with async_client(a.url) as http_a, async_client(b.url) as http_b:
            job = await new_job(http_a)
            async with open_stream(http_b, job) as stream:
                await first_event(stream)
                await post_rows(http_a, job, [{"step": s, "x": float(s)} for s in range(3)])
                assert [e.json()["step"] for e in await metrics_steps(stream, 3)] == [0, 1, 2]

                before = listener_pids(pg_db)
                killed = pg_query(
                    pg_db,
                    "SELECT pg_terminate_backend(pid) FROM unnest(%s::int[]) AS pid",
                    (sorted(before),),
                )
                assert all(row[0] for row in killed)
                # Rows posted while nobody listens: their notifications are lost.
                for start in (3, 6):
                    rows = [{"step": s, "x": float(s)} for s in range(start, start + 3)]
                    await post_rows(http_a, job, rows)
                await asyncio.to_thread(
                    wait_for,
                    lambda: len(after := listener_pids(pg_db)) == 2 and not after & before,
                )
                recovered = await metrics_steps(stream, 6, timeout=10)
                assert [e.json()["step"] for e in recovered] == list(range(3, 9))
                # And live again afterwards, also through the notifier it had.
                for pid in listener_pids(pg_db, "trainvis-notifier"):
                    pg_query(pg_db, "SELECT pg_terminate_backend(%s)", (pid,))
                await post_rows(http_a, job, [{"step": 9, "x": 9.0}])
                [event] = await metrics_steps(stream, 1, timeout=10)
                assert event.json()["step"] == 9 and event.id == "10"
                ids = [int(e.id or 0) for e in recovered] + [int(event.id or 0)]
                assert ids == list(range(4, 11))  # nothing lost, nothing twice

    run(main)


def test_listener_reconnect_catches_up_from_the_store(pg_db: str) -> None:
    """In process: rows stored while the listener is down (and never announced)
    reach a subscription once the listener is back."""
    from trainvis.models import JobCreate, MetricRow
    from trainvis.realtime.pg_broker import PostgresBroker
    from trainvis.store import open_store

    store = open_store(pg_db)

    async def main() -> None:
        broker = PostgresBroker(store, pg_db, handle_signals=False, reconnect_delay=0.05)
        await broker.start()
        try:
            assert broker.connects == 1 and broker.listener_pid is not None
            job = store.create_job(JobCreate(name="resync")).id
            sub = broker.subscribe(job)
            sub.begin(0, replay=False)
            pg_query(pg_db, "SELECT pg_terminate_backend(%s)", (broker.listener_pid,))
            store.write_metrics(job, [MetricRow(step=s, values={"x": 1.0}) for s in range(4)])
            deadline = time.monotonic() + 10
            while broker.connects < 2:
                assert time.monotonic() < deadline, "the listener did not reconnect"
                await asyncio.sleep(0.02)
            chunk = await sub.next_chunk(timeout=5)
            assert chunk is not None
            assert [line for line in chunk.decode().splitlines() if line.startswith("id:")] == [
                "id: 1",
                "id: 2",
                "id: 3",
                "id: 4",
            ]
            sub.release()
        finally:
            await broker.stop()

    try:
        run(main, timeout=30)
    finally:
        store.close()
