"""JSON-safe values: what results, payloads and reports become before they are stored or sent.

``json_safe`` walks a value once (dataclasses as dicts of their fields, like ``dataclasses.asdict``;
dicts; lists and tuples as lists) and converts what JSON cannot hold: NaN and infinities to None,
numpy scalars to Python numbers, Decimals to exact strings (fixed-point unless told otherwise),
datetimes and dates to ISO-8601. ``json_default`` is the ``default=`` hook for ``json.dumps`` when
the rest is left to the encoder.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import fields, is_dataclass
from datetime import date
from decimal import Decimal
from typing import Any

import numpy as np

__all__ = ["fixed_point", "json_default", "json_safe"]

_ATOMS = frozenset({str, int, bool, type(None)})
_ATOMS_AND_FLOAT = _ATOMS | {float}
_FIELDS: dict[type, tuple[str, ...]] = {}  # dataclass -> its field names (other types: ())


def fixed_point(value: Decimal) -> str:
    """A Decimal as exact fixed-point text (never an exponent)."""
    return format(value, "f")


def json_safe(
    value: Any,
    *,
    decimal_text: Callable[[Decimal], str] = fixed_point,
    nan_to_null: bool = True,
    str_keys: bool = False,
) -> Any:
    """`value` ready for JSON (see the module docstring). `nan_to_null=False` leaves NaN and
    infinities as floats; `str_keys` turns every dict key into a string. One walk, no deep copy: a
    replay turns thousands of decisions into payloads, and ``asdict`` followed by a second walk cost
    most of its decision loop. Other values (strings, ints, enums, ...) pass through unchanged."""

    atoms = _ATOMS if nan_to_null else _ATOMS_AND_FLOAT

    def walk(value: Any) -> Any:
        kind = type(value)
        if kind in atoms:
            return value
        if kind is float:
            return None if nan_to_null and not math.isfinite(value) else value
        if kind is dict:
            return mapping(value)
        if kind is list or kind is tuple:
            return [walk(item) for item in value]
        names = _FIELDS.get(kind)
        if names is None:
            is_record = is_dataclass(value) and not isinstance(value, type)
            names = _FIELDS[kind] = tuple(f.name for f in fields(value)) if is_record else ()
        if names:
            return {name: walk(getattr(value, name)) for name in names}
        if isinstance(value, Decimal):
            return decimal_text(value)
        if isinstance(value, date):  # datetimes too
            return value.isoformat()
        if isinstance(value, dict):
            return mapping(value)
        if isinstance(value, list | tuple):
            return [walk(item) for item in value]
        if isinstance(value, np.generic):
            return walk(value.item())
        if isinstance(value, float):
            return None if nan_to_null and not math.isfinite(value) else value
        return value

    def mapping(value: dict[Any, Any]) -> dict[Any, Any]:
        if str_keys:
            return {str(key): walk(item) for key, item in value.items()}
        return {key: walk(item) for key, item in value.items()}

    return walk(value)


def json_default(value: Any) -> Any:
    """For ``json.dumps(..., default=json_default)``: Decimals as fixed-point strings (a float would
    change an amount), dates and datetimes as ISO-8601, objects with ``to_dict()`` as that, anything
    else as ``str()``."""
    if isinstance(value, Decimal):
        return fixed_point(value)
    if isinstance(value, date):
        return value.isoformat()
    if hasattr(value, "to_dict"):
        return value.to_dict()
    return str(value)
