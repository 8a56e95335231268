"""Chart configuration classes (the seed's extension API) and every default.

The seed's example works as written::

    from trainvis.charts import LossChartConfig

    config = LossChartConfig(title="Custom Loss", colors=["#ff0000", "#00ff00"], smooth_factor=0.2)

and the chart built with ``config=`` uses that title, those colours (one per
metric, in order) and that smoothing factor. All defaults live in this module.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar, Literal

from trainvis.charts.downsample import MIN_POINTS

ChartKind = Literal["loss", "gpu", "metrics", "learning_rate"]
XMode = Literal["step", "epoch", "time", "relative_time"]
SmoothMethod = Literal["ema", "moving_average", "gaussian"]

CHART_KINDS: tuple[ChartKind, ...] = ("loss", "gpu", "metrics", "learning_rate")
X_MODES: tuple[XMode, ...] = ("step", "epoch", "time", "relative_time")
SMOOTH_METHODS: tuple[SmoothMethod, ...] = ("ema", "moving_average", "gaussian")

# --------------------------------------------------------------------------- defaults

#: α, the weight of the newest value (TensorBoard's default slider 0.6 = 1 - α).
DEFAULT_SMOOTH_FACTOR = 0.4
#: Points per series a chart returns unless asked otherwise.
DEFAULT_MAX_POINTS = 2000
#: Bounds of ``max_points`` accepted from clients.
MAX_POINTS_LIMIT = 100_000
#: Trailing window (points) of ``smooth_method=moving_average``.
DEFAULT_WINDOW = 20
#: Standard deviation (points) of ``smooth_method=gaussian``.
DEFAULT_SIGMA = 5.0
#: Above this many returned points, animation is switched off.
ANIMATION_LIMIT = 1000
#: Above this many points in a dataset, point dots are hidden.
POINT_DOT_LIMIT = 200
#: Opacity of the raw series when a smoothed one is drawn over it.
RAW_ALPHA = 0.3
#: Opacity of a min/max band's fill.
BAND_ALPHA = 0.15
#: Most metrics a chart draws by default (its ``metrics=`` names others);
#: ``meta.metrics_omitted`` counts the rest. The workspace panels show every one.
DEFAULT_CHART_METRICS: dict[ChartKind, int] = {
    "loss": 20,
    "gpu": 100,  # per-device series: 20 GPUs × 5 fields (``aggregate=true`` folds any number)
    "metrics": 20,
    "learning_rate": 20,
}
#: Most names an explicit ``metrics=`` list may hold.
MAX_CHART_METRICS = 100
#: How many of the omitted metrics ``meta.metrics_omitted_names`` lists.
OMITTED_LISTED = 20
#: Up to this many datasets the legend sits on top; beyond it moves to the
#: right with a bounded width, so it never squeezes the plot's height.
LEGEND_TOP_ENTRIES = 10
LEGEND_SIDE_WIDTH = 160
#: GPU fields whose datasets start hidden (one legend click shows them).
GPU_SECONDARY_FIELDS = ("memory_total", "temperature", "power")
#: Colour of the markers drawn where a value is NaN or ±Infinity.
NONFINITE_COLOR = "#dc2626"

#: The one list of series colours (every chart config, and the browser's
#: ``js/palette.js`` holds the same list): Tableau 10 (the matplotlib default,
#: colour-blind aware), then ten more chosen greedily for the largest distance
#: in CIELAB from those before them. Every pair differs by ΔE*76 > 20 and every
#: lightness L* is 38–75, readable on light and dark backgrounds.
PALETTE: tuple[str, ...] = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
    "#a6761d",
    "#009e73",
    "#ff9896",
    "#637939",
    "#c5b0d5",
    "#e7298a",
    "#e6ab02",
    "#0e6655",
    "#74c476",
    "#56b4e9",
)

TITLES: dict[ChartKind, str] = {
    "loss": "Training Loss",
    "gpu": "GPU Monitoring",
    "metrics": "Evaluation Metrics",
    "learning_rate": "Learning Rate Schedule",
}

Y_TITLES: dict[ChartKind, str] = {
    "loss": "Loss",
    "gpu": "Utilization (%)",
    "metrics": "Value",
    "learning_rate": "Learning Rate",
}

X_TITLES: dict[XMode, str] = {
    "step": "Step",
    "epoch": "Epoch",
    "time": "Time",
    "relative_time": "Time since start (s)",
}

#: Labels of the seed's metrics; other metrics are labelled by their name.
LABELS: dict[str, str] = {
    "train_loss": "Train Loss",
    "val_loss": "Val Loss",
    "learning_rate": "Learning Rate",
    "gpu_utilization": "GPU Utilization (%)",
    "gpu_memory": "GPU Memory (MiB)",
}

#: Per-device GPU fields: label suffix and the y axis they go on.
GPU_FIELD_LABELS: dict[str, tuple[str, str]] = {
    "utilization": ("Utilization (%)", "y"),
    "memory_used": ("Memory (MiB)", "y1"),
    "memory_total": ("Memory Total (MiB)", "y1"),
    "temperature": ("Temperature (°C)", "y2"),
    "power": ("Power (W)", "y3"),
}

#: The GPU chart's axes: id -> (title, position).
GPU_AXES: dict[str, tuple[str, str]] = {
    "y": ("Utilization (%)", "left"),
    "y1": ("Memory (MiB)", "right"),
    "y2": ("Temperature (°C)", "right"),
    "y3": ("Power (W)", "right"),
}


# --------------------------------------------------------------------------- classes


@dataclass
class ChartConfig:
    """Presentation and defaults of one chart; subclass per chart kind.

    Attributes:
        title: the chart title.
        colors: one colour per metric, in order (cycled when there are more
            metrics). Any CSS colour; ``#rgb``/``#rrggbb``/``rgb()`` are faded
            for the raw series under a smoothed one.
        smooth: smooth by default (a request's ``smooth`` overrides it).
        smooth_factor: α of the EMA, in (0, 1].
        smooth_method: ``ema``, ``moving_average`` or ``gaussian``.
        window: points of the moving average.
        sigma: standard deviation (points) of the Gaussian.
        max_points: points per series returned by default.
        log_scale: logarithmic y axis by default.
        y_title: the (left) y axis title.
        line_width: width of solid lines in pixels.
    """

    kind: ClassVar[ChartKind] = "metrics"

    title: str = ""
    colors: list[str] = field(default_factory=lambda: list(PALETTE))
    smooth: bool = False
    smooth_factor: float = DEFAULT_SMOOTH_FACTOR
    smooth_method: SmoothMethod = "ema"
    window: int = DEFAULT_WINDOW
    sigma: float = DEFAULT_SIGMA
    max_points: int = DEFAULT_MAX_POINTS
    log_scale: bool = False
    y_title: str = ""
    line_width: float = 2.0

    def __post_init__(self) -> None:
        if not self.title:
            self.title = TITLES[self.kind]
        if not self.y_title:
            self.y_title = Y_TITLES[self.kind]
        self.colors = list(self.colors)
        if not self.colors or not all(isinstance(c, str) and c for c in self.colors):
            raise ValueError("colors must be a non-empty list of CSS colour strings")
        if not (math.isfinite(self.smooth_factor) and 0.0 < self.smooth_factor <= 1.0):
            raise ValueError(f"smooth_factor must be in (0, 1], got {self.smooth_factor!r}")
        if self.smooth_method not in SMOOTH_METHODS:
            raise ValueError(f"smooth_method must be one of {', '.join(SMOOTH_METHODS)}")
        if self.window < 1 or not (math.isfinite(self.sigma) and self.sigma > 0):
            raise ValueError("window must be >= 1 and sigma a positive number")
        if not MIN_POINTS <= self.max_points <= MAX_POINTS_LIMIT:
            raise ValueError(f"max_points must be between {MIN_POINTS} and {MAX_POINTS_LIMIT}")

    def color(self, index: int) -> str:
        """The colour of the ``index``-th metric (cycling through ``colors``)."""
        return self.colors[index % len(self.colors)]


@dataclass
class LossChartConfig(ChartConfig):
    """Train and validation loss (and any other ``*loss*`` metric)."""

    kind: ClassVar[ChartKind] = "loss"


@dataclass
class GpuChartConfig(ChartConfig):
    """GPU utilization (left axis) and memory (right axis), per device."""

    kind: ClassVar[ChartKind] = "gpu"


@dataclass
class MetricsChartConfig(ChartConfig):
    """Evaluation and custom metrics."""

    kind: ClassVar[ChartKind] = "metrics"


@dataclass
class LearningRateChartConfig(ChartConfig):
    """The learning-rate schedule."""

    kind: ClassVar[ChartKind] = "learning_rate"


CONFIG_CLASSES: dict[ChartKind, type[ChartConfig]] = {
    "loss": LossChartConfig,
    "gpu": GpuChartConfig,
    "metrics": MetricsChartConfig,
    "learning_rate": LearningRateChartConfig,
}


def default_config(kind: ChartKind) -> ChartConfig:
    """A fresh default configuration for a chart kind."""
    return CONFIG_CLASSES[kind]()
