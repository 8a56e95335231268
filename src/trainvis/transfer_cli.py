"""``trainvis import`` and ``trainvis export``: runs in from other tools, histories out.

::

    trainvis import tensorboard runs/ [--url URL | --db PATH] [--name-prefix P]
    trainvis import mlflow --tracking-uri sqlite:///mlflow.db [--experiment NAME]
    trainvis import neptune exports/data [--step-multiplier N]   # neptune-exporter's Parquet
    trainvis import wandb wandb/                 # offline-run-* / run-* directories
    trainvis import swanlab swanlog/             # SwanLab local/offline run directories
    trainvis import json job-001.json            # also: import csv / import parquet
    trainvis export job-001 --format csv|json|parquet [-o FILE]

``trainvis.cli`` finds :func:`register`.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable

from trainvis.client.http import TrainvisError
from trainvis.importers.rows import ImportedJob
from trainvis.importers.sink import TransferError


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``import`` (with its sources) and ``export`` to the ``trainvis`` command."""
    parser = sub.add_parser(
        "import", help="import runs from TensorBoard, MLflow, Neptune, W&B, SwanLab or a file"
    )
    sources = parser.add_subparsers(dest="source", required=True)

    tb = sources.add_parser("tensorboard", help="every run directory of a logdir becomes a job")
    tb.add_argument("logdir", help="TensorBoard log directory")
    tb.add_argument("--name-prefix", default="", help="put before every job name")
    _destination(tb)
    tb.set_defaults(func=_import_tensorboard)

    ml = sources.add_parser("mlflow", help="every run of an MLflow experiment becomes a job")
    ml.add_argument("--tracking-uri", required=True, help="e.g. sqlite:///mlflow.db")
    ml.add_argument("--experiment", help="experiment name or id (default: all active ones)")
    _destination(ml)
    ml.set_defaults(func=_import_mlflow)

    nep = sources.add_parser("neptune", help="every run neptune-exporter wrote becomes a job")
    nep.add_argument("path", help="neptune-exporter's --data-path, or one project directory")
    nep.add_argument(
        "--step-multiplier",
        type=int,
        default=1,
        help="multiply Neptune's decimal steps by this to make them whole (default 1)",
    )
    _destination(nep)
    nep.set_defaults(func=_import_neptune)

    wb = sources.add_parser("wandb", help="every W&B run directory becomes a job")
    wb.add_argument("path", help="a wandb/ directory (offline-run-*, run-*), or one run")
    _destination(wb)
    wb.set_defaults(func=_import_wandb)

    swan = sources.add_parser("swanlab", help="every SwanLab run directory becomes a job")
    swan.add_argument("path", help="a swanlog/ directory (run-*), or one run")
    _destination(swan)
    swan.set_defaults(func=_import_swanlab)

    for fmt, label in (("json", "JSON"), ("csv", "CSV"), ("parquet", "Parquet")):
        reader = sources.add_parser(fmt, help=f"a {label} file from `trainvis export`")
        reader.add_argument("file", help=f"the {label} file")
        reader.add_argument("--id", dest="job_id", help="import under this job id")
        reader.add_argument("--name", help="job name (default: the file's job, or its name)")
        _destination(reader)
        reader.set_defaults(func=_import_file, fmt=fmt)

    export = sub.add_parser("export", help="write a job's full history to a file")
    export.add_argument("job_id", metavar="JOB_ID")
    export.add_argument("--format", required=True, choices=("csv", "json", "parquet"))
    export.add_argument("-o", "--output", help="file to write (default JOB_ID.FORMAT; - stdout)")
    export.add_argument("--url", help="server root [TRAINVIS_URL; unset: local store]")
    export.add_argument("--db", help="read this store directly [TRAINVIS_DB]")
    export.set_defaults(func=_export)


def _destination(parser: argparse.ArgumentParser) -> None:
    target = parser.add_mutually_exclusive_group()
    target.add_argument("--url", help="server root [TRAINVIS_URL; token from TRAINVIS_TOKEN]")
    target.add_argument("--db", help="write to this store directly [TRAINVIS_DB]")
    parser.add_argument("--force", action="store_true", help="upload rows of unchanged jobs too")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _reporter() -> Callable[[ImportedJob, str], None]:
    def report(job: ImportedJob, outcome: str) -> None:
        print(
            f"{job.job_id}\t{outcome}\t{len(job.rows)} rows\t{job.points} points\t"
            f"{job.spec['name']}"
        )

    return report


def _run(command: str, action: Callable[[], object]) -> int:
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.WARNING, format="%(message)s")
    try:
        action()
    except (TransferError, TrainvisError) as exc:
        print(f"trainvis {command}: {exc}", file=sys.stderr)
        return 1
    return 0


def _import_tensorboard(args: argparse.Namespace) -> int:
    from trainvis.importers.tensorboard import import_tensorboard

    return _run(
        "import tensorboard",
        lambda: import_tensorboard(
            args.logdir,
            url=args.url,
            db=args.db,
            name_prefix=args.name_prefix,
            force=args.force,
            progress=not args.no_progress,
            on_job=_reporter(),
        ),
    )


def _import_mlflow(args: argparse.Namespace) -> int:
    from trainvis.importers.mlflow import import_mlflow

    return _run(
        "import mlflow",
        lambda: import_mlflow(
            args.tracking_uri,
            experiment=args.experiment,
            url=args.url,
            db=args.db,
            force=args.force,
            progress=not args.no_progress,
            on_job=_reporter(),
        ),
    )


def _import_neptune(args: argparse.Namespace) -> int:
    from trainvis.importers.neptune import import_neptune

    return _run(
        "import neptune",
        lambda: import_neptune(
            args.path,
            url=args.url,
            db=args.db,
            step_multiplier=args.step_multiplier,
            force=args.force,
            progress=not args.no_progress,
            on_job=_reporter(),
        ),
    )


def _import_wandb(args: argparse.Namespace) -> int:
    from trainvis.importers.wandb import import_wandb

    return _run(
        "import wandb",
        lambda: import_wandb(
            args.path,
            url=args.url,
            db=args.db,
            force=args.force,
            progress=not args.no_progress,
            on_job=_reporter(),
        ),
    )


def _import_swanlab(args: argparse.Namespace) -> int:
    from trainvis.importers.swanlab import import_swanlab

    return _run(
        "import swanlab",
        lambda: import_swanlab(
            args.path,
            url=args.url,
            db=args.db,
            force=args.force,
            progress=not args.no_progress,
            on_job=_reporter(),
        ),
    )


def _import_file(args: argparse.Namespace) -> int:
    from trainvis.importers.files import import_file

    return _run(
        f"import {args.fmt}",
        lambda: import_file(
            args.file,
            fmt=args.fmt,
            url=args.url,
            db=args.db,
            job_id=args.job_id,
            name=args.name,
            force=args.force,
            progress=not args.no_progress,
            on_job=_reporter(),
        ),
    )


def _export(args: argparse.Namespace) -> int:
    from trainvis.exporters import export_job

    output = args.output or f"{args.job_id}.{args.format}"

    def action() -> None:
        count = export_job(args.job_id, args.format, output, url=args.url, db=args.db)
        if output != "-":
            print(f"{args.job_id}: {count} rows written to {output}", file=sys.stderr)

    return _run("export", action)
