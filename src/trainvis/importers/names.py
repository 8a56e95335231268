"""Metric names and job ids for imported runs.

Other tools name metrics freely (``train/loss``, ``Loss/val``, ``lr-Adam``);
trainvis has a few well-known fields (``train_loss``, ``val_loss``,
``learning_rate``, ``accuracy``, ``f1``) that its charts and summaries treat
specially. :func:`map_metric_names` maps the names that obviously mean one of
those fields onto it and keeps every other name as it is (sanitized to the
server's pattern ``^[A-Za-z_][A-Za-z0-9_./-]{0,127}$`` where needed).

The rules, on the lower-cased name split at ``/ _ . -`` and spaces, with the
split words ``train``/``training`` and ``val``/``valid``/``validation``/
``eval``/``evaluation``/``dev`` set aside:

- ``loss`` → ``train_loss`` (train words or none) or ``val_loss`` (val words);
- ``lr``, ``learning rate`` → ``learning_rate`` (not with val words);
- ``accuracy``/``acc`` → ``accuracy`` and ``f1`` → ``f1`` (not with train
  words: the seed's accuracy is an evaluation metric);
- ``epoch`` (alone or with train words) → the row's ``epoch`` attribute.

When two names claim the same field, the one already spelled that way wins,
then the first in sorted order; the others keep their own (sanitized) name.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Collection, Iterable

from trainvis.models import METRIC_NAME_RE, ROW_ATTRIBUTES

#: The target name that means "the row's epoch attribute", not a metric.
EPOCH = "epoch"

_SPLIT = re.compile(r"[/_.\-\s]+")
_TRAIN = frozenset({"train", "training"})
_VAL = frozenset({"val", "valid", "validation", "eval", "evaluation", "dev"})
_BAD_CHARS = re.compile(r"[^A-Za-z0-9_./-]+")
_SLUG_BAD = re.compile(r"[^A-Za-z0-9._-]+")
_MAX_NAME = 128


def canonical_metric(name: str) -> str | None:
    """The seed field (or ``"epoch"``) that ``name`` obviously means, else None.

    >>> canonical_metric("eval/loss"), canonical_metric("train/learning_rate")
    ('val_loss', 'learning_rate')
    """
    tokens = [token for token in _SPLIT.split(name.lower()) if token]
    core = [token for token in tokens if token not in _TRAIN and token not in _VAL]
    is_train = any(token in _TRAIN for token in tokens)
    is_val = any(token in _VAL for token in tokens)
    if is_train and is_val:
        return None
    if core == ["loss"]:
        return "val_loss" if is_val else "train_loss"
    if core in (["lr"], ["learning", "rate"]) and not is_val:
        return "learning_rate"
    if core in (["accuracy"], ["acc"]) and not is_train:
        return "accuracy"
    if core == ["f1"] and not is_train:
        return "f1"
    if core == ["epoch"] and not is_val:
        return EPOCH
    return None


def sanitize_metric(name: str) -> str:
    """``name`` made a legal metric name (unchanged when it already is one).

    Illegal characters become ``_``; a leading digit, dot, slash or dash gets
    a ``_`` prefix; names of row attributes (``step``, ``epoch``,
    ``timestamp``, ``gpus``) get a ``_value`` suffix; the result is cut to
    128 characters.
    """
    if METRIC_NAME_RE.match(name) and name not in ROW_ATTRIBUTES:
        return name
    cleaned = _BAD_CHARS.sub("_", name.strip()) or "_"
    if not (cleaned[0].isalpha() and cleaned[0].isascii()) and cleaned[0] != "_":
        cleaned = "_" + cleaned
    if cleaned in ROW_ATTRIBUTES:
        cleaned += "_value"
    return cleaned[:_MAX_NAME]


def map_metric_names(names: Iterable[str], *, literal: Collection[str] = ()) -> dict[str, str]:
    """Map each source name to a distinct metric name (or :data:`EPOCH`).

    Names in ``literal`` are only sanitized, never mapped onto a seed field.
    Deterministic: the same set of names always maps the same way.
    """
    ordered = sorted(set(names))
    wanted = {
        name: (None if name in literal else canonical_metric(name)) or sanitize_metric(name)
        for name in ordered
    }
    taken: set[str] = set()
    mapping: dict[str, str] = {}
    for name in sorted(ordered, key=lambda item: (wanted[item] != item, item)):
        target = wanted[name]
        if target in taken:
            target = sanitize_metric(name)
        target = _unique(target, taken)
        taken.add(target)
        mapping[name] = target
    return mapping


def _unique(name: str, taken: set[str]) -> str:
    if name not in taken:
        return name
    counter = 2
    while True:
        suffix = f"_{counter}"
        candidate = name[: _MAX_NAME - len(suffix)] + suffix
        if candidate not in taken:
            return candidate
        counter += 1


def job_id(prefix: str, label: str, key: str) -> str:
    """A deterministic, legal job id ``<prefix>-<slug of label>-<hash of key>``.

    ``key`` identifies the source exactly (e.g. the absolute logdir and run
    path); ``label`` only makes the id readable.
    """
    digest = hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()[:10]
    slug = _SLUG_BAD.sub("-", label).strip("-._")[:80]
    return f"{prefix}-{slug}-{digest}" if slug else f"{prefix}-{digest}"
