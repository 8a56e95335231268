"""The MetricStore contract, run against every backend (SQLite file, PostgreSQL).

Each test gets an empty store through the ``store`` fixture (``db_url`` is
parametrised over the backends in ``tests/conftest.py``). Nothing is mocked.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator

import pytest

from trainvis.errors import InvalidArgument, InvalidStatusTransition, JobExists, JobNotFound
from trainvis.events import EventKind, NewEvent
from trainvis.models import JobCreate, JobStatus, MetricRow
from trainvis.store import JobFilter, MetricStore, open_store


def rows(steps: range | list[int], **metrics: float) -> list[MetricRow]:
    """One row per step; each metric's value is ``value + step / 1000``."""
    return [MetricRow(step=s, values={k: v + s / 1000 for k, v in metrics.items()}) for s in steps]


def new_job(store: MetricStore, name: str = "run", **kwargs: object) -> str:
    return store.create_job(JobCreate(name=name, **kwargs)).id  # type: ignore[arg-type]


def steps_of(found: list[dict[str, object]]) -> list[object]:
    return [row["step"] for row in found]


# ---------------------------------------------------------------------- jobs


def test_create_get_list_delete(store: MetricStore) -> None:
    job = store.create_job(
        JobCreate(
            name="ResNet run",
            model_name="resnet50",
            total_epochs=3,
            total_steps=300,
            config={"lr": 0.1, "nested": {"b": [1, 2]}, "a": None},
            tags=["vision", "baseline"],
        )
    )
    assert job.id == "job-001" and job.status is JobStatus.PENDING
    got = store.get_job(job.id)
    assert (got.name, got.model_name, got.total_epochs, got.total_steps) == (
        "ResNet run",
        "resnet50",
        3,
        300,
    )
    assert got.config == {"lr": 0.1, "nested": {"b": [1, 2]}, "a": None}
    assert list(got.config) == ["lr", "nested", "a"]  # key order as posted
    assert got.tags == ["vision", "baseline"]
    assert got.point_count == 0 and got.metric_names == [] and got.last_seq == 0
    assert got.summary == {"last": {}, "best": {}, "has_nan": False}
    assert got.current_step is None and got.eta_seconds is None
    assert got.created_at == pytest.approx(time.time(), abs=60)

    second = new_job(store, "BERT 100%_done", model_name="bert", tags=["nlp"])
    listed, total = store.list_jobs()
    assert total == 2 and [j.id for j in listed] == [second, job.id]  # newest first
    assert store.list_jobs(filters=JobFilter(tag="vision"))[1] == 1
    assert store.list_jobs(filters=JobFilter(tag="visio"))[1] == 0
    assert [j.id for j in store.list_jobs(filters=JobFilter(q="BERT"))[0]] == [second]
    assert [j.id for j in store.list_jobs(filters=JobFilter(q="RESNET5"))[0]] == [job.id]
    assert [j.id for j in store.list_jobs(filters=JobFilter(q="100%_"))[0]] == [second]
    assert store.list_jobs(filters=JobFilter(q="0%x"))[1] == 0  # % and _ are literal
    assert store.list_jobs(filters=JobFilter(status=JobStatus.RUNNING))[1] == 0
    page, total = store.list_jobs(limit=1, offset=1)
    assert total == 2 and [j.id for j in page] == [job.id]

    store.write_metrics(job.id, rows(range(3), train_loss=1.0))
    assert store.total_points() == 3
    store.delete_job(job.id)
    with pytest.raises(JobNotFound):
        store.get_job(job.id)
    with pytest.raises(JobNotFound):
        store.delete_job(job.id)
    assert store.total_points() == 0
    assert [j.id for j in store.list_jobs()[0]] == [second]


def test_list_ties_broken_by_id_descending(store: MetricStore) -> None:
    ids = [new_job(store, f"j{i}") for i in range(12)]
    listed, _ = store.list_jobs(limit=100)
    created = [j.created_at for j in listed]
    assert created == sorted(created, reverse=True)
    for a, b in zip(listed, listed[1:], strict=False):
        if a.created_at == b.created_at:
            assert a.id > b.id
    assert sorted(j.id for j in listed) == sorted(ids)


def test_unknown_job_raises_everywhere(store: MetricStore) -> None:
    calls = [
        lambda: store.get_job("nope"),
        lambda: store.delete_job("nope"),
        lambda: store.set_status("nope", JobStatus.RUNNING),
        lambda: store.write_metrics("nope", rows([1], a=1.0)),
        lambda: store.count_rows("nope"),
        lambda: list(store.iter_rows("nope")),
        lambda: store.rows_at_steps("nope", [1]),
        lambda: store.read_series("nope", ["a"]),
        lambda: store.rows_since("nope", 0),
        lambda: store.last_seq("nope"),
    ]
    for call in calls:
        with pytest.raises(JobNotFound):
            call()


def test_generated_ids_skip_client_ids_and_never_repeat(store: MetricStore) -> None:
    assert new_job(store) == "job-001"
    assert new_job(store) == "job-002"
    assert new_job(store, id="job-005") == "job-005"
    assert new_job(store) == "job-006"
    assert new_job(store, id="job-3") == "job-3"  # a lower client id does not lower it
    assert new_job(store, id="my-run") == "my-run"
    assert new_job(store) == "job-007"
    with pytest.raises(JobExists):
        new_job(store, id="job-005")
    store.delete_job("job-007")
    assert new_job(store) == "job-008"  # deleted ids are not generated again
    assert new_job(store, id="job-007") == "job-007"  # a client may take one again (issue 13)
    store.delete_job("my-run")
    assert new_job(store, id="my-run") == "my-run"
    with pytest.raises(JobExists):
        new_job(store, id="my-run")
    assert new_job(store, id="job-1000") == "job-1000"
    assert new_job(store) == "job-1001"


def test_status_transitions(store: MetricStore) -> None:
    job = new_job(store)
    same, change = store.set_status(job, JobStatus.PENDING)
    assert change is None and same.status is JobStatus.PENDING
    running, change = store.set_status(job, JobStatus.RUNNING, message="go")
    assert change is not None
    assert (change.status, change.previous_status, change.message) == (
        JobStatus.RUNNING,
        JobStatus.PENDING,
        "go",
    )
    assert running.started_at is not None and running.finished_at is None
    assert running.message == "go"
    again, change = store.set_status(job, JobStatus.RUNNING)
    assert change is None and again.started_at == running.started_at
    done, change = store.set_status(job, JobStatus.COMPLETED)
    assert change is not None and done.finished_at is not None
    assert done.started_at == running.started_at
    with pytest.raises(InvalidStatusTransition):
        store.set_status(job, JobStatus.PENDING)
    resumed, _ = store.set_status(job, JobStatus.RUNNING)
    assert resumed.finished_at is None and resumed.started_at == running.started_at
    store.set_status(job, JobStatus.PAUSED)
    failed, _ = store.set_status(job, JobStatus.FAILED)
    assert failed.finished_at is not None
    other = new_job(store)
    imported, _ = store.set_status(other, JobStatus.COMPLETED)  # pending -> completed: fine
    assert imported.started_at is None and imported.finished_at is not None
    counts = store.status_counts()
    assert counts == {
        "pending": 0,
        "running": 0,
        "paused": 0,
        "completed": 1,
        "failed": 1,
        "cancelled": 0,
    }


# ---------------------------------------------------------------------- writes


def test_upsert_merges_and_keeps_nonfinite(store: MetricStore) -> None:
    job = new_job(store)
    result = store.write_metrics(
        job,
        [
            MetricRow(step=5, values={"train_loss": 0.5, "acc": 0.1}, epoch=1.0, timestamp=100.0),
            MetricRow(step=3, values={"train_loss": math.nan}),
            MetricRow(step=5, values={"acc": 0.2, "lr": math.inf}),  # same step: merges
            MetricRow(step=4, values={"train_loss": -math.inf}, epoch=0.5),
        ],
    )
    # ``points`` counts values stored: step 5's two rows merge into 3 values (issue 13).
    assert (result.accepted, result.points, result.last_step) == (4, 5, 5)
    assert [seq for seq, _ in result.rows] == [1, 2, 3]
    assert [row["step"] for _, row in result.rows] == [3, 4, 5]
    found = list(store.iter_rows(job))
    assert found[0] == {"step": 3, "timestamp": found[0]["timestamp"], "train_loss": "NaN"}
    assert found[1]["train_loss"] == "-Infinity" and found[1]["epoch"] == 0.5
    assert found[2] == {
        "step": 5,
        "epoch": 1,
        "timestamp": "1970-01-01T00:01:40.000Z",
        "acc": 0.2,
        "lr": "Infinity",
        "train_loss": 0.5,
    }
    job_row = store.get_job(job)
    assert job_row.point_count == 5 and job_row.current_step == 5
    assert job_row.current_epoch == 1.0
    assert job_row.metric_names == ["acc", "lr", "train_loss"]
    assert job_row.summary["has_nan"] is True
    assert job_row.summary["last"] == {"acc": 0.2, "lr": "Infinity", "train_loss": 0.5}

    # A re-post replaces given keys, keeps the others, keeps the epoch when absent.
    again = store.write_metrics(job, [MetricRow(step=5, values={"acc": 0.9}, timestamp=200.0)])
    assert list(again.rows) == [
        (
            4,
            {
                "step": 5,
                "epoch": 1,
                "timestamp": "1970-01-01T00:03:20.000Z",
                "acc": 0.9,
                "lr": "Infinity",
                "train_loss": 0.5,
            },
        )
    ]
    assert store.rows_at_steps(job, [5]) == [again.rows[0][1]]
    assert store.get_job(job).point_count == 5
    series = store.read_series(job, ["train_loss", "lr", "missing"])
    assert set(series) == {"train_loss", "lr"}
    loss = series["train_loss"]
    assert loss.steps.tolist() == [3, 4, 5]
    assert math.isnan(loss.values[0]) and loss.values[1] == -math.inf and loss.values[2] == 0.5
    assert series["lr"].values.tolist() == [math.inf]


def test_nan_replaced_by_finite_clears_has_nan(store: MetricStore) -> None:
    job = new_job(store)
    store.write_metrics(job, [MetricRow(step=1, values={"val_loss": math.nan})])
    assert store.get_job(job).summary["has_nan"] is True
    store.write_metrics(job, [MetricRow(step=1, values={"val_loss": 0.3})])
    summary = store.get_job(job).summary
    assert summary["has_nan"] is False
    assert summary["best"]["val_loss"] == {"value": 0.3, "step": 1}


def test_summary_best_ties_and_rescans(store: MetricStore) -> None:
    job = new_job(store)
    loss = [(10, 0.5), (20, 0.2), (30, 0.2), (40, math.nan), (50, 0.4)]
    store.write_metrics(job, [MetricRow(step=s, values={"train_loss": v}) for s, v in loss])
    acc = [(10, 0.7), (20, 0.9), (30, 0.9), (40, math.inf)]
    store.write_metrics(job, [MetricRow(step=s, values={"val_accuracy": v}) for s, v in acc])
    store.write_metrics(job, [MetricRow(step=s, values={"lr": 1.0 / s}) for s in (10, 20)])
    summary = store.get_job(job).summary
    assert summary["best"] == {
        "train_loss": {"value": 0.2, "step": 20},  # tie: earliest step
        "val_accuracy": {"value": 0.9, "step": 20},  # best ignores non-finite
    }
    assert summary["last"]["train_loss"] == 0.4 and summary["last"]["val_accuracy"] == "Infinity"

    # A tie arriving out of order at an earlier step takes over.
    store.write_metrics(job, [MetricRow(step=5, values={"train_loss": 0.2})])
    assert store.get_job(job).summary["best"]["train_loss"] == {"value": 0.2, "step": 5}
    assert store.get_job(job).summary["last"]["train_loss"] == 0.4  # last = largest step

    # Overwriting the extremes rescans the stored points.
    store.write_metrics(
        job,
        [
            MetricRow(step=5, values={"train_loss": 0.9, "val_accuracy": 0.1}),
            MetricRow(step=20, values={"train_loss": 0.6, "val_accuracy": 0.1}),
            MetricRow(step=30, values={"val_accuracy": 0.8}),
        ],
    )
    summary = store.get_job(job).summary
    assert summary["best"]["train_loss"] == {"value": 0.2, "step": 30}
    assert summary["best"]["val_accuracy"] == {"value": 0.8, "step": 30}
    store.write_metrics(job, [MetricRow(step=30, values={"train_loss": 0.45})])
    assert store.get_job(job).summary["best"]["train_loss"] == {"value": 0.4, "step": 50}


def test_progress_fields_and_eta(store: MetricStore) -> None:
    job = new_job(store, total_steps=1000)
    now = time.time()
    store.write_metrics(
        job,
        [
            MetricRow(step=s, values={"train_loss": 1.0}, epoch=s / 100, timestamp=now - 100 + s)
            for s in range(0, 100, 10)
        ],
    )
    store.set_status(job, JobStatus.RUNNING)
    got = store.get_job(job)
    assert got.current_step == 90 and got.current_epoch == 0.9 and got.row_count == 10
    assert got.progress == pytest.approx(0.09)
    assert got.first_timestamp == pytest.approx(now - 100)
    assert got.eta_seconds == pytest.approx(910.0, abs=0.2)  # one step per second


# ---------------------------------------------------------------------- sequence numbers


def test_sequence_numbers(store: MetricStore) -> None:
    job = new_job(store)
    assert store.last_seq(job) == 0 and store.rows_since(job, 0) == []
    first = store.write_metrics(job, rows([1, 2, 3], a=1.0))
    assert [seq for seq, _ in first.rows] == [1, 2, 3]
    again = store.write_metrics(job, rows([2], a=5.0))  # a re-posted step: a new seq
    assert [seq for seq, _ in again.rows] == [4]
    assert store.last_seq(job) == 4
    since = store.rows_since(job, 0)
    assert [(seq, row["step"]) for seq, row in since] == [(1, 1), (3, 3), (4, 2)]
    assert since[2][1]["a"] == 5.002
    assert [seq for seq, _ in store.rows_since(job, 3)] == [4]
    assert store.rows_since(job, 4) == [] and store.rows_since(job, 99) == []
    assert [seq for seq, _ in store.rows_since(job, 0, limit=2)] == [1, 3]
    other = new_job(store)  # sequences are per job
    assert [seq for seq, _ in store.write_metrics(other, rows([7], a=1.0)).rows] == [1]


def test_recreating_a_deleted_id_starts_empty_with_seqs_above(store: MetricStore) -> None:
    """issue 13: a deleted client id can be created again; the new job is empty and
    its sequence numbers continue above the deleted job's, so a stale Last-Event-ID
    (``rows_since`` the old seq) replays every row of the new job."""
    job = new_job(store, id="run-x", tags=["old"])
    store.write_metrics(job, rows([1, 2, 3], train_loss=1.0))
    store.set_status(job, JobStatus.COMPLETED)
    assert store.add_event(job, NewEvent(EventKind.NOTE, 2, "old note")) is not None
    old_seq = store.last_seq(job)
    store.delete_job(job)

    again = store.create_job(JobCreate(name="again", id="run-x"))
    assert (again.id, again.name, again.status, again.tags) == (
        "run-x",
        "again",
        JobStatus.PENDING,
        [],
    )
    assert (again.point_count, again.metric_names, again.current_step) == (0, [], None)
    assert again.summary == {"last": {}, "best": {}, "has_nan": False}
    assert list(store.iter_rows(job)) == [] and store.count_rows(job) == 0
    assert store.list_events(job) == ([], 0) and store.read_series(job, ["train_loss"]) == {}
    assert store.last_seq(job) > old_seq and store.rows_since(job, 0) == []
    assert store.total_points() == 0

    written = store.write_metrics(job, rows([1], loss=2.0))
    assert all(seq > old_seq for seq, _ in written.rows)
    stale = store.rows_since(job, old_seq)
    assert [(row["step"], row.get("loss"), "train_loss" in row) for _, row in stale] == [
        (1, 2.001, False)
    ]
    with pytest.raises(JobExists):
        new_job(store, id="run-x")
    second_seq = store.last_seq(job)
    store.delete_job(job)
    assert store.create_job(JobCreate(name="third", id="run-x")).last_seq > second_seq
    assert new_job(store) == "job-001"  # generated ids are unaffected


def test_metric_limit_holds_for_concurrent_writers(db_url: str) -> None:
    """issue 13: the per-job metric-count limit is checked in the write transaction:
    of two writers adding different new names at once, only one can pass."""
    stores = [open_store(db_url), open_store(db_url)]

    def writer(index: int, job: str, barrier: threading.Barrier, outcome: list[str]) -> None:
        names = {f"m{index}_{n}": 1.0 for n in range(5)}
        barrier.wait()
        try:
            stores[index].write_metrics(job, rows([1 + index], **names), max_metrics=8)
            outcome.append("stored")
        except InvalidArgument as exc:
            details = exc.details if isinstance(exc.details, list) else []
            outcome.append("refused" if details[0]["type"] == "limit_exceeded" else repr(exc))
        except BaseException as exc:  # pragma: no cover - reported by the assertion
            outcome.append(repr(exc))

    try:
        for round_ in range(5):
            job = new_job(stores[0])
            stores[0].write_metrics(job, rows([0], base=1.0), max_metrics=8)
            outcome: list[str] = []
            barrier = threading.Barrier(2)
            threads = [
                threading.Thread(target=writer, args=(i, job, barrier, outcome)) for i in range(2)
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(60)
            assert sorted(outcome) == ["refused", "stored"], round_
            assert len(stores[1].get_job(job).metric_names) == 6
    finally:
        for opened in stores:
            opened.close()


# ---------------------------------------------------------------------- reads


@pytest.fixture
def big_job(store: MetricStore) -> Iterator[str]:
    """12,001 steps (0…12000): ``dense`` on every step, ``sparse`` on every third."""
    job = new_job(store)
    for start in range(0, 12001, 1000):
        batch = [
            MetricRow(
                step=s,
                values={"dense": s * 0.5, **({"sparse": -s} if s % 3 == 0 else {})},
                epoch=s / 1000 if s % 2 == 0 else None,
                timestamp=1_700_000_000.0 + s,
            )
            for s in range(start, min(start + 1000, 12001))
        ]
        store.write_metrics(job, batch)
    yield job


def test_iter_rows_chunks_filters_and_paging(store: MetricStore, big_job: str) -> None:
    job = big_job
    everything = list(store.iter_rows(job))
    assert steps_of(everything) == list(range(12001))
    assert everything[3] == {
        "step": 3,
        "timestamp": "2023-11-14T22:13:23.000Z",
        "dense": 1.5,
        "sparse": -3.0,
    }
    assert everything[4]["epoch"] == 0.004 and "epoch" not in everything[5]
    assert "sparse" not in everything[4]
    page = list(store.iter_rows(job, offset=4990, limit=20))  # across a chunk boundary
    assert steps_of(page) == list(range(4990, 5010))
    assert steps_of(list(store.iter_rows(job, offset=11995))) == list(range(11995, 12001))
    assert list(store.iter_rows(job, offset=20000)) == []

    sparse = list(store.iter_rows(job, metrics=["sparse"]))
    assert steps_of(sparse) == list(range(0, 12001, 3))
    assert all(set(row) <= {"step", "epoch", "timestamp", "sparse"} for row in sparse)
    sparse_page = list(store.iter_rows(job, metrics=["sparse"], offset=1660, limit=10))
    assert steps_of(sparse_page) == list(range(4980, 5010, 3))
    both = list(store.iter_rows(job, metrics=["sparse", "dense"], start_step=100, end_step=103))
    assert list(both[2]) == ["step", "epoch", "timestamp", "sparse", "dense"]
    assert steps_of(both) == [100, 101, 102, 103]
    assert list(store.iter_rows(job, metrics=["unknown"])) == []
    ranged = list(store.iter_rows(job, start_step=5000, end_step=10000, limit=7000))
    assert steps_of(ranged) == list(range(5000, 10001))

    assert store.count_rows(job) == 12001
    assert store.count_rows(job, metrics=["sparse"]) == 4001
    assert store.count_rows(job, metrics=["sparse"], start_step=1, end_step=6) == 2
    assert store.count_rows(job, metrics=["unknown"]) == 0
    assert store.count_rows(job, start_step=12000) == 1
    assert store.total_points() == 12001 + 4001
    assert store.get_job(job).point_count == 16002


def test_iter_rows_is_lazy(store: MetricStore, big_job: str) -> None:
    stream = store.iter_rows(big_job)
    first = next(iter(stream))
    assert first["step"] == 0
    store.write_metrics(big_job, rows([20000], dense=1.0))  # writers are not blocked
    assert sum(1 for _ in stream) == 12001  # the rest, including the new row


def test_rows_at_steps(store: MetricStore, big_job: str) -> None:
    found = store.rows_at_steps(big_job, [9, 3, 3, 4, 99999, 11000])
    assert steps_of(found) == [3, 4, 9, 11000]
    assert found[0]["sparse"] == -3.0 and "sparse" not in found[1]
    scattered = list(range(0, 12001, 997))
    assert steps_of(store.rows_at_steps(big_job, scattered)) == scattered
    only = store.rows_at_steps(big_job, [3, 4], metrics=["sparse"])
    assert [set(row) - {"timestamp", "epoch"} for row in only] == [{"step", "sparse"}, {"step"}]
    assert store.rows_at_steps(big_job, []) == []


def test_read_series(store: MetricStore, big_job: str) -> None:
    series = store.read_series(big_job, ["sparse", "dense"], start_step=10, end_step=20)
    sparse = series["sparse"]
    assert list(series) == ["sparse", "dense"]
    assert sparse.steps.tolist() == [12, 15, 18] and sparse.values.tolist() == [-12, -15, -18]
    assert sparse.epochs is None and sparse.timestamps is None
    assert len(series["dense"]) == 11
    timed = store.read_series(big_job, ["sparse"], with_time=True)["sparse"]
    assert len(timed) == 4001
    assert timed.timestamps is not None and timed.epochs is not None
    assert timed.timestamps[:2].tolist() == [1_700_000_000.0, 1_700_000_003.0]
    assert timed.epochs[0] == 0.0 and math.isnan(timed.epochs[1]) and timed.epochs[2] == 0.006
    assert store.read_series(big_job, ["unknown"]) == {}
    assert store.read_series(big_job, ["dense"], start_step=50000) == {}


def test_totals_over_jobs(store: MetricStore) -> None:
    assert store.total_points() == 0
    assert store.status_counts() == {status.value: 0 for status in JobStatus}
    a, b = new_job(store), new_job(store)
    new_job(store)
    store.write_metrics(a, rows(range(10), x=1.0, y=2.0))
    store.write_metrics(b, rows(range(5), x=1.0))
    store.set_status(b, JobStatus.COMPLETED)
    assert store.total_points() == 25
    counts = store.status_counts()
    assert (counts["pending"], counts["running"], counts["completed"]) == (1, 1, 1)


# ---------------------------------------------------------------------- durability


def test_reopen_keeps_everything(db_url: str) -> None:
    first = open_store(db_url)
    job = new_job(first)
    first.write_metrics(job, rows(range(100), train_loss=1.0))
    first.set_status(job, JobStatus.RUNNING)
    first.close()
    second = open_store(db_url)  # migrations run again: a no-op
    try:
        got = second.get_job(job)
        assert got.point_count == 100 and got.status is JobStatus.RUNNING
        assert second.last_seq(job) == 100
        assert new_job(second) == "job-002"
        assert [s for s, _ in second.write_metrics(job, rows([100], train_loss=0.0)).rows] == [101]
    finally:
        second.close()


# ---------------------------------------------------------------------- concurrency


def test_concurrent_writers_on_one_job(db_url: str) -> None:
    """Two threads, each with its own store (for PostgreSQL: two "replicas"),
    write interleaved and overlapping steps into one job at once."""
    stores = [open_store(db_url), open_store(db_url)]
    try:
        job = new_job(stores[0])
        seqs: list[list[int]] = [[], []]
        errors: list[BaseException] = []
        barrier = threading.Barrier(2)

        def writer(index: int) -> None:
            try:
                barrier.wait()
                for batch in range(25):
                    # Thread 0 writes even steps, thread 1 odd ones; both write step 0.
                    steps = [0, *range(batch * 100 + index + 2, batch * 100 + 102, 2)]
                    result = stores[index].write_metrics(job, rows(steps, v=float(index)))
                    seqs[index].extend(seq for seq, _ in result.rows)
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=writer, args=(i,)) for i in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert not errors, errors
        every = sorted(seqs[0] + seqs[1])
        assert every == list(range(1, len(every) + 1))  # unique and gap-free
        assert len(every) == 2 * 25 * 51
        store = stores[1]
        assert store.last_seq(job) == len(every)
        assert store.count_rows(job) == 1 + 2500  # no lost rows
        stored = list(store.iter_rows(job))
        expected = [0, *range(2, 2502)]
        assert steps_of(stored) == expected
        current = store.rows_since(job, 0, limit=10_000)
        assert sorted(row["step"] for _, row in current) == expected
        assert len({seq for seq, _ in current}) == 2501
        assert store.get_job(job).point_count == 2501
    finally:
        for opened in stores:
            opened.close()


def test_concurrent_job_creation_gives_unique_ids(db_url: str) -> None:
    stores = [open_store(db_url), open_store(db_url)]
    try:
        made: list[list[str]] = [[], []]
        errors: list[BaseException] = []
        barrier = threading.Barrier(2)

        def creator(index: int) -> None:
            try:
                barrier.wait()
                for n in range(20):
                    if n % 5 == 4:  # a client id of the generated form raises the counter
                        job_id = f"job-{10_000 * (n // 5 + 1) + 5_000 * index}"
                        made[index].append(new_job(stores[index], id=job_id))
                    else:
                        made[index].append(new_job(stores[index]))
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=creator, args=(i,)) for i in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert not errors, errors
        every = made[0] + made[1]
        assert len(every) == 40 and len(set(every)) == 40
        assert stores[0].list_jobs(limit=1000)[1] == 40
        highest = max(int(job_id.split("-")[1]) for job_id in every)
        assert highest >= 45000 and new_job(stores[1]) == f"job-{highest + 1}"
    finally:
        for opened in stores:
            opened.close()


# ---------------------------------------------------------------------- PostgreSQL specifics


@pytest.fixture
def pg_empty(pg_url: str) -> str:
    """The session's PostgreSQL database with an empty schema."""
    from tests.conftest import _fresh_pg_schema

    _fresh_pg_schema(pg_url)
    return pg_url


def _pg_scalar(url: str, sql: str) -> object:
    import psycopg

    with psycopg.connect(url) as conn:
        row = conn.execute(sql.encode()).fetchone()
        return row[0] if row else None


@pytest.mark.postgres
def test_pg_migrations_are_versioned_and_idempotent(pg_empty: str) -> None:
    import psycopg

    from trainvis.store.postgres_schema import MIGRATIONS, migrate

    open_store(pg_empty).close()
    open_store(pg_empty).close()
    assert _pg_scalar(pg_empty, "SELECT count(*) FROM schema_version") == len(MIGRATIONS)
    extra = "CREATE TABLE upgrade_probe (id integer)"
    with psycopg.connect(pg_empty, autocommit=True) as conn:
        assert migrate(conn, (*MIGRATIONS, extra)) == len(MIGRATIONS) + 1
        assert migrate(conn, (*MIGRATIONS, extra)) == len(MIGRATIONS) + 1  # applied once
    assert _pg_scalar(pg_empty, "SELECT count(*) FROM upgrade_probe") == 0
    with pytest.raises(RuntimeError, match="newer"):
        open_store(pg_empty)


@pytest.mark.postgres
def test_pg_upgrade_keeps_data(pg_empty: str) -> None:
    import psycopg

    from trainvis.store.postgres_schema import MIGRATIONS, migrate

    with psycopg.connect(pg_empty, autocommit=True) as conn:
        migrate(conn, MIGRATIONS[:0])  # an "old" database: only the version table
        migrate(conn, MIGRATIONS)
    store = open_store(pg_empty)
    try:
        job = new_job(store)
        store.write_metrics(job, rows(range(3), a=1.0))
    finally:
        store.close()
    reopened = open_store(pg_empty)
    try:
        assert reopened.get_job(job).point_count == 3
    finally:
        reopened.close()


@pytest.mark.postgres
def test_pg_replicas_starting_together_migrate_once(pg_empty: str) -> None:
    opened: list[MetricStore] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def start() -> None:
        try:
            barrier.wait()
            opened.append(open_store(pg_empty))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    for store in opened:
        store.close()
    assert not errors and len(opened) == 4
    from trainvis.store.postgres_schema import MIGRATIONS

    versions = _pg_scalar(pg_empty, "SELECT count(*) FROM schema_version")
    assert versions == len(MIGRATIONS)  # each applied once


@pytest.mark.postgres
def test_pg_stores_nonfinite_natively(pg_empty: str) -> None:
    store = open_store(pg_empty)
    try:
        job = new_job(store)
        store.write_metrics(job, [MetricRow(step=1, values={"a": math.nan, "b": -math.inf})])
    finally:
        store.close()
    assert _pg_scalar(pg_empty, "SELECT count(*) FROM points WHERE value = 'NaN'") == 1
    assert _pg_scalar(pg_empty, "SELECT count(*) FROM points WHERE value = '-Infinity'") == 1


@pytest.mark.postgres
def test_pg_pool_recovers_from_dropped_connections(pg_empty: str) -> None:
    import psycopg

    store = open_store(pg_empty)
    try:
        job = new_job(store)
        store.write_metrics(job, rows(range(3), a=1.0))
        database = pg_empty.rsplit("/", 1)[1]
        with psycopg.connect(pg_empty, autocommit=True) as admin:
            killed = admin.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = %s AND application_name = 'trainvis'",
                (database,),
            ).fetchone()
        assert killed and killed[0] >= 1
        store.write_metrics(job, rows(range(3, 6), a=1.0))
        assert store.count_rows(job) == 6
    finally:
        store.close()


@pytest.mark.postgres
def test_pg_unreachable_server_is_a_store_error() -> None:
    from trainvis.store import StoreError

    with pytest.raises(StoreError):
        open_store("postgresql://postgres@127.0.0.1:1/none?connect_timeout=2")
