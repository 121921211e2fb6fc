"""agents/generic_agent.py: training registers a model; predictions use closed candles only."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy.orm import Session, sessionmaker

from agents import btc_agent, eth_agent
from agents.generic_agent import AgentConfig, GenericAgent
from db import storage
from ml_engine import model_registry
from tests.support.candles import sample_candles
from utils.errors import InvalidInput
from utils.market_data.candles import Candles

HOUR = 3_600_000


@pytest.fixture(scope="module")
def candles() -> Candles:
    return sample_candles("BTCUSDT", 7000)


@pytest.fixture
def sessions(tmp_path: Path) -> sessionmaker[Session]:
    engine = storage.make_engine(f"sqlite:///{tmp_path / 'a.db'}")
    storage.upgrade_to_head(engine)
    return storage.make_session_factory(engine)


FAST = AgentConfig(symbol="BTCUSDT", feature_set="compact", candidates=("logreg",), train_bars=7000)


def test_train_registers_a_model_with_its_report(
    candles: Candles, sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    now = int(candles.open_time[-1]) + 2 * HOUR
    agent = GenericAgent(FAST, sessions, tmp_path, lambda: now)
    progress: list[float] = []
    trained = agent.train(candles, lambda fraction, _message: progress.append(fraction))
    assert progress and progress[-1] == 1.0 and progress == sorted(progress)
    row = model_registry.get_version(sessions, "BTCUSDT", trained.version)
    assert row is not None and row.horizon == FAST.horizon
    meta = json.loads((tmp_path / row.path).with_suffix(".json").read_text())
    assert meta["sha256"] == row.sha256
    assert meta["features"] == trained.report.feature_names
    assert meta["data_source"] == "sample"
    assert 0.0 <= trained.report.metrics.oos_accuracy <= 1.0
    assert trained.report.chosen == "logreg"


def test_prediction_ignores_a_candle_that_has_not_closed(
    candles: Candles, sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    last_open = int(candles.open_time[-1])
    clock = {"now": last_open + HOUR}  # the last candle has just closed
    agent = GenericAgent(FAST, sessions, tmp_path, lambda: clock["now"])
    version = agent.train(candles).version
    closed = agent.predict(candles, version)
    assert closed.as_of == last_open
    # Half an hour later a new candle is forming; its (wild) values must not move the prediction.
    clock["now"] = last_open + HOUR + HOUR // 2
    forming = Candles(
        "BTCUSDT",
        "1h",
        np.append(candles.open_time, last_open + HOUR),
        np.append(candles.open, candles.close[-1]),
        np.append(candles.high, candles.close[-1] * 1.5),
        np.append(candles.low, candles.close[-1] * 0.5),
        np.append(candles.close, candles.close[-1] * 1.4),
        np.append(candles.volume, 1e9),
        "sample",
    )
    with_forming = agent.predict(forming, version)
    assert with_forming.as_of == last_open
    assert with_forming.prob_up == closed.prob_up


def test_action_follows_the_thresholds(
    candles: Candles, sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    now = int(candles.open_time[-1]) + HOUR
    agent = GenericAgent(FAST, sessions, tmp_path, lambda: now)
    version = agent.train(candles).version
    prediction = agent.predict(candles, version)
    p = prediction.prob_up
    expected = "buy" if p > FAST.buy_threshold else "sell" if p < FAST.sell_threshold else "hold"
    assert prediction.action == expected
    assert prediction.confidence == pytest.approx(abs(2 * p - 1))
    assert len(prediction.top_features) == 5
    # Moving the band around the same probability changes the action accordingly.
    eager = GenericAgent(
        replace(FAST, buy_threshold=0.5 + 1e-9, sell_threshold=0.5 - 1e-9), sessions, tmp_path, lambda: now
    )
    assert eager.predict(candles, version).action == ("buy" if p > 0.5 else "sell")


@pytest.mark.parametrize(
    ("age_hours", "interval", "stale"),
    [(1, "1h", False), (200, "1h", True), (1, "4h", True)],
)
def test_old_or_foreign_models_are_stale(
    candles: Candles,
    sessions: sessionmaker[Session],
    tmp_path: Path,
    age_hours: int,
    interval: str,
    stale: bool,
) -> None:
    trained_at = int(candles.open_time[-1]) + HOUR
    clock = {"now": trained_at}
    version = GenericAgent(FAST, sessions, tmp_path, lambda: clock["now"]).train(candles).version
    clock["now"] = trained_at + age_hours * HOUR
    agent = GenericAgent(
        replace(FAST, interval=interval, max_model_age_hours=168), sessions, tmp_path, lambda: clock["now"]
    )
    reason = agent.stale_reason(version)
    assert (reason is not None) == stale
    if stale:
        assert reason is not None
        assert ("old" in reason) if age_hours > 168 else ("1h" in reason and "4h" in reason)


def test_btc_and_eth_have_their_own_defaults() -> None:
    btc, eth = btc_agent.default_config(), eth_agent.default_config()
    assert (btc.symbol, btc.kind) == ("BTCUSDT", "btc")
    assert (eth.symbol, eth.kind) == ("ETHUSDT", "eth")
    assert (btc.horizon, btc.feature_set) != (eth.horizon, eth.feature_set)
    assert AgentConfig.from_dict(btc.to_dict()) == btc


@pytest.mark.parametrize(
    "changes",
    [{"feature_set": "nope"}, {"buy_threshold": 0.4}, {"sell_threshold": 0.6}, {"horizon": 0}],
)
def test_invalid_configs_are_refused(changes: dict) -> None:
    with pytest.raises(InvalidInput):
        AgentConfig(symbol="BTCUSDT", **changes)
