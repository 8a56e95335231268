"""PyTorch Lightning: a ``Logger`` that logs to trainvis.

::

    from trainvis.integrations.lightning import TrainvisLogger

    trainer = lightning.Trainer(max_epochs=10, logger=TrainvisLogger(name="mnist"))
    trainer.fit(model, data)

The run starts at the first ``log_hyperparams`` or ``log_metrics`` (the
hyper-parameters saved with ``save_hyperparameters()`` become the job's
config) and ends with Lightning's ``finalize``: ``success`` → ``completed``,
``failed`` → ``failed``. Metrics keep the names given to ``self.log``
(``train_loss``, ``val_loss``, …); Lightning's ``epoch`` entry is the row's
epoch. Works with ``lightning`` and with the older ``pytorch_lightning``.
"""

from __future__ import annotations

from argparse import Namespace
from collections.abc import Mapping
from typing import Any

try:
    from lightning.pytorch.loggers.logger import Logger
    from lightning.pytorch.utilities import rank_zero_only
except ImportError:  # pragma: no cover - the older package name
    from pytorch_lightning.loggers.logger import Logger  # type: ignore[assignment, no-redef, unused-ignore]
    from pytorch_lightning.utilities import (  # type: ignore[no-redef, unused-ignore]
        rank_zero_only,
    )

from trainvis.client.run import Run
from trainvis.client.start import init
from trainvis.integrations.common import as_number, finish_owned, numeric_metrics

STATUS = {"success": "completed", "failed": "failed", "finished": "completed"}


def _params(params: Any) -> dict[str, Any]:
    if isinstance(params, Namespace):
        return dict(vars(params))
    if isinstance(params, Mapping):
        return dict(params)
    return {"params": str(params)}


class TrainvisLogger(Logger):  # type: ignore[misc, unused-ignore]
    """A Lightning logger writing to a trainvis run.

    Args:
        name: the job's name.
        run: an existing run to log into (you finish it); default: start one.
        **init_kwargs: passed to :func:`trainvis.init` (``url``, ``model_name``,
            ``total_epochs``, ``tags``, ``monitor_gpu``, …).
    """

    def __init__(self, name: str | None = None, *, run: Run | None = None, **init_kwargs: Any):
        super().__init__()
        self._name = name
        self._run = run
        self._owned = run is None
        self._init_kwargs = init_kwargs
        self._hparams: dict[str, Any] = {}

    @property
    def name(self) -> str | None:
        """The job's name."""
        return self._name

    @property
    def version(self) -> str | None:
        """The job id once the run has started."""
        return self._run.id if self._run is not None else None

    @property
    def experiment(self) -> Run | None:
        """The :class:`~trainvis.Run`, None until the first hyper-parameters or metrics."""
        return self._run

    def _ensure_run(self) -> Run:
        if self._run is None:
            options: dict[str, Any] = {"name": self._name, "config": self._hparams}
            options["tags"] = ["lightning"]
            options.update(self._init_kwargs)
            self._run = init(**options)
            self._owned = True
        elif self._run.finished and self._owned:
            # ``trainer.test()`` after ``fit()``: the same job goes on.
            extra = {k: v for k, v in self._init_kwargs.items() if k not in ("id", "resume")}
            self._run = init(**{**extra, "id": self._run.id, "resume": True})
        return self._run

    @rank_zero_only  # type: ignore[misc, unused-ignore]
    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        """Keep the hyper-parameters as the job's config (the run starts here)."""
        self._hparams.update(_params(params))
        self._ensure_run()

    @rank_zero_only  # type: ignore[misc, unused-ignore]
    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        """One row at ``step`` (Lightning's global step)."""
        run = self._ensure_run()
        epoch = as_number(metrics.get("epoch"))
        values = numeric_metrics({k: v for k, v in metrics.items() if k != "epoch"})
        if values:
            run.log(values, step=step, epoch=epoch)

    @rank_zero_only  # type: ignore[misc, unused-ignore]
    def finalize(self, status: str) -> None:
        """Finish the run: ``success`` → completed, ``failed`` → failed."""
        if status == "finished":  # SLURM requeue: the job goes on elsewhere
            if self._run is not None:
                self._run.flush()
            return
        finish_owned(self._run, self._owned, STATUS.get(status, "completed"))
