"""The shard pipeline's stages, each alone, then together: read -> conform -> predict -> assemble -> write.

Local files in ``tmp_path``, a job planned by the real driver, a small scikit-learn model fit here; predictions are
compared with the model's own ``predict`` on the same rows.
"""

from __future__ import annotations

import json
import math
import threading
import time
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pytest
from sklearn.linear_model import LinearRegression
from sklearn.tree import DecisionTreeRegressor

from airflow_batch_scoring.artifacts import process_model
from airflow_batch_scoring.driver.prepare import prepare_job
from airflow_batch_scoring.errors import ConfigurationError, InputError
from airflow_batch_scoring.flavors import Predictor
from airflow_batch_scoring.io.readers.columns import ReadPlan
from airflow_batch_scoring.job import Piece
from airflow_batch_scoring.options import ScoringOptions
from airflow_batch_scoring.runtime.missing_values import INFINITE, MISSING
from airflow_batch_scoring.runtime.pipeline import ShardPipeline
from airflow_batch_scoring.runtime.progress import ShardProgress
from airflow_batch_scoring.runtime.shard_stages import (
    AssembleStage,
    Conformed,
    ConformStage,
    PredictStage,
    ReadStage,
    WriteStage,
    rebatch,
)
from airflow_batch_scoring.runtime.shards import ShardReport
from airflow_batch_scoring.runtime.verified import load_verified
from airflow_batch_scoring.schema import ModelSchema
from airflow_batch_scoring.sinks import open_sink
from airflow_batch_scoring.sources import open_source
from airflow_batch_scoring.specs import parse_data_spec
from tests.support.helpers import FEATURES, SCHEMA, make_frame, write_frame

ROWS, BATCH = 1050, 100


class Shard:
    """A 1,050-row CSV (``id`` + five features), a small scikit-learn model fit on it (a regression tree: its
    predictions do not depend on how rows are batched), and a one-shard job scoring it."""

    def __init__(self, folder: Path, estimator: Any = None):
        self.frame = make_frame(ROWS, seed=11)
        write_frame(self.frame, folder / "in.csv", "csv_header")
        self.estimator = estimator or DecisionTreeRegressor(max_depth=8, random_state=0)
        self.estimator.fit(self.frame[FEATURES], self.frame["f0"] * 2 + self.frame["f3"] / 1e6)
        joblib.dump(self.estimator, folder / "model.joblib")
        self.model = process_model(str(folder / "model.joblib"), str(folder / "model"))
        self.job, _ = prepare_job(
            job_id=f"pipeline-{folder.name}",
            model=self.model,
            source=parse_data_spec({"uri": (folder / "in.csv").as_uri(), "format": "csv", "header": True}, "source"),
            sink=parse_data_spec({"uri": (folder / "out").as_uri(), "header": True}, "sink"),
            options=ScoringOptions.parse(input_schema=SCHEMA, batch_size=BATCH, passthrough_columns=["id"]),
        )
        self.schema = ModelSchema.parse(SCHEMA)

    def conform(self) -> ConformStage:
        return ConformStage.for_job(self.job, self.schema)

    def read(self, conform: ConformStage) -> ReadStage:
        reader = open_source(self.job.source, None).open_reader(self.job, conform.plan, batch_size=BATCH)
        return ReadStage(reader, self.job.shards[0], BATCH)

    def predictor(self) -> Predictor:
        return load_verified(self.job.model, probabilities=False, output_schema=None)

    def expected(self) -> np.ndarray:
        return np.asarray(self.estimator.predict(self.frame[FEATURES]))

    @property
    def staging(self) -> Path:
        return Path(self.job.staging_uri.removeprefix("file://"))


def _same_memory(a: pa.ChunkedArray, b: pa.ChunkedArray) -> bool:
    """Whether two columns are views of the same buffers."""
    return [buf.address for c in a.chunks for buf in c.buffers() if buf is not None] == [
        buf.address for c in b.chunks for buf in c.buffers() if buf is not None
    ]


def _never_refused(err: Exception, kinds: set[str]) -> BaseException:
    raise AssertionError(f"not a refusal: {err}")


def test_rebatch_cuts_any_stream_of_tables_into_batches_of_the_size():
    tables = [pa.table({"x": list(range(start, start + n))}) for start, n in ((0, 7), (7, 0), (7, 25), (32, 3))]
    batches = list(rebatch(tables, 10))
    assert [b.num_rows for b in batches] == [10, 10, 10, 5]
    assert pa.concat_tables(batches).column("x").to_pylist() == list(range(35))


def test_read_stage_streams_the_shard_in_batches_and_marks_what_it_read(tmp_path: Path):
    shard = Shard(tmp_path)
    read = shard.read(shard.conform())
    batches = list(read.batches())
    read.close()
    assert [b.num_rows for b in batches] == [BATCH] * (ROWS // BATCH) + [ROWS % BATCH]
    table = pa.concat_tables(batches)
    assert table.column_names == [*FEATURES, "id"]  # the model's columns, then the passthrough ones
    assert table.column("id").to_pylist() == [str(i) for i in shard.frame["id"]]  # a passthrough column: its text
    np.testing.assert_array_equal(table.column("f3").to_numpy(), shard.frame["f3"].to_numpy())
    rows, consumed = read.mark.mark
    text = (tmp_path / "in.csv").read_bytes()
    assert rows == ROWS and consumed == len(text) - (text.index(b"\n") + 1)  # every byte after the header line


def test_conform_stage_picks_the_model_columns_in_schema_order_and_the_passthrough_columns_ignoring_case():
    plan = ReadPlan(model_columns=None, passthrough=["id", "Region"])
    batch = pa.table({"f2": [0.5], "ID": ["7"], "f0": [1.5], "region": ["eu"], "f1": [2.5]})
    conformed = ConformStage(plan, ["f0", "f1", "f2"])(batch)
    assert conformed.features.column_names == ["f0", "f1", "f2"]
    assert conformed.passthrough == ["ID", "region"]
    assert conformed.batch is batch
    assert _same_memory(conformed.features.column("f0"), batch.column("f0"))  # selected, not copied
    unknown = ConformStage(plan, None)(batch)  # no schema: every column that is not a passthrough one, as read
    assert unknown.features.column_names == ["f2", "f0", "f1"]


def test_conform_stage_plans_the_readers_checks_from_the_job(tmp_path: Path):
    shard = Shard(tmp_path)
    conform = ConformStage.for_job(shard.job, shard.schema, frozenset({INFINITE}))
    assert [c.name for c in conform.plan.model_columns or []] == FEATURES
    assert conform.model_names == FEATURES
    assert conform.plan.passthrough == ["id"] and conform.plan.coerce
    assert (conform.plan.reject_missing, conform.plan.reject_infinite) == (False, True)
    assert ConformStage.for_job(shard.job, None).model_names is None


def test_predict_stage_returns_the_models_own_predictions(tmp_path: Path):
    shard = Shard(tmp_path)
    predict = PredictStage(shard.predictor(), _never_refused)
    features = pa.Table.from_pandas(shard.frame[FEATURES], preserve_index=False)
    outputs = predict(features)
    assert outputs.column_names == ["prediction"]
    np.testing.assert_array_equal(outputs.column("prediction").to_numpy(), shard.expected())


def test_predict_stage_hands_a_refusal_of_missing_values_to_its_caller_and_passes_other_failures(tmp_path: Path):
    shard = Shard(tmp_path, LinearRegression())  # refuses missing values (NaN)
    seen: list[tuple[str, set[str]]] = []

    def refused(err: Exception, kinds: set[str]) -> BaseException:
        seen.append((type(err).__name__, kinds))
        return InputError("row 3 has a missing value")

    predict = PredictStage(shard.predictor(), refused)
    holes = shard.frame[FEATURES].head(10).copy()
    holes.iloc[3, 1] = math.nan
    with pytest.raises(InputError, match="row 3 has a missing value") as caught:
        predict(pa.Table.from_pandas(holes, preserve_index=False))
    assert seen == [("ValueError", {MISSING})]
    assert isinstance(caught.value.__cause__, ValueError)  # the model's own failure stays attached
    with pytest.raises(ValueError):  # two columns short: not about values, the model's error as it is
        predict(pa.Table.from_pandas(shard.frame[FEATURES[:3]].head(10), preserve_index=False))
    assert len(seen) == 1


def test_assemble_stage_puts_the_passthrough_columns_beside_the_outputs_and_describes_them():
    batch = pa.table({"id": ["a", "b"], "f0": [1.0, 2.0]})
    conformed = Conformed(batch, batch.select(["f0"]), ["id"])
    assemble = AssembleStage()
    result = assemble(conformed, pa.table({"prediction": [0.5, 0.25]}))
    assert result.to_pydict() == {"id": ["a", "b"], "prediction": [0.5, 0.25]}
    assert _same_memory(result.column("id"), batch.column("id"))  # as read, not copied
    report = ShardReport(shard=0)
    assemble.describe(report)
    assert report.input_schema == [{"name": "f0", "type": "Float64"}]
    assert report.output_columns == [{"name": "id", "type": "String"}, {"name": "prediction", "type": "Float64"}]
    with pytest.raises(ConfigurationError, match=r"passthrough column\(s\) \['ID'\] have the same name as a model"):
        AssembleStage()(conformed, pa.table({"ID": [1, 2]}))


def test_write_stage_stages_the_part_and_the_report_or_nothing(tmp_path: Path):
    shard = Shard(tmp_path)
    write = WriteStage(open_sink(shard.job, None).open_writer(0))
    write.write(pa.table({"id": ["1", "2"], "prediction": [0.5, 1.5]}))
    write.write(pa.table({"id": ["3"], "prediction": [2.5]}))
    report = ShardReport(shard=0)
    write.close(report)
    write.finish(report)
    write.write_report(report.to_dict())
    assert report.rows_out == 3 and len(report.parts) == 1
    staged = pa_csv.read_csv(shard.staging / report.parts[0])
    assert staged.to_pydict() == {"id": [1, 2, 3], "prediction": [0.5, 1.5, 2.5]}
    assert json.loads((shard.staging / "_shard-00000.json").read_text())["rows_out"] == 3

    aborted = WriteStage(open_sink(shard.job, None).open_writer(1))
    aborted.write(pa.table({"id": ["4"], "prediction": [3.5]}))
    aborted.abort()
    assert not (shard.staging / "_shard-00001.json").exists()  # no report: the shard is not complete


def test_shard_progress_keeps_the_report_and_writes_it_before_the_last_line(monkeypatch: pytest.MonkeyPatch):
    from airflow_batch_scoring.runtime import progress as progress_module

    clock = iter([100.0, 104.0, 110.0])
    monkeypatch.setattr(progress_module.time, "monotonic", lambda: next(clock))
    lines: list[str] = []
    pieces = [Piece("a.csv", 0, 600), Piece("b.csv", 0, 400)]
    started = time.perf_counter() - 8.0  # the shard began 8 s ago (the model load counts)
    progress = ShardProgress(ShardReport(shard=0), lines.append, "replica 1/2", pieces, started=started, interval=5.0)
    assert (progress.total_rows, progress.total_bytes) == (None, 1000)
    progress.start()  # 100.0
    progress.read(0.25)
    progress.read_mark.record(400, 500)  # 400 rows from the first 500 bytes
    progress.scored(200, 0.5)
    progress.update()  # 104.0: within the interval, no line
    progress.written(0.125)
    progress.scored(200, 0.5)
    progress.update()  # 110.0
    assert lines == ["replica 1/2: 400 rows scored, 40 rows/s, 50% done, ETA 10s"]
    report = progress.report
    assert (report.rows_in, report.read_s, report.predict_s, report.write_s) == (400, 0.25, 1.0, 0.125)
    clock = iter([111.0])
    report = progress.finish(lambda document: lines.append(f"report {document['rows_in']} {document['duration_s']}"))
    assert 8.0 <= report.duration_s < 60
    assert lines[1:] == [
        f"report 400 {report.duration_s}", "replica 1/2: 400 rows scored, 36 rows/s, finished in 11.0s"
    ]

    parquet = [Piece("p", row_groups=[0], rows=5), Piece("q", row_groups=[0, 1], rows=7)]
    parquet_progress = ShardProgress(ShardReport(shard=1), lines.append, "r", parquet, started=0.0, interval=0)
    assert (parquet_progress.total_rows, parquet_progress.total_bytes) == (12, 0)
    compressed = ShardProgress(ShardReport(shard=2), lines.append, "r", [Piece("a.csv.gz")], started=0.0, interval=0)
    assert (compressed.total_rows, compressed.total_bytes) == (None, 0)


def _pipeline(shard: Shard, *, loading: bool = False) -> ShardPipeline:
    conform = shard.conform()
    progress = ShardProgress(ShardReport(shard=0), lambda line: None, "replica 1/1", shard.job.shards[0],
                             started=0.0, interval=0)
    read = shard.read(conform)
    read.mark = progress.read_mark
    writer = open_sink(shard.job, None).open_writer(0)
    return ShardPipeline(read, conform, WriteStage(writer), progress, name="0", loading=loading)


@pytest.mark.parametrize("loading", [False, True])
def test_the_pipeline_scores_the_shard_as_the_model_does(tmp_path: Path, loading: bool):
    shard = Shard(tmp_path)
    pipeline = _pipeline(shard, loading=loading)
    report = pipeline.run(lambda: PredictStage(shard.predictor(), _never_refused))
    assert report.rows_in == report.rows_out == ROWS
    assert report.input_schema == [{"name": name, "type": "Float64"} for name in FEATURES]
    output = pa_csv.read_csv(shard.staging / report.parts[0]).to_pandas()
    assert output.columns.tolist() == ["id", "prediction"]
    assert output["id"].tolist() == shard.frame["id"].tolist()
    np.testing.assert_array_equal(output["prediction"].to_numpy(), shard.expected())
    written = json.loads((shard.staging / "_shard-00000.json").read_text())
    assert written == report.to_dict() and written["read_s"] > 0 and written["write_s"] > 0
    assert not [t for t in threading.enumerate() if t.name in ("reader-0", "writer-0")]


def test_a_failing_stage_stops_the_pipeline_and_completes_nothing(tmp_path: Path):
    shard = Shard(tmp_path)
    predictor = shard.predictor()
    calls: list[int] = []

    class FailsOnTheThirdBatch(PredictStage):
        def __call__(self, features: pa.Table) -> pa.Table:
            calls.append(features.num_rows)
            if len(calls) == 3:
                raise RuntimeError("the model broke")
            return super().__call__(features)

    with pytest.raises(RuntimeError, match="the model broke"):
        _pipeline(shard).run(lambda: FailsOnTheThirdBatch(predictor, _never_refused))
    assert len(calls) == 3
    assert not (shard.staging / "_shard-00000.json").exists()  # no report: the shard is not complete
    assert not [t for t in threading.enumerate() if t.name in ("reader-0", "writer-0") and t.is_alive()]


def test_run_shard_builds_the_pipeline_from_the_job_alone(tmp_path: Path):
    from airflow_batch_scoring.runtime.engine import run_shard

    shard = Shard(tmp_path)
    lines: list[str] = []
    report = run_shard(shard.job, 0, log=lines.append, progress_interval=0)
    assert report.rows_in == report.rows_out == ROWS and report.load_s > 0
    output = pa_csv.read_csv(shard.staging / report.parts[0]).to_pandas()
    np.testing.assert_array_equal(output["prediction"].to_numpy(), shard.expected())
    assert lines[-1].startswith("replica 1/1: 1,050 rows scored") and "finished in" in lines[-1]


@pytest.mark.parametrize("freeze", [False, True])
def test_a_replica_process_freezes_its_heap_once_the_model_is_loaded(tmp_path: Path, freeze: bool):
    """The replica CLI passes freeze_after_load: what is alive once the model loaded leaves the collector's
    generations (pyarrow walks them on every read on Python 3.10); in-process callers keep their heap as it is."""
    import gc

    from airflow_batch_scoring.runtime.engine import run_shard

    shard = Shard(tmp_path)
    gc.unfreeze()
    try:
        report = run_shard(shard.job, 0, log=lambda line: None, freeze_after_load=freeze)
        assert (gc.get_freeze_count() > 0) is freeze
    finally:
        gc.unfreeze()
    output = pa_csv.read_csv(shard.staging / report.parts[0]).to_pandas()
    np.testing.assert_array_equal(output["prediction"].to_numpy(), shard.expected())
