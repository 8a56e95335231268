"""The block codec: a block's points as bytes and back, and its summary (issue 15).

Codec, chosen by measurement on 4,096-point blocks of training-shaped series
(``benchmarks/blocks.py`` workload; zlib, lzma and bz2 from the standard
library, plain, byte-shuffled and XOR+byte-shuffled; ``zstandard`` is not a
dependency): noisy float64 curves take 7.4 bytes/point plain with zlib and
6.6 byte-shuffled (lzma 6.5 at 15–40× the encode and decode time), a smooth
loss 5.8, float32-derived values 3.2, small integers under 0.1. Byte
shuffling (byte *i* of every value together) lets the compressor find the
repeated sign/exponent bytes; XOR with the previous value gained nothing on
noisy data. zlib level 1 encodes about as small as level 6, faster.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

#: First byte of a block's data, the codec: byte-shuffled int64 step deltas and
#: float64 values, zlib; or, for steps at a fixed stride (a training loop's),
#: the first step and the stride (16 bytes) and only the values: half the bytes
#: to inflate on every read.
CODEC_ZLIB_SHUFFLE = 1
CODEC_STRIDED = 2

Steps = npt.NDArray[np.int64]
Values = npt.NDArray[np.float64]


def encode(steps: Steps, values: Values) -> bytes:
    """A block's data: ``steps`` (ascending) and ``values`` of the same length."""
    if len(steps) > 1:
        stride = int(steps[1] - steps[0])
        if (np.diff(steps) == stride).all():
            header = np.asarray([steps[0], stride], dtype="<i8").tobytes()
            return bytes([CODEC_STRIDED]) + header + _squeeze(values.view(np.uint8))
    deltas = np.diff(steps, prepend=np.int64(0))
    payload = np.concatenate([deltas.view(np.uint8), values.view(np.uint8)])
    return bytes([CODEC_ZLIB_SHUFFLE]) + _squeeze(payload)


def _squeeze(words: npt.NDArray[np.uint8]) -> bytes:
    """8-byte words byte-shuffled (byte i of every word together), then zlib level 1."""
    return zlib.compress(words.reshape(-1, 8).T.tobytes(), 1)


def _unsqueeze_into(data: bytes, out: npt.NDArray[Any]) -> None:
    """Inflate and un-shuffle ``data`` into ``out`` (a contiguous array of 8-byte words)."""
    raw = np.frombuffer(zlib.decompress(data), dtype=np.uint8)
    out.view(np.uint8).reshape(-1, 8)[:] = raw.reshape(8, -1).T


def decode_into(data: bytes, steps: Steps, values: Values) -> None:
    """Decode a block into ``steps`` and ``values`` (contiguous, of its length): a
    read of many blocks fills one pair of arrays, no per-block copies to join."""
    count = len(steps)
    if data[0] == CODEC_STRIDED:
        first, stride = np.frombuffer(data, dtype="<i8", count=2, offset=1).tolist()
        np.multiply(np.arange(count, dtype=np.int64), stride, out=steps)
        steps += first
        _unsqueeze_into(data[17:], values)
        return
    if data[0] != CODEC_ZLIB_SHUFFLE:
        raise ValueError(f"unknown block codec {data[0]}")
    words = np.empty(2 * count, dtype=np.int64)
    _unsqueeze_into(data[1:], words)
    np.cumsum(words[:count], out=steps)
    values.view(np.int64)[:] = words[count:]


def decode(data: bytes, count: int) -> tuple[Steps, Values]:
    """The ``(steps, values)`` of a block of ``count`` points."""
    steps, values = np.empty(count, dtype=np.int64), np.empty(count, dtype=np.float64)
    decode_into(data, steps, values)
    return steps, values


@dataclass(frozen=True)
class Summary:
    """A block's summary columns."""

    count: int
    first_step: int
    last_step: int
    min_value: float | None
    max_value: float | None
    nonfinite: int


def summarize(steps: Steps, values: Values) -> Summary:
    """The summary of a block's points (``min``/``max`` over finite values only)."""
    finite = values[np.isfinite(values)]
    return Summary(
        len(steps),
        int(steps[0]),
        int(steps[-1]),
        float(finite.min()) if len(finite) else None,
        float(finite.max()) if len(finite) else None,
        len(values) - len(finite),
    )
