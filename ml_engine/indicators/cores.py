"""Indicator cores: a ``Workspace`` and input arrays without leading NaNs in, full-length outputs out.

One ``*_core`` per indicator, in the order of the public functions (``api``), each written in terms
of the kernels; the TA-Lib conventions they follow are in the package docstring.
"""

from __future__ import annotations

import numpy as np

from ml_engine.indicators.inputs import FloatArray
from ml_engine.indicators.kernels import (
    ar1,
    ar1_input,
    ema_difference,
    matmul,
    nan_output,
    output_region,
    to_blocks,
    true_range,
    window_extreme,
    window_sum,
)
from ml_engine.indicators.workspace import Workspace

# TA-Lib 0.8 treats |v| < 1e-14 as zero (TA_IS_ZERO) in RSI and ADX; mirrored so flat markets match.
TA_EPSILON = 1e-14

# Bars per pass where an indicator runs in chunks: a chunk's inputs, scratch and output (~2 MB
# each) stay in cache from the elementwise steps through the matrix products.
CHUNK = 1 << 18


def sma_core(ws: Workspace, x: FloatArray, period: int) -> tuple[FloatArray]:
    n = x.size
    out = nan_output(n, period - 1)
    if n >= period:
        result = out[period - 1 :]
        window_sum(x, period, result, ws)
        result /= period
    return (out,)


def _ema_into(ws: Workspace, x: FloatArray, period: int, seed: float, out: FloatArray) -> None:
    """EMA of ``x`` continuing from ``seed`` (the value one bar before x[0]) into ``out``, which has
    ``to_blocks(x.size)`` elements."""
    k = 2.0 / (period + 1)
    buffer = ws.take(to_blocks(min(CHUNK, x.size)))
    for start in range(0, x.size, CHUNK):  # chunks of bars, each fully vectorised
        size = min(CHUNK, x.size - start)
        u = buffer[: to_blocks(size)]
        np.copyto(u[:size], x[start : start + size])
        u[size:] = 0.0
        chunk_out = out[start : start + u.size]
        ar1(ws, u, size, 1.0 - k, seed, chunk_out, scale=k)
        seed = chunk_out[size - 1]


def ema_core(ws: Workspace, x: FloatArray, period: int) -> tuple[FloatArray]:
    n = x.size
    if n < period:
        return (np.full(n, np.nan),)
    out, region = output_region(n, period)
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
    matmul(pairs_from_odd, weights, result[1 : 2 * odd : 2])
    matmul(pairs_from_even, weights, result[2 : 2 * even + 1 : 2])
    if rest:
        pair = np.zeros((1, 2 * period))
        pair[0, : period + rest] = x[(full - 1) * period :]
        matmul(pair, weights, result[full:])
    return out[:n]


def wma_core(ws: Workspace, x: FloatArray, period: int) -> tuple[FloatArray]:
    n = x.size
    if n < period:
        return (np.full(n, np.nan),)
    if period == 1:
        return (x.copy(),)
    if period <= _WMA_DIRECT_MAX:
        return (_wma_direct(x, period),)
    out, region = output_region(n, period)
    divider = period * (period + 1) / 2
    numerator = float(x[:period] @ np.arange(1.0, period + 1))
    out[period - 1] = numerator / divider
    # TA-Lib's update: numerator(t) = numerator(t-1) + period*x[t] - sum(x[t-period:t]). With that
    # window sum exact (pairwise) the increments are small, period times a deviation from the mean,
    # so their running total stays exact to rounding; weighted cumulative sums, whose terms grow
    # with the bar index, would not.
    length = n - period
    u = ar1_input(ws, length)
    window = ws.take(length)
    window_sum(x[:-1], period, window, ws)
    np.multiply(x[period:], period, out=u[:length])
    u[:length] -= window
    ar1(ws, u, length, 1.0, numerator / divider, region, scale=1.0 / divider)
    return (out,)


def rsi_core(ws: Workspace, x: FloatArray, period: int) -> tuple[FloatArray]:
    n = x.size
    out = nan_output(n, period)
    if n <= period:
        return (out,)
    first = np.diff(x[: period + 1])
    gain = np.maximum(first, 0.0).sum() / period
    loss = -np.minimum(first, 0.0).sum() / period
    total = gain + loss
    out[period] = 0.0 if abs(total) < TA_EPSILON else 100.0 * (gain / total)
    a, scale = (period - 1) / period, 0.5 / period
    size = min(CHUNK, n)
    change, gains, losses = ws.take(size), ws.take(to_blocks(size)), ws.take(to_blocks(size))
    avg_gain, avg_loss = ws.take(to_blocks(size)), ws.take(to_blocks(size))
    for start in range(period + 1, n, CHUNK):  # chunks of bars, each fully vectorised
        stop = min(start + CHUNK, n)
        size = stop - start
        d = np.subtract(x[start:stop], x[start - 1 : stop - 1], out=change[:size])
        # 2*max(d, 0) = d + |d| and 2*max(-d, 0) = |d| - d, exactly; the 1/2 goes into the recursion.
        moves = np.abs(d, out=losses[:size])
        np.add(d, moves, out=gains[:size])
        np.subtract(moves, d, out=losses[:size])
        padded = to_blocks(size)
        gains[size:padded] = 0.0
        losses[size:padded] = 0.0
        ar1(ws, gains[:padded], size, a, gain, avg_gain[:padded], scale=scale)
        ar1(ws, losses[:padded], size, a, loss, avg_loss[:padded], scale=scale)
        gain, loss = avg_gain[size - 1], avg_loss[size - 1]
        totals = np.add(avg_gain[:size], avg_loss[:size], out=change[:size])
        result = out[start:stop]
        with np.errstate(divide="ignore", invalid="ignore"):
            np.divide(avg_gain[:size], totals, out=result)
        result *= 100.0
        flat = totals < TA_EPSILON  # no move at all over the smoothing horizon: TA-Lib reports 0
        if flat.any():
            result[flat] = 0.0
    return (out,)


def macd_core(ws: Workspace, x: FloatArray, fast: int, slow: int, signal: int) -> tuple[FloatArray, ...]:
    n = x.size
    lookback = slow - 1 + signal - 1
    if n <= lookback:
        return tuple(np.full(n, np.nan) for _ in range(3))
    # TA-Lib starts both EMAs at bar slow-1: the slow one seeded with the mean of bars 0..slow-1,
    # the fast one with the mean of its own last `fast` bars, slow-fast..slow-1.
    seed_slow = x[:slow].sum() / slow
    seed_fast = x[slow - fast : slow].sum() / fast
    # The whole MACD line from bar slow-1 on, in the first output until the signal is seeded.
    macd_out, line_rest = output_region(n, slow)
    macd_out[slow - 1] = seed_fast - seed_slow
    k_fast, k_slow = 2.0 / (fast + 1), 2.0 / (slow + 1)
    if fast == slow:
        # The same EMA twice: exactly 0 as in TA-Lib (the product would leave ~1 ulp), NaN from a
        # bad input on.
        finite = np.isfinite(x)
        line_rest[:] = 0.0
        if not finite.all():
            line_rest[max(int(np.argmin(finite)), slow) - slow :] = np.nan
    elif not ema_difference(ws, x[slow:], (k_fast, seed_fast), (k_slow, seed_slow), line_rest):
        # A NaN/inf input (rare): the EMAs, hence all three outputs, are NaN from there on.
        bad = slow + int(np.argmin(np.isfinite(x[slow:])))
        outputs = macd_core(ws, x[:bad], fast, slow, signal) if bad > lookback else None
        result = tuple(np.full(n, np.nan) for _ in range(3))
        for full_out, part in zip(result, outputs or (), strict=False):
            full_out[:bad] = part
        return result
    line = macd_out[slow - 1 :]

    signal_out, region = output_region(n, lookback + 1)
    seed_signal = line[:signal].sum() / signal
    signal_out[lookback] = seed_signal
    _ema_into(ws, line[signal:], signal, seed_signal, region)
    macd_out[:lookback] = np.nan
    hist = nan_output(n, lookback)
    np.subtract(macd_out[lookback:], signal_out[lookback:], out=hist[lookback:])
    return macd_out, signal_out, hist


def bollinger_core(ws: Workspace, x: FloatArray, period: int, k: float) -> tuple[FloatArray, ...]:
    n = x.size
    upper, middle, lower = (nan_output(n, period - 1) for _ in range(3))
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
    window_sum(deviation, period, mean, ws)
    window_sum(squares, period, variance, ws)
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


def atr_core(
    ws: Workspace, high: FloatArray, low: FloatArray, close: FloatArray, period: int
) -> tuple[FloatArray]:
    n = close.size
    if n <= period:
        return (np.full(n, np.nan),)
    out, region = output_region(n, period + 1)
    seed_tr = ws.take(period)
    true_range(high[: period + 1], low[: period + 1], close[: period + 1], seed_tr, ws.take(period))
    atr_value = seed_tr.sum() / period
    out[period] = atr_value
    a = (period - 1) / period
    tr, tmp = ws.take(to_blocks(min(CHUNK, n))), ws.take(CHUNK)
    for start in range(period + 1, n, CHUNK):  # chunks of bars, each fully vectorised
        stop = min(start + CHUNK, n)
        size = stop - start
        u = tr[: to_blocks(size)]
        bars = slice(start - 1, stop)
        true_range(high[bars], low[bars], close[bars], u[:size], tmp[:size])
        u[size:] = 0.0
        chunk_out = region[start - period - 1 : start - period - 1 + u.size]
        ar1(ws, u, size, a, atr_value, chunk_out, scale=1.0 / period)
        atr_value = chunk_out[size - 1]
    return (out,)


def stochastic_core(
    ws: Workspace, high: FloatArray, low: FloatArray, close: FloatArray, k_period: int, d_period: int
) -> tuple[FloatArray, ...]:
    n = close.size
    lookback = k_period - 1 + d_period - 1
    k_out, d_out = nan_output(n, lookback), nan_output(n, lookback)
    if n <= lookback:
        return k_out, d_out
    count = n - k_period + 1
    highest, lowest = ws.take(count), ws.take(count)
    window_extreme(high, k_period, np.maximum, highest, ws)
    window_extreme(low, k_period, np.minimum, lowest, ws)
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
    window_sum(fast_k, d_period, result, ws)
    result /= d_period
    return k_out, d_out


def obv_core(ws: Workspace, close: FloatArray, volume: FloatArray) -> tuple[FloatArray]:
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


def roc_core(ws: Workspace, x: FloatArray, period: int) -> tuple[FloatArray]:
    n = x.size
    out = nan_output(n, period)
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


def williams_r_core(
    ws: Workspace, high: FloatArray, low: FloatArray, close: FloatArray, period: int
) -> tuple[FloatArray]:
    n = close.size
    out = nan_output(n, period - 1)
    if n < period:
        return (out,)
    count = n - period + 1
    highest, lowest = ws.take(count), ws.take(count)
    window_extreme(high, period, np.maximum, highest, ws)
    window_extreme(low, period, np.minimum, lowest, ws)
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


def _typical_price(ws: Workspace, high: FloatArray, low: FloatArray, close: FloatArray) -> FloatArray:
    typical = ws.take(close.size)
    np.add(high, low, out=typical)
    typical += close
    typical /= 3.0
    return typical


def cci_core(
    ws: Workspace, high: FloatArray, low: FloatArray, close: FloatArray, period: int
) -> tuple[FloatArray]:
    n = close.size
    out = nan_output(n, period - 1)
    if n < period:
        return (out,)
    typical = _typical_price(ws, high, low, close)
    count = n - period + 1
    mean = ws.take(count)
    window_sum(typical, period, mean, ws)
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


def adx_core(
    ws: Workspace, high: FloatArray, low: FloatArray, close: FloatArray, period: int
) -> tuple[FloatArray]:
    n = close.size
    lookback = 2 * period - 1
    out, region = output_region(n, lookback + 1)
    out[lookback : lookback + 1] = np.nan
    if n <= lookback:
        return (out,)
    # Per-bar values for bars 1..n-1, each buffer with room to pad the recursion input that starts
    # at bar `period`.
    length = n - period
    size = period - 1 + to_blocks(length)
    up, down, tr = ws.take(size), ws.take(size), ws.take(size)
    np.subtract(high[1:], high[:-1], out=up[: n - 1])
    np.subtract(low[:-1], low[1:], out=down[: n - 1])
    true_range(high, low, close, tr[: n - 1], ws.take(n - 1))
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
        ar1(ws, u, length, a, seed, smoothed)
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
    skip = (np.abs(tr_sum) < TA_EPSILON) | (np.abs(di_sum) < TA_EPSILON)
    adx0 = np.where(skip[:period], 0.0, dx[:period]).sum() / period
    out[lookback] = adx0
    rest = length - period  # bars 2*period..n-1
    rest_dx, rest_skip = dx[period:], skip[period:]
    a = (period - 1) / period
    if not rest_skip.any():
        u = ar1_input(ws, rest)
        np.copyto(u[:rest], rest_dx)
        ar1(ws, u, rest, a, adx0, region, scale=1.0 / period)
        return (out,)
    # Rare (flat markets): smooth only the bars that update, then hold the value over skipped ones.
    used = ~rest_skip
    count = int(used.sum())
    u = ar1_input(ws, count)
    u[:count] = rest_dx[used]
    values = np.empty(u.size + 1)
    values[0] = adx0
    ar1(ws, u, count, a, adx0, values[1:], scale=1.0 / period)
    out[lookback + 1 :] = values[np.cumsum(used)]
    return (out,)


def donchian_core(ws: Workspace, high: FloatArray, low: FloatArray, period: int) -> tuple[FloatArray, ...]:
    n = high.size
    upper, lower = nan_output(n, period - 1), nan_output(n, period - 1)
    if n >= period:
        window_extreme(high, period, np.maximum, upper[period - 1 :], ws)
        window_extreme(low, period, np.minimum, lower[period - 1 :], ws)
    return upper, lower


def vwap_core(
    ws: Workspace, high: FloatArray, low: FloatArray, close: FloatArray, volume: FloatArray, period: int
) -> tuple[FloatArray]:
    n = close.size
    out = nan_output(n, period - 1)
    if n < period:
        return (out,)
    value = _typical_price(ws, high, low, close)
    value *= volume
    result = out[period - 1 :]
    window_sum(value, period, result, ws)
    total_volume = ws.take(result.size)
    window_sum(volume, period, total_volume, ws)
    with np.errstate(divide="ignore", invalid="ignore"):
        result /= total_volume  # 0/0 = NaN where the window traded nothing
    return (out,)
