"""``trainvis.init``: pick the destination, create or resume the job, start the threads."""

from __future__ import annotations

import dataclasses
import logging
import os
import secrets
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from tenacity import RetryCallState, Retrying, retry_if_exception_type, wait_exponential

from trainvis.client.distributed import Ranks, attach_job, next_shared_job_id
from trainvis.client.http import ApiClient, ApiError, ServerUnavailable
from trainvis.client.run import Run, _remember, jsonable_config
from trainvis.client.sender import Sender
from trainvis.client.spool import Client, Journal, default_spool_dir
from trainvis.client.sync import sync_spool
from trainvis.config import default_db

T = TypeVar("T")

log = logging.getLogger("trainvis.client")


@dataclasses.dataclass(frozen=True)
class ClientSettings:
    """Where a run goes. Read from arguments, then ``TRAINVIS_*`` variables, at ``init``."""

    url: str | None
    token: str | None
    db: str
    spool_dir: Path

    @classmethod
    def resolve(
        cls,
        *,
        url: str | None = None,
        token: str | None = None,
        db: str | None = None,
        spool_dir: str | os.PathLike[str] | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> ClientSettings:
        """Arguments win over ``TRAINVIS_URL``, ``TRAINVIS_TOKEN``, ``TRAINVIS_DB``,
        ``TRAINVIS_SPOOL_DIR``; no URL at all means local mode."""
        env = os.environ if environ is None else environ
        spool = Path(spool_dir).expanduser() if spool_dir else None
        if spool is None and env.get("TRAINVIS_SPOOL_DIR"):
            spool = Path(env["TRAINVIS_SPOOL_DIR"]).expanduser()
        return cls(
            url=url or env.get("TRAINVIS_URL") or None,
            token=token or env.get("TRAINVIS_TOKEN") or None,
            db=db or env.get("TRAINVIS_DB") or default_db(),
            spool_dir=spool or default_spool_dir(),
        )


def _spec(
    name: str | None, job_id: str | None, fields: dict[str, Any], config: Any, tags: Any
) -> dict[str, Any]:
    spec = {key: value for key, value in fields.items() if value is not None}
    spec["name"] = name or Path(sys.argv[0] if sys.argv and sys.argv[0] else "run").stem or "run"
    spec["config"] = jsonable_config(config)
    spec["tags"] = [str(tag) for tag in (tags or [])]
    if job_id:
        spec["id"] = job_id
    return spec


def _retrying(call: Callable[[], T], deadline: float) -> T:
    """``call()``, retried while the server is unavailable (0.25 s doubling to 2 s)
    as long as the next attempt would start before ``deadline`` (monotonic)."""
    retrying = Retrying(
        retry=retry_if_exception_type(ServerUnavailable),
        wait=wait_exponential(multiplier=0.25, max=2.0),
        stop=_before(deadline),
        reraise=True,
    )
    return retrying(call)


def _before(deadline: float) -> Callable[[RetryCallState], bool]:
    """Stop when sleeping the next delay would pass ``deadline``."""

    def stop(state: RetryCallState) -> bool:
        upcoming = state.upcoming_sleep or 0.0
        return time.monotonic() + upcoming > deadline

    return stop


def _open_job(
    client: Client, spec: dict[str, Any], *, resume: bool, deadline: float
) -> tuple[dict[str, Any], int]:
    """Create or resume the job and set it running; returns it and the next step."""
    start_step = 0
    job: dict[str, Any] | None = None
    if resume:
        try:
            job = _retrying(lambda: client.get_job(spec["id"]), deadline)
        except ApiError as exc:
            if exc.code != "job_not_found":
                raise
        if job is not None and job.get("current_step") is not None:
            start_step = int(job["current_step"]) + 1
    if job is None:
        try:
            job = _retrying(lambda: client.create_job(spec), deadline)
        except ApiError as exc:
            if not (resume and exc.code == "job_exists"):
                raise
            # created meanwhile (by another rank's spool in a distributed run)
            job = _retrying(lambda: client.get_job(spec["id"]), deadline)
    if job.get("status") != "running":
        job_id = job["id"]
        job = _retrying(lambda: client.set_status(job_id, "running"), deadline)
    return job, start_step


def _offline_job(spec: dict[str, Any]) -> dict[str, Any]:
    job_id = spec.get("id") or time.strftime("run-%Y%m%d-%H%M%S-") + secrets.token_hex(3)
    return {**spec, "id": job_id, "status": "running", "current_step": None}


def _upload_old_spool(settings: ClientSettings, url: str) -> None:
    def upload() -> None:
        try:
            report = sync_spool(settings.spool_dir, only_url=url, token=settings.token)
        except Exception:
            log.exception("trainvis: uploading the spool of earlier runs failed")
            return
        if report.uploaded_rows or report.files_done:
            log.info("trainvis: uploaded %d spooled rows of earlier runs", report.uploaded_rows)

    if any(settings.spool_dir.glob("*.jsonl")) if settings.spool_dir.is_dir() else False:
        threading.Thread(target=upload, name="trainvis-spool-upload", daemon=True).start()


def init(
    name: str | None = None,
    *,
    model_name: str | None = None,
    total_epochs: int | None = None,
    total_steps: int | None = None,
    config: Any = None,
    tags: Iterable[str] | None = None,
    url: str | None = None,
    id: str | None = None,  # noqa: A002 - the contract's field name
    resume: bool = False,
    monitor_gpu: bool | None = None,
    gpu_interval: float = 5.0,
    monitor_system: bool | None = None,
    system_interval: float = 10.0,
    token: str | None = None,
    db: str | None = None,
    spool_dir: str | os.PathLike[str] | None = None,
    flush_interval: float = 1.0,
    batch_size: int = 1000,
    max_queue: int = 100_000,
    timeout: float = 10.0,
    connect_timeout: float = 5.0,
) -> Run:
    """Start a run: create the job (or resume it) and set it ``running``.

    Args:
        name: the job's name (default: the script's name).
        model_name, total_epochs, total_steps, config, tags: stored with the job;
            ``config`` may be a dict, a dataclass or an ``argparse.Namespace``.
        url: the server root (``http://localhost:8000``); default ``TRAINVIS_URL``.
            Neither set: local mode, writing into the store ``db`` (default
            ``TRAINVIS_DB`` or ``./trainvis.db``, the file ``trainvis serve`` uses).
        id: a job id of your choice; with ``resume=True`` an existing job with
            this id is continued (created when missing). Under ``torchrun``
            (``WORLD_SIZE`` > 1) every rank logs into one job: this id, or one
            derived from the launch (:mod:`trainvis.client.distributed`); rank 0
            creates or continues it and owns its status, the others wait for
            it and only flush at ``finish``.
        monitor_gpu: sample NVML every ``gpu_interval`` s; default: on when
            NVML and a GPU are present. Distributed: once per node (``LOCAL_RANK``
            0), series named ``gpu/<host>/...`` when the run spans several nodes.
        monitor_system: sample CPU, memory, disk and network I/O (psutil) every
            ``system_interval`` s into ``system.*`` metrics; default: on
            whenever GPU monitoring is (``monitor_gpu=True``, or a GPU found).
            Distributed: once per node, and on multi-node runs on rank 0's node only
            (the ``system.*`` names carry no host).
        token: bearer token for writes (default ``TRAINVIS_TOKEN``).
        spool_dir: where undelivered rows wait (default ``TRAINVIS_SPOOL_DIR``
            or ``~/.trainvis/spool``).
        flush_interval, batch_size: the sender sends at least every
            ``flush_interval`` s or as soon as ``batch_size`` rows wait.
        max_queue: rows ``log`` may queue before it waits for the sender.
        timeout: seconds per request.
        connect_timeout: how long ``init`` retries an unreachable server
            before it goes on offline (the job is created later, from the spool).

    Raises:
        ValueError: ``resume=True`` without ``id``; a rank other than 0 that
            cannot tell the shared job id.
        ApiError: the server rejected the job (e.g. 409 ``job_exists`` for a
            taken ``id`` without ``resume``; 401 without a valid token).
    """
    ranks = Ranks.detect()
    settings = ClientSettings.resolve(url=url, token=token, db=db, spool_dir=spool_dir)
    fields = {"model_name": model_name, "total_epochs": total_epochs, "total_steps": total_steps}
    spec = _spec(name, id, fields, config, tags)
    if ranks.distributed and not id:
        shared = next_shared_job_id(spec["name"], ranks)
        if shared:
            spec["id"] = shared
    if resume and "id" not in spec:
        raise ValueError("resume=True needs the id of the job to resume")
    client: Client
    if settings.url:
        client = ApiClient(settings.url, token=settings.token, timeout=timeout)
    else:
        from trainvis.client.local import LocalClient

        client = LocalClient(settings.db)
    deadline = time.monotonic() + connect_timeout
    offline = create_later = False
    try:
        if ranks.distributed:
            job, start_step, create_later = _open_shared_job(client, spec, ranks, resume, deadline)
        else:
            job, start_step = _open_job(client, spec, resume=resume, deadline=deadline)
    except ServerUnavailable as exc:
        if not settings.url:
            raise
        log.warning(
            "trainvis: %s is unreachable (%s); the run is spooled until it is back",
            settings.url,
            exc,
        )
        job, start_step, offline = _offline_job(spec), 0, True
    except BaseException:
        client.close()
        raise
    journal = None
    if settings.url:
        journal = Journal.create(settings.spool_dir, url=client.target, job_id=job["id"])
    sender = Sender(
        client, job["id"], journal=journal, batch_size=batch_size, flush_interval=flush_interval
    )
    if offline or create_later:
        sender.add("create", {"spec": {**spec, "id": job["id"]}})
        if ranks.primary:
            sender.add("status", {"status": "running", "message": None})
    sender.start()
    run = Run(
        client, job, sender, start_step=start_step, max_queue=max_queue, owns_status=ranks.primary
    )
    _remember(run)
    if settings.url and not offline and ranks.node_primary:
        _upload_old_spool(settings, client.target)
    if monitor_gpu is not False and ranks.node_primary:
        _start_gpu(run, gpu_interval, explicit=bool(monitor_gpu), multi_node=ranks.multi_node)
    wants_system = monitor_system or (
        monitor_system is None and (monitor_gpu or run._gpu is not None)
    )
    if wants_system and ranks.node_primary and (ranks.primary or not ranks.multi_node):
        _start_system(run, system_interval)
    return run


def _open_shared_job(
    client: Client,
    spec: dict[str, Any],
    ranks: Ranks,
    resume: bool,
    deadline: float,
) -> tuple[dict[str, Any], int, bool]:
    """The job of a distributed run, its first step and whether it is still to create.

    Rank 0 creates or continues it; the others wait for it, and one that does
    not appear is created from their spool (ranks > 0 never set the status).

    The step counter continues the job's only with ``resume=True`` or after an
    elastic restart (a job a slow rank 0 found already written starts at 0).
    """
    if ranks.primary:
        job, start_step = _open_job(client, spec, resume="id" in spec, deadline=deadline)
    else:
        found = attach_job(client, spec["id"], deadline=deadline)
        if found is None:
            return _offline_job(spec), 0, True
        job, current = found, found.get("current_step")
        start_step = int(current) + 1 if current is not None else 0
    if not (resume or ranks.restarts):
        start_step = 0
    return job, start_step, False


def _start_gpu(run: Run, interval: float, *, explicit: bool, multi_node: bool = False) -> None:
    from trainvis.gpu import GpuSampler, host_name

    host = host_name() if multi_node else None
    sampler = GpuSampler.create(run.log_system, interval=interval, host=host)
    if sampler is not None:
        run._gpu = sampler.start()
    elif explicit:
        log.info("trainvis: monitor_gpu=True but no GPU can be read; continuing without")


def _start_system(run: Run, interval: float) -> None:
    from trainvis.client.system import SystemSampler

    sampler = SystemSampler.create(run.log_system, interval=interval)
    if sampler is not None:
        run._system = sampler.start()
