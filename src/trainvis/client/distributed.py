"""Several processes, one job: what ``trainvis.init`` knows of ``torchrun`` ranks (issue 17).

``torchrun`` (and the launchers built on it: ``accelerate``, DeepSpeed, Lightning)
tells every worker its place in ``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``,
``LOCAL_WORLD_SIZE`` and ``GROUP_RANK`` (the node). When ``WORLD_SIZE`` is above 1:

- every rank logs into one job. Its id is ``init(id=...)`` when given (the same
  on every rank), otherwise derived from the launch: ``<name>-<hash>`` where the
  hash covers ``TORCHELASTIC_RUN_ID`` (torchrun's ``--rdzv-id``; ``--standalone``
  and single-node runs get a random one) or, under Slurm, ``SLURM_JOB_ID`` and
  ``SLURM_STEP_ID``, the run's name and how many runs of that name the
  process started before (a second run in one launch is a second job);
- rank 0 creates the job (or continues it: an elastic restart keeps the id),
  sets it running and, at ``finish``, sets the final status;
- the other ranks wait for the job to exist, log their own metrics (rows of one
  step from several ranks merge on the server) and only flush at ``finish``;
- the GPU sampler runs once per node (``LOCAL_RANK`` 0); when the run spans
  several nodes its series are named after the host (:func:`trainvis.gpu.host_name`).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import sys
import threading
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from trainvis.client.http import ApiError, ServerUnavailable
from trainvis.client.spool import Client

log = logging.getLogger("trainvis.client")

#: Seconds a rank other than 0 waits for rank 0 to create the job (at least).
JOB_WAIT = 30.0
_UNSAFE_ID = re.compile(r"[^A-Za-z0-9._-]+")
_started: Counter[str] = Counter()  # derived ids handed out per name, this process
_started_lock = threading.Lock()


def _env_int(env: Mapping[str, str], key: str) -> int | None:
    raw = env.get(key, "").strip()
    try:
        return int(raw) if raw else None
    except ValueError:
        return None


@dataclass(frozen=True)
class Ranks:
    """This process's place in a distributed run (all defaults: a single process).

    Attributes:
        rank: global rank (``RANK``).
        local_rank: rank on this node (``LOCAL_RANK``).
        world_size: processes in the run (``WORLD_SIZE``).
        local_world_size: processes on this node (``LOCAL_WORLD_SIZE``).
        node_rank: the node's rank (``GROUP_RANK``, else ``NODE_RANK``).
        restarts: elastic restarts so far (``TORCHELASTIC_RESTART_COUNT``).
    """

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    local_world_size: int = 1
    node_rank: int = 0
    restarts: int = 0

    @classmethod
    def detect(cls, environ: Mapping[str, str] | None = None) -> Ranks:
        """Read the launcher's variables; without them, an initialised
        ``torch.distributed`` (``mp.spawn`` scripts) gives rank and world size."""
        env = os.environ if environ is None else environ
        rank, world = _env_int(env, "RANK"), _env_int(env, "WORLD_SIZE")
        if rank is None or world is None:
            rank, world = _torch_rank()
            local, local_world = rank, world  # no launcher: assume one node
        else:
            given, given_world = _env_int(env, "LOCAL_RANK"), _env_int(env, "LOCAL_WORLD_SIZE")
            local = rank if given is None else given
            local_world = world if given_world is None else given_world
        node = _env_int(env, "GROUP_RANK")
        if node is None:
            node = _env_int(env, "NODE_RANK") or 0
        world = max(world, 1)
        return cls(
            rank=rank,
            local_rank=local,
            world_size=world,
            local_world_size=min(max(local_world, 1), world),
            node_rank=node,
            restarts=_env_int(env, "TORCHELASTIC_RESTART_COUNT") or 0,
        )

    @property
    def distributed(self) -> bool:
        """More than one process logs into the job."""
        return self.world_size > 1

    @property
    def primary(self) -> bool:
        """Rank 0: owns the job's creation and status."""
        return self.rank == 0

    @property
    def node_primary(self) -> bool:
        """``LOCAL_RANK`` 0: samples the node's GPUs."""
        return self.local_rank == 0

    @property
    def multi_node(self) -> bool:
        """The run spans more than one node (GPU series carry the host)."""
        return self.world_size > self.local_world_size


def _torch_rank() -> tuple[int, int]:
    """Rank and world size of an initialised ``torch.distributed`` (never imports torch)."""
    dist: Any = sys.modules.get("torch.distributed")
    try:
        if dist is not None and dist.is_available() and dist.is_initialized():
            return int(dist.get_rank()), int(dist.get_world_size())
    except Exception:  # a half-imported or unusual torch: treat as a single process
        log.debug("trainvis: cannot read torch.distributed's rank", exc_info=True)
    return 0, 1


def launch_key(environ: Mapping[str, str] | None = None) -> str | None:
    """What every rank of this launch shares and the next launch does not, or None."""
    env = os.environ if environ is None else environ
    run_id = env.get("TORCHELASTIC_RUN_ID", "").strip()
    if run_id and run_id != "none":
        return f"torchelastic:{run_id}"
    slurm = env.get("SLURM_JOB_ID", "").strip()
    if slurm:
        return f"slurm:{slurm}.{env.get('SLURM_STEP_ID', '').strip()}"
    return None


def shared_job_id(
    name: str, ranks: Ranks, environ: Mapping[str, str] | None = None, *, occurrence: int = 0
) -> str | None:
    """The job id every rank derives alike: ``<name>-<12 hex digits>``.

    ``occurrence``: how many runs of this name the process started before
    (every rank starts its runs in the same order).

    Returns None on rank 0 when the launch has no shared key (the server then
    picks an id, as for a single process).

    Raises:
        ValueError: on another rank, when there is no shared key: the ranks
            cannot agree on a job without ``id=``.
    """
    key = launch_key(environ)
    if key is None:
        if ranks.primary:
            return None
        raise ValueError(
            "trainvis.init: several ranks log into one job but nothing tells them its id: "
            "pass the same id= on every rank (e.g. from your launcher) or start torchrun "
            "with --rdzv-id (or --standalone)"
        )
    digest = hashlib.sha256(f"{key}\0{name}\0{occurrence}".encode()).hexdigest()[:12]
    slug = _UNSAFE_ID.sub("-", name).strip("-._")[:64] or "run"
    return f"{slug}-{digest}"


def next_shared_job_id(name: str, ranks: Ranks) -> str | None:
    """:func:`shared_job_id` for the next run of ``name`` in this process."""
    with _started_lock:
        found = shared_job_id(name, ranks, occurrence=_started[name])
        _started[name] += 1
    return found


def attach_job(
    client: Client, job_id: str, *, deadline: float, wait: float | None = None
) -> dict[str, Any] | None:
    """The job rank 0 creates, once it exists; None (logged) when it does not
    within ``wait`` s (default :data:`JOB_WAIT`).

    Retries while the job is missing (``job_not_found``) and while the server is
    unreachable (until ``deadline``, monotonic).

    Raises:
        ServerUnavailable: the server stayed unreachable until ``deadline``.
        ApiError: any other refusal (401, ...).
    """
    wait = JOB_WAIT if wait is None else wait
    give_up = max(deadline, time.monotonic() + wait)
    delay = 0.05
    while True:
        try:
            return client.get_job(job_id)
        except ServerUnavailable:
            if time.monotonic() + delay > deadline:
                raise
        except ApiError as exc:
            if exc.code != "job_not_found":
                raise
            if time.monotonic() + delay > give_up:
                log.warning(
                    "trainvis: job %s did not appear within %.0f s (rank 0 starts late?); "
                    "this rank goes on and creates it from its spool if needed",
                    job_id,
                    wait,
                )
                return None
        time.sleep(delay)
        delay = min(delay * 2, 1.0)
