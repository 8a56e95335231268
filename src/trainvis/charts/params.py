"""Chart parameters: declared once (:class:`ChartQuery`), resolved into
:class:`ChartParams` with every default filled in.

The chart endpoints take :class:`ChartQuery` as their query model; the builders
take the same options as keyword arguments and validate them with it. Bad values
raise :class:`~trainvis.errors.InvalidArgument` whose ``details`` name the query
parameter, so the API can return them as they are.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from trainvis.charts.config import (
    MAX_POINTS_LIMIT,
    SMOOTH_METHODS,
    ChartConfig,
    SmoothMethod,
    XMode,
)
from trainvis.charts.downsample import ALGORITHMS, MIN_POINTS, Algorithm
from trainvis.errors import InvalidArgument

BANDS = ("minmax",)
#: Largest moving-average window and Gaussian σ (points) a request may ask for.
WINDOW_LIMIT = 100_000
SIGMA_LIMIT = 100_000.0
#: Largest step a request may name (64-bit signed).
MAX_STEP = 2**63 - 1


class ChartQuery(BaseModel):
    """The options of a chart request: the one declaration of their names, types,
    bounds and help.

    FastAPI validates the chart endpoints' query strings with it (a 422 names the
    parameter) and the builders validate their keyword options with it, so a
    limit cannot differ between the two. ``None`` means "the chart's default"
    (from its :class:`~trainvis.charts.config.ChartConfig`).
    """

    # Other query parameters (``metrics`` of the metrics chart, a cache buster)
    # are not chart options: ignored here, as FastAPI ignores unknown ones.
    model_config = ConfigDict(frozen=True, extra="ignore")

    x: XMode = Field(default="step", description="x axis: step, epoch, time or relative_time")
    start_step: int | None = Field(
        default=None, ge=0, le=MAX_STEP, description="first step shown (inclusive)"
    )
    end_step: int | None = Field(
        default=None, ge=0, le=MAX_STEP, description="last step shown (inclusive)"
    )
    max_points: int | None = Field(
        default=None,
        ge=MIN_POINTS,
        le=MAX_POINTS_LIMIT,
        description="points per series (default 2000); downsampling keeps extremes",
    )
    smooth: bool | None = Field(default=None, description="add a smoothed line per series")
    smooth_factor: float | None = Field(
        default=None, gt=0, le=1, description="EMA α, the weight of the newest value"
    )
    smooth_method: SmoothMethod | None = Field(
        default=None, description="ema (default), moving_average or gaussian"
    )
    window: int | None = Field(
        default=None, ge=1, le=WINDOW_LIMIT, description="moving-average window (points)"
    )
    sigma: float | None = Field(
        default=None, gt=0, le=SIGMA_LIMIT, description="Gaussian σ (points)"
    )
    band: Literal["minmax"] | None = Field(
        default=None, description="minmax: each series' min/max envelope per bucket"
    )
    log_scale: bool | None = Field(default=None, description="logarithmic y axis")
    format: Literal["chartjs", "recharts"] = Field(
        default="chartjs", description="chartjs (default) or recharts rows"
    )

    @classmethod
    def parse(cls, options: Mapping[str, Any]) -> ChartQuery:
        """``options`` (keyword arguments of a builder) as a query.

        Raises:
            InvalidArgument: the first bad option, named as the query parameter.
            TypeError: an option that is not a chart option.
        """
        unknown = sorted(set(options) - set(cls.model_fields))
        if unknown:
            raise TypeError(f"unknown chart option(s): {', '.join(unknown)}")
        try:
            return cls.model_validate(dict(options), strict=False)
        except ValidationError as exc:
            error = exc.errors()[0]
            param = str(error["loc"][0]) if error["loc"] else "query"
            raise invalid(param, error["msg"]) from None


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
    #: The step range shown (inclusive; None: open). Smoothing ignores it.
    start_step: int | None = None
    end_step: int | None = None

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
    query: ChartQuery | None = None,
    *,
    algorithm: str = "minmaxlttb",
    t0: float | None = None,
) -> ChartParams:
    """Fill the request's unset options from ``config``.

    Raises:
        InvalidArgument: a value out of range or not one of the choices (a
            ``ChartConfig`` may carry one); its ``details`` are
            ``[{"loc": ["query", <param>], "msg", "type"}]``.
    """
    query = query or ChartQuery()
    return ChartParams(
        x=query.x,
        smooth=config.smooth if query.smooth is None else query.smooth,
        smooth_method=_choice(
            "smooth_method", query.smooth_method or config.smooth_method, SMOOTH_METHODS
        ),
        smooth_factor=_smooth_factor(
            config.smooth_factor if query.smooth_factor is None else query.smooth_factor
        ),
        window=_int_range(
            "window", config.window if query.window is None else query.window, 1, WINDOW_LIMIT
        ),
        sigma=_sigma(config.sigma if query.sigma is None else query.sigma),
        max_points=_int_range(
            "max_points",
            config.max_points if query.max_points is None else query.max_points,
            MIN_POINTS,
            MAX_POINTS_LIMIT,
        ),
        band=query.band == "minmax",
        log_scale=config.log_scale if query.log_scale is None else query.log_scale,
        algorithm=_choice("algorithm", algorithm, ALGORITHMS),
        t0=None if t0 is None else _number("t0", t0),
        start_step=query.start_step,
        end_step=query.end_step,
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
    if not 0.0 < number <= SIGMA_LIMIT:
        raise invalid("sigma", f"must be greater than 0 and at most {SIGMA_LIMIT:g}")
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
