"""The picture of a registered model version: ``model_report_html`` (what GET
/api/agents/{symbol}/models/{version}/report serves).

Built from the model's registry row (``ml_engine.model_registry``) and the metadata JSON saved beside its
artifact, whose ``report`` is the trainer's ``TrainReport`` (``ml_engine.train_report``). Nothing is
unpickled: the artifact itself is never read. The page shows:

* the out-of-sample (walk-forward) metrics, pooled and per fold, against the majority-class baseline, and
  every candidate's pooled numbers (the selection);
* the calibration curve: pooled OOS rows in deciles of P(up), the mean predicted P(up) against the share
  that went up;
* permutation feature importances, measured on out-of-sample rows;
* the fee-aware OOS backtest of the model's signals against buy and hold of the same bars.

Per-fold metrics, calibration, importances and the curve are recorded by trainings since reports exist
(``TrainReport.diagnostics``); an older model's page shows what it has and says what it lacks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from agents.service import AgentService
from backtester.metrics import drawdown_series
from db.models import ModelVersion
from ml_engine import model_registry
from utils.errors import NotFound
from utils.reports.document import (
    Bars,
    Chart,
    Column,
    Facts,
    Level,
    Line,
    Panel,
    Report,
    Section,
    Table,
    Text,
)
from utils.reports.format import count, number, pct, time_range, utc
from utils.reports.render import render_html

__all__ = ["model_report", "model_report_html"]

SAMPLE_WARNING = (
    "Sample data: this model was trained on synthetic candles (the deterministic generator in "
    "utils/market_data/sample.py), not a market's. Its numbers say nothing about real trading."
)
NOT_RECORDED = (
    "This model was trained before trainings recorded per-fold metrics, calibration, feature importances and "
    "the out-of-sample curve; train the agent again (POST /api/agents/{symbol}/train) to see them."
)
METRICS: tuple[tuple[str, str, str], ...] = (  # key, label, definition
    ("oos_accuracy", "accuracy", "Share of OOS rows whose predicted class was right."),
    (
        "oos_balanced_accuracy",
        "balanced accuracy",
        "Mean of the per-class recalls: 0.5 is chance for two classes.",
    ),
    (
        "oos_auc",
        "AUC",
        "Probability that an up row gets a higher P(up) than a row that is not up; 0.5 is no skill.",
    ),
    ("oos_log_loss", "log loss", "Mean negative log-likelihood of the true class (lower is better)."),
    (
        "oos_brier",
        "Brier score",
        "Mean squared error of P(up) against 'went up' (lower is better; 0.25 is a coin).",
    ),
    ("baseline_accuracy", "baseline accuracy", "Accuracy of always predicting the training majority class."),
    ("oos_up_rate", "up rate", "Share of OOS rows labelled up."),
    ("n_oos", "OOS rows", "Labelled out-of-sample rows the metrics pool."),
)


def model_report_html(agents: AgentService, models_dir: Path, symbol: str, version: str, now_ms: int) -> str:
    """The report page of one model version; NotFound (agent_not_found, model_not_found) otherwise."""
    return render_html(model_report(agents, models_dir, symbol, version, now_ms))


def model_report(agents: AgentService, models_dir: Path, symbol: str, version: str, now_ms: int) -> Report:
    record = agents.record(symbol)
    row = model_registry.get_version(agents.sessions, symbol, version)
    if row is None:
        raise NotFound(f"No model version {version!r} for {symbol}.", code="model_not_found")
    metadata = model_registry.read_metadata(models_dir, row)
    return build_report(row, metadata, record.active_version == version, now_ms)


def build_report(row: ModelVersion, metadata: dict[str, Any] | None, active: bool, now_ms: int) -> Report:
    meta = metadata or {}
    report: dict[str, Any] = meta.get("report") or {}
    diagnostics: dict[str, Any] | None = report.get("diagnostics")
    sample = meta.get("data_source") == "sample"
    title = f"Model {row.symbol} {row.version}"
    sections = [_summary(row, meta, report, active)]
    if diagnostics is None:
        sections.append(
            Section("Not recorded", (Text(NOT_RECORDED.replace("{symbol}", row.symbol), "warning"),))
        )
    sections.append(_metrics_section(row, report, diagnostics))
    if diagnostics is not None:
        sections += [
            _calibration_section(diagnostics),
            _importance_section(diagnostics),
            _backtest_section(report, diagnostics),
        ]
    return Report(
        kind="model",
        subject=f"{row.symbol}/{row.version}",
        title=f"[SAMPLE DATA] {title}" if sample else title,
        subtitle=f"{report.get('chosen', meta.get('family', '?'))} · {row.interval} candles · predicts "
        f"{row.horizon} bars ahead · trained {utc(int(row.trained_at.timestamp() * 1000))}"
        f"{' · active' if active else ''}",
        sections=tuple(sections),
        warning=SAMPLE_WARNING if sample else None,
        footer=f"Model {row.symbol} {row.version} (sha256 {row.sha256[:12]}…); every number here is from its "
        "training's walk-forward out-of-sample evaluation.",
        generated_at=now_ms,
    )


def _summary(row: ModelVersion, meta: dict[str, Any], report: dict[str, Any], active: bool) -> Section:
    params = ", ".join(
        f"{k}={v}" for k, v in (report.get("chosen_params") or meta.get("params") or {}).items()
    )
    items = [
        ("Agent, version", f"{row.symbol}, {row.version}{' (active)' if active else ''}"),
        ("Model", f"{report.get('chosen', meta.get('family', '?'))} ({params or 'defaults'})"),
        ("Data source", str(meta.get("data_source", "unknown"))),
        ("Candles, interval", f"{count(int(report.get('n_candles', 0)))} × {row.interval}"),
        (
            "Rows the final model was fitted on",
            f"{count(int(report.get('n_rows', 0)))}: "
            f"{time_range(report.get('train_start_open_time'), report.get('train_end_open_time'))}",
        ),
        (
            "Labels",
            f"up or down over {row.horizon} bars (dead zone {pct(report.get('dead_zone'), 3)}, flat rows: "
            f"{report.get('flat', '?')})",
        ),
        (
            "Walk-forward",
            f"{report.get('n_folds', '?')} expanding folds, purge {report.get('purge', '?')} bars, "
            f"selected by pooled OOS {report.get('selection_metric', '?')}",
        ),
        ("Features", ", ".join(report.get("feature_names") or meta.get("features") or [])),
        ("Software", ", ".join(f"{k} {v}" for k, v in (report.get("versions") or {}).items())),
    ]
    blocks: list[Any] = [Facts(tuple(items))]
    if report.get("selection_note"):
        blocks.append(Text(str(report["selection_note"]), "note"))
    if not report:
        blocks.append(
            Text("The model's metadata file is missing; only the registry's numbers are shown.", "warning")
        )
    return Section("Summary", tuple(blocks))


def _metric(key: str, value: Any) -> str:
    if key == "n_oos":
        return count(int(value)) if value is not None else "—"
    if key in ("oos_accuracy", "oos_balanced_accuracy", "baseline_accuracy", "oos_up_rate"):
        return pct(value)
    return number(value, 4)


def _metrics_section(
    row: ModelVersion, report: dict[str, Any], diagnostics: dict[str, Any] | None
) -> Section:
    pooled = report.get("metrics") or {k: v for k, v in row.metrics.items() if not k.startswith("backtest_")}
    nested = report.get("nested_metrics") or {}
    table = Table(
        "metrics",
        "Out-of-sample metrics, pooled over the folds",
        (
            Column("metric"),
            Column("chosen model", numeric=True),
            Column(
                "nested", numeric=True, description="Candidate chosen per fold on its inner validation only."
            ),
            Column("definition"),
        ),
        tuple(
            (label, _metric(key, pooled.get(key)), _metric(key, nested.get(key)), text)
            for key, label, text in METRICS
        ),
    )
    candidates = Table(
        "candidates",
        "Candidates (pooled out-of-sample)",
        (
            Column("candidate"),
            Column("log loss", numeric=True),
            Column("AUC", numeric=True),
            Column("accuracy", numeric=True),
            Column("balanced accuracy", numeric=True),
            Column("chosen"),
        ),
        tuple(
            (
                str(c.get("name")),
                number((c.get("oos") or {}).get("oos_log_loss"), 4),
                number((c.get("oos") or {}).get("oos_auc"), 4),
                pct((c.get("oos") or {}).get("oos_accuracy")),
                pct((c.get("oos") or {}).get("oos_balanced_accuracy")),
                "yes" if c.get("name") == report.get("chosen") else "",
            )
            for c in report.get("candidates", [])
        ),
    )
    blocks: list[Any] = [table, candidates]
    if diagnostics is not None and diagnostics.get("folds"):
        blocks[0:0] = [_folds_chart(diagnostics["folds"])]
        blocks.append(_folds_table(diagnostics["folds"]))
    return Section("Out-of-sample metrics", tuple(blocks))


def _folds_chart(folds: list[dict[str, Any]]) -> Chart:
    names = np.asarray([f"fold {f['index'] + 1}" for f in folds], dtype=object)

    def column(key: str) -> np.ndarray:
        return np.asarray([np.nan if f.get(key) is None else f[key] for f in folds], dtype=np.float64)

    return Chart(
        "folds",
        "Each fold's test block: classification against the baseline, and trading against buy and hold",
        (
            Panel(
                (
                    Bars("accuracy", names, column("accuracy"), color="#1f77b4"),
                    Bars("balanced accuracy", names, column("balanced_accuracy"), color="#aec7e8"),
                    Line(
                        "majority baseline",
                        names,
                        column("baseline_accuracy"),
                        color="#7f7f7f",
                        dash="dot",
                        markers=True,
                    ),
                    Line("AUC", names, column("auc"), color="#d62728", markers=True),
                ),
                "accuracy, AUC",
                1.3,
                y_format=".1%",
                levels=(Level(0.5, "chance"),),
            ),
            Panel(
                (
                    Bars("OOS return after fees", names, column("total_return"), color="#2ca02c"),
                    Bars("buy and hold", names, column("buy_and_hold_return"), color="#c7c7c7"),
                ),
                "return",
                1.0,
                y_format=".1%",
            ),
        ),
        x_kind="category",
        height=520,
        note="Folds in time order; each tests on a block no model of it trained on (purged walk-forward).",
    )


def _folds_table(folds: list[dict[str, Any]]) -> Table:
    return Table(
        "fold-metrics",
        "Per fold",
        (
            Column("fold", numeric=True),
            Column("test block (open times, UTC)"),
            Column("rows", numeric=True),
            Column("accuracy", numeric=True),
            Column("balanced", numeric=True),
            Column("AUC", numeric=True),
            Column("log loss", numeric=True),
            Column("Brier", numeric=True),
            Column("baseline", numeric=True),
            Column("return", numeric=True, description="The fold's signals traded after fees on its bars."),
            Column("buy and hold", numeric=True),
            Column("trades", numeric=True),
        ),
        tuple(
            (
                str(f["index"] + 1),
                time_range(f.get("test_start_open_time"), f.get("test_end_open_time")),
                count(int(f.get("n_test", 0))),
                pct(f.get("accuracy")),
                pct(f.get("balanced_accuracy")),
                number(f.get("auc"), 4),
                number(f.get("log_loss"), 4),
                number(f.get("brier"), 4),
                pct(f.get("baseline_accuracy")),
                pct(f.get("total_return"), 2, signed=True),
                pct(f.get("buy_and_hold_return"), 2, signed=True),
                count(int(f.get("n_trades", 0))),
            )
            for f in folds
        ),
    )


def _calibration_section(diagnostics: dict[str, Any]) -> Section:
    bins = diagnostics.get("calibration") or []
    if not bins:
        return Section("Calibration", (Text("No out-of-sample rows to calibrate on.", "note"),))
    predicted = np.asarray([b["mean_predicted"] for b in bins], dtype=np.float64)
    realised = np.asarray([b["realised_up_rate"] for b in bins], dtype=np.float64)
    lo = float(min(predicted.min(), realised.min()))
    hi = float(max(predicted.max(), realised.max()))
    pad = max(0.01, (hi - lo) * 0.1)
    lo, hi = max(0.0, lo - pad), min(1.0, hi + pad)
    diagonal = np.asarray([lo, hi])
    chart = Chart(
        "calibration",
        "Calibration: predicted P(up) against how often it went up",
        (
            Panel(
                (
                    Line("perfectly calibrated", diagonal, diagonal, color="#7f7f7f", dash="dot"),
                    Line("model (deciles of P(up))", predicted, realised, color="#1f77b4", markers=True),
                ),
                "realised up rate",
                1.0,
                y_format=".2f",
                y_range=(lo, hi),
            ),
        ),
        x_kind="number",
        x_title="mean predicted P(up)",
        x_format=".2f",
        x_range=(lo, hi),
        height=460,
        equal_axes=True,
        note="Pooled out-of-sample rows of the chosen candidate, sorted by P(up) and cut into ten groups of "
        "equal size. Points on the diagonal mean the probabilities can be taken at face value; a flat line "
        "means P(up) carries no information.",
    )
    table = Table(
        "calibration-bins",
        "Calibration bins",
        (
            Column("P(up) range"),
            Column("mean P(up)", numeric=True),
            Column("went up", numeric=True),
            Column("rows", numeric=True),
        ),
        tuple(
            (
                f"{b['lower']:.3f} to {b['upper']:.3f}",
                f"{b['mean_predicted']:.3f}",
                f"{b['realised_up_rate']:.3f}",
                count(int(b["n"])),
            )
            for b in bins
        ),
    )
    return Section("Calibration", (chart, table))


def _importance_section(diagnostics: dict[str, Any]) -> Section:
    items = diagnostics.get("importance") or []
    if not items:
        return Section("Feature importances", (Text(str(diagnostics.get("importance_note", "")), "note"),))
    ordered = list(reversed(items))  # most important at the top of a horizontal bar chart
    chart = Chart(
        "importance",
        "Permutation feature importances (out of sample)",
        (
            Panel(
                (
                    Bars(
                        "rise in log loss when shuffled",
                        np.asarray([i["name"] for i in ordered], dtype=object),
                        np.asarray([i["importance"] for i in ordered], dtype=np.float64),
                        color="#1f77b4",
                        horizontal=True,
                    ),
                ),
                "",
                1.0,
            ),
        ),
        x_kind="number",
        x_format=".1e",
        x_title="rise in OOS log loss",
        height=max(320, 22 * len(items) + 120),
        note=str(diagnostics.get("importance_note", "")),
    )
    return Section("Feature importances", (chart,))


def _backtest_section(report: dict[str, Any], diagnostics: dict[str, Any]) -> Section:
    curve = diagnostics.get("backtest_curve") or {}
    summary = report.get("backtest") or {}
    times = np.asarray(curve.get("open_time", []), dtype=np.int64)
    equity = np.asarray(curve.get("equity", []), dtype=np.float64)
    hold = np.asarray(curve.get("buy_and_hold", []), dtype=np.float64)
    facts = Facts(
        (
            (
                "Bars",
                f"{count(int(summary.get('n_bars', 0)))}: "
                f"{time_range(summary.get('start_open_time'), summary.get('end_open_time'))}",
            ),
            (
                "Rule",
                f"long while P(up) > {summary.get('long_threshold')}, flat otherwise; signal on a close, "
                f"fill at the next open; fee {pct(summary.get('fee_rate'), 3)} per side",
            ),
            ("Return after fees", pct(summary.get("total_return"), 2, signed=True)),
            ("Buy and hold", pct(summary.get("buy_and_hold_return"), 2, signed=True)),
            ("Sharpe", number(summary.get("sharpe"), 3)),
            ("Max drawdown", pct(summary.get("max_drawdown"))),
            ("Trades, exposure", f"{count(int(summary.get('n_trades', 0)))}, {pct(summary.get('exposure'))}"),
        )
    )
    if times.size == 0:
        return Section("Out-of-sample backtest", (facts,))
    initial = float(equity[0]) if equity.size else 1.0
    chart = Chart(
        "oos-backtest",
        "Fee-aware out-of-sample backtest against buy and hold",
        (
            Panel(
                (
                    Line("model's signals, after fees", times, equity, color="#1f77b4", width=1.6),
                    Line("buy and hold", times, hold, color="#7f7f7f", dash="dot"),
                ),
                "equity (quote)",
                2.2,
                y_format=",.2f",
            ),
            Panel(
                (
                    Line(
                        "drawdown",
                        times,
                        -drawdown_series(equity, initial),
                        color="#c62828",
                        fill="to_zero",
                        width=1.0,
                    ),
                ),
                "drawdown",
                1.0,
                y_format=".1%",
            ),
        ),
        height=500,
        note=f"The curve was stored at training with each stretch's lowest and highest point: "
        f"{count(times.size)} of {count(int(curve.get('n_bars', times.size)))} bars (peaks and troughs, so "
        "the drawdown, are exact).",
    )
    return Section("Out-of-sample backtest", (facts, chart))
