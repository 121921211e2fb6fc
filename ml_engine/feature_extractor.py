"""Model features: turns candles into a causal feature matrix (training) or one feature row (prediction).

Every feature is built from ``ml_engine.indicators`` (the project's one indicator library) and plain
price/volume transforms; nothing here re-implements an indicator. Rolling standard deviations come from
``bollinger(x, w, k=1)`` (upper - middle is the population std of the last ``w`` values) and rolling
means from ``sma``.

Causality: the feature at bar t uses bars 0..t only (every indicator is causal, every transform is
elementwise or looks back). ``warmup(config)`` leading rows are NaN in every column, whatever the data,
so the first usable row does not depend on which indicator happens to warm up last.

Features (names depend on the config; ``feature_names(config, interval)`` lists them in column order):

* ``ret_{k}``: log return over ``k`` bars, ``log(close[t] / close[t-k])``. Lags count bars (positions):
  gaps in the data are not filled, so over a gap a lag spans more time.
* ``vol_{w}``: population std of the 1-bar log returns over the last ``w`` bars.
* ``rsi_{p}``: RSI / 100.
* ``macd_hist``: MACD histogram / close (scale-free, so one model fits any price level).
* ``bb_pctb_{p}``: Bollinger %b, ``(close - lower) / (upper - lower)``; 0.5 when the band has no width.
* ``atr_{p}``: ATR / close.
* ``dist_sma_{w}``, ``dist_ema_{w}``: ``close / MA - 1``.
* ``volume_z_{w}``: z-score of ``log1p(volume)`` against its last ``w`` bars (logs tame volume's fat
  tail); 0 when the window's volume is constant.
* ``hour_sin/cos``, ``dow_sin/cos``: time of day and day of week of the bar's open time, only for
  intervals shorter than a day (for daily and longer bars they would be constant or aliased).

Prediction (``extract_latest``): recursive indicators (EMA, MACD, RSI, ATR) are seeded TA-Lib style
and so depend, ever more weakly, on all earlier bars. The latest row is computed on a tail of
``tail_length(config)`` bars, long enough that the seed's influence has decayed by the slowest
filter's factor to below ``TAIL_TOLERANCE`` (1e-8); the result then matches full-history features to
~1e-9 absolute (tests/ml_engine/test_feature_extractor.py and bench/train_bench.py measure it). Training
always uses the full history. Callers pass closed candles only; the last candle given is the one
predicted from.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from ml_engine import indicators as ind
from utils.intervals import interval_ms
from utils.market_data.candles import Candles

__all__ = [
    "FEATURE_SETS",
    "GROUPS",
    "TAIL_TOLERANCE",
    "FeatureConfig",
    "FeatureFrame",
    "extract",
    "extract_latest",
    "feature_names",
    "is_intraday",
    "tail_length",
    "warmup",
]

GROUPS: tuple[str, ...] = (
    "returns",
    "volatility",
    "rsi",
    "macd",
    "bollinger",
    "atr",
    "ma_distance",
    "volume",
    "time",
)

TAIL_TOLERANCE = 1e-8
_DAY_MS = 86_400_000
_WEEK_MS = 7 * _DAY_MS
# 1970-01-01 was a Thursday: shift so that day-of-week 0 is Monday, as in pandas/ISO.
_EPOCH_WEEKDAY = 3


def _positive_ints(name: str, values: tuple[int, ...], minimum: int) -> None:
    if not values:
        raise ValueError(f"{name} must not be empty")
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
            raise ValueError(f"{name} must be integers >= {minimum}, got {values!r}")
    if len(set(values)) != len(values):
        raise ValueError(f"{name} must not repeat a value, got {values!r}")


@dataclass(frozen=True)
class FeatureConfig:
    """Which feature groups are on and their lags/periods (in bars). Agents pass their own.

    Defaults suit hourly bars: lags up to a day, volatility over half a day and two days, the usual
    TA-Lib periods, moving averages up to 200 bars.
    """

    return_lags: tuple[int, ...] = (1, 2, 3, 6, 12, 24)
    volatility_windows: tuple[int, ...] = (12, 48)
    rsi_period: int = 14
    macd_fast: int = 12
    macd_slow: int = 26
    macd_signal: int = 9
    bollinger_period: int = 20
    bollinger_k: float = 2.0
    atr_period: int = 14
    ma_windows: tuple[int, ...] = (20, 50, 200)
    volume_window: int = 48
    groups: tuple[str, ...] = GROUPS

    def __post_init__(self) -> None:
        # Lists (e.g. from JSON) become tuples so the config stays hashable and immutable.
        for name in ("return_lags", "volatility_windows", "ma_windows", "groups"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        unknown = sorted(set(self.groups) - set(GROUPS))
        if unknown:
            raise ValueError(f"unknown feature groups {unknown}; known: {list(GROUPS)}")
        if not self.groups or len(set(self.groups)) != len(self.groups):
            raise ValueError(f"groups must be non-empty without repeats, got {self.groups!r}")
        _positive_ints("return_lags", self.return_lags, 1)
        _positive_ints("volatility_windows", self.volatility_windows, 2)
        _positive_ints("ma_windows", self.ma_windows, 2)
        for name, minimum in (
            ("rsi_period", 2),
            ("macd_fast", 2),
            ("macd_slow", 2),
            ("macd_signal", 1),
            ("bollinger_period", 2),
            ("atr_period", 1),
            ("volume_window", 2),
        ):
            _positive_ints(name, (getattr(self, name),), minimum)
        if self.macd_fast > self.macd_slow:
            raise ValueError(f"macd_fast must be <= macd_slow, got {self.macd_fast} > {self.macd_slow}")
        k = self.bollinger_k
        if isinstance(k, bool) or not isinstance(k, int | float) or not (math.isfinite(k) and k > 0):
            raise ValueError(f"bollinger_k must be a finite number > 0, got {k!r}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (tuples become lists); ``FeatureConfig.from_dict`` rebuilds an equal config."""
        return {key: list(v) if isinstance(v, tuple) else v for key, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureConfig:
        return cls(**data)


# The names a request may use; tests/ml_engine check they are FEATURE_SETS' keys.
FeatureSetName = Literal["default", "compact", "swing"]
FEATURE_SETS: dict[str, FeatureConfig] = {
    # Everything, periods for hourly bars.
    "default": FeatureConfig(),
    # Fewer, shorter features: a short warm-up and quick training (small datasets, tests).
    "compact": FeatureConfig(
        return_lags=(1, 2, 4, 8),
        volatility_windows=(16,),
        ma_windows=(10, 50),
        volume_window=24,
    ),
    # Longer memory for slower bars (2h-1d): lags up to ~a week of 2h bars, longer averages.
    "swing": FeatureConfig(
        return_lags=(1, 3, 6, 12, 24, 84),
        volatility_windows=(12, 84),
        ma_windows=(20, 100, 200),
        volume_window=84,
    ),
}


@dataclass(frozen=True, eq=False)
class FeatureFrame:
    """A feature matrix: ``X[t]`` are the features of the candle opening at ``open_time[t]``.

    Rows ``[:warmup]`` are all NaN (for ``extract``; ``extract_latest`` returns one row past it).
    A NaN after the warm-up (e.g. from a zero price) marks a row no model can use.
    """

    X: np.ndarray  # (n_rows, n_features) float64
    names: list[str]
    open_time: np.ndarray  # (n_rows,) int64 ms
    warmup: int = field(default=0)

    def __len__(self) -> int:
        return int(self.X.shape[0])

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.X, columns=self.names, index=pd.Index(self.open_time, name="open_time"))

    def with_columns(self, names: list[str], columns: np.ndarray) -> FeatureFrame:
        """A new frame with extra columns (research and tests; the columns must be causal too)."""
        extra = np.asarray(columns, dtype=np.float64).reshape(len(self), -1)
        return FeatureFrame(np.hstack([self.X, extra]), [*self.names, *names], self.open_time, self.warmup)


def is_intraday(interval: str) -> bool:
    """True for intervals shorter than a day: only those get time-of-day/day-of-week features."""
    return interval_ms(interval) < _DAY_MS


def feature_names(config: FeatureConfig, interval: str) -> list[str]:
    """Column names of ``extract(candles, config)`` for candles of ``interval``, in order."""
    names: list[str] = []
    on = set(config.groups)
    if "returns" in on:
        names += [f"ret_{k}" for k in config.return_lags]
    if "volatility" in on:
        names += [f"vol_{w}" for w in config.volatility_windows]
    if "rsi" in on:
        names.append(f"rsi_{config.rsi_period}")
    if "macd" in on:
        names.append("macd_hist")
    if "bollinger" in on:
        names.append(f"bb_pctb_{config.bollinger_period}")
    if "atr" in on:
        names.append(f"atr_{config.atr_period}")
    if "ma_distance" in on:
        names += [f"dist_sma_{w}" for w in config.ma_windows]
        names += [f"dist_ema_{w}" for w in config.ma_windows]
    if "volume" in on:
        names.append(f"volume_z_{config.volume_window}")
    if "time" in on and is_intraday(interval):
        names += ["hour_sin", "hour_cos", "dow_sin", "dow_cos"]
    return names


def warmup(config: FeatureConfig) -> int:
    """Leading bars without a full feature row: the longest lookback of the groups that are on.

    Per group (TA-Lib lookbacks; a 1-bar log return first exists at bar 1): ret_k -> k; vol_w -> w
    (std of w returns, the first at bar 1); rsi -> period; macd -> slow + signal - 2; bollinger ->
    period - 1; atr -> period; sma/ema -> w - 1; volume z -> w - 1; time -> 0.
    """
    on = set(config.groups)
    lookbacks = [0]
    if "returns" in on:
        lookbacks.append(max(config.return_lags))
    if "volatility" in on:
        lookbacks.append(max(config.volatility_windows))
    if "rsi" in on:
        lookbacks.append(config.rsi_period)
    if "macd" in on:
        lookbacks.append(config.macd_slow + config.macd_signal - 2)
    if "bollinger" in on:
        lookbacks.append(config.bollinger_period - 1)
    if "atr" in on:
        lookbacks.append(config.atr_period)
    if "ma_distance" in on:
        lookbacks.append(max(config.ma_windows) - 1)
    if "volume" in on:
        lookbacks.append(config.volume_window - 1)
    return max(lookbacks)


def tail_length(config: FeatureConfig, tolerance: float = TAIL_TOLERANCE) -> int:
    """Bars ``extract_latest`` reads: the warm-up plus enough bars for every recursive filter's seed
    to decay below ``tolerance`` (EMA decays by 1 - 2/(p+1) per bar, Wilder's RSI/ATR by 1 - 1/p)."""
    on = set(config.groups)
    decays: list[float] = []
    if "rsi" in on:
        decays.append(1.0 - 1.0 / config.rsi_period)
    if "atr" in on and config.atr_period > 1:
        decays.append(1.0 - 1.0 / config.atr_period)
    if "macd" in on:
        decays += [1.0 - 2.0 / (p + 1) for p in (config.macd_slow, config.macd_signal) if p > 1]
    if "ma_distance" in on:
        decays.append(1.0 - 2.0 / (max(config.ma_windows) + 1))
    settle = max((math.ceil(math.log(tolerance) / math.log(d)) for d in decays if d > 0), default=0)
    return warmup(config) + settle + 1


def _rolling_std(x: np.ndarray, window: int) -> np.ndarray:
    # Bollinger with k=1: upper - middle is the population standard deviation of the window.
    upper, middle, _ = ind.bollinger(x, window, 1.0)
    return upper - middle


def _safe_ratio(num: np.ndarray, den: np.ndarray, where_zero: float) -> np.ndarray:
    """num / den, ``where_zero`` where den is 0 (a flat window), NaN kept where either is NaN."""
    out = np.full(num.shape, np.nan)
    zero = den == 0
    ok = ~zero & ~np.isnan(den)
    np.divide(num, den, out=out, where=ok)
    out[zero & ~np.isnan(num)] = where_zero
    return out


def extract(candles: Candles, config: FeatureConfig | None = None) -> FeatureFrame:
    """Features of every candle (rows ``[:warmup(config)]`` all NaN); see the module docstring."""
    config = config or FeatureConfig()
    on = set(config.groups)
    close = np.asarray(candles.close, dtype=np.float64)
    n = close.shape[0]
    columns: list[np.ndarray] = []

    with np.errstate(divide="ignore", invalid="ignore"):
        log_close = np.log(close)
        if "returns" in on:
            for k in config.return_lags:
                col = np.full(n, np.nan)
                col[k:] = log_close[k:] - log_close[:-k]
                columns.append(col)
        if "volatility" in on:
            r1 = np.full(n, np.nan)
            r1[1:] = np.diff(log_close)
            columns += [_rolling_std(r1, w) for w in config.volatility_windows]
        if "rsi" in on:
            columns.append(ind.rsi(close, config.rsi_period) / 100.0)
        if "macd" in on:
            _, _, hist = ind.macd(close, config.macd_fast, config.macd_slow, config.macd_signal)
            columns.append(hist / close)
        if "bollinger" in on:
            upper, _, lower = ind.bollinger(close, config.bollinger_period, float(config.bollinger_k))
            columns.append(_safe_ratio(close - lower, upper - lower, 0.5))
        if "atr" in on:
            columns.append(ind.atr(candles.high, candles.low, close, config.atr_period) / close)
        if "ma_distance" in on:
            columns += [close / ind.sma(close, w) - 1.0 for w in config.ma_windows]
            columns += [close / ind.ema(close, w) - 1.0 for w in config.ma_windows]
        if "volume" in on:
            log_volume = np.log1p(np.asarray(candles.volume, dtype=np.float64))
            w = config.volume_window
            columns.append(_safe_ratio(log_volume - ind.sma(log_volume, w), _rolling_std(log_volume, w), 0.0))
        if "time" in on and is_intraday(candles.interval):
            t = np.asarray(candles.open_time, dtype=np.int64)
            day_phase = 2.0 * np.pi * (t % _DAY_MS) / _DAY_MS
            week_phase = 2.0 * np.pi * ((t // _DAY_MS + _EPOCH_WEEKDAY) % 7) / 7.0
            columns += [np.sin(day_phase), np.cos(day_phase), np.sin(week_phase), np.cos(week_phase)]

    names = feature_names(config, candles.interval)
    X = np.column_stack(columns) if columns else np.empty((n, 0))
    X = np.ascontiguousarray(X, dtype=np.float64)
    # +-inf (a zero price, say) is as unusable as NaN; one marker keeps the consumers simple.
    X[~np.isfinite(X)] = np.nan
    w = min(warmup(config), n)
    X[:w] = np.nan
    return FeatureFrame(X, names, np.asarray(candles.open_time, dtype=np.int64).copy(), warmup(config))


def extract_latest(candles: Candles, config: FeatureConfig | None = None) -> FeatureFrame:
    """Features of the last candle only (a one-row frame), computed on its ``tail_length`` tail.

    Equal to ``extract(candles, config)``'s last row up to the seed decay (< ~1e-9 absolute); exactly
    equal when the series is no longer than the tail. NaN when there are no more than ``warmup``
    candles.
    """
    config = config or FeatureConfig()
    n = len(candles)
    if n == 0:
        raise ValueError("candles must not be empty")
    tail = candles.slice(max(0, n - tail_length(config)), n)
    frame = extract(tail, config)
    return FeatureFrame(frame.X[-1:].copy(), frame.names, frame.open_time[-1:].copy(), 0)
