"""JSON lines: one object per line, keys matched to the schema ignoring case, passthrough values kept as written."""

from __future__ import annotations

import functools
import json
import re
from typing import Any, BinaryIO

import pyarrow as pa
import pyarrow.json as pa_json

from airflow_batch_scoring.io.bad_rows import quarantine
from airflow_batch_scoring.io.bad_rows.quarantine import Diagnosis
from airflow_batch_scoring.io.readers.base import UNDECODED, TextReader, with_long_lines
from airflow_batch_scoring.io.readers.casts import CastFailure, cast_fails
from airflow_batch_scoring.io.readers.columns import ColumnMap, check_missing, coerce, resolve_columns
from airflow_batch_scoring.io.textblocks import split_lines
from airflow_batch_scoring.job import Piece

_CHANGED = re.compile(r"Column\(/([^)]*)\) changed from (\w+) to (\w+)")
#: Arrow types a JSON value of a passthrough column may be read as and still be turned into its exact JSON text.
_EXACT_AS_TEXT = (pa.types.is_string, pa.types.is_integer, pa.types.is_boolean, pa.types.is_null)


def _json_text(value: Any, raw: Any) -> str:
    """The text a JSON value of a passthrough column is carried as: ``raw`` (a number as written), ``true``/``false``,
    or an object's or array's compact JSON."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(raw, str):  # a number (or NaN, Infinity), as written
        return raw
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _passthrough_as_text(block: bytes, keys: set[str]) -> bytes:
    """Rewrite the block's lines so that the values of ``keys`` (lower-cased) that are not JSON strings become JSON
    strings of their text (see :func:`_json_text`). A line that is not a JSON object is left as it is."""
    lines = []
    for line in split_lines(block):
        body = line.rstrip(b"\r\n")
        try:
            text = body.decode("utf-8").lstrip("\ufeff")
            record = json.loads(text)
            raw = json.loads(text, parse_int=str, parse_float=str, parse_constant=str)
        except ValueError:
            lines.append(line)
            continue
        if not isinstance(record, dict):
            lines.append(line)
            continue
        changed = False
        for key, value in record.items():
            if key.lower() in keys and value is not None and not isinstance(value, str):
                record[key] = _json_text(value, raw[key])
                changed = True
        lines.append(json.dumps(record, ensure_ascii=False).encode() + line[len(body):] if changed else line)
    return b"".join(lines)


def _absent(column: pa.ChunkedArray, block: bytes, key: str) -> bool:
    """Whether a column an explicit schema added is only nulls because the block lacks its key."""
    return column.null_count == len(column) and re.search(
        b'"' + re.escape(key.encode()) + rb'"\s*:', block
    ) is None


def _read_json(block: bytes, parse_options: pa_json.ParseOptions, read: dict[str, Any]) -> pa.Table:
    return pa_json.read_json(
        pa.BufferReader(block), read_options=pa_json.ReadOptions(use_threads=True, **read), parse_options=parse_options
    )


class JsonLinesReader(TextReader):
    """JSON lines: one object per line; keys are matched to the schema ignoring case.

    A passthrough column is carried as text unless the run gives it another type: a JSON string as its value, a
    number as written (``1.50`` stays ``1.50``), ``true``/``false``, an object or array as its compact JSON text.
    Its values are read as JSON strings (numbers, as Arrow infers them, once a block holds one); only a block whose
    column mixes numbers and strings, or holds fractions, objects or arrays, is rewritten line by line in Python.
    """

    format = "jsonl"

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        model = {c.name.lower() for c in self.plan.model_columns or []}
        #: the passthrough columns that are not model columns: lower-cased name -> the key as the file spells it.
        self._keys = {name.lower(): name for name in self.plan.passthrough if name.lower() not in model}
        #: those whose run type is text (the others are coerced to their type like model columns).
        self._text = {
            key for key in self._keys if pa.types.is_string(self.plan.passthrough_types.get(key, pa.string()))
        }
        #: keys read with Arrow's type inference (numbers met), rather than as JSON strings.
        self._infer = set(self._keys) - self._text

    def open_file(self, f: BinaryIO, piece: Piece) -> tuple[int, ColumnMap]:
        return 0, ColumnMap([], [])

    def _read(self, block: bytes) -> pa.Table:
        """Read a block, its passthrough columns as the run wants them (see the class)."""
        as_strings = False  # after a rewrite every passthrough value is a JSON string
        switched: set[str] = set()  # keys whose way of reading changed for this block (each changes once)
        for _ in range(4 * len(self._keys) + 2):
            explicit = [self._keys[k] for k in self._keys if as_strings or (k in self._text and k not in self._infer)]
            options = pa_json.ParseOptions(explicit_schema=pa.schema([(k, pa.string()) for k in explicit]))
            try:
                table = with_long_lines(block, functools.partial(_read_json, block, options))
            except pa.ArrowInvalid as err:
                changed = _CHANGED.search(str(err))
                key = changed.group(1).lower() if changed else None
                if key not in self._keys or as_strings:
                    raise
                if key in self._text and key not in self._infer and key not in switched:
                    self._infer.add(key)  # a number among the values: read them as Arrow infers them
                    switched.add(key)
                else:  # numbers and strings mixed in one block
                    block, as_strings = _passthrough_as_text(block, set(self._keys)), True
                continue
            actual: dict[str, str] = {}  # lower-cased key -> the column holding it in this block
            for name in table.column_names:
                key = name.lower()
                if key in self._keys and not (name in explicit and _absent(table.column(name), block, name)):
                    actual.setdefault(key, name)
            respelt = [key for key, name in actual.items() if name != self._keys[key]]
            if respelt:  # the file spells the key otherwise ("ID" for "id"): read it under its own spelling
                self._keys.update((key, actual[key]) for key in respelt)
                continue
            inexact = [
                key for key in self._text if key in actual and not as_strings
                and not any(test(table.column(actual[key]).type) for test in _EXACT_AS_TEXT)
            ]
            back = [key for key in inexact if key not in switched]
            if back:  # (strings that Arrow reads as dates, after a block of numbers): read them as strings again
                self._infer.difference_update(back)
                switched.update(back)
                continue
            if inexact:  # fractions, objects, numbers among dates: only Python's JSON parser keeps their text
                block, as_strings = _passthrough_as_text(block, set(self._keys)), True
                continue
            table = table.drop_columns([name for name in explicit if name not in actual.values()])
            for key in self._text & set(actual):
                name = actual[key]
                if not pa.types.is_string(table.column(name).type):
                    table = table.set_column(
                        table.schema.get_field_index(name), name, table.column(name).cast(pa.string())
                    )
            return table
        raise AssertionError("unreachable: each retry changes how a passthrough column is read")

    def parse(self, block: bytes, columns: ColumnMap, piece: Piece, partial: bool = False) -> pa.Table:
        block = self.text(block)  # (Arrow would read bytes that are not UTF-8 as U+FFFD, silently)
        table = self._read(block)
        if not table.num_rows:
            return table
        if partial:
            table = self._add_missing(table)
        mapped = resolve_columns(table.column_names, self.plan, piece.path, passthrough_default=pa.string())
        columns.model, columns.passthrough = mapped.model, mapped.passthrough
        columns.passthrough_types = mapped.passthrough_types
        table = coerce(table, columns)
        if self.plan.rejects:
            check_missing(table, columns, self.plan)
        return table

    def in_context(self, line: bytes, columns: ColumnMap, err: Exception) -> Diagnosis:
        diagnosis = super().in_context(line, columns, err)
        changed = _CHANGED.search(str(err))
        if diagnosis.reason != quarantine.MALFORMED_ROW or not changed:
            return diagnosis
        name, before, after = changed.groups()
        record = json.loads(line)
        value = next((v for k, v in record.items() if k.lower() == name.lower()), None)
        return Diagnosis(
            quarantine.TYPE_MISMATCH,
            f"value {value!r} is a JSON {after} where the lines before it hold a {before} ({err}). Fix the value, or "
            "give the model's input schema (input_schema) to check each value against its column's type.",
            column=name,
            value=value,
        )

    def _add_missing(self, table: pa.Table) -> pa.Table:
        """Add the model and passthrough columns a run of lines lacks, as nulls (as in the block they came from)."""
        present = {name.lower() for name in table.column_names}
        wanted = [(c.name, c.type.arrow_type) for c in self.plan.model_columns or []]
        wanted += [(name, pa.null()) for name in self.plan.passthrough]
        for name, arrow_type in wanted:
            if name.lower() not in present:
                table = table.append_column(name, pa.nulls(table.num_rows, arrow_type))
                present.add(name.lower())
        return table

    def undecodable_value(self, line: bytes) -> tuple[str | None, str | None]:
        try:
            record = json.loads(line.decode(self.encoding, errors="surrogateescape").lstrip("\ufeff"))
        except ValueError:
            return None, None
        if not isinstance(record, dict):
            return None, None
        for key, value in record.items():
            text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
            if UNDECODED.search(key) or UNDECODED.search(text):
                return self.shown(key), self.shown(text)
        return None, None

    def diagnose(self, line: bytes, columns: ColumnMap) -> Diagnosis:
        undecodable = self.undecodable(line)
        if undecodable is not None:
            return undecodable
        text = line.decode(self.encoding)
        try:
            record = json.loads(text.lstrip("\ufeff"))
        except ValueError as err:
            return Diagnosis(
                quarantine.INVALID_JSON,
                f"the line is not valid JSON ({err}); each line must hold one JSON object"
                + ("; it is the file's last line and has no line break: the file may have been cut short."
                   if not line.endswith((b"\n", b"\r")) else "."),
            )
        if not isinstance(record, dict):
            return Diagnosis(
                quarantine.NOT_AN_OBJECT,
                f"the line holds a JSON {type(record).__name__}, not an object; each line must hold one JSON object "
                'such as {"f0": 1.5, ...}.',
            )
        by_key = {k.lower(): v for k, v in record.items()}
        for column in self.plan.model_columns or [] if self.plan.coerce else []:
            name, arrow_type = column.name, column.type.arrow_type
            value = by_key.get(name.lower())
            if value is None:
                continue
            if isinstance(value, (dict, list)) or cast_fails(pa.array([value]), arrow_type):
                return CastFailure(name, 0, value, arrow_type).diagnosis()
        for position, (name, _, arrow_type) in enumerate(columns.typed()):
            value = by_key.get(name.lower())
            if position < len(columns.model) or arrow_type is None or pa.types.is_string(arrow_type) or value is None:
                continue
            if isinstance(value, (dict, list)) or cast_fails(pa.array([value]), arrow_type):
                return columns.failure(position, 0, value, arrow_type).diagnosis()
        return Diagnosis(
            quarantine.MALFORMED_ROW, "the line's values change type against earlier lines; check the column types."
        )
