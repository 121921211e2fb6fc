"""ML engine: indicators, features and models shared by the backtester, the strategy engine and the agents."""
