"""Backtest engine: turns candles plus entry/exit signals into fills, trades, an equity curve and metrics.

Semantics (the README repeats them; tests/backtester/test_runner.py pins each rule with a hand-made grid):

Timing and prices
  * A signal is computed on bar t's close and fills at bar t+1's open, moved against the trader by
    ``slippage_bps``: a buy fills at ``open * (1 + s)``, a sell at ``open * (1 - s)``, with
    ``s = slippage_bps / 1e4``.
  * A signal on the last bar is ignored: there is no next open to fill it at.
  * Trade times are the open time (ms) of the bar in which the fill happened.

Signal precedence (read at bar t's close, after any fill that happened during bar t)
  * In a position: ``exits[t]`` closes it at t+1's open; ``entries[t]`` is ignored.
  * Flat: ``entries[t] and not exits[t]`` opens a position at t+1's open. Entry and exit on the same
    bar while flat do nothing (the exit wins).
  * A position closed at bar t's open (signal) or during bar t (stop/target) can be re-opened by
    ``entries[t]``, filling at t+1's open.

Sizing and fees (long-only spot, fractional quantities, one position at a time)
  * Entry budget = ``position_size * equity``; we are flat, so equity is cash.
    ``quantity = budget / (fill_price * (1 + fee_rate))``, so entry notional + entry fee equals the budget
    exactly and cash never goes negative. This is backtesting.py's rule for an order sized as a fraction of
    equity (``size * price * (1 + commission) <= available cash``) without its rounding down to whole units.
  * Every fill pays ``fee_rate * quantity * fill_price`` in quote currency, on entry and on exit.

Stops (optional; fractions of the entry fill price)
  * Stop level ``entry_price * (1 - stop_loss)``; target ``entry_price * (1 + take_profit)``; trailing level
    ``peak * (1 - trailing_stop)`` where ``peak`` is the highest of the entry price and the highs of the
    bars completed since entry (the entry bar's high counts from the next bar on). A bar's own high never
    moves the level it is tested against, the entry bar's included: inside one bar we cannot know whether the
    high came before the low.
    With both stop_loss and trailing_stop, the higher level is the live stop; its exit_reason is
    "trailing_stop" when the trailing level is strictly higher, else "stop_loss".
  * Live from the entry bar on: the entry fills at the entry bar's open, its first price, so the rest of that
    bar (its high and low) can reach the levels, as it would a resting order placed with the entry. Checked
    on every bar from the entry bar to the exit, in this order:
    1. open <= stop: fill at the open (the bar gapped through the stop);
    2. open >= target: fill at the open (the bar gapped through the target);
    3. low <= stop: fill at the stop;
    4. high >= target: fill at the target.
    The open is the only price whose time within the bar is known (first), so gaps are decided first; a
    bar that opens between the levels and touches both exits at the stop ("stop first"). Exit prices get
    slippage against the trader too.
  * On the entry bar the open is the market price the entry filled at (the fill is ``open * (1 + s)``), so
    rules 1 and 2 are not gaps there. Rule 2 never fires (a positive target is above the fill price). Rule 1
    fires only when the slippage is at least the stop distance (about ``(1 + s) * (1 - stop_loss) >= 1``; the
    same for the trailing level, whose peak is still the fill price): the stop is then at or above the market
    price, and the position exits at that same open, at ``open * (1 - s)``. Without slippage the entry bar
    exits only through rules 3 and 4.
  * An exit signal from bar t's close fills at bar t+1's open, before bar t+1's stop checks.

End of data
  * A position still open after the last bar is valued at the last close (no exit fee) and reported as
    ``open_trade`` (exit_time, exit_price and exit_bar None, exit_reason "end"); it is not in ``trades``
    and not counted in ``n_trades``.

Equity and trades
  * ``equity[t] = cash + quantity * close[t]``, marked at each bar's close.
  * ``Trade.fees`` = entry fee + exit fee; ``pnl`` = exit notional - exit fee - (entry notional + entry fee);
    ``trade_return`` = pnl / (entry notional + entry fee), the return on the cash the trade committed (with
    ``position_size`` 1 it is the trade's change in equity). An open trade's pnl and trade_return are marked
    at the last close without an exit fee.

Implementation: without stops, positions follow from the signals alone, so the engine is vectorised numpy
(the alternating entry/exit events, a cumulative product for compounding sizes). With stops, an exit depends
on the path, so a per-bar loop runs compiled by numba (``cache=True``: a fresh process loads it from disk).
numba is imported on first use, so callers without stops never pay for it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np

from backtester.metrics import Metrics, compute_metrics
from utils.gc_pause import gc_paused
from utils.market_data.candles import Candles

EXIT_REASONS: tuple[str, ...] = ("signal", "stop_loss", "take_profit", "trailing_stop", "end")
_SIGNAL, _STOP_LOSS, _TAKE_PROFIT, _TRAILING_STOP = 0, 1, 2, 3
_REASON_NAMES = np.array(EXIT_REASONS, dtype=object)  # code -> name, vectorised


@dataclass(frozen=True, slots=True)
class BacktestConfig:
    """Money and fill settings of one backtest. Fractions are plain fractions (0.02 means 2%)."""

    initial_capital: float = 10_000.0
    fee_rate: float = 0.001  # per side, on each fill's notional (Binance spot default)
    slippage_bps: float = 0.0  # moves every fill against the trader
    position_size: float = 1.0  # fraction of equity committed (notional + entry fee) per entry
    stop_loss: float | None = None  # fraction below the entry price
    take_profit: float | None = None  # fraction above the entry price
    trailing_stop: float | None = None  # fraction below the highest price seen since entry

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if value is None and field.default is None:
                continue
            # bool is an int subclass, and inf or NaN would poison every number downstream.
            real = isinstance(value, int | float) and not isinstance(value, bool)
            _check(real and math.isfinite(value), field.name, "must be a finite number", value)
        _check(self.initial_capital > 0, "initial_capital", "must be > 0", self.initial_capital)
        # A fee or slippage of 100% or more would make a sale pay out a negative amount.
        _check(0 <= self.fee_rate < 1, "fee_rate", "must be >= 0 and < 1", self.fee_rate)
        _check(0 <= self.slippage_bps < 10_000, "slippage_bps", "must be >= 0 and < 10000", self.slippage_bps)
        _check(0 < self.position_size <= 1, "position_size", "must be in (0, 1]", self.position_size)
        # A budget this small makes the quantity underflow to zero and every return 0/0.
        _check(
            self.initial_capital * self.position_size >= 1e-6,
            "position_size",
            "times initial_capital must be at least 1e-6 (a smaller position cannot be simulated)",
            self.position_size,
        )
        for name in ("stop_loss", "trailing_stop"):
            value = getattr(self, name)
            if value is not None:
                _check(0 < value < 1, name, "must be in (0, 1) or None", value)
        if self.take_profit is not None:
            _check(self.take_profit > 0, "take_profit", "must be > 0 or None", self.take_profit)

    @property
    def has_stops(self) -> bool:
        return self.stop_loss is not None or self.take_profit is not None or self.trailing_stop is not None


def _check(ok: bool, field: str, rule: str, value: object) -> None:
    # `not ok` is also True for NaN comparisons, so NaN is rejected too.
    if not ok:
        raise ValueError(f"{field} {rule}, got {value!r}")


@dataclass(slots=True)
class Trade:
    """One round trip. Prices in quote currency per unit; times are bar open times in ms since the epoch.

    Not frozen: a million-bar backtest builds tens of thousands of these, and frozen dataclasses are
    about three times slower to construct.
    """

    entry_time: int
    entry_price: float
    exit_time: int | None
    exit_price: float | None
    quantity: float
    fees: float  # entry fee + exit fee (entry fee only while open)
    pnl: float  # after fees; an open trade is marked at the last close
    trade_return: float  # pnl / (entry notional + entry fee)
    entry_bar: int
    exit_bar: int | None
    exit_reason: str  # one of EXIT_REASONS


@dataclass(frozen=True, slots=True, eq=False)  # arrays: compare columns with numpy, not ==
class TradeColumns:
    """Closed trades as columns: one array per `Trade` field, same names and order, one row per trade.

    What is stored and served: a backtest's trades as rows of objects cost more to store and serialise
    than the backtest costs to run. Closed trades always have an exit, so no column holds a missing value.
    """

    entry_time: np.ndarray  # int64, ms
    entry_price: np.ndarray  # float64
    exit_time: np.ndarray  # int64, ms
    exit_price: np.ndarray  # float64
    quantity: np.ndarray  # float64
    fees: np.ndarray  # float64
    pnl: np.ndarray  # float64
    trade_return: np.ndarray  # float64
    entry_bar: np.ndarray  # int64
    exit_bar: np.ndarray  # int64
    exit_reason: np.ndarray  # object array of names from EXIT_REASONS

    def __len__(self) -> int:
        return int(self.entry_bar.shape[0])

    def lists(self) -> dict[str, list[Any]]:
        """Each column as a list of Python ints, floats and strs, keyed and ordered as `Trade`'s fields."""
        return {name: getattr(self, name).tolist() for name in TRADE_FIELDS}

    def trades(self) -> list[Trade]:
        with gc_paused():  # trades hold no cycles (utils.gc_pause says why)
            return list(map(Trade, *self.lists().values()))


TRADE_FIELDS: tuple[str, ...] = tuple(field.name for field in dataclasses.fields(Trade))


@dataclass(slots=True)
class BacktestResult:
    """Closed trades, the open position if any, per-bar equity (aligned with the candles) and metrics."""

    trade_columns: TradeColumns
    open_trade: Trade | None
    equity: np.ndarray
    metrics: Metrics
    config: BacktestConfig
    final_equity: float
    _trades: list[Trade] | None = dataclasses.field(default=None, repr=False)

    @property
    def trades(self) -> list[Trade]:
        """The closed trades as objects, built on first use: storing and serving a backtest read the
        columns, and thousands of objects cost about as much as the engine run (sweeps never need them)."""
        if self._trades is None:
            self._trades = self.trade_columns.trades()
        return self._trades


@dataclass(slots=True)
class _Fills:
    """Column form of the trades, as the simulators return them (closed trades first, then the open one)."""

    entry_bar: np.ndarray  # int64
    exit_bar: np.ndarray  # int64, n_bars for the open trade
    entry_price: np.ndarray
    exit_price: np.ndarray  # last close for the open trade
    quantity: np.ndarray
    reason: np.ndarray  # int8 codes into EXIT_REASONS
    equity: np.ndarray
    is_open: bool  # the last row is a position still open at the end


def run_backtest(
    candles: Candles,
    entries: np.ndarray,
    exits: np.ndarray,
    config: BacktestConfig = BacktestConfig(),
) -> BacktestResult:
    """Simulate the signals on the candles under `config` (semantics in the module docstring)."""
    n = len(candles)
    if n == 0:
        raise ValueError("candles must not be empty")
    entries = _as_signal(entries, "entries", n)
    exits = _as_signal(exits, "exits", n)
    open_ = np.ascontiguousarray(candles.open, dtype=np.float64)
    close = np.ascontiguousarray(candles.close, dtype=np.float64)
    slip = config.slippage_bps / 10_000.0

    if config.has_stops:
        fills = _simulate_with_stops(
            open_,
            np.ascontiguousarray(candles.high, dtype=np.float64),
            np.ascontiguousarray(candles.low, dtype=np.float64),
            close,
            entries,
            exits,
            config,
        )
    else:
        fills = _simulate_signals(
            open_, close, entries, exits, config.initial_capital, config.fee_rate, slip, config.position_size
        )

    columns, open_trade = _build_trades(fills, candles.open_time, config.fee_rate)
    in_position_bars = int((fills.exit_bar - fills.entry_bar).sum())
    metrics = compute_metrics(
        equity=fills.equity,
        initial_capital=config.initial_capital,
        open_time=candles.open_time,
        interval=candles.interval,
        close=close,
        trade_pnl=columns.pnl,
        trade_returns=columns.trade_return,
        bars_in_position=in_position_bars,
    )
    return BacktestResult(columns, open_trade, fills.equity, metrics, config, float(fills.equity[-1]))


def _as_signal(values: Any, name: str, n: int) -> np.ndarray:
    array = np.asarray(values)
    if array.dtype != np.bool_:
        raise ValueError(f"{name} must be a boolean array, got dtype {array.dtype}")
    if array.shape != (n,):
        raise ValueError(f"{name} must have one value per candle ({n}), got shape {array.shape}")
    return np.ascontiguousarray(array)


def _simulate_signals(
    open_: np.ndarray,
    close: np.ndarray,
    entries: np.ndarray,
    exits: np.ndarray,
    initial_capital: float,
    fee: float,
    slip: float,
    size: float,
) -> _Fills:
    """Vectorised engine for signals without stops: positions depend on the signals alone."""
    n = close.shape[0]
    # Signal events on bars 0..n-2 (a last-bar signal cannot fill): +1 enter, -1 exit (exit wins a tie).
    entry_sig = entries[:-1]
    exit_sig = exits[:-1]
    event_bars = np.flatnonzero(entry_sig | exit_sig)
    kinds = np.where(exit_sig[event_bars], -1, 1).astype(np.int8)
    # Without stops the state after bar t is the kind of the last event up to t (flat before any); an
    # event repeating the current state is a no-op, so the fills are where the kind changes.
    previous = np.empty_like(kinds)
    if kinds.size:
        previous[0] = -1
        previous[1:] = kinds[:-1]
    changes = event_bars[kinds != previous] + 1  # fill bars: enter, exit, enter, exit, ...
    entry_bar = changes[0::2].astype(np.int64)
    exit_bar = changes[1::2].astype(np.int64)
    n_trades = entry_bar.shape[0]
    is_open = exit_bar.shape[0] < n_trades
    if is_open:
        exit_bar = np.append(exit_bar, n)

    entry_price = open_[entry_bar] * (1.0 + slip)
    exit_price = np.empty(n_trades)
    exit_price[: n_trades - is_open] = open_[exit_bar[: n_trades - is_open]] * (1.0 - slip)
    if is_open:
        exit_price[-1] = close[-1]
    # Cash before trade k compounds: cash_{k+1} = cash_k * (1 - size + size * exit_net / entry_gross),
    # since the trade commits size * cash_k and returns quantity * exit_price * (1 - fee).
    growth = 1.0 - size + size * (exit_price * (1.0 - fee)) / (entry_price * (1.0 + fee))
    cash_before = np.empty(n_trades + 1)
    cash_before[0] = initial_capital
    np.cumprod(growth, out=cash_before[1:])
    cash_before[1:] *= initial_capital
    budget = size * cash_before[:n_trades]
    quantity = budget / (entry_price * (1.0 + fee))

    # Equity is piecewise `a + b * close`: cash only while flat, idle cash + quantity * close in a trade.
    bounds = np.empty(2 * n_trades, dtype=np.int64)
    bounds[0::2] = entry_bar
    bounds[1::2] = exit_bar
    lengths = np.diff(bounds, prepend=0, append=n)
    # Segment 2k is flat on cash_before[k]; with an open trade the last flat segment has length 0.
    a = np.empty(2 * n_trades + 1)
    b = np.zeros(2 * n_trades + 1)
    a[0::2] = cash_before
    a[1::2] = cash_before[:n_trades] - budget
    b[1::2] = quantity
    equity = np.repeat(b, lengths)
    equity *= close
    equity += np.repeat(a, lengths)
    reason = np.zeros(n_trades, dtype=np.int8)
    return _Fills(entry_bar, exit_bar, entry_price, exit_price, quantity, reason, equity, is_open)


def _simulate_with_stops(
    open_: np.ndarray,
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    entries: np.ndarray,
    exits: np.ndarray,
    config: BacktestConfig,
) -> _Fills:
    # Every trade starts with an entry signal, so the signal count bounds the trade count.
    max_trades = int(np.count_nonzero(entries)) + 1
    entry_bar, exit_bar, entry_price, exit_price, quantity, reason, equity, n_trades, is_open = (
        _stop_kernel()(
            open_,
            high,
            low,
            close,
            entries,
            exits,
            float(config.initial_capital),
            float(config.fee_rate),
            config.slippage_bps / 10_000.0,
            float(config.position_size),
            _or_nan(config.stop_loss),
            _or_nan(config.take_profit),
            _or_nan(config.trailing_stop),
            max_trades,
        )
    )
    return _Fills(
        entry_bar[:n_trades],
        exit_bar[:n_trades],
        entry_price[:n_trades],
        exit_price[:n_trades],
        quantity[:n_trades],
        reason[:n_trades],
        equity,
        bool(is_open),
    )


def _or_nan(value: float | None) -> float:
    return math.nan if value is None else float(value)


def _simulate_stops_loop(
    open_: np.ndarray,
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    entries: np.ndarray,
    exits: np.ndarray,
    initial_capital: float,
    fee: float,
    slip: float,
    size: float,
    stop_loss: float,
    take_profit: float,
    trailing_stop: float,
    max_trades: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, int, bool]:
    """Per-bar engine for stops (compiled by numba; NaN switches a stop off). Same rules as the module doc.

    Stops are tested on the entry bar too, right after the entry fills at its open; the trailing peak takes
    a bar's high only after that bar's tests.
    """
    n = close.shape[0]
    entry_bar = np.empty(max_trades, dtype=np.int64)
    exit_bar = np.empty(max_trades, dtype=np.int64)
    entry_price = np.empty(max_trades)
    exit_price = np.empty(max_trades)
    quantity = np.empty(max_trades)
    reason = np.empty(max_trades, dtype=np.int8)
    equity = np.empty(n)

    cash, qty, price_in, peak, k = initial_capital, 0.0, 0.0, 0.0, 0
    in_position = pending_entry = pending_exit = False
    for t in range(n):
        exiting, exit_at, why = False, 0.0, _SIGNAL
        if in_position and pending_exit:
            exiting = True
            exit_at = open_[t] * (1.0 - slip)
        else:
            if pending_entry:
                price_in = open_[t] * (1.0 + slip)
                budget = size * cash
                qty = budget / (price_in * (1.0 + fee))
                cash -= budget
                peak = price_in
                in_position = True
                entry_bar[k] = t
                entry_price[k] = price_in
                quantity[k] = qty
            if in_position:
                # Live from the entry bar on: an entry fills at the open, so the rest of its bar counts.
                exit_at, why = _stop_exit(
                    open_[t], high[t], low[t], price_in, peak, stop_loss, take_profit, trailing_stop
                )
                exiting = not math.isnan(exit_at)
                exit_at *= 1.0 - slip
        if exiting:
            cash += qty * exit_at * (1.0 - fee)
            exit_bar[k] = t
            exit_price[k] = exit_at
            reason[k] = why
            k += 1
            qty = 0.0
            in_position = False
        elif in_position and high[t] > peak:
            peak = high[t]
        equity[t] = cash + qty * close[t]
        # The close's signals act at the next open; the last bar has none.
        more = t < n - 1
        pending_exit = more and in_position and bool(exits[t])
        pending_entry = more and not in_position and bool(entries[t]) and not bool(exits[t])
    if in_position:
        exit_bar[k] = n
        exit_price[k] = close[n - 1]
        reason[k] = _SIGNAL
        k += 1
    return entry_bar, exit_bar, entry_price, exit_price, quantity, reason, equity, k, in_position


def _stop_exit(
    open_t: float,
    high_t: float,
    low_t: float,
    price_in: float,
    peak: float,
    stop_loss: float,
    take_profit: float,
    trailing_stop: float,
) -> tuple[float, int]:
    """The bar's exit price before slippage and its reason when a stop or the target is hit, else NaN.

    The open is the bar's first price, so a gap decides before anything the range shows. On the entry
    bar the open is the fill price before slippage: at or below the stop only when the slippage is at
    least the stop distance, never at or above a target."""
    stop = -math.inf
    why_stop = _STOP_LOSS
    if not math.isnan(stop_loss):
        stop = price_in * (1.0 - stop_loss)
    if not math.isnan(trailing_stop):
        trail = peak * (1.0 - trailing_stop)
        if trail > stop:
            stop = trail
            why_stop = _TRAILING_STOP
    target = price_in * (1.0 + take_profit) if not math.isnan(take_profit) else math.inf
    if open_t <= stop:
        return open_t, why_stop
    if open_t >= target:
        return open_t, _TAKE_PROFIT
    if low_t <= stop:
        return stop, why_stop
    if high_t >= target:
        return target, _TAKE_PROFIT
    return math.nan, _SIGNAL


def warm_up() -> None:
    """Load (on a first ever run: compile and cache) the stop loop now rather than on the first backtest.

    For app start-up or an image build step; a process that never uses stops does not need it.
    """
    one = np.ones(2)
    _stop_kernel()(
        one,
        one,
        one,
        one,
        np.zeros(2, dtype=bool),
        np.zeros(2, dtype=bool),
        1.0,
        0.0,
        0.0,
        1.0,
        0.5,
        0.5,
        0.5,
        1,
    )


@cache
def _stop_kernel() -> Callable[..., Any]:
    """The stop loop compiled by numba, imported and loaded from its on-disk cache on first use."""
    import numba
    from numba.extending import register_jitable

    register_jitable(_stop_exit)  # the compiled loop calls it compiled; Python callers get the same source
    return numba.njit(cache=True, nogil=True)(_simulate_stops_loop)


def _build_trades(fills: _Fills, open_time: np.ndarray, fee: float) -> tuple[TradeColumns, Trade | None]:
    """The closed trades as columns (metrics read their pnl and return columns) and the open trade."""
    entry_notional = fills.quantity * fills.entry_price
    exit_notional = fills.quantity * fills.exit_price
    cost = entry_notional * (1.0 + fee)
    is_open = fills.is_open
    # The open trade is marked at the last close without an exit fee, like the equity curve.
    exit_fee = exit_notional * fee
    if is_open:
        exit_fee[-1] = 0.0
    fees = entry_notional * fee + exit_fee
    pnl = exit_notional - exit_fee - cost
    with np.errstate(divide="ignore", invalid="ignore"):
        trade_returns = pnl / cost
    n_closed = fills.entry_bar.shape[0] - is_open
    # After ruin (equity 0) an entry buys nothing: such fills are not trades, and would be 0/0.
    closed = np.flatnonzero(fills.quantity[:n_closed] > 0)
    if is_open and fills.quantity[-1] <= 0:
        is_open = False
    entry_bar = fills.entry_bar[closed]
    exit_bar = fills.exit_bar[closed]
    columns = TradeColumns(
        entry_time=open_time[entry_bar].astype(np.int64, copy=False),
        entry_price=fills.entry_price[closed],
        exit_time=open_time[exit_bar].astype(np.int64, copy=False),
        exit_price=fills.exit_price[closed],
        quantity=fills.quantity[closed],
        fees=fees[closed],
        pnl=pnl[closed],
        trade_return=trade_returns[closed],
        entry_bar=entry_bar,
        exit_bar=exit_bar,
        exit_reason=_REASON_NAMES[fills.reason[closed]],
    )
    open_trade = None
    if is_open:
        bar = int(fills.entry_bar[-1])
        open_trade = Trade(
            entry_time=int(open_time[bar]),
            entry_price=float(fills.entry_price[-1]),
            exit_time=None,
            exit_price=None,
            quantity=float(fills.quantity[-1]),
            fees=float(fees[-1]),
            pnl=float(pnl[-1]),
            trade_return=float(trade_returns[-1]),
            entry_bar=bar,
            exit_bar=None,
            exit_reason="end",
        )
    return columns, open_trade
