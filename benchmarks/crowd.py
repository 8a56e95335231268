"""Crowds of readers against a real `trainvis serve` process on SQLite (issue 13).

A job of ``--steps`` × ``--metrics`` points (default 100,000 × 10 = 1M points) is
written straight into a temp SQLite file; then a live server answers:

- three kinds of history read: ``full`` (every row, streamed), ``max_points``
  (``max_points=2000``) and ``paged`` (``limit=1000`` at a random ``start_step``);
  each by one client (sequentially), then by ``--clients`` concurrent clients.
  A 503 is retried after its ``Retry-After`` (its wait counts in the latency);
- ``--stalled`` clients that request the full history and never read: the
  server's RSS and open sockets while they sit there and after the send timeout.

Reported: per kind p50/p95 latency (whole body received), aggregate rows/s,
rows per second of server CPU (comparable on a shared, noisy machine), 503
answers; the server's peak RSS (sampled from /proc every 50 ms) and its RSS
after the burst. Targets (issue 13): with 50 clients, aggregate rows/s no worse
than one client's and peak RSS ≤ 500 MB; stalled readers freed, RSS bounded.

    python benchmarks/crowd.py                     # defaults, a few minutes on 2 cores
    python benchmarks/crowd.py --steps 20000       # quicker
    python benchmarks/crowd.py --env MAX_STREAMING_READS=8 --env SEND_TIMEOUT=10
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import orjson

API = "/api/v1/visualization"
KINDS = ("full", "max_points", "paged")


# ---------------------------------------------------------------------- server


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def populate(db: str, steps: int, metrics: int) -> str:
    """Write the job straight into the store (10,000-row batches); returns its id."""
    from trainvis.models import JobCreate, parse_metric_rows
    from trainvis.store.sqlite import SQLiteStore

    store = SQLiteStore(db)
    try:
        job = store.create_job(JobCreate(name="crowd"))
        rng = np.random.default_rng(7)
        names = ["train_loss", "val_loss"] + [f"metric_{i}" for i in range(metrics - 2)]
        for start in range(0, steps, 10_000):
            block = range(start, min(start + 10_000, steps))
            noise = rng.random((len(block), len(names)))
            body = [
                {"step": step, "epoch": step // 1000, **dict(zip(names, row.tolist(), strict=True))}
                for step, row in zip(block, noise, strict=True)
            ]
            store.write_metrics(job.id, parse_metric_rows(body, max_rows=10_000))
        return job.id
    finally:
        store.close()


class Server:
    """`trainvis serve` in a subprocess; samples its RSS every 50 ms."""

    def __init__(self, db: str, env: dict[str, str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "trainvis", "serve", "--db", db, "--port", str(self.port)],
            env={**os.environ, "TRAINVIS_LOG_LEVEL": "warning", **env},
            stderr=subprocess.DEVNULL,
        )
        for _ in range(300):
            try:
                httpx.get(self.url + "/openapi.json", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        else:
            self.proc.kill()
            raise SystemExit("server did not start")
        self.peak = 0.0
        self._stop = threading.Event()
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def cpu_seconds(self) -> float:
        """User + system CPU time the server has used so far."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def sockets(self) -> int:
        count = 0
        for entry in Path(f"/proc/{self.proc.pid}/fd").iterdir():
            try:
                count += os.readlink(entry).startswith("socket:")
            except OSError:
                pass
        return count

    def _sample(self) -> None:
        while not self._stop.wait(0.05):
            try:
                self.peak = max(self.peak, self.rss_mb())
            except OSError:
                return

    def reset_peak(self) -> None:
        self.peak = self.rss_mb()

    def stop(self) -> None:
        self._stop.set()
        self.proc.terminate()
        self.proc.wait(30)


# ---------------------------------------------------------------------- client


@dataclass
class Answer:
    status: int
    retry_after: float
    body: bytes
    complete: bool


async def get(port: int, path: str, *, keep_body: bool) -> Answer:
    """One GET over a fresh connection; the body is kept only when asked."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n".encode())
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {
            k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])
        }
        parts: list[bytes] = []
        tail = b""
        while chunk := await reader.read(1 << 20):
            if keep_body or status != 200:
                parts.append(chunk)
            tail = (tail + chunk)[-64:]
        body = b"".join(parts)
        if headers.get("transfer-encoding") == "chunked":
            complete = tail.endswith(b"0\r\n\r\n")
            body = dechunk(body) if body else body
        else:
            complete = True
        return Answer(status, float(headers.get("retry-after", "1") or 1), body, complete)
    finally:
        writer.close()


def dechunk(raw: bytes) -> bytes:
    out, at = [], 0
    while True:
        end = raw.index(b"\r\n", at)
        size = int(raw[at:end], 16)
        if size == 0:
            return b"".join(out)
        out.append(raw[end + 2 : end + 2 + size])
        at = end + 2 + size + 2


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)
    rows: int = 0
    refused: int = 0
    errors: int = 0


def request_path(job: str, kind: str, steps: int) -> str:
    base = f"{API}/training/{job}/metrics/history"
    if kind == "full":
        return base
    if kind == "max_points":
        return f"{base}?max_points=2000"
    return f"{base}?limit=1000&start_step={random.randrange(max(1, steps - 1000))}"


async def one_read(port: int, job: str, kind: str, steps: int, tally: Tally) -> None:
    started = time.perf_counter()
    while True:
        answer = await get(port, request_path(job, kind, steps), keep_body=kind == "max_points")
        if answer.status == 503:
            tally.refused += 1
            await asyncio.sleep(answer.retry_after)
            continue
        break
    if answer.status != 200 or not answer.complete:
        tally.errors += 1
        return
    tally.latencies.append(time.perf_counter() - started)
    if kind == "full":
        tally.rows += steps
    elif kind == "paged":
        tally.rows += 1000
    else:
        tally.rows += len(orjson.loads(answer.body)["data"])


async def crowd(
    port: int, job: str, kind: str, steps: int, clients: int, each: int
) -> tuple[Tally, float]:
    tally = Tally()

    async def client() -> None:
        for _ in range(each):
            await one_read(port, job, kind, steps, tally)

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return tally, time.perf_counter() - started


async def stalled(
    port: int, job: str, count: int, window: float, server: Server
) -> dict[str, float]:
    """``count`` clients ask for the full history and never read; watch for ``window`` s."""
    before = server.sockets()
    server.reset_peak()
    conns = []
    for _ in range(count):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            f"GET {API}/training/{job}/metrics/history HTTP/1.1\r\nHost: b\r\n\r\n".encode()
        )
        conns.append((reader, writer))
    peak_sockets, started = 0, time.perf_counter()
    while time.perf_counter() - started < window:
        peak_sockets = max(peak_sockets, server.sockets() - before)
        await asyncio.sleep(0.5)
    left = server.sockets() - before
    statuses: dict[int, int] = {}
    for reader, writer in conns:
        try:
            line = await asyncio.wait_for(reader.readline(), 2)
            code = int(line.split()[1]) if line else 0
        except (TimeoutError, IndexError, ValueError, ConnectionError):
            code = 0
        statuses[code] = statuses.get(code, 0) + 1
        writer.transport.abort()
    await asyncio.sleep(1)
    return {
        "peak_rss": server.peak,
        "rss_end_window": server.rss_mb(),
        "peak_sockets": peak_sockets,
        "sockets_left": left,
        "ok": statuses.get(200, 0),
        "refused": statuses.get(503, 0),
    }


# ---------------------------------------------------------------------- main


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return float(np.percentile(values, q))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--metrics", type=int, default=10)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--stalled", type=int, default=300, help="never-reading clients")
    parser.add_argument("--stalled-window", type=float, default=45.0, help="seconds to watch them")
    parser.add_argument(
        "--env", action="append", default=[], help="TRAINVIS_ setting for the server, KEY=VALUE"
    )
    parser.add_argument("--kinds", default=",".join(KINDS))
    args = parser.parse_args()
    env = {f"TRAINVIS_{k.upper()}": v for k, _, v in (item.partition("=") for item in args.env)}
    reads = {  # (single client: reads, crowd: reads per client)
        "full": (3, 1),
        "max_points": (20, 3),
        "paged": (50, 10),
    }
    with tempfile.TemporaryDirectory() as tmp:
        db = os.path.join(tmp, "crowd.db")
        started = time.perf_counter()
        job = populate(db, args.steps, args.metrics)
        print(
            f"wrote {args.steps * args.metrics:,} points in {time.perf_counter() - started:.1f} s"
        )
        server = Server(db, env)
        results = []
        try:
            idle_rss = server.rss_mb()
            for kind in args.kinds.split(","):
                one, each = reads[kind]
                for clients, count in ((1, one), (args.clients, each)):
                    server.reset_peak()
                    cpu = server.cpu_seconds()
                    tally, seconds = asyncio.run(
                        crowd(server.port, job, kind, args.steps, clients, count)
                    )
                    cpu = server.cpu_seconds() - cpu
                    results.append((kind, clients, tally, seconds, cpu, server.peak))
                    print(f"  {kind} × {clients}: {seconds:.1f} s", flush=True)
            time.sleep(5)
            after_burst = server.rss_mb()
            stall = (
                asyncio.run(stalled(server.port, job, args.stalled, args.stalled_window, server))
                if args.stalled
                else None
            )
            time.sleep(3)
            final_rss, final_sockets = server.rss_mb(), server.sockets()
        finally:
            server.stop()
    print(f"\njob: {args.steps:,} rows × {args.metrics} metrics; server env: {env or 'defaults'}")
    header = (
        "kind",
        "clients",
        "p50 s",
        "p95 s",
        "rows/s",
        "rows/CPU s",
        "503s",
        "errors",
        "peak RSS MB",
    )
    print("{:<11} {:>7} {:>9} {:>9} {:>10} {:>10} {:>6} {:>6} {:>11}".format(*header))
    for kind, clients, tally, seconds, cpu, peak in results:
        print(
            f"{kind:<11} {clients:>7} {pct(tally.latencies, 50):>9.3f} "
            f"{pct(tally.latencies, 95):>9.3f} {tally.rows / seconds:>10,.0f} "
            f"{tally.rows / max(cpu, 1e-9):>10,.0f} "
            f"{tally.refused:>6} {tally.errors:>6} {peak:>11.0f}"
        )
    print(
        "rows/s: aggregate over the wall clock; rows/CPU s: per second of server CPU "
        "(steadier on a shared machine)"
    )
    print(f"\nRSS idle before reads {idle_rss:.0f} MB, 5 s after the bursts {after_burst:.0f} MB")
    if stall is not None:
        print(
            f"{args.stalled} stalled readers ({args.stalled_window:.0f} s window): "
            f"peak RSS {stall['peak_rss']:.0f} MB, "
            f"RSS at window end {stall['rss_end_window']:.0f} MB; "
            f"got 200: {stall['ok']}, got 503: {stall['refused']}; server sockets: peak "
            f"+{stall['peak_sockets']:.0f}, at window end +{stall['sockets_left']:.0f}"
        )
        print(f"after they left: RSS {final_rss:.0f} MB, server sockets {final_sockets}")


if __name__ == "__main__":
    main()
