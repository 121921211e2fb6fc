"""Exchange rules for tests: TRADING filters for made-up USDT pairs, and symbol rows for the store."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

from utils.exchange import SymbolFilters


def usdt_filters(
    symbols: Iterable[str],
    *,
    tick: str = "0.01",
    step: str = "0.001",
    min_qty: str = "0.001",
    max_qty: str = "9000",
    min_notional: str = "5",
) -> dict[str, SymbolFilters]:
    """TRADING filters for USDT-quoted symbols; a coarse LOT_SIZE step so rounding shows in quantities."""
    sizes = (tick, step, min_qty, max_qty, min_notional)
    return {s: SymbolFilters(s, "TRADING", s.removesuffix("USDT"), "USDT", *sizes) for s in symbols}


def symbol_rows(filters: Iterable[SymbolFilters], source: str = "sample") -> list[dict[str, Any]]:
    """Rows for ``storage.upsert_symbols``: each SymbolFilters' fields and where they came from."""
    return [{**dataclasses.asdict(f), "source": source} for f in filters]
