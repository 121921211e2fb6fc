"""The picture of a stored optimisation: ``optimization_report_html`` (what GET
/api/optimizations/{id}/report serves).

Built from the stored result alone (``backtester.optimize.service``): the verdict and the reasons behind
it first, then the numbers that decide it (trials, their spread, the deflated Sharpe ratio, the
probability of backtest overfitting), the winner's neighbourhood as a heatmap (a plateau or a spike),
every trial's objective in the order it was tried, the winner's equity (in walk-forward: the stitched
out-of-sample curve, the only honest one) and, for walk-forward, one row per window.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from sqlalchemy.orm import Session, sessionmaker

from backtester.optimize import service
from db.models import OptimizationRun
from utils.reports.document import (
    Block,
    Chart,
    Column,
    Facts,
    Heatmap,
    Line,
    Markers,
    Panel,
    Report,
    Section,
    Table,
    Text,
    drawdown_panel,
)
from utils.reports.format import count, money, number, pct, time_range, utc
from utils.reports.render import render_html

__all__ = ["optimization_report", "optimization_report_html"]

SAMPLE_WARNING = (
    "Sample data: these candles are synthetic (the deterministic generator in utils/market_data/sample.py), "
    "not a market's. The numbers below say nothing about real trading."
)
LEVELS = {
    "credible": "Credible",
    "doubtful": "Doubtful",
    "likely_overfit": "Likely overfit",
}


def optimization_report_html(sessions: sessionmaker[Session], optimization_id: str, now_ms: int) -> str:
    """The report page of a stored optimisation; NotFound (optimization_not_found) for an unknown id."""
    return render_html(optimization_report(service.get(sessions, optimization_id), now_ms))


def optimization_report(row: OptimizationRun, now_ms: int) -> Report:
    result: Mapping[str, Any] = row.result
    verdict = result["verdict"]
    sections = [
        Section(
            "Verdict",
            (
                Text(
                    f"{LEVELS.get(verdict['level'], verdict['level'])}: " + " ".join(verdict["reasons"]),
                    tone="plain" if verdict["level"] == "credible" else "warning",
                ),
                _facts(row, result),
            ),
        )
    ]
    if result.get("statistics"):
        sections.append(Section("Statistics", _statistics(result["statistics"])))
    if result.get("trials"):
        sections.append(Section("Trials", (_trials_chart(result),)))
    curve = result.get("equity_curve")
    if curve:
        title = "Stitched out-of-sample equity" if result["kind"] == "walk_forward" else "The winner's equity"
        sections.append(Section(title, (_curve_chart(curve, title),)))
    if result.get("walk_forward"):
        sections.append(Section("Walk-forward windows", _windows(result["walk_forward"])))
    sample = result.get("data_source") == "sample"
    title = f"Optimisation of {row.strategy} on {row.symbol} {row.interval}"
    return Report(
        kind="optimization",
        subject=row.id,
        title=f"[SAMPLE DATA] {title}" if sample else title,
        subtitle=f"{result['kind'].replace('_', '-')} · objective {row.request['objective']} "
        f"({result['direction']}) · {count(int(result['n_trials']))} trials",
        sections=tuple(sections),
        warning=SAMPLE_WARNING if sample else None,
        footer=f"optimisation {row.id} · job {row.job_id}",
        generated_at=now_ms,
    )


def _facts(row: OptimizationRun, result: Mapping[str, Any]) -> Facts:
    winner = result.get("winner")
    values = ", ".join(f"{k} = {v:g}" for k, v in (winner or {}).get("values", {}).items()) or "none"
    constraints = row.request.get("constraints") or {}
    return Facts(
        (
            ("strategy", f"{row.strategy} ({row.strategy_kind})"),
            ("range", time_range(result["start_time"], result["end_time"])),
            ("bars", count(int(result["n_bars"]))),
            ("data", str(result.get("data_source"))),
            ("sampler", f"{row.request.get('sampler')} (seed {row.request.get('seed')})"),
            ("constraints", ", ".join(f"{k} {v}" for k, v in constraints.items() if v) or "none"),
            ("winner", values),
            ("winner's objective", number((winner or {}).get("objective"))),
        )
    )


def _statistics(stats: Mapping[str, Any]) -> tuple[Block, ...]:
    spread = stats["spread"]
    dsr = stats.get("deflated_sharpe") or {}
    pbo = stats.get("pbo") or {}
    rows = (
        ("trials", count(int(spread["count"])), "Trials run, the winner among them."),
        ("undefined", count(int(spread["n_undefined"])), "Trials whose objective was undefined."),
        ("best / median", f"{number(spread['best'])} / {number(spread['median'])}", "Of the objective."),
        ("quartiles", f"{number(spread['q1'])} / {number(spread['q3'])}", "25% and 75% of the trials."),
        (
            "deflated Sharpe ratio",
            number(dsr.get("dsr")),
            "P(true Sharpe > what the best of N luck reaches).",
        ),
        ("probabilistic Sharpe", number(dsr.get("psr")), "P(true Sharpe > 0), ignoring the trials."),
        ("expected max Sharpe", number(dsr.get("expected_max_sharpe")), "Per bar, under no edge."),
        (
            "PBO",
            pct(pbo.get("pbo")),
            "Splits where the in-sample winner fell below the median out of sample.",
        ),
        (
            "P(out-of-sample loss)",
            pct(pbo.get("prob_oos_loss")),
            "Splits where the winner lost out of sample.",
        ),
    )
    table = Table(
        "statistics",
        "What the verdict is built from",
        (Column("statistic"), Column("value", numeric=True), Column("meaning")),
        tuple(rows),
        note=stats.get("pbo_unavailable") or "",
    )
    blocks: list[Block] = [table]
    hood = stats.get("neighbourhood")
    if hood:
        z = np.array(
            [[np.nan if v is None else float(v) for v in row] for row in hood["z"]], dtype=np.float64
        )
        y_name = hood["y_param"] or ""
        blocks.append(
            Chart(
                "neighbourhood",
                f"The winner's neighbourhood: a {hood['shape']}",
                (
                    Panel(
                        (
                            Heatmap(
                                "objective",
                                tuple(f"{hood['x_param']}={v:g}" for v in hood["x_values"]),
                                tuple(f"{y_name}={v:g}" if v is not None else "" for v in hood["y_values"]),
                                z,
                            ),
                        ),
                    ),
                ),
                x_kind="category",
                height=360,
                note=f"Neighbours keep {pct(hood.get('mean_ratio'))} of the winner's objective on average "
                f"(at worst {pct(hood.get('min_ratio'))}).",
            )
        )
    return tuple(blocks)


def _trials_chart(result: Mapping[str, Any]) -> Chart:
    trials: Sequence[Mapping[str, Any]] = result["trials"]
    feasible = [t for t in trials if t["feasible"] and t["objective"] is not None]
    other = [t for t in trials if not t["feasible"] and t["objective"] is not None]
    series = []
    for name, group, colour in (
        ("feasible", feasible, "#1565c0"),
        ("outside the constraints", other, "#9e9e9e"),
    ):
        if group:
            series.append(
                Markers(
                    name,
                    np.array([t["number"] for t in group], dtype=np.float64),
                    np.array([t["objective"] for t in group], dtype=np.float64),
                    tuple(", ".join(f"{k}={v:g}" for k, v in t["values"].items()) for t in group),
                    color=colour,
                    size=7.0,
                )
            )
    return Chart(
        "trials",
        "Every trial's objective, in the order tried",
        (Panel(tuple(series), "objective"),),
        x_kind="number",
        x_title="trial",
        height=320,
    )


def _curve_chart(curve: Sequence[Mapping[str, Any]], title: str) -> Chart:
    times = np.array([p["time"] for p in curve], dtype=np.int64)
    equity = np.array([p["equity"] for p in curve], dtype=np.float64)
    drawdown = np.array([p["drawdown"] for p in curve], dtype=np.float64)
    return Chart(
        "equity",
        title,
        (
            Panel((Line("equity", times, equity, color="#1565c0"),), "equity", 3.0, y_format=",.0f"),
            drawdown_panel(times, drawdown),
        ),
    )


def _windows(wf: Mapping[str, Any]) -> tuple[Block, ...]:
    rows = []
    for window in wf["windows"]:
        winner = window.get("winner") or {}
        oos = window.get("oos_metrics") or {}
        rows.append(
            (
                str(window["index"] + 1),
                f"{utc(window['in_sample']['start_time'])} → {utc(window['in_sample']['end_time'])}",
                f"{utc(window['out_of_sample']['start_time'])} → {utc(window['out_of_sample']['end_time'])}",
                ", ".join(f"{k}={v:g}" for k, v in winner.get("values", {}).items()) or "none",
                number(winner.get("objective")),
                pct(oos.get("total_return"), signed=True),
                number(oos.get("sharpe")),
                LEVELS.get(window["verdict"]["level"], window["verdict"]["level"]),
            )
        )
    columns = (
        Column("window", numeric=True),
        Column("in sample"),
        Column("out of sample"),
        Column("winner"),
        Column("in-sample objective", numeric=True),
        Column("OOS return", numeric=True),
        Column("OOS Sharpe", numeric=True),
        Column("window verdict"),
    )
    metrics = wf.get("oos_metrics") or {}
    stability = wf["stability"]
    facts = Facts(
        (
            ("stitched OOS return", pct(metrics.get("total_return"), signed=True)),
            ("stitched OOS Sharpe", number(metrics.get("sharpe"))),
            ("stitched OOS max drawdown", pct(metrics.get("max_drawdown"))),
            ("final equity", money(metrics.get("final_equity"))),
            ("winners stable", "yes" if stability["stable"] else "no"),
            ("most common winner's share", pct(stability.get("modal_share"))),
        )
    )
    return facts, Table("windows", f"{wf['mode']} windows", columns, tuple(rows))
