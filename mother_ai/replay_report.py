"""The picture of a stored replay: ``replay_report_html``, what GET /api/mother-ai/replays/{id}/report serves.

Built from what the replay stored (``replay_service``: its summary, its compressed series and its decision
chunks) and the candles it replayed, read from the candle store's partition of each symbol's data source
(never fetched). The page shows:

* the Mother AI's equity against buy and hold of each symbol, against each voter trading alone and against
  the same voters with equal weights (the curves the replay computed on the same candles and costs), with
  the Mother AI's drawdown underneath, and the outcomes as a table;
* every voter's weight over time (the skill weighting as it moved with resolved predictions) and its
  P(up) at each step;
* per symbol, the candles with each buy and sell decision at the close it was decided on (hover: its
  reason) and each fill at the next open's price;
* the fills and the retrains as tables.

This module builds the description (``utils.reports.document``); only ``utils.reports.render`` knows the
plotting library.
"""

from __future__ import annotations

import textwrap
from typing import Any

import numpy as np
from sqlalchemy.orm import Session, sessionmaker

from backtester.metrics import drawdown_series
from db.models import ReplayRun
from mother_ai import replay_service
from utils.intervals import interval_ms
from utils.market_data.candles import CandleStore, Partition
from utils.reports.document import (
    Candles,
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
from utils.reports.format import count, money, number, pct, price, time_range, utc
from utils.reports.render import render_html

__all__ = ["replay_report", "replay_report_html"]

VOTER_COLORS = ("#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22")
MAX_ROWS = 500  # fills listed: the first and the last half of them when there are more
PARTITION: dict[str, Partition] = {
    "binance": "binance",
    "cache": "binance",
    "file": "file",
    "sample": "sample",
}
SAMPLE_WARNING = (
    "Sample data: this replay ran on synthetic candles (the deterministic generator in "
    "utils/market_data/sample.py), not a market's. Its results say nothing about real trading."
)


def replay_report_html(
    sessions: sessionmaker[Session], store: CandleStore, replay_id: str, now_ms: int
) -> str:
    """The report page of a stored replay; NotFound (replay_not_found) for an unknown id."""
    return render_html(replay_report(sessions, store, replay_id, now_ms))


def replay_report(sessions: sessionmaker[Session], store: CandleStore, replay_id: str, now_ms: int) -> Report:
    row = replay_service.get_replay(sessions, replay_id)
    series = replay_service.replay_series(row)
    decisions = trades_decided(sessions, replay_id, row.n_steps)
    step_times = np.asarray(series["step_times"], dtype=np.int64)
    prices: dict[str, Any] = {}
    span = interval_ms(row.interval)
    for symbol in row.symbols:
        source = str(row.summary["data_sources"].get(symbol, "sample"))
        lo = int(step_times[0]) - span if len(step_times) else row.start_time
        hi = int(step_times[-1]) if len(step_times) else row.end_time
        prices[symbol] = store.load(PARTITION.get(source, "sample"), symbol, row.interval, lo, hi)
    return build_report(row, series, decisions, prices, now_ms)


def trades_decided(sessions: sessionmaker[Session], replay_id: str, n_steps: int) -> list[dict[str, Any]]:
    """The replay's buy and sell decisions (step, time, action, symbol, reason), read one stored chunk at a
    time: a long replay's full decision payloads never sit in memory together."""
    out: list[dict[str, Any]] = []
    page = replay_service.CHUNK_STEPS
    for offset in range(0, n_steps, page):
        steps, _total = replay_service.replay_steps(sessions, replay_id, offset, page)
        out += [
            {k: s.get(k) for k in ("step", "time", "action", "symbol", "reason")}
            for s in steps
            if s.get("action") in ("buy", "sell") and s.get("symbol")
        ]
    return out


def _floats(values: list[float | None]) -> np.ndarray:
    return np.asarray([np.nan if v is None else v for v in values], dtype=np.float64)


def build_report(
    row: ReplayRun,
    series: dict[str, Any],
    decisions: list[dict[str, Any]],
    prices: dict[str, Any],
    now_ms: int,
) -> Report:
    summary = row.summary
    sample = bool(summary.get("sample_data"))
    symbols = ", ".join(row.symbols)
    title = f"Mother AI replay of {symbols} {row.interval}"
    sections = [
        _summary(row),
        _equity_section(row, series),
        _voters_section(row, series),
        *(_price_section(row, symbol, decisions, series["fills"], prices[symbol]) for symbol in row.symbols),
        _fills_section(row, series["fills"]),
        _retrains_section(summary.get("retrains", [])),
    ]
    return Report(
        kind="replay",
        subject=row.id,
        title=f"[SAMPLE DATA] {title}" if sample else title,
        subtitle=f"{count(row.n_steps)} decisions · {time_range(_first(series), _last(series))} · data: "
        + ", ".join(f"{s} {src}" for s, src in summary.get("data_sources", {}).items()),
        sections=tuple(sections),
        warning=SAMPLE_WARNING if sample else None,
        footer=f"Replay {row.id}; the numbers are GET /api/mother-ai/replays/{row.id}'s.",
        generated_at=now_ms,
    )


def _first(series: dict[str, Any]) -> int | None:
    return series["step_times"][0] if series["step_times"] else None


def _last(series: dict[str, Any]) -> int | None:
    return series["step_times"][-1] if series["step_times"] else None


def _summary(row: ReplayRun) -> Section:
    summary, request = row.summary, row.request
    costs, limits = summary.get("costs", {}), summary.get("limits", {})
    risk = ", ".join(
        f"{name.replace('_', ' ')} {value}" for name, value in limits.items() if value is not None
    )
    items = [
        ("Symbols, interval", f"{', '.join(row.symbols)}, {row.interval}"),
        ("Range asked", time_range(row.start_time, row.end_time)),
        (
            "Decisions",
            f"{count(row.n_steps)} (after a warm-up of {count(int(request.get('warmup', 0)))} bars)",
        ),
        ("Data sources", ", ".join(f"{s}: {src}" for s, src in summary.get("data_sources", {}).items())),
        ("Initial balance", money(request.get("initial_balance"))),
        (
            "Costs",
            f"fee {pct(costs.get('fee_rate'), 3)} per side, slippage {pct(costs.get('slippage'), 3)}, "
            f"round trip {pct(costs.get('round_trip_cost'), 3)}",
        ),
        ("Risk limits", risk or "defaults"),
        ("Retraining", f"every {request.get('retrain_every')} bars, mode {summary.get('retrain_mode')}"),
        ("Strategies voting", ", ".join(str(s) for s in request.get("include_strategies", [])) or "none"),
        ("Replay", f"{utc(int(row.created_at.timestamp() * 1000))}, id {row.id}, job {row.job_id}"),
    ]
    blocks: list[Any] = [Facts(tuple(items))]
    blocks += [Text(note, "note") for note in summary.get("notes", [])]
    comparisons = summary.get("comparisons", {})
    rows: list[tuple[str, ...]] = []

    def outcome(name: str, values: dict[str, Any] | None) -> None:
        if values:
            fills = values.get("fills")
            rows.append(
                (
                    name,
                    money(values.get("final_equity")),
                    pct(values.get("total_return"), 2, signed=True),
                    pct(values.get("max_drawdown")),
                    count(int(fills)) if fills is not None else "—",
                )
            )

    outcome("Mother AI", comparisons.get("mother_ai"))
    outcome("same voters, equal weights", comparisons.get("equal_weights"))
    for voter, values in comparisons.get("voters_alone", {}).items():
        outcome(f"{voter} alone ({values.get('kind', 'agent')})", values)
    for symbol, values in comparisons.get("buy_and_hold", {}).items():
        outcome(f"buy and hold {symbol}", values)
    blocks.append(
        Table(
            "outcomes",
            "Outcomes on the same candles and costs",
            (
                Column("who"),
                Column("final equity", numeric=True),
                Column("return", numeric=True),
                Column("max drawdown", numeric=True, description="Largest fall below the running peak."),
                Column("fills", numeric=True),
            ),
            tuple(rows),
            note="Each voter alone trades its own predictions through the same policy, risk checks and "
            "fills; buy and hold puts the whole balance in one symbol at the first decision's next open.",
        )
    )
    return Section("Summary", tuple(blocks))


def _equity_section(row: ReplayRun, series: dict[str, Any]) -> Section:
    times = np.asarray(series["step_times"], dtype=np.int64)
    curves = series.get("comparison_equity", {})
    lines: list[Line] = [Line("Mother AI", times, _floats(series["equity"]), color="#1f77b4", width=2.2)]
    if "equal_weights" in curves:
        lines.append(
            Line("equal weights", times, _floats(curves["equal_weights"]), color="#9467bd", dash="dash")
        )
    alone = [key for key in curves if key.startswith("alone:")]
    for i, key in enumerate(alone):  # the same colour as the voter's weight below
        color = VOTER_COLORS[i % len(VOTER_COLORS)]
        lines.append(Line(f"{key[6:]} alone", times, _floats(curves[key]), color=color, dash="dot"))
    for key, values in curves.items():
        if key.startswith("buy_and_hold:"):
            lines.append(
                Line(f"buy and hold {key[13:]}", times, _floats(values), color="#7f7f7f", dash="dot")
            )
    initial = float(row.request.get("initial_balance", 1))
    drawdown = drawdown_series(_floats(series["equity"]), initial)
    chart = Chart(
        "equity",
        "Equity: the Mother AI against buy and hold, each voter alone and equal weights",
        (
            Panel(tuple(lines), "equity (quote)", 2.4, y_format=",.2f"),
            drawdown_panel(times, drawdown, "Mother AI drawdown"),
        ),
        height=540,
        note="Equity is marked at each decision's close, before that decision's fill.",
    )
    return Section("Equity", (chart,))


def _voters_section(row: ReplayRun, series: dict[str, Any]) -> Section:
    times = np.asarray(series["step_times"], dtype=np.int64)
    voters = series.get("voters", {})
    colors = {name: VOTER_COLORS[i % len(VOTER_COLORS)] for i, name in enumerate(voters)}
    weights = tuple(
        Line(name, times, _floats(v["weight"]), color=colors[name], step=True) for name, v in voters.items()
    )
    probs = tuple(
        Line(f"{name} P(up)", times, _floats(v["prob_up"]), color=colors[name], width=1.0, dash="dot")
        for name, v in voters.items()
    )
    chart = Chart(
        "weights",
        "Voter weights over time, and each voter's P(up)",
        (
            Panel(weights, "weight", 1.4),
            Panel(probs, "P(up)", 1.0, y_format=".2f", levels=(Level(0.5, "0.5"),)),
        ),
        height=480,
        note="A voter's weight is its tracked skill (the calibration slope of its resolved predictions, "
        "shrunk toward a small prior while it has few); it moves as the replay's predictions resolve.",
    )
    rows = tuple(
        (
            v["voter"],
            v["kind"],
            v["symbol"],
            count(int(v["horizon"])),
            count(int(v["votes"])),
            count(int(v["resolved"])),
            pct(v.get("hit_rate")),
            number(v.get("final_weight"), 3),
        )
        for v in row.summary.get("voters", [])
    )
    table = Table(
        "voters",
        "Voters",
        (
            Column("voter"),
            Column("kind"),
            Column("symbol"),
            Column("horizon", numeric=True, description="Bars ahead each prediction is about."),
            Column("votes", numeric=True),
            Column("resolved", numeric=True),
            Column("hit rate", numeric=True, description="Resolved directional votes that were right."),
            Column("final weight", numeric=True),
        ),
        rows,
    )
    return Section("Voters", (chart, table))


def _wrapped(text: str, width: int = 90, most: int = 600) -> str:
    short = text if len(text) <= most else text[: most - 1] + "…"
    return "<br>".join(textwrap.wrap(short, width)) or "—"


def _price_section(
    row: ReplayRun,
    symbol: str,
    decisions: list[dict[str, Any]],
    fills: list[dict[str, Any]],
    candles: Any,
) -> Section:
    key = symbol.lower()
    if len(candles) == 0:
        return Section(f"{symbol}: decisions and fills", (Text(f"No stored {symbol} candles.", "warning"),))
    span = interval_ms(row.interval)
    close_time = candles.open_time + span
    series: list[Any] = [
        Candles(symbol, candles.open_time, candles.open, candles.high, candles.low, candles.close)
    ]
    styles: tuple[tuple[str, MarkerSymbol, str], ...] = (
        ("buy", "triangle-up", "#1b5e20"),
        ("sell", "triangle-down", "#b71c1c"),
    )
    for action, marker, color in styles:
        mine = [d for d in decisions if d["symbol"] == symbol and d["action"] == action]
        if not mine:
            continue
        at = np.searchsorted(close_time, np.asarray([int(d["time"]) for d in mine], dtype=np.int64))
        at = np.minimum(at, len(candles) - 1)
        # A decision is made on the close of the candle that closes at its time: drawn at that close.
        series.append(
            Markers(
                f"{action} decision",
                candles.open_time[at],
                candles.close[at],
                tuple(
                    f"Step {d['step']}: {action} at the close of {utc(int(d['time']))}<br>"
                    f"{_wrapped(str(d['reason']))}"
                    for d in mine
                ),
                marker,
                color,
                size=10,
            )
        )
    own = [f for f in fills if f.get("symbol") == symbol]
    if own:
        series.append(
            Markers(
                "fill",
                np.asarray([int(f["fill_time"]) for f in own], dtype=np.int64),
                np.asarray([float(f["price"]) for f in own], dtype=np.float64),
                tuple(
                    f"{f['side']} {f['quantity']} at {price(f['price'])} "
                    f"({utc(int(f['fill_time']))} open)<br>"
                    f"notional {money(f['notional'])}, fee {money(f['fee'], 4)}, realised pnl "
                    f"{money(f['realised_pnl'])}"
                    for f in own
                ),
                "circle",
                "#ffb300",
                size=7,
            )
        )
    chart = Chart(
        f"price-{key}",
        f"{symbol}: candles, the Mother AI's decisions and its fills",
        (Panel(tuple(series), f"price ({symbol})", 1.0, y_format=",.6~g"),),
        height=460,
        note="Triangles: buy and sell decisions at the close they were decided on (hover for the reason); "
        "dots: fills at the next candle's open, with slippage and fees.",
    )
    return Section(f"{symbol}: decisions and fills", (chart,))


def _fills_section(row: ReplayRun, fills: list[dict[str, Any]]) -> Section:
    n = len(fills)
    if n > MAX_ROWS:
        half = MAX_ROWS // 2
        shown = fills[:half] + fills[-half:]
        note = (
            f"Showing fills 1 to {count(half)} and {count(n - half + 1)} to {count(n)} of {count(n)}; "
            f"GET /api/mother-ai/replays/{row.id}?series=true lists every one."
        )
    else:
        shown, note = fills, ""
    rows = tuple(
        (
            count(int(f["step"])),
            utc(int(f["fill_time"])),
            str(f["symbol"]),
            str(f["side"]),
            price(f["price"]),
            str(f["quantity"]),
            money(f["notional"]),
            money(f["fee"], 4),
            money(f["realised_pnl"]),
        )
        for f in shown
    )
    table = Table(
        "fills",
        f"Fills ({count(n)})",
        (
            Column("step", numeric=True),
            Column("filled at (UTC)", description="Open time of the candle whose open filled the order."),
            Column("symbol"),
            Column("side"),
            Column("price", numeric=True),
            Column("quantity", numeric=True),
            Column("notional", numeric=True),
            Column("fee", numeric=True),
            Column("realised pnl", numeric=True),
        ),
        rows,
        note=note,
    )
    blocks: list[Any] = [table] if rows else [Text("The replay never traded.", "note")]
    return Section("Fills", tuple(blocks))


def _retrains_section(retrains: list[dict[str, Any]]) -> Section:
    rows = tuple(
        (
            str(r.get("voter")),
            utc(r.get("time")),
            "yes" if r.get("ok") else f"no: {r.get('error') or ''}",
            str(r.get("mode") or "—"),
            str(r.get("family") or "—"),
            count(int(r["rows"])) if r.get("rows") is not None else "—",
            number((r.get("oos_metrics") or {}).get("oos_auc"), 3),
            number(r.get("seconds"), 3),
        )
        for r in retrains
    )
    table = Table(
        "retrains",
        f"Retrains ({count(len(rows))})",
        (
            Column("voter"),
            Column("at (UTC)", description="The close the training ran at, on candles closed before it."),
            Column("ok"),
            Column("mode"),
            Column("model"),
            Column("rows", numeric=True),
            Column("OOS AUC", numeric=True, description="Walk-forward out-of-sample AUC of that training."),
            Column("seconds", numeric=True),
        ),
        rows,
    )
    return Section("Retrains", (table,) if rows else (Text("No retrain.", "note"),))
