"""The block codec: a block's points as bytes and back, and its summary (issue 15).

Layout, chosen by measurement on 4,096-point blocks of training-shaped series
(``benchmarks/blocks.py`` workload; zlib, lzma and bz2 from the standard
library, plain, byte-shuffled and XOR+byte-shuffled): noisy float64 curves
take 7.4 bytes/point plain with zlib and 6.6 byte-shuffled (lzma 6.5 at
15–40× the encode and decode time), a smooth loss 5.8, float32-derived values
3.2, small integers under 0.1. Byte shuffling (byte *i* of every value
together) lets the compressor find the repeated sign/exponent bytes; XOR with
the previous value gained nothing on noisy data.

Compressor: ``zstandard`` level 3. On the same shuffled blocks of 1M points
(``charts.py``'s loss and the bench's noisy curve, one loaded 2-core box),
zlib level 1 decodes in 44–67 ms and encodes in 230–670 ms; zstd level 3
decodes in 4–37 ms and encodes in 70–150 ms, for 1–3 % more bytes (6.08
against 6.00 bytes/point on the loss, 6.79 against 6.60 on the noisy curve).
Decode is what every cold chart pays (the smoothed chart decodes the whole
series), so zstd. Levels 6–9 were no smaller; 19 saved 3 % at 20–40× the
encode time. Blocks written with zlib (the first block release) still decode:
the first byte of a block names its codec.

A job's step blocks (:mod:`~trainvis.store.step_blocks`) hold four 8-byte
columns (step, epoch, timestamp, sequence number) as the deltas of their bit
patterns, byte-shuffled and zstd-compressed: a training loop's steps, seqs,
epochs and clock readings grow by small, repeated amounts, so the deltas
shrink to a few bytes a step, and wrapping int64 arithmetic undoes them bit
for bit (NaN epochs included).
"""

from __future__ import annotations

import threading
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import zstandard

from trainvis.series import Cells, run_extremes

#: First byte of a block's data, the codec: byte-shuffled int64 step deltas and
#: float64 values, compressed; or, for steps at a fixed stride (a training
#: loop's), the first step and the stride (16 bytes) and only the values: half
#: the bytes to inflate on every read. 1 and 2 are zlib (read only), 3 and 4 zstd.
CODEC_ZLIB_SHUFFLE = 1
CODEC_ZLIB_STRIDED = 2
CODEC_ZSTD_SHUFFLE = 3
CODEC_ZSTD_STRIDED = 4
#: A step block: bit-pattern deltas of its four columns, shuffled, zstd.
CODEC_STEP_DELTAS = 5
#: The zstd level blocks are written with (see the module docstring).
ZSTD_LEVEL = 3

Steps = npt.NDArray[np.int64]
Values = npt.NDArray[np.float64]


class _Contexts(threading.local):
    """One zstd compressor and decompressor per thread (they are not thread-safe)."""

    def __init__(self) -> None:
        self.compressor = zstandard.ZstdCompressor(level=ZSTD_LEVEL)
        self.decompressor = zstandard.ZstdDecompressor()


_contexts = _Contexts()


def encode(steps: Steps, values: Values) -> bytes:
    """A block's data: ``steps`` (ascending) and ``values`` of the same length."""
    if len(steps) > 1:
        stride = int(steps[1] - steps[0])
        if (np.diff(steps) == stride).all():
            header = np.asarray([steps[0], stride], dtype="<i8").tobytes()
            return bytes([CODEC_ZSTD_STRIDED]) + header + _squeeze(values.view(np.uint8))
    deltas = np.diff(steps, prepend=np.int64(0))
    payload = np.concatenate([deltas.view(np.uint8), values.view(np.uint8)])
    return bytes([CODEC_ZSTD_SHUFFLE]) + _squeeze(payload)


def _squeeze(words: npt.NDArray[np.uint8]) -> bytes:
    """8-byte words byte-shuffled (byte i of every word together), then zstd."""
    return bytes(_contexts.compressor.compress(words.reshape(-1, 8).T.tobytes()))


def _unsqueeze_into(data: bytes, out: npt.NDArray[Any], *, zstd: bool) -> None:
    """Inflate and un-shuffle ``data`` into ``out`` (a contiguous array of 8-byte words)."""
    _unshuffle(_contexts.decompressor.decompress(data) if zstd else zlib.decompress(data), out)


def _unshuffle(inflated: bytes, out: npt.NDArray[Any]) -> None:
    """Un-shuffle inflated byte planes into ``out`` (a contiguous array of 8-byte words)."""
    planes = np.frombuffer(inflated, dtype=np.uint8).reshape(8, -1)
    words = out.view(np.uint8).reshape(-1, 8)
    for index in range(8):  # a plane at a time: ~12 % faster than one strided copy
        words[:, index] = planes[index]


def decode_into(data: bytes, steps: Steps, values: Values) -> None:
    """Decode a block into ``steps`` and ``values`` (contiguous, of its length): a
    read of many blocks fills one pair of arrays, no per-block copies to join."""
    count, codec = len(steps), data[0]
    if codec in (CODEC_ZSTD_STRIDED, CODEC_ZLIB_STRIDED):
        first, stride = np.frombuffer(data, dtype="<i8", count=2, offset=1).tolist()
        np.multiply(np.arange(count, dtype=np.int64), stride, out=steps)
        steps += first
        _unsqueeze_into(data[17:], values, zstd=codec == CODEC_ZSTD_STRIDED)
        return
    if codec not in (CODEC_ZSTD_SHUFFLE, CODEC_ZLIB_SHUFFLE):
        raise ValueError(f"unknown block codec {codec}")
    words = np.empty(2 * count, dtype=np.int64)
    _unsqueeze_into(data[1:], words, zstd=codec == CODEC_ZSTD_SHUFFLE)
    np.cumsum(words[:count], out=steps)
    values.view(np.int64)[:] = words[count:]


def decode(data: bytes, count: int) -> tuple[Steps, Values]:
    """The ``(steps, values)`` of a block of ``count`` points."""
    steps, values = np.empty(count, dtype=np.int64), np.empty(count, dtype=np.float64)
    decode_into(data, steps, values)
    return steps, values


def encode_columns(columns: npt.NDArray[np.int64]) -> bytes:
    """A step block's data: ``columns`` (shape ``(k, n)``, 8-byte bit patterns as
    int64), each stored as the deltas along its row."""
    deltas = np.diff(columns, axis=1, prepend=np.zeros((len(columns), 1), np.int64))
    return bytes([CODEC_STEP_DELTAS]) + _squeeze(np.ascontiguousarray(deltas).view(np.uint8))


def decode_columns(data: bytes, rows: int, count: int | None = None) -> npt.NDArray[np.int64]:
    """The ``(rows, count)`` int64 columns of :func:`encode_columns`'s ``data``
    (``count`` None: as many as it holds)."""
    if data[0] != CODEC_STEP_DELTAS:
        raise ValueError(f"unknown step block codec {data[0]}")
    inflated = _contexts.decompressor.decompress(data[1:])
    if count is None:
        count = len(inflated) // (8 * rows)
    words = np.empty(rows * count, dtype=np.int64)
    _unshuffle(inflated, words)
    columns = words.reshape(rows, count)
    with np.errstate(over="ignore"):
        np.cumsum(columns, axis=1, out=columns)
    return columns


def cells_of(steps: Steps, values: Values, shift: int) -> Cells:
    """The :class:`Cells` of points ``steps`` (ascending) and ``values``."""
    finite = np.isfinite(values)
    steps, values = steps[finite], values[finite]
    if not len(steps):
        empty = np.empty(0, np.int64)
        return Cells(empty, empty, np.empty(0), empty, np.empty(0), empty)
    ids = steps >> shift
    runs = run_extremes(ids, values)
    low, high = runs.low, runs.high  # the values stored there, -0.0 or 0.0 as they are
    return Cells(ids[runs.starts], runs.counts, values[low], steps[low], values[high], steps[high])


def encode_cells(cells: Cells) -> bytes:
    """A block's tier: its :class:`Cells` as :func:`encode_columns` data."""
    return encode_columns(
        np.stack(
            [
                cells.cells,
                cells.counts,
                cells.mins.view(np.int64),
                cells.min_steps,
                cells.maxs.view(np.int64),
                cells.max_steps,
            ]
        )
    )


def decode_cells(data: bytes) -> Cells:
    """The :class:`Cells` of :func:`encode_cells`'s ``data``."""
    c = decode_columns(data, 6)
    return Cells(c[0], c[1], c[2].view(np.float64), c[3], c[4].view(np.float64), c[5])


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
