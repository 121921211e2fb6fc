"""Symbol names: the one pattern every layer validates a trading pair against (BTCUSDT, ETHUSDT...)."""

from __future__ import annotations

import re

SYMBOL_PATTERN = r"^[A-Z0-9]{5,20}$"
SYMBOL_BODY = r"[A-Z0-9]{5,20}"  # the same, for embedding in a larger pattern
_SYMBOL = re.compile(SYMBOL_PATTERN)


def is_symbol(value: object) -> bool:
    return isinstance(value, str) and _SYMBOL.fullmatch(value) is not None
