"""A progress bar on stderr (rich), or nothing.

Importers report through :class:`Progress` whether or not a bar is shown, so
the Python functions stay quiet by default and the CLI turns the bar on.
"""

from __future__ import annotations

import logging
from types import TracebackType
from typing import Any

log = logging.getLogger("trainvis.importers")


class Progress:
    """Tasks with a description, a total and an amount done.

    With ``enabled=False`` (or without ``rich`` installed) every method does nothing.
    Use it as a context manager: the bar is drawn between enter and exit.
    """

    def __init__(self, enabled: bool = False) -> None:
        self._bar: Any = None
        if not enabled:
            return
        try:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )
            from rich.progress import Progress as RichProgress
        except ImportError:
            log.warning("no progress bar: rich is not installed (pip install 'trainvis[import]')")
            return
        self._bar = RichProgress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
        )

    def __enter__(self) -> Progress:
        if self._bar is not None:
            self._bar.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._bar is not None:
            self._bar.stop()

    def add(self, description: str, total: float | None) -> int:
        """Start a task; returns its handle (0 when no bar is shown)."""
        if self._bar is None:
            return 0
        return int(self._bar.add_task(description, total=total))

    def advance(self, task: int, amount: float = 1) -> None:
        """Mark ``amount`` more of ``task`` done."""
        if self._bar is not None:
            self._bar.advance(task, amount)

    def remove(self, task: int) -> None:
        """Take a finished sub-task off the screen."""
        if self._bar is not None:
            self._bar.remove_task(task)
