"""Callbacks that log a framework's training to trainvis, a few lines for the user.

- :mod:`trainvis.integrations.transformers`: ``TrainvisCallback`` for the
  Hugging Face ``Trainer`` (``pip install 'trainvis[transformers]'``);
- :mod:`trainvis.integrations.lightning`: ``TrainvisLogger`` for PyTorch
  Lightning (``trainvis[lightning]``);
- :mod:`trainvis.integrations.keras`: ``TrainvisKerasCallback`` for Keras 3
  (``trainvis[keras]``).

Each module imports its framework itself; importing this package imports none.
"""
