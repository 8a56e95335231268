"""``wandb.config`` and ``run.summary``: dicts with attribute access."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, MutableMapping
from typing import Any

from trainvis.compat._common import warn_once


def _plain(data: Any) -> dict[str, Any]:
    """A dict from a mapping, an ``argparse.Namespace``, a dataclass or a ``to_dict()`` object."""
    if data is None:
        return {}
    if isinstance(data, Mapping):
        return dict(data)
    to_dict = getattr(data, "to_dict", None) or getattr(data, "as_dict", None)
    if callable(to_dict):
        return dict(to_dict())
    if hasattr(data, "__dataclass_fields__"):
        import dataclasses

        return dataclasses.asdict(data)
    try:
        return dict(vars(data))
    except TypeError:  # e.g. W&B's YAML file path: not read here
        warn_once(
            f"config:{type(data).__name__}",
            "trainvis: a wandb config given as %s is ignored (pass a dict)",
            type(data).__name__,
        )
        return {}


class _AttrDict(MutableMapping[str, Any]):
    """A dict with attribute access (``config.lr``) that reports changes."""

    def __init__(self, data: Mapping[str, Any] | None = None) -> None:
        object.__setattr__(self, "_data", dict(data or {}))

    def _changed(self) -> None:
        pass

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self._data[key] = value
        self._changed()

    def __delitem__(self, key: str) -> None:
        del self._data[key]
        self._changed()

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name: str, value: Any) -> None:
        if name.startswith("_"):
            object.__setattr__(self, name, value)
        else:
            self[name] = value

    def __delattr__(self, name: str) -> None:
        try:
            del self[name]
        except KeyError:
            raise AttributeError(name) from None

    def as_dict(self) -> dict[str, Any]:
        """A copy as a plain dict."""
        return dict(self)

    def __repr__(self) -> str:
        return repr(dict(self))


class Config(_AttrDict):
    """``wandb.config``: attribute and item access, ``update``, ``setdefaults``."""

    def __init__(
        self, data: Mapping[str, Any] | None = None, on_change: Callable[[], None] | None = None
    ) -> None:
        super().__init__(data)
        self._on_change = on_change

    def _changed(self) -> None:
        if self._on_change is not None:
            self._on_change()

    def update(  # type: ignore[override]
        self, d: Any = None, allow_val_change: bool | None = None, **kwargs: Any
    ) -> None:
        """Merge a dict, ``argparse.Namespace``, dataclass or keywords into the config."""
        self._data.update({**_plain(d), **kwargs})
        self._changed()

    def setdefaults(self, d: Any) -> None:
        """Set the keys of ``d`` that the config does not have yet."""
        for key, value in _plain(d).items():
            self._data.setdefault(key, value)
        self._changed()

    def persist(self) -> None:
        """Nothing to do: trainvis sends the config with the job."""


class Summary(_AttrDict):
    """``run.summary``: the last logged value of each metric, overridden by what is set.

    Values set here (numbers) are logged at ``finish`` as ``summary/<key>`` at
    the run's last step, so they show in the job's metrics and the runs table;
    other values are dropped with a warning.
    """

    def __init__(self, last: Mapping[str, float]) -> None:
        super().__init__()
        self._last = last

    def __getitem__(self, key: str) -> Any:
        if key in self._data:
            return self._data[key]
        return self._last[key]

    def __iter__(self) -> Iterator[str]:
        return iter({**self._last, **self._data})

    def __len__(self) -> int:
        return len({**self._last, **self._data})

    def __contains__(self, key: object) -> bool:
        return key in self._data or key in self._last

    def update(self, d: Any = None, **kwargs: Any) -> None:  # type: ignore[override]
        """Set several summary values."""
        self._data.update({**_plain(d), **kwargs})

    def explicit(self) -> dict[str, Any]:
        """The values set by the script (not the logged ones)."""
        return dict(self._data)
