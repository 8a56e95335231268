"""SSE fan-out benchmark: many subscribers to one job, one writer posting rows.

Starts ``trainvis serve`` on a temp SQLite file (or uses ``--url``), opens
``--subscribers`` streams to one job from ``--client-procs`` processes (raw
asyncio sockets, so the clients stay cheap), then posts ``--rate`` rows a second,
one row per request, for ``--duration`` seconds. Reports delivery latency
(POST acknowledged → event received; the event may beat the response, so small
negative values are possible, and latency from the POST being sent is shown too),
rows lost / duplicated / out of order, and the server's CPU and RSS.

    .venv/bin/python benchmarks/sse_fanout.py                    # 1000 subs, 50 rows/s, 30 s
    .venv/bin/python benchmarks/sse_fanout.py --duration 10 --subscribers 200

Exit status 1 when a row was lost or p99 exceeds ``--target-p99-ms``.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import resource
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from multiprocessing.synchronize import Event as MpEvent
from pathlib import Path
from typing import Any

import httpx
import numpy as np

API = "/api/v1/visualization"
METRICS_PREFIX = b"event: metrics\nid: "


# ---------------------------------------------------------------------- subscribers


class Subscriber(asyncio.Protocol):
    """One stream: decodes chunked transfer encoding and records when each id arrives."""

    def __init__(self, received: np.ndarray, connected: asyncio.Future[None]) -> None:
        self.received = received  # received[seq - 1] = monotonic arrival time
        self.connected = connected
        self.buffer = b""
        self.events = b""
        self.in_body = False
        self.chunk_left = 0
        self.last_seq = 0
        self.duplicates = 0
        self.out_of_order = 0
        self.closed = False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.connected.done():
            self.connected.set_exception(ConnectionError("stream closed before the snapshot"))

    def data_received(self, data: bytes) -> None:
        now = time.monotonic()
        self.buffer += data
        if not self.in_body:
            head, sep, rest = self.buffer.partition(b"\r\n\r\n")
            if not sep:
                return
            if not head.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(head.decode(errors="replace"))
            self.in_body, self.buffer = True, rest
        self._dechunk()
        *complete, self.events = self.events.split(b"\n\n")
        for event in complete:
            if event.startswith(METRICS_PREFIX):
                end = event.index(b"\n", len(METRICS_PREFIX))
                self._record(int(event[len(METRICS_PREFIX) : end]), now)
            elif event.startswith(b'data: {"type":"snapshot"') and not self.connected.done():
                self.connected.set_result(None)

    def _dechunk(self) -> None:
        while self.buffer:
            if self.chunk_left == 0:
                size, sep, rest = self.buffer.partition(b"\r\n")
                if not sep:
                    return
                self.chunk_left, self.buffer = int(size, 16) + 2, rest  # payload + CRLF
            take = self.buffer[: self.chunk_left]
            self.buffer = self.buffer[self.chunk_left :]
            self.chunk_left -= len(take)
            self.events += take[:-2] if self.chunk_left == 0 else take
            if self.chunk_left == 1:  # split CRLF: keep the CR out of the events
                self.events = self.events.rstrip(b"\r")

    def _record(self, seq: int, now: float) -> None:
        if seq <= self.last_seq:
            self.out_of_order += 1
        self.last_seq = max(self.last_seq, seq)
        if seq - 1 >= len(self.received):
            return
        if not np.isnan(self.received[seq - 1]):
            self.duplicates += 1
        else:
            self.received[seq - 1] = now


@dataclass
class ClientResult:
    received: np.ndarray
    duplicates: int = 0
    out_of_order: int = 0
    closed_early: int = 0
    errors: list[str] = field(default_factory=list)


def client_process(
    url: str, path: str, count: int, rows: int, ready: Any, stop: MpEvent, results: Any
) -> None:
    """Open ``count`` streams, report readiness, record arrivals until ``stop``."""
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    received = np.full((count, rows), np.nan)
    result = ClientResult(received)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        host, port = url.split("://", 1)[1].split(":")
        request = f"GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\n\r\n"
        protocols: list[Subscriber] = []
        for index in range(count):
            connected: asyncio.Future[None] = loop.create_future()
            row, done = received[index], connected
            transport, protocol = await loop.create_connection(
                lambda: Subscriber(row, done),  # noqa: B023 (called before the next iteration)
                host,
                int(port),
            )
            transport.write(request.encode())
            protocols.append(protocol)
        try:
            await asyncio.wait_for(asyncio.gather(*(p.connected for p in protocols)), 120)
        except Exception as exc:  # report and let the parent fail the run
            result.errors.append(f"connect: {exc!r}")
        ready.put(count)
        while not stop.is_set():
            await asyncio.sleep(0.05)
        result.duplicates = sum(p.duplicates for p in protocols)
        result.out_of_order = sum(p.out_of_order for p in protocols)
        result.closed_early = sum(p.closed for p in protocols)

    asyncio.run(main())
    results.put(result)


# ---------------------------------------------------------------------- server


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(db: str, subscribers: int = 1000) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "trainvis", "serve", "--db", db, "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={
            **os.environ,
            "TRAINVIS_LOG_LEVEL": "warning",
            # room for every benchmark subscriber whatever the default caps are
            "TRAINVIS_MAX_SUBSCRIBERS_PER_JOB": str(subscribers + 10),
            "TRAINVIS_MAX_SUBSCRIBERS": str(subscribers + 10),
        },
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(url + "/openapi.json", timeout=1).raise_for_status()
            return proc, url
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("server did not start")


class ProcessSampler(threading.Thread):
    """Samples a process's CPU time and RSS from /proc every 0.25 s."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.rss: list[float] = []
        self.running = True
        self.ticks = os.sysconf("SC_CLK_TCK")

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / self.ticks

    def rss_mib(self) -> float:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def run(self) -> None:
        while self.running:
            self.rss.append(self.rss_mib())
            time.sleep(0.25)


# ---------------------------------------------------------------------- writer


def write_rows(url: str, job: str, rows: int, rate: float) -> tuple[np.ndarray, np.ndarray]:
    """Post ``rows`` rows (step i, one per request) at ``rate``; return send and ack times."""
    sent, acked = np.zeros(rows), np.zeros(rows)
    with httpx.Client(base_url=url, timeout=30) as http:
        start = time.monotonic()
        for step in range(rows):
            delay = start + step / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            sent[step] = time.monotonic()
            response = http.post(
                f"{API}/training/{job}/metrics",
                json={"step": step, "train_loss": 1 / (step + 1), "learning_rate": 1e-4},
            )
            acked[step] = time.monotonic()
            response.raise_for_status()
    return sent, acked


def percentiles(values: np.ndarray) -> dict[str, float]:
    values = values[~np.isnan(values)] * 1000
    if not len(values):
        return {key: float("nan") for key in ("p50", "p90", "p99", "max")}
    p50, p90, p99, top = np.percentile(values, [50, 90, 99, 100])
    return {"p50": p50, "p90": p90, "p99": p99, "max": top}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=50.0, help="rows per second")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of writing")
    parser.add_argument(
        "--client-procs", type=int, default=max(1, min(8, (os.cpu_count() or 2) // 2))
    )
    parser.add_argument("--url", help="use a running server instead of starting one")
    parser.add_argument("--server-pid", type=int, help="with --url: the server's pid for CPU/RSS")
    parser.add_argument("--drain", type=float, default=3.0, help="seconds to wait for stragglers")
    parser.add_argument("--target-p99-ms", type=float, default=250.0)
    args = parser.parse_args(argv)

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(
        resource.RLIMIT_NOFILE, (max(soft, min(hard, 4 * args.subscribers + 256)), hard)
    )
    rows = int(args.rate * args.duration)
    with tempfile.TemporaryDirectory() as tmp:
        proc = None
        if args.url:
            url, pid = args.url.rstrip("/"), args.server_pid
        else:
            proc, url = start_server(str(Path(tmp) / "bench.db"), args.subscribers)
            pid = proc.pid
        try:
            return run(args, url, pid, rows)
        finally:
            if proc is not None:
                proc.terminate()
                proc.wait(15)


def run(args: argparse.Namespace, url: str, pid: int | None, rows: int) -> int:
    job = httpx.post(f"{url}{API}/training/jobs", json={"name": "fanout bench"}).json()["data"][
        "id"
    ]
    path = f"{API}/training/{job}/stream"
    ctx = mp.get_context("spawn")
    ready, results, stop = ctx.Queue(), ctx.Queue(), ctx.Event()
    shares = [len(part) for part in np.array_split(np.arange(args.subscribers), args.client_procs)]
    workers = [
        ctx.Process(target=client_process, args=(url, path, n, rows, ready, stop, results))
        for n in shares
    ]
    connect_start = time.monotonic()
    for worker in workers:
        worker.start()
    for _ in workers:
        ready.get(timeout=300)
    connect_time = time.monotonic() - connect_start

    sampler = ProcessSampler(pid) if pid else None
    cpu_before = sampler.cpu_seconds() if sampler else 0.0
    if sampler:
        sampler.start()
    wall_start = time.monotonic()
    sent, acked = write_rows(url, job, rows, args.rate)
    time.sleep(args.drain)
    wall = time.monotonic() - wall_start
    cpu = (sampler.cpu_seconds() - cpu_before) / wall if sampler else float("nan")
    if sampler:
        sampler.running = False
    stop.set()
    collected: list[ClientResult] = [results.get(timeout=120) for _ in workers]
    for worker in workers:
        worker.join(30)

    received = np.vstack([result.received for result in collected])
    lost = int(np.isnan(received).sum())
    from_ack = percentiles((received - acked).ravel())
    from_send = percentiles((received - sent).ravel())
    post = percentiles(acked - sent)
    errors = [error for result in collected for error in result.errors]
    report = [
        ("subscribers", f"{args.subscribers} ({args.client_procs} client processes)"),
        ("rows posted", f"{rows} at {args.rate:g}/s, one per request ({wall - args.drain:.1f} s)"),
        ("connect time", f"{connect_time:.2f} s for every snapshot"),
        ("events expected", f"{received.size}"),
        ("rows lost", f"{lost}"),
        (
            "duplicates / out of order",
            f"{sum(r.duplicates for r in collected)} / {sum(r.out_of_order for r in collected)}",
        ),
        ("streams closed early", f"{sum(r.closed_early for r in collected)}"),
        ("latency ack→event ms", _fmt(from_ack)),
        ("latency send→event ms", _fmt(from_send)),
        ("POST round trip ms", _fmt(post)),
        ("server CPU", f"{cpu * 100:.0f}% of one core" if sampler else "n/a (no --server-pid)"),
        (
            "server RSS MiB",
            f"peak {max(sampler.rss):.0f}, end {sampler.rss[-1]:.0f}"
            if sampler and sampler.rss
            else "n/a",
        ),
    ]
    width = max(len(name) for name, _ in report)
    print("\nSSE fan-out benchmark")
    print("-" * (width + 50))
    for name, value in report:
        print(f"{name:<{width}}  {value}")
    print("-" * (width + 50))
    for error in errors:
        print("client error:", error)
    ok = lost == 0 and not errors and from_ack["p99"] <= args.target_p99_ms
    print(f"target p99 ≤ {args.target_p99_ms:g} ms, 0 lost: {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


def _fmt(stats: dict[str, float]) -> str:
    return "  ".join(f"{key} {value:7.1f}" for key, value in stats.items())


if __name__ == "__main__":
    raise SystemExit(main())
