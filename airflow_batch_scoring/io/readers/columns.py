"""How the columns of an input map to the model's and the passthrough columns, and how they are coerced.

:class:`ReadPlan` says what to read from every input; :func:`resolve_columns` matches it to one input's columns
(ignoring case: the files' readers and the SQL source alike) into a :class:`ColumnMap`; :func:`coerce` casts a table
to the plan's types; :func:`check_missing` and :func:`refused_rows` find the values a model refuses.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from airflow_batch_scoring.coercion import ColumnIndex
from airflow_batch_scoring.errors import InputError
from airflow_batch_scoring.io.csv_header import OTHER_DELIMITERS
from airflow_batch_scoring.io.readers.casts import (
    CastFailure,
    InfiniteValue,
    MissingValue,
    PassthroughCastFailure,
    first_bad_index,
)
from airflow_batch_scoring.schema import Column, column_type_of_arrow


@dataclass
class ReadPlan:
    """What to read from each input.

    :param model_columns: the model's input columns; ``None`` when the schema is unknown (then every input column
        that is not only a passthrough column goes to the model, unchecked).
    :param coerce: check and coerce model columns to their types (``schema_check``).
    :param passthrough: input columns copied to the output beside the prediction.
    """

    model_columns: list[Column] | None
    coerce: bool = True
    passthrough: list[str] = field(default_factory=list)
    #: a model column without a value (null, or NaN) is a bad row: set when a model refused missing values, to find
    #: the first one's file, line (or row) and column, or to quarantine them.
    reject_missing: bool = False
    #: the passthrough columns' types for the whole run, by lower-cased name (``ScoringJob.passthrough_types``). A
    #: column left out is read as text from CSV and JSON lines, and as the source's own type from Parquet and SQL.
    passthrough_types: dict[str, pa.DataType] = field(default_factory=dict)
    #: the same for a model column holding inf or -inf, when a model refused infinite values.
    reject_infinite: bool = False

    @property
    def rejects(self) -> bool:
        """Whether missing or infinite values are bad rows."""
        return self.reject_missing or self.reject_infinite


@dataclass
class ColumnMap:
    """How the columns of one input file map to the model's columns and the passthrough columns."""

    model: list[tuple[str, str, pa.DataType | None]]  # (name in the schema, name in the file, type to coerce to)
    passthrough: list[str]  # names in the file
    #: the type each passthrough column (name in the file) is cast to; a column left out keeps the type it is read as.
    passthrough_types: dict[str, pa.DataType] = field(default_factory=dict)

    def typed(self) -> list[tuple[str, str, pa.DataType | None]]:
        """The model columns, then the passthrough columns that are not model columns, each with its type."""
        sources = {source for _, source, _ in self.model}
        return self.model + [
            (name, name, self.passthrough_types.get(name)) for name in self.passthrough if name not in sources
        ]

    def failure(self, position: int, index: int, value: Any, arrow_type: pa.DataType) -> CastFailure:
        """The cast failure of the ``position``-th column of :meth:`typed` at row ``index``."""
        name = self.typed()[position][0]
        kind = CastFailure if position < len(self.model) else PassthroughCastFailure
        return kind(name, index, value, arrow_type)

    @property
    def source_names(self) -> list[str]:
        names = [source for _, source, _ in self.model]
        return names + [p for p in self.passthrough if p not in names]

    def output(self, table: pa.Table) -> pa.Table:
        """Select and rename the table's columns into the reader's output layout."""
        arrays = [table.column(source) for _, source, _ in self.model]
        names = [name for name, _, _ in self.model]
        model_sources = {source for _, source, _ in self.model}
        for source in self.passthrough:
            if source not in model_sources:
                arrays.append(table.column(source))
                names.append(source)
        return pa.Table.from_arrays(arrays, names=names)


def _delimiter_hint(available: list[str]) -> str:
    """A hint when a CSV header was read as one column because the file uses another delimiter."""
    if len(available) == 1:
        for delimiter in OTHER_DELIMITERS:
            if delimiter in available[0]:
                return f" The header seems to use {delimiter!r} as its delimiter, where a comma is expected."
    return ""


#: builds the error for a column the input lacks: (``"passthrough"`` or ``"model"``, the column's name, the input's
#: columns) -> the error to raise.
MissingColumn = Callable[[str, str, list[str]], InputError]


def file_column_missing(path: str) -> MissingColumn:
    """The errors of a file that lacks a column: naming the file, the column and the file's columns."""

    def missing(kind: str, name: str, available: list[str]) -> InputError:
        if kind == "passthrough":
            return InputError(
                f"the passthrough column is missing; the input has columns {available}. "
                "Fix passthrough_columns (or source['columns'] for a CSV without header)." + _delimiter_hint(available),
                path=path,
                column=name,
            )
        return InputError(
            f"the model's input column is missing; the input has columns {available}. Add the column to the "
            "input, fix source['columns'] (the names of a CSV without header, in file order), or fix the "
            "input schema." + _delimiter_hint(available),
            path=path,
            column=name,
        )

    return missing


def resolve_columns(
    available: list[str],
    plan: ReadPlan,
    path: str,
    passthrough_default: pa.DataType | None = None,
    *,
    missing: MissingColumn | None = None,
    typed_passthrough: bool = True,
) -> ColumnMap:
    """Match the plan's columns to the input's columns, ignoring case.

    :param path: the input file (named in the errors).
    :param passthrough_default: the type of a passthrough column the plan gives none (text formats: string).
    :param missing: builds the error for a missing column (default: :func:`file_column_missing` of ``path``).
    :param typed_passthrough: cast the passthrough columns to the plan's types for them (SQL keeps its own types).

    :raises InputError: naming the first column the input lacks.
    """
    missing = missing or file_column_missing(path)
    index = ColumnIndex(available)
    passthrough = []
    for name in plan.passthrough:
        found = index.get(name)
        if found is None:
            raise missing("passthrough", name, available)
        passthrough.append(found)
    types = {
        source: arrow_type for name, source in zip(plan.passthrough, passthrough, strict=True)
        if typed_passthrough
        and (arrow_type := plan.passthrough_types.get(name.lower(), passthrough_default)) is not None
    }
    if plan.model_columns is None:
        only_passthrough = ColumnIndex(passthrough)
        model = [(name, name, None) for name in available if name not in only_passthrough]
        return ColumnMap(model, passthrough, types)
    model = []
    for column in plan.model_columns:
        source = index.get(column.name)
        if source is None:
            raise missing("model", column.name, available)
        model.append((column.name, source, column.type.arrow_type if plan.coerce else None))
    return ColumnMap(model, passthrough, types)


def coerce(table: pa.Table, columns: ColumnMap) -> pa.Table:
    """Cast the model columns of ``table`` (file names) to their schema types, and the passthrough columns to the
    run's types for them.

    :raises CastFailure: for the first value that does not fit.
    """
    for position, (_, source, arrow_type) in enumerate(columns.typed()):
        if arrow_type is None:
            continue
        index = table.schema.get_field_index(source)
        array = table.column(index)
        if array.type == arrow_type:
            continue
        try:
            cast = array.cast(arrow_type)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
            bad = first_bad_index(array, arrow_type)
            raise columns.failure(position, bad, array[bad].as_py(), arrow_type) from None
        table = table.set_column(index, source, cast)
    return table


def _refused(table: pa.Table, columns: ColumnMap, plan: ReadPlan) -> Iterator[tuple[str, pa.ChunkedArray, bool]]:
    """``(column, mask, infinite)`` for each kind of value the plan rejects in each model column (mask: True where
    the row holds one; ``infinite``: the kind is inf, else missing)."""
    for name, source, _ in columns.model:
        array = table.column(source)
        floating = pa.types.is_floating(array.type)
        if plan.reject_missing:
            missing = pc.is_null(array)
            yield name, pc.fill_null(pc.or_kleene(missing, pc.is_nan(array)), True) if floating else missing, False
        if plan.reject_infinite and floating:
            yield name, pc.fill_null(pc.is_inf(array), False), True


def check_missing(table: pa.Table, columns: ColumnMap, plan: ReadPlan | None = None) -> None:
    """Raise for the first row (in row order) that lacks a value in a model column, or (``plan.reject_infinite``)
    holds an infinite one.

    :raises MissingValue: (or :class:`InfiniteValue`) naming the column and the row's index in ``table``.
    """
    first: tuple[int, str, bool] | None = None
    for name, mask, infinite in _refused(table, columns, plan or ReadPlan(None, reject_missing=True)):
        index = pc.index(mask, True).as_py()
        if index >= 0 and (first is None or index < first[0]):
            first = (index, name, infinite)
    if first is not None:
        raise (InfiniteValue if first[2] else MissingValue)(first[1], first[0])


def refused_rows(table: pa.Table, columns: ColumnMap, plan: ReadPlan) -> dict[int, MissingValue]:
    """Each row of ``table`` that holds a value the plan rejects, with its first such value (in column order)."""
    found: dict[int, MissingValue] = {}
    for name, mask, infinite in _refused(table, columns, plan):
        if pc.any(mask).as_py():
            for index in pc.indices_nonzero(mask).to_pylist():
                found.setdefault(index, (InfiniteValue if infinite else MissingValue)(name, index))
    return found


def column_types_of(table: pa.Table) -> list[dict[str, str]]:
    """Describe a table's columns with the seven schema types."""
    return [{"name": f.name, "type": column_type_of_arrow(f.type).value} for f in table.schema]

