"""The run behind ``trainvis.compat.wandb``: W&B's step rules on top of a trainvis Run.

W&B's history rules, as its SDK applies them (``handle_request_partial_history``):

- ``log(d)`` writes ``d`` at the current step and moves to the next one;
  ``commit=False`` keeps adding to the current step instead;
- ``log(d, step=n)`` with ``n`` above the current step first writes what the
  current step holds, then collects at ``n`` until a higher step, a commit or
  ``finish`` (with ``step`` given, ``commit`` defaults to False);
- nested dicts become ``outer.inner`` names.

One difference: W&B drops a step below the current one with a warning;
trainvis stores steps in any order, so such a row is written at its step.

The trainvis job is created at the first ``log`` (or ``finish``, or when
``run.id`` is read before an ``id`` was given), so that ``wandb.config``
updates made between ``init`` and training reach the job's config. Later
updates replace the job's config (``PATCH``), sent in order with the rows and
spooled with them while the server is away.
"""

from __future__ import annotations

import atexit
import fnmatch
import math
import os
import sys
from collections.abc import Callable, Mapping
from typing import Any

from trainvis.client import Run as TrainvisRun
from trainvis.client import init as trainvis_init
from trainvis.compat._common import (
    FinishesOnExit,
    Names,
    as_number,
    exit_status,
    kind,
    log,
    unsupported,
    warn_once,
)
from trainvis.compat._wandb_config import Config, Summary

TOOL = "wandb"


def _as_step(value: Any) -> int | None:
    number = as_number(value)
    if number is None or not math.isfinite(number) or number < 0 or number != int(number):
        return None
    return int(number)


class Run(FinishesOnExit):
    """What ``wandb.init`` returns (see the module docstring for its rules)."""

    def __init__(
        self,
        *,
        name: str | None,
        run_id: str | None,
        config: Mapping[str, Any],
        tags: list[str],
        resume: bool,
        meta: dict[str, Any],
        directory: str | None,
        disabled: bool,
        init_kwargs: dict[str, Any],
    ) -> None:
        self.config = Config(config, on_change=self._config_changed)
        self._last: dict[str, float] = {}
        self.summary = Summary(self._last)
        self.name = name
        self.tags = tuple(tags)
        self.project = meta.get("project")
        self.group = meta.get("group")
        self.job_type = meta.get("job_type")
        self.notes = meta.get("notes")
        self.entity = meta.get("entity")
        self.dir = directory or os.getcwd()
        self.disabled = disabled
        self._meta = meta
        self._id = run_id
        self._resume = resume
        self._init_kwargs = init_kwargs
        self._run: TrainvisRun | None = None
        self._step = 0
        self._pending: dict[str, float] = {}
        self._touched = False
        self._names = Names(TOOL)
        self._step_metrics: list[tuple[str, str]] = []
        self._step_metric_of: dict[str, str | None] = {}
        self._finished = False
        self.on_finish: Callable[[Run], None] | None = None

    # ------------------------------------------------------------------ identity

    @property
    def id(self) -> str:
        """The job id (reading it before any ``log`` creates the job, unless ``id=`` was given)."""
        if self._id is None:
            self._start()
        return self._id or "disabled"

    @property
    def step(self) -> int:
        """The step the next ``log`` without ``step`` writes to."""
        return self._step

    @property
    def resumed(self) -> bool:
        return self._resume

    @property
    def url(self) -> str | None:
        """The job's dashboard page (None in local mode or when disabled)."""
        if self._run is None or not self._run.target.startswith("http"):
            return None
        return f"{self._run.target.rstrip('/')}/dashboard/job/{self._run.id}"

    @property
    def trainvis_run(self) -> TrainvisRun | None:
        """The :class:`trainvis.Run` underneath (None until the job is created)."""
        return self._run

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return unsupported(f"wandb.Run.{name}")

    # ------------------------------------------------------------------ the job

    def _start(self) -> TrainvisRun | None:
        if self._run is not None or self.disabled or self._finished:
            return self._run
        run = trainvis_init(
            name=self.name,
            id=self._id,
            resume=self._resume and self._id is not None,
            config=self._job_config(),
            tags=list(self.tags),
            **self._init_kwargs,
        )
        self._run, self._id, self.name = run, run.id, run.job.get("name", self.name)
        hook_exit()
        current = run.job.get("current_step")
        if self._resume and current is not None:
            self._step = max(self._step, int(current) + 1)
        return run

    def _job_config(self) -> dict[str, Any]:
        """The job's config: ``wandb.config``, plus the init metadata under ``wandb``."""
        config = self.config.as_dict()
        if self._meta:
            config.setdefault("wandb", dict(self._meta))
        return config

    def _config_changed(self) -> None:
        """``wandb.config`` changed: once the job exists, its config is replaced
        (queued behind the rows logged so far; issue 16)."""
        if self._run is None:
            return
        if self._run.finished:
            warn_once(
                "config-after-finish",
                "trainvis: wandb.config changed after finish; the job %s keeps its config",
                self._run.id,
            )
            return
        self._run.update_job(config=self._job_config())

    # ------------------------------------------------------------------ logging

    def log(
        self,
        data: Mapping[str, Any],
        step: int | None = None,
        commit: bool | None = None,
        sync: bool | None = None,
    ) -> None:
        """Log ``data`` under W&B's step rules (see the module docstring).

        Non-numeric values (images, tables, histograms, strings) are dropped
        with one warning per key; names trainvis cannot store are made legal
        (one warning). Never raises for lack of support.

        Raises:
            ValueError: ``data`` is not a mapping (as W&B).
        """
        if not isinstance(data, Mapping):
            raise ValueError("wandb.log must be passed a dictionary")
        if self._finished:
            warn_once("log-finished", "trainvis: wandb.log after finish is ignored")
            return
        if self.disabled or self._start() is None:
            return
        values = self._flatten(data, "", {})
        if step is not None:
            wanted = _as_step(step)
            if wanted is None:
                warn_once("bad-step", "trainvis: wandb.log step=%r is not a step; ignored", step)
            elif wanted < self._step:  # W&B drops it; trainvis stores steps in any order
                self._emit(values, wanted)
                return
            elif wanted > self._step:
                self._commit()
                self._step = wanted
        elif commit is None:
            commit = True
        self._pending.update(values)
        self._touched = self._touched or bool(data)
        if commit:
            self._commit()

    def _flatten(
        self, data: Mapping[str, Any], prefix: str, out: dict[str, float]
    ) -> dict[str, float]:
        for key, value in data.items():
            full = f"{prefix}{key}" if prefix or type(key) is not str else key
            if type(value) is float:  # the common case first
                out[full] = value
                continue
            if isinstance(value, Mapping):
                self._flatten(value, f"{full}.", out)
                continue
            number = as_number(value)
            if number is None:
                if value is not None:
                    warn_once(
                        f"value:{full}",
                        "trainvis: wandb metric %r dropped: %s is not a number",
                        full,
                        kind(value),
                    )
                continue
            out[full] = number
        return out

    def _commit(self) -> None:
        """W&B's flush of the current step: write it and move to the next."""
        if not self._touched:
            return
        self._emit(self._pending, self._step)
        self._pending, self._touched = {}, False
        self._step += 1

    def _emit(self, values: dict[str, float], step: int) -> None:
        run = self._run
        if run is None:
            return
        by_step: dict[int, dict[str, float]] = {}
        main: dict[str, float] = {}
        for key, value in values.items():
            name = self._names(key)
            if name is None:
                continue
            target = self._step_for(key, values)
            if target is None:
                main[name] = value
            else:
                by_step.setdefault(target, {})[name] = value
        self._last.update(values)
        for target, row in by_step.items():
            run.log(row, step=target)
        if main:
            run.log(main, step=step)

    # ------------------------------------------------------------------ define_metric

    def define_metric(
        self,
        name: str,
        step_metric: str | None = None,
        step_sync: bool | None = None,
        hidden: bool | None = None,
        summary: str | None = None,
        goal: str | None = None,
        overwrite: bool | None = None,
        **kwargs: Any,
    ) -> None:
        """Accepted; ``step_metric`` is honoured: the metrics ``name`` matches
        (a glob such as ``val/*``) are written at the step metric's value
        (from the same ``log``, else its last value) when it is a whole number
        ≥ 0, else at the usual step. ``summary``/``goal``/``hidden`` are ignored."""
        if step_metric:
            self._step_metrics.append((name, step_metric))
            self._step_metric_of.clear()
        if summary or goal or hidden or kwargs:
            warn_once(
                "define_metric-options",
                "trainvis: wandb.define_metric(summary=, goal=, hidden=) are ignored "
                "(trainvis keeps last, min and max of every metric)",
            )

    def _step_for(self, key: str, values: Mapping[str, float]) -> int | None:
        if not self._step_metrics:
            return None
        try:
            metric = self._step_metric_of[key]
        except KeyError:
            metric = None
            for pattern, candidate in reversed(self._step_metrics):
                if candidate != key and fnmatch.fnmatchcase(key, pattern):
                    metric = candidate
                    break
            self._step_metric_of[key] = metric
        if metric is None:
            return None
        value = values.get(metric, self._last.get(metric))
        return None if value is None else _as_step(value)

    # ------------------------------------------------------------------ finish

    def finish(self, exit_code: int | None = None, quiet: bool | None = None) -> None:
        """Write what is pending and the summary values, then end the job:
        ``completed`` for exit code 0 (or none), ``failed`` otherwise."""
        status, message = "completed", None
        if exit_code:
            status, message = "failed", f"exit code {exit_code}"
        self._finish(status, message)

    def _finish(self, status: str, message: str | None, timeout: float = 30.0) -> None:
        if self._finished:
            return
        if not self.disabled:
            run = self._start()
            if run is not None and not run.finished:
                self._commit()
                self._log_summary()
            self._finished = True
            if run is not None:
                run.finish(status, message=message, timeout=timeout)
        self._finished = True
        if self.on_finish is not None:
            self.on_finish(self)

    def _log_summary(self) -> None:
        values: dict[str, float] = {}
        for key, value in self.summary.explicit().items():
            number = as_number(value)
            if number is None:
                warn_once(
                    f"summary:{key}",
                    "trainvis: wandb summary %r dropped: %s is not a number",
                    key,
                    kind(value),
                )
                continue
            name = self._names(f"summary/{key}")
            if name is not None:
                values[name] = number
        if values and self._run is not None:
            self._run.log(values, step=max(self._step - 1, 0))

    @property
    def finished(self) -> bool:
        return self._finished

    def __repr__(self) -> str:
        return f"<trainvis.compat.wandb.Run {self._id or '(not created yet)'}>"


#: Runs started by ``wandb.init`` and not finished, oldest first.
OPEN: list[Run] = []


def finish_at_exit() -> None:
    """Finish the open runs (their pending step and summary included); an uncaught
    exception (``sys.last_value``, set before exit handlers run) fails them."""
    status, message = exit_status(getattr(sys, "last_value", None))
    for run in list(reversed(OPEN)):
        try:
            run._finish(status, message, timeout=10.0)
        except Exception:
            log.exception("trainvis: could not finish wandb run %s at exit", run)


def hook_exit() -> None:
    """Register :func:`finish_at_exit` (again): exit handlers run last-registered
    first, so this keeps it ahead of the SDK's own, registered by ``trainvis.init``
    (which would finish the run before its pending W&B step is written)."""
    atexit.unregister(finish_at_exit)
    atexit.register(finish_at_exit)
