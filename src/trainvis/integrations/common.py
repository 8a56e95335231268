"""Helpers shared by the framework integrations (no framework imported here)."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from trainvis.client.run import Run

_INVALID = re.compile(r"[^A-Za-z0-9_./-]")


def metric_name(key: str) -> str:
    """A framework's metric key as a valid trainvis name (``val acc`` → ``val_acc``)."""
    name = _INVALID.sub("_", str(key))[:128]
    if not name or not (name[0].isalpha() or name[0] == "_"):
        name = ("_" + name)[:128]
    return name


def as_number(value: Any) -> float | None:
    """A float from Python, numpy or framework scalars (0-d tensors); None otherwise."""
    if isinstance(value, str | bytes | bool) or value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError, RuntimeError):
        return None


def numeric_metrics(
    logs: Mapping[str, Any], rename: Mapping[str, str] | None = None
) -> dict[str, float]:
    """The numeric entries of ``logs`` under valid names, renamed by ``rename``."""
    metrics: dict[str, float] = {}
    for key, value in logs.items():
        number = as_number(value)
        if number is None:
            continue
        name = (rename or {}).get(key, key)
        metrics[metric_name(name)] = number
    return metrics


def whole_epochs(value: Any) -> int | None:
    """A positive epoch count for the job (fractional counts round up)."""
    number = as_number(value)
    if number is None or not math.isfinite(number) or number <= 0:
        return None
    return math.ceil(number)


def positive_int(value: Any) -> int | None:
    number = as_number(value)
    if number is None or not math.isfinite(number) or number <= 0:
        return None
    return int(number)


def finish_owned(run: Run | None, owned: bool, status: str, message: str | None = None) -> None:
    """Finish ``run`` when the integration started it (a run the user passed is theirs)."""
    if run is not None and owned and not run.finished:
        run.finish(status, message=message)
