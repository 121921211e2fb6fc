"""Strategy health: is a spec sound on this data? A score 0..100, findings, and the numbers behind them.

``check(spec, candles, config=None) -> HealthReport``. Deterministic: the same spec and candles always give
the same report. ``config`` supplies money and fill settings (capital, fees, slippage; default
``BacktestConfig()``: 0.1% fee per side); the spec's stops and position size override it.

Findings (severity, code: when)

* error ``invalid_spec``: the spec does not validate (the message names the path).
* error ``not_enough_data``: fewer than warm-up + 2 candles: no signal can be filled.
* error ``lookahead``: evaluated on prefixes of the data (the first 50%, 70%, 90% and all but the last
  candle), some operand, comparison or signal on a shared bar differs from the full evaluation. A causal
  strategy cannot differ, so any difference means it reads candles after the bar it signals on. Operands
  are compared with a relative tolerance of 1e-9 of the series' magnitude (the recursive indicators round
  differently by ~1e-16 when the series is shorter), and a comparison that flips between two operands
  equal within that tolerance is a tie, not a leak.
* error ``entry_never_true``: the entry never fires on the data, so nothing about it can be measured.
* ``exit_never_reached``: an exit condition is given but never closes a trade (never true, or never
  true while in a position). Error without stops (positions are held forever), warning with them.
* warning ``condition_never_true`` / ``condition_always_true``: one comparison (named by its path) is
  false on every bar, or true on every bar where its inputs exist.
* warning ``entry_always_true``: the entry is true on every bar after the warm-up (buy and hold).
* warning ``very_few_trades`` (< 10 closed trades) / ``few_trades`` (< 30): too few for the statistics
  to mean anything; the message says how many.
* warning ``overfit_sharpe``: on a 70/30 split in time order (each part backtested on its own, signals
  from the full evaluation, which is causal), the in-sample annualised Sharpe is above 0.5 and the
  out-of-sample Sharpe is below half of it (no trades out of sample counts as Sharpe 0).
* warning ``overfit_return``: in-sample CAGR above 5% and out-of-sample CAGR below half of it (CAGR, not
  total return, because the parts have different lengths).
  Both need at least 5 closed in-sample trades; otherwise info ``overfit_not_assessed``.
* warning ``large_drawdown``: maximum drawdown above 50%.
* warning ``loses_money``: total return after fees below 0.
* info ``below_buy_and_hold`` / ``beats_buy_and_hold``: total return after fees against holding the
  asset over the same candles (no fees).
* info ``sample_data`` (measured on synthetic sample candles), ``other_data`` (candles of another
  symbol or interval than the spec's).

Findings about a spec node carry its dotted ``path``; when the spec came from a block graph, ``check``'s
``nodes`` (``json_strategy_parser.BlockStrategy.nodes``) turns that path into ``node_ids``, the blocks the
editor should highlight (empty for specs written as JSON and for findings about no node).

Score: 0 if there is any error. Otherwise 100 minus the penalty of every warning (``PENALTIES``: 10 per
condition never/always true, 15 entry always true, 10 exit never reached, 30 very few trades, 15 few
trades, 20 Sharpe drop, 10 return drop, 15 large drawdown, 15 loses money), floored at 0. Infos cost
nothing. ``can_activate`` is True exactly when there is no error.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal

import numpy as np

from backtester.metrics import Metrics
from backtester.runner import BacktestConfig, BacktestResult, run_backtest
from strategy_engine.spec import StrategySpec, validate_spec
from strategy_engine.strategy_parser import Trace, backtest_config, trace, warmup
from utils.errors import InvalidInput
from utils.market_data.candles import Candles

__all__ = ["PENALTIES", "Finding", "HealthReport", "check"]

Severity = Literal["error", "warning", "info"]

PENALTIES: dict[str, int] = {
    "condition_never_true": 10,
    "condition_always_true": 10,
    "entry_always_true": 15,
    "exit_never_reached": 10,
    "very_few_trades": 30,
    "few_trades": 15,
    "overfit_sharpe": 20,
    "overfit_return": 10,
    "large_drawdown": 15,
    "loses_money": 15,
}

PREFIX_FRACTIONS: tuple[float, ...] = (0.5, 0.7, 0.9)
IN_SAMPLE_FRACTION = 0.7
MIN_TRADES = 30
VERY_FEW_TRADES = 10
OVERFIT_MIN_TRADES = 5
OVERFIT_MIN_SHARPE = 0.5
OVERFIT_MIN_CAGR = 0.05
OVERFIT_KEEP = 0.5  # out-of-sample must keep at least half of the in-sample figure
MAX_DRAWDOWN = 0.5
LOOKAHEAD_RTOL = 1e-9

_SEVERITY_ORDER = {"error": 0, "warning": 1, "info": 2}


@dataclass(frozen=True, slots=True)
class Finding:
    severity: Severity
    code: str
    message: str
    path: str | None = None  # the spec node it is about, when there is one
    node_ids: tuple[str, ...] = ()  # the blocks behind `path`, for a spec built from blocks

    def to_dict(self) -> dict[str, Any]:
        return {
            "severity": self.severity,
            "code": self.code,
            "message": self.message,
            "path": self.path,
            "node_ids": list(self.node_ids),
        }


@dataclass(frozen=True, slots=True)
class HealthReport:
    score: int
    findings: list[Finding]
    metrics: dict[str, Any] = field(default_factory=dict)
    can_activate: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "score": self.score,
            "can_activate": self.can_activate,
            "findings": [f.to_dict() for f in self.findings],
            "metrics": self.metrics,
        }


def check(
    spec: StrategySpec | Mapping[str, Any],
    candles: Candles,
    config: BacktestConfig | None = None,
    *,
    nodes: Mapping[str, Sequence[str]] | None = None,
) -> HealthReport:
    """Health of ``spec`` on ``candles`` (see the module docstring for every finding and the score);
    ``nodes`` maps spec paths to the blocks they came from, for the findings' ``node_ids``."""
    report = _check(spec, candles, config)
    if not nodes:
        return report
    findings = [
        replace(f, node_ids=tuple(nodes.get(f.path, ()))) if f.path is not None else f
        for f in report.findings
    ]
    return replace(report, findings=findings)


def _check(
    spec: StrategySpec | Mapping[str, Any], candles: Candles, config: BacktestConfig | None
) -> HealthReport:
    findings: list[Finding] = []
    try:
        valid = validate_spec(spec)
    except InvalidInput as exc:
        path = exc.details.get("path") if isinstance(exc.details, dict) else None
        return _report([Finding("error", "invalid_spec", exc.message, path)], {})

    n = len(candles)
    bars_needed = warmup(valid)
    metrics: dict[str, Any] = {"bars": n, "warmup": bars_needed}
    findings.extend(_data_notes(valid, candles))
    if n < bars_needed + 2:
        findings.append(
            Finding(
                "error",
                "not_enough_data",
                f"The strategy needs {bars_needed} bars of warm-up and at least 2 more to trade; "
                f"the data has {n}.",
            )
        )
        return _report(findings, metrics)
    metrics["first_open_time"] = int(candles.open_time[0])
    metrics["last_open_time"] = int(candles.open_time[-1])

    full = trace(valid, candles)
    findings.extend(_lookahead(valid, candles, full, metrics))
    findings.extend(_conditions(full, n))
    metrics["entry_bars"] = int(np.count_nonzero(full.entries))
    metrics["exit_bars"] = int(np.count_nonzero(full.exits))
    if not full.entries.any():
        findings.append(
            Finding(
                "error",
                "entry_never_true",
                f"The entry condition is never true on these {n} candles.",
                "entry",
            )
        )
        return _report(findings, metrics)
    if full.entries[bars_needed:].all():
        findings.append(
            Finding(
                "warning",
                "entry_always_true",
                "The entry condition is true on every bar after the warm-up: this is buy and hold.",
                "entry",
            )
        )

    settings = backtest_config(valid, config)
    result = run_backtest(candles, full.entries, full.exits, settings)
    metrics.update(_metrics(result.metrics))
    metrics["final_equity"] = _num(result.final_equity)
    metrics["open_trade"] = result.open_trade is not None
    findings.extend(_exits(valid, result))
    findings.extend(_trades(result.metrics.n_trades))
    findings.extend(_overfitting(candles, full, settings, metrics))
    findings.extend(_risk(result.metrics))
    return _report(findings, metrics)


def _report(findings: list[Finding], metrics: dict[str, Any]) -> HealthReport:
    ordered = sorted(findings, key=lambda f: _SEVERITY_ORDER[f.severity])  # stable: discovery order kept
    errors = any(f.severity == "error" for f in ordered)
    penalty = sum(PENALTIES.get(f.code, 0) for f in ordered if f.severity == "warning")
    score = 0 if errors else max(0, 100 - penalty)
    return HealthReport(score, ordered, metrics, can_activate=not errors)


def _num(value: float | None) -> float | None:
    """A JSON-safe number: None for undefined or non-finite values."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _when(candles: Candles, bar: int) -> str:
    moment = datetime.fromtimestamp(int(candles.open_time[bar]) / 1000, tz=UTC)
    return f"bar {bar} ({moment:%Y-%m-%d %H:%M} UTC)"


def _data_notes(spec: StrategySpec, candles: Candles) -> list[Finding]:
    notes = []
    if candles.source == "sample":
        notes.append(
            Finding("info", "sample_data", "Measured on synthetic sample candles, not real market data.")
        )
    if (candles.symbol, candles.interval) != (spec.symbol, spec.interval):
        notes.append(
            Finding(
                "info",
                "other_data",
                f"Measured on {candles.symbol} {candles.interval} candles; the strategy trades "
                f"{spec.symbol} {spec.interval}.",
            )
        )
    return notes


# ------------------------------------------------------------------------------------------- lookahead


def _prefix_lengths(n: int) -> list[int]:
    lengths = {int(n * fraction) for fraction in PREFIX_FRACTIONS} | {n - 1}
    return sorted(m for m in lengths if 2 <= m < n)


def _lookahead(spec: StrategySpec, candles: Candles, full: Trace, metrics: dict[str, Any]) -> list[Finding]:
    prefixes = _prefix_lengths(len(candles))
    metrics["lookahead_prefixes"] = prefixes
    for m in prefixes:
        part = trace(spec, candles.slice(0, m))
        problem = _first_difference(full, part, m)
        if problem is not None:
            path, bar, what = problem
            return [
                Finding(
                    "error",
                    "lookahead",
                    f"Lookahead: {what} on {_when(candles, bar)} differs between the first {m} candles and "
                    "the full data, so the strategy uses candles after the bar it signals on.",
                    path,
                )
            ]
    return []


def _tolerance(values: np.ndarray) -> float:
    finite = np.abs(values[np.isfinite(values)])
    return LOOKAHEAD_RTOL * max(1.0, float(finite.max()) if finite.size else 1.0)


def _first_difference(full: Trace, part: Trace, m: int) -> tuple[str | None, int, str] | None:
    """(path, bar, description) of the first disagreement on bars 0..m-1, or None."""
    for path, values in full.operands.items():
        ours, theirs = values[:m], part.operands[path]
        nan_ours, nan_theirs = np.isnan(ours), np.isnan(theirs)
        with np.errstate(invalid="ignore"):
            far = np.abs(ours - theirs) > _tolerance(ours)
        bad = (nan_ours != nan_theirs) | (far & ~nan_ours & ~nan_theirs)
        if bad.any():
            bar = int(np.argmax(bad))
            return path, bar, f"the value of {path} ({theirs[bar]:g} vs {ours[bar]:g})"
    ties = np.zeros(m, dtype=bool)
    for whole, prefix in zip(full.comparisons, part.comparisons, strict=True):
        flipped = whole.result[:m] != prefix.result
        if not flipped.any():
            continue
        tie = _ties(whole, m)
        if (flipped & ~tie).any():
            bar = int(np.argmax(flipped & ~tie))
            return whole.path, bar, f"the result of {whole.path}"
        ties |= flipped
    for name, whole_signal, prefix_signal in (
        ("entry", full.entries, part.entries),
        ("exit", full.exits, part.exits),
    ):
        bad = (whole_signal[:m] != prefix_signal) & ~ties
        if bad.any():
            bar = int(np.argmax(bad))
            return name, bar, f"the {name} signal"
    return None


def _ties(comparison: Any, m: int) -> np.ndarray:
    """Bars where both inputs are equal within the tolerance (on this or, for crosses, the previous bar)."""
    left = np.broadcast_to(np.asarray(comparison.left, dtype=np.float64), comparison.result.shape)[:m]
    right = np.broadcast_to(np.asarray(comparison.right, dtype=np.float64), comparison.result.shape)[:m]
    with np.errstate(invalid="ignore"):
        tie = np.abs(left - right) <= max(_tolerance(left), _tolerance(right))
    if comparison.op.startswith("crosses"):
        tie[1:] |= tie[:-1].copy()
    return tie


# ------------------------------------------------------------------------------------------ conditions


def _conditions(full: Trace, n: int) -> list[Finding]:
    findings = []
    for comparison in full.comparisons:
        known = int(np.count_nonzero(comparison.known))
        true = int(np.count_nonzero(comparison.result))
        if known == 0:
            findings.append(
                Finding(
                    "warning",
                    "condition_never_true",
                    f"{comparison.path} never has data on these {n} candles (its warm-up is longer).",
                    comparison.path,
                )
            )
        elif true == 0:
            findings.append(
                Finding(
                    "warning",
                    "condition_never_true",
                    f"{comparison.path} is never true on these candles.",
                    comparison.path,
                )
            )
        elif true == known:
            findings.append(
                Finding(
                    "warning",
                    "condition_always_true",
                    f"{comparison.path} is true on every bar where its inputs exist ({known} bars).",
                    comparison.path,
                )
            )
    return findings


def _exits(spec: StrategySpec, result: BacktestResult) -> list[Finding]:
    if spec.exit is None:
        return []
    by_signal = sum(1 for trade in result.trades if trade.exit_reason == "signal")
    if by_signal:
        return []
    has_stops = spec.stop_loss is not None or spec.take_profit is not None or spec.trailing_stop is not None
    if has_stops:
        return [
            Finding(
                "warning",
                "exit_never_reached",
                "The exit condition never closed a trade; only the stops did.",
                "exit",
            )
        ]
    return [
        Finding(
            "error",
            "exit_never_reached",
            "The exit condition never closes the position (there are no stops), so it is held to the end.",
            "exit",
        )
    ]


def _trades(n_trades: int) -> list[Finding]:
    if n_trades >= MIN_TRADES:
        return []
    code = "very_few_trades" if n_trades < VERY_FEW_TRADES else "few_trades"
    return [
        Finding(
            "warning",
            code,
            f"Only {n_trades} closed trade(s) on this data; at least {MIN_TRADES} are needed for the "
            "statistics to mean anything.",
        )
    ]


# ------------------------------------------------------------------------------- overfitting and risk


def _metrics(m: Metrics) -> dict[str, Any]:
    return {
        "n_trades": m.n_trades,
        "total_return": _num(m.total_return),
        "cagr": _num(m.cagr),
        "sharpe": _num(m.sharpe),
        "sortino": _num(m.sortino),
        "max_drawdown": _num(m.max_drawdown),
        "win_rate": _num(m.win_rate),
        "profit_factor": _num(m.profit_factor),
        "exposure": _num(m.exposure),
        "buy_and_hold_return": _num(m.buy_and_hold_return),
    }


def _overfitting(
    candles: Candles, full: Trace, settings: BacktestConfig, metrics: dict[str, Any]
) -> list[Finding]:
    n = len(candles)
    split = int(n * IN_SAMPLE_FRACTION)
    if split < 2 or n - split < 2:
        return [Finding("info", "overfit_not_assessed", "Too few candles to compare in- and out-of-sample.")]
    parts = {}
    for name, (start, stop) in (("in_sample", (0, split)), ("out_of_sample", (split, n))):
        result = run_backtest(
            candles.slice(start, stop), full.entries[start:stop], full.exits[start:stop], settings
        )
        parts[name] = result.metrics
        metrics[name] = {"bars": stop - start, **_metrics(result.metrics)}
    metrics["split_open_time"] = int(candles.open_time[split])
    inside, outside = parts["in_sample"], parts["out_of_sample"]
    if inside.n_trades < OVERFIT_MIN_TRADES:
        return [
            Finding(
                "info",
                "overfit_not_assessed",
                f"Only {inside.n_trades} closed trade(s) in the first 70% of the data: in- and out-of-sample "
                "results cannot be compared.",
            )
        ]
    findings = []
    sharpe_in, sharpe_out = inside.sharpe, outside.sharpe if outside.sharpe is not None else 0.0
    if sharpe_in is not None and sharpe_in > OVERFIT_MIN_SHARPE and sharpe_out < OVERFIT_KEEP * sharpe_in:
        findings.append(
            Finding(
                "warning",
                "overfit_sharpe",
                f"Sharpe drops from {sharpe_in:.2f} on the first 70% of the data to {sharpe_out:.2f} on the "
                "last 30%: the strategy may be fitted to the past.",
            )
        )
    cagr_in, cagr_out = inside.cagr, outside.cagr
    if (
        cagr_in is not None
        and cagr_in > OVERFIT_MIN_CAGR
        and (cagr_out is None or cagr_out < OVERFIT_KEEP * cagr_in)
    ):
        shown = "undefined" if cagr_out is None else f"{cagr_out:.1%}"
        findings.append(
            Finding(
                "warning",
                "overfit_return",
                f"Annualised return drops from {cagr_in:.1%} on the first 70% of the data to {shown} on the "
                "last 30%.",
            )
        )
    return findings


def _risk(m: Metrics) -> list[Finding]:
    findings = []
    if m.max_drawdown > MAX_DRAWDOWN:
        findings.append(
            Finding(
                "warning",
                "large_drawdown",
                f"Maximum drawdown is {m.max_drawdown:.1%} (above {MAX_DRAWDOWN:.0%}).",
            )
        )
    if m.total_return < 0:
        findings.append(
            Finding(
                "warning", "loses_money", f"The strategy loses {-m.total_return:.1%} after fees on this data."
            )
        )
    versus = f"{m.total_return:.1%} after fees against {m.buy_and_hold_return:.1%} for buy and hold"
    if m.total_return > m.buy_and_hold_return:
        findings.append(Finding("info", "beats_buy_and_hold", f"Beats buy and hold: {versus}."))
    else:
        findings.append(Finding("info", "below_buy_and_hold", f"Does not beat buy and hold: {versus}."))
    return findings


# --- a strategy saved from an optimisation ---------------------------------------------------------

# Health points an optimisation's verdict costs: an optimised winner is judged by how it was found too.
VERDICT_PENALTIES: dict[str, int] = {"credible": 0, "doubtful": 15, "likely_overfit": 30}


@dataclass(frozen=True, slots=True)
class OptimisationNote:
    """What an optimisation said of the winner a strategy was saved from."""

    optimization_id: str
    level: str  # credible, doubtful or likely_overfit (backtester/optimize/statistics.verdict)
    reasons: tuple[str, ...]
    n_trials: int
    dsr: float | None
    pbo: float | None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> OptimisationNote:
        """The note as ``to_dict`` stored it in a version's health."""
        return cls(
            str(data["optimization_id"]),
            str(data["verdict"]),
            tuple(str(r) for r in data.get("reasons") or ()),
            int(data["n_trials"]),
            None if data.get("dsr") is None else float(data["dsr"]),
            None if data.get("pbo") is None else float(data["pbo"]),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "optimization_id": self.optimization_id,
            "verdict": self.level,
            "reasons": list(self.reasons),
            "n_trials": self.n_trials,
            "dsr": self.dsr,
            "pbo": self.pbo,
        }


def with_optimisation(health: Mapping[str, Any], note: OptimisationNote) -> dict[str, Any]:
    """`health` (a HealthReport's dict) with the optimisation's verdict as a finding, its penalty taken
    from the score, and the note itself under ``optimisation``. A verdict never blocks activation."""
    severity: Severity = "info" if note.level == "credible" else "warning"
    detail = f" (deflated Sharpe {note.dsr:.2f})" if note.dsr is not None else ""
    message = (
        f"Saved from optimisation {note.optimization_id}: {note.level.replace('_', ' ')} after "
        f"{note.n_trials} trials{detail}. " + " ".join(note.reasons[:2])
    ).strip()
    finding = Finding(severity, "optimisation_verdict", message).to_dict()
    findings = sorted([*health.get("findings", []), finding], key=lambda f: _SEVERITY_ORDER[f["severity"]])
    score = int(health.get("score", 0))
    if score > 0:
        score = max(0, score - VERDICT_PENALTIES.get(note.level, 0))
    return {**health, "score": score, "findings": findings, "optimisation": note.to_dict()}
