"""Bad input, case by case, in both ``on_bad_rows`` modes.

``fail`` must stop with the file, the line (or Parquet row), the column, the value and the expected type, and publish
nothing. ``quarantine`` must score exactly the good rows (equal to the model's own predictions, in input order) and
write exactly the bad rows, with their reason codes, to ``<sink>/_errors/``; errors about a whole file fail in both
modes. The table runs the driver, the engine and the commit in this process (fast); a few tests at the end go
through real replica processes, the operator in ``dag.test()``, the command line, and SeaweedFS.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from airflow_batch_scoring.artifacts import process_model
from airflow_batch_scoring.driver.prepare import prepare_job
from airflow_batch_scoring.driver.run import execute_job
from airflow_batch_scoring.errors import ConfigurationError, InputError
from airflow_batch_scoring.io.bad_rows.policy import BadRowPolicy
from airflow_batch_scoring.io.bad_rows.quarantine import MAX_RAW_CHARS, salvage
from airflow_batch_scoring.job import ModelSpec
from airflow_batch_scoring.options import ScoringOptions
from airflow_batch_scoring.specs import parse_data_spec
from tests.support.bad_rows import (
    COLUMNS,
    csv_with_bad_lines,
    errors_of,
    frame_lines,
    output_of,
    spread_bad_lines,
    write_lines,
)
from tests.support.helpers import FEATURES, SCHEMA, Models, assert_nothing_published, make_frame, write_frame
from tests.support.launchers import InProcessLauncher
from tests.support.scoring import check_predictions

TYPED_COLUMNS = ["id", "n32", "n64", "flag", "ts", "f0"]
TYPED_SCHEMA = [
    {"name": "n32", "type": "Int32"},
    {"name": "n64", "type": "Int64"},
    {"name": "flag", "type": "Boolean"},
    {"name": "ts", "type": "Time64"},
    {"name": "f0", "type": "Float64"},
]
ROWS = 60


class EchoModel:
    """A model of any input types (Int32, Boolean, Time64, ...): it predicts the number of non-null inputs."""

    feature_names_in_ = np.array([c["name"] for c in TYPED_SCHEMA], dtype=object)

    def predict(self, x: pd.DataFrame) -> np.ndarray:
        return x.notna().sum(axis=1).to_numpy(dtype=np.float64)


@pytest.fixture(scope="module")
def processed(models: Models, tmp_path_factory: pytest.TempPathFactory) -> dict[str, ModelSpec]:
    """The regressor and the echo model, processed once for the whole module."""
    folder = tmp_path_factory.mktemp("bad-rows-models")
    joblib.dump(EchoModel(), folder / "echo.joblib")
    return {
        "regressor": process_model(str(models.regressor_path), str(folder / "regressor")),
        "echo": process_model(str(folder / "echo.joblib"), str(folder / "echo")),
    }


def score(model: ModelSpec, source: dict, sink: Path, *, after_listing: Callable[[], None] | None = None,
          **kwargs: Any) -> dict:
    kwargs.setdefault("part_size", 4096)  # several blocks (and shards) even for small files
    kwargs.setdefault("passthrough_columns", ["id"])
    job, files = prepare_job(
        job_id=f"t-{uuid.uuid4().hex[:8]}",
        model=model,
        source=parse_data_spec(source, "source"),
        sink=parse_data_spec({"uri": sink.as_uri(), "format": "parquet"}, "sink"),
        options=ScoringOptions.parse(**kwargs),
    )
    if after_listing is not None:
        after_listing()
    return execute_job(job, files, log=lambda line: None, launcher=InProcessLauncher())  # type: ignore[arg-type]


# --- the inputs ----------------------------------------------------------------------------------------------------


@dataclass
class Input:
    """One bad input: its source spec, the ids of its rows in file order, and how line/row numbers map to rows."""

    source: dict
    ids: list[int]
    frame: pd.DataFrame | None = None  # the rows' features, when the regressor scores them
    model: str = "regressor"
    first_line: int = 1  # the line (or row) number of the first data row
    lines: list[bytes] = field(default_factory=list)  # text inputs: the file's lines, for the raw text
    after_listing: Callable[[], None] | None = None
    options: dict[str, Any] = field(default_factory=dict)  # more arguments of the run (passthrough_columns, ...)
    expect: dict[str, list[Any]] = field(default_factory=dict)  # output columns' values, when the input is valid


def csv_input(folder: Path, mutate: Callable[[list[bytes]], None] | None = None, *, header: bool = False,
              name: str = "in.csv") -> Input:
    frame = make_frame(ROWS, seed=7)
    lines = frame_lines(frame, "csv_header" if header else "csv", folder)
    if mutate:
        mutate(lines)
    write_lines(folder / name, lines)
    source = {"uri": (folder / name).as_uri(), "format": "csv", "header": header}
    if not header:
        source["columns"] = COLUMNS
    return Input(source, frame["id"].tolist(), frame, first_line=2 if header else 1, lines=lines)


def jsonl_input(folder: Path, mutate: Callable[[list[bytes]], None] | None = None) -> Input:
    frame = make_frame(ROWS, seed=8)
    lines = frame_lines(frame, "jsonl", folder)
    if mutate:
        mutate(lines)
    write_lines(folder / "in.jsonl", lines)
    return Input({"uri": (folder / "in.jsonl").as_uri()}, frame["id"].tolist(), frame, lines=lines)


def parquet_input(folder: Path, change: Callable[[pd.DataFrame], pd.DataFrame] | None = None) -> Input:
    frame = make_frame(ROWS, seed=9)
    written = change(frame.copy()) if change else frame
    write_frame(written, folder / "in.parquet", "parquet")
    return Input({"uri": (folder / "in.parquet").as_uri()}, frame["id"].tolist(), frame)


def typed_input(folder: Path, fmt: str, changes: dict[int, dict[str, Any]]) -> Input:
    """Rows with Int32, Int64, Boolean, Time64 and Float64 columns; ``changes`` replaces values of some rows."""
    rows = []
    for i in range(ROWS):
        row = {"id": i, "n32": i * 1000, "n64": i * 10**12, "flag": i % 2 == 0, "ts": f"2026-01-01T00:00:{i:02d}",
               "f0": i / 7}
        row.update(changes.get(i, {}))
        rows.append(row)
    if fmt == "csv":
        def text(value: Any) -> str:
            return str(value).lower() if isinstance(value, bool) else str(value)

        lines = [(",".join(text(row[c]) for c in TYPED_COLUMNS) + "\n").encode() for row in rows]
        write_lines(folder / "typed.csv", lines)
        source = {"uri": (folder / "typed.csv").as_uri(), "columns": TYPED_COLUMNS}
        return Input(source, list(range(ROWS)), model="echo", lines=lines)
    if fmt == "jsonl":
        lines = [(json.dumps(row) + "\n").encode() for row in rows]
        write_lines(folder / "typed.jsonl", lines)
        return Input({"uri": (folder / "typed.jsonl").as_uri()}, list(range(ROWS)), model="echo", lines=lines)
    table = pa.Table.from_pylist(rows)
    pq.write_table(table, folder / "typed.parquet", row_group_size=20)
    return Input({"uri": (folder / "typed.parquet").as_uri()}, list(range(ROWS)), model="echo")


def field_at(index: int, column: int, value: bytes) -> Callable[[list[bytes]], None]:
    """Replace field ``column`` of line ``index`` (0-based) of a CSV."""
    def mutate(lines: list[bytes]) -> None:
        fields = lines[index].rstrip(b"\n").split(b",")
        fields[column] = value
        lines[index] = b",".join(fields) + b"\n"

    return mutate


def json_key(index: int, key: str, literal: str) -> Callable[[list[bytes]], None]:
    """Set ``key`` of JSON line ``index`` (0-based) to a JSON ``literal``."""
    def mutate(lines: list[bytes]) -> None:
        record = json.loads(lines[index])
        record[key] = json.loads(literal)
        lines[index] = (json.dumps(record) + "\n").encode()

    return mutate


def replace_line(index: int, text: bytes) -> Callable[[list[bytes]], None]:
    def mutate(lines: list[bytes]) -> None:
        lines[index] = text

    return mutate


def _truncate_last(lines: list[bytes]) -> None:
    lines[-1] = lines[-1][: len(lines[-1]) // 3]  # cut mid-line, no line break


def _semicolons(lines: list[bytes]) -> None:
    lines[:] = [line.replace(b",", b";") for line in lines]


def _crlf_with_bad_value(lines: list[bytes]) -> None:
    for i in range(0, len(lines), 2):
        lines[i] = lines[i].replace(b"\n", b"\r\n")
    field_at(8, 2, b"1.2.3")(lines)
    lines[8] = lines[8].replace(b"\n", b"\r\n")


def _bom(lines: list[bytes]) -> None:
    lines[0] = b"\xef\xbb\xbf" + lines[0]


def _unclosed_quote_in_a_string(folder: Path) -> Input:
    """A String passthrough column with an unclosed quote: Arrow alone would read the next lines into that value."""
    frame = make_frame(ROWS, seed=10)
    lines = [f'{frame.loc[i, "id"]},"name {i}",{",".join(repr(float(v)) for v in frame.loc[i, FEATURES])}\n'.encode()
             for i in range(ROWS)]
    lines[20] = lines[20].replace(b'"name 20"', b'"name 20')
    write_lines(folder / "names.csv", lines)
    source = {"uri": (folder / "names.csv").as_uri(), "columns": ["id", "name", *FEATURES]}
    return Input(source, frame["id"].tolist(), frame, lines=lines)


def _cr_only(lines: list[bytes]) -> None:
    """Classic Mac OS line ends: a bare CR."""
    lines[:] = [line.replace(b"\n", b"\r") for line in lines]


def _names_csv(folder: Path, names: dict[int, bytes], *, passthrough: list[str] | None = None,
               f2: dict[int, bytes] | None = None, encoding: str | None = None, max_line_bytes: int | None = None,
               end: bytes = b"\n") -> Input:
    """A CSV with a String column ``name`` (passed through unless ``passthrough`` says otherwise) whose values are
    ``name i`` except the bytes of ``names``; ``f2`` replaces f2 values; ``end`` ends the last line."""
    frame = make_frame(ROWS, seed=17)
    lines = []
    for i in range(ROWS):
        features = [repr(float(v)).encode() for v in frame.loc[i, FEATURES]]
        features[2] = (f2 or {}).get(i, features[2])
        lines.append(b",".join([str(frame.loc[i, "id"]).encode(), names.get(i, f"name {i}".encode()), *features])
                     + b"\n")
    lines[-1] = lines[-1].rstrip(b"\n") + end
    write_lines(folder / "names.csv", lines)
    source: dict[str, Any] = {"uri": (folder / "names.csv").as_uri(), "columns": ["id", "name", *FEATURES]}
    source.update({k: v for k, v in (("encoding", encoding), ("max_line_bytes", max_line_bytes)) if v})
    found = Input(source, frame["id"].tolist(), frame, lines=lines,
                  options={"passthrough_columns": passthrough or ["id", "name"]})
    found.expect["name"] = [names.get(i, f"name {i}".encode()).decode(encoding or "utf-8", errors="replace")
                            for i in range(ROWS)]
    return found


def _names_jsonl(folder: Path, names: dict[int, bytes], *, encoding: str | None = None,
                 max_line_bytes: int | None = None) -> Input:
    """JSON lines with a passed-through String key ``name``: ``name i`` except the bytes of ``names``."""
    frame = make_frame(ROWS, seed=18)
    lines = []
    for i, record in enumerate(frame.to_dict(orient="records")):
        text = json.dumps({"id": record["id"], "name": "@", **{k: record[k] for k in FEATURES}}).encode()
        lines.append(text.replace(b"@", names.get(i, f"name {i}".encode())) + b"\n")
    write_lines(folder / "names.jsonl", lines)
    source: dict[str, Any] = {"uri": (folder / "names.jsonl").as_uri()}
    source.update({k: v for k, v in (("encoding", encoding), ("max_line_bytes", max_line_bytes)) if v})
    found = Input(source, frame["id"].tolist(), frame, lines=lines, options={"passthrough_columns": ["id", "name"]})
    found.expect["name"] = [names.get(i, f"name {i}".encode()).decode(encoding or "utf-8", errors="replace")
                            for i in range(ROWS)]
    return found


def _listed_then_replaced_by_a_folder(folder: Path) -> Input:
    found = csv_input(folder)
    path = folder / "in.csv"

    def replace() -> None:
        path.unlink()
        path.mkdir()
        (path / "x.csv").write_text("1,2,3,4,5,6\n")

    found.after_listing = replace
    return found


def _listed_then_removed(folder: Path) -> Input:
    found = jsonl_input(folder)
    found.after_listing = (folder / "in.jsonl").unlink
    return found


def _truncated_parquet(folder: Path) -> Input:
    found = parquet_input(folder)
    data = (folder / "in.parquet").read_bytes()
    (folder / "in.parquet").write_bytes(data[: len(data) // 2])
    return found


def _garbage_parquet(folder: Path) -> Input:
    found = parquet_input(folder)
    (folder / "in.parquet").write_bytes(b"PAR1" + bytes(range(256)) * 8 + b"PAR1")
    return found


def _empty_parquet(folder: Path) -> Input:
    found = parquet_input(folder)
    pq.write_table(pa.Table.from_pandas(make_frame(0), preserve_index=False), folder / "in.parquet")
    found.ids = []
    return found


def _text_file(name: str, content: bytes, spec: dict | None = None) -> Callable[[Path], Input]:
    def build(folder: Path) -> Input:
        (folder / name).write_bytes(content)
        source = {"uri": (folder / name).as_uri(), **(spec or {})}
        return Input(source, [])

    return build


# --- the table ------------------------------------------------------------------------------------------------------

Bad = list[tuple[int, str, str | None]]  # (line or row number, reason, column)


@dataclass
class Case:
    """``fail``: words the fail-mode message holds (besides the file's name); ``bad``: what quarantine sets aside;
    ``file_error``: words of the error both modes raise for a file that is wrong as a whole; ``ok``: the input is
    fine (both modes score every row)."""

    name: str
    build: Callable[[Path], Input]
    fail: list[str] = field(default_factory=list)
    bad: Bad = field(default_factory=list)
    file_error: list[str] | None = None
    ok: bool = False
    schema: list[dict[str, str]] | None = None


def typed(fmt: str, changes: dict[int, dict[str, Any]]) -> Callable[[Path], Input]:
    return lambda folder: typed_input(folder, fmt, changes)


EXPECTS_FLOAT = ["cannot be read as Float64"]
CASES = [
    # CSV without header (id, f0..f4 as Float64)
    Case("csv-value-of-wrong-type", lambda d: csv_input(d, field_at(9, 3, b"abc")),
         ["line 10", "column 'f2'", "value 'abc'", *EXPECTS_FLOAT], [(10, "type_mismatch", "f2")]),
    Case("csv-too-few-fields", lambda d: csv_input(d, replace_line(6, b"7000006,1.5,2.5,3.5\n")),
         ["line 7", "4 field(s) where 6 are expected"], [(7, "missing_fields", None)]),
    Case("csv-extra-fields", lambda d: csv_input(d, field_at(11, 2, b"1,5")),
         ["line 12", "7 field(s) where 6 are expected", "must be quoted"], [(12, "extra_fields", None)]),
    Case("csv-truncated-last-line", lambda d: csv_input(d, _truncate_last),
         [f"line {ROWS}", "field(s) where 6 are expected", "cut short"], [(ROWS, "missing_fields", None)]),
    Case("csv-wrong-delimiter-on-one-line", lambda d: csv_input(d, replace_line(4, b"7000004;1.5;2;3;4;5\n")),
         ["line 5", "1 field(s) where 6", "';' as its delimiter"], [(5, "missing_fields", None)]),
    Case("csv-wrong-delimiter-in-the-whole-file", lambda d: csv_input(d, _semicolons),
         ["line 1", "';' as its delimiter"], file_error=["none of its 60 line(s) can be read", "delimiter"]),
    Case("csv-tab-delimited-file", lambda d: csv_input(d, lambda ls: ls.__setitem__(
        slice(None), [x.replace(b",", b"\t") for x in ls])),
         ["line 1", "'\\t' as its delimiter"], file_error=["none of its 60 line(s)", "'\\t' as its delimiter"]),
    Case("csv-unclosed-quote-in-a-number", lambda d: csv_input(d, field_at(7, 1, b'"0.5')),
         ["line 8", "quote that is never closed"], [(8, "malformed_row", None)]),
    Case("csv-unclosed-quote-in-a-string", _unclosed_quote_in_a_string,
         ["line 21", "quote that is never closed"], [(21, "malformed_row", None)]),
    Case("csv-not-utf8", lambda d: csv_input(d, field_at(3, 4, b"\xff\xfe")),
         ["line 4", "column 'f3'", "not UTF-8", "byte 0xff", "source['encoding']"], [(4, "invalid_utf8", "f3")]),
    Case("csv-not-utf8-in-a-passthrough-column", lambda d: _names_csv(d, {0: b"n\xe9 0", 33: b"caf\xe9"}),
         ["line 1", "column 'name'", "not UTF-8", "byte 0xe9"],
         [(1, "invalid_utf8", "name"), (34, "invalid_utf8", "name")]),
    Case("csv-not-utf8-in-an-unused-column", lambda d: _names_csv(d, {12: b"\x80"}, passthrough=["id"]),
         ["line 13", "column 'name'", "not UTF-8"], [(13, "invalid_utf8", "name")]),
    Case("csv-latin1-with-its-encoding", lambda d: _names_csv(d, {0: b"n\xe9", 20: b"\xc5ngstr\xf6m"},
                                                                  encoding="latin-1"), ok=True),
    Case("csv-cp1252-byte-it-does-not-define", lambda d: _names_csv(d, {7: b"\x81"}, encoding="cp1252"),
         ["line 8", "column 'name'", "not cp1252 text"], [(8, "invalid_encoding", "name")]),
    Case("csv-a-long-value-in-a-good-line", lambda d: _names_csv(d, {5: b"x" * (1536 * 1024)}), ok=True),
    Case("csv-a-long-value-in-a-bad-line", lambda d: _names_csv(d, {5: b"x" * (1536 * 1024)}, f2={5: b"abc"}),
         ["line 6", "column 'f2'", "value 'abc'", *EXPECTS_FLOAT], [(6, "type_mismatch", "f2")]),
    Case("csv-a-long-bad-line-with-too-many-fields", lambda d: _names_csv(d, {5: b"a," + b"y" * (300 * 1024)}),
         ["line 6", "8 field(s) where 7 are expected"], [(6, "extra_fields", None)]),
    Case("csv-line-longer-than-max-line-bytes", lambda d: _names_csv(d, {9: b"z" * (200 * 1024)},
                                                                        max_line_bytes=64 * 1024),
         ["line 10", "bytes long, more than max_line_bytes=65,536"], [(10, "line_too_long", None)]),
    Case("csv-last-line-longer-than-max-line-bytes", lambda d: _names_csv(d, {ROWS - 1: b"z" * (100 * 1024)},
                                                                             max_line_bytes=64 * 1024, end=b""),
         [f"line {ROWS}", "more than max_line_bytes"], [(ROWS, "line_too_long", None)]),
    Case("csv-cr-only-line-ends", lambda d: csv_input(d, _cr_only), ok=True),
    Case("csv-header-cr-only-line-ends", lambda d: csv_input(d, _cr_only, header=True), ok=True),
    Case("csv-cr-only-with-a-bad-value", lambda d: csv_input(d, lambda ls: (field_at(40, 2, b"?")(ls), _cr_only(ls))),
         ["line 41", "column 'f1'", "value '?'"], [(41, "type_mismatch", "f1")]),
    Case("csv-decimal-comma", lambda d: csv_input(d, field_at(14, 1, b'"1,5"')),
         ["line 15", "column 'f0'", "value '1,5'", *EXPECTS_FLOAT], [(15, "type_mismatch", "f0")]),
    Case("csv-infinity-word", lambda d: csv_input(d, field_at(2, 5, b"infinite")),
         ["line 3", "column 'f4'", "'infinite'", *EXPECTS_FLOAT], [(3, "type_mismatch", "f4")]),
    Case("csv-crlf-and-lf-with-a-bad-value", lambda d: csv_input(d, _crlf_with_bad_value),
         ["line 9", "column 'f1'", "'1.2.3'", *EXPECTS_FLOAT], [(9, "type_mismatch", "f1")]),
    Case("csv-mixed-newlines", lambda d: csv_input(d, lambda ls: ls.__setitem__(
        slice(None), [x.replace(b"\n", b"\r\n") if i % 3 else x for i, x in enumerate(ls)])), ok=True),
    Case("csv-bom-without-header", lambda d: csv_input(d, _bom), ok=True),
    # CSV with a header
    Case("csv-header-bom", lambda d: csv_input(d, _bom, header=True), ok=True),
    Case("csv-header-value-of-wrong-type", lambda d: csv_input(d, field_at(30, 5, b"--1"), header=True),
         ["line 31", "column 'f4'", "'--1'", *EXPECTS_FLOAT], [(31, "type_mismatch", "f4")]),
    Case("csv-header-missing-column", lambda d: csv_input(d, lambda ls: ls.__setitem__(
        0, ls[0].replace(b'"f2"', b'"g2"')), header=True),
         file_error=["column 'f2'", "model's input column is missing", "'g2'"]),
    Case("csv-header-wrong-delimiter", lambda d: csv_input(d, _semicolons, header=True),
         file_error=["column 'id'", "missing", "';' as its delimiter"]),
    Case("csv-header-only", _text_file("h.csv", b"id,f0,f1,f2,f3,f4\n", {"header": True}),
         file_error=["no data rows"]),
    Case("csv-empty-file", _text_file("e.csv", b"", {"columns": COLUMNS}), file_error=["empty", "0 bytes"]),
    Case("csv-blank-lines-only", _text_file("b.csv", b"\n\n\r\n", {"columns": COLUMNS}),
         file_error=["no data rows"]),
    # JSON lines
    Case("jsonl-line-that-is-not-json", lambda d: jsonl_input(d, replace_line(14, b'{"id": 14, "f0": 1.0,\n')),
         ["line 15", "not valid JSON"], [(15, "invalid_json", None)]),
    Case("jsonl-truncated-last-line", lambda d: jsonl_input(d, _truncate_last),
         [f"line {ROWS}", "not valid JSON", "cut short"], [(ROWS, "invalid_json", None)]),
    Case("jsonl-value-of-wrong-type", lambda d: jsonl_input(d, json_key(5, "f1", '"ten"')),
         ["line 6", "column 'f1'", "value 'ten'", *EXPECTS_FLOAT], [(6, "type_mismatch", "f1")], schema=SCHEMA),
    # (without input_schema, a joblib model's columns are known only once it is loaded: the preflight, which reads
    # the head of each file before any replica starts, can only say that the type changed)
    Case("jsonl-value-of-wrong-type-before-the-model-is-loaded", lambda d: jsonl_input(d, json_key(5, "f1", '"ten"')),
         ["line 6", "column 'f1'", "value 'ten'"],
         [(6, "type_mismatch", "f1")]),
    Case("jsonl-nested-object", lambda d: jsonl_input(d, json_key(40, "f3", '{"a": 1}')),
         ["line 41", "column 'f3'", *EXPECTS_FLOAT], [(41, "type_mismatch", "f3")]),
    Case("jsonl-array-line", lambda d: jsonl_input(d, replace_line(9, b"[1, 2, 3]\n")),
         ["line 10", "JSON list, not an object"], [(10, "not_an_object", None)]),
    Case("jsonl-string-line", lambda d: jsonl_input(d, replace_line(33, b'"hello"\n')),
         ["line 34", "JSON str, not an object"], [(34, "not_an_object", None)]),
    Case("jsonl-not-utf8", lambda d: jsonl_input(d, replace_line(19, b'{"id": 19, "f0": "\xff"}\n')),
         ["line 20", "column 'f0'", "not UTF-8"], [(20, "invalid_utf8", "f0")]),
    Case("jsonl-not-utf8-in-a-passthrough-column", lambda d: _names_jsonl(d, {0: b"n\xe9 0", 41: b"caf\xe9"}),
         ["line 1", "column 'name'", "not UTF-8", "byte 0xe9"],
         [(1, "invalid_utf8", "name"), (42, "invalid_utf8", "name")]),
    Case("jsonl-latin1-with-its-encoding", lambda d: _names_jsonl(d, {3: b"\xc5ngstr\xf6m"}, encoding="latin-1"),
         ok=True),
    Case("jsonl-a-long-value", lambda d: _names_jsonl(d, {8: b"x" * (1536 * 1024)}), ok=True),
    Case("jsonl-line-longer-than-max-line-bytes", lambda d: _names_jsonl(d, {30: b"z" * (100 * 1024)},
                                                                            max_line_bytes=64 * 1024),
         ["line 31", "more than max_line_bytes=65,536"], [(31, "line_too_long", None)]),
    Case("jsonl-cr-only-line-ends", lambda d: jsonl_input(d, _cr_only), ok=True),
    Case("jsonl-missing-column", lambda d: jsonl_input(d, lambda ls: ls.__setitem__(
        slice(None), [(json.dumps({k: v for k, v in json.loads(x).items() if k != "f2"}) + "\n").encode()
                      for x in ls])), file_error=["column 'f2'", "model's input column is missing"]),
    Case("jsonl-bom-and-blank-lines", lambda d: jsonl_input(d, lambda ls: (_bom(ls), ls.insert(10, b"\n"),
                                                                           ls.insert(30, b"  \r\n"))), ok=True),
    # Parquet
    Case("parquet-value-of-wrong-type", lambda d: parquet_input(d, lambda f: f.assign(
        f3=f["f3"].astype(str).where(f.index != 33, "n/a"))),
         ["row 34", "column 'f3'", "value 'n/a'", *EXPECTS_FLOAT], [(34, "type_mismatch", "f3")]),
    Case("parquet-column-of-wrong-type", lambda d: parquet_input(d, lambda f: f.assign(f1="unknown")),
         ["row 1", "column 'f1'", "'unknown'", *EXPECTS_FLOAT],
         file_error=["none of its 60 row(s) can be read", "type_mismatch"]),
    Case("parquet-missing-column", lambda d: parquet_input(d, lambda f: f.drop(columns=["f4"])),
         file_error=["column 'f4'", "missing", "'f3'"]),
    Case("parquet-corrupted", _garbage_parquet, file_error=["not a readable Parquet file"]),
    Case("parquet-truncated", _truncated_parquet, file_error=["not a readable Parquet file"]),
    Case("parquet-without-rows", _empty_parquet, file_error=["the input is empty", "with 0 rows"]),
    # Int32, Int64, Boolean and Time64 columns, in each format
    Case("csv-int32-overflow", typed("csv", {12: {"n32": 3_000_000_000}}),
         ["line 13", "column 'n32'", "'3000000000'", "Int32"], [(13, "type_mismatch", "n32")], schema=TYPED_SCHEMA),
    Case("csv-int32-fraction", typed("csv", {17: {"n32": 1.5}}),
         ["line 18", "column 'n32'", "'1.5'", "Int32"], [(18, "type_mismatch", "n32")], schema=TYPED_SCHEMA),
    Case("csv-int64-exponent", typed("csv", {3: {"n64": "1e3"}}),
         ["line 4", "column 'n64'", "'1e3'", "Int64"], [(4, "type_mismatch", "n64")], schema=TYPED_SCHEMA),
    Case("csv-nan-text-in-int64-is-null", typed("csv", {5: {"n64": "NaN"}}), ok=True, schema=TYPED_SCHEMA),
    Case("csv-bad-boolean", typed("csv", {25: {"flag": "yes"}}),
         ["line 26", "column 'flag'", "'yes'", "Boolean"], [(26, "type_mismatch", "flag")], schema=TYPED_SCHEMA),
    Case("csv-bad-timestamp", typed("csv", {44: {"ts": "2026-13-01T00:00:00"}}),
         ["line 45", "column 'ts'", "'2026-13-01T00:00:00'", "Time64"], [(45, "type_mismatch", "ts")],
         schema=TYPED_SCHEMA),
    Case("jsonl-int32-overflow", typed("jsonl", {7: {"n32": 2**40}}),
         ["line 8", "column 'n32'", str(2**40), "Int32"], [(8, "type_mismatch", "n32")], schema=TYPED_SCHEMA),
    Case("jsonl-bad-timestamp", typed("jsonl", {50: {"ts": "yesterday"}}),
         ["line 51", "column 'ts'", "'yesterday'", "Time64"], [(51, "type_mismatch", "ts")], schema=TYPED_SCHEMA),
    Case("jsonl-string-boolean", typed("jsonl", {11: {"flag": "maybe"}}),
         ["line 12", "column 'flag'", "'maybe'", "Boolean"], [(12, "type_mismatch", "flag")], schema=TYPED_SCHEMA),
    Case("parquet-int32-overflow", typed("parquet", {41: {"n32": 2**33}}),
         ["row 42", "column 'n32'", str(2**33), "Int32"], [(42, "type_mismatch", "n32")], schema=TYPED_SCHEMA),
    # files that cannot be read
    Case("file-replaced-by-a-folder", _listed_then_replaced_by_a_folder, file_error=["is a folder, not a file"]),
    Case("file-removed-after-listing", _listed_then_removed, file_error=["disappeared after it was listed"]),
]


def _path_of(found: Input) -> str:
    return found.source["uri"].removeprefix("file://")


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_fails_with_a_precise_message(case: Case, processed: dict[str, ModelSpec], models: Models,
                                                tmp_path: Path):
    found = case.build(tmp_path)
    sink = tmp_path / "out"
    if case.ok:
        summary = score(processed[found.model], found.source, sink, after_listing=found.after_listing,
                        input_schema=case.schema, **found.options)
        assert summary["rows_out"] == len(found.ids) and summary["rows_bad"] == 0
        output = output_of(sink)
        assert output.column("id").to_pylist() == found.ids
        for name, values in found.expect.items():  # (passthrough text exactly as in the input)
            assert output.column(name).to_pylist() == values
        if found.frame is not None:
            check_predictions(found.frame, output, models.regressor)
        return
    with pytest.raises(InputError) as err:
        score(processed[found.model], found.source, sink, after_listing=found.after_listing, input_schema=case.schema,
              **found.options)
    message = str(err.value)
    assert _path_of(found) in message, message
    for words in case.fail or case.file_error or []:
        assert words in message, f"{words!r} not in: {message}"
    assert_nothing_published(sink)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_is_quarantined(case: Case, processed: dict[str, ModelSpec], models: Models, tmp_path: Path):
    found = case.build(tmp_path)
    sink = tmp_path / "out"

    def run() -> dict:
        return score(processed[found.model], found.source, sink, after_listing=found.after_listing,
                     input_schema=case.schema, on_bad_rows="quarantine", **found.options)

    if case.file_error is not None:
        with pytest.raises(InputError) as err:
            run()
        message = str(err.value)
        assert _path_of(found) in message, message
        for words in case.file_error:
            assert words in message, f"{words!r} not in: {message}"
        assert_nothing_published(sink)
        return
    summary = run()
    errors = errors_of(sink)
    unit = "row" if found.source["uri"].endswith(".parquet") else "line"
    assert [(e[unit], e["reason"], e["column"]) for e in errors] == case.bad
    assert summary["rows_bad"] == len(case.bad)
    for error in errors:
        assert error["file"] == found.source["uri"]
        if error["reason"] == "type_mismatch":
            assert error["expected_type"] and error["value"] is not None
        if found.lines:  # the raw text is the line as it was in the file (its first 64 KiB)
            line = found.lines[error["line"] - 1].decode("utf-8", errors="replace").rstrip("\r\n")
            assert error["raw"] == (line if len(line) <= MAX_RAW_CHARS else line[:MAX_RAW_CHARS] + "...(truncated)")
    bad_ids = {found.ids[position - found.first_line] for position, _, _ in case.bad}
    good = [i for i in found.ids if i not in bad_ids]
    output = output_of(sink)
    assert output.column("id").to_pylist() == good  # every good row, once, in input order
    if found.frame is not None:
        check_predictions(found.frame[found.frame["id"].isin(good)], output, models.regressor)
    manifest = json.loads((sink / "_manifest.json").read_text())
    assert manifest["totals"]["rows_bad"] == len(case.bad) and manifest["totals"]["rows_in"] == len(good)
    assert manifest["bad_rows"]["reasons"] == {reason: sum(1 for _, r, _ in case.bad if r == reason)
                                               for _, reason, _ in case.bad}


def test_the_table_is_large_enough():
    assert len({c.name for c in CASES}) == len(CASES) >= 30


# --- quarantine across blocks, shards and formats -------------------------------------------------------------------


@pytest.mark.parametrize("replicas", [1, 3])
def test_quarantine_keeps_every_good_row_in_order(processed, models: Models, tmp_path: Path, replicas: int):
    frame = make_frame(3000, seed=11)
    path, bad = spread_bad_lines(frame, tmp_path)
    sink = tmp_path / "out"
    summary = score(processed["regressor"], {"uri": path.as_uri(), "columns": COLUMNS}, sink, replicas=replicas,
                    batch_size=128, on_bad_rows="quarantine")
    good = frame.drop(index=sorted(bad))
    output = output_of(sink)
    assert output.column("id").to_pylist() == good["id"].tolist()
    check_predictions(good, output, models.regressor)
    errors = errors_of(sink)
    assert [(e["line"], e["reason"], e["column"]) for e in errors] == [(i + 1, *bad[i]) for i in sorted(bad)]
    assert summary["rows_bad"] == len(bad) == 15 and summary["rows_in"] == summary["rows_out"] == 3000 - 15
    assert summary["errors_uri"] == (sink / "_errors").as_uri() + "/"
    manifest = json.loads((sink / "_manifest.json").read_text())
    assert manifest["totals"] == {"rows_in": 2985, "rows_out": 2985, "rows_bad": 15}
    assert sum(s["rows_bad"] for s in manifest["shards"]) == 15 and len(manifest["shards"]) == replicas
    error_files = manifest["bad_rows"].pop("files")  # the published error parts, their sizes and row counts
    assert [(f["name"], f["size"], f["rows"]) for f in error_files] == [
        (f"_errors/{p.name}", p.stat().st_size, len(p.read_text().splitlines()))
        for p in sorted((sink / "_errors").iterdir())
    ] and sum(f["rows"] for f in error_files) == 15
    assert manifest["bad_rows"] == {
        "on_bad_rows": "quarantine", "max_bad_rows": None, "max_bad_fraction": 0.1, "rows_bad": 15,
        "reasons": {"extra_fields": 4, "malformed_row": 3, "missing_fields": 4, "type_mismatch": 4},
        "errors_uri": summary["errors_uri"],
    }
    assert sorted(p.name for p in (sink / "_errors").iterdir()) == [
        f"part-{s:05d}.jsonl" for s, shard in enumerate(manifest["shards"]) if shard["rows_bad"]
    ]


MULTILINE_BAD = {
    49: ("type_mismatch", "f2"),  # (a single-line record)
    70: ("type_mismatch", "f0"),  # a record over two lines
    140: ("missing_fields", None),  # over two lines
    211: ("extra_fields", None),
}


def _multiline_csv(frame: pd.DataFrame, path: Path, bad: bool) -> tuple[list[str], dict[int, int]]:
    """A CSV whose ``note`` column holds quoted values with a line break (and a comma) in every 7th record, with the
    records of ``MULTILINE_BAD`` broken when ``bad``; return the notes and each record's first line number."""
    notes = [f'"first line\nsecond, {i}"' if i % 7 == 0 else f"n{i}" for i in range(len(frame))]
    records = [
        [str(row.id), notes[i], *(repr(float(getattr(row, f))) for f in FEATURES)]
        for i, row in enumerate(frame.itertuples(index=False))
    ]
    if bad:
        records[49][4] = "abc"
        records[70][2] = "zero"
        records[140] = records[140][:-1]
        records[211].append("7")
    path.write_text("".join(",".join(fields) + "\n" for fields in records))
    first_line, line = {}, 1
    for i, fields in enumerate(records):
        first_line[i] = line
        line += ",".join(fields).count("\n") + 1
    return [note.strip('"') for note in notes], first_line


def _multiline_source(path: Path) -> dict:
    return {"uri": path.as_uri(), "columns": ["id", "note", *FEATURES], "newlines_in_values": True}


def test_records_with_line_breaks_are_never_cut_between_blocks(processed, models: Models, tmp_path: Path):
    """Blocks of 4 KiB end on record boundaries, not inside a quoted value: every record is read whole, once."""
    frame = make_frame(400, seed=13)
    notes, _ = _multiline_csv(frame, tmp_path / "in.csv", bad=False)
    sink = tmp_path / "out"
    summary = score(processed["regressor"], _multiline_source(tmp_path / "in.csv"), sink, batch_size=64,
                    passthrough_columns=["id", "note"])
    output = output_of(sink)
    assert output.column("id").to_pylist() == frame["id"].tolist()
    assert output.column("note").to_pylist() == notes
    check_predictions(frame, output.select(["id", "prediction"]), models.regressor)
    assert summary["rows_in"] == summary["rows_out"] == 400


def test_preflight_samples_whole_records(processed, tmp_path: Path):
    """The preflight reads the head of a large file (256 KiB); when the head's last byte is a line break inside a
    quoted value, the sample stops at the record before it instead of failing on half a record."""
    from airflow_batch_scoring.sources.file_preflight import SAMPLE_BYTES

    frame = make_frame(10_000, seed=14)
    lines = [f"{row.id},n,{','.join(repr(float(getattr(row, f))) for f in FEATURES)}\n"
             for row in frame.itertuples(index=False)]
    offset, index = 0, 0
    while offset + len(lines[index]) <= SAMPLE_BYTES - 200:
        offset += len(lines[index])
        index += 1
    # A record just before the sample's end gets a quoted note whose line break is the sample's very last byte.
    start = offset + len(str(frame["id"].iloc[index])) + 2  # just past the opening quote
    lines[index] = lines[index].replace(",n,", ',"' + "a" * (SAMPLE_BYTES - 1 - start) + '\nb",', 1)
    (tmp_path / "in.csv").write_text("".join(lines))
    data = (tmp_path / "in.csv").read_bytes()
    assert data[SAMPLE_BYTES - 1 : SAMPLE_BYTES + 3] == b'\nb",'  # the head ends inside quotes
    summary = score(processed["regressor"], _multiline_source(tmp_path / "in.csv"), tmp_path / "out",
                    passthrough_columns=["id", "note"], part_size=16 * 1024 * 1024,
                    input_schema=SCHEMA)  # (known before loading, so the preflight checks the sample)
    assert summary["rows_in"] == summary["rows_out"] == 10_000


def test_a_bad_record_with_line_breaks_is_named_by_its_first_line(processed, tmp_path: Path):
    frame = make_frame(400, seed=13)
    _, first_line = _multiline_csv(frame, tmp_path / "in.csv", bad=True)
    with pytest.raises(InputError) as raised:
        score(processed["regressor"], _multiline_source(tmp_path / "in.csv"), tmp_path / "out", batch_size=64,
              passthrough_columns=["id", "note"])
    assert f"line {first_line[49]}, column 'f2'" in str(raised.value) and "'abc'" in str(raised.value)
    assert_nothing_published(tmp_path / "out")


def test_quarantine_with_line_breaks_in_quoted_values(processed, models: Models, tmp_path: Path):
    """A bad record is quarantined whole, named by its first line, and the good records around it (multi-line ones
    too) are scored in order."""
    frame = make_frame(400, seed=13)
    notes, first_line = _multiline_csv(frame, tmp_path / "in.csv", bad=True)
    sink = tmp_path / "out"
    summary = score(processed["regressor"], _multiline_source(tmp_path / "in.csv"), sink, batch_size=64,
                    on_bad_rows="quarantine", passthrough_columns=["id", "note"])
    good = frame.drop(index=sorted(MULTILINE_BAD))
    output = output_of(sink)
    assert output.column("id").to_pylist() == good["id"].tolist()
    assert output.column("note").to_pylist() == [notes[i] for i in good.index]
    check_predictions(good, output.select(["id", "prediction"]), models.regressor)
    errors = errors_of(sink)
    expected = [(first_line[i], *MULTILINE_BAD[i]) for i in sorted(MULTILINE_BAD)]
    assert [(e["line"], e["reason"], e["column"]) for e in errors] == expected
    assert first_line[70] != 71 and first_line[140] != 141  # the multi-line records before them moved the numbering
    assert summary["rows_bad"] == 4 and summary["rows_out"] == len(frame) - 4


def test_quarantine_of_json_lines_and_parquet_across_shards(processed, models: Models, tmp_path: Path):
    frame = make_frame(2000, seed=12)
    lines = frame_lines(frame, "jsonl", tmp_path)
    bad_json = {17: "invalid_json", 600: "type_mismatch", 1401: "not_an_object", 1999: "invalid_json"}
    lines[17] = b'{"id": 17,,}\n'
    lines[600] = lines[600].replace(b'"f4": ', b'"f4": "four", "x": ', 1)
    lines[1401] = b"[17]\n"
    lines[1999] = lines[1999][:10]
    write_lines(tmp_path / "in.jsonl", lines)
    summary = score(processed["regressor"], {"uri": (tmp_path / "in.jsonl").as_uri()}, tmp_path / "out-json",
                    replicas=2, batch_size=300, on_bad_rows="quarantine")
    good = frame.drop(index=sorted(bad_json))
    check_predictions(good, output_of(tmp_path / "out-json"), models.regressor)
    assert output_of(tmp_path / "out-json").column("id").to_pylist() == good["id"].tolist()
    assert [(e["line"], e["reason"]) for e in errors_of(tmp_path / "out-json")] == [
        (i + 1, r) for i, r in sorted(bad_json.items())
    ]
    assert summary["rows_bad"] == 4

    changed = frame.copy()
    changed["f2"] = changed["f2"].astype(str)
    bad_rows_at = [0, 499, 500, 1234, 1999]
    changed.loc[bad_rows_at, "f2"] = ["?", "", "1..2", "n/a", "NaN?"]
    write_frame(changed, tmp_path / "in.parquet", "parquet")  # 4 row groups of 500 rows
    summary = score(processed["regressor"], {"uri": (tmp_path / "in.parquet").as_uri()}, tmp_path / "out-pq",
                    replicas=2, batch_size=200, on_bad_rows="quarantine")
    good = frame.drop(index=bad_rows_at)
    check_predictions(good, output_of(tmp_path / "out-pq"), models.regressor)
    errors = errors_of(tmp_path / "out-pq")
    assert [(e["row"], e["column"], e["value"]) for e in errors] == [
        (1, "f2", "?"), (500, "f2", ""), (501, "f2", "1..2"), (1235, "f2", "n/a"), (2000, "f2", "NaN?")
    ]
    assert json.loads(errors[0]["raw"])["id"] == int(frame.loc[0, "id"])
    assert summary["rows_bad"] == 5 and summary["rows_in"] == 1995


def _lines_with_bytes(frame: pd.DataFrame, fmt: str, column: str, bad: dict[int, bytes]) -> list[bytes]:
    """``frame`` (with a String column ``name``) as CSV or JSON lines, ``column`` of the rows in ``bad`` holding
    those raw bytes."""
    lines = []
    for i, record in enumerate(frame.to_dict(orient="records")):
        values = {k: (json.dumps(v) if fmt == "jsonl" else repr(v) if isinstance(v, float) else str(v)).encode()
                  for k, v in record.items()}
        if i in bad:
            values[column] = b'"' + bad[i] + b'"' if fmt == "jsonl" else bad[i]
        if fmt == "jsonl":
            lines.append(b"{" + b", ".join(b'"%s": %s' % (k.encode(), v) for k, v in values.items()) + b"}\n")
        else:
            lines.append(b",".join(values.values()) + b"\n")
    return lines


@pytest.mark.parametrize("on_bad_rows", ["fail", "quarantine"])
@pytest.mark.parametrize("column", ["name", "f2"])
@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_invalid_utf8_across_replicas(processed, models: Models, tmp_path: Path, fmt: str, column: str,
                                      on_bad_rows: str):
    """Latin-1 bytes in a passthrough column and in a feature column, in the first line of the file and in other
    replicas' shards: ``fail`` names the file, line and column; ``quarantine`` sets exactly those rows aside, and
    every part has the same schema (the passthrough column is text in each)."""
    frame = make_frame(600, seed=19)
    frame.insert(1, "name", [f"name {i}" for i in range(600)])
    bad = {0: b"n\xe9 0", 201: b"caf\xe9", 402: b"\xc5ngstr\xf6m", 599: b"1.5\xb0"}
    path = tmp_path / f"in.{fmt}"
    write_lines(path, _lines_with_bytes(frame, fmt, column, bad))
    source = {"uri": path.as_uri(), "format": fmt}
    if fmt == "csv":
        source["columns"] = ["id", "name", *FEATURES]
    sink = tmp_path / "out"
    run = {"replicas": 3, "batch_size": 64, "passthrough_columns": ["id", "name"], "on_bad_rows": on_bad_rows}
    if on_bad_rows == "fail":
        with pytest.raises(InputError) as err:
            score(processed["regressor"], source, sink, **run)
        message = str(err.value)
        assert f"file {path.as_uri()}, line 1, column '{column}': the value is not UTF-8 text (byte 0xe9" in message
        assert "set source['encoding']" in message
        assert_nothing_published(sink)
        return
    summary = score(processed["regressor"], source, sink, **run)
    assert [(e["line"], e["reason"], e["column"]) for e in errors_of(sink)] == [
        (i + 1, "invalid_utf8", column) for i in sorted(bad)
    ]
    good = frame.drop(index=sorted(bad))
    output = output_of(sink)
    assert output.column("id").to_pylist() == good["id"].tolist()
    assert output.column("name").to_pylist() == good["name"].tolist()
    check_predictions(good, output, models.regressor)
    schemas = {pq.read_schema(p) for p in sink.iterdir() if p.name.startswith("part-")}
    assert len(schemas) == 1 and schemas.pop().field("name").type == pa.string()
    assert summary["rows_bad"] == 4 and len(json.loads((sink / "_manifest.json").read_text())["shards"]) == 3


def test_a_latin1_file_read_with_its_encoding(processed, models: Models, tmp_path: Path):
    """``encoding='latin-1'``: the header, the passthrough text and the values are read right, across replicas."""
    frame = make_frame(300, seed=20)
    frame.insert(1, "name", [f"caf\xe9 {i} \xc5ngstr\xf6m" for i in range(300)])
    path = tmp_path / "in.csv"
    path.write_bytes(("id,nom_\xe9,name," + ",".join(FEATURES) + "\n").encode("latin-1") + b"".join(
        (f"{r.id},\xe0,{r.name}," + ",".join(repr(float(getattr(r, c))) for c in FEATURES) + "\n").encode("latin-1")
        for r in frame.itertuples()
    ))
    sink = tmp_path / "out"
    source = {"uri": path.as_uri(), "format": "csv", "header": True, "encoding": "latin-1"}
    score(processed["regressor"], source, sink, replicas=2, passthrough_columns=["id", "name", "nom_\xe9"])
    output = output_of(sink)
    assert output.column("name").to_pylist() == frame["name"].tolist()
    assert output.column("nom_\xe9").to_pylist() == ["\xe0"] * 300
    check_predictions(frame, output, models.regressor)
    with pytest.raises(InputError, match=r"line 1: the header line is not utf-8 text"):  # without the option
        score(processed["regressor"], {**source, "encoding": None}, tmp_path / "out2", passthrough_columns=["id"])


# --- thresholds --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("limits", "words"),
    [
        # the count is checked as rows are read: a shard stops as soon as it alone is over
        ({"max_bad_rows": 2}, ["this shard alone found more than max_bad_rows=2 (extra_fields: 3)"]),
        ({"max_bad_rows": 0}, ["this shard alone found more than max_bad_rows=0 (extra_fields: 1)"]),
        # the share is checked once every shard has finished
        ({"max_bad_fraction": 0.01}, ["3 of the 200 rows read (1.50%) are bad", "max_bad_fraction=0.01 (1.00%)",
                                      "Reasons: extra_fields: 3"]),
        ({"max_bad_rows": 2, "max_bad_fraction": 0.01, "replicas": 3},  # one bad row in each of 3 shards
         ["more than max_bad_rows=2 and more than max_bad_fraction"]),
    ],
)
def test_too_many_bad_rows_publish_nothing(processed, tmp_path: Path, limits: dict, words: list[str]):
    source = csv_with_bad_lines(tmp_path, 200, [3, 80, 150])
    with pytest.raises(InputError) as err:
        score(processed["regressor"], source, tmp_path / "out", on_bad_rows="quarantine", **limits)
    message = str(err.value)
    for text in [*words, "nothing was published", "line 4", "7 field(s)"]:
        assert text in message, f"{text!r} not in: {message}"
    assert_nothing_published(tmp_path / "out")


def test_a_shard_over_max_bad_rows_stops_early(processed, tmp_path: Path):
    source = csv_with_bad_lines(tmp_path, 400, list(range(10, 400, 10)))
    with pytest.raises(InputError, match=r"this shard alone found more than max_bad_rows=5 \(extra_fields: 6\)"):
        score(processed["regressor"], source, tmp_path / "out", on_bad_rows="quarantine", max_bad_rows=5,
              max_bad_fraction=1)
    assert_nothing_published(tmp_path / "out")


def test_limits_are_inclusive_and_the_default_share_is_ten_percent(processed, tmp_path: Path):
    source = csv_with_bad_lines(tmp_path, 100, list(range(0, 100, 10)))  # 10 of 100 lines
    summary = score(processed["regressor"], source, tmp_path / "out", on_bad_rows="quarantine", max_bad_rows=10)
    assert summary["rows_bad"] == 10 and summary["rows_out"] == 90
    source = csv_with_bad_lines(tmp_path, 100, list(range(0, 100, 9)))  # 12 of 100 lines
    with pytest.raises(InputError, match=r"more than max_bad_fraction=0.1 \(10.00%\)"):
        score(processed["regressor"], source, tmp_path / "out2", on_bad_rows="quarantine")
    assert_nothing_published(tmp_path / "out2")


def test_a_replaced_output_loses_its_old_errors(processed, tmp_path: Path):
    source = csv_with_bad_lines(tmp_path, 100, [5])
    sink = tmp_path / "out"
    score(processed["regressor"], source, sink, on_bad_rows="quarantine")
    assert len(errors_of(sink)) == 1
    source = csv_with_bad_lines(tmp_path, 100, [])
    summary = score(processed["regressor"], source, sink, on_bad_rows="quarantine")
    assert summary["rows_bad"] == 0 and summary["errors_uri"] is None
    assert not (sink / "_errors").exists()
    assert sorted(p.name for p in sink.iterdir()) == ["_SUCCESS", "_manifest.json", "part-00000.parquet"]


@pytest.mark.parametrize(
    ("arguments", "words"),
    [
        ({"on_bad_rows": "skip"}, "on_bad_rows must be one of ('fail', 'quarantine')"),
        ({"on_bad_rows": "quarantine", "max_bad_rows": -1}, "max_bad_rows must be 0 or more"),
        ({"on_bad_rows": "quarantine", "max_bad_rows": "many"}, "max_bad_rows must be a whole number, got 'many'"),
        ({"on_bad_rows": "quarantine", "max_bad_fraction": 1.5}, "max_bad_fraction must be between 0 and 1"),
        ({"on_bad_rows": "quarantine", "max_bad_fraction": "most"}, "max_bad_fraction must be a number, got 'most'"),
        ({"on_bad_rows": "quarantine", "max_bad_fraction": True}, "max_bad_fraction must be a number"),
        ({"on_bad_rows": "quarantine", "max_bad_rows": 2.5}, "max_bad_rows must be a whole number"),
    ],
)
def test_policy_parameters_are_checked(arguments: dict, words: str):
    with pytest.raises(ConfigurationError, match=words.replace("(", r"\(").replace(")", r"\)")):
        BadRowPolicy.parse(**arguments)


@pytest.mark.parametrize(
    ("spec", "role", "words"),
    [
        ({"encoding": "klingon"}, "source", "source['encoding'] 'klingon' is not a known text encoding"),
        ({"encoding": "utf-16"}, "source", "does not write ASCII characters as single ASCII bytes"),
        ({"encoding": "latin-1"}, "sink", "outputs are always written as UTF-8"),
        ({"max_line_bytes": 10}, "source", "max_line_bytes'] must be a whole number of bytes, at least 1024"),
        ({"max_line_bytes": "lots"}, "source", "at least 1024"),
        ({"table": "scores", "encoding": "latin-1"}, "source", "['encoding'] applies to files, not to a SQL table"),
    ],
)
def test_text_source_options_are_checked(spec: dict, role: str, words: str):
    with pytest.raises(ConfigurationError, match=re.escape(words)):
        parse_data_spec({"uri": "file:///data/in.csv", **spec}, role)


def test_text_source_options_are_normalised():
    spec = parse_data_spec({"uri": "file:///in.csv", "encoding": "Latin1", "max_line_bytes": "2048"}, "source")
    assert (spec.encoding, spec.max_line_bytes) == ("iso8859-1", 2048)
    assert parse_data_spec({"uri": "file:///in.csv", "encoding": "UTF8"}, "source").encoding is None


def test_policy_defaults():
    assert BadRowPolicy.parse() == BadRowPolicy("fail", None, None)
    assert BadRowPolicy.parse("fail", 5, 0.5) == BadRowPolicy("fail", None, None)  # the limits are quarantine's
    assert BadRowPolicy.parse("QUARANTINE") == BadRowPolicy("quarantine", None, 0.1)
    assert BadRowPolicy.parse("quarantine", "7", "0.25") == BadRowPolicy("quarantine", 7, 0.25)  # templated
    assert BadRowPolicy.parse("quarantine", "None", "") == BadRowPolicy("quarantine", None, 0.1)


def test_salvage_finds_every_bad_unit_and_keeps_good_runs_in_order():
    units = [f"{i}\n".encode() for i in range(1000)]
    bad = {0, 1, 2, 500, 998, 999}

    def parse(data: bytes) -> list[int]:
        values = [int(x) for x in data.split()]
        if bad & set(values):
            raise ValueError
        return values

    items = list(salvage(units, parse, (ValueError,)))
    assert [i for i in items if isinstance(i, int)] == sorted(bad)
    assert [v for i in items if isinstance(i, list) for v in i] == [v for v in range(1000) if v not in bad]
    assert len(items) < 40  # good runs stay whole


# --- the same through real replicas, the operator, the command line and an object store -------------------------
