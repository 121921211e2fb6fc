"""Backtesting: the candle store, the engine, metrics and built-in strategies."""
