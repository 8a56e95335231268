"""CLI commands of the SDK: ``trainvis sync``, ``trainvis gpu-watch``, ``ls`` and ``tail``.

``trainvis.cli`` finds :func:`register` and adds the sub-commands (``ls`` and
``tail`` live in :mod:`trainvis.client.terminal`).
"""

from __future__ import annotations

import argparse
import logging
import sys
import threading
import time
from typing import Any

from trainvis.client.http import ApiClient, ApiError, ServerUnavailable
from trainvis.client.spool import Client
from trainvis.client.start import ClientSettings
from trainvis.client.sync import sync_spool
from trainvis.client.terminal import register as register_terminal

log = logging.getLogger("trainvis.client")
TERMINAL = ("completed", "failed", "cancelled")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``sync`` and ``gpu-watch`` to the ``trainvis`` command."""
    sync = sub.add_parser("sync", help="upload runs spooled while the server was unreachable")
    sync.add_argument("--url", help="send every run to this server root instead of its own")
    sync.add_argument("--spool-dir", help="[TRAINVIS_SPOOL_DIR, default ~/.trainvis/spool]")
    sync.add_argument("--token", help="bearer token for writes [TRAINVIS_TOKEN]")
    sync.set_defaults(func=_sync)

    watch = sub.add_parser("gpu-watch", help="sample this machine's GPUs into an existing job")
    watch.add_argument("--job", required=True, help="id of the job to attach to")
    watch.add_argument("--url", help="server root [TRAINVIS_URL; unset: local store]")
    watch.add_argument("--db", help="local store when no URL is set [TRAINVIS_DB]")
    watch.add_argument("--token", help="bearer token for writes [TRAINVIS_TOKEN]")
    watch.add_argument("--interval", type=float, default=5.0, help="seconds between samples")
    watch.add_argument(
        "--count", type=int, default=0, help="stop after this many samples (0: until the job ends)"
    )
    watch.add_argument(
        "--per-host",
        action="store_true",
        help="name the series after this machine (gpu/<host>/..., host from "
        "TRAINVIS_HOST_NAME or the host name), for a job on several nodes",
    )
    watch.set_defaults(func=_gpu_watch)
    register_terminal(sub)


def _configure_logging() -> None:
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(message)s")
        logging.getLogger("httpx").setLevel(logging.WARNING)


def _sync(args: argparse.Namespace) -> int:
    _configure_logging()
    settings = ClientSettings.resolve(url=args.url, token=args.token, spool_dir=args.spool_dir)
    report = sync_spool(settings.spool_dir, url=args.url, token=settings.token)
    for message in report.messages:
        print(message, file=sys.stderr)
    print(
        f"trainvis sync: {report.uploaded_rows} rows uploaded, {report.files_done} runs done, "
        f"{len(report.files_left)} left, {report.skipped_live} in use by running processes"
    )
    return 1 if report.files_left else 0


def _client(args: argparse.Namespace) -> Client:
    settings = ClientSettings.resolve(url=args.url, token=args.token, db=args.db)
    if settings.url:
        return ApiClient(settings.url, token=settings.token)
    from trainvis.client.local import LocalClient

    return LocalClient(settings.db)


def _gpu_watch(args: argparse.Namespace) -> int:
    _configure_logging()
    from trainvis.gpu import GpuSampler, host_name

    host = host_name() if args.per_host else None
    sampler = GpuSampler.create(lambda sample: None, interval=args.interval, host=host)
    if sampler is None:
        print("trainvis gpu-watch: no GPU to sample (see the line above)", file=sys.stderr)
        return 1
    client = _client(args)
    try:
        return _watch(client, sampler, args)
    except KeyboardInterrupt:
        return 0
    except ApiError as exc:
        print(f"trainvis gpu-watch: {exc}", file=sys.stderr)
        return 1
    finally:
        sampler.stop()
        client.close()


def _watch(client: Client, sampler: Any, args: argparse.Namespace) -> int:
    job = client.get_job(args.job)
    print(
        f"trainvis gpu-watch: sampling {len(sampler.handles)} GPU(s) into {job['id']} "
        f"on {client.target} every {args.interval:g} s"
    )
    stop = threading.Event()
    taken = 0
    while True:
        try:
            job = client.get_job(args.job)
            if job.get("status") in TERMINAL:
                print(f"trainvis gpu-watch: job {job['id']} is {job['status']}; stopping")
                return 0
            row = {**sampler.sample(), "step": job.get("current_step") or 0}
            client.post_metrics(args.job, [{**row, "timestamp": time.time()}])
            taken += 1
        except ServerUnavailable as exc:
            log.warning("trainvis gpu-watch: %s; sample skipped", exc)
        if args.count and taken >= args.count:
            return 0
        if stop.wait(args.interval):
            return 0
