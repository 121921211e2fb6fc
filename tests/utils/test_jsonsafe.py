"""utils/jsonsafe.py: one walk for every JSON-bound value, with the variants its callers need."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import numpy as np

from utils.jsonsafe import json_default, json_safe


@dataclass(frozen=True)
class Inner:
    amount: Decimal
    when: datetime


@dataclass(frozen=True)
class Outer:
    inner: Inner
    values: tuple[float, ...]
    table: dict[int, np.float64]


def test_json_safe_walks_dataclasses_dicts_and_sequences() -> None:
    when = datetime(2024, 3, 5, 13, tzinfo=UTC)
    value = Outer(Inner(Decimal("1E-8"), when), (1.5, math.nan, math.inf), {1: np.float64(2.5)})
    assert json_safe(value) == {
        "inner": {"amount": "0.00000001", "when": "2024-03-05T13:00:00+00:00"},
        "values": [1.5, None, None],
        "table": {1: 2.5},
    }
    assert json_safe(value, str_keys=True)["table"] == {"1": 2.5}
    kept = json_safe(value, nan_to_null=False, decimal_text=str)
    assert kept["inner"]["amount"] == "1E-8"
    assert math.isnan(kept["values"][1]) and kept["values"][2] == math.inf


def test_numpy_scalars_become_python_numbers() -> None:
    out = json_safe({"n": np.int64(3), "x": np.float32(np.nan), "b": np.bool_(True)})
    assert out == {"n": 3, "x": None, "b": True}
    assert type(out["n"]) is int and type(out["b"]) is bool


def test_json_default_for_the_encoder() -> None:
    class Rec:
        def to_dict(self) -> dict[str, int]:
            return {"a": 1}

    payload = {"d": Decimal("2.50"), "day": date(2024, 1, 2), "p": Path("/x"), "r": Rec()}
    assert json.loads(json.dumps(payload, default=json_default)) == {
        "d": "2.50",
        "day": "2024-01-02",
        "p": "/x",
        "r": {"a": 1},
    }
