"""Vectorised kernels the indicator cores are built from: output layout, rolling sums and extremes,
single-threaded BLAS products, the blockwise first-order recursion (EMA/Wilder filters), true range.

Rolling sums/extremes use doubling over power-of-two windows (log2(period) whole-array operations,
pairwise-accurate: no cumulative-sum cancellation); the recursive filters run blockwise as small
matrix products (see ``ar1``). Scratch comes from the caller's ``Workspace``.
"""

from __future__ import annotations

import functools

import numpy as np

from ml_engine.indicators.inputs import FloatArray
from ml_engine.indicators.workspace import Workspace

# Bars per block of the recursive-filter kernel (see ar1): the block product costs 2*BLOCK flops
# per bar and the chain of block-end values shrinks BLOCK-fold per level; 8 measured fastest.
BLOCK = 8


# --------------------------------------------------------------------------------------------------
# Output layout
# --------------------------------------------------------------------------------------------------


def nan_output(n: int, head: int) -> FloatArray:
    out = np.empty(n)
    out[: min(head, n)] = np.nan
    return out


def to_blocks(length: int) -> int:
    """``length`` rounded up to whole ``BLOCK``s."""
    return -(-length // BLOCK) * BLOCK


def output_region(n: int, head: int) -> tuple[FloatArray, FloatArray]:
    """An n-bar output, NaN for the first ``head`` bars, and the region from bar ``head`` on padded
    to whole blocks (the padding lies past the returned view) for ``ar1`` to write into."""
    buf = np.empty(head + to_blocks(n - head))
    buf[:head] = np.nan
    return buf[:n], buf[head:]


def ar1_input(ws: Workspace, length: int) -> FloatArray:
    """An ``ar1`` input buffer: ``length`` values to fill, zero padding up to whole blocks."""
    buf = ws.take(to_blocks(length))
    buf[length:] = 0.0
    return buf


# --------------------------------------------------------------------------------------------------
# Rolling windows, BLAS products, recursive filters
# --------------------------------------------------------------------------------------------------


# Outputs per block of `window_sum` and `window_extreme`. Each doubling is a pass over the input, so on a
# million bars a slow average makes ten passes over 8 MB arrays: memory traffic, which two workers on two
# cores share. A block keeps a run's few arrays (1 MB each) in cache. Measured on the 2-core VM for sums
# (16 slow averages of a million bars): 103-112 ms unblocked, 138-147 ms with two processes at once; 65-68
# and 70-73 ms in blocks of 131,072; smaller blocks pay Python's per-call cost more often, larger ones
# leave the cache. For a rolling maximum of a million bars, one process: 1.75 ms unblocked, 1.50 ms in
# blocks at period 14, 2.83 and 2.22 ms at period 100.
WINDOW_BLOCK = 131_072


def window_sum(x: FloatArray, period: int, out: FloatArray, ws: Workspace) -> None:
    """``out[j] = x[j] + ... + x[j + period - 1]`` for every j < out.size (= x.size - period + 1).

    Built from power-of-two partial sums (one add per doubling plus one per further set bit of
    ``period``), so each sum is pairwise-accurate, never the difference of two large running totals.
    Every add is elementwise, so running the outputs in blocks of `WINDOW_BLOCK` gives each output the same
    additions in the same order: the same bits as one whole-array run.
    """
    count = out.size
    if count <= 0:
        return
    if count <= WINDOW_BLOCK or np.may_share_memory(x, out):  # an output over its input: one run, in order
        _window_sum_run(x, period, out, ws)
        return
    for start in range(0, count, WINDOW_BLOCK):
        stop = min(start + WINDOW_BLOCK, count)
        _window_sum_run(x[start : stop + period - 1], period, out[start:stop], ws)


def _window_sum_run(x: FloatArray, period: int, out: FloatArray, ws: Workspace) -> None:
    count = out.size
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


def window_extreme(x: FloatArray, period: int, op: np.ufunc, out: FloatArray, ws: Workspace) -> None:
    """Rolling ``op`` (np.maximum/np.minimum) over ``period`` values, ``out[j]`` covering x[j:j+period].

    Sparse-table doubling: log2(period) whole-array ops, then two overlapping power-of-two windows
    cover the period exactly (overlap is harmless for max/min). Long inputs run in blocks of
    `WINDOW_BLOCK` outputs, as `window_sum` does; a maximum or minimum is exact, so blocks give the same
    values as one run.
    """
    count = out.size
    if count <= 0:
        return
    if count <= WINDOW_BLOCK or np.may_share_memory(x, out):  # an output over its input: one run, in order
        _window_extreme_run(x, period, op, out, ws)
        return
    for start in range(0, count, WINDOW_BLOCK):
        stop = min(start + WINDOW_BLOCK, count)
        _window_extreme_run(x[start : stop + period - 1], period, op, out[start:stop], ws)


def _window_extreme_run(x: FloatArray, period: int, op: np.ufunc, out: FloatArray, ws: Workspace) -> None:
    count = out.size
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
    return max(32, int(work) // 32 * 32)


def matmul(a: FloatArray, b: FloatArray, out: FloatArray) -> None:
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


_LAG = np.arange(BLOCK)[None, :] - np.arange(BLOCK)[:, None]  # j - i


@functools.lru_cache(maxsize=256)
def ar1_matrix(a: float) -> FloatArray:
    """``M[i, j] = a**(j - i)`` for j >= i, else 0: the response at block bar j to input at bar i.

    Cached (read-only): the same few coefficients recur on every call."""
    mat = np.where(_LAG >= 0, a ** np.maximum(_LAG, 0), 0.0)
    mat.flags.writeable = False
    return mat


def _ar1_blocks(ws: Workspace, u: FloatArray, a: float, scale: float, y0: float, out: FloatArray) -> bool:
    """Core of ``ar1``; returns False, with ``u`` untouched, if any input is not finite."""
    m = u.size // BLOCK
    mat = ar1_matrix(a) * scale
    blocks = u.reshape(m, BLOCK)
    if m > 1:
        # Each block's own end value (zero start), then the chain of true block ends, which is the
        # same recursion with coefficient a**BLOCK on BLOCK times fewer values.
        ends = ws.take(to_blocks(m - 1))
        ends[m - 1 :] = 0.0
        matmul(blocks[:-1], np.ascontiguousarray(mat[:, -1]), ends[: m - 1])
        carry = ws.take(ends.size)
        if not _ar1_blocks(ws, ends, a**BLOCK, 1.0, y0, carry) or not np.isfinite(blocks[-1]).all():
            return False
        # Folding the carry into each block's first input makes one product give the final values.
        carry *= a / scale
        blocks[1:, 0] += carry[: m - 1]
    elif not np.isfinite(blocks).all():
        return False
    blocks[0, 0] += (a / scale) * y0
    matmul(blocks, mat, out.reshape(m, BLOCK))
    return True


def ar1(
    ws: Workspace, u: FloatArray, length: int, a: float, y0: float, out: FloatArray, scale: float = 1.0
) -> None:
    """First-order recursion ``y[t] = a * y[t-1] + scale * u[t]`` with ``y[-1] = y0``, into ``out``.

    ``u`` comes from ``ar1_input(ws, length)`` and is overwritten; ``out`` has ``u.size`` elements.
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


def ema_difference(
    ws: Workspace, x: FloatArray, fast: tuple[float, float], slow: tuple[float, float], out: FloatArray
) -> bool:
    """``out[t] = fast_ema[t] - slow_ema[t]`` on ``x``, each given as ``(k, value before x[0])``.

    Both EMAs are linear in ``x``, so one matrix product of the (uncopied) blocks of ``x`` with the
    difference of the two block matrices gives the line, plus the two values carried into each
    block times their decays. ``out`` has ``to_blocks(x.size)`` elements. Returns False if an input
    is not finite.
    """
    length = x.size
    full = length // BLOCK
    terms = [(1.0 - k, k, y0) for k, y0 in (fast, slow)]
    mats = [ar1_matrix(a) * k for a, k, _ in terms]
    rows = x[: full * BLOCK].reshape(full, BLOCK)
    tail = np.zeros((1, BLOCK))
    tail[0, : length - full * BLOCK] = x[full * BLOCK :]
    if not (np.isfinite(tail).all() and all(np.isfinite(y0) for _, _, y0 in terms)):
        return False
    # Values carried into each block (the first from the seeds), one column per EMA.
    carried = np.empty((full + 1, 2))
    mark = ws.mark()
    for column, ((a, _, y0), mat) in enumerate(zip(terms, mats, strict=True)):
        carried[0, column] = y0
        if full:
            ends = ar1_input(ws, full)
            matmul(rows, np.ascontiguousarray(mat[:, -1]), ends[:full])
            chain = ws.take(ends.size)
            ar1(ws, ends, full, a**BLOCK, y0, chain)
            carried[1:, column] = chain[:full]
    ws.release(mark)
    if not np.isfinite(carried[-1]).all():
        return False
    decays = np.stack([terms[0][0] ** np.arange(1, BLOCK + 1), -(terms[1][0] ** np.arange(1, BLOCK + 1))])
    line = mats[0] - mats[1]
    result = out.reshape(-1, BLOCK)
    if full:
        matmul(rows, line, result[:full])
        correction = ws.take(full * BLOCK).reshape(full, BLOCK)
        matmul(carried[:full], decays, correction)
        result[:full] += correction
    if full < result.shape[0]:
        last = np.empty((1, BLOCK))
        matmul(tail, line, result[full:])
        matmul(carried[full:], decays, last)
        result[full:] += last
    return True


def true_range(
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
