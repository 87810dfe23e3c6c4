"""The OpenLineage facets of a finished scoring task, from a real run's published manifest (replica processes)."""

from __future__ import annotations

from pathlib import Path

from airflow_batch_scoring.lineage import ScoringLineage
from tests.support.helpers import Models, make_frame, write_frame


def test_operator_facets_on_complete_from_a_real_run(models: Models, tmp_path: Path):
    """The facets the OpenLineage listener gets: datasets, schema (from the published manifest) and row count."""
    from airflow.providers.openlineage.extractors.base import DefaultExtractor

    from airflow_batch_scoring.cli import main
    from airflow_batch_scoring.operators import BatchScoringOperator

    frame = make_frame(321, seed=41)
    write_frame(frame, tmp_path / "in" / "data.csv", "csv")
    sink = (tmp_path / "out").as_uri() + "/"
    assert main(["score", "--model", str(models.classifier_path), "--source", (tmp_path / "in").as_uri() + "/",
                 "--sink", sink, "--columns", "id,f0,f1,f2,f3,f4", "--passthrough", "id", "--sink-format",
                 "parquet"]) == 0
    summary = {"output_uri": sink, "manifest_uri": sink + "_manifest.json", "rows_out": 321, "parts": 1,
               "model_uri": "models:/churn/3", "model_version": "3", "model_digest": "sha256:" + "ab" * 32}
    operator = BatchScoringOperator(task_id="score", model=str(models.classifier_path),
                                    source={"uri": (tmp_path / "in").as_uri() + "/"}, sink={"uri": sink})
    operator._lineage = ScoringLineage.of(operator.source, operator.sink, summary,
                                          registry_uri="https://scorer:pw@mlflow.example.com/")
    lineage = DefaultExtractor(operator).extract_on_complete(None)
    (source, model), (output,) = lineage.inputs, lineage.outputs
    assert (source.namespace, source.name) == ("file", str(tmp_path / "in"))
    # The model is an input (as SageMaker reports its model data): the registry model, version and digest as facets.
    assert (model.namespace, model.name) == ("https://mlflow.example.com", "models:/churn")
    assert model.facets["version"].datasetVersion == "3"
    assert model.facets["batchScoringModelArtifact"].digest == summary["model_digest"]
    assert (output.namespace, output.name) == ("file", str(tmp_path / "out"))
    assert [(f.name, f.type) for f in source.facets["schema"].fields] == [
        (name, "Float64") for name in ("f0", "f1", "f2", "f3", "f4")
    ]
    assert [f.name for f in output.facets["schema"].fields] == ["id", "prediction"]
    assert output.outputFacets["outputStatistics"].rowCount == 321
    assert output.outputFacets["outputStatistics"].fileCount == 1
    # A task that did not finish reports no datasets.
    unfinished = BatchScoringOperator(task_id="other", model="m", source="file:///a", sink="file:///b")
    assert not unfinished.get_openlineage_facets_on_complete(None).inputs
