"""The block codec keeps steps and values bit for bit (issue 15)."""

from __future__ import annotations

import numpy as np
import pytest

from trainvis.store.block_codec import (
    CODEC_STRIDED,
    CODEC_ZLIB_SHUFFLE,
    decode,
    encode,
    summarize,
)

ODD_VALUES = np.asarray(
    [
        np.nan,
        np.inf,
        -np.inf,
        -0.0,
        5e-324,  # the smallest subnormal
        1.7976931348623157e308,
    ]
)


def _with_nan_payload(values: np.ndarray) -> np.ndarray:
    bits = values.view(np.uint64).copy()
    bits[0] = 0x7FF8_0000_DEAD_BEEF  # a NaN with a payload
    return bits.view(np.float64)


@pytest.mark.parametrize(
    ("steps", "codec"),
    [
        (np.arange(6, dtype=np.int64) * 10 + 2**40, CODEC_STRIDED),
        (np.asarray([0, 1, 2, 7, 8, 2**62], dtype=np.int64), CODEC_ZLIB_SHUFFLE),
    ],
)
def test_codec_round_trips_bit_exact(steps: np.ndarray, codec: int) -> None:
    values = _with_nan_payload(ODD_VALUES)
    data = encode(steps, values)
    assert data[0] == codec
    got_steps, got_values = decode(data, len(steps))
    assert got_steps.tolist() == steps.tolist()
    assert got_values.view(np.uint64).tolist() == values.view(np.uint64).tolist()


def test_single_point_block_round_trips() -> None:
    steps, values = decode(encode(np.asarray([42], np.int64), np.asarray([np.nan])), 1)
    assert steps.tolist() == [42] and np.isnan(values).all()


def test_summary_counts_nonfinite_and_keeps_finite_extremes() -> None:
    summary = summarize(np.arange(6, dtype=np.int64), ODD_VALUES)
    assert (summary.count, summary.first_step, summary.last_step) == (6, 0, 5)
    assert (summary.min_value, summary.max_value, summary.nonfinite) == (
        -0.0,
        1.7976931348623157e308,
        3,
    )
    nothing = summarize(np.arange(2, dtype=np.int64), np.asarray([np.nan, np.inf]))
    assert (nothing.min_value, nothing.max_value, nothing.nonfinite) == (None, None, 2)
