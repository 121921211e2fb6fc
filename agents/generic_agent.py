"""The generic symbol agent: train a model for one symbol, then predict from its latest closed candles.

An agent is configuration (`AgentConfig`) plus its active model version in the registry. It is
honest by construction: training goes through `ml_engine.trainer` (purged walk-forward, out-of-sample
selection), predictions use only closed candles and the exact feature set the model was trained
on, and a model too old or trained on another interval is reported as `stale`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
from sqlalchemy.orm import Session, sessionmaker
from threadpoolctl import threadpool_limits

from ml_engine import model_registry
from ml_engine.feature_extractor import FEATURE_SETS, FeatureConfig, extract, extract_latest, tail_length
from ml_engine.labels import fee_dead_zone, make_labels
from ml_engine.trainer import TrainConfig, TrainReport, build_pipeline, predict_proba_up, top_features, train
from utils.errors import Conflict, InvalidInput
from utils.intervals import interval_ms, is_closed
from utils.market_data.candles import Candles

Action = Literal["buy", "sell", "hold"]
Progress = Callable[[float, str], None]


# Which defaults an agent started from.
AgentKind = Literal["generic", "btc", "eth"]


@dataclass(frozen=True, slots=True)
class AgentConfig:
    """Everything that defines an agent; stored as JSON, so a new symbol needs no code."""

    symbol: str
    interval: str = "1h"
    horizon: int = 4  # bars ahead the model predicts
    kind: AgentKind = "generic"
    feature_set: str = "default"  # a key of ml_engine.feature_extractor.FEATURE_SETS
    buy_threshold: float = 0.55  # P(up) above this: buy
    sell_threshold: float = 0.45  # P(up) below this: sell
    max_model_age_hours: float = 168.0
    train_bars: int = 20_000  # most recent candles used for training
    candidates: tuple[str, ...] = ("logreg", "random_forest", "hist_gb")
    fee_rate: float = 0.001  # round trip 2x this is the labels' dead zone
    n_folds: int = 5

    def __post_init__(self) -> None:
        if self.feature_set not in FEATURE_SETS:
            raise InvalidInput(
                f"feature_set must be one of {', '.join(sorted(FEATURE_SETS))}.",
                details={"field": "feature_set"},
            )
        if not 0 < self.sell_threshold < 0.5 < self.buy_threshold < 1:
            raise InvalidInput(
                "Thresholds must satisfy 0 < sell_threshold < 0.5 < buy_threshold < 1.",
                details={"field": "buy_threshold"},
            )
        if not 1 <= self.horizon <= 500:
            raise InvalidInput("horizon must be between 1 and 500 bars.", details={"field": "horizon"})

    @property
    def features(self) -> FeatureConfig:
        return FEATURE_SETS[self.feature_set]

    def train_config(self) -> TrainConfig:
        return TrainConfig(
            horizon=self.horizon,
            dead_zone=fee_dead_zone(self.fee_rate),
            flat="drop",
            n_folds=self.n_folds,
            candidates=self.candidates,
            fee_rate=self.fee_rate,
        )

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["candidates"] = list(self.candidates)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AgentConfig:
        known = {f for f in cls.__dataclass_fields__}
        values = {k: v for k, v in data.items() if k in known}
        if "candidates" in values:
            values["candidates"] = tuple(values["candidates"])
        return cls(**values)


@dataclass(frozen=True, slots=True)
class Prediction:
    """One agent's view of one symbol, from the last closed candle it saw."""

    symbol: str
    interval: str
    horizon: int
    action: Action
    prob_up: float
    confidence: float  # |2 * prob_up - 1|: 0 is a coin flip, 1 is certainty
    expected_return: float  # over the horizon, from the training set's mean up/down moves
    model_version: str
    as_of: int  # open time (ms) of the last closed candle used
    stale: bool
    stale_reason: str | None
    top_features: list[dict[str, float | str]] = field(default_factory=list)
    data_source: str = "cache"  # binance, cache, file or sample: where the candles came from
    data_stale: bool = False  # True when Binance was unreachable and stored candles were used


@dataclass(frozen=True, slots=True)
class TrainedModel:
    version: str
    report: TrainReport


@dataclass(frozen=True, eq=False)
class FittedModel:
    """A fitted agent model before it is registered: the pipeline, what predicting needs (`meta`),
    and the walk-forward report (None for a refit, which runs no new out-of-sample evaluation)."""

    model: Any
    meta: dict[str, Any]
    report: TrainReport | None
    interval: str
    window_end_open_time: int  # open time of the last candle the model was fitted on

    @property
    def family(self) -> tuple[str, dict[str, Any]]:
        return self.meta["family"], dict(self.meta["params"])


def training_window(config: AgentConfig, closed: Candles) -> Candles:
    """The candles a training at the end of `closed` uses: the latest `train_bars` of them.

    The one window rule of live training, scheduled retraining and the replay."""
    if len(closed) > config.train_bars:
        return closed.slice(len(closed) - config.train_bars, len(closed))
    return closed


def retrain_due(tried: bool, close_ms: int, interval: str, every: int) -> bool:
    """The retraining rule shared by the Mother AI replay and scheduled live retraining:
    at the first close (`tried` False: no training attempted yet), then at each close that is a whole
    multiple of `every` candles since the epoch. A failed training waits for the next such close."""
    return not tried or (close_ms // interval_ms(interval)) % every == 0


def fit_model(config: AgentConfig, candles: Candles, progress: Progress | None = None) -> FittedModel:
    """Purged walk-forward training with candidate selection (``ml_engine.trainer.train``) on `candles`."""
    try:
        outcome = train(candles, config.features, config.train_config(), progress)
    except ValueError as exc:
        raise InvalidInput(f"Cannot train {config.symbol}: {exc}", code="training_failed") from None
    report = outcome.report
    meta = {
        "features": outcome.feature_names,
        "feature_config": report.feature_config,
        "agent": config.to_dict(),
        "training_range": [report.train_start_open_time, report.train_end_open_time],
        "window_end_open_time": int(candles.open_time[-1]),
        "data_source": candles.source,
        "family": report.chosen,
        "params": dict(report.chosen_params),
        **_moves(candles, config.horizon),
    }
    return FittedModel(outcome.model, meta, report, candles.interval, int(candles.open_time[-1]))


def refit_model(config: AgentConfig, candles: Candles, base: FittedModel) -> FittedModel:
    """`base`'s model family and hyper-parameters refitted on `candles`, without a new search.

    Every usable row (features and a full future, outside the fee dead zone) is fitted, exactly as the
    final model of ``fit_model`` is; only the walk-forward evaluation and the selection are skipped."""
    cfg = config.train_config()
    frame = extract(candles, config.features)
    labels = make_labels(candles.close, cfg.horizon, cfg.dead_zone, cfg.flat)
    usable = labels.usable & np.isfinite(frame.X).all(axis=1)
    usable[: frame.warmup] = False
    rows = np.flatnonzero(usable)
    family, params = base.family
    if rows.shape[0] < cfg.min_train_rows or np.unique(labels.y[rows]).shape[0] < 2:
        raise InvalidInput(
            f"Cannot refit {config.symbol}: {rows.shape[0]} usable rows "
            f"(need {cfg.min_train_rows}, and both classes).",
            code="training_failed",
        )
    with threadpool_limits(limits=cfg.n_jobs):
        model = build_pipeline(family, params, cfg.random_state, cfg.n_jobs).fit(
            frame.X[rows], labels.y[rows]
        )
    if "n_jobs" in model.named_steps["model"].get_params():
        model.set_params(model__n_jobs=1)
    meta = {
        **base.meta,
        "training_range": [int(candles.open_time[rows[0]]), int(candles.open_time[rows[-1]])],
        "window_end_open_time": int(candles.open_time[-1]),
        "data_source": candles.source,
        **_moves(candles, config.horizon),
    }
    return FittedModel(model, meta, None, candles.interval, int(candles.open_time[-1]))


def _moves(candles: Candles, horizon: int) -> dict[str, float]:
    """Mean forward return of the up and of the down moves: turns P(up) into an expected return."""
    labels = make_labels(candles.close, horizon)
    fwd = labels.fwd[labels.usable]
    return {
        "mean_up_return": float(fwd[fwd > 0].mean()) if (fwd > 0).any() else 0.0,
        "mean_down_return": float(fwd[fwd <= 0].mean()) if (fwd <= 0).any() else 0.0,
    }


def expected_return(meta: dict[str, Any], p_up: float | np.ndarray) -> Any:
    return p_up * meta.get("mean_up_return", 0.0) + (1 - p_up) * meta.get("mean_down_return", 0.0)


def action_for(config: AgentConfig, p_up: float) -> Action:
    if p_up > config.buy_threshold:
        return "buy"
    return "sell" if p_up < config.sell_threshold else "hold"


def model_stale_reason(
    config: AgentConfig, model_interval: str, data_interval: str, trained_at_ms: int, now_ms: int
) -> str | None:
    """Why a model must not vote now (another interval, or older than max_model_age_hours), or None."""
    if model_interval != config.interval or model_interval != data_interval:
        return f"model trained on {model_interval} candles, agent uses {config.interval}"
    age_h = (now_ms - trained_at_ms) / 3_600_000
    if age_h > config.max_model_age_hours:
        return f"model is {age_h:.0f} h old (max {config.max_model_age_hours:.0f} h)"
    return None


class GenericAgent:
    """Trains and serves one symbol's model; the loaded model is cached per version."""

    def __init__(
        self,
        config: AgentConfig,
        sessions: sessionmaker[Session],
        models_dir: Path,
        clock: Callable[[], int],
    ) -> None:
        self.config = config
        self.sessions = sessions
        self.models_dir = models_dir
        self.clock = clock
        self._cache: dict[str, tuple[Any, Any, dict[str, Any]]] = {}
        self._lock = threading.Lock()

    # --- training -------------------------------------------------------------------------------

    def train(
        self,
        candles: Candles,
        progress: Progress | None = None,
        on_register: Callable[[Session, model_registry.SavedModel], None] | None = None,
    ) -> TrainedModel:
        """Walk-forward train on the latest `train_bars` closed candles, then register the model;
        `on_register(session, saved)` commits with the registration (see ``save_model``)."""
        fitted = fit_model(self.config, self.training_candles(candles), progress)
        return self.register(fitted, on_register)

    def training_candles(self, candles: Candles) -> Candles:
        """The closed candles a training on `candles` fits on (the latest `train_bars`)."""
        return training_window(self.config, self._closed(candles))

    def register(
        self,
        fitted: FittedModel,
        on_register: Callable[[Session, model_registry.SavedModel], None] | None = None,
    ) -> TrainedModel:
        """Register a model `fit_model` fitted (here or on a compute worker); `on_register(session,
        saved)` commits with the registration (see ``save_model``)."""
        report = fitted.report
        assert report is not None  # fit_model always evaluates; only refits carry no report
        # What prediction depends on travels inside the checksummed artifact; the JSON beside it
        # (which also carries the full report) is for people and is never trusted.
        saved = model_registry.save_model(
            self.sessions,
            self.models_dir,
            self.config.symbol,
            {"model": fitted.model, "meta": fitted.meta},
            interval=fitted.interval,
            horizon=self.config.horizon,
            metrics=report.metrics_dict(),
            metadata={**fitted.meta, "report": report.to_dict()},
            now=lambda: datetime.fromtimestamp(self.clock() / 1000, tz=UTC),
            on_register=on_register,
        )
        return TrainedModel(saved.version, report)

    # --- prediction -----------------------------------------------------------------------------

    def predict(self, candles: Candles, version: str, *, data_stale: bool = False) -> Prediction:
        """The prediction from the latest closed candle, with the model `version` (checksum-verified).

        `data_stale` says the candles were served while Binance was unreachable, so the latest of
        them may be behind the market; the prediction carries it (and the candles' source) along.
        """
        model, row, meta = self._load(version)
        candles = self._closed(candles)
        features = FeatureConfig.from_dict(meta["feature_config"])
        tail = tail_length(features)
        recent = candles.slice(max(0, len(candles) - tail), len(candles))
        frame = extract_latest(recent, features)
        if frame.names != meta["features"]:
            raise Conflict(
                f"Model {version} was trained on other features than this agent computes; retrain it.",
                code="feature_mismatch",
            )
        x = frame.X[-1]
        if not np.isfinite(x).all():
            raise InvalidInput(
                f"Not enough closed candles to compute features for {self.config.symbol}.",
                code="not_enough_candles",
            )
        p_up = float(predict_proba_up(model, x)[0])
        action = action_for(self.config, p_up)
        expected = expected_return(meta, p_up)
        stale_reason = self._stale_reason(row, candles.interval)
        top: list[dict[str, float | str]] = [
            {"name": c.name, "value": float(c.value), "contribution": float(c.contribution)}
            for c in top_features(model, x, frame.names, k=5)
        ]
        return Prediction(
            symbol=self.config.symbol,
            interval=candles.interval,
            horizon=self.config.horizon,
            action=action,
            prob_up=p_up,
            confidence=abs(2 * p_up - 1),
            expected_return=float(expected),
            model_version=version,
            as_of=int(frame.open_time[-1]),
            stale=stale_reason is not None,
            stale_reason=stale_reason,
            top_features=top,
            data_source=candles.source,
            data_stale=data_stale,
        )

    def stale_reason(self, version: str) -> str | None:
        row = model_registry.get_version(self.sessions, self.config.symbol, version)
        return None if row is None else self._stale_reason(row, self.config.interval)

    def _stale_reason(self, row: Any, interval: str) -> str | None:
        return model_stale_reason(
            self.config, row.interval, interval, int(row.trained_at.timestamp() * 1000), self.clock()
        )

    def _load(self, version: str) -> tuple[Any, Any, dict[str, Any]]:
        with self._lock:
            if version not in self._cache:
                bundle, row = model_registry.load_model(
                    self.sessions, self.models_dir, self.config.symbol, version
                )
                if not isinstance(bundle, dict) or "model" not in bundle or "meta" not in bundle:
                    raise Conflict(
                        f"Model {version} is not an agent model bundle; retrain.", code="model_invalid"
                    )
                # Only the active model stays loaded; another version is read again when reactivated.
                self._cache = {version: (bundle["model"], row, bundle["meta"])}
            return self._cache[version]

    def _closed(self, candles: Candles) -> Candles:
        """Drop a still-forming last candle: a prediction must never see a bar that has not closed."""
        if len(candles) and not is_closed(int(candles.open_time[-1]), candles.interval, self.clock()):
            return candles.slice(0, len(candles) - 1)
        return candles
