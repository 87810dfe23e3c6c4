"""Model schema: the seven types, JSON form, case-insensitive names, MLflow signatures, coercion."""

from __future__ import annotations

from datetime import datetime

import pyarrow as pa
import pytest

from airflow_batch_scoring.errors import ConfigurationError, InputError, SchemaError
from airflow_batch_scoring.io.readers import READERS, make_reader
from airflow_batch_scoring.io.readers.columns import ReadPlan, coerce, resolve_columns
from airflow_batch_scoring.io.readers.csv import CsvReader
from airflow_batch_scoring.job import Piece
from airflow_batch_scoring.schema import ColumnType, ModelSchema
from airflow_batch_scoring.specs import FileSpec


def test_seven_types_map_to_arrow():
    assert {t.value: t.arrow_type for t in ColumnType} == {
        "Boolean": pa.bool_(),
        "Time64": pa.timestamp("us"),
        "Float32": pa.float32(),
        "Float64": pa.float64(),
        "Int32": pa.int32(),
        "Int64": pa.int64(),
        "String": pa.string(),
    }


def test_json_form_is_case_insensitive_and_round_trips():
    schema = ModelSchema.parse('[{"name": "Age", "type": "int32"}, {"name": "when", "type": "TIME64"}]')
    assert schema.to_json() == [{"name": "Age", "type": "Int32"}, {"name": "when", "type": "Time64"}]
    assert ModelSchema.parse(schema.to_json()) == schema
    assert schema.find("AGE").name == "Age"
    assert schema.to_arrow() == pa.schema([("Age", pa.int32()), ("when", pa.timestamp("us"))])


@pytest.mark.parametrize(
    "value, message",
    [
        ('[{"name": "a", "type": "Decimal"}]', "Unknown column type 'Decimal'"),
        ('[{"name": "a"}]', "needs a 'name' and a 'type'"),
        ('{"name": "a", "type": "Int32"}', "is a list of"),
        ("[{bad json", "not valid JSON"),
        ('[{"name": "a", "type": "Int32"}, {"name": "A", "type": "String"}]', "appears twice"),
        ("[]", "no columns"),
    ],
)
def test_malformed_schemas_are_refused_clearly(value, message):
    with pytest.raises(SchemaError, match=message):
        ModelSchema.parse(value)


def test_from_mlflow_signature():
    from mlflow.types import ColSpec, Schema

    mlflow_schema = Schema(
        [ColSpec("boolean", "b"), ColSpec("integer", "i"), ColSpec("long", "l"), ColSpec("float", "f"),
         ColSpec("double", "d"), ColSpec("string", "s"), ColSpec("datetime", "t")]
    )
    schema = ModelSchema.from_mlflow(mlflow_schema)
    assert [c.type.value for c in schema.columns] == [
        "Boolean", "Int32", "Int64", "Float32", "Float64", "String", "Time64"
    ]
    with pytest.raises(SchemaError, match="binary"):
        ModelSchema.from_mlflow(Schema([ColSpec("binary", "blob")]))


def test_a_signature_read_from_the_mlmodel_json_equals_mlflows_own_parse():
    """The MLmodel file's signature JSON, read without MLflow, gives the schema MLflow's own parse of it gives."""
    import numpy as np
    from mlflow.types import ColSpec, Schema, TensorSpec
    from mlflow.types.schema import Array

    schemas = [
        Schema([ColSpec("boolean", "b"), ColSpec("integer", "i"), ColSpec("long", "l"), ColSpec("float", "f"),
                ColSpec("double", "d"), ColSpec("string", "s"), ColSpec("datetime", "t")]),
        Schema([ColSpec("double", "Mixed Case"), ColSpec("long", "optional", required=False)]),
        Schema([ColSpec("double")]),  # unnamed: no columns
        Schema([TensorSpec(np.dtype("float64"), (-1, 4))]),  # a tensor: no columns
    ]
    for mlflow_schema in schemas:
        text = mlflow_schema.to_json()
        assert ModelSchema.from_mlflow_json(text) == ModelSchema.from_mlflow(Schema.from_json(text)), text
    assert ModelSchema.from_mlflow_json(None) is None
    for refused in (Schema([ColSpec("binary", "blob")]), Schema([ColSpec(Array("double"), "values")])):
        with pytest.raises(SchemaError, match="MLflow column"):
            ModelSchema.from_mlflow_json(refused.to_json())
        with pytest.raises(SchemaError, match="MLflow column"):
            ModelSchema.from_mlflow(Schema.from_json(refused.to_json()))
    with pytest.raises(SchemaError, match="not valid JSON"):
        ModelSchema.from_mlflow_json("[{")
    with pytest.raises(SchemaError, match="not a JSON list"):
        ModelSchema.from_mlflow_json('{"type": "double"}')


def test_all_seven_types_coerced_from_csv_with_nulls(tmp_path):
    schema = ModelSchema.parse(
        [{"name": n, "type": t} for n, t in [("b", "Boolean"), ("t", "Time64"), ("f", "Float32"),
                                             ("d", "Float64"), ("i", "Int32"), ("l", "Int64"), ("s", "String")]]
    )
    path = tmp_path / "typed.csv"
    path.write_text("true,2026-03-01T10:20:30.123456,1.5,2.25,7,9000000000,hello\n,,,,,,\n")
    import fsspec

    reader = CsvReader(FileSpec(uri=path.as_uri(), format="csv"), ReadPlan(list(schema.columns)),
                       fsspec.filesystem("file"), 1 << 20)
    table = pa.concat_tables(reader.read(Piece(path.as_uri(), 0, path.stat().st_size)))
    assert table.schema == schema.to_arrow()
    assert table.to_pylist() == [
        {"b": True, "t": datetime(2026, 3, 1, 10, 20, 30, 123456), "f": 1.5, "d": 2.25, "i": 7, "l": 9_000_000_000,
         "s": "hello"},
        {"b": None, "t": None, "f": None, "d": None, "i": None, "l": None, "s": ""},
    ]


def test_coercion_is_safe_and_names_the_value():
    schema = ModelSchema.parse([{"name": "n", "type": "Int32"}])
    columns = resolve_columns(["N"], ReadPlan(list(schema.columns)), "mem")
    assert coerce(pa.table({"N": pa.array([1.0, 2.0])}), columns).column("N").type == pa.int32()
    with pytest.raises(Exception) as err:
        coerce(pa.table({"N": pa.array([1.0, 2.0, 2.5, 3.5])}), columns)
    assert err.value.index == 2 and err.value.value == 2.5  # the first value that does not fit


def test_missing_column_lists_what_the_input_has():
    schema = ModelSchema.parse([{"name": "x", "type": "Float64"}])
    with pytest.raises(InputError, match=r"file f.csv, column 'x': the model's input column is missing; the input has "
                                         r"columns \['a', 'b'\]"):
        resolve_columns(["a", "b"], ReadPlan(list(schema.columns)), "f.csv")


def test_each_format_has_one_reader_and_an_unknown_format_is_a_configuration_error(tmp_path):
    import fsspec

    assert sorted(READERS) == ["csv", "jsonl", "parquet"]
    plan = ReadPlan(None)
    for name, reader_class in READERS.items():
        reader = make_reader(FileSpec(uri=tmp_path.as_uri(), format=name), plan, fsspec.filesystem("file"),
                             block_size=1 << 20, batch_size=7)
        assert type(reader) is reader_class and reader.batch_size == 7 and reader.on_bad_row is None
    with pytest.raises(ConfigurationError, match=r"file format 'avro'.*\['csv', 'jsonl', 'parquet'\]"):
        make_reader(FileSpec(uri=tmp_path.as_uri(), format="avro"), plan, fsspec.filesystem("file"),
                    block_size=1 << 20, batch_size=7)


def test_the_sql_source_and_the_files_match_columns_alike():
    schema = ModelSchema.parse([{"name": "f0", "type": "Float64"}])
    plan = ReadPlan(list(schema.columns), passthrough=["ID"], passthrough_types={"id": pa.int64()})
    files = resolve_columns(["id", "F0"], plan, "mem", passthrough_default=pa.string())
    assert files.model == [("f0", "F0", pa.float64())] and files.passthrough == ["id"]
    assert files.passthrough_types == {"id": pa.int64()}
    table = resolve_columns(["id", "F0"], plan, "table t", typed_passthrough=False)
    assert table.model == files.model and table.passthrough == ["id"] and table.passthrough_types == {}

    def missing(kind: str, name: str, available: list[str]) -> InputError:
        return InputError(f"table t lacks the {kind} column {name!r} ({available})")

    with pytest.raises(InputError, match=r"table t lacks the model column 'f0' \(\['id'\]\)"):
        resolve_columns(["id"], plan, "table t", missing=missing)
