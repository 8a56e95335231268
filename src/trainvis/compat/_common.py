"""What both drop-ins share: warn-once, numbers, metric names, ignored objects,
the status a ``with`` block (or the interpreter) ends a job with."""

from __future__ import annotations

import logging
import re
from abc import ABC, abstractmethod
from types import TracebackType
from typing import Any, Self

from trainvis.models import METRIC_NAME_RE, ROW_ATTRIBUTES

log = logging.getLogger("trainvis.compat")

#: Row attributes a logged name may not take: ``epoch`` stays the row's epoch.
RENAMED = ROW_ATTRIBUTES - {"epoch"}
_BAD_CHARS = re.compile(r"[^A-Za-z0-9_./-]")
_warned: set[str] = set()


def warn_once(key: str, message: str, *args: Any) -> None:
    """Log ``message`` as a warning the first time ``key`` is seen in this process."""
    if key not in _warned:
        _warned.add(key)
        log.warning(message, *args)


def as_number(value: Any) -> float | None:
    """A float from a Python, numpy or torch scalar (or a one-element array/tensor).

    None for anything else: strings, booleans, media objects, larger arrays.
    """
    kind = type(value)
    if kind is float or kind is int:
        return float(value)
    if value is None or isinstance(value, str | bytes | bool):
        return None
    item = getattr(value, "item", None)
    if callable(item):  # numpy scalars and arrays, torch tensors: one element only
        try:
            value = item()
        except (TypeError, ValueError, RuntimeError):
            return None
        return (
            float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
        )
    try:
        return float(value)
    except (TypeError, ValueError, RuntimeError, OverflowError):
        return None


def metric_name(key: str) -> str | None:
    """``key`` as a legal trainvis metric name, or None when nothing of it is usable.

    Illegal characters become ``_``; a name that does not start with a letter
    or ``_`` gets a ``_`` prefix; ``step``, ``timestamp`` and ``gpus`` (row
    attributes) get a ``_value`` suffix; the result is cut to 128 characters.
    """
    if METRIC_NAME_RE.match(key) and key not in RENAMED:
        return key
    cleaned = _BAD_CHARS.sub("_", key.strip())
    if not cleaned.strip("_"):
        return None
    if not (cleaned[0].isascii() and cleaned[0].isalpha()) and cleaned[0] != "_":
        cleaned = "_" + cleaned
    if cleaned in RENAMED:
        cleaned += "_value"
    return cleaned[:128]


class Names:
    """Logged names → trainvis metric names, each worked out (and warned about) once."""

    def __init__(self, tool: str) -> None:
        self.tool = tool
        self._known: dict[str, str | None] = {}

    def __call__(self, key: str) -> str | None:
        """The trainvis name for ``key`` (None: dropped, with one warning)."""
        try:
            return self._known[key]
        except KeyError:
            pass
        name = metric_name(key)
        if name is None:
            warn_once(
                f"name:{key}", "trainvis: %s metric %r dropped: no usable name", self.tool, key
            )
        elif name != key:
            warn_once(
                f"name:{key}",
                "trainvis: %s metric %r logged as %r (letters, digits, _ . / -; max 128)",
                self.tool,
                key,
                name,
            )
        self._known[key] = name
        return name


class Ignored:
    """Stands in for what a drop-in does not support: any attribute, call, item,
    iteration or ``with`` gives an inert result, so the script goes on."""

    def __init__(self, name: str) -> None:
        object.__setattr__(self, "_name", name)

    def __call__(self, *args: Any, **kwargs: Any) -> Ignored:
        return self

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        return self

    def __setattr__(self, name: str, value: Any) -> None:
        pass

    def __getitem__(self, key: Any) -> Ignored:
        return self

    def __setitem__(self, key: Any, value: Any) -> None:
        pass

    def __iter__(self) -> Any:
        return iter(())

    def __enter__(self) -> Ignored:
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    def __repr__(self) -> str:
        return f"<{self._name}: not supported by trainvis, ignored>"


def kind(value: Any) -> str:
    """What ``value`` is, for messages (``wandb.Image`` for an ignored object)."""
    return value._name if isinstance(value, Ignored) else type(value).__name__


def unsupported(name: str, what: str = "not supported by trainvis; ignored") -> Ignored:
    """An :class:`Ignored` for ``name``, with one warning per name."""
    warn_once(f"unsupported:{name}", "trainvis: %s is %s", name, what)
    return Ignored(name)


def exit_status(exc: BaseException | None) -> tuple[str, str | None]:
    """The job's status and message for a block (or a process) that ended with ``exc``:
    no exception → ``completed``; ``KeyboardInterrupt`` → ``cancelled``; any other
    (``SystemExit`` included) → ``failed``, with the exception as the message
    (2,000 characters at most)."""
    if exc is None:
        return "completed", None
    if isinstance(exc, KeyboardInterrupt):
        return "cancelled", "interrupted (KeyboardInterrupt)"
    return "failed", f"{type(exc).__name__}: {exc}"[:2000]


class FinishesOnExit(ABC):
    """``with`` support for a drop-in's run: leaving the block ends the job with
    :func:`exit_status`'s status, through the class's ``_finish``."""

    @abstractmethod
    def _finish(self, status: str, message: str | None) -> None:
        """End the job with ``status`` and ``message``."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._finish(*exit_status(exc))
