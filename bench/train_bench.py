"""Training and prediction benchmark for the ML agents (ml_engine.trainer / ml_engine.feature_extractor).

Run from the project root: ``.venv/bin/python bench/train_bench.py`` (``--help`` for sizes). It prints one
table. Targets from issue 5: training on 50,000 hourly candles with 5-fold walk-forward over all
candidate models in at most 60 s on the 2-core reference machine; one prediction (features for the latest
bar + predict_proba) with a loaded model in at most 20 ms median.

Data: ``--bars`` synthetic hourly candles (a seeded random walk, 1% per bar, with volume; the sample
data generator makes only two years), because the real BTC/USDT 2h file in ``../shared/data`` has ~35,000
rows. When that file is present its training time is reported too, on its own row.

Rows:

* features, full history: ``extract`` over all bars (median of ``--runs``).
* train: ``train()`` with the default TrainConfig (logreg, random_forest, hist_gb, their grids, 5 folds,
  inner validation, OOS backtest, final refit), once per ``--jobs`` value (one run each: a single run
  takes seconds, the spread between runs is small against the target).
* predict <kind>: ``extract_latest`` on the candles + ``predict_proba_up`` with a pipeline of that kind
  fitted on all bars, saved with joblib and loaded back (median of ``--predict-runs``).
* top features: ``top_features`` for the latest row (one predict_proba on n_features + 1 rows).
* latest vs full: the largest absolute difference between ``extract_latest``'s row and the full-history
  row for the last bar (recursive filters seeded on a tail; see feature_extractor's docstring).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import joblib
import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from ml_engine.feature_extractor import FeatureConfig, extract, extract_latest, tail_length  # noqa: E402
from ml_engine.labels import make_labels  # noqa: E402
from ml_engine.trainer import (  # noqa: E402
    CANDIDATES,
    TrainConfig,
    build_pipeline,
    predict_proba_up,
    top_features,
    train,
)
from utils.market_data.candles import Candles  # noqa: E402

SHARED_BTC = ROOT.parent / "shared" / "data" / "BTC_USDT_2h.csv"


def synthetic_candles(n: int, seed: int = 42) -> Candles:
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.01, n)))
    open_ = np.r_[100.0, close[:-1]]
    high = np.maximum(open_, close) * (1 + rng.uniform(0, 0.003, n))
    low = np.minimum(open_, close) * (1 - rng.uniform(0, 0.003, n))
    volume = rng.lognormal(2.0, 0.5, n)
    times = 1_600_000_000_000 + np.arange(n, dtype=np.int64) * 3_600_000
    return Candles("SYNUSDT", "1h", times, open_, high, low, close, volume, "sample")


def real_btc() -> Candles | None:
    if not SHARED_BTC.exists():
        return None
    raw = pd.read_csv(SHARED_BTC)
    times = pd.DatetimeIndex(pd.to_datetime(raw["timestamp"], utc=True)).as_unit("ms").asi8
    o, h, lo, c, v = (raw[name].to_numpy(np.float64) for name in ("open", "high", "low", "close", "volume"))
    return Candles("BTCUSDT", "2h", times, o, h, lo, c, v, "file")


def median_ms(fn: Callable[[], object], runs: int) -> float:
    fn()  # warm caches and lazy imports outside the measurement
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bars", type=int, default=50_000, help="synthetic hourly candles to train on")
    parser.add_argument("--runs", type=int, default=5, help="runs for the feature timings")
    parser.add_argument("--predict-runs", type=int, default=200, help="runs for the prediction timings")
    parser.add_argument("--jobs", default="1,2", help="comma-separated n_jobs values to train with")
    parser.add_argument("--no-real", action="store_true", help="skip the real BTC/USDT 2h training row")
    args = parser.parse_args()

    candles = synthetic_candles(args.bars)
    feature_config = FeatureConfig()
    rows: list[tuple[str, str, str]] = []

    full_ms = median_ms(lambda: extract(candles, feature_config), args.runs)
    rows.append((f"features, full history ({args.bars:,} bars)", f"{full_ms:.1f} ms", "median"))

    for jobs in (int(j) for j in args.jobs.split(",")):
        config = TrainConfig(n_jobs=jobs)
        start = time.perf_counter()
        outcome = train(candles, feature_config, config)
        seconds = time.perf_counter() - start
        report = outcome.report
        rows.append(
            (
                f"train {args.bars:,} x 1h synthetic, all candidates, 5 folds, n_jobs={jobs}",
                f"{seconds:.1f} s",
                f"target <= 60 s; chose {report.chosen}, OOS acc {report.metrics.oos_accuracy:.3f}",
            )
        )

    btc = None if args.no_real else real_btc()
    if btc is None:
        rows.append(("train real BTC/USDT 2h", "skipped", f"{SHARED_BTC} absent or --no-real"))
    else:
        start = time.perf_counter()
        outcome_btc = train(btc, feature_config, TrainConfig(n_jobs=1))
        seconds = time.perf_counter() - start
        m = outcome_btc.report.metrics
        rows.append(
            (
                f"train real BTC/USDT 2h ({len(btc):,} bars), all candidates, n_jobs=1",
                f"{seconds:.1f} s",
                f"chose {outcome_btc.report.chosen}, OOS acc {m.oos_accuracy:.3f}, AUC {m.oos_auc:.3f}",
            )
        )

    # Prediction: each model kind fitted on all rows, saved and loaded like an agent's model.
    frame = extract(candles, feature_config)
    labels = make_labels(candles.close, 1)
    usable = labels.usable & np.isfinite(frame.X).all(axis=1)
    with tempfile.TemporaryDirectory() as tmp:
        for name in CANDIDATES:
            fitted = build_pipeline(name, CANDIDATES[name].grid[-1], 0, 2).fit(
                frame.X[usable], labels.y[usable]
            )
            if "n_jobs" in fitted.named_steps["model"].get_params():
                fitted.set_params(model__n_jobs=1)  # as train() returns it
            path = Path(tmp) / f"{name}.joblib"
            joblib.dump(fitted, path)
            model = joblib.load(path)

            def predict(model: object = model) -> float:
                return float(predict_proba_up(model, extract_latest(candles, feature_config).X)[0])

            ms = median_ms(predict, args.predict_runs)
            rows.append(
                (
                    f"predict {name}: latest features + predict_proba",
                    f"{ms:.2f} ms",
                    "median; target <= 20 ms",
                )
            )
        latest = extract_latest(candles, feature_config)
        top_ms = median_ms(lambda: top_features(model, latest.X[0], latest.names), args.predict_runs)
        rows.append(("top_features (hist_gb, k=5)", f"{top_ms:.2f} ms", "median"))
    features_ms = median_ms(lambda: extract_latest(candles, feature_config), args.predict_runs)
    rows.append(
        (
            f"extract_latest alone (tail {tail_length(feature_config):,} bars)",
            f"{features_ms:.2f} ms",
            "median",
        )
    )
    diff = float(np.nanmax(np.abs(latest.X[0] - frame.X[-1])))
    rows.append(("latest vs full-history features, max |diff|", f"{diff:.1e}", "absolute, last bar"))

    width = max(len(r[0]) for r in rows)
    value_width = max(len(r[1]) for r in rows)
    print(f"{'measurement':<{width}}  {'value':>{value_width}}  note")
    print("-" * (width + value_width + 40))
    for label, value, note in rows:
        print(f"{label:<{width}}  {value:>{value_width}}  {note}")


if __name__ == "__main__":
    main()
