"""Live-server fixtures for the SSE tests, and a small asynchronous SSE client.

Two kinds of real server (in-process ASGI transports hang on endless streams,
encode/httpx#2186):

- ``sse_server``: ``trainvis serve`` in a subprocess (``tests.conftest.ServerProcess``),
  with a short heartbeat and optional ``TRAINVIS_*`` overrides;
- ``threaded_server``: uvicorn on a free port in a thread of the test process, so
  a test can look inside the running broker (subscriber count, tasks on the loop).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from tests.conftest import API, ServerProcess, free_port
from trainvis.api.app import create_app
from trainvis.config import Settings
from trainvis.realtime.broker import InProcessBroker
from trainvis.store import open_store


@dataclass
class Event:
    """One dispatched SSE event (``event`` is ``":"`` for a comment line)."""

    event: str
    data: str
    id: str | None = None

    def json(self) -> Any:
        return json.loads(self.data)


@dataclass
class SSEStream:
    """An open stream; a background task parses it into ``events``."""

    response: httpx.Response
    events: asyncio.Queue[Event | None] = field(default_factory=asyncio.Queue)
    retry: int | None = None
    ended: bool = False
    raw: list[str] = field(default_factory=list)

    async def next(self, *, timeout: float = 10.0, comments: bool = False) -> Event:
        """The next event (comments skipped unless asked); fails on end or timeout."""
        while True:
            item = await asyncio.wait_for(self.events.get(), timeout)
            if item is None:
                raise EOFError("the stream ended")
            if comments or item.event != ":":
                return item

    async def take(self, count: int, *, timeout: float = 10.0) -> list[Event]:
        return [await self.next(timeout=timeout) for _ in range(count)]

    async def metrics_until(self, seq: int, *, timeout: float = 10.0) -> list[Event]:
        """``metrics`` events up to and including id ``seq`` (others are kept out)."""
        found: list[Event] = []
        while not found or int(found[-1].id or 0) < seq:
            item = await self.next(timeout=timeout)
            if item.event == "metrics":
                found.append(item)
        return found

    async def until_end(self, *, timeout: float = 10.0) -> list[Event]:
        rest: list[Event] = []
        while True:
            item = await asyncio.wait_for(self.events.get(), timeout)
            if item is None:
                return rest
            rest.append(item)

    async def _pump(self) -> None:
        event, last_id = "message", None
        data: list[str] = []
        try:
            async for line in self.response.aiter_lines():
                self.raw.append(line)
                if line == "":
                    if data:
                        await self.events.put(Event(event, "\n".join(data), last_id))
                    event, data, last_id = "message", [], None
                    continue
                name, _, value = line.partition(":")
                value = value[1:] if value.startswith(" ") else value
                if name == "":
                    await self.events.put(Event(":", value))
                elif name == "data":
                    data.append(value)
                elif name == "event":
                    event = value
                elif name == "id":
                    last_id = value
                elif name == "retry":
                    self.retry = int(value)
        except (httpx.HTTPError, asyncio.CancelledError):
            pass
        finally:
            self.ended = True
            self.events.put_nowait(None)


async def _open(
    client: httpx.AsyncClient, path: str, headers: dict[str, str] | None
) -> AsyncIterator[SSEStream]:
    async with client.stream("GET", path, headers=headers) as response:
        stream = SSEStream(response)
        if response.status_code != 200:
            await response.aread()
            yield stream
            return
        pump = asyncio.create_task(stream._pump())
        try:
            yield stream
        finally:
            pump.cancel()
            await asyncio.gather(pump, return_exceptions=True)


def open_stream(
    client: httpx.AsyncClient,
    job_id: str,
    *,
    since: int | None = None,
    last_event_id: int | None = None,
) -> Any:
    """``async with open_stream(client, "job-001") as stream`` → an :class:`SSEStream`."""
    from contextlib import asynccontextmanager

    query = "" if since is None else f"?since={since}"
    headers = None if last_event_id is None else {"Last-Event-ID": str(last_event_id)}
    return asynccontextmanager(_open)(client, f"{API}/training/{job_id}/stream{query}", headers)


def async_client(base_url: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=base_url, timeout=httpx.Timeout(30.0))


# ---------------------------------------------------------------------- servers


@pytest.fixture
def sse_server(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    """Start ``trainvis serve`` (heartbeat 0.5 s) with extra ``TRAINVIS_*`` variables."""
    started: list[ServerProcess] = []

    def start(**env: str) -> ServerProcess:
        name = f"sse-{len(started)}.db"
        server = ServerProcess(
            str(tmp_path / name),
            env={f"TRAINVIS_{key.upper()}": value for key, value in env.items()},
            args=["--sse-heartbeat", "0.5"],
        )
        started.append(server.start())
        return server

    yield start
    for server in started:
        server.stop()


class ThreadedServer:
    """uvicorn serving ``create_app`` in a thread; ``broker`` and ``loop`` are inspectable."""

    def __init__(self, db: str, *, queue_size: int = 1024) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.store = open_store(db)
        self.loop: asyncio.AbstractEventLoop | None = None
        outer = self

        class Broker(InProcessBroker):
            async def start(self) -> None:
                outer.loop = asyncio.get_running_loop()
                await super().start()

        self.broker = Broker(self.store, queue_size=queue_size, handle_signals=False)
        settings = Settings(db=db, sse_heartbeat=0.5, sse_queue_size=queue_size)
        app = create_app(settings, store=self.store, broker=self.broker)
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="warning", timeout_graceful_shutdown=3
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> ThreadedServer:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("threaded uvicorn did not start")
            time.sleep(0.02)
        return self

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` on the server's event loop and return its result."""
        assert self.loop is not None

        async def wrapper() -> Any:
            return fn()

        return asyncio.run_coroutine_threadsafe(wrapper(), self.loop).result(10)

    def task_count(self) -> int:
        return int(self.call(lambda: len(asyncio.all_tasks())))

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(15)
        self.store.close()


@pytest.fixture
def threaded_server(tmp_path: Path) -> Iterator[Callable[..., ThreadedServer]]:
    """Start uvicorn in a thread on a temp SQLite file; stopped after the test."""
    started: list[ThreadedServer] = []

    def start(**kwargs: Any) -> ThreadedServer:
        server = ThreadedServer(str(tmp_path / f"threaded-{len(started)}.db"), **kwargs).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
