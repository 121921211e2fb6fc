"""Strategy health: every finding on data built to trigger it, the lookahead check against a deliberately
leaking strategy (through the test-only hook), the score formula, determinism, and real data when present."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from backtester.runner import BacktestConfig, run_backtest
from ml_engine.indicators import compute
from strategy_engine import strategy_parser
from strategy_engine.spec import validate_spec
from strategy_engine.strategy_health import (
    IN_SAMPLE_FRACTION,
    MIN_TRADES,
    PENALTIES,
    HealthReport,
    check,
)
from strategy_engine.strategy_parser import _with_lookahead, evaluate
from tests.support.candles import make_candles, random_candles
from tests.support.data import shared_candles

EXAMPLES = Path(__file__).resolve().parents[2] / "storage" / "strategies" / "examples"
RSI = {"indicator": "rsi", "params": {"period": 14}}
CLOSE = {"price": "close"}


def spec(entry: Any, exit_: Any = None, **top: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {"name": "t", "symbol": "BTCUSDT", "interval": "1h", "entry": entry}
    if exit_ is not None:
        raw["exit"] = exit_
    raw.update(top)
    return raw


def cmp(left: Any, op: str, right: Any) -> dict[str, Any]:
    return {"left": left, "op": op, "right": right}


RSI_SWING = spec(cmp(RSI, "<", 30.0), cmp(RSI, ">", 60.0))


def codes(report: HealthReport, severity: str | None = None) -> list[str]:
    return [f.code for f in report.findings if severity is None or f.severity == severity]


def finding(report: HealthReport, code: str) -> Any:
    return next(f for f in report.findings if f.code == code)


def assert_consistent(report: HealthReport) -> None:
    """The documented score formula and activation rule hold."""
    errors = [f for f in report.findings if f.severity == "error"]
    warnings = [f for f in report.findings if f.severity == "warning"]
    expected = 0 if errors else max(0, 100 - sum(PENALTIES[f.code] for f in warnings))
    assert report.score == expected
    assert report.can_activate == (not errors)
    assert 0 <= report.score <= 100
    severities = [f.severity for f in report.findings]
    assert severities == sorted(severities, key=["error", "warning", "info"].index)
    json.dumps(report.to_dict())  # JSON-safe all the way down


def test_a_sound_strategy_has_no_error_and_reports_its_numbers() -> None:
    candles = random_candles(5000, seed=0)
    report = check(RSI_SWING, candles)
    assert_consistent(report)
    assert codes(report, "error") == []
    assert report.can_activate
    m = report.metrics
    assert m["bars"] == 5000 and m["warmup"] == 14
    assert m["lookahead_prefixes"] == [2500, 3500, 4500, 4999]
    signals = evaluate(RSI_SWING, candles)
    result = run_backtest(candles, signals.entries, signals.exits, BacktestConfig())
    assert m["n_trades"] == result.metrics.n_trades >= MIN_TRADES
    assert m["total_return"] == pytest.approx(result.metrics.total_return)
    assert m["max_drawdown"] == pytest.approx(result.metrics.max_drawdown)
    assert m["entry_bars"] == int(signals.entries.sum())
    split = int(5000 * IN_SAMPLE_FRACTION)
    inside = run_backtest(
        candles.slice(0, split), signals.entries[:split], signals.exits[:split], BacktestConfig()
    )
    assert m["in_sample"]["sharpe"] == pytest.approx(inside.metrics.sharpe)
    assert m["out_of_sample"]["bars"] == 5000 - split


def test_the_report_is_deterministic() -> None:
    candles = random_candles(3000, seed=1)
    assert check(RSI_SWING, candles).to_dict() == check(RSI_SWING, candles).to_dict()


@pytest.mark.parametrize("bars", [1, 5])
def test_lookahead_catches_a_leaking_strategy(bars: int) -> None:
    candles = random_candles(3000, seed=2)
    assert not any(f.code == "lookahead" for f in check(RSI_SWING, candles).findings)
    leaky = _with_lookahead(validate_spec(RSI_SWING), bars=bars)
    report = check(leaky, candles)
    assert_consistent(report)
    assert "lookahead" in codes(report, "error")
    assert report.score == 0 and not report.can_activate
    leak = finding(report, "lookahead")
    assert leak.path == "entry.left"
    assert "first 1500 candles" in leak.message  # the first (shortest) prefix already shows it


def test_lookahead_catches_a_leak_whose_signals_agree_on_every_prefix() -> None:
    # Rarely true, so the prefixes' last bars carry no signal either way: the operands still differ.
    candles = random_candles(3000, seed=3)
    rare = spec(cmp(RSI, "<", 5.0), cmp(RSI, ">", 95.0), stop_loss=0.1)
    leaky = _with_lookahead(validate_spec(rare), bars=1)
    assert "lookahead" in codes(check(leaky, candles), "error")


def test_rounding_ties_are_not_lookahead(monkeypatch: pytest.MonkeyPatch) -> None:
    """Recursive indicators may round differently on a shorter series; a comparison that flips between two
    inputs equal within 1e-9 is a tie, not a leak, while a real difference still is."""
    n = 400
    candles = make_candles(np.full(n, 100.0))  # sma(close) == close exactly on the full data
    real = compute  # what strategy_parser imported

    def shorter_rounds_down(factor: float) -> Any:
        def fake(name: str, columns: Any, params: Any) -> tuple[np.ndarray, ...]:
            outputs = real(name, columns, params)
            short = len(next(iter(columns.values()))) < n
            return tuple(out * factor for out in outputs) if short else outputs

        return fake

    raw = spec(cmp({"indicator": "sma", "params": {"period": 5}}, ">=", CLOSE), stop_loss=0.1)
    monkeypatch.setattr(strategy_parser, "compute", shorter_rounds_down(1 - 1e-15))
    assert "lookahead" not in codes(check(raw, candles))
    monkeypatch.setattr(strategy_parser, "compute", shorter_rounds_down(1 - 1e-6))
    assert "lookahead" in codes(check(raw, candles))


def test_an_invalid_spec_is_one_error_naming_its_path() -> None:
    raw = spec(cmp({"indicator": "rsi", "params": {"period": 0}}, "<", 30.0), stop_loss=0.1)
    report = check(raw, random_candles(100))
    assert_consistent(report)
    assert codes(report) == ["invalid_spec"]
    assert report.findings[0].path == "entry.left.params.period"
    assert report.score == 0 and not report.can_activate


def test_not_enough_data() -> None:
    raw = spec(cmp(CLOSE, ">", {"indicator": "sma", "params": {"period": 200}}), stop_loss=0.1)
    report = check(raw, random_candles(150))
    assert_consistent(report)
    assert codes(report, "error") == ["not_enough_data"]
    assert "199" in report.findings[0].message and "150" in report.findings[0].message


def test_entry_never_true_and_the_condition_behind_it() -> None:
    raw = spec({"all": [cmp(RSI, "<", 30.0), cmp(RSI, ">", 100.0)]}, cmp(RSI, ">", 60.0))
    report = check(raw, random_candles(2000))
    assert_consistent(report)
    assert codes(report, "error") == ["entry_never_true"]
    never = [f for f in report.findings if f.code == "condition_never_true"]
    assert [f.path for f in never] == ["entry.all[1]"]


def test_condition_without_data_is_never_true() -> None:
    candles = random_candles(2000)
    untraded = dataclasses.replace(candles, volume=np.zeros(2000))  # VWAP is 0/0 on every bar
    vwap = {"indicator": "vwap", "params": {"period": 5}}
    raw = spec({"any": [cmp(RSI, "<", 30.0), cmp(vwap, "<", CLOSE)]}, cmp(RSI, ">", 60.0))
    report = check(raw, untraded)
    never = finding(report, "condition_never_true")
    assert never.path == "entry.any[1]" and "never has data" in never.message


def test_condition_always_true_is_reported_by_path() -> None:
    raw = spec({"all": [cmp(RSI, "<", 30.0), cmp(CLOSE, ">", 0.0)]}, {"any": [cmp(RSI, ">", 60.0)]})
    report = check(raw, random_candles(3000))
    assert_consistent(report)
    assert [f.path for f in report.findings if f.code == "condition_always_true"] == ["entry.all[1]"]


@pytest.mark.parametrize(("stops", "severity"), [({}, "error"), ({"take_profit": 0.05}, "warning")])
def test_exit_never_reached(stops: dict[str, float], severity: str) -> None:
    raw = spec(cmp(RSI, "<", 30.0), cmp(RSI, ">", 100.0), **stops)
    report = check(raw, random_candles(3000))
    assert_consistent(report)
    assert finding(report, "exit_never_reached").severity == severity
    assert finding(report, "exit_never_reached").path == "exit"


def test_too_few_trades_says_how_many() -> None:
    candles = random_candles(3000, seed=5)
    raw = spec(cmp(RSI, "<", 20.0), cmp(RSI, ">", 60.0))
    report = check(raw, candles)
    assert_consistent(report)
    n_trades = report.metrics["n_trades"]
    assert 0 < n_trades < MIN_TRADES
    few = next(f for f in report.findings if f.code in ("few_trades", "very_few_trades"))
    assert few.code == ("very_few_trades" if n_trades < 10 else "few_trades")
    assert f"Only {n_trades} closed trade" in few.message


def up_then_down(n: int = 4000) -> np.ndarray:
    """Oscillation on a rise for the first 70%, then a steep fall: a swing strategy works, then fails."""
    t = np.arange(n, dtype=np.float64)
    split = int(n * IN_SAMPLE_FRACTION)
    trend = np.where(t < split, t * 0.0005, split * 0.0005 - (t - split) * 0.001)
    return 100.0 * np.exp(trend + 0.03 * np.sin(t / 6.0))


def test_overfitting_flags_a_collapse_out_of_sample() -> None:
    report = check(RSI_SWING, make_candles(up_then_down()))
    assert_consistent(report)
    assert {"overfit_sharpe", "overfit_return"} <= set(codes(report, "warning"))
    inside, outside = report.metrics["in_sample"], report.metrics["out_of_sample"]
    assert inside["sharpe"] > 0.5 > outside["sharpe"]
    assert f"{inside['sharpe']:.2f}" in finding(report, "overfit_sharpe").message


def test_overfitting_is_not_assessed_without_in_sample_trades() -> None:
    raw = spec(cmp(RSI, "<", 20.0), cmp(RSI, ">", 60.0))  # 1 or 2 trades on this walk
    report = check(raw, random_candles(2000, seed=0))
    assert report.metrics["in_sample"]["n_trades"] < 5
    assert finding(report, "overfit_not_assessed").severity == "info"


def test_risk_drawdown_losses_and_buy_and_hold() -> None:
    falling = 100.0 * np.exp(np.linspace(0.0, -1.2, 1000) + 0.01 * np.sin(np.arange(1000)))
    raw = spec(cmp(CLOSE, ">", 0.0), take_profit=5.0)  # always in: buy and hold with fees
    report = check(raw, make_candles(falling))
    assert_consistent(report)
    warnings = codes(report, "warning")
    assert {"large_drawdown", "loses_money", "entry_always_true", "condition_always_true"} <= set(warnings)
    assert "below_buy_and_hold" in codes(report, "info")
    assert report.metrics["max_drawdown"] > 0.5
    assert f"{report.metrics['max_drawdown']:.1%}" in finding(report, "large_drawdown").message


def test_beating_buy_and_hold_is_an_info() -> None:
    report = check(RSI_SWING, make_candles(up_then_down()))
    assert report.metrics["total_return"] > report.metrics["buy_and_hold_return"]
    assert finding(report, "beats_buy_and_hold").severity == "info"


def test_data_provenance_notes() -> None:
    candles = make_candles(up_then_down(), symbol="ETHUSDT", source="sample")
    report = check(RSI_SWING, candles)
    assert finding(report, "sample_data").severity == "info"
    assert "ETHUSDT" in finding(report, "other_data").message


def test_money_settings_come_from_the_config() -> None:
    candles = random_candles(3000, seed=0)
    cheap = check(RSI_SWING, candles, BacktestConfig(fee_rate=0.0))
    dear = check(RSI_SWING, candles, BacktestConfig(fee_rate=0.01))
    assert cheap.metrics["total_return"] > dear.metrics["total_return"]


@pytest.mark.parametrize("name", ["rsi_dip_trend", "macd_bollinger_combo"])
def test_examples_on_real_data_have_no_lookahead(name: str) -> None:
    candles = shared_candles("BTC_USDT_2h.csv", "BTCUSDT", "2h")
    raw = json.loads((EXAMPLES / f"{name}.spec.json").read_text())
    report = check(raw, candles)
    assert_consistent(report)
    assert codes(report, "error") == []
    assert report.metrics["n_trades"] > 0
    leaky = check(_with_lookahead(validate_spec(raw), bars=1), candles)
    assert "lookahead" in codes(leaky, "error")
