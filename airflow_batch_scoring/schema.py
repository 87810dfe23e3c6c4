"""Model schema: the seven column types and their Arrow counterparts.

A schema is a list of named, typed columns, written in JSON as ``[{"name": "x", "type": "Float64"}, ...]``.
Type names are case-insensitive (``float64``, ``FLOAT64`` and ``Float64`` are the same type); column names are
matched case-insensitively against the input, as H2O MLOps does.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

import pyarrow as pa

from airflow_batch_scoring.errors import SchemaError


class ColumnType(str, Enum):
    """The column types a model schema may use."""

    BOOLEAN = "Boolean"
    TIME64 = "Time64"
    FLOAT32 = "Float32"
    FLOAT64 = "Float64"
    INT32 = "Int32"
    INT64 = "Int64"
    STRING = "String"

    @classmethod
    def parse(cls, value: str | ColumnType) -> ColumnType:
        """Return the type named ``value``, ignoring case.

        :raises SchemaError: when ``value`` names none of the seven types.
        """
        if isinstance(value, ColumnType):
            return value
        for member in cls:
            if str(value).strip().lower() == member.value.lower():
                return member
        raise SchemaError(
            f"Unknown column type {value!r}: use one of {', '.join(m.value for m in cls)} (case-insensitive)."
        )

    @property
    def arrow_type(self) -> pa.DataType:
        """The Arrow type a column of this type is coerced to."""
        return _ARROW_TYPES[self]


#: Time64 is a point in time with microsecond precision (H2O's Time64), not Arrow's time-of-day type.
_ARROW_TYPES: dict[ColumnType, pa.DataType] = {
    ColumnType.BOOLEAN: pa.bool_(),
    ColumnType.TIME64: pa.timestamp("us"),
    ColumnType.FLOAT32: pa.float32(),
    ColumnType.FLOAT64: pa.float64(),
    ColumnType.INT32: pa.int32(),
    ColumnType.INT64: pa.int64(),
    ColumnType.STRING: pa.string(),
}

#: MLflow ColSpec type names -> column types.
_MLFLOW_TYPES: dict[str, ColumnType] = {
    "boolean": ColumnType.BOOLEAN,
    "integer": ColumnType.INT32,
    "long": ColumnType.INT64,
    "float": ColumnType.FLOAT32,
    "double": ColumnType.FLOAT64,
    "string": ColumnType.STRING,
    "datetime": ColumnType.TIME64,
}


def column_type_of_arrow(arrow_type: pa.DataType) -> ColumnType:
    """Return the column type closest to an Arrow type (used to describe outputs and passthrough columns)."""
    if pa.types.is_boolean(arrow_type):
        return ColumnType.BOOLEAN
    if pa.types.is_timestamp(arrow_type) or pa.types.is_date(arrow_type):
        return ColumnType.TIME64
    if pa.types.is_float16(arrow_type) or pa.types.is_float32(arrow_type):
        return ColumnType.FLOAT32
    if pa.types.is_floating(arrow_type):
        return ColumnType.FLOAT64
    if pa.types.is_integer(arrow_type):
        if arrow_type.bit_width <= 32 and not (pa.types.is_uint32(arrow_type)):
            return ColumnType.INT32
        return ColumnType.INT64
    return ColumnType.STRING


@dataclass(frozen=True)
class Column:
    """One named, typed column of a model schema."""

    name: str
    type: ColumnType

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "type": self.type.value}


@dataclass(frozen=True)
class ModelSchema:
    """An ordered list of columns; names are unique ignoring case."""

    columns: tuple[Column, ...]

    def __post_init__(self) -> None:
        seen: set[str] = set()
        for column in self.columns:
            key = column.name.lower()
            if key in seen:
                raise SchemaError(f"Column {column.name!r} appears twice in the schema (names are case-insensitive).")
            seen.add(key)

    @classmethod
    def parse(cls, value: ModelSchema | str | Iterable[Mapping[str, Any]] | None) -> ModelSchema | None:
        """Build a schema from its JSON form (a string, or a list of ``{"name", "type"}`` mappings).

        :raises SchemaError: when the value is not of that form.
        """
        if value is None or isinstance(value, ModelSchema):
            return value
        if isinstance(value, str):
            if not value.strip():
                return None
            try:
                value = json.loads(value)
            except json.JSONDecodeError as err:
                raise SchemaError(
                    f"The schema is not valid JSON ({err}); give it as "
                    '[{"name": "x", "type": "Float64"}, ...].'
                ) from err
        if isinstance(value, Mapping) or not isinstance(value, Iterable):
            kind = type(value).__name__
            raise SchemaError(f'A schema is a list of {{"name": ..., "type": ...}} objects, got {kind}.')
        columns = []
        for position, item in enumerate(value):
            if not isinstance(item, Mapping) or "name" not in item or "type" not in item:
                raise SchemaError(
                    f"Schema entry #{position} is {item!r}: each entry needs a 'name' and a 'type' "
                    f"(one of {', '.join(m.value for m in ColumnType)})."
                )
            name = str(item["name"])
            if not name:
                raise SchemaError(f"Schema entry #{position} has an empty name.")
            columns.append(Column(name, ColumnType.parse(item["type"])))
        if not columns:
            raise SchemaError("The schema has no columns.")
        return cls(tuple(columns))

    @classmethod
    def from_mlflow(cls, mlflow_schema: Any) -> ModelSchema | None:
        """Build a schema from an MLflow ``Schema`` (the inputs or outputs of a model signature).

        Returns ``None`` for tensor-based or unnamed schemas, which do not describe columns.

        :raises SchemaError: for a column type none of the seven types can hold.
        """
        if mlflow_schema is None or not getattr(mlflow_schema, "has_input_names", lambda: False)():
            return None
        if getattr(mlflow_schema, "is_tensor_spec", lambda: False)():
            return None
        return cls._from_mlflow_columns(
            (spec.name, getattr(getattr(spec, "type", None), "name", str(getattr(spec, "type", ""))))
            for spec in mlflow_schema.inputs
        )

    @classmethod
    def from_mlflow_json(cls, text: str | None) -> ModelSchema | None:
        """Build a schema from the JSON text an ``MLmodel`` file holds for a signature's inputs or outputs, without
        importing MLflow: the same schema :meth:`from_mlflow` builds from MLflow's parse of it.

        Returns ``None`` for no text, and for tensor-based or unnamed schemas.

        :raises SchemaError: for text that is not a JSON list of column specs, or a column type none of the seven
            types can hold.
        """
        if not text:
            return None
        try:
            specs = json.loads(text)
        except ValueError as err:
            raise SchemaError(f"The MLflow signature {text[:200]!r} is not valid JSON ({err}).") from err
        if not isinstance(specs, list) or not all(isinstance(spec, dict) for spec in specs):
            raise SchemaError(f"The MLflow signature {text[:200]!r} is not a JSON list of column specs.")
        if not specs or specs[0].get("type") == "tensor" or not all(spec.get("name") for spec in specs):
            return None
        return cls._from_mlflow_columns((str(spec["name"]), str(spec.get("type", ""))) for spec in specs)

    @classmethod
    def _from_mlflow_columns(cls, columns: Iterable[tuple[str, str]]) -> ModelSchema:
        """The schema of MLflow columns given as ``(name, MLflow type name)``.

        :raises SchemaError: for a column type none of the seven types can hold.
        """
        found = []
        for name, type_name in columns:
            column_type = _MLFLOW_TYPES.get(str(type_name).lower())
            if column_type is None:
                raise SchemaError(
                    f"MLflow column {name!r} has type {type_name!r}, which batch scoring cannot hold; "
                    "give input_schema/output_schema explicitly with the seven supported types."
                )
            found.append(Column(name, column_type))
        return cls(tuple(found))

    @classmethod
    def from_arrow(cls, schema: pa.Schema) -> ModelSchema:
        """Describe an Arrow schema with the seven column types."""
        return cls(tuple(Column(field.name, column_type_of_arrow(field.type)) for field in schema))

    @property
    def names(self) -> list[str]:
        return [column.name for column in self.columns]

    def to_json(self) -> list[dict[str, str]]:
        return [column.to_dict() for column in self.columns]

    def to_arrow(self) -> pa.Schema:
        return pa.schema([pa.field(c.name, c.type.arrow_type) for c in self.columns])

    def find(self, name: str) -> Column | None:
        """Return the column called ``name``, ignoring case."""
        key = name.lower()
        for column in self.columns:
            if column.name.lower() == key:
                return column
        return None

    def __len__(self) -> int:
        return len(self.columns)
