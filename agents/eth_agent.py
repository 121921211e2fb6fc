"""The ETH agent's defaults: hourly candles, a 6-hour horizon, the longer-memory feature set."""

from __future__ import annotations

from agents.generic_agent import AgentConfig

SYMBOL = "ETHUSDT"


def default_config() -> AgentConfig:
    # ETH moves more than BTC per hour: a longer horizon lets moves clear the fee dead zone more
    # often, and a wider band keeps it from trading noise.
    return AgentConfig(
        symbol=SYMBOL,
        interval="1h",
        horizon=6,
        kind="eth",
        feature_set="swing",
        buy_threshold=0.56,
        sell_threshold=0.44,
        max_model_age_hours=168.0,
        train_bars=20_000,
    )
