"""Every example DAG of dags/ runs with ``dag.test()`` against the embedded defaults, and its output is right.

The DAGs run in this process against the test metadata DB, with their demo folder (and so their MLflow store) in a
temporary folder; predictions are compared with the registered demo model's own ``predict``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from types import ModuleType

import pandas as pd
import pendulum
import pytest

from tests.support.examples import DAGBAG_IMPORT, DAGS, check_scores, dag_bag, demo_estimator, read_output

EXAMPLES = {
    "example_batch_scoring",
    "example_batch_scoring_weekly",
    "example_batch_scoring_hourly",
    "example_batch_scoring_incremental",
    "example_batch_scoring_ui",
    "example_batch_scoring_land",
    "example_batch_scoring_on_landing",
    "example_batch_scoring_downstream",
    "example_batch_scoring_artifact",
    "example_batch_scoring_champion_challenger",
}


@dataclass
class Examples:
    dags: dict
    demo_dir: Path
    demo: ModuleType

    @property
    def tracking_uri(self) -> str:
        return self.demo.TRACKING_URI

    def estimator(self):
        if not hasattr(self, "_estimator"):
            self._estimator = demo_estimator(self.tracking_uri)
        return self._estimator


@pytest.fixture(scope="module")
def examples(airflow_db, tmp_path_factory: pytest.TempPathFactory):
    """The DagBag of dags/, parsed with the demo folder in a temporary folder and no MLFLOW_TRACKING_URI."""
    demo_dir = tmp_path_factory.mktemp("demo")
    patch = pytest.MonkeyPatch()
    patch.setenv("BATCH_SCORING_DEMO_DIR", str(demo_dir))
    patch.delenv("MLFLOW_TRACKING_URI", raising=False)
    patch.syspath_prepend(str(DAGS))
    # dag.test() serializes a DAG from its bundle: add dags/ as a second bundle beside the tests' DAGS_FOLDER.
    local = "airflow.dag_processing.bundles.local.LocalDagBundle"
    patch.setenv("AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST", json.dumps([
        {"name": "dags-folder", "classpath": local, "kwargs": {}},
        {"name": "example-dags", "classpath": local, "kwargs": {"path": str(DAGS)}},
    ]))
    sys.modules.pop("scoring_demo", None)
    try:
        bag = dag_bag(DAGS)
        assert bag.import_errors == {}
        yield Examples(dags=bag.dags, demo_dir=demo_dir, demo=sys.modules["scoring_demo"])
    finally:
        patch.undo()
        sys.modules.pop("scoring_demo", None)


def xcom(dag_run, task_id: str, key: str = "return_value"):
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = session.query(XComModel).filter_by(dag_id=dag_run.dag_id, run_id=dag_run.run_id, task_id=task_id,
                                                 key=key).one_or_none()
        return row.value if row else None


def test_examples_parse_without_heavy_imports():
    """Parsing dags/ imports neither pandas, scikit-learn nor MLflow (tasks import them when they run)."""
    code = (
        f"import sys\n{DAGBAG_IMPORT}"
        f"bag = DagBag(dag_folder={str(DAGS)!r}); assert not bag.import_errors, bag.import_errors; "
        "print(sorted(bag.dags)); print([m for m in ('pandas', 'sklearn', 'mlflow') if m in sys.modules])"
    )
    env = {**os.environ, "PYTHONPATH": str(DAGS)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    dag_ids, heavy = out.stdout.strip().splitlines()[-2:]
    assert set(json.loads(dag_ids.replace("'", '"'))) == EXAMPLES
    assert heavy == "[]"


def test_every_example_has_tags_doc_owner_and_a_form(examples: Examples):
    assert EXAMPLES <= set(examples.dags)
    for dag_id in EXAMPLES:
        dag = examples.dags[dag_id]
        assert dag.tags and "example" in dag.tags, dag_id
        assert dag.doc_md and dag.description, dag_id
        assert {task.owner for task in dag.tasks} == {"ml-platform"}, dag_id
    ui = examples.dags["example_batch_scoring_ui"]
    for name, param in ui.params.items():
        schema = ui.params.get_param(name).schema
        assert schema.get("title") and param is not None and ui.params.get_param(name).description, name
        assert schema.get("section"), name
    hourly = examples.dags["example_batch_scoring_hourly"]
    assert hourly.max_active_runs == 1 and hourly.catchup
    assert all(t.depends_on_past and t.wait_for_downstream for t in hourly.tasks)
    assert type(hourly.timetable).__name__ == "DeltaDataIntervalTimetable"
    weekly = examples.dags["example_batch_scoring_weekly"]
    # airflow.sdk's timetable (Airflow 3.2 on) has .expression, Airflow 3.1's (airflow.timetables) ._expression
    expression = getattr(weekly.timetable, "expression", None) or weekly.timetable._expression
    assert expression == "0 0 * * MON"


def test_weekly_dag_scores_that_week_into_that_week(examples: Examples):
    dag = examples.dags["example_batch_scoring_weekly"]
    run = dag.test(logical_date=pendulum.datetime(2026, 11, 16, 0, 0, tz="UTC"))
    assert run.state == "success"
    monday = run.data_interval_start
    assert monday.weekday() == 0 and run.data_interval_end - monday == timedelta(days=7)
    assert monday.date().isoformat() == "2026-11-09"  # the last complete week before the logical date
    week = monday.date().isoformat()
    days = [(monday + timedelta(days=d)).date().isoformat() for d in range(7)]
    inputs = sorted((examples.demo_dir / "weekly" / "input" / f"week={week}").iterdir())
    assert [p.name for p in inputs] == [f"day={day}.csv" for day in days]
    import pandas as pd

    frame = pd.concat(
        [examples.demo.features(f"weekly-{day}", 2_000, int(day.replace("-", "")) * 100_000) for day in days],
        ignore_index=True,
    )
    output = read_output(examples.demo_dir / "weekly" / "scores" / f"week={week}", "parquet")
    assert len(output) == 14_000
    check_scores(frame, output, examples.estimator())


def test_champion_challenger_dag_promotes_a_winner_and_keeps_the_champion_otherwise(examples: Examples):
    """A challenger trained on the week's labels beats the old champion (which learnt an older relation): the alias
    moves to it. The next week's challenger, a weak one (one boosting round), loses to it: the alias stays."""
    import mlflow

    dag = examples.dags["example_batch_scoring_champion_challenger"]
    model = "demo-churn-weekly"  # (the DAG's MODEL)
    run = dag.test(logical_date=pendulum.datetime(2026, 11, 2, 3, 0, tz="UTC"))
    assert run.state == "success"
    client = mlflow.MlflowClient(tracking_uri=examples.tracking_uri)  # (after the demo made its store)
    trained = xcom(run, "train_challenger")
    old, new = xcom(run, "metrics_champion")["metrics"], xcom(run, "metrics_challenger")["metrics"]
    assert new["roc_auc"] - old["roc_auc"] >= 0.01
    assert str(client.get_model_version_by_alias(model, "champion").version) == trained["version"]
    assert xcom(run, "promote") == trained["model_uri"]
    record = json.loads((examples.demo_dir / "metrics" / "2026-11-02" / "metrics_challenger" / "metrics.json")
                        .read_text())
    assert record["baseline"]["training"]["digest_matches"] is True  # the training task's tags, read back
    if os.environ.get("BATCH_SCORING_TEST_LANE") == "oldest":
        return  # that lane checks the DAG runs on the oldest Airflow; the losing branch is the same code (main lane)

    run = dag.test(logical_date=pendulum.datetime(2026, 11, 9, 3, 0, tz="UTC"), run_conf={"max_iter": 1})
    assert run.state == "success"
    weak = xcom(run, "train_challenger")
    assert weak["version"] != trained["version"]
    assert str(client.get_model_version_by_alias(model, "challenger").version) == weak["version"]
    assert str(client.get_model_version_by_alias(model, "champion").version) == trained["version"]  # unchanged
    assert run.get_task_instance("promote").state == "skipped"


def test_artifact_dag_processes_once_and_scores_that_artifact(examples: Examples):
    """ProcessArtifactOperator pins the alias to a version and a digest; the scoring task scores exactly that."""
    dag = examples.dags["example_batch_scoring_artifact"]
    run = dag.test(logical_date=pendulum.datetime(2026, 11, 20, 6, 0, tz="UTC"))
    assert run.state == "success"
    processed = xcom(run, "process_model")
    assert processed["source_model_version"] == "1" and processed["digest"].startswith("sha256:")
    assert processed["path"].startswith(str(examples.demo_dir / "artifact" / "models" / "20261120"))
    summary = xcom(run, "score")
    assert summary["model_digest"] == processed["digest"] and summary["rows_out"] == 10_000
    output = read_output(examples.demo_dir / "artifact" / "scores" / "20261120", "parquet")
    check_scores(examples.demo.features("artifact", 10_000), output, examples.estimator(), probabilities=True)


def test_hourly_dag_reads_and_writes_its_own_hour(examples: Examples):
    dag = examples.dags["example_batch_scoring_hourly"]
    # The DAG's start date moves with the clock (a day or two of catch-up): derive the run's hour from it, so that
    # the test holds on any day; an hour before start_date would make an empty, "successful" run.
    logical_date = dag.start_date.add(hours=5)
    run = dag.test(logical_date=logical_date)
    assert run.logical_date == logical_date
    assert run.state == "success"
    assert run.data_interval_end - run.data_interval_start == timedelta(hours=1)
    hour = run.data_interval_start.strftime("%Y%m%dT%H%M%S")
    assert (examples.demo_dir / "hourly" / "input" / f"{hour}.jsonl").exists()
    output = read_output(examples.demo_dir / "hourly" / "scores" / hour, "csv")
    assert len(output) == 2_000
    check_scores(examples.demo.features(f"hourly-{hour}", 2_000), output, examples.estimator())
    summary = xcom(run, "score_hour")
    assert summary["output_uri"] == f"file://{examples.demo_dir}/hourly/scores/{hour}/"


def test_incremental_dag_scores_only_the_new_events(examples: Examples):
    """Two runs (two hours): the first scores the events of its hour, the second only those appended since; the
    scores table holds each event once, with the model's own prediction; a third run finds nothing new."""
    pytest.importorskip("deltalake")
    from deltalake import DeltaTable

    dag = examples.dags["example_batch_scoring_incremental"]
    hours = [dag.start_date.add(hours=n) for n in (3, 4)]
    frames = []
    for logical_date in hours:
        run = dag.test(logical_date=logical_date)
        assert run.state == "success"
        summary = xcom(run, "score_new_events")
        assert summary["rows_in"] == 500 and summary["new_files"] == 1, summary
        key = run.data_interval_start.strftime("%Y%m%dT%H%M%S")
        first_id = int(run.data_interval_start.timestamp()) // 3600 * 500
        frames.append(examples.demo.features(f"events-{key}", 500, first_id=first_id))
    scores = DeltaTable(str(examples.demo_dir / "incremental" / "scores"))
    assert scores.metadata().partition_columns == ["event_day"] and scores.version() == 1
    check_scores(pd.concat(frames), scores.to_pandas(), examples.estimator())
    again = dag.test(logical_date=hours[1])  # the same hour again: no new event, nothing committed
    assert again.state == "success" and xcom(again, "score_new_events")["rows_in"] == 0
    assert DeltaTable(str(examples.demo_dir / "incremental" / "scores")).version() == 1


def test_ui_dag_scores_with_the_form_values(examples: Examples, tmp_path: Path):
    dag = examples.dags["example_batch_scoring_ui"]
    sink = examples.demo_dir / "ui" / "form-out"  # the DAG allows sinks under the demo's ui/ folder only
    run = dag.test(run_conf={"sink_uri": sink.as_uri() + "/", "sink_format": "jsonl", "replicas": 3,
                             "predict_probabilities": True, "cpu": "500m", "memory": "1Gi", "batch_size": 1000})
    assert run.state == "success"
    output = read_output(sink, "jsonl")
    assert len(output) == 10_000
    check_scores(examples.demo.features("ui", 10_000), output, examples.estimator(), probabilities=True)
    assert xcom(run, "prepare") == {"resources": {"cpu": "500m", "memory": "1Gi"}, "replicas": 3}
    summary = xcom(run, "score")
    assert summary["replicas"] == 3 and summary["rows_out"] == 10_000
    assert summary["model_uri"] == "models:/demo-churn/1"


def test_ui_dag_refuses_a_sink_outside_its_allowed_prefix(examples: Examples, tmp_path: Path):
    """Whoever triggers the run chooses the sink: the task allows the demo's ui/ folder only, checked at run time."""
    dag = examples.dags["example_batch_scoring_ui"]
    run = dag.test(run_conf={"sink_uri": (tmp_path / "elsewhere").as_uri() + "/", "sink_format": "csv"})
    assert run.state == "failed"
    assert not (tmp_path / "elsewhere").exists()


@pytest.mark.parametrize(
    "conf",
    [{"replicas": 0}, {"replicas": 65}, {"source_format": "xls"}, {"source_uri": "ftp://host/in.csv"},
     {"memory": "lots"}, {"cpu": "-1"}, {"batch_size": "many"}, {"model": ""}, {"schema_check": "maybe"},
     {"sink_uri": "file:///data/demo/ui/../../etc/"}],
    ids=lambda conf: next(iter(conf)),
)
def test_ui_dag_refuses_invalid_conf_before_a_run_exists(examples: Examples, conf: dict):
    from airflow.models.dagrun import DagRun
    from airflow.providers.common.compat.sdk import ParamValidationError
    from airflow.utils.session import create_session

    dag = examples.dags["example_batch_scoring_ui"]
    with create_session() as session:
        before = session.query(DagRun).filter_by(dag_id=dag.dag_id).count()
    with pytest.raises(ParamValidationError):
        dag.test(run_conf=conf)
    with create_session() as session:
        assert session.query(DagRun).filter_by(dag_id=dag.dag_id).count() == before


def test_asset_dags_land_score_and_hand_over(examples: Examples):
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session

    land = examples.dags["example_batch_scoring_land"].test()
    assert land.state == "success"
    scored = examples.dags["example_batch_scoring_on_landing"].test()
    assert scored.state == "success"
    output = read_output(examples.demo_dir / "assets" / "scores", "parquet")
    assert len(output) == 5_000
    check_scores(examples.demo.features(f"landing-{land.run_id}", 5_000), output, examples.estimator(),
                 probabilities=True)
    scores_uri = f"file://{examples.demo_dir}/assets/scores"
    with create_session() as session:
        event = (session.query(AssetEvent).join(AssetModel, AssetEvent.asset_id == AssetModel.id)
                 .filter(AssetModel.uri == scores_uri, AssetEvent.source_run_id == scored.run_id).one())
        assert event.extra["rows_out"] == 5_000 and event.extra["model_uri"] == "models:/demo-churn/1"
        assert event.extra["output_uri"] == scores_uri + "/"
    downstream = examples.dags["example_batch_scoring_downstream"].test()
    assert downstream.state == "success"
    assert xcom(downstream, "use_scores")["rows_out"] == 5_000
