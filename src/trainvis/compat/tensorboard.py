"""``from trainvis.compat.tensorboard import SummaryWriter``: TensorBoard scalars to trainvis.

::

    from trainvis.compat.tensorboard import SummaryWriter

    with SummaryWriter("runs/resnet18") as writer:
        for step in range(1000):
            writer.add_scalar("train/loss", loss, step)
            writer.add_scalars("lr", {"backbone": lr0, "head": lr1}, step)
        writer.add_hparams({"lr": 0.1, "optimizer": "sgd"}, {"hparam/accuracy": acc})

One writer is one trainvis job, named after the last part of ``log_dir``
(plus ``comment``), created at the first ``add_*`` call; where it goes is
``trainvis.init``'s choice (``TRAINVIS_URL``, else the local store). Extra
keywords (``name``, ``tags``, ``config``, ``url``, ``total_steps``...) go to
:func:`trainvis.init`.

- ``add_scalar(tag, value, global_step, walltime)``: the tag is the metric
  name (``train/loss`` stays ``train/loss``; names trainvis cannot store are
  made legal, with one warning); ``walltime`` is the row's time. Without a
  ``global_step``, the tag's previous step + 1 (TensorBoard writes 0).
- ``add_scalars(main_tag, {key: value}, ...)``: metrics ``main_tag/key``.
- ``add_hparams(hparams, metrics)``: the hyper-parameters go into the job's
  config (after the first scalar, by an edit of the job sent in order with
  the rows), the metrics are logged at the writer's last step (or
  ``global_step``).
- ``flush()`` waits until the rows are delivered; ``close()`` (or leaving the
  ``with``) completes the job.

Every other ``add_*`` (images, histograms, graphs, text...) warns once and does nothing.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from trainvis.client import Run
from trainvis.client import init as trainvis_init
from trainvis.compat._common import (
    FinishesOnExit,
    Names,
    as_number,
    kind,
    unsupported,
    warn_once,
)

__all__ = ["SummaryWriter"]
TOOL = "TensorBoard"


def _job_name(log_dir: str | os.PathLike[str] | None, comment: str) -> str:
    if log_dir:
        base = Path(os.fspath(log_dir)).name or "run"
    else:
        base = Path(sys.argv[0] if sys.argv and sys.argv[0] else "run").stem or "run"
    return f"{base}{comment}"


class SummaryWriter(FinishesOnExit):
    """TensorBoard's ``SummaryWriter`` for scalars, writing one trainvis job."""

    def __init__(
        self,
        log_dir: str | os.PathLike[str] | None = None,
        comment: str = "",
        purge_step: int | None = None,
        max_queue: int = 10,
        flush_secs: int = 120,
        filename_suffix: str = "",
        **trainvis: Any,
    ) -> None:
        self.log_dir = os.fspath(log_dir) if log_dir is not None else None
        self._init: dict[str, Any] = {"name": _job_name(log_dir, comment), **trainvis}
        self._hparams: dict[str, Any] = {}
        self._config: dict[str, Any] = {}  # the config given, once the job exists
        self._run: Run | None = None
        self._closed = False
        self._names = Names(TOOL)
        self._next_step: dict[str, int] = {}
        self._last_step = 0
        if purge_step is not None:
            warn_once("purge_step", "trainvis: SummaryWriter(purge_step=) is ignored")

    # ------------------------------------------------------------------ the job

    @property
    def run(self) -> Run | None:
        """The :class:`trainvis.Run` underneath (None until the first ``add_*``)."""
        return self._run

    def _start(self) -> Run | None:
        if self._run is None and not self._closed:
            config = _as_config(self._init.pop("config", None))
            if self.log_dir is not None:
                config.setdefault("log_dir", self.log_dir)
            self._config = config
            self._run = trainvis_init(**self._init, config={**config, **self._hparams})
        return self._run

    def get_logdir(self) -> str | None:
        """The ``log_dir`` given (nothing is written there)."""
        return self.log_dir

    # ------------------------------------------------------------------ scalars

    def add_scalar(
        self,
        tag: str,
        scalar_value: Any,
        global_step: int | None = None,
        walltime: float | None = None,
        new_style: bool = False,
        double_precision: bool = False,
    ) -> None:
        """Log ``scalar_value`` as metric ``tag`` at ``global_step``."""
        self._write({tag: scalar_value}, global_step, walltime)

    def add_scalars(
        self,
        main_tag: str,
        tag_scalar_dict: Mapping[str, Any],
        global_step: int | None = None,
        walltime: float | None = None,
    ) -> None:
        """Log each ``key: value`` of ``tag_scalar_dict`` as metric ``main_tag/key``."""
        values = {f"{main_tag}/{key}": value for key, value in tag_scalar_dict.items()}
        self._write(values, global_step, walltime)

    def _write(self, values: Mapping[str, Any], global_step: Any, walltime: float | None) -> None:
        if self._closed:
            warn_once("closed", "trainvis: SummaryWriter used after close(); ignored")
            return
        run = self._start()
        if run is None:
            return
        row: dict[str, Any] = {}
        for tag, value in values.items():
            name = self._names(str(tag))
            number = as_number(value)
            if number is None:
                warn_once(
                    f"value:{tag}",
                    "trainvis: TensorBoard scalar %r dropped: %s is not a number",
                    tag,
                    kind(value),
                )
            elif name is not None:
                row[name] = number
        if not row:
            return
        step = self._step(row, global_step)
        if walltime is not None:
            row["timestamp"] = float(walltime)
        run.log(row, step=step)

    def _step(self, row: Mapping[str, Any], global_step: Any) -> int:
        step: int | None = None
        if global_step is not None:
            number = as_number(global_step)
            if number is not None and number >= 0 and number == int(number):
                step = int(number)
            else:
                warn_once("bad-step", "trainvis: global_step=%r is not a step", global_step)
        if step is None:  # TensorBoard writes 0; the tag's next step keeps a line
            step = max(self._next_step.get(name, 0) for name in row)
        for name in row:
            self._next_step[name] = step + 1
        self._last_step = step
        return step

    # ------------------------------------------------------------------ hparams

    def add_hparams(
        self,
        hparam_dict: Mapping[str, Any],
        metric_dict: Mapping[str, Any],
        hparam_domain_discrete: Any = None,
        run_name: str | None = None,
        global_step: int | None = None,
    ) -> None:
        """Hyper-parameters into the job's config (once the job exists, by an edit
        of the job queued behind its rows; issue 16); ``metric_dict`` logged at
        ``global_step`` or the writer's last step."""
        hparams = {str(key): _config_value(value) for key, value in hparam_dict.items()}
        self._hparams.update(hparams)
        if self._run is not None and hparams and not self._closed:
            self._run.update_job(config={**self._config, **self._hparams})
        if metric_dict:
            step = self._last_step if global_step is None else global_step
            self._write(metric_dict, step, None)
        elif self._run is None:
            self._start()

    # ------------------------------------------------------------------ lifecycle

    def flush(self) -> None:
        """Wait (up to 30 s) until what was logged is delivered."""
        if self._run is not None and not self._closed:
            self._run.flush()

    def close(self) -> None:
        """Deliver what is left and complete the job (a second call does nothing)."""
        self._finish("completed", None)

    def _finish(self, status: str, message: str | None) -> None:
        if self._closed:
            return
        self._closed = True
        if self._run is not None:
            self._run.finish(status, message=message)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return unsupported(f"SummaryWriter.{name}")


def _as_config(config: Any) -> dict[str, Any]:
    if config is None:
        return {}
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        return dataclasses.asdict(config)
    return dict(config if isinstance(config, Mapping) else vars(config))


def _config_value(value: Any) -> Any:
    """A JSON-friendly hyper-parameter (tensors and numpy scalars become numbers)."""
    if isinstance(value, str | bool | int | float) or value is None:
        return value
    number = as_number(value)
    return number if number is not None else str(value)
