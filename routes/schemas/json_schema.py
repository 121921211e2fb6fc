"""A JSON Schema document as a typed body: the keywords the strategy spec's schema uses, each typed, so
a client reads `GET /api/strategies/schema` without guessing (other keywords pass through)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

Scalar = str | int | float | bool | None


class IndicatorParamSchema(BaseModel):
    type: str = Field(examples=["integer"])
    default: int | float
    minimum: int | float
    maximum: int | float


class IndicatorSchema(BaseModel):
    """One entry of `x-indicators`: what an editor needs to build an indicator's form."""

    inputs: list[str]
    params: dict[str, IndicatorParamSchema]
    outputs: list[str]


class SchemaNode(BaseModel):
    """One JSON Schema (draft 2020-12) node."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    ref: str | None = Field(default=None, alias="$ref")
    title: str | None = None
    description: str | None = None
    type: str | list[str] | None = None
    properties: dict[str, SchemaNode] | None = None
    required: list[str] | None = None
    additional_properties: bool | SchemaNode | None = Field(default=None, alias="additionalProperties")
    items: SchemaNode | None = None
    any_of: list[SchemaNode] | None = Field(default=None, alias="anyOf")
    one_of: list[SchemaNode] | None = Field(default=None, alias="oneOf")
    enum: list[Scalar] | None = None
    default: Scalar | list[Scalar] | dict[str, Scalar] = None
    minimum: int | float | None = None
    maximum: int | float | None = None
    exclusive_minimum: int | float | None = Field(default=None, alias="exclusiveMinimum")
    exclusive_maximum: int | float | None = Field(default=None, alias="exclusiveMaximum")
    min_items: int | None = Field(default=None, alias="minItems")
    min_length: int | None = Field(default=None, alias="minLength")
    max_length: int | None = Field(default=None, alias="maxLength")
    pattern: str | None = None
    indicators: dict[str, IndicatorSchema] | None = Field(default=None, alias="x-indicators")


class JsonSchemaDocument(SchemaNode):
    """A whole schema: a root node plus its definitions."""

    defs: dict[str, SchemaNode] = Field(default_factory=dict, alias="$defs")
