"""A Delta table through BatchScoringOperator in ``dag.test()``: a Delta source pinned to a version into a Delta sink
partitioned by day, with real replicas; the summary in XCom names the committed version."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest

from tests.support.dag_runs import xcom_of
from tests.support.helpers import Models, make_frame
from tests.support.scoring import check_predictions

deltalake = pytest.importorskip("deltalake")


def test_delta_to_delta_in_dag_test(test_dag, models: Models, tmp_path):
    frame = make_frame(2400, seed=76)
    frame["day"] = ["2026-01-01" if i % 3 else "2026-01-02" for i in range(len(frame))]
    deltalake.write_deltalake(str(tmp_path / "features"), pa.Table.from_pandas(frame, preserve_index=False))
    target = tmp_path / "scores"
    dag_run = test_dag.test(run_conf={
        "model": str(models.regressor_path),
        "source": {"format": "delta", "uri": (tmp_path / "features").as_uri(), "version": 0,
                   "filter": {"day": "2026-01-01"}},
        "sink": {"format": "delta", "uri": target.as_uri(), "mode": "overwrite_partition",
                 "partition": {"day": "2026-01-01"}, "partition_by": ["day"]},
        "replicas": 2,
        "passthrough": ["id", "day"],
    })
    assert dag_run.state == "success"
    summary = xcom_of(dag_run)
    day = frame[frame["day"] == "2026-01-01"]
    assert summary["rows_in"] == summary["rows_out"] == len(day)
    assert summary["delta"]["version"] == 0 and summary["delta"]["mode"] == "overwrite_partition"
    table = deltalake.DeltaTable(str(target))
    assert table.version() == 0 and table.metadata().partition_columns == ["day"]
    check_predictions(day, table.to_pyarrow_table(), models.regressor)
    manifest = json.loads((target / "_batch_scoring").glob("*/_manifest.json").__next__().read_text())
    assert manifest["input"]["version"] == 0 and manifest["output"]["version"] == 0
