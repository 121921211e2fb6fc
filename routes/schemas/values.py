"""The API's value conventions as types: times are integer epoch milliseconds, money and quantities
are canonical decimal strings (no exponent, no trailing zeros), analytics are plain numbers."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

from pydantic import AliasChoices, BeforeValidator, Field, WithJsonSchema


def to_epoch_ms(value: object) -> object:
    """A datetime (naive means UTC), an ISO-8601 string or an integer, as epoch milliseconds."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return value  # pydantic reports it as not an integer
    if isinstance(value, datetime):
        moment = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        return int(moment.timestamp() * 1000)
    return value


def canonical_decimal(value: object) -> object:
    """Decimal, int or decimal text in one form: fixed-point, no exponent, no trailing zeros.
    Floats are refused on purpose: money never passes through binary floating point."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            value = Decimal(value)
        except InvalidOperation:
            return value
    if isinstance(value, int):
        value = Decimal(value)
    if isinstance(value, Decimal):
        if not value.is_finite():
            return str(value)
        text = format(value.normalize(), "f")
        return "0" if text in ("-0", "") else text
    return value


def source_field(*, optional: bool = False) -> Any:
    """The `source` field (where the candles came from) of a result stored as JSON when the field was
    named `data_source`: both names read, one written."""
    return Field(
        None if optional else ...,
        description="Where the candles came from.",
        validation_alias=AliasChoices("source", "data_source"),
    )


DECIMAL_PATTERN = r"^-?[0-9]+(\.[0-9]+)?$"
EpochMs = Annotated[
    int,
    BeforeValidator(to_epoch_ms),
    Field(description="Epoch milliseconds (UTC).", examples=[1735689600000]),
]
DecimalStr = Annotated[
    str,
    BeforeValidator(canonical_decimal),
    Field(
        pattern=DECIMAL_PATTERN,
        json_schema_extra={"format": "decimal", "pattern": DECIMAL_PATTERN},
        examples=["0.00123"],
    ),
]

# A strategy spec in a request: read as plain JSON and validated by strategy_engine.spec, whose errors
# name the offending path (a pydantic model here would answer with its own, pathless, messages first);
# documented as the StrategySpec component that responses carry and GET /api/strategies/schema serves.
SpecIn = Annotated[dict[str, Any], WithJsonSchema({"$ref": "#/components/schemas/StrategySpec"})]
# How a request names a strategy: a built-in's name, a saved strategy's id, or an inline spec.
StrategyRefIn = (
    Annotated[str, Field(min_length=1, max_length=100)] | Annotated[int, Field(ge=1, le=2**31 - 1)] | SpecIn
)
