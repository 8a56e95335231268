"""Chart.js configurations, smoothing and downsampling: pure functions, no I/O.

The seed's extension API::

    from trainvis.charts import LossChartConfig

    config = LossChartConfig(title="Custom Loss", colors=["#ff0000", "#00ff00"], smooth_factor=0.2)
    chart, meta = build_loss_chart(series, config=config, smooth=True)
"""

from trainvis.charts.chartjs import (
    build_chart,
    build_gpu_chart,
    build_learning_rate_chart,
    build_loss_chart,
    build_metrics_chart,
)
from trainvis.charts.config import (
    CHART_KINDS,
    DEFAULT_MAX_POINTS,
    DEFAULT_SMOOTH_FACTOR,
    X_MODES,
    ChartConfig,
    ChartKind,
    GpuChartConfig,
    LearningRateChartConfig,
    LossChartConfig,
    MetricsChartConfig,
    default_config,
)
from trainvis.charts.downsample import Downsampled, downsample
from trainvis.charts.params import ChartParams, ChartQuery, resolve_params
from trainvis.charts.recharts import to_recharts
from trainvis.charts.select import label_for, select_metrics
from trainvis.charts.smoothing import ema, gaussian, moving_average

__all__ = [
    "CHART_KINDS",
    "DEFAULT_MAX_POINTS",
    "DEFAULT_SMOOTH_FACTOR",
    "X_MODES",
    "ChartConfig",
    "ChartKind",
    "ChartParams",
    "ChartQuery",
    "Downsampled",
    "GpuChartConfig",
    "LearningRateChartConfig",
    "LossChartConfig",
    "MetricsChartConfig",
    "build_chart",
    "build_gpu_chart",
    "build_learning_rate_chart",
    "build_loss_chart",
    "build_metrics_chart",
    "default_config",
    "downsample",
    "ema",
    "gaussian",
    "label_for",
    "moving_average",
    "resolve_params",
    "select_metrics",
    "to_recharts",
]
