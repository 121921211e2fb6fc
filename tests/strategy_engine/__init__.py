"""Tests of the JSON strategy engine; their candle builders are in tests/support/candles.py."""
