"""Comparing JSON bodies as a client reads them: the same keys in the same order, equal values, and for each
number the same type. JSON lets two encoders spell one number differently (1e16, 1e+16), so bytes are the
wrong yardstick between encoders; within one encoder (a POST and its later GET), compare bytes."""

from __future__ import annotations

import json
from typing import Any


def ordered(body: bytes) -> Any:
    """The document with every object as its list of (key, value) pairs, so order counts in comparisons."""
    return json.loads(body, object_pairs_hook=list)


def _types(value: Any) -> Any:
    if isinstance(value, list):
        return [_types(v) for v in value]
    if isinstance(value, tuple):
        return (value[0], _types(value[1]))
    return type(value).__name__


def assert_same_json(ours: bytes, theirs: bytes) -> None:
    a, b = ordered(ours), ordered(theirs)
    assert a == b
    assert _types(a) == _types(b)  # an int stays an int, a float a float
