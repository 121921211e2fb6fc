"""The picture of a stored backtest: ``backtest_report_html`` (what GET /api/backtest/{id}/report serves).

Built from what the backtest stored (its row, trades and equity curve, ``backtester.service``) and the
candles it ran on, read from the candle store's partition of its data source (never fetched: a report
makes no request to Binance). The page shows:

* the candles with volume, the strategy's indicators (over the price when they are on its scale, in
  panels of their own otherwise, with the levels the strategy compares them with) and every entry and
  exit, each exit marked by its reason;
* the equity curve against buy and hold of the same candles (the capital in the asset at the first
  close, no fees: the metrics' ``buy_and_hold_return``), with the drawdown underneath;
* the metrics with their definitions (``backtester.metrics.DEFINITIONS``) and the trade list.

The indicators are recomputed from their definitions over the same candles the strategy read: built-ins
name theirs (``indicators`` in each module of ``backtester.strategies``), saved JSON strategies are read
back at the version that ran (or from the spec stored with the backtest).
This module builds the description (``utils.reports.document``); only ``utils.reports.render`` knows the
plotting library.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sqlalchemy.orm import Session, sessionmaker

from backtester.metrics import DEFINITIONS, drawdown_series
from backtester.service import StoredBacktest, get_stored
from backtester.strategies import BUILTINS, IndicatorUse
from db.models import BacktestRun
from ml_engine.indicators import INDICATORS, compute
from strategy_engine.spec import IndicatorOperand, StrategySpec, spec_comparisons, validate_spec
from strategy_engine.store import StrategyStore
from utils.errors import AppError
from utils.market_data.candles import Candles, CandleStore, Partition
from utils.reports.document import (
    Bars,
    Chart,
    Column,
    Facts,
    Level,
    Line,
    Markers,
    MarkerSymbol,
    Panel,
    Report,
    Section,
    Table,
    Text,
    drawdown_panel,
)
from utils.reports.document import Candles as CandleSeries
from utils.reports.format import count, money, number, pct, price, time_range, utc
from utils.reports.render import render_html

__all__ = ["ON_PRICE", "backtest_report", "backtest_report_html", "spec_indicators", "strategy_indicators"]

MAX_TRADE_ROWS = 500  # the first and the last half of them when there are more
# Indicators drawn over the price (same scale); the others get a panel each.
ON_PRICE = frozenset({"sma", "ema", "wma", "bollinger", "donchian", "vwap"})
PARTITION: dict[str, Partition] = {
    "binance": "binance",
    "cache": "binance",
    "file": "file",
    "sample": "sample",
}
SOURCES: dict[str, str] = {
    "binance": "binance: downloaded from Binance for this backtest",
    "cache": "binance (stored): candles downloaded from Binance earlier",
    "file": "file: candles imported from a CSV file",
    "sample": "sample: SYNTHETIC candles from the built-in generator, not market data",
}
SAMPLE_WARNING = (
    "Sample data: these candles are synthetic (the deterministic generator in utils/market_data/sample.py), "
    "not a market's. The numbers below say nothing about real trading."
)
EXIT_STYLES: dict[str, tuple[str, MarkerSymbol, str]] = {  # reason -> (legend, marker, colour)
    "signal": ("exit: signal", "triangle-down", "#c62828"),
    "stop_loss": ("exit: stop loss", "x", "#6a1b9a"),
    "take_profit": ("exit: take profit", "diamond", "#2e7d32"),
    "trailing_stop": ("exit: trailing stop", "triangle-down", "#ef6c00"),
}
METRIC_ORDER = (
    "total_return",
    "buy_and_hold_return",
    "cagr",
    "sharpe",
    "sortino",
    "max_drawdown",
    "max_drawdown_duration",
    "calmar",
    "n_trades",
    "win_rate",
    "profit_factor",
    "expectancy",
    "avg_trade_return",
    "exposure",
    "final_equity",
)
_PERCENT = {
    "total_return",
    "buy_and_hold_return",
    "cagr",
    "max_drawdown",
    "win_rate",
    "avg_trade_return",
    "exposure",
}


def backtest_report_html(
    sessions: sessionmaker[Session],
    store: CandleStore,
    strategies: StrategyStore,
    backtest_id: str,
    now_ms: int,
) -> str:
    """The report page of a stored backtest; NotFound (backtest_not_found) for an unknown id."""
    return render_html(backtest_report(sessions, store, strategies, backtest_id, now_ms))


def backtest_report(
    sessions: sessionmaker[Session],
    store: CandleStore,
    strategies: StrategyStore,
    backtest_id: str,
    now_ms: int,
) -> Report:
    stored = get_stored(sessions, backtest_id)
    run = stored.run
    candles = store.load(
        PARTITION.get(run.data_source, "sample"), run.symbol, run.interval, run.start_time, run.end_time
    )
    uses, note = strategy_indicators(run, strategies)
    return build_report(stored, candles, uses, note, now_ms)


# --- the strategy's indicators ---------------------------------------------------------------------


def strategy_indicators(run: BacktestRun, strategies: StrategyStore) -> tuple[list[IndicatorUse], str]:
    """The indicators the backtest's strategy read, and a note when they cannot be known."""
    if run.strategy_kind == "builtin" or (run.strategy_kind is None and run.strategy in BUILTINS):
        builtin = BUILTINS.get(run.strategy)
        if builtin is None:
            return (
                [],
                f"The built-in strategy {run.strategy!r} no longer exists; its indicators are not drawn.",
            )
        try:
            return list(builtin.indicators(builtin.make_params(run.params))), ""
        except (TypeError, ValueError) as exc:
            return [], f"The stored parameters no longer fit {run.strategy} ({exc}); indicators not drawn."
    if run.spec is not None:  # the spec that ran, stored with the backtest
        try:
            return spec_indicators(validate_spec(run.spec)), ""
        except AppError as exc:
            return [], f"The stored strategy spec no longer validates ({exc.message}); indicators not drawn."
    if run.strategy_kind == "saved" and run.strategy_id is not None:
        try:
            saved = strategies.get(run.strategy_id, run.strategy_version)
            return spec_indicators(validate_spec(saved.spec)), ""
        except AppError as exc:
            return [], f"The saved strategy could not be read back ({exc.message}); indicators not drawn."
    return [], (
        "This backtest was stored before backtests kept their strategy spec, so its indicators are not "
        "drawn; run it again to see them."
    )


def spec_indicators(spec: StrategySpec) -> list[IndicatorUse]:
    """Every distinct indicator a JSON strategy compares, with the numbers it compares each one with."""
    found: dict[tuple[str, tuple[tuple[str, Any], ...]], IndicatorUse] = {}
    for _path, comparison in spec_comparisons(spec):
        for side, other in ((comparison.left, comparison.right), (comparison.right, comparison.left)):
            if not isinstance(side, IndicatorOperand):
                continue
            key = (side.indicator, tuple(sorted(side.params.items())))
            use = found.get(key, IndicatorUse(side.indicator, dict(side.params)))
            if isinstance(other, int | float) and float(other) not in use.levels:
                use = IndicatorUse(use.name, use.params, (*use.levels, float(other)))
            found[key] = use
    return list(found.values())


def _label(use: IndicatorUse) -> str:
    values = ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in use.params.values())
    return f"{use.name.upper()}({values})" if values else use.name.upper()


# --- the page --------------------------------------------------------------------------------------


def build_report(
    stored: StoredBacktest, candles: Candles, uses: Sequence[IndicatorUse], indicator_note: str, now_ms: int
) -> Report:
    run = stored.run
    sample = run.data_source == "sample"
    times = np.asarray(stored.times, dtype=np.int64)
    # The candles the backtest ran on: those of its curve (the store may have gained or lost some since).
    at = np.minimum(np.searchsorted(candles.open_time, times), max(len(candles) - 1, 0))
    found = candles.open_time[at] == times if len(candles) else np.zeros(len(times), dtype=bool)
    on_curve = _take(candles, at[found])
    missing = int((~found).sum())
    title = f"Backtest of {run.strategy} on {run.symbol} {run.interval}"
    sections = [
        _summary(run, missing),
        _price_section(stored, on_curve, uses, indicator_note, missing),
        _equity_section(stored, on_curve),
        _metrics_section(run),
        _trades_section(stored),
    ]
    return Report(
        kind="backtest",
        subject=run.id,
        title=f"[SAMPLE DATA] {title}" if sample else title,
        subtitle=f"{time_range(run.start_time, run.end_time)} · {count(run.n_bars)} candles · "
        f"data source: {run.data_source}",
        sections=tuple(sections),
        warning=SAMPLE_WARNING if sample else None,
        footer=f"Backtest {run.id}; the numbers are GET /api/backtest/{run.id}'s.",
        generated_at=now_ms,
    )


def _take(candles: Candles, idx: np.ndarray) -> Candles:
    return Candles(
        candles.symbol,
        candles.interval,
        candles.open_time[idx],
        candles.open[idx],
        candles.high[idx],
        candles.low[idx],
        candles.close[idx],
        candles.volume[idx],
        candles.source,
    )


def _summary(run: BacktestRun, missing: int) -> Section:
    config = run.config
    stops = ", ".join(
        f"{name.replace('_', ' ')} {pct(config.get(name), 2)}"
        for name in ("stop_loss", "take_profit", "trailing_stop")
        if config.get(name) is not None
    )
    params = ", ".join(f"{k}={v}" for k, v in run.params.items()) or "none"
    kind = run.strategy_kind or "builtin"
    saved = f" (saved strategy {run.strategy_id}, version {run.strategy_version})" if run.strategy_id else ""
    items = [
        ("Strategy", f"{run.strategy} — {kind}{saved}"),
        ("Parameters", params),
        ("Symbol, interval", f"{run.symbol}, {run.interval}"),
        ("Data source", SOURCES.get(run.data_source, run.data_source)),
        ("Candles", f"{count(run.n_bars)}: {time_range(run.start_time, run.end_time)} (open times)"),
        ("Initial capital", money(config.get("initial_capital"))),
        (
            "Costs",
            f"fee {pct(config.get('fee_rate'), 3)} per side, "
            f"slippage {number(config.get('slippage_bps'))} bps",
        ),
        ("Position size", pct(config.get("position_size"), 0) + " of equity per entry"),
        ("Stops", stops or "none"),
        ("Run", f"{utc(int(run.created_at.timestamp() * 1000))}, id {run.id}"),
    ]
    blocks: list[Any] = [Facts(tuple(items))]
    if missing:
        blocks.append(
            Text(
                f"{count(missing)} of the backtest's {count(run.n_bars)} candles are no longer in the candle "
                "store; the price chart and buy and hold leave them out.",
                "warning",
            )
        )
    blocks.append(
        Text(
            "Fills: a signal on a candle's close fills at the next candle's open (slippage against you, fees "
            "on every fill); stops and targets are live from the entry candle on.",
            "note",
        )
    )
    return Section("Summary", tuple(blocks))


def _price_section(
    stored: StoredBacktest, candles: Candles, uses: Sequence[IndicatorUse], indicator_note: str, missing: int
) -> Section:
    run = stored.run
    t = candles.open_time
    price_series: list[Any] = [
        CandleSeries(run.symbol, t, candles.open, candles.high, candles.low, candles.close)
    ]
    lower: list[Panel] = []
    columns = {name: candles.column(name) for name in ("open", "high", "low", "close", "volume")}
    for use in uses:
        spec = INDICATORS.get(use.name)
        if spec is None or len(candles) == 0:
            continue
        outputs = compute(use.name, columns, use.params)
        names = spec.outputs
        lines = [
            Line(_label(use) if names == ("value",) else f"{_label(use)} {out}", t, values, width=1.2)
            for out, values in zip(names, outputs, strict=True)
        ]
        if use.name in ON_PRICE:
            price_series += lines
        else:
            lower.append(
                Panel(tuple(lines), _label(use), 1.0, levels=tuple(Level(v, f"{v:g}") for v in use.levels))
            )
    price_series += _trade_markers(stored)
    panels = [
        Panel(tuple(price_series), f"price ({run.symbol})", 3.0, y_format=",.6~g"),
        Panel((Bars("volume", t, candles.volume, up=candles.close >= candles.open),), "volume", 0.8),
        *lower,
    ]
    notes = [
        "Triangles up: entries (filled at that candle's open); markers down or crosses: exits, by reason "
        "(hover one for its price and pnl)."
    ]
    if indicator_note:
        notes.append(indicator_note)
    chart = Chart(
        "price",
        "Candles, volume, the strategy's indicators, entries and exits",
        tuple(panels),
        height=560 + 170 * len(lower),
        note=" ".join(notes),
    )
    blocks: list[Any] = [chart] if len(candles) else [Text("No stored candles for this backtest.", "warning")]
    if missing and len(candles):
        blocks.append(Text(f"{count(missing)} candles of the backtest are missing from the store.", "note"))
    return Section("Price and trades", tuple(blocks))


def _trade_markers(stored: StoredBacktest) -> list[Markers]:
    trades = stored.trades
    out: list[Markers] = []
    n = len(trades)
    if n:
        out.append(
            Markers(
                "entry",
                trades.entry_time,
                trades.entry_price,
                tuple(
                    f"Entry #{i + 1} {utc(t)}<br>price {price(p)}, quantity {number(q, 6)}"
                    for i, (t, p, q) in enumerate(
                        zip(
                            trades.entry_time.tolist(),
                            trades.entry_price.tolist(),
                            trades.quantity.tolist(),
                            strict=True,
                        )
                    )
                ),
                "triangle-up",
                "#1b5e20",
            )
        )
        reasons = np.asarray(trades.exit_reason, dtype=object)
        for reason, (legend, symbol, color) in EXIT_STYLES.items():
            idx = np.flatnonzero(reasons == reason)
            if idx.size == 0:
                continue
            out.append(
                Markers(
                    legend,
                    trades.exit_time[idx],
                    trades.exit_price[idx],
                    tuple(
                        f"Exit #{i + 1} ({reason.replace('_', ' ')}) {utc(trades.exit_time[i])}<br>"
                        f"price {price(trades.exit_price[i])}, pnl {money(trades.pnl[i])} "
                        f"({pct(trades.trade_return[i], 2, signed=True)})"
                        for i in idx.tolist()
                    ),
                    symbol,
                    color,
                )
            )
    open_trade = stored.run.open_trade
    if open_trade:
        out.append(
            Markers(
                "entry (still open)",
                np.asarray([open_trade["entry_time"]], dtype=np.int64),
                np.asarray([open_trade["entry_price"]], dtype=np.float64),
                (
                    f"Open position since {utc(open_trade['entry_time'])}<br>price "
                    f"{price(open_trade['entry_price'])}, marked pnl {money(open_trade['pnl'])}",
                ),
                "triangle-up",
                "#ffb300",
                size=11,
            )
        )
    return out


def _equity_section(stored: StoredBacktest, candles: Candles) -> Section:
    run = stored.run
    initial = float(run.config["initial_capital"])
    equity = np.asarray(stored.equity, dtype=np.float64)
    times = np.asarray(stored.times, dtype=np.int64)
    curves: list[Any] = [Line("strategy equity", times, equity, color="#1f77b4", width=1.6)]
    if len(candles):
        hold = initial * candles.close / float(candles.close[0])
        curves.append(Line("buy and hold", candles.open_time, hold, color="#7f7f7f", dash="dot"))
    drawdown = drawdown_series(equity, initial)
    chart = Chart(
        "equity",
        "Equity against buy and hold, and the drawdown",
        (
            Panel(tuple(curves), "equity (quote)", 2.2, y_format=",.2f"),
            drawdown_panel(times, drawdown),
        ),
        height=520,
        note="Equity is cash plus the position marked at each candle's close. Buy and hold puts the "
        "capital in the asset at the first close, with no fees. The drawdown is the fall below the "
        "running peak (the capital counts as a peak).",
    )
    return Section("Equity", (chart,))


def _metric_text(name: str, value: Any) -> str:
    if name in _PERCENT:
        return pct(value)
    if name == "final_equity" or name == "expectancy":
        return money(value)
    if name in ("n_trades", "max_drawdown_duration") and value is not None:
        return count(int(value)) + (" bars" if name == "max_drawdown_duration" else "")
    return number(value, 4)


def _metrics_section(run: BacktestRun) -> Section:
    metrics = run.metrics
    rows = tuple(
        (name.replace("_", " "), _metric_text(name, metrics.get(name)), DEFINITIONS.get(name, ""))
        for name in METRIC_ORDER
        if name in metrics
    )
    table = Table(
        "metrics",
        "Metrics",
        (Column("metric"), Column("value", numeric=True), Column("definition")),
        rows,
        note="Fractions shown as percentages; annualised on a 365-day calendar for the candle interval; "
        "— marks a value that is undefined (no trades, no variance).",
    )
    return Section("Metrics", (table,))


def _trades_section(stored: StoredBacktest) -> Section:
    trades = stored.trades
    n = len(trades)
    if n > MAX_TRADE_ROWS:
        half = MAX_TRADE_ROWS // 2
        shown = list(range(half)) + list(range(n - half, n))
        note = (
            f"Showing trades 1 to {count(half)} and {count(n - half + 1)} to {count(n)} of {count(n)}; "
            f"GET /api/backtest/{stored.run.id} lists every one."
        )
    else:
        shown, note = list(range(n)), ""
    rows = [
        (
            str(i + 1),
            utc(int(trades.entry_time[i])),
            price(float(trades.entry_price[i])),
            utc(int(trades.exit_time[i])),
            price(float(trades.exit_price[i])),
            str(trades.exit_reason[i]).replace("_", " "),
            number(float(trades.quantity[i]), 6),
            money(float(trades.fees[i])),
            money(float(trades.pnl[i])),
            pct(float(trades.trade_return[i]), 2, signed=True),
            count(int(trades.exit_bar[i] - trades.entry_bar[i])),
        )
        for i in shown
    ]
    open_trade = stored.run.open_trade
    if open_trade:
        rows.append(
            (
                "open",
                utc(open_trade["entry_time"]),
                price(open_trade["entry_price"]),
                "—",
                "—",
                "still open (marked at the last close)",
                number(open_trade["quantity"], 6),
                money(open_trade["fees"]),
                money(open_trade["pnl"]),
                pct(open_trade["trade_return"], 2, signed=True),
                "—",
            )
        )
    columns = (
        Column("#", numeric=True),
        Column("entry (UTC)", description="Open time of the candle whose open filled the entry."),
        Column("entry price", numeric=True),
        Column("exit (UTC)"),
        Column("exit price", numeric=True),
        Column("exit reason"),
        Column("quantity", numeric=True),
        Column("fees", numeric=True, description="Entry plus exit fee, quote currency."),
        Column("pnl", numeric=True, description="After fees, quote currency."),
        Column(
            "return", numeric=True, description="pnl over the notional plus entry fee the trade committed."
        ),
        Column("bars", numeric=True, description="Candles from the entry fill to the exit."),
    )
    table = Table("trades", f"Trades ({count(n)} closed)", columns, tuple(rows), note=note)
    blocks: list[Any] = [table] if rows else [Text("The strategy made no trade in this range.", "note")]
    return Section("Trades", tuple(blocks))
