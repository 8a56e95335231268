"""Smoothing of metric series: pure functions on numpy arrays.

Every smoother passes non-finite values (NaN, ±Infinity) through unchanged and
leaves them out of its computation, so one diverged step neither poisons the
rest of the curve nor disappears from it. All functions return a new float64
array of the input's length.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

# Largest power of the decay used inside one block of the scan: w**-k must stay
# far below the float64 maximum (1.8e308) so the closed form neither overflows
# nor loses digits to underflow of w**k.
_MAX_SCALE_LOG = 150.0 * math.log(10.0)
# Longer blocks add rounding error (cumsum is sequential); 1024 keeps the
# relative error of the scan near 1e-13 even for weights close to 1.
_MAX_BLOCK = 1024


def ema(values: npt.ArrayLike, alpha: float) -> FloatArray:
    """Debiased exponential moving average, exactly as TensorBoard smooths scalars.

    Port of ``classicSmoothing`` in TensorBoard's
    ``tensorboard/webapp/widgets/line_chart_v2/data_transformer.ts``::

        last = last * w + (1 - w) * y      # finite y only; last starts at 0
        numAccum += 1
        smoothed = last / (1 - w ** numAccum)   # debias (w == 1: no division)

    where TensorBoard's slider weight ``w`` is ``1 - alpha``: here ``alpha`` is
    the weight of the newest value (textbook EMA). Non-finite values are
    returned unchanged and do not enter the accumulator. A series whose values
    all equal the first one (``==``, so NaN never matches) is returned as is,
    as TensorBoard does (tensorboard#786), so a constant curve stays exactly
    constant.

    The recurrence is evaluated with a blocked closed form in numpy (see
    :func:`linear_scan`) instead of a Python loop; it agrees with the loop to
    about 1e-12 relative.

    Args:
        values: the series, in step order.
        alpha: weight of the newest value, in (0, 1].

    Raises:
        ValueError: ``alpha`` outside (0, 1].
    """
    if not 0.0 < alpha <= 1.0:
        raise ValueError(f"alpha must be in (0, 1], got {alpha!r}")
    y = np.array(values, dtype=np.float64).reshape(-1)
    if y.size == 0 or _is_constant(y):
        return y
    weight = 1.0 - alpha
    finite = np.isfinite(y)
    all_finite = bool(finite.all())
    # Without gaps the scan runs in place on the copy: no more 8 MB temporaries.
    xs = y if all_finite else y[finite]
    if xs.size == 0:
        return y
    xs *= 1.0 - weight
    _scan_inplace(xs, weight)
    if 0.0 < weight < 1.0:
        _debias_inplace(xs, weight)
    if not all_finite:
        y[finite] = xs
    return y


def _is_constant(y: FloatArray) -> bool:
    """TensorBoard's ``every(point.y == first)``, cheap when the answer is no."""
    if y.size > 1 and not y[1] == y[0]:
        return False
    return bool(np.all(y == y[0]))


def _debias_inplace(last: FloatArray, weight: float) -> None:
    """Divide by ``1 - weight**k`` for k = 1..n (TensorBoard's debias divisor).

    ``-expm1(k * log(w))`` is the same number without the cost of ``pow`` and
    without cancellation for weights near 1; once ``w**k`` is below 1e-17 the
    divisor is exactly 1 and the tail is left alone.
    """
    log_w = math.log(weight)
    span = min(last.size, int(-40.0 / log_w) + 1)
    last[:span] /= -np.expm1(np.arange(1, span + 1, dtype=np.float64) * log_w)


def linear_scan(u: npt.ArrayLike, w: float) -> FloatArray:
    """Evaluate ``y[n] = w * y[n-1] + u[n]`` with ``y[-1] = 0``, vectorised.

    The series is cut into blocks of ``B`` values. Inside a block the
    recurrence has the closed form ``y[j] = w**j * cumsum(u[i] * w**-i)[j]``,
    which is exact as long as ``w**-B`` stays representable; the value carried
    into each block follows the same recurrence over block ends with weight
    ``w**B``, solved recursively.

    Args:
        u: the inputs.
        w: the decay, in [0, 1].
    """
    y = np.array(u, dtype=np.float64).reshape(-1)
    _scan_inplace(y, w)
    return y


def _scan_inplace(a: FloatArray, w: float) -> None:
    """:func:`linear_scan` on a contiguous float64 array, overwriting it."""
    n = a.size
    if n == 0 or w == 0.0:
        return
    if w == 1.0:
        np.cumsum(a, out=a)
        return
    block = min(n, _MAX_BLOCK, max(1, int(_MAX_SCALE_LOG / -math.log(w))))
    if block == 1:
        a[:] = _scan_tiny_weight(a, w)
        return
    k = np.arange(block, dtype=np.float64)
    inv, pw = np.power(w, -k), np.power(w, k)
    full = n // block
    carry_in = 0.0
    if full:
        head = a[: full * block].reshape(full, block)
        head *= inv
        np.cumsum(head, axis=1, out=head)
        # y[b, j] = w**j * (S[b, j] + w * carry[b - 1]), carry = y at block ends.
        ends = head[:, -1] * pw[-1]
        _scan_inplace(ends, w**block)
        head[1:] += (w * ends[:-1])[:, None]
        head *= pw
        carry_in = w * float(ends[-1])
    tail = a[full * block :]
    if tail.size:
        tail *= inv[: tail.size]
        np.cumsum(tail, out=tail)
        tail += carry_in
        tail *= pw[: tail.size]


def _scan_tiny_weight(u: FloatArray, w: float) -> FloatArray:
    """The scan for ``w`` below 1e-150: each lag multiplies by ``w``, so the
    fixed-point iteration ``y = u + w * y[n-1]`` settles after a few rounds."""
    y = u.copy()
    for _ in range(u.size):
        nxt = u.copy()
        nxt[1:] += w * y[:-1]
        if np.array_equal(nxt, y):
            break
        y = nxt
    return y


def moving_average(values: npt.ArrayLike, window: int) -> FloatArray:
    """Trailing mean of the last ``window`` finite values.

    The first values average what is available (an expanding window), so the
    curve starts at the first value instead of being pulled toward zero.
    Non-finite values are passed through and skipped by the window.

    Raises:
        ValueError: ``window`` < 1.
    """
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window!r}")
    y = np.array(values, dtype=np.float64).reshape(-1)
    finite = np.isfinite(y)
    xs = y[finite]
    if xs.size == 0:
        return y
    # Shifting by the first value keeps the running sum small, limiting the
    # cancellation error of the cumsum difference on long series.
    shift = xs[0]
    csum = np.concatenate(([0.0], np.cumsum(xs - shift)))
    idx = np.arange(1, xs.size + 1)
    lo = np.maximum(idx - window, 0)
    y[finite] = (csum[idx] - csum[lo]) / (idx - lo) + shift
    return y


def gaussian(values: npt.ArrayLike, sigma: float) -> FloatArray:
    """Centred Gaussian kernel smoothing over the finite values (by index).

    The kernel has standard deviation ``sigma`` points and is truncated at
    four sigma; near the ends and gaps it is renormalised over the values that
    exist. Non-finite values are passed through and skipped.

    Raises:
        ValueError: ``sigma`` not a positive finite number.
    """
    if not (math.isfinite(sigma) and sigma > 0):
        raise ValueError(f"sigma must be a positive number, got {sigma!r}")
    y = np.array(values, dtype=np.float64).reshape(-1)
    finite = np.isfinite(y)
    xs = y[finite]
    if xs.size == 0:
        return y
    radius = min(int(math.ceil(4.0 * sigma)), xs.size)  # wider adds nothing
    offsets = np.arange(-radius, radius + 1, dtype=np.float64)
    kernel = np.exp(-0.5 * (offsets / sigma) ** 2)
    shift = float(np.mean(xs))
    num = _convolve_same(xs - shift, kernel)
    y[finite] = num / _kernel_mass(kernel, xs.size) + shift
    return y


def _kernel_mass(kernel: FloatArray, n: int) -> FloatArray:
    """The part of the (symmetric) kernel inside the series, per position.

    Equal to ``_convolve_same(ones(n), kernel)`` but O(n): the whole kernel
    mass inside, less the tails that fall off either end near the edges.
    """
    radius = (kernel.size - 1) // 2
    cumulative = np.cumsum(kernel)
    mass = np.full(n, cumulative[-1])
    edge = np.unique(np.concatenate((np.arange(min(radius, n)), np.arange(max(n - radius, 0), n))))
    top = np.minimum(kernel.size - 1, n - 1 - edge + radius)
    low = radius - edge - 1
    mass[edge] = cumulative[top] - np.where(low >= 0, cumulative[np.maximum(low, 0)], 0.0)
    return mass


def _convolve_same(x: FloatArray, kernel: FloatArray) -> FloatArray:
    """The centred part of the full convolution (``x``'s length, any kernel size).

    Direct convolution for short kernels, the FFT for long ones.
    """
    size = x.size + kernel.size - 1
    if kernel.size <= 400:  # direct is faster than a 2**20-point FFT up to here
        full: FloatArray = np.convolve(x, kernel, mode="full")
    else:
        nfft = 1 << (size - 1).bit_length()
        full = np.fft.irfft(np.fft.rfft(x, nfft) * np.fft.rfft(kernel, nfft), nfft)[:size]
    start = (kernel.size - 1) // 2
    return full[start : start + x.size]
