"""The block codec keeps steps and values bit for bit (issue 15)."""

from __future__ import annotations

import zlib

import numpy as np
import pytest

from trainvis.store.block_codec import (
    CODEC_ZLIB_SHUFFLE,
    CODEC_ZLIB_STRIDED,
    CODEC_ZSTD_SHUFFLE,
    CODEC_ZSTD_STRIDED,
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
        (np.arange(6, dtype=np.int64) * 10 + 2**40, CODEC_ZSTD_STRIDED),
        (np.asarray([0, 1, 2, 7, 8, 2**62], dtype=np.int64), CODEC_ZSTD_SHUFFLE),
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


def _zlib_block(steps: np.ndarray, values: np.ndarray) -> bytes:
    """A block as the first block release wrote it: zlib level 1 over the shuffle."""

    def squeeze(words: np.ndarray) -> bytes:
        return zlib.compress(words.view(np.uint8).reshape(-1, 8).T.tobytes(), 1)

    if len(steps) > 1 and (np.diff(steps) == steps[1] - steps[0]).all():
        header = np.asarray([steps[0], steps[1] - steps[0]], dtype="<i8").tobytes()
        return bytes([CODEC_ZLIB_STRIDED]) + header + squeeze(values)
    deltas = np.diff(steps, prepend=np.int64(0))
    return bytes([CODEC_ZLIB_SHUFFLE]) + squeeze(np.concatenate([deltas, values.view(np.int64)]))


@pytest.mark.parametrize(
    "steps",
    [np.arange(6, dtype=np.int64) * 3 + 5, np.asarray([0, 1, 2, 7, 8, 2**62], dtype=np.int64)],
)
def test_blocks_written_with_zlib_still_decode(steps: np.ndarray) -> None:
    values = _with_nan_payload(ODD_VALUES)
    got_steps, got_values = decode(_zlib_block(steps, values), len(steps))
    assert got_steps.tolist() == steps.tolist()
    assert got_values.view(np.uint64).tolist() == values.view(np.uint64).tolist()


def test_unknown_codec_is_refused() -> None:
    data = bytes([9]) + encode(np.arange(3, dtype=np.int64), np.zeros(3))[1:]
    with pytest.raises(ValueError, match="unknown block codec 9"):
        decode(data, 3)
