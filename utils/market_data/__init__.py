"""Market data, the layer below the backtester, the ML engine, the agents and the Mother AI: candles and
their Parquet store (``candles``), Binance kline CSV import (``csv_import``), the deterministic sample
series (``sample``), and ``MarketData`` (``market``), which serves closed candles, prices and symbol rules
from the store and, when online, Binance. It imports only ``db`` and the rest of ``utils``."""
