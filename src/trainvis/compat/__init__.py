"""Drop-ins for the loggers training scripts already call.

- ``import trainvis.compat.wandb as wandb``: ``wandb.init``/``log``/``config``/
  ``summary``/``finish``/``define_metric`` on top of :func:`trainvis.init`;
- ``from trainvis.compat.tensorboard import SummaryWriter``: ``add_scalar``,
  ``add_scalars``, ``add_hparams``, ``flush``, ``close``.

Both go through the SDK (:mod:`trainvis.client`), so batching, the spool and
local mode work as with ``trainvis.init``. What they do not support warns once
(logger ``trainvis.compat``) and does nothing: no call raises inside a
training loop for lack of support. Nothing is imported here, so importing one
drop-in does not load the other.
"""
