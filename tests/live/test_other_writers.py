"""Rows written by another process (the SDK's local mode, `trainvis import --db`)
straight into the server's SQLite file still reach open streams, and a job
deleted elsewhere ends them."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.conftest import ServerProcess
from tests.live.conftest import async_client, open_stream
from tests.live.test_stream import new_job
from trainvis.models import parse_metric_rows
from trainvis.store import open_store

pytestmark = pytest.mark.live


def test_rows_from_another_writer_reach_the_stream(tmp_path: Path) -> None:
    db = str(tmp_path / "shared.db")

    async def main() -> None:
        with ServerProcess(db) as server:
            async with async_client(server.url) as http:
                job = await new_job(http)
                async with open_stream(http, job) as stream:
                    assert (await stream.next()).json()["type"] == "snapshot"
                    other = open_store(db)  # another process's view of the file
                    try:
                        rows = [{"step": s, "train_loss": 1 / (s + 1)} for s in range(3)]
                        await asyncio.to_thread(
                            other.write_metrics, job, parse_metric_rows(rows, max_rows=10)
                        )
                        events = await stream.take(3, timeout=5)
                        assert [e.event for e in events] == ["metrics"] * 3
                        assert [e.json()["step"] for e in events] == [0, 1, 2]
                        assert [int(e.id or 0) for e in events] == [1, 2, 3]
                        await asyncio.to_thread(other.delete_job, job)
                        rest = await stream.until_end(timeout=5)
                        assert rest[-1].event == "deleted"
                    finally:
                        other.close()

    asyncio.run(asyncio.wait_for(main(), 60))
