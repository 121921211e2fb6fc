"""utils/binance_api.py: the one way a Binance client is built from the settings."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import SecretStr

from tests.support.settings import load_settings
from utils.binance_api import exchange_from_settings
from utils.settings import BINANCE_TESTNET_API_URL, Settings


def settings(**values: Any) -> Settings:
    return load_settings(**values)


def test_the_client_takes_the_url_keys_and_limits_from_the_settings() -> None:
    calls: list[float] = []
    exchange = exchange_from_settings(
        settings(
            binance_testnet=True,
            binance_api_key=SecretStr("key"),
            binance_api_secret=SecretStr("secret"),
            binance_max_retries=2,
            binance_weight_limit=1200,
        ).exchange,
        clock=lambda: 7,
        sleep=calls.append,
        signed=True,
    )
    assert BINANCE_TESTNET_API_URL.rstrip("/") == exchange._client.API_URL
    assert (exchange._client.API_KEY, exchange._client.API_SECRET) == ("key", "secret")
    assert (exchange._max_retries, exchange._weight_limit, exchange._clock()) == (2, 1200, 7)


def test_public_data_needs_no_keys_but_a_signed_client_does() -> None:
    public = exchange_from_settings(settings().exchange)
    assert public._client.API_KEY is None
    with pytest.raises(ValueError, match="BINANCE_API_KEY and BINANCE_API_SECRET"):
        exchange_from_settings(settings(binance_api_key=SecretStr("key")).exchange, signed=True)
