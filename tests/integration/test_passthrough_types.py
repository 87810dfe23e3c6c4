"""Passthrough columns reach the output exactly as they are in the input, with one type for the whole output (decided
by the driver before any replica starts), and CSV's ``header="auto"``.

The multi-replica runs use real replica processes, small parts and batches, and ids whose type a replica would guess
differently from its own first rows (zero-padded numbers first, letters only late in the file); the output folder is
read back as one dataset with ``pyarrow.dataset``.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from airflow_batch_scoring.artifacts import process_model
from airflow_batch_scoring.driver.prepare import prepare_job
from airflow_batch_scoring.driver.run import execute_job
from airflow_batch_scoring.errors import InputError
from airflow_batch_scoring.job import ModelSpec
from airflow_batch_scoring.options import ScoringOptions
from airflow_batch_scoring.specs import FileSpec, parse_data_spec
from tests.support.helpers import FEATURES, SCHEMA, Models, assert_nothing_published, make_frame
from tests.support.launchers import InProcessLauncher

ROWS = 2400


@pytest.fixture(scope="module")
def regressor(models: Models, tmp_path_factory: pytest.TempPathFactory) -> ModelSpec:
    return process_model(str(models.regressor_path), str(tmp_path_factory.mktemp("passthrough-model") / "model"))


def run(model: ModelSpec, source: dict, sink: dict, *, in_process: bool = False, **kwargs: Any) -> dict:
    kwargs.setdefault("part_size", 4096)  # many blocks per replica, and the file split between replicas
    kwargs.setdefault("passthrough_columns", ["id"])
    job, files = prepare_job(
        job_id=f"pt-{uuid.uuid4().hex[:8]}",
        model=model,
        source=parse_data_spec(source, "source"),
        sink=parse_data_spec(sink, "sink"),
        options=ScoringOptions.parse(**kwargs),
    )
    launcher = InProcessLauncher() if in_process else None
    return execute_job(job, files, log=lambda line: None, launcher=launcher)  # type: ignore[arg-type]


def id_texts(rows: int) -> list[str]:
    """Zero-padded numbers, then (past the first blocks of every replica) alphanumeric ids."""
    return [f"{i:06d}" if i < rows - 300 else f"A{i:05d}" for i in range(rows)]


def expected_predictions(models: Models, frame, ids: list[str]) -> dict[str, float]:
    return dict(zip(ids, models.regressor.predict(frame[FEATURES]).tolist(), strict=True))


def write_csv(path: Path, frame, ids: list[str], header: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [",".join(["id", *FEATURES]) + "\n"] if header else []
    lines += [",".join([ident, *(repr(float(v)) for v in row)]) + "\n"
              for ident, row in zip(ids, frame[FEATURES].itertuples(index=False), strict=True)]
    path.write_text("".join(lines))


def read_dataset(sink: Path, fmt: str, header: bool) -> pa.Table:
    """The whole output folder as one dataset (``_manifest.json`` and ``_SUCCESS`` are skipped by their ``_``)."""
    if fmt == "csv":
        file_format: Any = ds.CsvFileFormat(
            read_options=pa_csv.ReadOptions(column_names=None if header else ["id", "prediction"]),
            convert_options=pa_csv.ConvertOptions(column_types={"id": pa.string()}),
        )
    else:
        file_format = "json" if fmt == "jsonl" else "parquet"
    return ds.dataset(str(sink), format=file_format).to_table()


def check_exact(sink: Path, fmt: str, expected: dict[str, float], header: bool = False) -> None:
    """One schema over every part, every id once with its exact text, and the model's own predictions."""
    parts = sorted(p for p in sink.iterdir() if p.name.startswith("part-"))
    assert len(parts) >= 3
    if fmt == "parquet":
        assert {str(pq.read_schema(p)) for p in parts} == {str(pq.read_schema(parts[0]))}
    if fmt == "csv":
        assert all((p.read_text().startswith('"id","prediction"\n')) == header for p in parts)
    table = read_dataset(sink, fmt, header)
    assert table.schema.field("id").type == pa.string()
    got = dict(zip(table.column("id").to_pylist(), table.column("prediction").to_pylist(), strict=True))
    assert len(got) == table.num_rows == len(expected)
    assert got == expected


@pytest.mark.parametrize("sink_format", ["csv", "jsonl", "parquet"])
def test_csv_ids_keep_their_text_and_one_type_across_replicas(
    models: Models, regressor: ModelSpec, tmp_path: Path, sink_format: str
):
    frame = make_frame(ROWS, seed=21)
    ids = id_texts(ROWS)
    write_csv(tmp_path / "in" / "data.csv", frame, ids, header=True)
    sink = tmp_path / "out"
    summary = run(regressor, {"uri": (tmp_path / "in" / "data.csv").as_uri(), "header": True},
                  {"uri": sink.as_uri(), "format": sink_format}, replicas=3, batch_size=97)
    assert summary["rows_in"] == summary["rows_out"] == ROWS
    check_exact(sink, sink_format, expected_predictions(models, frame, ids), header=sink_format == "csv")


@pytest.mark.parametrize("sink_format", ["csv", "jsonl", "parquet"])
def test_jsonl_ids_keep_their_text_and_one_type_across_replicas(
    models: Models, regressor: ModelSpec, tmp_path: Path, sink_format: str
):
    """JSON strings, numbers (as written: ``7.50`` stays ``7.50``) and booleans, mixed in one column."""
    frame = make_frame(ROWS, seed=22)
    literals = []
    for i, text in enumerate(id_texts(ROWS)):
        if i % 7 == 3:
            literals.append(str(i))  # a JSON number
        elif i % 11 == 5:
            literals.append(f"{i}.50")  # a number with a fraction, as written
        else:
            literals.append(json.dumps(text))
    lines = [
        '{"id": ' + literal + "".join(f', "{n}": {float(v)!r}' for n, v in zip(FEATURES, row, strict=True)) + "}\n"
        for literal, row in zip(literals, frame[FEATURES].itertuples(index=False), strict=True)
    ]
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "data.jsonl").write_text("".join(lines))
    ids = [literal.strip('"') for literal in literals]
    sink = tmp_path / "out"
    summary = run(regressor, {"uri": (tmp_path / "in" / "data.jsonl").as_uri()},
                  {"uri": sink.as_uri(), "format": sink_format}, replicas=3, batch_size=97)
    assert summary["rows_in"] == summary["rows_out"] == ROWS
    check_exact(sink, sink_format, expected_predictions(models, frame, ids))


def _parquet(path: Path, frame, ids: pa.Array, row_group_size: int = 100) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pandas(frame[FEATURES], preserve_index=False).add_column(0, "id", ids)
    pq.write_table(table, path, row_group_size=row_group_size)


def test_parquet_ids_keep_the_source_type_in_every_part(models: Models, regressor: ModelSpec, tmp_path: Path):
    """Files whose id is int32 in one and int64 in the other: every part gets int64 (the wider), values unchanged."""
    frames = [make_frame(600, seed=23), make_frame(600, seed=24)]
    _parquet(tmp_path / "in" / "a.parquet", frames[0], pa.array(range(600), pa.int32()))
    _parquet(tmp_path / "in" / "b.parquet", frames[1], pa.array(range(10**12, 10**12 + 600), pa.int64()))
    sink = tmp_path / "out"
    run(regressor, {"uri": (tmp_path / "in").as_uri()}, {"uri": sink.as_uri()}, replicas=3, batch_size=50,
        in_process=True)
    parts = sorted(p for p in sink.iterdir() if p.name.startswith("part-"))
    assert len(parts) == 3
    assert {pq.read_schema(p).field("id").type for p in parts} == {pa.int64()}
    table = ds.dataset(str(sink), format="parquet").to_table()
    expected = dict(zip(list(range(600)) + list(range(10**12, 10**12 + 600)),
                        models.regressor.predict(pa.concat_tables(
                            [pa.Table.from_pandas(f[FEATURES]) for f in frames]).to_pandas()).tolist(), strict=True))
    assert dict(zip(table.column("id").to_pylist(), table.column("prediction").to_pylist(), strict=True)) == expected


def test_parquet_files_that_disagree_on_a_passthrough_type(models: Models, regressor: ModelSpec, tmp_path: Path):
    frames = [make_frame(300, seed=25), make_frame(300, seed=26)]
    _parquet(tmp_path / "in" / "a.parquet", frames[0], pa.array(range(300), pa.int64()))
    _parquet(tmp_path / "in" / "b.parquet", frames[1], pa.array([f"{i:06d}" for i in range(300)]))
    sink = tmp_path / "out"
    with pytest.raises(InputError) as caught:
        run(regressor, {"uri": (tmp_path / "in").as_uri()}, {"uri": sink.as_uri()}, replicas=2, in_process=True)
    message = str(caught.value)
    assert "'id' has a different type in different input files" in message
    assert "int64 in" in message and "string in" in message and "a.parquet" in message and "b.parquet" in message
    assert "passthrough_schema" in message
    assert_nothing_published(sink)
    # The user's type: every value as text, the same in every part.
    run(regressor, {"uri": (tmp_path / "in").as_uri()}, {"uri": sink.as_uri()}, replicas=2, in_process=True,
        passthrough_schema=[{"name": "id", "type": "String"}])
    table = ds.dataset(str(sink), format="parquet").to_table()
    assert table.schema.field("id").type == pa.string()
    assert sorted(table.column("id").to_pylist()) == sorted([str(i) for i in range(300)] +
                                                            [f"{i:06d}" for i in range(300)])


def test_passthrough_schema_types_a_text_column(models: Models, regressor: ModelSpec, tmp_path: Path):
    frame = make_frame(ROWS, seed=27)
    ids = [f"{i:06d}" for i in range(ROWS)]
    write_csv(tmp_path / "in" / "data.csv", frame, ids, header=True)
    sink = tmp_path / "out"
    run(regressor, {"uri": (tmp_path / "in" / "data.csv").as_uri()}, {"uri": sink.as_uri(), "format": "parquet"},
        replicas=3, batch_size=97, in_process=True, passthrough_schema=[{"name": "ID", "type": "Int64"}])
    table = ds.dataset(str(sink), format="parquet").to_table()
    assert table.schema.field("id").type == pa.int64()
    assert sorted(table.column("id").to_pylist()) == list(range(ROWS))


@pytest.mark.parametrize("on_bad_rows", ["fail", "quarantine"])
def test_a_value_that_does_not_fit_the_given_type_is_a_type_error(
    models: Models, regressor: ModelSpec, tmp_path: Path, on_bad_rows: str
):
    """Never "check its quoting": the line, the column, the value and the type it was to be read as."""
    frame = make_frame(ROWS, seed=28)
    ids = id_texts(ROWS)
    write_csv(tmp_path / "in" / "data.csv", frame, ids, header=True)
    sink = tmp_path / "out"
    kwargs: dict[str, Any] = dict(replicas=3, batch_size=97, in_process=True, on_bad_rows=on_bad_rows,
                                  passthrough_schema=[{"name": "id", "type": "Int64"}])
    if on_bad_rows == "fail":
        with pytest.raises(InputError) as caught:
            run(regressor, {"uri": (tmp_path / "in" / "data.csv").as_uri()}, {"uri": sink.as_uri()}, **kwargs)
        message = str(caught.value)
        assert f"line {ROWS - 300 + 2}, column 'id': value 'A{ROWS - 300:05d}'" in message
        assert "cannot be read as Int64" in message and "passthrough_schema" in message
        assert "quoting" not in message
        assert_nothing_published(sink)
        return
    summary = run(regressor, {"uri": (tmp_path / "in" / "data.csv").as_uri()}, {"uri": sink.as_uri()},
                  max_bad_fraction=1, **kwargs)
    assert summary["rows_bad"] == 300 and summary["rows_out"] == ROWS - 300
    errors = [json.loads(line) for part in (sink / "_errors").iterdir() for line in part.read_text().splitlines()]
    assert {e["reason"] for e in errors} == {"type_mismatch"}
    assert sorted(e["line"] for e in errors) == list(range(ROWS - 300 + 2, ROWS + 2))
    assert all(e["column"] == "id" and "quoting" not in e["message"] for e in errors)


# --- header="auto" ---------------------------------------------------------------------------------------------------


def test_header_auto_finds_a_header_line_and_writes_one(models: Models, regressor: ModelSpec, tmp_path: Path):
    frame = make_frame(500, seed=29)
    ids = [str(i) for i in range(500)]
    write_csv(tmp_path / "in" / "data.csv", frame, ids, header=True)
    sink = tmp_path / "out"
    summary = run(regressor, {"uri": (tmp_path / "in" / "data.csv").as_uri()}, {"uri": sink.as_uri()},
                  replicas=2, in_process=True)
    assert summary["rows_in"] == 500  # the header line is not a row
    manifest = json.loads((sink / "_manifest.json").read_text())
    assert manifest["output"]["header"] is True
    table = read_dataset(sink, "csv", header=True)
    assert dict(zip(table.column("id").to_pylist(), table.column("prediction").to_pylist(), strict=True)) == \
        expected_predictions(models, frame, ids)


@pytest.mark.parametrize("with_id", [True, False])
def test_header_auto_reads_a_first_data_line_as_data(
    models: Models, regressor: ModelSpec, tmp_path: Path, with_id: bool
):
    frame = make_frame(500, seed=30)
    ids = [str(i) for i in range(500)]
    path = tmp_path / "in" / "data.csv"
    if with_id:
        write_csv(path, frame, ids, header=False)
        source = {"uri": path.as_uri(), "columns": ["id", *FEATURES]}
    else:  # no names at all: the model's input columns name the fields
        path.parent.mkdir(parents=True)
        path.write_text("".join(",".join(repr(float(v)) for v in row) + "\n"
                                for row in frame[FEATURES].itertuples(index=False)))
        source = {"uri": path.as_uri()}
    sink = tmp_path / "out"
    summary = run(regressor, source, {"uri": sink.as_uri()}, replicas=2, in_process=True,
                  passthrough_columns=["id"] if with_id else [], input_schema=SCHEMA)
    assert summary["rows_in"] == summary["rows_out"] == 500
    assert json.loads((sink / "_manifest.json").read_text())["output"]["header"] is False
    table = read_dataset(sink, "csv", header=False) if with_id else None
    if table is not None:
        assert dict(zip(table.column("id").to_pylist(), table.column("prediction").to_pylist(), strict=True)) == \
            expected_predictions(models, frame, ids)


@pytest.mark.parametrize("header", [None, False])
@pytest.mark.parametrize("on_bad_rows", ["fail", "quarantine"])
def test_a_first_line_that_looks_like_names_is_never_a_bad_row(
    models: Models, regressor: ModelSpec, tmp_path: Path, header: bool | None, on_bad_rows: str
):
    """A header the user did not declare (names that are not the model's, or header=False): a clear message in both
    modes; quarantine must not set it aside and succeed."""
    frame = make_frame(300, seed=31)
    path = tmp_path / "in" / "data.csv"
    write_csv(path, frame, [str(i) for i in range(300)], header=False)
    names = "ID,feat0,feat1,feat2,feat3,feat4" if header is None else ",".join(["id", *FEATURES])
    path.write_text(names + "\n" + path.read_text())
    source: dict[str, Any] = {"uri": path.as_uri(), "columns": ["id", *FEATURES]}
    if header is not None:
        source["header"] = header
    sink = tmp_path / "out"
    with pytest.raises(InputError) as caught:
        run(regressor, source, {"uri": sink.as_uri()}, replicas=2, in_process=True, on_bad_rows=on_bad_rows)
    assert f"line 1 looks like a header ({names.replace(',', ', ')}): set header=True" in str(caught.value)
    assert_nothing_published(sink)


def test_json_lines_passthrough_text_rule(tmp_path: Path):
    """Each JSON value as its text, whatever the block's other values (blocks of 64 bytes: many blocks)."""
    import fsspec

    from airflow_batch_scoring.io.readers import make_reader
    from airflow_batch_scoring.io.readers.columns import ReadPlan
    from airflow_batch_scoring.job import Piece
    from airflow_batch_scoring.schema import Column, ColumnType

    values = ["7", '"000123"', "1.50", "true", '{"a": [1, 2]}', "null", '"2024-01-01"', "12345678901234567890123",
              '"A7"', "8", "9", '"2024-01-02"', '"x"', "-0.0e5"]
    expected = ["7", "000123", "1.50", "true", '{"a":[1,2]}', None, "2024-01-01", "12345678901234567890123", "A7",
                "8", "9", "2024-01-02", "x", "-0.0e5"]
    path = tmp_path / "in.jsonl"
    path.write_text("".join(f'{{"Id": {value}, "f0": {i}}}\n' for i, value in enumerate(values)))
    for block_size in (64, 1 << 20):
        plan = ReadPlan([Column("f0", ColumnType.FLOAT64)], passthrough=["id"])
        reader = make_reader(FileSpec(uri=path.as_uri(), format="jsonl"), plan, fsspec.filesystem("file"),
                             block_size=block_size, batch_size=10)
        table = pa.concat_tables(list(reader.read(Piece(path.as_uri()))))
        assert table.column("Id").type == pa.string()
        assert table.column("Id").to_pylist() == expected
        assert table.column("f0").to_pylist() == [float(i) for i in range(len(values))]


def test_csv_passthrough_is_the_text_as_written(tmp_path: Path):
    import fsspec

    from airflow_batch_scoring.io.readers import make_reader
    from airflow_batch_scoring.io.readers.columns import ReadPlan
    from airflow_batch_scoring.job import Piece
    from airflow_batch_scoring.schema import Column, ColumnType

    path = tmp_path / "in.csv"
    path.write_text('000123,1\n,2\nNA,3\n"a,b",4\n1e5,5\n')
    plan = ReadPlan([Column("f0", ColumnType.FLOAT64)], passthrough=["id"])
    reader = make_reader(FileSpec(uri=path.as_uri(), format="csv", columns=("id", "f0"), header=False), plan,
                         fsspec.filesystem("file"), block_size=8, batch_size=10)
    table = pa.concat_tables(list(reader.read(Piece(path.as_uri()))))
    assert table.column("id").to_pylist() == ["000123", "", "NA", "a,b", "1e5"]
