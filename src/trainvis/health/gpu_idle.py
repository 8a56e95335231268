"""The GPU-idle detector: utilization under a threshold for a while, during ``running``.

:class:`GpuIdleDetector` watches one utilization metric (``gpu_utilization`` or
``gpu<N>.utilization``): under ``gpu_idle_threshold`` % for
``gpu_idle_seconds`` (row timestamps) and at least ``gpu_idle_points`` points,
while ``is_running()`` says the job runs, it reports once per idle stretch. A
batch without an idle reading costs one numpy comparison.
"""

from __future__ import annotations

from collections.abc import Callable

from trainvis.events import EventKind, Severity
from trainvis.health.detectors import DetectorConfig, Finding, Ints, fmt
from trainvis.health.rolling import Floats


class GpuIdleDetector:
    """GPU utilization under the threshold for a while, reported once per idle stretch."""

    def __init__(self, metric: str, config: DetectorConfig) -> None:
        self.metric = metric
        self.config = config
        self.idle_since: float | None = None
        self.idle_points = 0
        self.reported = False

    @property
    def idle(self) -> bool:
        """Whether the latest reading was under the threshold."""
        return self.idle_since is not None

    def feed(
        self,
        steps: Ints,
        values: Floats,
        times: Callable[[], Floats],
        is_running: Callable[[], bool],
    ) -> list[Finding]:
        """Process a batch. ``times()`` (the rows' Unix timestamps) is called only when
        some value is idle, ``is_running()`` only when a stretch is long enough."""
        cfg = self.config
        idle = values < cfg.gpu_idle_threshold
        if not idle.any():
            self.idle_since, self.idle_points, self.reported = None, 0, False
            return []
        stamps = times()
        found: list[Finding] = []
        for index in range(len(values)):
            if not idle[index]:
                self.idle_since, self.idle_points, self.reported = None, 0, False
                continue
            now = float(stamps[index])
            if self.idle_since is None:
                self.idle_since = now
            self.idle_points += 1
            long_enough = now - self.idle_since >= cfg.gpu_idle_seconds
            if self.reported or self.idle_points < cfg.gpu_idle_points or not long_enough:
                continue
            if not is_running():
                continue
            self.reported = True
            minutes = (now - self.idle_since) / 60
            found.append(
                Finding(
                    EventKind.GPU_IDLE,
                    self.metric,
                    int(steps[index]),
                    float(values[index]),
                    Severity.WARNING,
                    f"{self.metric} has been under {fmt(cfg.gpu_idle_threshold)}% for "
                    f"{minutes:.1f} min while the job is running",
                    timestamp=now,
                )
            )
        return found
