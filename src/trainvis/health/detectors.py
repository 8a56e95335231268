"""Incremental training-health detectors: pure, O(1) state per (job, metric).

Each detector is fed the finite values of one write at a time, in step order
(``feed(steps, values)``), and returns :class:`Finding` objects. State is a few
numbers and fixed-size windows; nothing re-reads history. Batches run through
numpy; only the rare point that leaves the band takes the per-point path, so a
1,000-row batch costs a fraction of a millisecond per metric.

- :class:`SpikeDetector`: a point far outside a robust band around an EMA. The
  band is ``z`` robust standard deviations (1.4826 × the median absolute
  deviation of the last ``spike_window`` residuals, refreshed every
  ``BAND_REFRESH`` points) and at least a ``spike_min_rel`` relative jump, so a
  flat series (MAD 0) does not fire on rounding. Losses are watched on a log
  scale while they stay positive: their noise is multiplicative, and a
  minibatch loss near zero is heavy-tailed (0.02 → 0.3 is ordinary there,
  0.2 → 1.6 is not). Outliers are clipped to the band before they enter the
  EMA and the window (a spike does not drag the baseline up), and a spike
  episode reports once: the next report needs ``spike_cooldown`` ordinary
  points in between.
- :class:`DivergenceDetector`: the smoothed value rose by more than
  ``divergence_rise`` (relative) over the last ``divergence_window`` points,
  and rose at ``divergence_steady`` of the steps in between. Once per episode:
  it re-arms when the smoothed value falls back to where the rise started.
- :class:`PlateauDetector`: the best smoothed value (an EMA, so that one lucky
  noisy point does not count) has not improved by more than
  ``plateau_min_delta`` (relative) for ``plateau_window`` points; re-arms on
  the next improvement.

The GPU-idle detector lives in ``gpu_idle.py``.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from trainvis.events import EventKind, Severity
from trainvis.health.rolling import MAD_TO_SIGMA, Floats, ema_path, median_mad, rolling_median_mad

Ints = npt.NDArray[np.int64]
#: The spike band (median and MAD of the residual window) is refreshed every N points.
BAND_REFRESH = 8
#: Smallest band: keeps an exactly constant series from firing on rounding noise.
_TINY = 1e-12
#: Losses of 0 are taken as this on the log scale.
_LOG_FLOOR = 1e-30


@dataclass(frozen=True)
class DetectorConfig:
    """Thresholds of every detector (``Settings`` fields ``health_*`` fill the main ones)."""

    spike_z: float = 8.0
    spike_window: int = 32
    spike_alpha: float = 0.1
    spike_min_rel: float = 0.2
    spike_cooldown: int = 10
    divergence_window: int = 50
    divergence_rise: float = 0.25
    divergence_steady: float = 0.8
    divergence_alpha: float = 0.05
    plateau_window: int = 1000
    plateau_min_delta: float = 1e-3
    plateau_alpha: float = 0.05
    gpu_idle_threshold: float = 10.0
    gpu_idle_seconds: float = 300.0
    gpu_idle_points: int = 3


@dataclass(frozen=True)
class Finding:
    """What a detector reports: becomes a stored :class:`~trainvis.health.events.JobEvent`."""

    kind: EventKind
    metric: str
    step: int
    value: float
    severity: Severity
    message: str
    timestamp: float | None = None


def fmt(value: float) -> str:
    """A value in a finding's message (4 significant digits)."""
    return f"{value:.4g}"


#: Points the vector path examines at once, and scalar points after an outlier
#: before it is tried again: together they bound the cost per batch.
SCAN_CHUNK = 256
SCALAR_AFTER_OUTLIER = 16


class SpikeDetector:
    """Spikes of one metric; ``direction`` +1 reports upward spikes, -1 downward ones.

    With ``log_scale`` the detector works on ``log(value)`` until a negative value
    arrives; it then starts over on the plain values for good.
    """

    def __init__(
        self, metric: str, direction: int, config: DetectorConfig, *, log_scale: bool = False
    ) -> None:
        self.metric = metric
        self.direction = direction
        self.config = config
        self.log_scale = log_scale
        self.ema: float | None = None
        self.window: deque[float] = deque(maxlen=config.spike_window)
        self.band = (0.0, 0.0)  # (median, MAD) of the window, refreshed every BAND_REFRESH
        self.phase = 0  # points since the window filled, modulo BAND_REFRESH
        self.quiet = config.spike_cooldown  # ordinary points since the last upward outlier

    def feed(self, steps: Ints, values: Floats) -> list[Finding]:
        """Process a batch in step order; returns the spikes found (usually none)."""
        if self.log_scale and not bool((values >= 0).all()):
            self._restart_linear()
        # A loss of exactly 0 (float32 underflow) is a very low point, not a reason to
        # give up the log scale: it becomes a large downward residual, clipped to the band.
        work = np.log(np.maximum(values, _LOG_FLOOR)) if self.log_scale else values
        found: list[Finding] = []
        index, count, scalar = 0, len(values), 0
        while index < count:
            if not scalar and self.ema is not None and len(self.window) == self.window.maxlen:
                # Vector path over a bounded slice, so the cost stays linear in the
                # batch even when outliers are frequent (a sawtooth, noisy data).
                chunk = work[index : index + SCAN_CHUNK]
                done = self._scan(chunk)
                index += done
                if done == len(chunk):
                    continue
                scalar = SCALAR_AFTER_OUTLIER
            finding = self._step(int(steps[index]), float(work[index]), float(values[index]))
            if finding is not None:
                found.append(finding)
            index += 1
            scalar = max(0, scalar - 1)
        return found

    def _restart_linear(self) -> None:
        """A negative value has no log: forget everything and watch the plain values."""
        self.log_scale = False
        self.ema = None
        self.window.clear()
        self.band, self.phase = (0.0, 0.0), 0
        self.quiet = self.config.spike_cooldown

    def _floor(self, level: float) -> float:
        """The smallest band: a ``spike_min_rel`` relative jump."""
        if self.log_scale:
            return math.log1p(self.config.spike_min_rel)
        return self.config.spike_min_rel * abs(level)

    def _threshold(self, mad: float, level: float) -> float:
        return max(self.config.spike_z * MAD_TO_SIGMA * mad, self._floor(level), _TINY)

    def _step(self, step: int, value: float, raw: float) -> Finding | None:
        """One point (``value`` on the working scale, ``raw`` as posted), exactly; the
        vectorised path defers to it for every outlier."""
        if self.ema is None:
            self.ema = value
            return None
        level, residual = self.ema, value - self.ema
        if len(self.window) < (self.window.maxlen or 0):
            self.window.append(residual)
            self.ema = level + self.config.spike_alpha * residual
            return None
        if self.phase == 0:
            self.band = median_mad(list(self.window))
        self.phase = (self.phase + 1) % BAND_REFRESH
        median, mad = self.band
        limit = self._threshold(mad, level)
        deviation = residual - median
        if abs(deviation) <= limit:
            self.quiet += 1
            self.window.append(residual)
            self.ema = level + self.config.spike_alpha * residual
            return None
        clipped = median + math.copysign(limit, deviation)
        self.window.append(clipped)
        self.ema = level + self.config.spike_alpha * clipped
        if deviation * self.direction <= 0:
            self.quiet += 1
            return None
        report, self.quiet = self.quiet >= self.config.spike_cooldown, 0
        if not report:
            return None
        sigmas = f", {abs(deviation) / (MAD_TO_SIGMA * mad):.0f} robust σ" if mad > 0 else ""
        expected = math.exp(level + median) if self.log_scale else level + median
        return Finding(
            EventKind.SPIKE,
            self.metric,
            step,
            raw,
            Severity.WARNING,
            f"{self.metric} spiked to {fmt(raw)} at step {step} "
            f"(expected about {fmt(expected)}{sigmas})",
        )

    def _scan(self, values: Floats) -> int:
        """Commit the leading run of ordinary points at once; returns its length."""
        assert self.ema is not None
        cfg, count = self.config, len(values)
        path = ema_path(self.ema, values, cfg.spike_alpha)
        levels = np.concatenate(([self.ema], path[:-1]))
        residuals = values - levels
        history = np.fromiter(self.window, dtype=np.float64, count=len(self.window))
        # Bands at refresh points only; every point uses the latest one before it.
        refresh = np.arange((-self.phase) % BAND_REFRESH, count, BAND_REFRESH)
        medians, mads = self.band[0] * np.ones(count), self.band[1] * np.ones(count)
        if len(refresh):
            fresh_median, fresh_mad = rolling_median_mad(
                history, residuals, cfg.spike_window, refresh
            )
            owner = np.searchsorted(refresh, np.arange(count), side="right") - 1
            has = owner >= 0
            medians[has] = fresh_median[owner[has]]
            mads[has] = fresh_mad[owner[has]]
        floor = (
            math.log1p(cfg.spike_min_rel) if self.log_scale else cfg.spike_min_rel * np.abs(levels)
        )
        limits = np.maximum(np.maximum(cfg.spike_z * MAD_TO_SIGMA * mads, floor), _TINY)
        outside = np.abs(residuals - medians) > limits
        done = int(np.argmax(outside)) if outside.any() else count
        if done:
            self.ema = float(path[done - 1])
            self.window.extend(residuals[max(0, done - cfg.spike_window) : done].tolist())
            self.quiet += done
            passed = refresh[refresh < done]
            if len(passed):
                self.band = (float(medians[passed[-1]]), float(mads[passed[-1]]))
            self.phase = (self.phase + done) % BAND_REFRESH
        return done


class DivergenceDetector:
    """A loss whose smoothed value rises steadily (only for metrics where lower is better)."""

    def __init__(self, metric: str, config: DetectorConfig) -> None:
        self.metric = metric
        self.config = config
        self.level: float | None = None
        self.recent: deque[float] = deque(maxlen=config.divergence_window + 1)
        self.seen = 0
        self.baseline: float | None = None  # set while an episode is reported

    def feed(self, steps: Ints, values: Floats) -> list[Finding]:
        """Process a batch in step order; returns at most one finding per episode."""
        cfg, count = self.config, len(values)
        if not count:
            return []
        if self.level is None:
            self.level = float(values[0])
        path = ema_path(self.level, values, cfg.divergence_alpha)
        history = np.fromiter(self.recent, dtype=np.float64, count=len(self.recent))
        joined = np.concatenate((history, path))
        offset, window = len(history), cfg.divergence_window
        rising = np.concatenate(([0], np.cumsum(np.diff(joined) > 0)))
        positions = np.arange(offset, offset + count)
        starts = np.maximum(positions - window, 0)
        begin, end = joined[starts], joined[positions]
        steady = (rising[positions] - rising[starts]) >= cfg.divergence_steady * window
        valid = (positions >= window) & (self.seen + np.arange(1, count + 1) >= 2 * window)
        fires = valid & steady & (end - begin > cfg.divergence_rise * np.abs(begin))
        found = self._episodes(steps, values, path, begin, fires)
        self.level = float(path[-1])
        self.recent.extend(path[-(window + 1) :].tolist())
        self.seen += count
        return found

    def _episodes(
        self, steps: Ints, values: Floats, path: Floats, begin: Floats, fires: npt.NDArray[np.bool_]
    ) -> list[Finding]:
        found: list[Finding] = []
        index, count = 0, len(path)
        while index < count:
            if self.baseline is not None:
                recovered = np.flatnonzero(path[index:] <= self.baseline)
                if not len(recovered):
                    break
                index += int(recovered[0])
                self.baseline = None
            hits = np.flatnonzero(fires[index:])
            if not len(hits):
                break
            index += int(hits[0])
            start, now = float(begin[index]), float(path[index])
            self.baseline = start
            rise = (now - start) / abs(start) * 100 if start else math.inf
            found.append(
                Finding(
                    EventKind.DIVERGENCE,
                    self.metric,
                    int(steps[index]),
                    float(values[index]),
                    Severity.CRITICAL,
                    f"{self.metric} is diverging: its smoothed value rose {rise:.0f}% over the "
                    f"last {self.config.divergence_window} points ({fmt(start)} → {fmt(now)})",
                )
            )
            index += 1
        return found


class PlateauDetector:
    """No new best for a long window; ``direction`` -1 when lower is better, +1 when higher."""

    def __init__(self, metric: str, direction: int, config: DetectorConfig) -> None:
        self.metric = metric
        self.direction = direction
        self.config = config
        self.level: float | None = None  # the EMA the best is taken of (noise has no say)
        self.best = -math.inf  # in "higher is better" units (value × direction)
        self.best_step: int | None = None
        self.since = 0  # points since the last improvement
        self.reported = False

    def feed(self, steps: Ints, values: Floats) -> list[Finding]:
        """Process a batch in step order; returns a finding when a window passes unimproved."""
        cfg = self.config
        if self.level is None:
            self.level = float(values[0])
        path = ema_path(self.level, values, cfg.plateau_alpha)
        self.level = float(path[-1])
        scores = path * self.direction
        before = np.maximum.accumulate(np.concatenate(([self.best], scores)))[:-1]
        improvements: list[int] = []
        for index in np.flatnonzero(scores > before).tolist():
            score = float(scores[index])
            if self.best == -math.inf or score > self.best + cfg.plateau_min_delta * abs(self.best):
                improvements.append(index)
                self.best, self.best_step = score, int(steps[index])
        found: list[Finding] = []
        since, previous = self.since, -1
        for boundary in [*improvements, len(values)]:
            # Points previous+1 .. boundary-1 carry since+1, since+2, …
            due = previous + cfg.plateau_window - since
            if not self.reported and previous < due < boundary:
                found.append(self._finding(steps, values, due))
                self.reported = True
            if boundary < len(values):
                since, previous, self.reported = 0, boundary, False
        self.since = since + (len(values) - 1 - previous)
        return found

    def _finding(self, steps: Ints, values: Floats, index: int) -> Finding:
        best = self.best * self.direction
        return Finding(
            EventKind.PLATEAU,
            self.metric,
            int(steps[index]),
            float(values[index]),
            Severity.INFO,
            f"{self.metric} has not improved for {self.config.plateau_window} points "
            f"(best smoothed value {fmt(best)} at step {self.best_step})",
        )


class MetricWatch:
    """The detectors of one training metric (spike, plateau and, for losses, divergence)."""

    def __init__(self, metric: str, direction: int, config: DetectorConfig) -> None:
        """``direction``: -1 when lower is better (losses), +1 when higher is (accuracy)."""
        self.spike = SpikeDetector(metric, -direction, config, log_scale=direction < 0)
        self.plateau = PlateauDetector(metric, direction, config)
        self.divergence = DivergenceDetector(metric, config) if direction < 0 else None
        self.last_step = -1

    def feed(self, steps: Ints, values: Floats) -> list[Finding]:
        """Findings of every detector for a batch, in step order (older steps are skipped)."""
        newer = steps > self.last_step
        if not newer.all():  # a re-posted or out-of-order step: the stream has moved on
            steps, values = steps[newer], values[newer]
        if not len(steps):
            return []
        self.last_step = int(steps[-1])
        found = self.spike.feed(steps, values) + self.plateau.feed(steps, values)
        if self.divergence is not None:
            found += self.divergence.feed(steps, values)
        return sorted(found, key=lambda finding: finding.step)
