"""trainvis: self-hosted training visualization.

The server lives in :mod:`trainvis.api`; the SDK used inside training loops is
re-exported here (``trainvis.init``, ``Run``) when it is installed.
"""

from __future__ import annotations

__version__ = "0.1.0"

from trainvis.models import JobStatus, TrainingJob, TrainingMetrics  # noqa: E402

__all__ = ["JobStatus", "TrainingJob", "TrainingMetrics", "__version__"]
