"""trainvis: self-hosted training visualization.

The server lives in :mod:`trainvis.api`; the SDK used inside training loops is
re-exported here::

    run = trainvis.init(name="my-run", url="http://localhost:8000")
    run.log({"train_loss": 0.8}, step=100)
    run.finish()
"""

from __future__ import annotations

from trainvis.client import Run, finish, init, log
from trainvis.models import JobStatus, TrainingJob, TrainingMetrics
from trainvis.version import __version__

__all__ = [
    "JobStatus",
    "Run",
    "TrainingJob",
    "TrainingMetrics",
    "__version__",
    "finish",
    "init",
    "log",
]
