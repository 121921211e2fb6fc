"""Symbol agents: a generic ML agent per symbol, with BTC and ETH defaults."""
