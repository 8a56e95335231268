"""Training health: incremental detectors run on ingest, stored job events, webhooks.

- ``events.py``: the domain types (:class:`JobEvent`, its kinds and severities,
  the note request body); the store imports only this module.
- ``detectors.py`` (spikes, divergence, plateaus), ``gpu_idle.py`` and
  ``rolling.py`` (batched EMA, rolling median/MAD): pure, numpy-vectorised
  detectors with O(1) state per metric.
- ``monitor.py``: applies the detectors to just-written rows and stores findings.
- ``webhooks.py``: the background notifier (bounded queue, retries with backoff).
"""
