"""Hostile clients against a real server: huge bodies, slow loris, stalled
bodies, too many streams; the server answers each and keeps serving."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import API, ServerProcess
from trainvis.config import Settings
from trainvis.server import insecure_reason, is_loopback

pytestmark = pytest.mark.live


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    env = {
        "TRAINVIS_HEADER_TIMEOUT": "1",
        "TRAINVIS_BODY_TIMEOUT": "1",
        "TRAINVIS_MAX_SUBSCRIBERS_PER_JOB": "2",
        "TRAINVIS_MAX_SUBSCRIBERS": "3",
    }
    with ServerProcess(str(tmp_path / "h.db"), env=env) as running:
        yield running


def connect(server: ServerProcess) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    return sock


def read_all(sock: socket.socket, deadline: float = 10.0) -> bytes:
    sock.settimeout(deadline)
    chunks = []
    try:
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    except (TimeoutError, ConnectionResetError):
        pass
    return b"".join(chunks)


def healthy(server: ServerProcess) -> bool:
    return httpx.get(f"{server.url}{API}/training/jobs", timeout=5).status_code == 200


def new_job(server: ServerProcess) -> str:
    response = httpx.post(f"{server.url}{API}/training/jobs", json={"name": "h"})
    return str(response.json()["data"]["id"])


def test_a_100_mb_declared_body_is_refused_before_reading(server: ServerProcess) -> None:
    job = new_job(server)
    with connect(server) as sock:
        sock.sendall(
            f"POST {API}/training/{job}/metrics HTTP/1.1\r\nHost: x\r\n"
            "Content-Type: application/json\r\n"
            f"Content-Length: {100 * 1024 * 1024}\r\n\r\n".encode()
        )
        sock.sendall(b"[" + b" " * 65536)
        answer = read_all(sock)
    assert answer.startswith(b"HTTP/1.1 413")
    assert b'"payload_too_large"' in answer
    assert healthy(server)


def test_a_100_mb_chunked_body_is_cut_off_at_the_limit(server: ServerProcess) -> None:
    job = new_job(server)
    sent = 0
    with connect(server) as sock:
        sock.sendall(
            f"POST {API}/training/{job}/metrics HTTP/1.1\r\nHost: x\r\n"
            "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
        )
        chunk = b" " * (1024 * 1024)
        try:
            while sent < 100 * 1024 * 1024:
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass
        answer = read_all(sock)
    assert b" 413 " in answer.split(b"\r\n", 1)[0]
    assert sent < 100 * 1024 * 1024, "the server read the whole 100 MB"
    assert healthy(server)


def closed_within(sock: socket.socket, seconds: float) -> bool:
    """Whether the server closes ``sock`` (EOF or reset) within ``seconds``."""
    sock.settimeout(seconds)
    try:
        while sock.recv(65536):
            pass
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True
    return True


def test_slow_loris_headers_are_cut_off(server: ServerProcess) -> None:
    with connect(server) as idle, connect(server) as loris:
        loris.sendall(b"GET " + API.encode() + b"/training/jobs HTTP/1.1\r\nHost: x\r\n")
        # header timeout 1 s; give it a generous margin on a busy machine
        assert closed_within(idle, 6), "a connection that sends nothing stays open"
        assert closed_within(loris, 6), "a request whose headers never end stays open"
    assert healthy(server)


def test_a_stalled_body_gets_408(server: ServerProcess) -> None:
    job = new_job(server)
    with connect(server) as sock:
        sock.sendall(
            f"POST {API}/training/{job}/metrics HTTP/1.1\r\nHost: x\r\n"
            'Content-Type: application/json\r\nContent-Length: 100\r\n\r\n[{"step"'.encode()
        )
        answer = read_all(sock, deadline=8)
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b'"request_timeout"' in answer
    assert healthy(server)


def test_stream_caps_answer_503_with_retry_after(server: ServerProcess) -> None:
    job, other = new_job(server), new_job(server)
    url = f"{server.url}{API}/training"
    with httpx.Client(timeout=10) as http:
        open_streams = [http.stream("GET", f"{url}/{job}/stream") for _ in range(2)]
        responses = [stream.__enter__() for stream in open_streams]
        try:
            assert all(r.status_code == 200 for r in responses)
            third = http.get(f"{url}/{job}/stream")
            assert third.status_code == 503
            assert third.headers["retry-after"] == "5"
            assert third.json()["error"]["code"] == "service_unavailable"
            elsewhere = http.stream("GET", f"{url}/{other}/stream")
            response = elsewhere.__enter__()
            assert response.status_code == 200  # the total cap is 3
            assert http.get(f"{url}/{other}/stream").status_code == 503
            elsewhere.__exit__(None, None, None)
        finally:
            for stream in open_streams:
                stream.__exit__(None, None, None)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # closed streams free their slots
        with httpx.Client(timeout=5) as http, http.stream("GET", f"{url}/{job}/stream") as again:
            if again.status_code == 200:
                break
        time.sleep(0.2)
    else:
        pytest.fail("closed streams did not free their slots")


def test_serve_refuses_a_public_host_without_a_token(tmp_path: Path) -> None:
    env = {**os.environ, "TRAINVIS_DB": str(tmp_path / "p.db")}
    env.pop("TRAINVIS_API_TOKEN", None)
    result = subprocess.run(
        [sys.executable, "-m", "trainvis", "serve", "--host", "0.0.0.0", "--port", "9"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "without a write token" in result.stderr and "--insecure" in result.stderr


def test_public_host_rules() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("")
    assert insecure_reason(Settings(host="0.0.0.0")) is not None
    assert insecure_reason(Settings(host="0.0.0.0", api_token="t" * 16)) is None
    assert insecure_reason(Settings(host="0.0.0.0", read_token="r" * 16)) is None  # issue 13
    assert insecure_reason(Settings(host="0.0.0.0", insecure=True)) is None
    assert insecure_reason(Settings(host="127.0.0.1")) is None


@pytest.mark.parametrize("flag", ["--api-token", "--read-token"])
def test_serve_refuses_a_token_shorter_than_16_characters(tmp_path: Path, flag: str) -> None:
    """issue 13: a guessable token stops ``serve`` with a clear error, before it listens."""
    env = {**os.environ, "TRAINVIS_DB": str(tmp_path / "s.db")}
    env.pop("TRAINVIS_API_TOKEN", None)
    env.pop("TRAINVIS_READ_TOKEN", None)
    result = subprocess.run(
        [sys.executable, "-m", "trainvis", "serve", "--port", "9", flag, "fifteen-chars-x"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert flag in result.stderr and "at least 16 characters" in result.stderr
    assert "fifteen-chars-x" not in result.stderr  # the token is never echoed


def test_a_read_token_alone_protects_writes_on_a_live_server(tmp_path: Path) -> None:
    """issue 13: ``serve --read-token`` alone: writes need that token as a bearer; a
    signed-in browser's cookie reads but never writes (it used to create and delete)."""
    token = "only-a-read-token-0123"
    with ServerProcess(str(tmp_path / "r.db"), args=["--read-token", token]) as server:
        url = f"{server.url}{API}/training/jobs"
        auth = {"Authorization": f"Bearer {token}"}
        created = httpx.post(url, json={"name": "x"}, headers=auth)
        assert created.status_code == 201
        job = created.json()["data"]["id"]
        with httpx.Client(base_url=server.url + API, timeout=10) as browser:
            signed = browser.post(
                "/login",
                content=f"token={token}",
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            )
            assert signed.status_code == 303 and len(browser.cookies) == 1
            assert browser.get(f"/training/jobs/{job}").status_code == 200
            assert browser.post("/training/jobs", json={"name": "y"}).status_code == 401
            assert browser.delete(f"/training/jobs/{job}").status_code == 401
        assert httpx.post(url, json={"name": "x"}).status_code == 401
        assert httpx.get(f"{url}/{job}", headers=auth).status_code == 200
        assert httpx.delete(f"{url}/{job}", headers=auth).status_code == 204
