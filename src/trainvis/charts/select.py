"""Which metrics each chart reads, how they are labelled and on which axis.

Pure string logic, shared by the chart builders and the API layer (which asks
:func:`select_metrics` what to read from the store).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from trainvis.charts.config import (
    DEFAULT_CHART_METRICS,
    GPU_FIELD_LABELS,
    LABELS,
    OMITTED_LISTED,
    ChartKind,
)
from trainvis.models import parse_gpu_series

# Known metrics first, in this order; the rest follow alphabetically.
_PREFERRED: dict[ChartKind, tuple[str, ...]] = {
    "loss": ("train_loss", "val_loss"),
    "gpu": ("gpu_utilization", "gpu_memory"),
    "metrics": ("accuracy", "f1", "precision", "recall", "auc"),
    "learning_rate": ("learning_rate", "lr"),
}
_GPU_FIELD_ORDER = {name: rank for rank, name in enumerate(GPU_FIELD_LABELS)}


def is_gpu_metric(name: str) -> bool:
    """Names starting with ``gpu`` (``gpu_memory``, ``gpu0.utilization``, …)."""
    return name.startswith("gpu")


def is_loss_metric(name: str) -> bool:
    """Names containing ``loss`` (and not GPU readings)."""
    return "loss" in name and not is_gpu_metric(name)


def is_lr_metric(name: str) -> bool:
    """Names containing ``learning_rate`` or ``lr`` that are not losses or GPU readings."""
    return ("learning_rate" in name or "lr" in name) and not ("loss" in name or is_gpu_metric(name))


def is_eval_metric(name: str) -> bool:
    """The metrics chart's default: not loss, learning rate or GPU (DESIGN.md)."""
    return not ("loss" in name or "learning_rate" in name or "lr" in name or is_gpu_metric(name))


_BELONGS = {
    "loss": is_loss_metric,
    "gpu": is_gpu_metric,
    "metrics": is_eval_metric,
    "learning_rate": is_lr_metric,
}


def select_metrics(
    kind: ChartKind, metric_names: Iterable[str], requested: Sequence[str] | None = None
) -> list[str]:
    """The metrics a chart of ``kind`` shows, in display order.

    Args:
        kind: ``loss``, ``gpu``, ``metrics`` or ``learning_rate``.
        metric_names: the job's metric names.
        requested: an explicit ``metrics=`` list; when given (and non-empty)
            it is returned as is, deduplicated, in the order given (names the
            job lacks stay in: the chart simply has no data for them).

    Returns:
        The chart's default selection otherwise: losses (train, val, then the
        rest), GPU readings (aggregate, then per device by index and field;
        host-qualified ones grouped by host, see :mod:`trainvis.gpu`),
        every other metric for ``metrics`` (custom ones included), and
        learning-rate metrics.
    """
    if requested:
        return list(dict.fromkeys(name for name in requested if name))
    belongs = _BELONGS[kind]
    chosen = {name for name in metric_names if belongs(name)}
    return sorted(chosen, key=lambda name: _sort_key(kind, name))


def limit_metrics(kind: ChartKind, names: Sequence[str]) -> tuple[list[str], dict[str, Any]]:
    """Cut a chart's *default* selection to :data:`DEFAULT_CHART_METRICS` names.

    A job with 10,000 metrics must not put 10,000 lines on one canvas (issue
    16: a 70 MB chart); the workspace panels show every metric.

    Returns:
        The names drawn (the first ones, in display order) and what ``meta``
        says about the selection: ``metrics_total`` (the default selection's
        size), ``metrics_omitted`` (how many were left out) and
        ``metrics_omitted_names`` (the first :data:`OMITTED_LISTED` of them).
    """
    limit = DEFAULT_CHART_METRICS[kind]
    omitted = list(names[limit:])
    note = {
        "metrics_total": len(names),
        "metrics_omitted": len(omitted),
        "metrics_omitted_names": omitted[:OMITTED_LISTED],
    }
    return list(names[:limit]), note


def _sort_key(kind: ChartKind, name: str) -> tuple[int, str, int, int, str]:
    preferred = _PREFERRED[kind]
    if name in preferred:
        return (0, "", preferred.index(name), 0, "")
    # Only GPU names can parse as a device (and a regex per name costs on wide jobs).
    gpu = parse_gpu_series(name) if kind == "gpu" else None
    if gpu:  # single-host devices, then host by host: its means, then its devices
        index = -1 if gpu.device is None else gpu.device
        return (1, gpu.host or "", index, _GPU_FIELD_ORDER.get(gpu.field, 99), gpu.field)
    return (2, "", 0, 0, name)


def label_for(metric: str) -> str:
    """The dataset label of a metric (``Train Loss``, ``GPU 0 Memory (MiB)``,
    ``node-a GPU 0 Memory (MiB)``, ``node-a GPU Utilization (%)``, or the name)."""
    if metric in LABELS:
        return LABELS[metric]
    gpu = parse_gpu_series(metric)
    if gpu and gpu.field in GPU_FIELD_LABELS:
        host = f"{gpu.host} " if gpu.host else ""
        device = "GPU" if gpu.device is None else f"GPU {gpu.device}"
        return f"{host}{device} {GPU_FIELD_LABELS[gpu.field][0]}"
    return metric


def gpu_hosts(metrics: Iterable[str]) -> dict[str, list[str]]:
    """Host-qualified GPU series by host, in the given order (empty on a single host)."""
    hosts: dict[str, list[str]] = {}
    for metric in metrics:
        gpu = parse_gpu_series(metric)
        if gpu and gpu.host:
            hosts.setdefault(gpu.host, []).append(metric)
    return hosts


def gpu_axis_for(metric: str) -> str:
    """The GPU chart's y axis of a metric: ``y`` (%), ``y1`` (MiB), ``y2`` (°C), ``y3`` (W)."""
    gpu = parse_gpu_series(metric)
    if gpu and gpu.field in GPU_FIELD_LABELS:
        return GPU_FIELD_LABELS[gpu.field][1]
    if "mem" in metric:
        return "y1"
    if "temp" in metric:
        return "y2"
    if "power" in metric or "watt" in metric:
        return "y3"
    return "y"
