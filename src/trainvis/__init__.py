"""trainvis: self-hosted training visualization.

The server lives in :mod:`trainvis.api`; the SDK used inside training loops is
re-exported here::

    run = trainvis.init(name="my-run", url="http://localhost:8000")
    run.log({"train_loss": 0.8}, step=100)
    run.finish()
"""

from __future__ import annotations

__version__ = "0.1.0"

from trainvis.client import Run, finish, init, log  # noqa: E402
from trainvis.models import JobStatus, TrainingJob, TrainingMetrics  # noqa: E402

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
