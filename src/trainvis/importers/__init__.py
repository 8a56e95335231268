"""Bring runs in from other tools: TensorBoard, MLflow, Neptune, W&B, SwanLab, export files.

::

    from trainvis.importers import import_tensorboard, import_mlflow, import_file

    ids = import_tensorboard("runs/", url="http://localhost:8000")
    ids = import_mlflow("sqlite:///mlflow.db", experiment="bert", db="trainvis.db")
    job = import_file("job-001.json", db="fresh.db")
    ids = import_neptune("exports/data")         # neptune-exporter's Parquet files
    ids = import_wandb("wandb/")                 # W&B offline-run-*/run-* directories
    ids = import_swanlab("swanlog/")             # SwanLab local/offline runs

Every importer is idempotent: jobs get deterministic ids, and importing the
same source again writes the same (job, metric, step) values again (or
nothing, when the job already holds them). Destinations follow the SDK: an
explicit ``db`` is a store written directly; otherwise ``url`` or
``TRAINVIS_URL`` (token from ``TRAINVIS_TOKEN``); otherwise ``TRAINVIS_DB``.
The readers (``tensorboard``, ``mlflow``, ``pyarrow``, ``wandb``,
``swanlab``) are optional extras, imported only when used.
"""

from __future__ import annotations

from trainvis.importers.files import import_file
from trainvis.importers.mlflow import import_mlflow
from trainvis.importers.neptune import import_neptune
from trainvis.importers.rows import ImportedJob
from trainvis.importers.sink import TransferError
from trainvis.importers.swanlab import import_swanlab
from trainvis.importers.tensorboard import import_tensorboard
from trainvis.importers.wandb import import_wandb

__all__ = [
    "ImportedJob",
    "TransferError",
    "import_file",
    "import_mlflow",
    "import_neptune",
    "import_swanlab",
    "import_tensorboard",
    "import_wandb",
]
