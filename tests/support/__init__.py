"""Builders shared by several test packages (candles, exchange filters)."""
