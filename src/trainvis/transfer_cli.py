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
from dataclasses import dataclass, field
from typing import Any

from trainvis.client.http import TrainvisError
from trainvis.importers import (
    ImportedJob,
    TransferError,
    import_file,
    import_mlflow,
    import_neptune,
    import_swanlab,
    import_tensorboard,
    import_wandb,
)
from trainvis.importers.sink import OnJob

#: One ``add_argument`` call: its names and its keywords.
Argument = tuple[tuple[str, ...], dict[str, Any]]


@dataclass(frozen=True)
class _Source:
    """One ``trainvis import`` sub-command.

    ``importer`` is called with the parsed ``source`` argument first, then the
    destination options and the parsed ``keywords`` by name; ``arguments`` are
    the sub-command's own (the destination options follow them).
    """

    help: str
    importer: Callable[..., object]
    source: str
    arguments: tuple[Argument, ...]
    keywords: tuple[str, ...] = ()
    defaults: dict[str, Any] = field(default_factory=dict)


_FILE_FORMATS = (("json", "JSON"), ("csv", "CSV"), ("parquet", "Parquet"))


def _file_source(fmt: str, label: str) -> _Source:
    """``trainvis import json|csv|parquet``: a file written by ``trainvis export``."""
    return _Source(
        f"a {label} file from `trainvis export`",
        import_file,
        "file",
        (
            (("file",), {"help": f"the {label} file"}),
            (("--id",), {"dest": "job_id", "help": "import under this job id"}),
            (("--name",), {"help": "job name (default: the file's job, or its name)"}),
        ),
        keywords=("fmt", "job_id", "name"),
        defaults={"fmt": fmt},
    )


_SOURCES: dict[str, _Source] = {
    "tensorboard": _Source(
        "every run directory of a logdir becomes a job",
        import_tensorboard,
        "logdir",
        (
            (("logdir",), {"help": "TensorBoard log directory"}),
            (("--name-prefix",), {"default": "", "help": "put before every job name"}),
        ),
        keywords=("name_prefix",),
    ),
    "mlflow": _Source(
        "every run of an MLflow experiment becomes a job",
        import_mlflow,
        "tracking_uri",
        (
            (("--tracking-uri",), {"required": True, "help": "e.g. sqlite:///mlflow.db"}),
            (("--experiment",), {"help": "experiment name or id (default: all active ones)"}),
        ),
        keywords=("experiment",),
    ),
    "neptune": _Source(
        "every run neptune-exporter wrote becomes a job",
        import_neptune,
        "path",
        (
            (("path",), {"help": "neptune-exporter's --data-path, or one project directory"}),
            (
                ("--step-multiplier",),
                {
                    "type": int,
                    "default": 1,
                    "help": "multiply Neptune's decimal steps by this to make them whole "
                    "(default 1)",
                },
            ),
        ),
        keywords=("step_multiplier",),
    ),
    "wandb": _Source(
        "every W&B run directory becomes a job",
        import_wandb,
        "path",
        ((("path",), {"help": "a wandb/ directory (offline-run-*, run-*), or one run"}),),
    ),
    "swanlab": _Source(
        "every SwanLab run directory becomes a job",
        import_swanlab,
        "path",
        ((("path",), {"help": "a swanlog/ directory (run-*), or one run"}),),
    ),
    **{fmt: _file_source(fmt, label) for fmt, label in _FILE_FORMATS},
}


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``import`` (with its sources) and ``export`` to the ``trainvis`` command."""
    parser = sub.add_parser(
        "import", help="import runs from TensorBoard, MLflow, Neptune, W&B, SwanLab or a file"
    )
    sources = parser.add_subparsers(dest="source", required=True)
    for name, source in _SOURCES.items():
        command = sources.add_parser(name, help=source.help)
        for names, options in source.arguments:
            command.add_argument(*names, **options)
        _destination(command)
        command.set_defaults(func=_import, **source.defaults)

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


def _reporter() -> OnJob:
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


def _import(args: argparse.Namespace) -> int:
    source = _SOURCES[args.source]
    keywords = {name: getattr(args, name) for name in source.keywords}
    return _run(
        f"import {args.source}",
        lambda: source.importer(
            getattr(args, source.source),
            url=args.url,
            db=args.db,
            force=args.force,
            progress=not args.no_progress,
            on_job=_reporter(),
            **keywords,
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
