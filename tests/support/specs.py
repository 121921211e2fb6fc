"""JSON strategy specs the tests build on: one with a tunable parameter of every kind."""

from __future__ import annotations

from typing import Any


def tunable_spec() -> dict[str, Any]:
    return {
        "name": "Tunable cross",
        "symbol": "BTCUSDT",
        "interval": "1h",
        "entry": {
            "left": {"indicator": "sma", "params": {"period": {"param": "fast"}}},
            "op": "crosses_above",
            "right": {"indicator": "sma", "params": {"period": {"param": "slow"}}},
        },
        "exit": {
            "left": {"indicator": "rsi", "params": {"period": 14}},
            "op": ">",
            "right": {"param": "level"},
        },
        "stop_loss": {"param": "stop"},
        "parameters": {
            "fast": {"type": "int", "low": 5, "high": 50, "step": 5, "default": 10},
            "slow": {"type": "int", "low": 60, "high": 200, "step": 20},
            "level": {"type": "float", "low": 60, "high": 80, "step": 2.5, "default": 70},
            "stop": {"type": "choice", "choices": [0.02, 0.05]},
        },
    }
