"""Import MLflow runs: every run of the chosen experiments becomes a job.

Reads through ``mlflow.MlflowClient`` on any tracking URI it understands
(``sqlite:///mlflow.db``, ``http://mlflow:5000``, a ``file:`` store where
MLflow still allows one). Experiments and runs are paged through
(``search_experiments``/``search_runs`` with page tokens) and every metric's
full history is read with ``get_metric_history``, which pages itself.
Deleted runs and experiments are skipped.

Each job:

- id ``mlflow-<run_id>``; name: the run's name (its id when it has none);
- ``config``: the run's params. MLflow stores params as strings; a string
  that is exactly how Python writes an int or a float (``"32"``, ``"0.001"``)
  becomes that number, anything else stays a string;
- ``tags``: ``mlflow``, ``experiment=<name>`` and the run's user tags as
  ``key=value`` (MLflow's own ``mlflow.*`` tags are left out; each tag is cut
  to 100 characters, 100 tags at most);
- metrics: the metric keys, mapped as :mod:`trainvis.importers.names` says;
  MLflow's millisecond timestamps are kept (a step's timestamp is the latest
  of its points); of several values at one step, the latest logged wins;
  MLflow's SQL stores save ±Infinity as ±1.7976931348623157e308 (the largest
  float), which comes back as ±Infinity;
- status: FINISHED → completed, FAILED → failed, KILLED → cancelled,
  RUNNING → running, SCHEDULED → pending.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterator
from typing import Any

from trainvis.importers.progress import Progress
from trainvis.importers.rows import ImportedJob, RowBuilder
from trainvis.importers.sink import OnJob, TransferError, write_all

STATUS = {
    "FINISHED": "completed",
    "FAILED": "failed",
    "KILLED": "cancelled",
    "RUNNING": "running",
    "SCHEDULED": "pending",
}
PAGE = 1000
MAX_TAGS = 100
MAX_TAG = 100
MAX_NAME = 200


def _client(tracking_uri: str) -> Any:
    try:
        from mlflow import MlflowClient
    except ImportError as exc:
        raise TransferError(
            "importing MLflow runs needs MLflow: pip install 'trainvis[mlflow]'"
        ) from exc
    return MlflowClient(tracking_uri=tracking_uri)


def _experiments(client: Any, name: str | None) -> list[Any]:
    """The experiment called (or with id) ``name``, or every active experiment."""
    if name is not None:
        found = client.get_experiment_by_name(name)
        if found is None and name.isdigit():
            found = client.get_experiment(name)
        if found is None:
            raise TransferError(f"no MLflow experiment named {name!r}")
        return [found]
    experiments: list[Any] = []
    token = None
    while True:
        page = client.search_experiments(max_results=PAGE, page_token=token)
        experiments.extend(page)
        token = page.token
        if not token:
            return experiments


def _runs(client: Any, experiment_id: str) -> Iterator[Any]:
    token = None
    while True:
        page = client.search_runs(
            [experiment_id],
            max_results=PAGE,
            order_by=["attributes.start_time ASC"],
            page_token=token,
        )
        yield from page
        token = page.token
        if not token:
            return


def parse_param(text: str) -> Any:
    """``"32"`` → 32, ``"0.001"`` → 0.001; any other string stays as it is (lossless)."""
    try:
        number: int | float = int(text)
    except ValueError:
        try:
            number = float(text)
        except ValueError:
            return text
        if not math.isfinite(number) or repr(number) != text:
            return text
        return number
    return number if str(number) == text else text


def _tags(run: Any, experiment: Any) -> list[str]:
    tags = ["mlflow", f"experiment={experiment.name}"[:MAX_TAG]]
    for key, value in sorted(run.data.tags.items()):
        if key.startswith("mlflow."):
            continue
        tags.append(f"{key}={value}"[:MAX_TAG])
    return tags[:MAX_TAGS]


def _value(value: float) -> float:
    """MLflow's stand-in for an infinity (the largest float) back to the infinity."""
    number = float(value)
    if abs(number) == sys.float_info.max:
        return math.copysign(math.inf, number)
    return number


def build_job(client: Any, run: Any, experiment: Any) -> ImportedJob:
    """The job for one MLflow run (see the module doc)."""
    info = run.info
    builder = RowBuilder()
    for key in sorted(run.data.metrics):
        history = client.get_metric_history(info.run_id, key)
        for metric in sorted(history, key=lambda item: (item.step, item.timestamp)):
            builder.add(key, int(metric.step), _value(metric.value), metric.timestamp / 1000)
    rows, points = builder.build()
    name = (info.run_name or run.data.tags.get("mlflow.runName") or info.run_id)[:MAX_NAME]
    spec: dict[str, Any] = {
        "id": f"mlflow-{info.run_id}",
        "name": name,
        "config": {key: parse_param(value) for key, value in sorted(run.data.params.items())},
        "tags": _tags(run, experiment),
    }
    return ImportedJob(
        spec=spec, rows=rows, status=STATUS.get(info.status, "pending"), points=points
    )


def iter_jobs(
    tracking_uri: str, *, experiment: str | None = None, progress: Progress | None = None
) -> Iterator[ImportedJob]:
    """One :class:`ImportedJob` per active run, read lazily (one run in memory)."""
    client = _client(tracking_uri)
    bar = progress or Progress()
    task = bar.add("read MLflow runs", total=None)
    for found in _experiments(client, experiment):
        for run in _runs(client, found.experiment_id):
            yield build_job(client, run, found)
            bar.advance(task)


def import_mlflow(
    tracking_uri: str,
    *,
    experiment: str | None = None,
    url: str | None = None,
    db: str | None = None,
    force: bool = False,
    progress: bool = False,
    on_job: OnJob | None = None,
) -> list[str]:
    """Import the runs of one experiment (or all); returns the job ids.

    Args:
        tracking_uri: MLflow tracking URI (``sqlite:///mlflow.db``, ``http://…``).
        experiment: an experiment name (or id); default: every active experiment.
        url: server root to send to (default ``TRAINVIS_URL``).
        db: store to write to directly (wins over ``url``).
        force: upload the rows even when the job already holds as many points.
        progress: draw a progress bar on stderr.
        on_job: called with each job and ``"created"``/``"updated"``/``"unchanged"``.

    Raises:
        TransferError: MLflow is missing, or no such experiment.
        ApiError, ServerUnavailable: the destination refused or is unreachable.
    """
    return write_all(
        lambda bar: iter_jobs(tracking_uri, experiment=experiment, progress=bar),
        url=url,
        db=db,
        force=force,
        progress=progress,
        on_job=on_job,
    )
