"""The BTC agent's defaults: hourly candles, a 4-hour horizon, the full feature set."""

from __future__ import annotations

from agents.generic_agent import AgentConfig

SYMBOL = "BTCUSDT"


def default_config() -> AgentConfig:
    # BTC is the most liquid pair: the full feature set and a moderately wide hold band, so the
    # agent only speaks up when P(up) moves clearly away from a coin flip.
    return AgentConfig(
        symbol=SYMBOL,
        interval="1h",
        horizon=4,
        kind="btc",
        feature_set="default",
        buy_threshold=0.55,
        sell_threshold=0.45,
        max_model_age_hours=168.0,
        train_bars=20_000,
    )
