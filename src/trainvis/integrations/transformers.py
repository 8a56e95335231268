"""Hugging Face Transformers: a ``TrainerCallback`` that logs to trainvis.

::

    from trainvis.integrations.transformers import TrainvisCallback

    trainer = Trainer(..., args=TrainingArguments(..., report_to=[]),
                      callbacks=[TrainvisCallback(url="http://localhost:8000")])
    trainer.train()

The run starts at ``on_train_begin`` (name: ``args.run_name``; the training
arguments and the model config become the job's config; ``total_steps`` and
``total_epochs`` come from the trainer state) and finishes ``completed`` at
``on_train_end``. Every ``on_log`` becomes a row at ``state.global_step``:
``loss`` is logged as ``train_loss``, ``eval_loss`` as ``val_loss``, the
final ``train_loss`` average as ``train_loss_avg``; ``learning_rate``,
``grad_norm`` and ``eval_*`` keep their names; ``epoch`` is the row's epoch.
Only the main process logs. If training raises, the run is marked ``failed``
when the process exits (or pass your own ``run=`` and manage it yourself).
"""

from __future__ import annotations

from typing import Any

from transformers import TrainerCallback

from trainvis.client.run import Run
from trainvis.client.start import init
from trainvis.integrations.common import (
    as_number,
    finish_owned,
    numeric_metrics,
    positive_int,
    whole_epochs,
)

#: Transformers' log keys → trainvis metric names.
RENAME = {"loss": "train_loss", "eval_loss": "val_loss", "train_loss": "train_loss_avg"}


def _config(args: Any, model: Any) -> dict[str, Any]:
    config: dict[str, Any] = {}
    to_dict = getattr(args, "to_sanitized_dict", None) or getattr(args, "to_dict", None)
    if callable(to_dict):
        config["training_args"] = to_dict()
    model_config = getattr(model, "config", None)
    if model_config is not None and callable(getattr(model_config, "to_dict", None)):
        config["model_config"] = model_config.to_dict()
    return config


def _model_name(model: Any) -> str | None:
    if model is None:
        return None
    config = getattr(model, "config", None)
    name = getattr(config, "_name_or_path", None) if config is not None else None
    return str(name) if name else type(model).__name__


class TrainvisCallback(TrainerCallback):  # type: ignore[misc, unused-ignore]
    """Logs a ``Trainer``'s losses, learning rate, evaluations and status.

    Args:
        run: an existing run to log into (you finish it); default: start one.
        **init_kwargs: passed to :func:`trainvis.init` (``url``, ``name``,
            ``tags``, ``monitor_gpu``, …) when the callback starts the run.
    """

    def __init__(self, *, run: Run | None = None, **init_kwargs: Any) -> None:
        self.run = run
        self._owned = run is None
        self._init_kwargs = init_kwargs

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Start the run (main process only)."""
        if not state.is_world_process_zero or (self.run is not None and not self.run.finished):
            return
        model = kwargs.get("model")
        options: dict[str, Any] = {
            "name": getattr(args, "run_name", None) or None,
            "model_name": _model_name(model),
            "total_steps": positive_int(getattr(state, "max_steps", None)),
            "total_epochs": whole_epochs(
                getattr(state, "num_train_epochs", None) or getattr(args, "num_train_epochs", None)
            ),
            "config": _config(args, model),
            "tags": ["transformers"],
        }
        options.update(self._init_kwargs)
        self.run = init(**options)
        self._owned = True

    def on_log(
        self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any
    ) -> None:
        """Log one row at ``state.global_step``."""
        if self.run is None or self.run.finished or not state.is_world_process_zero or not logs:
            return
        epoch = as_number(logs.get("epoch"))
        metrics = numeric_metrics({k: v for k, v in logs.items() if k != "epoch"}, RENAME)
        if metrics:
            self.run.log(metrics, step=int(state.global_step), epoch=epoch)

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Finish the run ``completed`` (when the callback started it)."""
        if state.is_world_process_zero:
            finish_owned(self.run, self._owned, "completed")
