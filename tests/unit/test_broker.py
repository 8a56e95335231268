"""The in-process broker and its subscriptions, on the event loop, without HTTP.

Each test runs on the ``log`` fixture, once per kind of store (issue 13): a
hand-written ``RowLog`` (the three store methods a subscription calls, with the
store contract's semantics: per-job seq; a re-written step gets a new seq and
leaves its old one) and ``StoreLog`` on a real SQLite file and a real
PostgreSQL database, so the fake cannot drift from the stores it stands for.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import signal
import threading
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

import pytest

from tests.conftest import _fresh_pg_schema
from trainvis.errors import JobNotFound
from trainvis.models import JobCreate, JobStatus, MetricRow, StatusChange, TrainingJob
from trainvis.realtime.broker import InProcessBroker, chain_exit_signals
from trainvis.realtime.sse import StreamEnded, metrics_event
from trainvis.realtime.subscription import ROW, Item, Subscription
from trainvis.store import MetricStore, open_store

T = TypeVar("T")
JOB = "job-001"


class RowLog:
    """``get_job``, ``rows_since`` and ``last_seq`` over an in-memory job."""

    def __init__(self) -> None:
        self.seq = 0
        self.rows: dict[int, tuple[int, dict[str, Any]]] = {}  # step -> (seq, row)
        self.deleted = False
        self.reads = 0

    def write(self, *steps: int) -> list[tuple[int, dict[str, Any]]]:
        written = []
        for step in steps:
            self.seq += 1
            row = {"step": step, "timestamp": None, "loss": float(self.seq)}
            self.rows[step] = (self.seq, row)
            written.append((self.seq, row))
        return written

    def _check(self, job_id: str) -> None:
        if self.deleted or job_id != JOB:
            raise JobNotFound(job_id)

    def get_job(self, job_id: str) -> TrainingJob:
        self._check(job_id)
        return TrainingJob(id=job_id, name="n", status=JobStatus.RUNNING, last_seq=self.seq)

    def rows_since(self, job_id: str, seq: int, *, limit: int = 1000) -> list[tuple[int, Any]]:
        self._check(job_id)
        self.reads += 1
        found = sorted(value for value in self.rows.values() if value[0] > seq)
        return found[:limit]

    def last_seq(self, job_id: str) -> int:
        self._check(job_id)
        return self.seq


class StoreLog:
    """``RowLog``'s interface over a real store: one job, one write per step."""

    def __init__(self, store: MetricStore) -> None:
        self.store = store
        self.reads = 0
        store.create_job(JobCreate(name="n", id=JOB))

    def write(self, *steps: int) -> list[tuple[int, dict[str, Any]]]:
        written: list[tuple[int, dict[str, Any]]] = []
        for step in steps:  # one write each: a step repeated in a call gets two seqs
            value = float(self.store.last_seq(JOB) + 1)
            result = self.store.write_metrics(JOB, [MetricRow(step=step, values={"loss": value})])
            written.extend(result.rows)
        return written

    @property
    def seq(self) -> int:
        return self.store.last_seq(JOB)

    @property
    def rows(self) -> dict[int, tuple[int, dict[str, Any]]]:
        """step -> (current seq, row), read without counting as a subscription read."""
        return {row["step"]: (seq, row) for seq, row in self.store.rows_since(JOB, 0, limit=10**6)}

    @property
    def deleted(self) -> bool:
        try:
            self.store.last_seq(JOB)
        except JobNotFound:
            return True
        return False

    @deleted.setter
    def deleted(self, value: bool) -> None:
        assert value
        self.store.delete_job(JOB)

    def get_job(self, job_id: str) -> TrainingJob:
        return self.store.get_job(job_id)

    def rows_since(self, job_id: str, seq: int, *, limit: int = 1000) -> list[tuple[int, Any]]:
        self.reads += 1
        return self.store.rows_since(job_id, seq, limit=limit)

    def last_seq(self, job_id: str) -> int:
        return self.store.last_seq(job_id)


Log = RowLog | StoreLog


@pytest.fixture(params=["fake", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def log(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[Log]:
    """The broker's store: the hand-written fake, then each real backend."""
    if request.param == "fake":
        yield RowLog()
        return
    if request.param == "sqlite":
        url = str(tmp_path / "broker.db")
    else:
        url = request.getfixturevalue("pg_url")
        _fresh_pg_schema(url)
    store = open_store(url)
    try:
        yield StoreLog(store)
    finally:
        store.close()


def run(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    return asyncio.run(asyncio.wait_for(make(), 20))


def make_broker(log: Log, **kwargs: Any) -> InProcessBroker:
    kwargs.setdefault("coalesce_window", 0.0)
    return InProcessBroker(log, handle_signals=False, **kwargs)  # type: ignore[arg-type]


async def collect(sub: Subscription, *, idle: float = 0.05) -> bytes:
    """Everything the subscription yields until it is idle for ``idle`` seconds."""
    out = b""
    while True:
        try:
            chunk = await sub.next_chunk(timeout=idle)
        except StreamEnded:
            return out
        if chunk is None:
            return out
        out += chunk


def seqs(payload: bytes) -> list[int]:
    return [int(number) for number in re.findall(rb"^id: (\d+)$", payload, re.M)]


async def settle() -> None:
    for _ in range(3):
        await asyncio.sleep(0)


def test_live_rows_are_delivered_in_order_and_coalesced(log: Log) -> None:
    async def main() -> None:
        broker = make_broker(log, coalesce_window=0.01)
        await broker.start()
        sub = broker.subscribe(JOB)
        sub.begin(log.seq, replay=False)
        for step in range(3):
            broker.publish_rows(JOB, log.write(step))
        assert broker.pending_jobs == 1  # still inside the coalescing window
        chunk = await sub.next_chunk(timeout=1)
        assert chunk is not None and seqs(chunk) == [1, 2, 3]  # one write for three events
        assert chunk == b"".join(metrics_event(s, log.rows[s - 1][1]) for s in (1, 2, 3))
        assert log.reads == 0  # served from the shared bytes, not the store
        await broker.stop()

    run(main)


def test_subscribers_share_one_serialization(log: Log) -> None:
    async def main() -> None:
        broker = make_broker(log)
        subs = [broker.subscribe(JOB) for _ in range(3)]
        for sub in subs:
            sub.begin(0, replay=False)
        broker.publish_rows(JOB, log.write(1, 2))
        chunks = [await sub.next_chunk(timeout=1) for sub in subs]
        assert chunks[0] is chunks[1] is chunks[2]  # the very same bytes object

    run(main)


def test_rows_stored_between_subscribe_and_begin_are_not_duplicated(log: Log) -> None:
    async def main() -> None:
        broker = make_broker(log)
        sub = broker.subscribe(JOB)
        broker.publish_rows(JOB, log.write(1, 2))  # before the snapshot read
        await settle()
        sub.begin(log.get_job(JOB).last_seq, replay=False)  # the snapshot saw 1 and 2
        broker.publish_rows(JOB, log.write(3))
        assert seqs(await collect(sub)) == [3]

    run(main)


def test_replay_then_live_without_gap_or_duplicate(log: Log) -> None:
    async def main() -> None:
        log.write(*range(10))
        broker = make_broker(log, page_size=3)
        sub = broker.subscribe(JOB)
        sub.begin(4, replay=True)
        out = b""
        for step in range(10, 20):  # rows arrive while the replay reads pages
            broker.publish_rows(JOB, log.write(step))
            await settle()
            chunk = await sub.next_chunk(timeout=0.05)
            out += chunk or b""
        out += await collect(sub)
        assert seqs(out) == list(range(5, 21))

    run(main)


def test_overflow_switches_to_catch_up_and_loses_nothing(log: Log) -> None:
    async def main() -> None:
        broker = make_broker(log, queue_size=4, page_size=7)
        sub = broker.subscribe(JOB)
        sub.begin(0, replay=False)
        for step in range(100):
            broker.publish_rows(JOB, log.write(step))
            await settle()
            assert sub.queued <= 4
        assert sub.catch_ups >= 1
        assert seqs(await collect(sub)) == list(range(1, 101))

    run(main)


def test_out_of_order_publishes_are_read_from_the_store(log: Log) -> None:
    async def main() -> None:
        broker = make_broker(log)
        sub = broker.subscribe(JOB)
        sub.begin(0, replay=False)
        first, second = log.write(1, 2), log.write(3, 4)
        broker.publish_rows(JOB, second)  # the later commit is published first
        await settle()
        broker.publish_rows(JOB, first)
        assert seqs(await collect(sub)) == [1, 2, 3, 4]

    run(main)


def test_notifications_without_bytes_read_rows_from_the_store(log: Log) -> None:
    async def main() -> None:
        broker = make_broker(log)
        sub = broker.subscribe(JOB)
        sub.begin(0, replay=False)
        for seq, _row in log.write(1, 2, 3):  # what a LISTEN/NOTIFY broker hears
            broker.deliver(JOB, [Item(ROW, seq)])
        out = await collect(sub)
        assert seqs(out) == [1, 2, 3] and b'"loss":3.0' in out

    run(main)


def test_one_large_batch_into_an_empty_queue_is_served_live(log: Log) -> None:
    async def main() -> None:
        broker = make_broker(log, queue_size=4)
        sub = broker.subscribe(JOB)
        sub.begin(0, replay=False)
        broker.publish_rows(JOB, log.write(*range(100)))  # one POST of 100 rows
        assert seqs(await collect(sub)) == list(range(1, 101))
        assert sub.catch_ups == 0 and log.reads == 0

    run(main)


def test_rewritten_step_during_catch_up_arrives_once_with_its_new_seq(log: Log) -> None:
    async def main() -> None:
        broker = make_broker(log, queue_size=1)
        sub = broker.subscribe(JOB)
        sub.begin(0, replay=False)
        broker.publish_rows(JOB, log.write(1))
        await settle()
        broker.publish_rows(JOB, log.write(2, 3))  # overflows a queue of one
        await settle()
        broker.publish_rows(JOB, log.write(2))  # step 2 again: seq 4 replaces seq 2
        out = await collect(sub)
        assert seqs(out) == [1, 3, 4]  # seq 2 was read from the store after step 2 moved on
        assert sub.catch_ups == 1

    run(main)


def test_rows_dropped_while_a_store_read_is_in_flight_are_read_again(log: Log) -> None:
    gate = threading.Event()
    read = log.rows_since

    def slow_rows_since(job_id: str, seq: int, *, limit: int = 1000) -> list[Any]:
        found = read(job_id, seq, limit=limit)  # the read's snapshot...
        gate.wait(5)  # ...then rows commit and overflow the queue meanwhile
        return found

    log.rows_since = slow_rows_since  # type: ignore[method-assign]

    async def main() -> None:
        log.write(1, 2)
        broker = make_broker(log, queue_size=2)
        sub = broker.subscribe(JOB)
        sub.begin(0, replay=True)
        reading = asyncio.create_task(sub.next_chunk(timeout=1))
        await asyncio.sleep(0.05)
        for step in range(3, 6):  # the third overflows and empties the queue
            broker.publish_rows(JOB, log.write(step))
            await settle()
        gate.set()
        out = (await reading or b"") + await collect(sub)
        assert seqs(out) == [1, 2, 3, 4, 5]

    run(main)


def test_announced_seq_missing_from_the_store_does_not_spin() -> None:
    """Fake store only: it needs a sequence number announced but never used,
    which a real store does not give out."""

    async def main() -> None:
        log = RowLog()
        broker = make_broker(log)
        sub = broker.subscribe(JOB)
        sub.begin(0, replay=False)
        broker.deliver(JOB, [Item(ROW, 5)])  # e.g. a sequence number that was never used
        assert await sub.next_chunk(timeout=0.05) is None
        reads = log.reads
        log.seq = 5
        broker.publish_rows(JOB, log.write(1))  # seq 6 goes live right after
        assert seqs(await collect(sub)) == [6]
        assert log.reads == reads

    run(main)


def test_status_and_deleted_events_then_end(log: Log) -> None:
    async def main() -> None:
        broker = make_broker(log)
        sub = broker.subscribe(JOB)
        sub.begin(0, replay=False)
        broker.publish_rows(JOB, log.write(1))
        broker.publish_status(StatusChange(JOB, JobStatus.COMPLETED, JobStatus.RUNNING, None, 1.0))
        broker.publish_rows(JOB, log.write(2))  # a late evaluation row
        log.deleted = True
        broker.publish_deleted(JOB)
        out = await collect(sub, idle=1)
        names = re.findall(rb"^event: (\w+)$", out, re.M)
        assert names == [b"metrics", b"status", b"metrics", b"deleted"]
        with pytest.raises(StreamEnded):
            await sub.next_chunk(timeout=0.01)

    run(main)


def test_deletion_noticed_during_catch_up_ends_the_stream(log: Log) -> None:
    async def main() -> None:
        log.write(1, 2)
        broker = make_broker(log)
        sub = broker.subscribe(JOB)
        sub.begin(0, replay=True)
        log.deleted = True
        assert await sub.next_chunk(timeout=1) == b'event: deleted\ndata: {"job_id":"job-001"}\n\n'
        with pytest.raises(StreamEnded):
            await sub.next_chunk(timeout=0.01)

    run(main)


def test_status_flood_on_a_stuck_subscriber_is_bounded_and_resnapshots(log: Log) -> None:
    async def main() -> None:
        broker = make_broker(log, queue_size=5)
        sub = broker.subscribe(JOB)
        sub.begin(0, replay=False)
        for number in range(50):
            status = JobStatus.PAUSED if number % 2 else JobStatus.RUNNING
            broker.publish_status(StatusChange(JOB, status, JobStatus.RUNNING, None, 1.0))
            await settle()
            assert sub.queued <= 5
        out = await collect(sub)
        assert out.startswith(b'data: {"type":"snapshot"')
        assert out.count(b"event: status") == 5

    run(main)


def test_heartbeat_is_due_only_after_an_idle_period(log: Log) -> None:
    async def main() -> None:
        broker = make_broker(log)
        sub = broker.subscribe(JOB)
        sub.begin(0, replay=False)
        loop = asyncio.get_running_loop()
        started = loop.time()
        assert await sub.next_chunk(timeout=0.05) is None
        assert 0.04 <= loop.time() - started < 0.5
        for step in range(8):  # a row every 20 ms keeps the stream busy: no heartbeat
            await asyncio.sleep(0.02)
            broker.publish_rows(JOB, log.write(step))
            assert await sub.next_chunk(timeout=0.05) is not None
        started = loop.time()
        assert await sub.next_chunk(timeout=0.05) is None
        assert 0.03 <= loop.time() - started < 0.5

    run(main)


def test_stop_ends_streams_and_later_subscriptions_are_born_closed(log: Log) -> None:
    async def main() -> None:
        broker = make_broker(log)
        await broker.start()
        sub = broker.subscribe(JOB)
        sub.begin(0, replay=False)
        cancelled: list[bool] = []
        sub.on_close(lambda: cancelled.append(True))
        waiter = asyncio.create_task(sub.next_chunk(timeout=10))
        await settle()
        await broker.stop()
        with pytest.raises(StreamEnded):
            await waiter
        assert cancelled == [True]
        late = broker.subscribe(JOB)
        with pytest.raises(StreamEnded):
            await late.next_chunk(timeout=1)
        sub.release()
        late.release()
        assert broker.subscriber_count == 0
        await broker.start()  # a restarted app accepts subscribers again
        assert broker.subscribe(JOB) is not None and broker.subscriber_count == 1

    run(main)


def test_connect_disconnect_cycles_leave_nothing_behind(log: Log) -> None:
    async def main() -> None:
        broker = make_broker(log, coalesce_window=0.001)
        tasks_before = len(asyncio.all_tasks())
        for cycle in range(100):
            sub = broker.subscribe(JOB)
            sub.begin(log.seq, replay=cycle % 2 == 0)
            broker.publish_rows(JOB, log.write(cycle))
            waiter = asyncio.create_task(sub.next_chunk(timeout=5))
            await asyncio.sleep(0)
            if cycle % 3:
                waiter.cancel()  # the client went away mid-wait
            await asyncio.gather(waiter, return_exceptions=True)
            sub.release()
            sub.release()  # idempotent
            assert sub._timer is None and sub.queued == 0
        await asyncio.sleep(0.01)
        assert broker.subscriber_count == 0
        assert broker.pending_jobs == 0
        assert len(asyncio.all_tasks()) == tasks_before

    run(main)


#: 20 seeds on the fake store, 5 on each real one (a transaction per write).
RANDOM_CASES = [
    pytest.param(seed, kind, marks=[pytest.mark.postgres] if kind == "postgres" else [])
    for kind, seeds in (("fake", 20), ("sqlite", 5), ("postgres", 5))
    for seed in range(seeds)
]


@pytest.mark.parametrize(("seed", "log"), RANDOM_CASES, indirect=["log"])
def test_random_interleavings_deliver_every_row_once_in_order(seed: int, log: Log) -> None:
    """Writes, reordered publishes, overflow, replay and a slow reader, all at once."""

    async def main() -> None:
        rng = random.Random(seed)
        log.write(*range(rng.randrange(0, 30)))
        broker = make_broker(
            log, queue_size=rng.choice([1, 3, 8, 64]), page_size=rng.choice([1, 4, 50])
        )
        sub = broker.subscribe(JOB)
        start = rng.randrange(0, log.seq + 1)
        sub.begin(start, replay=start < log.seq)
        out = b""
        held: list[list[tuple[int, dict[str, Any]]]] = []
        for _ in range(200):
            action = rng.random()
            if action < 0.5:
                held.append(log.write(*(rng.randrange(0, 40) for _ in range(rng.randrange(1, 4)))))
            if held and (action > 0.3 or len(held) > 3):  # publish, sometimes out of order
                broker.publish_rows(JOB, held.pop(rng.randrange(len(held))))
            await settle()
            if rng.random() < 0.3:  # a slow reader
                out += await sub.next_chunk(timeout=0.001) or b""
        for rows in held:
            broker.publish_rows(JOB, rows)
        out += await collect(sub, idle=0.05)
        got = seqs(out)
        assert got == sorted(set(got)), "out of order or duplicated"
        current = {seq for seq, _row in log.rows.values() if seq > start}
        assert current <= set(got), f"lost {sorted(current - set(got))}"

    run(main)


def test_chain_exit_signals_runs_callback_then_previous_handler() -> None:
    calls: list[str] = []
    previous = signal.signal(signal.SIGUSR1, lambda *_: None)  # not chained: only INT/TERM
    original = signal.signal(signal.SIGTERM, lambda *_: calls.append("server"))
    try:
        restore = chain_exit_signals(lambda: calls.append("broker"))
        os.kill(os.getpid(), signal.SIGTERM)
        assert calls == ["broker", "server"]
        restore()
        os.kill(os.getpid(), signal.SIGTERM)
        assert calls == ["broker", "server", "server"]
    finally:
        signal.signal(signal.SIGTERM, original)
        signal.signal(signal.SIGUSR1, previous)


def test_alerts_are_written_in_order_and_survive_an_overflow(log: Log) -> None:
    """``alert`` events (issue 10) are kept like status events when rows overflow."""

    async def main() -> None:
        broker = make_broker(log, queue_size=4, page_size=7)
        sub = broker.subscribe(JOB)
        sub.begin(0, replay=False)
        broker.publish_rows(JOB, log.write(1))
        broker.publish_alert(JOB, {"id": 1, "kind": "spike", "step": 1})
        await settle()
        first = await collect(sub)
        assert re.findall(rb"^event: (\w+)$", first, re.M) == [b"metrics", b"alert"]
        assert b'data: {"id":1,"kind":"spike","step":1}\n\n' in first
        for step in range(2, 40):
            broker.publish_rows(JOB, log.write(step))
            if step == 20:
                broker.publish_alert(JOB, {"id": 2, "kind": "nonfinite", "step": 20})
            await settle()
        out = await collect(sub)
        assert seqs(out) == list(range(2, 40)) and sub.catch_ups >= 1
        assert out.count(b"event: alert") == 1 and b'"nonfinite"' in out
        broker.publish_alert("job-without-subscribers", {"id": 3})  # a dictionary lookup

    run(main)
