"""Input handling for the indicators: arrays in as contiguous float64, validated periods, first valid bar."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

FloatArray = NDArray[np.float64]


def as_array(values: ArrayLike, name: str) -> FloatArray:
    if hasattr(values, "to_numpy"):  # pandas Series/Index, including nullable dtypes
        values = values.to_numpy(dtype=np.float64, na_value=np.nan)
    arr = np.ascontiguousarray(values, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    return arr


def input_arrays(**named: ArrayLike) -> list[FloatArray]:
    arrays = [as_array(values, name) for name, values in named.items()]
    if len({arr.size for arr in arrays}) > 1:
        detail = ", ".join(f"{name}={arr.size}" for name, arr in zip(named, arrays, strict=True))
        raise ValueError(f"inputs must have the same length, got {detail}")
    return arrays


def check_period(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def first_valid(arrays: list[FloatArray]) -> int:
    """First bar where every input is a number (the talib wrapper's ``begidx``)."""
    n = arrays[0].size
    if n == 0 or not any(np.isnan(arr[0]) for arr in arrays):
        return 0
    valid = ~np.isnan(arrays[0])
    for arr in arrays[1:]:
        valid &= ~np.isnan(arr)
    first = int(np.argmax(valid))
    return first if valid[first] else n
