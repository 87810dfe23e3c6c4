"""Stages: one parameter picks the registry alias and the runtime settings."""

from __future__ import annotations

import pytest

from airflow_batch_scoring.errors import ConfigurationError
from airflow_batch_scoring.stages import get_stage, model_for_stage, parse_stages

CONFIG = """{"prod": {"alias": "champion", "runtime": "kubernetes", "replicas": 8,
                      "kubernetes": {"namespace": "scoring-prod", "node_selector": {"pool": "scoring"}}},
             "DEV": {"alias": "dev", "runtime": "local"}}"""


def test_default_stages_use_their_lower_cased_name_as_alias():
    stages = parse_stages(None)
    assert sorted(stages) == ["DEV", "PROD", "SIT", "UAT"]
    assert model_for_stage("models:/churn", stages["UAT"]) == "models:/churn@uat"


def test_configured_stage_brings_alias_and_runtime_settings():
    prod = get_stage("Prod", CONFIG)
    assert (prod.alias, prod.runtime, prod.replicas) == ("champion", "kubernetes", 8)
    assert prod.kubernetes == {"namespace": "scoring-prod", "node_selector": {"pool": "scoring"}}
    assert model_for_stage("models:/churn/", prod) == "models:/churn@champion"
    assert get_stage("dev", CONFIG).runtime == "local"


@pytest.mark.parametrize(
    ("call", "words"),
    [
        (lambda: get_stage("QA", CONFIG), "Unknown stage 'QA': the configured stages are ['DEV', 'PROD']"),
        (lambda: parse_stages("{not json"), "[batch_scoring] stages is not valid JSON"),
        (lambda: parse_stages('{"PROD": {"alias": "x", "namespace": "y"}}'), "unknown key(s) ['namespace']"),
        (lambda: parse_stages('{"PROD": {"alias": "a b"}}'), "alias 'a b' must be letters"),
        (lambda: parse_stages('{"PROD": {"replicas": 0}}'), "replicas must be a positive integer"),
        (lambda: model_for_stage("models:/churn@champion", get_stage("PROD", None)), "without a version or alias"),
        (lambda: model_for_stage("models:/churn/3", get_stage("PROD", None)), "without a version or alias"),
        (lambda: model_for_stage("/models/churn.joblib", get_stage("PROD", None)), "must be a registry name"),
    ],
)
def test_stage_errors_say_what_to_fix(call, words):
    with pytest.raises(ConfigurationError) as err:
        call()
    assert words in str(err.value)


def test_stage_kubernetes_settings_merge_under_the_task_own(monkeypatch):
    from airflow_batch_scoring.operators import BatchScoringOperator

    monkeypatch.setenv("AIRFLOW__BATCH_SCORING__STAGES", CONFIG)
    operator = BatchScoringOperator(
        task_id="score", model="models:/churn", stage="prod", source="s3://in/", sink="s3://out/",
        kubernetes={"image": "registry.example.com/scoring:1", "namespace": "team-ns"},
    )
    assert operator._apply_stage() == "models:/churn@champion"
    assert (operator.runtime, operator.replicas) == ("kubernetes", 8)
    assert operator.kubernetes == {"namespace": "team-ns", "node_selector": {"pool": "scoring"},
                                   "image": "registry.example.com/scoring:1"}


def test_process_artifact_operator_processes_the_stage_alias(monkeypatch):
    from airflow_batch_scoring.operators import ProcessArtifactOperator

    monkeypatch.setenv("AIRFLOW__BATCH_SCORING__STAGES", CONFIG)
    assert ProcessArtifactOperator(task_id="p", model="models:/churn", stage="PROD")._model_reference() == (
        "models:/churn@champion")
    monkeypatch.delenv("AIRFLOW__BATCH_SCORING__STAGES")
    assert ProcessArtifactOperator(task_id="p", model="models:/churn", stage="uat")._model_reference() == (
        "models:/churn@uat")
