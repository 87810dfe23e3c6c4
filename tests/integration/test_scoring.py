"""End-to-end scoring through the driver and real local replicas: outputs equal the model's own predictions."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.support.helpers import FEATURES, FORMATS, Models, make_frame, read_output, source_spec, suffix, write_frame
from tests.support.scoring import check_predictions, score


@pytest.mark.parametrize("replicas", [1, 3])
@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("kind", ["classifier", "regressor"])
def test_predictions_equal_model_predict(models: Models, tmp_path: Path, kind: str, fmt: str, replicas: int):
    frame = make_frame(1537, seed=1)
    write_frame(frame, tmp_path / "in" / f"data.{suffix(fmt)}", fmt)
    sink = tmp_path / "out"
    summary = score(
        str(models.path(kind)),
        source_spec(fmt, (tmp_path / "in" / f"data.{suffix(fmt)}").as_uri()),
        {"uri": sink.as_uri(), "header": fmt == "csv_header"},
        tmp_path,
        replicas=replicas,
        batch_size=200,
        passthrough_columns=["id"],
    )
    assert summary["rows_in"] == summary["rows_out"] == len(frame)
    out_fmt = "csv" if fmt.startswith("csv") else fmt
    output = read_output(sink, out_fmt, ["id", "prediction"], header=fmt == "csv_header")
    check_predictions(frame, output, models.estimator(kind))
    assert (sink / "_SUCCESS").exists()
    manifest = json.loads((sink / "_manifest.json").read_text())
    assert manifest["totals"] == {"rows_in": len(frame), "rows_out": len(frame), "rows_bad": 0}
    assert [s["rows_in"] for s in manifest["shards"]] and sum(s["rows_in"] for s in manifest["shards"]) == len(frame)
    assert len(manifest["shards"]) == replicas
    assert not (sink / "_temporary").exists()


def test_folder_and_glob_inputs_with_format_change(models: Models, tmp_path: Path):
    frames = [make_frame(300 + 50 * i, seed=i + 2) for i in range(4)]
    for i, frame in enumerate(frames):
        write_frame(frame, tmp_path / "in" / f"day={i}" / f"part-{i}.parquet", "parquet")
    (tmp_path / "in" / "_SUCCESS").write_text("")  # markers are skipped
    import pandas as pd

    everything = pd.concat(frames)
    summary = score(
        str(models.regressor_path),
        {"uri": (tmp_path / "in").as_uri() + "/"},
        {"uri": (tmp_path / "out").as_uri(), "format": "csv", "header": True},
        tmp_path,
        replicas=3,
        passthrough_columns=["id"],
    )
    assert summary["rows_in"] == len(everything)
    output = read_output(tmp_path / "out", "csv", [], header=True)
    check_predictions(everything, output, models.regressor)

    glob_sink = tmp_path / "glob-out"
    summary = score(
        str(models.regressor_path),
        {"uri": (tmp_path / "in").as_uri() + "/day=[12]/*.parquet"},
        {"uri": glob_sink.as_uri(), "format": "jsonl"},
        tmp_path,
        replicas=2,
        passthrough_columns=["id"],
    )
    assert summary["rows_in"] == len(frames[1]) + len(frames[2])
    check_predictions(pd.concat(frames[1:3]), read_output(glob_sink, "jsonl", []), models.regressor)


def test_large_csv_split_between_replicas_reads_every_line_once(models: Models, tmp_path: Path):
    frame = make_frame(20_000, seed=5)
    source = tmp_path / "big.csv"
    write_frame(frame, source, "csv")
    summary = score(
        str(models.classifier_path),
        source_spec("csv", source.as_uri()),
        {"uri": (tmp_path / "out").as_uri(), "format": "parquet"},
        tmp_path,
        replicas=3,
        batch_size=1000,
        passthrough_columns=["id"],
    )
    manifest = json.loads((tmp_path / "out" / "_manifest.json").read_text())
    assert all(shard["rows_in"] > 5000 for shard in manifest["shards"]), manifest["shards"]
    assert summary["rows_out"] == 20_000
    check_predictions(frame, read_output(tmp_path / "out", "parquet", []), models.classifier)


def test_headerless_csv_with_columns_in_file_order(models: Models, tmp_path: Path):
    frame = make_frame(500, seed=6)
    shuffled = frame[["f3", "id", "f1", "f0", "f4", "f2"]]
    write_frame(shuffled, tmp_path / "in.csv", "csv")
    score(
        str(models.regressor_path),
        {"uri": (tmp_path / "in.csv").as_uri(), "columns": ["F3", "ID", "f1", "f0", "f4", "f2"]},
        {"uri": (tmp_path / "out").as_uri()},
        tmp_path,
        replicas=2,
        passthrough_columns=["id"],
    )
    output = read_output(tmp_path / "out", "csv", ["ID", "prediction"]).rename_columns(["id", "prediction"])
    check_predictions(frame, output, models.regressor)


def test_classifier_probabilities(models: Models, tmp_path: Path):
    frame = make_frame(400, seed=7)
    write_frame(frame, tmp_path / "in.parquet", "parquet")
    score(
        str(models.classifier_path),
        {"uri": (tmp_path / "in.parquet").as_uri()},
        {"uri": (tmp_path / "out").as_uri()},
        tmp_path,
        passthrough_columns=["id"],
        predict_probabilities=True,
    )
    out = read_output(tmp_path / "out", "parquet", []).to_pandas().sort_values("id")
    assert list(out.columns) == ["id", "prediction", "probability_no", "probability_yes"]
    expected = models.classifier.predict_proba(frame.sort_values("id")[FEATURES])
    np.testing.assert_array_equal(out[["probability_no", "probability_yes"]].to_numpy(), expected)


def test_output_schema_names_the_prediction(models: Models, tmp_path: Path):
    frame = make_frame(100, seed=8)
    write_frame(frame, tmp_path / "in.parquet", "parquet")
    score(
        str(models.regressor_path),
        {"uri": (tmp_path / "in.parquet").as_uri()},
        {"uri": (tmp_path / "out").as_uri()},
        tmp_path,
        passthrough_columns=["id"],
        output_schema=[{"name": "score", "type": "float32"}],
    )
    out = read_output(tmp_path / "out", "parquet", [])
    assert out.schema.field("score").type == "float"
    np.testing.assert_array_equal(
        out.to_pandas().sort_values("id")["score"].to_numpy(),
        models.regressor.predict(frame[FEATURES]).astype(np.float32),
    )


@pytest.mark.parametrize("reference", ["alias", "version", "runs"])
def test_mlflow_registry_models(models: Models, tmp_path: Path, reference: str):
    uri = {
        "alias": f"models:/{models.registry_name}@champion",
        "version": f"models:/{models.registry_name}/{models.registry_version}",
        "runs": models.run_uri,
    }[reference]
    estimator = models.regressor if reference == "runs" else models.classifier
    frame = make_frame(700, seed=9)
    write_frame(frame, tmp_path / "in.csv", "csv_header")
    summary = score(
        uri,
        {"uri": (tmp_path / "in.csv").as_uri(), "header": True},
        {"uri": (tmp_path / "out").as_uri(), "format": "jsonl"},
        tmp_path,
        replicas=2,
        passthrough_columns=["id"],
    )
    check_predictions(frame, read_output(tmp_path / "out", "jsonl", []), estimator)
    manifest = json.loads((tmp_path / "out" / "_manifest.json").read_text())
    assert manifest["model"]["digest"].startswith("sha256:")
    if reference != "runs":
        assert summary["model_uri"] == f"models:/{models.registry_name}/{models.registry_version}"
        assert manifest["model"]["version"] == models.registry_version
        # the schema came from the MLflow signature
        assert [c["name"] for c in manifest["input_schema"]] == FEATURES


def test_linear_model_within_one_ulp(models: Models, tmp_path: Path):
    """BLAS rounds a dot product differently by the matrix layout and a row's position in its batch: the outputs
    agree with the model's own predict within the rounding bound of the dot product."""
    frame = make_frame(1000, seed=13)
    write_frame(frame, tmp_path / "in.csv", "csv")
    score(
        str(Path(models.classifier_path).parent / "linear.joblib"),
        source_spec("csv", (tmp_path / "in.csv").as_uri()),
        {"uri": (tmp_path / "out").as_uri()},
        tmp_path,
        replicas=3,
        batch_size=64,
        passthrough_columns=["id"],
    )
    out = read_output(tmp_path / "out", "csv", ["id", "prediction"]).to_pandas().sort_values("id")
    expected = models.linear.predict(frame.sort_values("id")[FEATURES])
    # the rounding bound of a dot product: a few ulp of the sum of the absolute terms
    x = frame.sort_values("id")[FEATURES].to_numpy()
    bound = 8 * np.finfo(np.float64).eps * (np.abs(x) @ np.abs(models.linear.coef_) + abs(models.linear.intercept_))
    assert np.all(np.abs(out["prediction"].to_numpy() - expected) <= bound)


def test_schema_check_off_passes_columns_unchecked(models: Models, tmp_path: Path):
    frame = make_frame(300, seed=10)
    write_frame(frame, tmp_path / "in.csv", "csv_header")
    score(
        str(models.regressor_path),
        {"uri": (tmp_path / "in.csv").as_uri(), "header": True},
        {"uri": (tmp_path / "out").as_uri(), "format": "parquet"},
        tmp_path,
        passthrough_columns=["id"],
        schema_check=False,
    )
    check_predictions(frame, read_output(tmp_path / "out", "parquet", []), models.regressor)


def test_rerun_replaces_previous_output(models: Models, tmp_path: Path):
    sink = tmp_path / "out"
    for seed, rows in ((11, 900), (12, 100)):
        frame = make_frame(rows, seed=seed)
        write_frame(frame, tmp_path / "in.csv", "csv_header")
        score(
            str(models.regressor_path),
            {"uri": (tmp_path / "in.csv").as_uri(), "header": True},
            {"uri": sink.as_uri()},
            tmp_path,
            replicas=3 if seed == 11 else 1,
            passthrough_columns=["id"],
        )
        shutil.rmtree(tmp_path / "model-download", ignore_errors=True)
    assert sorted(p.name for p in sink.iterdir()) == ["_SUCCESS", "_manifest.json", "part-00000.csv"]
    # (the input has a header line, so the output gets one: sink header "auto")
    check_predictions(frame, read_output(sink, "csv", ["id", "prediction"], header=True), models.regressor)
