"""Part writers keep every value: floats at full precision, strings escaped, nulls and NaN handled."""

from __future__ import annotations

import json
from datetime import datetime

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest
from fsspec.implementations.local import LocalFileSystem

from airflow_batch_scoring.io.writers import make_writer


def table():
    rng = np.random.default_rng(3)
    floats = rng.normal(size=1000) * 10.0 ** rng.integers(-300, 300, size=1000)
    return pa.table(
        {
            "f": floats,
            "i": pa.array(rng.integers(-(2**62), 2**62, size=1000)),
            "s": pa.array([f'q"uo\\te\n\t{i}é' if i % 3 else None for i in range(1000)]),
            "b": pa.array([i % 2 == 0 for i in range(1000)]),
            "t": pa.array([datetime(2026, 1, 1, 0, 0, i % 60, 1234) for i in range(1000)], pa.timestamp("us")),
        }
    )


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_round_trip_is_exact(tmp_path, fmt):
    data = table()
    writer = make_writer(fmt, LocalFileSystem(), str(tmp_path / f"part.{fmt}"), header=True)
    writer.write(data.slice(0, 400))
    writer.write(data.slice(400))
    assert writer.close() == 1000
    path = tmp_path / f"part.{fmt}"
    if fmt == "parquet":
        back = pq.read_table(path)
    elif fmt == "csv":
        back = pa_csv.read_csv(path, convert_options=pa_csv.ConvertOptions(column_types=data.schema,
                                                                           strings_can_be_null=True))
    else:
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
        assert len(rows) == 1000
        assert [r["f"] for r in rows] == data.column("f").to_pylist()
        assert [r["i"] for r in rows] == data.column("i").to_pylist()
        assert [r["s"] for r in rows] == data.column("s").to_pylist()
        assert [r["b"] for r in rows] == data.column("b").to_pylist()
        assert rows[1]["t"] == "2026-01-01T00:00:01.001234"
        return
    assert back.column("f").to_pylist() == data.column("f").to_pylist()
    assert back.column("i").to_pylist() == data.column("i").to_pylist()
    assert back.column("b").to_pylist() == data.column("b").to_pylist()


def test_json_nan_and_control_characters(tmp_path):
    data = pa.table({"f": [float("nan"), float("inf"), 1.0], "s": ["\x01bell", None, "ok"]})
    writer = make_writer("jsonl", LocalFileSystem(), str(tmp_path / "p.jsonl"))
    writer.write(data)
    writer.close()
    rows = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert rows == [{"f": None, "s": "\x01bell"}, {"f": None, "s": None}, {"f": 1.0, "s": "ok"}]
