"""The passthrough columns' types for the whole run, decided once by the driver before any replica starts.

Every replica casts its passthrough columns to these types, so that every part of the output has the same schema
and every value reaches the output as it is in the input, whatever rows a replica happens to read first:

- a type the user gives (``passthrough_schema``, the same form as ``input_schema``);
- else, Parquet: the column's type in the files (the same in every file; integers of different widths widen to the
  widest; other disagreements are refused, naming the files and types);
- else, SQL: the column's SQL type as the source reads it;
- else (CSV, JSON lines): text, the value as written in the file.

A passthrough column that is also a model input column has the model schema's type instead. The types travel in
the job file (:attr:`~airflow_batch_scoring.job.ScoringJob.passthrough_types`).
"""

from __future__ import annotations

import base64
from collections.abc import Sequence

import pyarrow as pa

from airflow_batch_scoring.errors import ConfigurationError, InputError
from airflow_batch_scoring.schema import ModelSchema


def _unify(name: str, found: Sequence[tuple[str, pa.DataType]]) -> pa.DataType:
    """The one type of a Parquet column over the files that hold it.

    :raises InputError: when the files disagree on it (other than by integer width).
    """
    kinds: dict[pa.DataType, str] = {}
    for uri, arrow_type in found:
        if pa.types.is_dictionary(arrow_type):
            arrow_type = arrow_type.value_type
        if pa.types.is_large_string(arrow_type):
            arrow_type = pa.string()
        if not pa.types.is_null(arrow_type):
            kinds.setdefault(arrow_type, uri)
    if not kinds:
        return pa.string()  # (only nulls anywhere)
    if len(kinds) == 1:
        return next(iter(kinds))
    if all(pa.types.is_signed_integer(t) for t in kinds) or all(pa.types.is_unsigned_integer(t) for t in kinds):
        return max(kinds, key=lambda t: t.bit_width)
    listed = "; ".join(f"{arrow_type} in {uri}" for arrow_type, uri in list(kinds.items())[:4])
    raise InputError(
        f"the passthrough column {name!r} has a different type in different input files ({listed}), and the output "
        "needs one type. Give its type in passthrough_schema, e.g. "
        f'[{{"name": "{name}", "type": "String"}}] (every value as text), or write the files with one type.'
    )


def decide(
    source_format: str,
    passthrough: Sequence[str],
    given: ModelSchema | None,
    model_columns: Sequence[str] | None = None,
    *,
    parquet_schemas: Sequence[tuple[str, pa.Schema]] = (),
    sql_columns: Sequence[tuple[str, pa.DataType]] = (),
) -> pa.Schema:
    """Decide the type of each passthrough column for the run (see the module).

    :param source_format: the source files' format (``""`` for a table or a query).
    :param given: the user's ``passthrough_schema``.
    :param model_columns: the model's input columns, when known (those keep the model schema's type).
    :param parquet_schemas: Parquet: each input file's URI and Arrow schema.
    :param sql_columns: SQL: the source's columns and the Arrow types they are read as.
    :raises ConfigurationError: when ``given`` names a column that is not a passthrough column.
    :raises InputError: when Parquet files disagree on a column's type.
    """
    wanted = {name.lower() for name in passthrough}
    stray = [column.name for column in (given.columns if given else ()) if column.name.lower() not in wanted]
    if stray:
        raise ConfigurationError(
            f"passthrough_schema names {stray}, which passthrough_columns ({list(passthrough)}) does not list: add "
            "them to passthrough_columns, or fix the names."
        )
    model = {name.lower() for name in model_columns or ()}
    fields = []
    for name in passthrough:
        key = name.lower()
        column = given.find(name) if given else None
        if column is not None:
            arrow_type: pa.DataType | None = column.type.arrow_type
        elif key in model:
            continue  # the model schema's type
        elif sql_columns:  # a SQL source: its columns as read
            arrow_type = next((t for n, t in sql_columns if n.lower() == key), None)
        elif source_format == "parquet":
            found = [
                (uri, schema.field(i).type) for uri, schema in parquet_schemas
                for i, field_name in enumerate(schema.names) if field_name.lower() == key
            ]
            arrow_type = _unify(name, found) if found else None  # (a file without it fails with its name later)
        else:
            arrow_type = pa.string()
        if arrow_type is not None:
            fields.append(pa.field(name, arrow_type))
    return pa.schema(fields)


def encode(schema: pa.Schema) -> str | None:
    """The job file's form of the run's passthrough types (see ``ScoringJob.passthrough_arrow_types``)."""
    if not len(schema):
        return None
    return base64.b64encode(schema.serialize().to_pybytes()).decode("ascii")
