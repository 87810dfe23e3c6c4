"""The trigger form's Params and the operator arguments that read them."""

from __future__ import annotations

import pendulum
import pytest
from airflow.providers.common.compat.sdk import ParamValidationError
from airflow.sdk import DAG
from airflow.sdk.definitions.param import ParamsDict

from airflow_batch_scoring.coercion import to_bool as flag
from airflow_batch_scoring.operators import BatchScoringOperator
from airflow_batch_scoring.params import scoring_params, scoring_templates
from airflow_batch_scoring.specs import parse_data_spec

VALID = {"model": "models:/churn@champion", "source_uri": "s3://raw/day=1/", "source_conn_id": "minio",
         "source_format": "csv", "source_header": False, "sink_uri": "gs://scores/day=1/", "sink_conn_id": None,
         "sink_format": "parquet", "sink_header": True, "sink_compression": "none",
         "passthrough_columns": ["id", "region"], "predict_probabilities": True, "replicas": 8, "batch_size": 50_000,
         "cpu": "500m", "memory": "1536Mi", "schema_check": False}


def validated(conf: dict) -> dict:
    params = ParamsDict(scoring_params(model="models:/churn@champion"))
    params.update(conf)
    return params.validate()


def test_every_field_has_a_title_description_and_section():
    for name, param in scoring_params().items():
        assert param.schema["title"] and param.description and param.schema["section"], name


def test_a_valid_form_passes_as_it_is():
    assert validated(VALID) == VALID
    for uri in ("s3://scores/a..b/", "gs://scores/.hidden/day=1/"):  # dots inside a name are not a traversal
        assert validated({**VALID, "sink_uri": uri})["sink_uri"] == uri


@pytest.mark.parametrize(
    "change",
    [{"replicas": 0}, {"replicas": 65}, {"replicas": 2.5}, {"batch_size": 10}, {"source_format": "xlsx"},
     {"sink_format": "CSV"}, {"source_uri": "/data/in.csv"}, {"sink_uri": "ftp://h/x"}, {"cpu": "two"},
     {"cpu": "0.5m"}, {"memory": "2GB"}, {"model": ""}, {"passthrough_columns": "id"},
     {"passthrough_columns": [""]}, {"source_header": "yes"}, {"sink_compression": "zip"},
     {"sink_uri": "gs://scores/../private/"}, {"sink_uri": "file:///data/scores/.."},
     {"sink_uri": "file:///data/scores/%2E%2e/x"}, {"sink_uri": "s3://scores/a/./b"},
     {"sink_uri": "file:///data/scores/..%2fetc"},
     {"source_uri": "s3://AKIDEXAMPLE:secret@raw/day=1/"}, {"sink_uri": "file://user:secret@/data/scores/"},
     {"sink_uri": "abfs://user:secret@container/scores/"}],
    ids=lambda change: f"{next(iter(change))}={next(iter(change.values()))!r}",
)
def test_an_invalid_form_is_refused(change: dict):
    with pytest.raises(ParamValidationError):
        validated({**VALID, **change})


@pytest.mark.parametrize("native", [False, True])
def test_templates_render_to_what_the_operator_reads(native: bool):
    with DAG("form", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
             render_template_as_native_obj=native, params=scoring_params(model="m")):
        operator = BatchScoringOperator(task_id="score", **scoring_templates())
    context = {"params": VALID}
    render = operator.render_template
    source = parse_data_spec(render(operator.source, context), "source")
    sink = parse_data_spec(render(operator.sink, context), "sink")
    assert (source.uri, source.format, source.header, source.conn_id) == ("s3://raw/day=1/", "csv", False, "minio")
    assert (sink.uri, sink.format, sink.header, sink.conn_id) == ("gs://scores/day=1/", "parquet", True, None)
    assert sink.compression is None
    gzipped = parse_data_spec(render(operator.sink, {"params": {**VALID, "sink_compression": "gzip"}}), "sink")
    assert gzipped.compression == "gzip"
    assert render(operator.passthrough_columns, context) == "id,region"
    assert int(render(operator.replicas, context)) == 8 and int(render(operator.batch_size, context)) == 50_000
    assert flag(render(operator.predict_probabilities, context), "p") is True
    assert flag(render(operator.schema_check, context), "s") is False


def test_resources_go_to_the_kubernetes_pods_when_that_runtime_is_asked_for():
    from airflow_batch_scoring.kubernetes.settings import KubernetesSettings

    with DAG("form_k8s", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
             params=scoring_params(model="m")):
        operator = BatchScoringOperator(task_id="score", **scoring_templates(kubernetes={"image": "scoring:1"}))
    assert operator.runtime == "kubernetes"
    settings = KubernetesSettings.parse(operator.render_template(operator.kubernetes, {"params": VALID}))
    assert settings.image == "scoring:1"
    # the CPU request given alone is also its limit: a pod never runs unbounded by accident
    assert settings.resources == {"requests": {"cpu": "500m", "memory": "1536Mi"},
                                  "limits": {"memory": "1536Mi", "cpu": "500m"}}


def test_flag_refuses_what_is_not_a_boolean():
    from airflow_batch_scoring.errors import ConfigurationError

    assert flag("True", "x") is True and flag("false", "x") is False and flag(True, "x") is True
    with pytest.raises(ConfigurationError, match="schema_check must be true or false"):
        flag("maybe", "schema_check")
