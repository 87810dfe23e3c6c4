"""Bad input gives a clear error naming the file, line (or row) and column, and publishes nothing."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import joblib
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from airflow_batch_scoring.errors import ConfigurationError, InputError, ModelError
from tests.support.helpers import FEATURES, Models, assert_nothing_published, make_frame, source_spec, write_frame
from tests.support.scoring import score


def run(models: Models, tmp_path: Path, source: dict, **kwargs) -> Path:
    sink = tmp_path / "out"
    score(str(models.regressor_path), source, {"uri": sink.as_uri()}, tmp_path, passthrough_columns=["id"], **kwargs)
    return sink


def lines_of(frame, fmt, tmp_path) -> list[str]:
    path = tmp_path / "tmp.txt"
    write_frame(frame, path, fmt)
    return path.read_text().splitlines(keepends=True)


@pytest.mark.parametrize("replicas", [1, 2])
def test_value_of_wrong_type_in_headerless_csv(models: Models, tmp_path: Path, replicas: int):
    lines = lines_of(make_frame(3000, seed=1), "csv", tmp_path)
    fields = lines[2499].split(",")
    fields[3] = "abc"  # f2
    lines[2499] = ",".join(fields)
    source = tmp_path / "in.csv"
    source.write_text("".join(lines))
    with pytest.raises(InputError) as err:
        run(models, tmp_path, source_spec("csv", source.as_uri()), replicas=replicas, batch_size=100)
    message = str(err.value)
    assert str(source) in message and "line 2500" in message and "'f2'" in message and "'abc'" in message
    assert "Float64" in message
    assert_nothing_published(tmp_path / "out")


def test_value_of_wrong_type_in_csv_with_header(models: Models, tmp_path: Path):
    lines = lines_of(make_frame(50, seed=1), "csv_header", tmp_path)
    fields = lines[10].split(",")
    fields[5] = "1.5.3\n"  # f4, the last field
    lines[10] = ",".join(fields)
    source = tmp_path / "in.csv"
    source.write_text("".join(lines))
    with pytest.raises(InputError, match=r"line 11, column 'f4': value '1\.5\.3' cannot be read as Float64"):
        run(models, tmp_path, source_spec("csv_header", source.as_uri()))
    assert_nothing_published(tmp_path / "out")


def test_unparsable_csv_line(models: Models, tmp_path: Path):
    lines = lines_of(make_frame(200, seed=2), "csv", tmp_path)
    lines[120] = lines[120].replace(",", ";")  # wrong delimiter on one line
    source = tmp_path / "in.csv"
    source.write_text("".join(lines))
    with pytest.raises(InputError) as err:
        run(models, tmp_path, source_spec("csv", source.as_uri()))
    assert "line 121" in str(err.value) and "1 field(s) where 6 are expected" in str(err.value)
    assert "delimiter" in str(err.value)
    assert_nothing_published(tmp_path / "out")


def test_line_that_is_not_json(models: Models, tmp_path: Path):
    lines = lines_of(make_frame(300, seed=3), "jsonl", tmp_path)
    lines[77] = '{"id": 77, "f0": 1.0,\n'
    source = tmp_path / "in.jsonl"
    source.write_text("".join(lines))
    with pytest.raises(InputError, match=r"line 78: the line is not valid JSON"):
        run(models, tmp_path, {"uri": source.as_uri()}, replicas=2)
    assert_nothing_published(tmp_path / "out")


def test_json_value_of_wrong_type(models: Models, tmp_path: Path):
    lines = lines_of(make_frame(300, seed=3), "jsonl", tmp_path)
    lines[5] = lines[5].replace('"f1": ', '"f1": "ten", "x": ', 1)
    source = tmp_path / "in.jsonl"
    source.write_text("".join(lines))
    with pytest.raises(InputError, match=r"line 6, column 'f1': value 'ten' cannot be read as Float64"):
        run(models, tmp_path, {"uri": source.as_uri()})
    assert_nothing_published(tmp_path / "out")


def test_parquet_column_of_wrong_type(models: Models, tmp_path: Path):
    frame = make_frame(400, seed=4)
    frame["f3"] = frame["f3"].astype(str)
    frame.loc[333, "f3"] = "n/a"
    source = tmp_path / "in.parquet"
    write_frame(frame, source, "parquet")
    with pytest.raises(InputError, match=r"row 334, column 'f3': value 'n/a' cannot be read as Float64"):
        run(models, tmp_path, {"uri": source.as_uri()}, replicas=2)
    assert_nothing_published(tmp_path / "out")


@pytest.mark.parametrize("fmt", ["csv_header", "parquet", "jsonl"])
def test_missing_column(models: Models, tmp_path: Path, fmt: str):
    frame = make_frame(100, seed=5).drop(columns=["f2"])
    source = tmp_path / f"in.{'csv' if fmt == 'csv_header' else fmt}"
    write_frame(frame, source, fmt)
    with pytest.raises(InputError) as err:
        run(models, tmp_path, source_spec(fmt, source.as_uri()))
    assert str(source) in str(err.value) and "column 'f2'" in str(err.value) and "missing" in str(err.value)
    assert_nothing_published(tmp_path / "out")


def test_headerless_csv_with_too_few_columns_named(models: Models, tmp_path: Path):
    source = tmp_path / "in.csv"
    write_frame(make_frame(10), source, "csv")
    with pytest.raises(InputError, match="column 'f4': the model's input column is missing"):
        run(models, tmp_path, {"uri": source.as_uri(), "columns": ["id", "f0", "f1", "f2", "f3"]})


@pytest.mark.parametrize("content", ["", "\n\n"])
def test_empty_input(models: Models, tmp_path: Path, content: str):
    source = tmp_path / "in.csv"
    source.write_text(content)
    with pytest.raises(InputError, match="empty|no data rows"):
        run(models, tmp_path, source_spec("csv", source.as_uri()))
    assert_nothing_published(tmp_path / "out")


def test_empty_folder_and_header_only(models: Models, tmp_path: Path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="holds no files"):
        run(models, tmp_path, {"uri": (tmp_path / "empty").as_uri(), "format": "csv"})
    source = tmp_path / "header.csv"
    source.write_text("id," + ",".join(FEATURES) + "\n")
    with pytest.raises(InputError, match="no data rows"):
        run(models, tmp_path, source_spec("csv_header", source.as_uri()))
    assert_nothing_published(tmp_path / "out")


def test_unknown_format(models: Models, tmp_path: Path):
    source = tmp_path / "in.xml"
    source.write_text("<rows/>")
    with pytest.raises(ConfigurationError, match="Unknown source format 'xml'"):
        run(models, tmp_path, {"uri": source.as_uri(), "format": "xml"})
    with pytest.raises(ConfigurationError, match=re.escape("set source['format']")):
        run(models, tmp_path, {"uri": tmp_path.as_uri() + "/*.xml"})


def test_path_that_does_not_exist(models: Models, tmp_path: Path):
    with pytest.raises(InputError, match="does not exist"):
        run(models, tmp_path, {"uri": (tmp_path / "nope.csv").as_uri(), "columns": ["id", *FEATURES]})
    with pytest.raises(InputError, match="no input file matches"):
        run(models, tmp_path, {"uri": (tmp_path / "nope" ).as_uri() + "/*.csv"})


def test_model_path_that_does_not_exist(models: Models, tmp_path: Path):
    with pytest.raises(ModelError, match="does not exist"):
        score(str(tmp_path / "missing.joblib"), {"uri": "file:///x.csv"}, {"uri": "file:///y/"}, tmp_path)
    with pytest.raises(ModelError, match="alias 'nope'"):
        score(f"models:/{models.registry_name}@nope", {"uri": "file:///x.csv"}, {"uri": "file:///y/"}, tmp_path)


def test_corrupt_parquet(models: Models, tmp_path: Path):
    source = tmp_path / "in.parquet"
    source.write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(InputError, match="not a readable Parquet file"):
        run(models, tmp_path, {"uri": source.as_uri()})


def test_unknown_schema_is_refused_with_a_way_out(tmp_path: Path):
    import joblib
    from sklearn.linear_model import LinearRegression

    frame = make_frame(50)
    model_path = tmp_path / "nameless.joblib"
    joblib.dump(LinearRegression().fit(frame[FEATURES].to_numpy(), frame["f0"].to_numpy()), model_path)
    source = tmp_path / "in.csv"
    write_frame(frame, source, "csv")
    spec = source_spec("csv", source.as_uri())
    with pytest.raises(ModelError, match="input schema .* is unknown.*input_schema="):
        score(str(model_path), spec, {"uri": (tmp_path / "out").as_uri()}, tmp_path, passthrough_columns=["id"])
    assert_nothing_published(tmp_path / "out")
    summary = score(
        str(model_path), spec, {"uri": (tmp_path / "out").as_uri()}, tmp_path, passthrough_columns=["id"],
        schema_check=False,
    )
    assert summary["rows_out"] == 50


def _with_missing(frame, fmt: str, tmp_path: Path) -> Path:
    """``frame`` as ``fmt`` with f3 missing in row 1700 (an empty CSV field, a JSON null, a Parquet NaN)."""
    frame = frame.copy()
    frame.loc[1700, "f3"] = float("nan")
    path = tmp_path / f"in.{'csv' if fmt.startswith('csv') else fmt}"
    write_frame(frame, path, fmt)
    if fmt == "jsonl":  # json.dumps writes NaN, which is not JSON: a null is what JSON lines hold
        path.write_text(path.read_text().replace("NaN", "null"))
    return path


@pytest.mark.parametrize(
    ("fmt", "where", "on_bad_rows"),
    [("csv", "line 1701", "fail"), ("csv_header", "line 1702", "fail"), ("jsonl", "line 1701", "fail"),
     ("parquet", "row 1701", "fail")],
)
def test_a_missing_value_the_model_refuses_is_located(models: Models, tmp_path: Path, fmt: str, where: str,
                                                      on_bad_rows: str):
    """Ridge refuses NaN. The error names the file, the line (or row) and the column of the first missing value,
    whatever replica and batch hit it, and nothing is published; a model that handles missing values (gradient
    boosting) scores the same input."""
    frame = make_frame(3000, seed=2)
    path = _with_missing(frame, fmt, tmp_path)
    linear = tmp_path / "linear.joblib"
    joblib.dump(models.linear, linear)
    sink = tmp_path / "out"
    with pytest.raises(InputError) as err:
        score(str(linear), source_spec(fmt, path.as_uri()), {"uri": sink.as_uri(), "format": "parquet"}, tmp_path,
              passthrough_columns=["id"], replicas=2, batch_size=250, on_bad_rows=on_bad_rows)
    message = str(err.value)
    assert f"{path.as_uri()}, {where}, column 'f3': the value is missing" in message, message
    assert "does not accept missing values" in message and "Input X contains NaN" in message
    assert_nothing_published(sink)
    summary = score(str(models.regressor_path), source_spec(fmt, path.as_uri()),
                    {"uri": (tmp_path / "ok").as_uri(), "format": "parquet"}, tmp_path / "ok-work",
                    passthrough_columns=["id"], replicas=2, batch_size=250)
    assert summary["rows_out"] == 3000


@pytest.fixture(scope="module")
def tree_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[object, Path]]:
    """Models with exact (tree) predictions: one refuses NaN and inf (gradient boosting), one refuses only inf (a
    decision tree handles NaN)."""
    from sklearn.ensemble import GradientBoostingRegressor
    from sklearn.tree import DecisionTreeRegressor

    folder = tmp_path_factory.mktemp("tree-models")
    train = make_frame(2000, seed=99)
    target = train["f0"] * 3.3 + train["f3"] / 1e6
    found = {}
    for name, model in (("refuses-both", GradientBoostingRegressor(n_estimators=20, random_state=0)),
                        ("refuses-inf", DecisionTreeRegressor(max_depth=6, random_state=0))):
        model.fit(train[FEATURES], target)
        joblib.dump(model, folder / f"{name}.joblib")
        found[name] = (model, folder / f"{name}.joblib")
    return found


def _with_non_finite(fmt: str, tmp_path: Path, values: dict[int, tuple[str, float]]):
    """3000 rows as ``fmt``; ``values`` sets some rows' feature to NaN, inf or -inf (a JSON null for NaN)."""
    frame = make_frame(3000, seed=3)
    for row, (column, value) in values.items():
        frame.loc[row, column] = value
    path = tmp_path / f"in.{'csv' if fmt.startswith('csv') else fmt}"
    write_frame(frame, path, fmt)
    if fmt == "jsonl":  # json.dumps writes NaN and Infinity: a null is JSON's missing value (Arrow reads Infinity)
        path.write_text(path.read_text().replace("NaN", "null"))
    return frame, path


@pytest.mark.parametrize(
    ("fmt", "where"),
    [("csv", "line 1701"), ("csv_header", "line 1702"), ("jsonl", "line 1701"), ("parquet", "row 1701")],
)
def test_an_infinite_value_the_model_refuses_is_located(tree_models, tmp_path: Path, fmt: str, where: str):
    """A decision tree handles NaN but refuses inf. The batch that fails holds both (f1 is NaN in row 1650, f3 inf
    in row 1700): the error names the inf, not the NaN before it; nothing is published."""
    _, path = _with_non_finite(fmt, tmp_path, {1650: ("f1", float("nan")), 1700: ("f3", float("inf"))})
    sink = tmp_path / "out"
    with pytest.raises(InputError) as err:
        score(str(tree_models["refuses-inf"][1]), source_spec(fmt, path.as_uri()), {"uri": sink.as_uri()}, tmp_path,
              passthrough_columns=["id"], replicas=2, batch_size=250)
    message = str(err.value)
    assert f"{path.as_uri()}, {where}, column 'f3': the value is infinite" in message, message
    assert "does not accept infinite values" in message and "Input X contains infinity" in message
    assert_nothing_published(sink)


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
@pytest.mark.parametrize(("model", "set_aside"),
                         [("refuses-both", {5, 1650, 1700, 2999}), ("refuses-inf", {1700, 2999})])
def test_values_the_model_refuses_are_quarantined(tree_models, tmp_path: Path, fmt: str, model: str,
                                                  set_aside: set[int]):
    """With on_bad_rows='quarantine', the rows holding values the model refuses (and only those: a NaN for a model
    that handles it is scored) land in _errors/ with their place and reason; the others are scored."""
    values = {5: ("f2", float("nan")), 1650: ("f1", float("nan")), 1700: ("f3", float("inf")),
              2999: ("f0", float("-inf"))}
    frame, path = _with_non_finite(fmt, tmp_path, values)
    estimator, model_path = tree_models[model]
    sink = tmp_path / "out"
    summary = score(str(model_path), source_spec(fmt, path.as_uri()), {"uri": sink.as_uri(), "format": "parquet"},
                    tmp_path, passthrough_columns=["id"], replicas=2, batch_size=250, on_bad_rows="quarantine")
    errors = [json.loads(line) for part in sorted((sink / "_errors").iterdir())
              for line in part.read_text().splitlines()]
    unit = "row" if fmt == "parquet" else "line"
    reasons = {"f2": "missing_value", "f1": "missing_value", "f3": "infinite_value", "f0": "infinite_value"}
    assert [(e[unit], e["reason"], e["column"]) for e in errors] == [
        (row + 1, reasons[values[row][0]], values[row][0]) for row in sorted(set_aside)
    ]
    assert all(e["file"] == path.as_uri() for e in errors)
    assert summary["rows_bad"] == len(set_aside) and summary["rows_out"] == 3000 - len(set_aside)
    good = frame.drop(index=sorted(set_aside))
    output = pa.concat_tables([pq.read_table(p) for p in sorted(sink.glob("part-*"))]).to_pandas()
    ids = good["id"].astype(str) if fmt == "csv" else good["id"]  # a CSV passthrough column is carried as its text
    assert output["id"].tolist() == ids.tolist()
    np.testing.assert_array_equal(output["prediction"].to_numpy(), estimator.predict(good[FEATURES]))


def _without_dac_override() -> list[str]:
    """A command prefix that runs as root without the capabilities that let root read any file (tests run as root
    here, and a file's permissions would not stop them otherwise)."""
    import shutil

    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv (util-linux) to drop CAP_DAC_OVERRIDE")
    caps = "-dac_override,-dac_read_search"
    return ["setpriv", f"--bounding-set={caps}", f"--inh-caps={caps}"]


def test_an_unreadable_file_fails_before_scoring_with_its_name(models: Models, tmp_path: Path):
    """Access refused (here: file mode 000 for a process without CAP_DAC_OVERRIDE): the preflight names the file and
    says what to check, even when the model's columns are known only once it is loaded; nothing is published."""
    prefix = _without_dac_override()
    write_frame(make_frame(100, seed=5), tmp_path / "in" / "a.csv", "csv")
    write_frame(make_frame(100, seed=6), tmp_path / "in" / "b.csv", "csv")
    (tmp_path / "in" / "b.csv").chmod(0)
    sink = tmp_path / "out"
    result = subprocess.run(
        [*prefix, str(Path(sys.executable).parent / "batch-scoring"), "score", "--model", str(models.regressor_path),
         "--source", (tmp_path / "in").as_uri() + "/", "--sink", sink.as_uri(),
         "--columns", ",".join(["id", *FEATURES]), "--replicas", "2"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode != 0
    assert f"file {(tmp_path / 'in' / 'b.csv').as_uri()}: cannot be read: access was refused" in result.stderr
    assert "Check the file's permissions" in result.stderr and "Scoring " not in result.stderr  # (before scoring)
    assert_nothing_published(sink)
