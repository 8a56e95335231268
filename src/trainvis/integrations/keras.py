"""Keras 3: a callback that logs ``model.fit`` to trainvis (any backend).

::

    from trainvis.integrations.keras import TrainvisKerasCallback

    model.fit(x, y, epochs=5, validation_split=0.2,
              callbacks=[TrainvisKerasCallback(name="mlp", url="http://localhost:8000")])

The run starts at ``on_train_begin`` (``total_epochs`` and ``total_steps``
from ``fit``'s parameters) and finishes ``completed`` at ``on_train_end``.
Every ``log_every`` batches a row is logged at the global batch step
(``loss`` → ``train_loss``; the other running metrics keep their names);
at each epoch's end the epoch's metrics (``val_loss``, ``val_accuracy``, …)
and the optimizer's learning rate are logged at the same step, with the
epoch. If ``fit`` raises, the run is marked ``failed`` when the process exits.
"""

from __future__ import annotations

from typing import Any

import keras

from trainvis.client.run import Run
from trainvis.client.start import init
from trainvis.integrations.common import as_number, finish_owned, numeric_metrics, positive_int

RENAME = {"loss": "train_loss"}


class TrainvisKerasCallback(keras.callbacks.Callback):  # type: ignore[misc, unused-ignore]
    """Logs a Keras model's training.

    Args:
        run: an existing run to log into (you finish it); default: start one.
        log_every: log batch metrics every this many batches (0: epochs only).
        **init_kwargs: passed to :func:`trainvis.init` (``url``, ``name``, …).
    """

    def __init__(self, *, run: Run | None = None, log_every: int = 1, **init_kwargs: Any):
        super().__init__()
        self.run = run
        self.log_every = log_every
        self._owned = run is None
        self._init_kwargs = init_kwargs
        self._step = 0
        self._epoch = 0

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        """Start the run."""
        if self.run is not None and not self.run.finished:
            return
        params = self.params or {}
        epochs = positive_int(params.get("epochs"))
        steps = positive_int(params.get("steps"))
        options: dict[str, Any] = {
            "model_name": getattr(self.model, "name", None),
            "total_epochs": epochs,
            "total_steps": epochs * steps if epochs and steps else None,
            "config": {"fit": {k: v for k, v in params.items() if as_number(v) is not None}},
            "tags": ["keras", f"backend:{keras.backend.backend()}"],
        }
        options.update(self._init_kwargs)
        self.run = init(**options)
        self._owned = True

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._epoch = epoch

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        """A row every ``log_every`` batches."""
        self._step += 1
        if self.run is None or not logs or not self.log_every or self._step % self.log_every:
            return
        epoch = (
            self._epoch + (batch + 1) / self.params["steps"] if self.params.get("steps") else None
        )
        self.run.log(numeric_metrics(logs, RENAME), step=self._step, epoch=epoch)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        """The epoch's metrics (validation included) and the learning rate."""
        if self.run is None:
            return
        metrics = numeric_metrics(logs or {}, RENAME)
        learning_rate = self._learning_rate()
        if learning_rate is not None:
            metrics["learning_rate"] = learning_rate
        if metrics:
            self.run.log(metrics, step=self._step, epoch=float(epoch + 1))

    def _learning_rate(self) -> float | None:
        optimizer = getattr(self.model, "optimizer", None)
        value = getattr(optimizer, "learning_rate", None)
        if value is None:
            return None
        try:
            return as_number(keras.ops.convert_to_numpy(value))
        except (TypeError, ValueError, AttributeError):
            return as_number(value)

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        """Finish the run ``completed`` (when the callback started it)."""
        finish_owned(self.run, self._owned, "completed")
