"""The project's one indicator library: TA-Lib-compatible, vectorised, causal technical indicators.

Used by the backtester, the strategy engine and the ML features; no other module computes indicators.

Conventions shared by every function:

* Inputs are 1-D numpy arrays or pandas Series (anything ``np.asarray`` accepts); outputs are fresh
  float64 numpy arrays of the input's length, NaN exactly where TA-Lib returns NaN (its warm-up) and
  equal to TA-Lib's values after it: to 1e-8 relative (tested; ~1e-13 typical), bit for bit for
  OBV, ROC, Donchian. Sums run in another order than TA-Lib's loops, so a value TA-Lib gets
  exactly (e.g. MACD line == signal on a perfectly straight price line) may differ in the last bit.
* Causal: the value at bar t uses only bars 0..t; the values on a prefix of a series are
  bit-identical to the first values on the whole series.
* Leading NaNs are skipped the way the ``talib`` wrapper does (computation starts at the first bar
  where every input is a number). A NaN after that makes every output that depends on it NaN: for
  the recursive indicators (EMA, WMA, RSI, ATR, ADX, MACD, OBV) that is every later bar, as in
  TA-Lib's running sums; for the window indicators only the windows that contain it.
* Periods are integers; a period below the minimum TA-Lib accepts raises ValueError.
* Vectorised: no Python loop over bars (the few loops run over chunks of 2**18 bars, over the lags
  of a window, or over blocks of BLAS calls). Rolling sums/extremes use doubling over power-of-two
  windows (log2(period) whole-array operations, pairwise-accurate: no cumulative-sum
  cancellation); the recursive filters (EMA, Wilder) run blockwise as small matrix products (see
  ``_ar1``). Scratch arrays are recycled between calls (see ``_Workspace``).

``INDICATORS`` maps each indicator name to an ``IndicatorSpec`` (inputs, parameters with ranges,
output names, warm-up) for the strategy engine; ``compute`` runs one by name from a candles mapping.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "INDICATORS",
    "IndicatorSpec",
    "ParamSpec",
    "adx",
    "atr",
    "bollinger",
    "cci",
    "compute",
    "donchian",
    "ema",
    "macd",
    "obv",
    "roc",
    "rsi",
    "sma",
    "stochastic",
    "vwap",
    "williams_r",
    "wma",
]

FloatArray = NDArray[np.float64]

# TA-Lib 0.8 treats |v| < 1e-14 as zero (TA_IS_ZERO) in RSI and ADX; mirrored so flat markets match.
_TA_EPSILON = 1e-14

# Bars per block of the recursive-filter kernel (see _ar1): the block product costs 2*_BLOCK flops
# per bar and the chain of block-end values shrinks _BLOCK-fold per level; 8 measured fastest.
_BLOCK = 8

_MAX_PERIOD = 100_000  # TA-Lib's upper bound for every period

# Bars per pass where an indicator runs in chunks: a chunk's inputs, scratch and output (~2 MB
# each) stay in cache from the elementwise steps through the matrix products.
_CHUNK = 1 << 18


# --------------------------------------------------------------------------------------------------
# Input handling
# --------------------------------------------------------------------------------------------------


def _as_array(values: ArrayLike, name: str) -> FloatArray:
    if hasattr(values, "to_numpy"):  # pandas Series/Index, including nullable dtypes
        values = values.to_numpy(dtype=np.float64, na_value=np.nan)
    arr = np.ascontiguousarray(values, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    return arr


def _inputs(**named: ArrayLike) -> list[FloatArray]:
    arrays = [_as_array(values, name) for name, values in named.items()]
    if len({arr.size for arr in arrays}) > 1:
        detail = ", ".join(f"{name}={arr.size}" for name, arr in zip(named, arrays, strict=True))
        raise ValueError(f"inputs must have the same length, got {detail}")
    return arrays


def _period(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def _first_valid(arrays: list[FloatArray]) -> int:
    """First bar where every input is a number (the talib wrapper's ``begidx``)."""
    n = arrays[0].size
    if n == 0 or not any(np.isnan(arr[0]) for arr in arrays):
        return 0
    valid = ~np.isnan(arrays[0])
    for arr in arrays[1:]:
        valid &= ~np.isnan(arr)
    first = int(np.argmax(valid))
    return first if valid[first] else n


# --------------------------------------------------------------------------------------------------
# Scratch memory
# --------------------------------------------------------------------------------------------------


# Scratch arrays kept between calls, shared by all threads (a buffer is only ever lent to one call
# at a time) and bounded in total, so a thread pool does not multiply the memory kept.
_POOL: list[FloatArray] = []
_POOL_LOCK = threading.Lock()
_POOL_LIMIT_BYTES = 64 * 2**20


def _best_fit(buffers: list[FloatArray], size: int) -> FloatArray | None:
    fits = [i for i, buf in enumerate(buffers) if buf.size >= size]
    return buffers.pop(min(fits, key=lambda i: buffers[i].size)) if fits else None


class _Workspace:
    """Scratch arrays for one indicator call, recycled across calls.

    Multi-megabyte temporaries cost more than the arithmetic done on them: freed, they go back to
    the OS and the next call page-faults them in again (~1 ms per 8 MB on the reference machine,
    against ~0.15 ms for an add over them). So scratch comes from a pool that keeps at most
    64 MiB. Outputs are always fresh arrays, never pool memory.
    """

    def __init__(self) -> None:
        self._taken: list[FloatArray] = []
        self._spare: list[FloatArray] = []

    def take(self, size: int) -> FloatArray:
        """A scratch array of ``size`` elements with arbitrary contents."""
        buf = _best_fit(self._spare, size)
        if buf is None:
            with _POOL_LOCK:
                buf = _best_fit(_POOL, size)
        if buf is None:
            # Slack lets requests that differ by a few bars (n, n - 1, rounded up to blocks) share.
            buf = np.empty(size + size // 32 + 64)
        self._taken.append(buf)
        return buf[:size]

    def mark(self) -> int:
        return len(self._taken)

    def release(self, mark: int) -> None:
        """Everything taken since ``mark`` may be handed out again by this workspace."""
        self._spare.extend(self._taken[mark:])
        del self._taken[mark:]

    def __enter__(self) -> _Workspace:
        return self

    def __exit__(self, *exc_info: object) -> None:
        global _POOL
        with _POOL_LOCK:
            kept: list[FloatArray] = []
            total = 0
            for buf in sorted(_POOL + self._taken + self._spare, key=lambda b: b.size):
                if total + buf.nbytes <= _POOL_LIMIT_BYTES:
                    kept.append(buf)
                    total += buf.nbytes
            _POOL = kept
        self._taken, self._spare = [], []


def _run(
    core: Callable[..., tuple[FloatArray, ...]], arrays: list[FloatArray], *params: Any
) -> tuple[FloatArray, ...]:
    """Run ``core`` from the first bar with all inputs present, NaN before it."""
    start = _first_valid(arrays)
    with _Workspace() as ws:
        if start == 0:
            return core(ws, *arrays, *params)
        outputs = core(ws, *(arr[start:] for arr in arrays), *params)
    head = np.full(start, np.nan)
    return tuple(np.concatenate((head, out)) for out in outputs)


def _nan_output(n: int, head: int) -> FloatArray:
    out = np.empty(n)
    out[: min(head, n)] = np.nan
    return out


def _blocks(length: int) -> int:
    """``length`` rounded up to whole ``_BLOCK``s."""
    return -(-length // _BLOCK) * _BLOCK


def _output_region(n: int, head: int) -> tuple[FloatArray, FloatArray]:
    """An n-bar output, NaN for the first ``head`` bars, and the region from bar ``head`` on padded
    to whole blocks (the padding lies past the returned view) for ``_ar1`` to write into."""
    buf = np.empty(head + _blocks(n - head))
    buf[:head] = np.nan
    return buf[:n], buf[head:]


def _scratch(ws: _Workspace, length: int) -> FloatArray:
    """An ``_ar1`` input buffer: ``length`` values to fill, zero padding up to whole blocks."""
    buf = ws.take(_blocks(length))
    buf[length:] = 0.0
    return buf


# --------------------------------------------------------------------------------------------------
# Vectorised kernels
# --------------------------------------------------------------------------------------------------


def _window_sum(x: FloatArray, period: int, out: FloatArray, ws: _Workspace) -> None:
    """``out[j] = x[j] + ... + x[j + period - 1]`` for every j < out.size (= x.size - period + 1).

    Built from power-of-two partial sums (one whole-array add per doubling plus one per further set
    bit of ``period``), so each sum is pairwise-accurate, never the difference of two large running
    totals.
    """
    count = out.size
    if count <= 0:
        return
    mark = ws.mark()
    free = [ws.take(x.size) for _ in range(min(3, period.bit_length() - 1))]
    pending: FloatArray | None = None  # first piece, kept in place until the second one comes
    level, width, offset, bits, started = x, 1, 0, period, False
    while True:
        if bits & 1:
            piece = level[offset : offset + count]
            if started:
                out += piece
            elif pending is None:
                pending = piece
                if bits == 1:  # the only piece
                    np.copyto(out, piece)
            else:
                np.add(pending, piece, out=out)
                started = True
            offset += width
        bits >>= 1
        if not bits:
            break
        # Write the next level into a buffer holding neither the current level nor the pending piece.
        busy = {id(arr.base) for arr in (level, pending) if arr is not None}
        dst = next(buf for buf in free if id(buf.base) not in busy)[: level.size - width]
        np.add(level[: dst.size], level[width:], out=dst)
        level, width = dst, 2 * width
    ws.release(mark)


def _window_extreme(x: FloatArray, period: int, op: np.ufunc, out: FloatArray, ws: _Workspace) -> None:
    """Rolling ``op`` (np.maximum/np.minimum) over ``period`` values, ``out[j]`` covering x[j:j+period].

    Sparse-table doubling: log2(period) whole-array ops, then two overlapping power-of-two windows
    cover the period exactly (overlap is harmless for max/min).
    """
    count = out.size
    if count <= 0:
        return
    mark = ws.mark()
    buffers = [ws.take(x.size), ws.take(x.size)] if period >= 4 else [ws.take(x.size)] * (period >= 2)
    level, width, turn = x, 1, 0
    while 4 * width <= period:
        size = level.size - width
        dst = buffers[turn][:size]
        op(level[:size], level[width:], out=dst)
        level, width, turn = dst, 2 * width, 1 - turn
    if 2 * width <= period:  # last doubling goes straight into the result when the period is 2**k
        if 2 * width == period:
            op(level[:count], level[width : width + count], out=out)
            ws.release(mark)
            return
        size = level.size - width
        dst = buffers[turn][:size]
        op(level[:size], level[width:], out=dst)
        level, width = dst, 2 * width
    shift = period - width
    op(level[:count], level[shift : shift + count], out=out)
    ws.release(mark)


# OpenBLAS keeps a product on the calling thread while rows * inner * columns <= 65536 * 4 (gemm)
# or rows * inner < 2304 * 4 (gemv). Ours are far too thin (inner size 8 to 32) to gain from
# threads: waking them costs more than the product, with multi-millisecond stalls whenever another
# process holds a core.
_GEMM_WORK = 65536 * 4
_GEMV_WORK = 2304 * 4 - 1


def _matmul_rows(b: FloatArray) -> int:
    """Rows of ``a`` per ``a @ b`` call: a multiple of 32 within OpenBLAS's single-thread sizes."""
    work = _GEMV_WORK // b.shape[0] if b.ndim == 1 else _GEMM_WORK // (b.shape[0] * b.shape[1])
    return max(32, work // 32 * 32)


def _matmul(a: FloatArray, b: FloatArray, out: FloatArray) -> None:
    """``out = a @ b`` (``b`` a block matrix or vector) in fixed-size single-threaded chunks.

    Chunks start at fixed rows and the last one is zero-padded to a multiple of 32 rows (past any
    BLAS kernel's row unrolling), so a row is computed the same way whatever the input length: the
    values on a prefix of a series are bit-identical to those on the whole (the tests check it).
    """
    rows = _matmul_rows(b)
    whole = a.shape[0] // rows * rows
    for start in range(0, whole, rows):
        np.matmul(a[start : start + rows], b, out=out[start : start + rows])
    if whole < a.shape[0]:
        left = a.shape[0] - whole
        padded = np.zeros((-(-left // 32) * 32, a.shape[1]))
        padded[:left] = a[whole:]
        out[whole:] = np.matmul(padded, b)[:left]


_LAG = np.arange(_BLOCK)[None, :] - np.arange(_BLOCK)[:, None]  # j - i


@functools.lru_cache(maxsize=256)
def _ar1_matrix(a: float) -> FloatArray:
    """``M[i, j] = a**(j - i)`` for j >= i, else 0: the response at block bar j to input at bar i.

    Cached (read-only): the same few coefficients recur on every call."""
    mat = np.where(_LAG >= 0, a ** np.maximum(_LAG, 0), 0.0)
    mat.flags.writeable = False
    return mat


def _ar1_blocks(ws: _Workspace, u: FloatArray, a: float, scale: float, y0: float, out: FloatArray) -> bool:
    """Core of ``_ar1``; returns False, with ``u`` untouched, if any input is not finite."""
    m = u.size // _BLOCK
    mat = _ar1_matrix(a) * scale
    blocks = u.reshape(m, _BLOCK)
    if m > 1:
        # Each block's own end value (zero start), then the chain of true block ends, which is the
        # same recursion with coefficient a**BLOCK on BLOCK times fewer values.
        ends = ws.take(_blocks(m - 1))
        ends[m - 1 :] = 0.0
        _matmul(blocks[:-1], np.ascontiguousarray(mat[:, -1]), ends[: m - 1])
        carry = ws.take(ends.size)
        if not _ar1_blocks(ws, ends, a**_BLOCK, 1.0, y0, carry) or not np.isfinite(blocks[-1]).all():
            return False
        # Folding the carry into each block's first input makes one product give the final values.
        carry *= a / scale
        blocks[1:, 0] += carry[: m - 1]
    elif not np.isfinite(blocks).all():
        return False
    blocks[0, 0] += (a / scale) * y0
    _matmul(blocks, mat, out.reshape(m, _BLOCK))
    return True


def _ar1(
    ws: _Workspace, u: FloatArray, length: int, a: float, y0: float, out: FloatArray, scale: float = 1.0
) -> None:
    """First-order recursion ``y[t] = a * y[t-1] + scale * u[t]`` with ``y[-1] = y0``, into ``out``.

    ``u`` comes from ``_scratch(ws, length)`` and is overwritten; ``out`` has ``u.size`` elements.
    Bars are processed in blocks: within a block the recursion is a triangular matrix product
    (BLAS), and the values carried from block to block are the same recursion on the block ends,
    solved recursively. Exact up to rounding (nothing truncated). Inputs after bar t never reach
    bar t: they enter earlier bars only multiplied by the matrix's exact zeros.
    """
    if length == 0:
        return
    if not np.isfinite(y0):
        out[:] = np.nan
        return
    mark = ws.mark()
    if not _ar1_blocks(ws, u, a, scale, y0, out):
        # A NaN/inf would poison its whole block product (0 * NaN is NaN), earlier bars included:
        # solve the clean prefix and blank the rest, which is what the bar-by-bar recursion gives.
        # (All inputs finite means the values overflowed: everything is blanked.)
        bad = int(np.argmin(np.isfinite(u[:length])))
        u[bad:] = 0.0
        _ar1_blocks(ws, u, a, scale, y0, out)
        out[bad:] = np.nan
    ws.release(mark)


def _ema_difference(
    ws: _Workspace, x: FloatArray, fast: tuple[float, float], slow: tuple[float, float], out: FloatArray
) -> bool:
    """``out[t] = fast_ema[t] - slow_ema[t]`` on ``x``, each given as ``(k, value before x[0])``.

    Both EMAs are linear in ``x``, so one matrix product of the (uncopied) blocks of ``x`` with the
    difference of the two block matrices gives the line, plus the two values carried into each
    block times their decays. ``out`` has ``_blocks(x.size)`` elements. Returns False if an input
    is not finite.
    """
    length = x.size
    full = length // _BLOCK
    terms = [(1.0 - k, k, y0) for k, y0 in (fast, slow)]
    mats = [_ar1_matrix(a) * k for a, k, _ in terms]
    rows = x[: full * _BLOCK].reshape(full, _BLOCK)
    tail = np.zeros((1, _BLOCK))
    tail[0, : length - full * _BLOCK] = x[full * _BLOCK :]
    if not (np.isfinite(tail).all() and all(np.isfinite(y0) for _, _, y0 in terms)):
        return False
    # Values carried into each block (the first from the seeds), one column per EMA.
    carried = np.empty((full + 1, 2))
    mark = ws.mark()
    for column, ((a, _, y0), mat) in enumerate(zip(terms, mats, strict=True)):
        carried[0, column] = y0
        if full:
            ends = _scratch(ws, full)
            _matmul(rows, np.ascontiguousarray(mat[:, -1]), ends[:full])
            chain = ws.take(ends.size)
            _ar1(ws, ends, full, a**_BLOCK, y0, chain)
            carried[1:, column] = chain[:full]
    ws.release(mark)
    if not np.isfinite(carried[-1]).all():
        return False
    decays = np.stack([terms[0][0] ** np.arange(1, _BLOCK + 1), -(terms[1][0] ** np.arange(1, _BLOCK + 1))])
    line = mats[0] - mats[1]
    result = out.reshape(-1, _BLOCK)
    if full:
        _matmul(rows, line, result[:full])
        correction = ws.take(full * _BLOCK).reshape(full, _BLOCK)
        _matmul(carried[:full], decays, correction)
        result[:full] += correction
    if full < result.shape[0]:
        last = np.empty((1, _BLOCK))
        _matmul(tail, line, result[full:])
        _matmul(carried[full:], decays, last)
        result[full:] += last
    return True


def _true_range(
    high: FloatArray, low: FloatArray, close: FloatArray, out: FloatArray, tmp: FloatArray
) -> None:
    """TA-Lib's TRANGE of bars 1..n-1 into ``out``.

    TA-Lib takes max(high - low, |high - prev close|, |low - prev close|); for a candle with
    low <= high that is max(high, prev close) - min(low, prev close) bit for bit (rounding is
    monotonic, so the same difference wins), in three array operations instead of seven.
    """
    prev_close = close[:-1]
    np.maximum(high[1:], prev_close, out=out)
    np.minimum(low[1:], prev_close, out=tmp)
    out -= tmp


# --------------------------------------------------------------------------------------------------
# Indicator cores: workspace and arrays without leading NaNs in, full-length outputs out
# --------------------------------------------------------------------------------------------------


def _sma_core(ws: _Workspace, x: FloatArray, period: int) -> tuple[FloatArray]:
    n = x.size
    out = _nan_output(n, period - 1)
    if n >= period:
        result = out[period - 1 :]
        _window_sum(x, period, result, ws)
        result /= period
    return (out,)


def _ema_into(ws: _Workspace, x: FloatArray, period: int, seed: float, out: FloatArray) -> None:
    """EMA of ``x`` continuing from ``seed`` (the value one bar before x[0]) into ``out``, which has
    ``_blocks(x.size)`` elements."""
    k = 2.0 / (period + 1)
    buffer = ws.take(_blocks(min(_CHUNK, x.size)))
    for start in range(0, x.size, _CHUNK):  # chunks of bars, each fully vectorised
        size = min(_CHUNK, x.size - start)
        u = buffer[: _blocks(size)]
        np.copyto(u[:size], x[start : start + size])
        u[size:] = 0.0
        chunk_out = out[start : start + u.size]
        _ar1(ws, u, size, 1.0 - k, seed, chunk_out, scale=k)
        seed = chunk_out[size - 1]


def _ema_core(ws: _Workspace, x: FloatArray, period: int) -> tuple[FloatArray]:
    n = x.size
    if n < period:
        return (np.full(n, np.nan),)
    out, region = _output_region(n, period)
    seed = x[:period].sum() / period
    out[period - 1] = seed
    _ema_into(ws, x[period:], period, seed, region)
    return (out,)


# Up to this period the WMA is cheaper as a direct weighted sum (two matrix products of
# period-sized blocks, ~4 * period flops per bar) than as TA-Lib's two running sums.
_WMA_DIRECT_MAX = 32


def _wma_direct(x: FloatArray, period: int) -> FloatArray:
    """WMA as weighted sums over blocks of ``period`` bars: a bar's window spans its own block and
    the one before, so each block's values are [previous block | block] @ weights. Viewing the bars
    two blocks per row, once from bar 0 and once from bar ``period``, gives those pairs for the odd
    and the even blocks without copying; each product writes straight into the output."""
    n = x.size
    finite = np.isfinite(x) if not np.isfinite(x.sum()) else None  # the sum: one cheap pass
    if finite is not None and not finite.all():
        # A NaN/inf would spread through its block's product: like TA-Lib's running sums, the
        # WMA is NaN from the first bad bar on.
        first = int(np.argmin(finite))
        out = np.full(n, np.nan)
        if first >= period:
            out[:first] = _wma_direct(x[:first], period)
        return out
    divider = period * (period + 1) / 2
    lag = np.arange(period)[None, :] - np.arange(period)[:, None]  # j - i
    weights = np.vstack(
        (
            np.where(lag < 0, -lag, 0.0),  # bar i of the previous block, for bar j of this one
            np.where(lag >= 0, period - lag, 0.0),  # bar i of this block
        )
    )
    weights /= divider
    full, rest = divmod(n, period)
    out = np.empty(full * period + (period if rest else 0))
    out[: period - 1] = np.nan
    out[period - 1] = float(x[:period] @ np.arange(1.0, period + 1)) / divider
    result = out.reshape(-1, period)
    # Odd blocks 1, 3, ... from rows [block 0 | block 1], [block 2 | block 3], ... (bars from 0),
    # even blocks 2, 4, ... from rows [block 1 | block 2], ... (bars from `period`).
    odd, even = full // 2, (full - 1) // 2
    pairs_from_odd = x[: 2 * period * odd].reshape(odd, 2 * period)
    pairs_from_even = x[period : period * (1 + 2 * even)].reshape(even, 2 * period)
    _matmul(pairs_from_odd, weights, result[1 : 2 * odd : 2])
    _matmul(pairs_from_even, weights, result[2 : 2 * even + 1 : 2])
    if rest:
        pair = np.zeros((1, 2 * period))
        pair[0, : period + rest] = x[(full - 1) * period :]
        _matmul(pair, weights, result[full:])
    return out[:n]


def _wma_core(ws: _Workspace, x: FloatArray, period: int) -> tuple[FloatArray]:
    n = x.size
    if n < period:
        return (np.full(n, np.nan),)
    if period == 1:
        return (x.copy(),)
    if period <= _WMA_DIRECT_MAX:
        return (_wma_direct(x, period),)
    out, region = _output_region(n, period)
    divider = period * (period + 1) / 2
    numerator = float(x[:period] @ np.arange(1.0, period + 1))
    out[period - 1] = numerator / divider
    # TA-Lib's update: numerator(t) = numerator(t-1) + period*x[t] - sum(x[t-period:t]). With that
    # window sum exact (pairwise) the increments are small, period times a deviation from the mean,
    # so their running total stays exact to rounding; weighted cumulative sums, whose terms grow
    # with the bar index, would not.
    length = n - period
    u = _scratch(ws, length)
    window = ws.take(length)
    _window_sum(x[:-1], period, window, ws)
    np.multiply(x[period:], period, out=u[:length])
    u[:length] -= window
    _ar1(ws, u, length, 1.0, numerator / divider, region, scale=1.0 / divider)
    return (out,)


def _rsi_core(ws: _Workspace, x: FloatArray, period: int) -> tuple[FloatArray]:
    n = x.size
    out = _nan_output(n, period)
    if n <= period:
        return (out,)
    first = np.diff(x[: period + 1])
    gain = np.maximum(first, 0.0).sum() / period
    loss = -np.minimum(first, 0.0).sum() / period
    total = gain + loss
    out[period] = 0.0 if abs(total) < _TA_EPSILON else 100.0 * (gain / total)
    a, scale = (period - 1) / period, 0.5 / period
    size = min(_CHUNK, n)
    change, gains, losses = ws.take(size), ws.take(_blocks(size)), ws.take(_blocks(size))
    avg_gain, avg_loss = ws.take(_blocks(size)), ws.take(_blocks(size))
    for start in range(period + 1, n, _CHUNK):  # chunks of bars, each fully vectorised
        stop = min(start + _CHUNK, n)
        size = stop - start
        d = np.subtract(x[start:stop], x[start - 1 : stop - 1], out=change[:size])
        # 2*max(d, 0) = d + |d| and 2*max(-d, 0) = |d| - d, exactly; the 1/2 goes into the recursion.
        moves = np.abs(d, out=losses[:size])
        np.add(d, moves, out=gains[:size])
        np.subtract(moves, d, out=losses[:size])
        padded = _blocks(size)
        gains[size:padded] = 0.0
        losses[size:padded] = 0.0
        _ar1(ws, gains[:padded], size, a, gain, avg_gain[:padded], scale=scale)
        _ar1(ws, losses[:padded], size, a, loss, avg_loss[:padded], scale=scale)
        gain, loss = avg_gain[size - 1], avg_loss[size - 1]
        totals = np.add(avg_gain[:size], avg_loss[:size], out=change[:size])
        result = out[start:stop]
        with np.errstate(divide="ignore", invalid="ignore"):
            np.divide(avg_gain[:size], totals, out=result)
        result *= 100.0
        flat = totals < _TA_EPSILON  # no move at all over the smoothing horizon: TA-Lib reports 0
        if flat.any():
            result[flat] = 0.0
    return (out,)


def _macd_core(ws: _Workspace, x: FloatArray, fast: int, slow: int, signal: int) -> tuple[FloatArray, ...]:
    n = x.size
    lookback = slow - 1 + signal - 1
    if n <= lookback:
        return tuple(np.full(n, np.nan) for _ in range(3))
    # TA-Lib starts both EMAs at bar slow-1: the slow one seeded with the mean of bars 0..slow-1,
    # the fast one with the mean of its own last `fast` bars, slow-fast..slow-1.
    seed_slow = x[:slow].sum() / slow
    seed_fast = x[slow - fast : slow].sum() / fast
    # The whole MACD line from bar slow-1 on, in the first output until the signal is seeded.
    macd_out, line_rest = _output_region(n, slow)
    macd_out[slow - 1] = seed_fast - seed_slow
    k_fast, k_slow = 2.0 / (fast + 1), 2.0 / (slow + 1)
    if fast == slow:
        # The same EMA twice: exactly 0 as in TA-Lib (the product would leave ~1 ulp), NaN from a
        # bad input on.
        finite = np.isfinite(x)
        line_rest[:] = 0.0
        if not finite.all():
            line_rest[max(int(np.argmin(finite)), slow) - slow :] = np.nan
    elif not _ema_difference(ws, x[slow:], (k_fast, seed_fast), (k_slow, seed_slow), line_rest):
        # A NaN/inf input (rare): the EMAs, hence all three outputs, are NaN from there on.
        bad = slow + int(np.argmin(np.isfinite(x[slow:])))
        outputs = _macd_core(ws, x[:bad], fast, slow, signal) if bad > lookback else None
        result = tuple(np.full(n, np.nan) for _ in range(3))
        for full_out, part in zip(result, outputs or (), strict=False):
            full_out[:bad] = part
        return result
    line = macd_out[slow - 1 :]

    signal_out, region = _output_region(n, lookback + 1)
    seed_signal = line[:signal].sum() / signal
    signal_out[lookback] = seed_signal
    _ema_into(ws, line[signal:], signal, seed_signal, region)
    macd_out[:lookback] = np.nan
    hist = _nan_output(n, lookback)
    np.subtract(macd_out[lookback:], signal_out[lookback:], out=hist[lookback:])
    return macd_out, signal_out, hist


def _bollinger_core(ws: _Workspace, x: FloatArray, period: int, k: float) -> tuple[FloatArray, ...]:
    n = x.size
    upper, middle, lower = (_nan_output(n, period - 1) for _ in range(3))
    if n < period:
        return upper, middle, lower
    # Population variance as mean of squares minus squared mean, like TA-Lib, but of deviations
    # from the first price: the cancellation then scales with the distance from that price rather
    # than with the price itself.
    count = n - period + 1
    origin = float(x[0])
    deviation, squares = ws.take(n), ws.take(n)
    np.subtract(x, origin, out=deviation)
    np.multiply(deviation, deviation, out=squares)
    mean, variance = ws.take(count), ws.take(count)
    _window_sum(deviation, period, mean, ws)
    _window_sum(squares, period, variance, ws)
    mean /= period
    variance /= period
    np.multiply(mean, mean, out=squares[:count])
    variance -= squares[:count]
    np.maximum(variance, 0.0, out=variance)  # rounding can leave a flat window slightly negative
    width = np.sqrt(variance, out=variance)
    width *= k
    mid = middle[period - 1 :]
    np.add(mean, origin, out=mid)
    np.add(mid, width, out=upper[period - 1 :])
    np.subtract(mid, width, out=lower[period - 1 :])
    return upper, middle, lower


def _atr_core(
    ws: _Workspace, high: FloatArray, low: FloatArray, close: FloatArray, period: int
) -> tuple[FloatArray]:
    n = close.size
    if n <= period:
        return (np.full(n, np.nan),)
    out, region = _output_region(n, period + 1)
    seed_tr = ws.take(period)
    _true_range(high[: period + 1], low[: period + 1], close[: period + 1], seed_tr, ws.take(period))
    atr_value = seed_tr.sum() / period
    out[period] = atr_value
    a = (period - 1) / period
    tr, tmp = ws.take(_blocks(min(_CHUNK, n))), ws.take(_CHUNK)
    for start in range(period + 1, n, _CHUNK):  # chunks of bars, each fully vectorised
        stop = min(start + _CHUNK, n)
        size = stop - start
        u = tr[: _blocks(size)]
        bars = slice(start - 1, stop)
        _true_range(high[bars], low[bars], close[bars], u[:size], tmp[:size])
        u[size:] = 0.0
        chunk_out = region[start - period - 1 : start - period - 1 + u.size]
        _ar1(ws, u, size, a, atr_value, chunk_out, scale=1.0 / period)
        atr_value = chunk_out[size - 1]
    return (out,)


def _stochastic_core(
    ws: _Workspace, high: FloatArray, low: FloatArray, close: FloatArray, k_period: int, d_period: int
) -> tuple[FloatArray, ...]:
    n = close.size
    lookback = k_period - 1 + d_period - 1
    k_out, d_out = _nan_output(n, lookback), _nan_output(n, lookback)
    if n <= lookback:
        return k_out, d_out
    count = n - k_period + 1
    highest, lowest = ws.take(count), ws.take(count)
    _window_extreme(high, k_period, np.maximum, highest, ws)
    _window_extreme(low, k_period, np.minimum, lowest, ws)
    scale = np.subtract(highest, lowest, out=highest)
    scale /= 100.0
    fast_k = np.subtract(close[k_period - 1 :], lowest, out=lowest)
    with np.errstate(divide="ignore", invalid="ignore"):
        fast_k /= scale
    flat = scale == 0.0  # no range in the window: TA-Lib reports 0
    if flat.any():
        fast_k[flat] = 0.0
    k_out[lookback:] = fast_k[d_period - 1 :]
    result = d_out[lookback:]
    _window_sum(fast_k, d_period, result, ws)
    result /= d_period
    return k_out, d_out


def _obv_core(ws: _Workspace, close: FloatArray, volume: FloatArray) -> tuple[FloatArray]:
    n = close.size
    out = np.empty(n)
    if n == 0:
        return (out,)
    out[0] = volume[0]
    np.subtract(close[1:], close[:-1], out=out[1:])
    np.sign(out[1:], out=out[1:])
    out[1:] *= volume[1:]
    # A sequential running sum adds the same terms in the same order as TA-Lib: bit-identical.
    np.cumsum(out, out=out)
    return (out,)


def _roc_core(ws: _Workspace, x: FloatArray, period: int) -> tuple[FloatArray]:
    n = x.size
    out = _nan_output(n, period)
    if n <= period:
        return (out,)
    previous = x[:-period]
    result = out[period:]
    with np.errstate(divide="ignore", invalid="ignore"):
        np.divide(x[period:], previous, out=result)
    result -= 1.0
    result *= 100.0
    zero = previous == 0.0  # TA-Lib reports 0 rather than dividing by a zero price
    if zero.any():
        result[zero] = 0.0
    return (out,)


def _williams_r_core(
    ws: _Workspace, high: FloatArray, low: FloatArray, close: FloatArray, period: int
) -> tuple[FloatArray]:
    n = close.size
    out = _nan_output(n, period - 1)
    if n < period:
        return (out,)
    count = n - period + 1
    highest, lowest = ws.take(count), ws.take(count)
    _window_extreme(high, period, np.maximum, highest, ws)
    _window_extreme(low, period, np.minimum, lowest, ws)
    scale = np.subtract(highest, lowest, out=lowest)
    scale /= -100.0
    result = out[period - 1 :]
    np.subtract(highest, close[period - 1 :], out=result)
    with np.errstate(divide="ignore", invalid="ignore"):
        result /= scale
    flat = scale == 0.0
    if flat.any():
        result[flat] = 0.0
    return (out,)


def _typical_price(ws: _Workspace, high: FloatArray, low: FloatArray, close: FloatArray) -> FloatArray:
    typical = ws.take(close.size)
    np.add(high, low, out=typical)
    typical += close
    typical /= 3.0
    return typical


def _cci_core(
    ws: _Workspace, high: FloatArray, low: FloatArray, close: FloatArray, period: int
) -> tuple[FloatArray]:
    n = close.size
    out = _nan_output(n, period - 1)
    if n < period:
        return (out,)
    typical = _typical_price(ws, high, low, close)
    count = n - period + 1
    mean = ws.take(count)
    _window_sum(typical, period, mean, ws)
    mean /= period
    # The mean absolute deviation around each window's own mean has no running form: one pass per
    # lag (a loop over the window, not over bars; TA-Lib's CCI is O(n * period) as well).
    deviation, scratch = ws.take(count), ws.take(count)
    np.subtract(typical[:count], mean, out=deviation)
    np.abs(deviation, out=deviation)
    for lag in range(1, period):
        np.subtract(typical[lag : lag + count], mean, out=scratch)
        np.abs(scratch, out=scratch)
        deviation += scratch
    deviation /= period
    deviation *= 0.015
    result = out[period - 1 :]
    np.subtract(typical[period - 1 :], mean, out=result)
    zero = (result == 0.0) | (deviation == 0.0)  # TA-Lib reports 0 for either
    with np.errstate(divide="ignore", invalid="ignore"):
        result /= deviation
    if zero.any():
        result[zero] = 0.0
    return (out,)


def _adx_core(
    ws: _Workspace, high: FloatArray, low: FloatArray, close: FloatArray, period: int
) -> tuple[FloatArray]:
    n = close.size
    lookback = 2 * period - 1
    out, region = _output_region(n, lookback + 1)
    out[lookback : lookback + 1] = np.nan
    if n <= lookback:
        return (out,)
    # Per-bar values for bars 1..n-1, each buffer with room to pad the recursion input that starts
    # at bar `period`.
    length = n - period
    size = period - 1 + _blocks(length)
    up, down, tr = ws.take(size), ws.take(size), ws.take(size)
    np.subtract(high[1:], high[:-1], out=up[: n - 1])
    np.subtract(low[:-1], low[1:], out=down[: n - 1])
    _true_range(high, low, close, tr[: n - 1], ws.take(n - 1))
    # Directional movement: only the larger of the two moves counts, and only if positive.
    floor = ws.take(n - 1)
    bigger_up = np.greater(up[: n - 1], np.maximum(down[: n - 1], 0.0, out=floor))
    bigger_down = np.greater(down[: n - 1], np.maximum(up[: n - 1], 0.0, out=floor))
    np.multiply(up[: n - 1], bigger_up, out=up[: n - 1])
    np.multiply(down[: n - 1], bigger_down, out=down[: n - 1])

    # Wilder *sums*, not averages: the first is the plain sum over bars 1..period-1, then
    # S(t) = S(t-1) - S(t-1)/period + v(t) from bar `period` on.
    a = 1.0 - 1.0 / period
    sums = []
    for values in (up, down, tr):
        seed = values[: period - 1].sum()
        u = values[period - 1 :]
        u[length:] = 0.0
        smoothed = ws.take(u.size)
        _ar1(ws, u, length, a, seed, smoothed)
        sums.append(smoothed[:length])
    plus_sum, minus_sum, tr_sum = sums

    minus_di, plus_di, di_sum = (buf[:length] for buf in (up, down, tr))  # inputs consumed: reuse
    with np.errstate(divide="ignore", invalid="ignore"):
        np.divide(minus_sum, tr_sum, out=minus_di)
        minus_di *= 100.0
        np.divide(plus_sum, tr_sum, out=plus_di)
        plus_di *= 100.0
        np.add(minus_di, plus_di, out=di_sum)
        dx = np.subtract(minus_di, plus_di, out=minus_di)
        np.abs(dx, out=dx)
        dx /= di_sum
        dx *= 100.0
    # TA-Lib skips a bar's DX (the ADX keeps its value) when the range or the DI sum is ~zero.
    skip = (np.abs(tr_sum) < _TA_EPSILON) | (np.abs(di_sum) < _TA_EPSILON)
    adx0 = np.where(skip[:period], 0.0, dx[:period]).sum() / period
    out[lookback] = adx0
    rest = length - period  # bars 2*period..n-1
    rest_dx, rest_skip = dx[period:], skip[period:]
    a = (period - 1) / period
    if not rest_skip.any():
        u = _scratch(ws, rest)
        np.copyto(u[:rest], rest_dx)
        _ar1(ws, u, rest, a, adx0, region, scale=1.0 / period)
        return (out,)
    # Rare (flat markets): smooth only the bars that update, then hold the value over skipped ones.
    used = ~rest_skip
    count = int(used.sum())
    u = _scratch(ws, count)
    u[:count] = rest_dx[used]
    values = np.empty(u.size + 1)
    values[0] = adx0
    _ar1(ws, u, count, a, adx0, values[1:], scale=1.0 / period)
    out[lookback + 1 :] = values[np.cumsum(used)]
    return (out,)


def _donchian_core(ws: _Workspace, high: FloatArray, low: FloatArray, period: int) -> tuple[FloatArray, ...]:
    n = high.size
    upper, lower = _nan_output(n, period - 1), _nan_output(n, period - 1)
    if n >= period:
        _window_extreme(high, period, np.maximum, upper[period - 1 :], ws)
        _window_extreme(low, period, np.minimum, lower[period - 1 :], ws)
    return upper, lower


def _vwap_core(
    ws: _Workspace, high: FloatArray, low: FloatArray, close: FloatArray, volume: FloatArray, period: int
) -> tuple[FloatArray]:
    n = close.size
    out = _nan_output(n, period - 1)
    if n < period:
        return (out,)
    value = _typical_price(ws, high, low, close)
    value *= volume
    result = out[period - 1 :]
    _window_sum(value, period, result, ws)
    total_volume = ws.take(result.size)
    _window_sum(volume, period, total_volume, ws)
    with np.errstate(divide="ignore", invalid="ignore"):
        result /= total_volume  # 0/0 = NaN where the window traded nothing
    return (out,)


# --------------------------------------------------------------------------------------------------
# Public indicator functions
# --------------------------------------------------------------------------------------------------


def sma(x: ArrayLike, period: int) -> FloatArray:
    """Simple moving average (TA-Lib SMA): mean of the last ``period`` values; warm-up period - 1."""
    p = _period("period", period, 1)
    return _run(_sma_core, _inputs(x=x), p)[0]


def ema(x: ArrayLike, period: int) -> FloatArray:
    """Exponential moving average (TA-Lib EMA): k = 2/(period+1), seeded at bar period-1 with the SMA
    of the first ``period`` values; warm-up period - 1."""
    p = _period("period", period, 1)
    return _run(_ema_core, _inputs(x=x), p)[0]


def wma(x: ArrayLike, period: int) -> FloatArray:
    """Linearly weighted moving average (TA-Lib WMA): weights 1..period, newest heaviest; warm-up
    period - 1."""
    p = _period("period", period, 1)
    return _run(_wma_core, _inputs(x=x), p)[0]


def rsi(close: ArrayLike, period: int = 14) -> FloatArray:
    """Relative strength index (TA-Lib RSI): Wilder-smoothed gains/losses seeded with their simple
    mean over the first ``period`` changes, 100*gain/(gain+loss), 0 when nothing moved; warm-up period."""
    p = _period("period", period, 2)
    return _run(_rsi_core, _inputs(close=close), p)[0]


def macd(
    close: ArrayLike, fast: int = 12, slow: int = 26, signal: int = 9
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """MACD (TA-Lib MACD) -> (macd, signal, hist): EMA(fast) - EMA(slow), both started at bar slow-1
    (fast EMA seeded with the mean of its last ``fast`` bars there), signal = EMA(signal) of the line
    seeded with its SMA; all three NaN for the first slow+signal-2 bars. Requires fast <= slow
    (TA-Lib silently swaps them; a reversed pair is rejected here instead)."""
    f = _period("fast", fast, 2)
    s = _period("slow", slow, 2)
    g = _period("signal", signal, 1)
    if f > s:
        raise ValueError(f"fast must be <= slow, got fast={f}, slow={s}")
    m, sig, hist = _run(_macd_core, _inputs(close=close), f, s, g)
    return m, sig, hist


def bollinger(
    close: ArrayLike, period: int = 20, k: float = 2.0
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Bollinger bands (TA-Lib BBANDS with SMA) -> (upper, middle, lower): SMA +/- k population
    standard deviations of the last ``period`` closes; warm-up period - 1."""
    p = _period("period", period, 2)
    if isinstance(k, bool) or not isinstance(k, int | float | np.integer | np.floating):
        raise ValueError(f"k must be a number, got {k!r}")
    if not (np.isfinite(k) and k >= 0):
        raise ValueError(f"k must be finite and >= 0, got {k}")
    upper, middle, lower = _run(_bollinger_core, _inputs(close=close), p, float(k))
    return upper, middle, lower


def atr(high: ArrayLike, low: ArrayLike, close: ArrayLike, period: int = 14) -> FloatArray:
    """Average true range (TA-Lib ATR): Wilder smoothing of the true range, seeded with the mean true
    range of bars 1..period; warm-up period."""
    p = _period("period", period, 1)
    return _run(_atr_core, _inputs(high=high, low=low, close=close), p)[0]


def stochastic(
    high: ArrayLike, low: ArrayLike, close: ArrayLike, k_period: int = 14, d_period: int = 3
) -> tuple[FloatArray, FloatArray]:
    """Fast stochastic (TA-Lib STOCHF(k_period, d_period, SMA)) -> (k, d): k = 100*(close - lowest
    low)/(highest high - lowest low) over ``k_period`` bars (0 for a flat window), d = SMA(k, d_period);
    both NaN for the first k_period+d_period-2 bars (TA-Lib aligns the outputs)."""
    kp = _period("k_period", k_period, 1)
    dp = _period("d_period", d_period, 1)
    k, d = _run(_stochastic_core, _inputs(high=high, low=low, close=close), kp, dp)
    return k, d


def obv(close: ArrayLike, volume: ArrayLike) -> FloatArray:
    """On-balance volume (TA-Lib OBV): starts at the first bar's volume, then adds the volume on up
    closes and subtracts it on down closes; no warm-up."""
    return _run(_obv_core, _inputs(close=close, volume=volume))[0]


def roc(x: ArrayLike, period: int) -> FloatArray:
    """Rate of change in percent (TA-Lib ROC): 100*(x/x[t-period] - 1), 0 when x[t-period] is 0;
    warm-up period."""
    p = _period("period", period, 1)
    return _run(_roc_core, _inputs(x=x), p)[0]


def williams_r(high: ArrayLike, low: ArrayLike, close: ArrayLike, period: int = 14) -> FloatArray:
    """Williams %R (TA-Lib WILLR): -100*(highest high - close)/(highest high - lowest low) over
    ``period`` bars, 0 for a flat window; warm-up period - 1."""
    p = _period("period", period, 2)
    return _run(_williams_r_core, _inputs(high=high, low=low, close=close), p)[0]


def cci(high: ArrayLike, low: ArrayLike, close: ArrayLike, period: int = 20) -> FloatArray:
    """Commodity channel index (TA-Lib CCI): (typical - SMA(typical)) / (0.015 * mean absolute
    deviation), typical = (high+low+close)/3, 0 when either is 0; warm-up period - 1."""
    p = _period("period", period, 2)
    return _run(_cci_core, _inputs(high=high, low=low, close=close), p)[0]


def adx(high: ArrayLike, low: ArrayLike, close: ArrayLike, period: int = 14) -> FloatArray:
    """Average directional index (TA-Lib ADX): Wilder sums of +DM/-DM/TR (first over bars 1..period-1),
    DX from bar ``period``, ADX = mean of the first ``period`` DX then Wilder-smoothed; warm-up
    2*period - 1."""
    p = _period("period", period, 2)
    return _run(_adx_core, _inputs(high=high, low=low, close=close), p)[0]


def donchian(high: ArrayLike, low: ArrayLike, period: int) -> tuple[FloatArray, FloatArray]:
    """Donchian channel -> (upper, lower): highest high and lowest low of the last ``period`` bars,
    current bar included (TA-Lib MAX(high) / MIN(low)); warm-up period - 1."""
    p = _period("period", period, 1)
    upper, lower = _run(_donchian_core, _inputs(high=high, low=low), p)
    return upper, lower


def vwap(high: ArrayLike, low: ArrayLike, close: ArrayLike, volume: ArrayLike, period: int) -> FloatArray:
    """Rolling volume-weighted average price: sum(typical*volume)/sum(volume) over the last ``period``
    bars, typical = (high+low+close)/3 (TA-Lib SUM(TYPPRICE*volume)/SUM(volume)); NaN where the
    window's volume is 0; warm-up period - 1."""
    p = _period("period", period, 1)
    return _run(_vwap_core, _inputs(high=high, low=low, close=close, volume=volume), p)[0]


# --------------------------------------------------------------------------------------------------
# Registry for the strategy engine
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ParamSpec:
    """One indicator parameter: its type (int or float), default and inclusive range."""

    name: str
    kind: type
    default: int | float
    minimum: int | float
    maximum: int | float

    def coerce(self, value: Any) -> int | float:
        """Validate ``value`` (e.g. from user JSON) and return it as ``kind``; ValueError otherwise."""
        if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
            raise ValueError(f"parameter {self.name!r} must be a number, got {value!r}")
        if self.kind is int:
            if not float(value).is_integer():
                raise ValueError(f"parameter {self.name!r} must be an integer, got {value!r}")
            value = int(value)
        else:
            value = float(value)
            if not np.isfinite(value):
                raise ValueError(f"parameter {self.name!r} must be finite, got {value!r}")
        if not self.minimum <= value <= self.maximum:
            raise ValueError(
                f"parameter {self.name!r} must be between {self.minimum} and {self.maximum}, got {value}"
            )
        return value


@dataclass(frozen=True)
class IndicatorSpec:
    """What the strategy engine needs to know about an indicator to validate and run it.

    ``inputs`` are candle column names passed positionally to ``func``; ``params`` its keyword
    parameters; ``outputs`` names the returned arrays (single-output indicators: ``("value",)``).
    """

    name: str
    func: Callable[..., Any]
    inputs: tuple[str, ...]
    params: tuple[ParamSpec, ...]
    outputs: tuple[str, ...]
    lookback: Callable[[Mapping[str, Any]], int] = field(repr=False)
    check: Callable[[Mapping[str, Any]], None] | None = field(default=None, repr=False)

    def resolve_params(self, params: Mapping[str, Any] | None = None) -> dict[str, int | float]:
        """Defaults filled in, every value checked against its ParamSpec; ValueError on any problem."""
        given = dict(params or {})
        known = {spec.name for spec in self.params}
        unknown = sorted(set(given) - known)
        if unknown:
            raise ValueError(f"{self.name}: unknown parameter(s) {unknown}; expected {sorted(known)}")
        resolved = {spec.name: spec.coerce(given.get(spec.name, spec.default)) for spec in self.params}
        if self.check is not None:
            self.check(resolved)
        return resolved

    def warmup(self, params: Mapping[str, Any] | None = None) -> int:
        """Number of leading NaN bars for NaN-free input (TA-Lib's lookback)."""
        return self.lookback(self.resolve_params(params))


def _period_param(name: str, default: int, minimum: int) -> ParamSpec:
    return ParamSpec(name, int, default, minimum, _MAX_PERIOD)


def _check_macd(params: Mapping[str, Any]) -> None:
    if params["fast"] > params["slow"]:
        raise ValueError(f"macd: fast must be <= slow, got fast={params['fast']}, slow={params['slow']}")


_HLC = ("high", "low", "close")
_VALUE = ("value",)


def _one_period(default: int, minimum: int) -> tuple[ParamSpec, ...]:
    return (_period_param("period", default, minimum),)


INDICATORS: dict[str, IndicatorSpec] = {
    spec.name: spec
    for spec in (
        IndicatorSpec("sma", sma, ("close",), _one_period(20, 1), _VALUE, lookback=lambda p: p["period"] - 1),
        IndicatorSpec("ema", ema, ("close",), _one_period(20, 1), _VALUE, lookback=lambda p: p["period"] - 1),
        IndicatorSpec("wma", wma, ("close",), _one_period(20, 1), _VALUE, lookback=lambda p: p["period"] - 1),
        IndicatorSpec("rsi", rsi, ("close",), _one_period(14, 2), _VALUE, lookback=lambda p: p["period"]),
        IndicatorSpec(
            "macd",
            macd,
            ("close",),
            (_period_param("fast", 12, 2), _period_param("slow", 26, 2), _period_param("signal", 9, 1)),
            ("macd", "signal", "hist"),
            lookback=lambda p: p["slow"] + p["signal"] - 2,
            check=_check_macd,
        ),
        IndicatorSpec(
            "bollinger",
            bollinger,
            ("close",),
            (_period_param("period", 20, 2), ParamSpec("k", float, 2.0, 0.0, 10.0)),
            ("upper", "middle", "lower"),
            lookback=lambda p: p["period"] - 1,
        ),
        IndicatorSpec("atr", atr, _HLC, _one_period(14, 1), _VALUE, lookback=lambda p: p["period"]),
        IndicatorSpec(
            "stochastic",
            stochastic,
            _HLC,
            (_period_param("k_period", 14, 1), _period_param("d_period", 3, 1)),
            ("k", "d"),
            lookback=lambda p: p["k_period"] + p["d_period"] - 2,
        ),
        IndicatorSpec("obv", obv, ("close", "volume"), (), _VALUE, lookback=lambda p: 0),
        IndicatorSpec("roc", roc, ("close",), _one_period(10, 1), _VALUE, lookback=lambda p: p["period"]),
        IndicatorSpec(
            "williams_r", williams_r, _HLC, _one_period(14, 2), _VALUE, lookback=lambda p: p["period"] - 1
        ),
        IndicatorSpec("cci", cci, _HLC, _one_period(20, 2), _VALUE, lookback=lambda p: p["period"] - 1),
        IndicatorSpec("adx", adx, _HLC, _one_period(14, 2), _VALUE, lookback=lambda p: 2 * p["period"] - 1),
        IndicatorSpec(
            "donchian",
            donchian,
            ("high", "low"),
            _one_period(20, 1),
            ("upper", "lower"),
            lookback=lambda p: p["period"] - 1,
        ),
        IndicatorSpec(
            "vwap", vwap, (*_HLC, "volume"), _one_period(20, 1), _VALUE, lookback=lambda p: p["period"] - 1
        ),
    )
}


def compute(
    name: str, candles: Mapping[str, ArrayLike], params: Mapping[str, Any] | None = None
) -> tuple[FloatArray, ...]:
    """Run registry indicator ``name`` on ``candles`` (column name -> values) with ``params``
    (defaults for missing ones); always returns a tuple, one array per ``spec.outputs``."""
    spec = INDICATORS.get(name)
    if spec is None:
        raise ValueError(f"unknown indicator {name!r}; known: {sorted(INDICATORS)}")
    resolved = spec.resolve_params(params)
    missing = [column for column in spec.inputs if column not in candles]
    if missing:
        raise ValueError(f"{name} needs candle column(s) {missing}")
    result = spec.func(*(candles[column] for column in spec.inputs), **resolved)
    return result if isinstance(result, tuple) else (result,)
