"""Validation of chart parameters into one resolved, immutable object.

Builders accept the query parameters of the chart endpoints as keyword
arguments; bad values raise :class:`~trainvis.errors.InvalidArgument` whose
``details`` name the query parameter, so the API can return them as they are.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from trainvis.charts.config import (
    MAX_POINTS_LIMIT,
    SMOOTH_METHODS,
    X_MODES,
    ChartConfig,
    SmoothMethod,
    XMode,
)
from trainvis.charts.downsample import ALGORITHMS, MIN_POINTS, Algorithm
from trainvis.errors import InvalidArgument

BANDS = ("minmax",)


@dataclass(frozen=True)
class ChartParams:
    """Resolved options of one chart request (every default filled in)."""

    x: XMode
    smooth: bool
    smooth_method: SmoothMethod
    smooth_factor: float
    window: int
    sigma: float
    max_points: int
    band: bool
    log_scale: bool
    algorithm: Algorithm
    t0: float | None

    def smoothing_meta(self) -> dict[str, Any] | None:
        """What ``meta.smoothing`` reports (None without smoothing)."""
        if not self.smooth:
            return None
        if self.smooth_method == "ema":
            return {"method": "ema", "smooth_factor": self.smooth_factor}
        if self.smooth_method == "moving_average":
            return {"method": "moving_average", "window": self.window}
        return {"method": "gaussian", "sigma": self.sigma}


def invalid(param: str, message: str) -> InvalidArgument:
    """An :class:`InvalidArgument` naming query parameter ``param``."""
    return InvalidArgument(
        f"{param}: {message}",
        details=[{"loc": ["query", param], "msg": message, "type": "value_error"}],
    )


def resolve_params(
    config: ChartConfig,
    *,
    x: str = "step",
    smooth: bool | None = None,
    smooth_factor: float | None = None,
    smooth_method: str | None = None,
    window: int | None = None,
    sigma: float | None = None,
    max_points: int | None = None,
    band: str | None = None,
    log_scale: bool | None = None,
    algorithm: str = "minmaxlttb",
    t0: float | None = None,
) -> ChartParams:
    """Check the request's options and fill the rest from ``config``.

    Raises:
        InvalidArgument: a value out of range or not one of the choices; its
            ``details`` are ``[{"loc": ["query", <param>], "msg", "type"}]``.
    """
    return ChartParams(
        x=_choice("x", x, X_MODES),
        smooth=config.smooth if smooth is None else bool(smooth),
        smooth_method=_choice(
            "smooth_method", smooth_method or config.smooth_method, SMOOTH_METHODS
        ),
        smooth_factor=_smooth_factor(
            config.smooth_factor if smooth_factor is None else smooth_factor
        ),
        window=_int_range("window", config.window if window is None else window, 1, 1_000_000),
        sigma=_sigma(config.sigma if sigma is None else sigma),
        max_points=_int_range(
            "max_points",
            config.max_points if max_points is None else max_points,
            MIN_POINTS,
            MAX_POINTS_LIMIT,
        ),
        band=_band(band),
        log_scale=config.log_scale if log_scale is None else bool(log_scale),
        algorithm=_choice("algorithm", algorithm, ALGORITHMS),
        t0=_t0(t0),
    )


def _choice(param: str, value: Any, choices: tuple[str, ...]) -> Any:
    if value not in choices:
        raise invalid(param, f"must be one of {', '.join(choices)}")
    return value


def _smooth_factor(value: Any) -> float:
    number = _number("smooth_factor", value)
    if not 0.0 < number <= 1.0:
        raise invalid("smooth_factor", "must be greater than 0 and at most 1")
    return number


def _sigma(value: Any) -> float:
    number = _number("sigma", value)
    if not 0.0 < number <= 1_000_000:
        raise invalid("sigma", "must be greater than 0 and at most 1000000")
    return number


def _number(param: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise invalid(param, "must be a number")
    number = float(value)
    if not math.isfinite(number):
        raise invalid(param, "must be a finite number")
    return number


def _int_range(param: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid(param, "must be an integer")
    if not low <= value <= high:
        raise invalid(param, f"must be between {low} and {high}")
    return value


def _band(value: str | None) -> bool:
    if value is None or value in ("", "none"):
        return False
    _choice("band", value, BANDS)
    return True


def _t0(value: float | None) -> float | None:
    if value is None:
        return None
    return _number("t0", value)
