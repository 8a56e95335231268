"""``import trainvis.compat.wandb as wandb``: a W&B script logs to trainvis unchanged.

::

    import trainvis.compat.wandb as wandb

    run = wandb.init(project="mnist", name="baseline", config={"lr": 1e-3}, tags=["cnn"])
    wandb.config.update({"batch_size": 64})
    for step in range(1000):
        wandb.log({"train/loss": loss, "train/acc": acc})
    run.summary["best_acc"] = best
    wandb.finish()

Where the data goes is trainvis's choice: ``TRAINVIS_URL`` (and
``TRAINVIS_TOKEN``), else local mode (``TRAINVIS_DB`` or ``./trainvis.db``);
``trainvis={...}`` passes any other :func:`trainvis.init` argument
(``url``, ``total_steps``, ``monitor_gpu``...).

Supported: ``init`` (``project``, ``name``, ``config``, ``tags``, ``id``,
``resume``, ``notes``, ``group``, ``job_type``, ``entity``, ``dir``, ``mode``,
``reinit``, ``config_exclude_keys``, ``config_include_keys``; the
``WANDB_PROJECT``/``WANDB_NAME``/``WANDB_RUN_ID``/``WANDB_TAGS``/
``WANDB_RUN_GROUP``/``WANDB_MODE`` variables), ``log`` (W&B's step and commit
rules), ``config``, ``summary``, ``define_metric`` (``step_metric``),
``finish(exit_code=)``, ``run``, and ``with wandb.init(...)``. The project
becomes a tag; project, group, job type, notes and entity are kept in the
job's config under ``wandb``. Anything else (``watch``, ``save``, ``alert``,
``Image``, ``Table``, artifacts...) warns once and does nothing.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any

from trainvis.compat._common import Ignored, unsupported, warn_once
from trainvis.compat._common import log as _logger
from trainvis.compat._wandb_config import Config, Summary, _plain
from trainvis.compat._wandb_run import OPEN as _open
from trainvis.compat._wandb_run import Run, hook_exit

__all__ = ["Config", "Run", "Summary", "config", "define_metric", "finish", "init", "log", "run"]

#: The active run (None before ``init`` and after ``finish``), as ``wandb.run``.
run: Run | None = None
#: The active run's config (a free-standing one before ``init``), as ``wandb.config``.
config: Config = Config()
#: The active run's summary, as ``wandb.summary``.
summary: Summary = Summary({})

#: Keywords W&B's init takes that have no meaning here and change nothing visible.
_QUIET = frozenset({"dir", "save_code", "settings", "anonymous", "force", "allow_val_change"})
_RESUMING = frozenset({"allow", "auto", "must"})


def init(
    project: str | None = None,
    entity: str | None = None,
    config: Any = None,
    name: str | None = None,
    notes: str | None = None,
    tags: Iterable[str] | None = None,
    group: str | None = None,
    job_type: str | None = None,
    id: str | None = None,  # noqa: A002 - W&B's keyword
    resume: bool | str | None = None,
    mode: str | None = None,
    reinit: bool | str | None = None,
    dir: str | None = None,  # noqa: A002 - W&B's keyword
    config_exclude_keys: Iterable[str] | None = None,
    config_include_keys: Iterable[str] | None = None,
    trainvis: Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> Run:
    """Start a run as ``wandb.init`` does; the trainvis job is created at the first ``log``.

    ``name`` becomes the job's name, ``config`` its config, ``tags`` (plus the
    project) its tags, ``id`` its id; ``resume`` (``True``, ``"allow"``,
    ``"auto"``, ``"must"``) with an ``id`` continues that job. ``mode="disabled"``
    (or ``WANDB_MODE=disabled``) gives a run that records nothing. A second
    ``init`` while a run is active returns it, unless ``reinit`` is true or
    ``"finish_previous"`` (it is finished) or ``"create_new"``. Keywords
    trainvis does not know warn once and are ignored.
    """
    global run
    unknown = sorted(set(kwargs) - _QUIET)
    if unknown:
        warn_once(f"init:{unknown}", "trainvis: wandb.init(%s) ignored", ", ".join(unknown))
    active = run if run is not None and not run.finished else None
    if active is not None:
        if reinit in (True, "finish_previous"):
            active.finish()
        elif reinit != "create_new":
            _logger.info("trainvis: wandb.init() while a run is active returns that run")
            return active
    env = os.environ
    project = project or env.get("WANDB_PROJECT") or None
    group = group or env.get("WANDB_RUN_GROUP") or None
    id = id or env.get("WANDB_RUN_ID") or None  # noqa: A001
    mode = mode or env.get("WANDB_MODE") or "online"
    if tags is None and env.get("WANDB_TAGS"):
        tags = [tag.strip() for tag in env["WANDB_TAGS"].split(",") if tag.strip()]
    resume = resume if resume is not None else env.get("WANDB_RESUME")
    resuming = resume is True or resume in _RESUMING
    if resuming and not id:
        warn_once("resume-no-id", "trainvis: wandb.init(resume=...) needs id=; a new job starts")
    meta = {
        key: value
        for key, value in (
            ("project", project),
            ("group", group),
            ("job_type", job_type),
            ("notes", notes),
            ("entity", entity),
        )
        if value is not None
    }
    new = Run(
        name=name or env.get("WANDB_NAME") or None,
        run_id=id,
        config=_select(config, config_include_keys, config_exclude_keys),
        tags=_tags(tags, project),
        resume=resuming and bool(id),
        meta=meta,
        directory=dir,
        disabled=mode == "disabled" or env.get("WANDB_DISABLED", "").lower() in ("1", "true"),
        init_kwargs=dict(trainvis or {}),
    )
    new.on_finish = _forget
    _open.append(new)
    _set_globals(new)
    hook_exit()
    return new


def _select(
    config: Any, include: Iterable[str] | None, exclude: Iterable[str] | None
) -> dict[str, Any]:
    values = _plain(config)
    if include is not None:
        keep = set(include)
        values = {key: value for key, value in values.items() if key in keep}
    if exclude is not None:
        drop = set(exclude)
        values = {key: value for key, value in values.items() if key not in drop}
    return values


def _tags(tags: Iterable[str] | None, project: str | None) -> list[str]:
    result = [str(tag) for tag in (tags or [])]
    if project and project not in result:
        result.append(project)
    return result


def _set_globals(new: Run | None) -> None:
    global run, config, summary
    run = new
    if new is not None:
        config, summary = new.config, new.summary


def _forget(finished: Run) -> None:
    if finished in _open:
        _open.remove(finished)
    if run is finished:
        _set_globals(_open[-1] if _open else None)


def _active() -> Run:
    if run is None:
        raise RuntimeError("You must call wandb.init() before using wandb (trainvis.compat.wandb)")
    return run


def log(
    data: Mapping[str, Any],
    step: int | None = None,
    commit: bool | None = None,
    sync: bool | None = None,
) -> None:
    """``log`` on the active run (see :meth:`Run.log`).

    Raises:
        RuntimeError: before ``wandb.init`` (as W&B).
    """
    _active().log(data, step=step, commit=commit)


def define_metric(name: str, step_metric: str | None = None, **kwargs: Any) -> None:
    """``define_metric`` on the active run (see :meth:`Run.define_metric`)."""
    _active().define_metric(name, step_metric=step_metric, **kwargs)


def finish(exit_code: int | None = None, quiet: bool | None = None) -> None:
    """Finish the active run: ``completed`` for exit code 0 or none, else ``failed``.

    Does nothing without an active run.
    """
    if run is not None:
        run.finish(exit_code=exit_code)


def __getattr__(name: str) -> Any:
    """``wandb.Image``, ``wandb.watch``, ``wandb.save``...: warn once, do nothing."""
    if name.startswith("__"):
        raise AttributeError(name)
    return unsupported(f"wandb.{name}")


def login(*args: Any, **kwargs: Any) -> bool:
    """Nothing to log in to (the token is ``TRAINVIS_TOKEN``); returns True."""
    return True


def Settings(*args: Any, **kwargs: Any) -> Ignored:  # noqa: N802 - W&B's name
    """W&B settings have no meaning here: an inert object, no warning."""
    return Ignored("wandb.Settings")
