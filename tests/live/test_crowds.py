"""Crowds of readers against a real server (issue 13, item 5): full-history
streams are capped (503 + ``Retry-After`` beyond), a reader that stops reading
is cut off and frees its slot, and a trickled request body meets a deadline."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import API, ServerProcess

pytestmark = pytest.mark.live

#: Long metric names make a big body from few points: 30,000 rows ≈ 11 MB, far
#: more than loopback socket buffers (≤ 4 MiB) hold, so a reader that stops
#: reading really blocks the server's sends.
NAMES = [f"metric_{i}_{'x' * 60}" for i in range(4)]
ROWS = 30_000


@pytest.fixture
def start(db_url: str, tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    """Start ``trainvis serve`` on this test's store with ``TRAINVIS_*`` overrides."""
    started: list[ServerProcess] = []

    def run(**env: str) -> ServerProcess:
        server = ServerProcess(
            db_url, env={f"TRAINVIS_{key.upper()}": value for key, value in env.items()}
        )
        started.append(server.start())
        return server

    yield run
    for server in started:
        server.stop()


def big_job(server: ServerProcess) -> str:
    """A job whose full history is about 11 MB of JSON."""
    with httpx.Client(base_url=f"{server.url}{API}", timeout=120) as http:
        job = str(http.post("/training/jobs", json={"name": "crowd"}).json()["data"]["id"])
        for start in range(0, ROWS, 10_000):
            rows = [
                {"step": step, **{name: step * 0.5 + i for i, name in enumerate(NAMES)}}
                for step in range(start, start + 10_000)
            ]
            http.post(f"/training/{job}/metrics", json=rows).raise_for_status()
    return job


def open_reader(server: ServerProcess, path: str) -> socket.socket:
    """A raw connection with a tiny receive buffer that sent ``GET path``."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", server.port))
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    return sock


def status_line(sock: socket.socket) -> bytes:
    sock.settimeout(30)
    head = b""
    while b"\r\n" not in head:
        chunk = sock.recv(1)
        if not chunk:
            break
        head += chunk
    return head.split(b"\r\n", 1)[0]


def drain(sock: socket.socket, seconds: float = 60.0) -> tuple[bytes, bool]:
    """Everything left on ``sock`` and whether the server closed it (EOF or reset)."""
    sock.settimeout(seconds)
    chunks: list[bytes] = []
    try:
        while chunk := sock.recv(1 << 20):
            chunks.append(chunk)
    except TimeoutError:
        return b"".join(chunks), False
    except ConnectionResetError:
        pass
    return b"".join(chunks), True


def history(server: ServerProcess, job: str, query: str = "") -> httpx.Response:
    url = f"{server.url}{API}/training/{job}/metrics/history{query}"
    return httpx.get(url, timeout=60)


def test_streams_beyond_the_cap_get_503_with_retry_after(
    start: Callable[..., ServerProcess],
) -> None:
    """issue 13: at most ``max_streaming_reads`` full-history streams at once;
    one more waits ``streaming_read_wait`` seconds for a slot, then gets 503."""
    server = start(max_streaming_reads="2", streaming_read_wait="0.5", send_timeout="60")
    job = big_job(server)
    path = f"{API}/training/{job}/metrics/history"
    holders = [open_reader(server, path), open_reader(server, path)]
    try:
        assert [status_line(sock) for sock in holders] == [b"HTTP/1.1 200 OK"] * 2
        refused = history(server, job)
        assert refused.status_code == 503
        assert refused.headers["retry-after"].isdigit()
        assert refused.json()["error"]["code"] == "service_unavailable"
        # CSV is the same stream; pages and downsampled reads are not streams.
        assert history(server, job, "?format=csv").status_code == 503
        assert history(server, job, "?limit=100&offset=5").status_code == 200
        assert len(history(server, job, "?max_points=100").json()["data"]) > 0
    finally:
        for sock in holders:
            sock.close()
    deadline = time.monotonic() + 30
    while (answer := history(server, job)).status_code == 503:  # closed: slots freed
        assert time.monotonic() < deadline, "closed streams did not free their slots"
        time.sleep(0.2)
    assert answer.status_code == 200
    assert len(answer.json()["data"]) == ROWS


def test_a_reader_that_stops_reading_is_cut_off_and_frees_its_slot(
    start: Callable[..., ServerProcess],
) -> None:
    """issue 13: a send blocked past ``send_timeout`` drops the connection and
    frees the stream slot, so the next reader is served."""
    server = start(max_streaming_reads="1", send_timeout="1")
    job = big_job(server)
    stalled = open_reader(server, f"{API}/training/{job}/metrics/history")
    try:
        assert status_line(stalled) == b"HTTP/1.1 200 OK"  # then it reads no more
        deadline = time.monotonic() + 60
        while (answer := history(server, job)).status_code != 200:
            assert answer.status_code == 503
            assert time.monotonic() < deadline, "the stalled reader kept its slot"
            time.sleep(0.5)
        assert len(answer.json()["data"]) == ROWS  # the next reader gets everything
        rest, closed = drain(stalled)
    finally:
        stalled.close()
    assert closed, "the server kept the stalled connection open"
    assert not rest.endswith(b"0\r\n\r\n"), "the stalled reader got the whole body"


def test_a_trickled_body_meets_the_body_deadline(start: Callable[..., ServerProcess]) -> None:
    """issue 13: one byte every 0.3 s never pauses past ``body_timeout`` but
    still gets 408 once ``body_deadline`` has passed."""
    server = start(body_timeout="2", body_deadline="3")
    job = httpx.post(f"{server.url}{API}/training/jobs", json={"name": "t"}).json()["data"]["id"]
    body = json.dumps([{"step": 1, "loss": 0.5}]).ljust(100).encode()
    answer = b""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(
            f"POST {API}/training/{job}/metrics HTTP/1.1\r\nHost: x\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        )
        sock.settimeout(0.3)
        for byte in body[:60]:  # 18 s at most; the deadline is 3 s
            try:
                sock.sendall(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                break
            try:
                answer += sock.recv(65536)
            except TimeoutError:
                continue
            if answer:
                break
        # The answer came while the body was still trickling in (no pause ever
        # reached body_timeout), i.e. the whole-body deadline cut it off.
        assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
        sock.settimeout(10)
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except (TimeoutError, ConnectionResetError):
            pass
    assert b'"request_timeout"' in answer
    assert httpx.get(f"{server.url}{API}/training/jobs", timeout=5).status_code == 200
