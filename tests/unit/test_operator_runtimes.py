"""BatchScoringOperator and its runtimes with the runtime, the model processing and the hooks mocked (no DB, no
servers): what the operator hands to its runtime, and what the runtimes do with the launchers."""

from __future__ import annotations

import sys
from types import SimpleNamespace
from typing import Any
from unittest import mock

import pytest
from airflow.providers.common.compat.sdk import AirflowFailException, TaskDeferred

from airflow_batch_scoring.errors import ConfigurationError, ReplicaError
from airflow_batch_scoring.operators import BatchScoringOperator
from airflow_batch_scoring.operators import batch_scoring as module
from airflow_batch_scoring.operators.runtimes import LocalRuntime, ResolvedTask, runtime_class
from airflow_batch_scoring.runtime.secrets import Credentials

IMAGE = "registry.example.com/scoring:1"


def context(try_number: int = 1) -> dict[str, Any]:
    return {"ti": SimpleNamespace(try_number=try_number, dag_id="dag", task_id="score", run_id="run1", map_index=-1)}


@pytest.fixture
def mocked(monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    """The operator's collaborators mocked: model processing, planning, credentials, links, lineage, the runtime."""
    runtime = mock.MagicMock(name="runtime")
    runtime.run.return_value = {"rows_out": 3}
    runtime.resume.return_value = {"rows_out": 4}
    mocks = SimpleNamespace(
        runtime=runtime,
        runtime_for=mock.MagicMock(return_value=runtime),
        process_model=mock.MagicMock(return_value=SimpleNamespace(resolved_uri="m", path="/m", flavor="sklearn",
                                                                  digest="d")),
        prepare_job=mock.MagicMock(return_value=(SimpleNamespace(replicas=3), [])),
    )
    monkeypatch.setattr(module, "runtime_for", mocks.runtime_for)
    monkeypatch.setattr(module, "prepare_job", mocks.prepare_job)
    monkeypatch.setattr("airflow_batch_scoring.artifacts.process_model", mocks.process_model)
    monkeypatch.setattr(module, "fetch_processed_model", lambda reference, folder: reference)
    monkeypatch.setattr(module, "credentials_for", lambda spec: {})
    monkeypatch.setattr(module, "record_lineage", lambda *args: None)
    monkeypatch.setattr(module.OutputLocationLink, "persist", classmethod(lambda cls, *args: None))
    monkeypatch.setattr(module.ModelVersionLink, "persist", classmethod(lambda cls, *args: None))
    return mocks


def operator(**arguments: Any) -> BatchScoringOperator:
    return BatchScoringOperator(
        task_id="score", model="/models/m.joblib", source="s3://in/", sink="s3://out/", **arguments
    )


def test_execute_hands_one_resolved_task_to_the_runtime_and_changes_no_argument(mocked):
    task = operator(replicas=3, retries=2)
    assert task.execute(context(try_number=1)) == {"rows_out": 3}

    resolved = mocked.runtime_for.call_args.args[0]
    assert resolved == ResolvedTask(model="/models/m.joblib", runtime="local", replicas=3, keep_on_failure=True)
    model = mocked.process_model.return_value
    mocked.runtime.check_locations.assert_called_once()
    mocked.runtime.prepare.assert_called_once_with(model, probabilities=False, output_schema=None)
    assert mocked.prepare_job.call_args.kwargs["options"].replicas == 3
    job, files = mocked.prepare_job.return_value
    mocked.runtime.run.assert_called_once_with(job, files, {"source": {}, "sink": {}})
    mocked.runtime.close.assert_called_once_with()
    assert (task.runtime, task.replicas, task._runtime) == (None, 3, None)


def test_credentials_are_read_once_per_execution_into_one_snapshot_everything_uses(mocked, monkeypatch):
    read: list[Any] = []

    def credentials_for(spec: Any) -> dict[str, Any]:
        read.append(spec)
        return {"token": f"token-{len(read)}"}

    lineage = mock.MagicMock(name="record_lineage")
    monkeypatch.setattr(module, "credentials_for", credentials_for)
    monkeypatch.setattr(module, "record_lineage", lineage)
    operator().execute(context())
    assert len(read) == 2  # the source's and the sink's connection, each read once
    snapshot = mocked.runtime.run.call_args.args[2]
    assert isinstance(snapshot, Credentials)
    assert snapshot == {"source": {"token": "token-1"}, "sink": {"token": "token-2"}}
    assert mocked.prepare_job.call_args.kwargs["storage_options"] is snapshot
    assert lineage.call_args.args[5] is snapshot
    snapshot["sink"]["token"] = "changed"  # a component changing what it was given changes nothing for the others
    assert snapshot["sink"] == {"token": "token-2"}


def test_the_last_try_does_not_keep_its_shards(mocked):
    operator(retries=2).execute(context(try_number=3))
    assert mocked.runtime_for.call_args.args[0].keep_on_failure is False


def test_a_failure_before_the_launch_closes_the_runtime_and_fails_without_retries(mocked):
    mocked.prepare_job.side_effect = ConfigurationError("no such column 'x'")
    with pytest.raises(AirflowFailException, match="no such column"):
        operator(retries=2).execute(context())
    mocked.runtime.run.assert_not_called()
    mocked.runtime.close.assert_called_once_with()


def test_on_kill_kills_the_running_runtime(mocked):
    task = operator()
    mocked.runtime.run.side_effect = lambda *args: task.on_kill()
    task.execute(context())
    mocked.runtime.kill.assert_called_once_with()
    task.on_kill()  # after the run: nothing to kill
    mocked.runtime.kill.assert_called_once_with()


def test_execute_complete_resolves_the_same_task_and_resumes_the_runtime(mocked, monkeypatch):
    monkeypatch.setenv("AIRFLOW__BATCH_SCORING__STAGES", '{"PROD": {"alias": "champion", "runtime": "kubernetes", '
                       '"replicas": 8, "kubernetes": {"namespace": "ns"}}}')
    task = operator(stage="prod", kubernetes={"image": IMAGE}, retries=1)
    task.model = "models:/churn"
    event = {"status": "complete", "resume": {"reference": {"name": "j", "namespace": "ns"}}}
    assert task.execute_complete(context(), event) == {"rows_out": 4}
    resolved = mocked.runtime_for.call_args.args[0]
    assert (resolved.model, resolved.runtime, resolved.replicas, resolved.stage) == (
        "models:/churn@champion", "kubernetes", 8, "PROD"
    )
    assert resolved.kubernetes == {"namespace": "ns", "image": IMAGE}
    mocked.runtime.resume.assert_called_once_with(event, {"source": {}, "sink": {}})
    assert task._runtime is None


def test_the_runtime_is_looked_up_in_the_registry():
    from airflow_batch_scoring.kubernetes.runtime import KubernetesRuntime

    assert runtime_class("local") is LocalRuntime
    assert runtime_class("kubernetes") is KubernetesRuntime
    with pytest.raises(ConfigurationError, match=r"runtime must be one of \('local', 'kubernetes'\), got 'cloud'"):
        runtime_class("cloud")
    with pytest.raises(ConfigurationError, match="runtime must be one of"):
        operator(runtime="cloud")
    with pytest.raises(ConfigurationError, match=r"Unknown kubernetes setting\(s\) \['imag'\]"):
        operator(runtime="kubernetes", kubernetes={"imag": IMAGE})


def test_local_runtime_prestarts_with_the_task_replicas_and_discards_what_it_did_not_use(monkeypatch):
    launcher = mock.MagicMock(name="LocalLauncher")
    monkeypatch.setattr("airflow_batch_scoring.operators.runtimes.LocalLauncher", lambda log: launcher)
    runtime = LocalRuntime(ResolvedTask(model="m", runtime="local", replicas=4), context(), print)
    runtime.start()
    launcher.start_early.assert_called_once_with(4)
    model = SimpleNamespace(uri="m", path="/models/m.joblib")  # records no requirements: nothing to warn about
    runtime.prepare(model, probabilities=True, output_schema=None)
    assert launcher.python == sys.executable  # model_environment="worker"
    launcher.prestart.assert_called_once_with(model, 4, probabilities=True, output_schema=None)
    runtime.close()
    launcher.discard.assert_called_once_with()
    runtime.kill()
    launcher.kill.assert_called_once_with()
    with pytest.raises(ReplicaError, match="never defers"):
        runtime.resume({}, {})


def kubernetes_task(**arguments: Any) -> ResolvedTask:
    return ResolvedTask(model="m", runtime="kubernetes", replicas=2, kubernetes={"image": IMAGE},
                        keep_on_failure=True, **arguments)


def test_kubernetes_runtime_defers_by_raising_task_deferred_with_what_the_resumption_needs(monkeypatch):
    from airflow_batch_scoring.driver.run import JobStart
    from airflow_batch_scoring.kubernetes import runtime as kubernetes_runtime

    monkeypatch.setattr(kubernetes_runtime, "begin_job",
                        lambda *args, **kwargs: JobStart(todo=[0, 1], resumed=[], started="2026-01-01T00:00:00"))
    reference = {"name": "job-x", "namespace": "ns", "shards": [0, 1]}
    start = mock.MagicMock(return_value=reference)
    monkeypatch.setattr(kubernetes_runtime.KubernetesLauncher, "start", start)
    runtime = kubernetes_runtime.KubernetesRuntime(kubernetes_task(deferrable=True, poll_interval=3), context(), print)
    job = SimpleNamespace(staging_uri="s3://out/_staging", attempt="try1", replicas=2, to_json=lambda: "{}")
    monkeypatch.setattr(kubernetes_runtime, "replace", lambda job, **changes: job)
    with pytest.raises(TaskDeferred) as deferred:
        runtime.run(job, [], {"sink": {}})  # type: ignore[arg-type]
    assert deferred.value.method_name == "execute_complete"
    trigger = deferred.value.trigger
    assert (trigger.name, trigger.namespace, trigger.poll_interval) == ("job-x", "ns", 3.0)
    assert trigger.resume["reference"] == reference and trigger.resume["attempt"] == "try1"
    assert runtime.launcher is not None and runtime.launcher.finish_siblings is True


def test_kubernetes_runtime_resumes_on_a_reattached_launcher(monkeypatch):
    from airflow_batch_scoring.kubernetes import runtime as kubernetes_runtime

    seen: dict[str, Any] = {}

    def read_spec(launcher, storage_options):
        seen.update(name=launcher.name, namespace=launcher.namespace, shards=launcher.shards,
                    storage_options=storage_options)
        return SimpleNamespace(attempt="try2"), [{"uri": "s3://in/a.csv", "size": 1}]

    def finish_job(job, files, start, **kwargs):
        seen.update(attempt=job.attempt, todo=start.todo, runtime=kwargs["runtime"])
        return {"rows_out": 1}

    monkeypatch.setattr(kubernetes_runtime.KubernetesLauncher, "read_spec", read_spec)
    monkeypatch.setattr(kubernetes_runtime, "finish_job", finish_job)
    monkeypatch.setattr(kubernetes_runtime, "replace", lambda job, **changes: SimpleNamespace(**changes))
    runtime = kubernetes_runtime.KubernetesRuntime(kubernetes_task(), context(), print)
    event = {"status": "complete", "resume": {
        "reference": {"name": "job-x", "namespace": "ns", "shards": [1, 3]}, "attempt": "try1",
        "start": {"todo": [1, 3], "resumed": [0], "started": "2026-01-01T00:00:00"}}}
    assert runtime.resume(event, {"sink": {"key": "k"}}) == {"rows_out": 1}
    assert seen == {"name": "job-x", "namespace": "ns", "shards": [1, 3], "attempt": "try1", "todo": [1, 3],
                    "runtime": "kubernetes", "storage_options": {"key": "k"}}  # a staged plan: the sink's
    with pytest.raises(ReplicaError, match="without its Kubernetes Job's reference"):
        runtime.resume({"status": "complete"}, {})


def test_a_reattached_launcher_deletes_its_job_when_killed(monkeypatch):
    from airflow_batch_scoring.kubernetes.launcher import KubernetesLauncher
    from airflow_batch_scoring.kubernetes.settings import KubernetesSettings

    launcher = KubernetesLauncher.reattach(KubernetesSettings(image=IMAGE), {"name": "job-x", "namespace": "ns"})
    deleted = mock.MagicMock()
    monkeypatch.setattr(launcher, "hook", mock.MagicMock(delete_job=deleted))
    launcher.kill()
    deleted.assert_called_once_with("job-x", "ns", "Foreground")
    fresh = KubernetesLauncher(KubernetesSettings(image=IMAGE), name="job-y")
    monkeypatch.setattr(fresh, "hook", mock.MagicMock(delete_job=deleted))
    fresh.kill()  # never started: nothing to delete
    deleted.assert_called_once_with("job-x", "ns", "Foreground")


def test_mlflow_conn_id_gives_the_tracking_and_registry_uris_while_the_model_is_resolved(mocked, monkeypatch):
    from contextlib import contextmanager

    entered: list[str] = []

    class FakeHook:
        def __init__(self, conn_id: str):
            entered.append(conn_id)

        @contextmanager
        def environment(self):
            yield SimpleNamespace(tracking_uri="http://mlflow:5000", registry_uri="http://registry:5000")

    monkeypatch.setattr("airflow_batch_scoring.hooks.mlflow.MlflowHook", FakeHook)
    operator(mlflow_conn_id="mlflow_prod").execute(context())
    assert entered == ["mlflow_prod"]
    kwargs = mocked.process_model.call_args.kwargs
    assert (kwargs["tracking_uri"], kwargs["registry_uri"]) == ("http://mlflow:5000", "http://registry:5000")


def test_without_mlflow_conn_id_the_tracking_uri_argument_is_used(mocked):
    operator(mlflow_tracking_uri="http://tracking:5000").execute(context())
    kwargs = mocked.process_model.call_args.kwargs
    assert (kwargs["tracking_uri"], kwargs["registry_uri"]) == ("http://tracking:5000", None)


@pytest.mark.parametrize("key, value", [("deferrable", True), ("kubernetes_conn_id", "k8s"), ("poll_interval", 3)])
@pytest.mark.parametrize("runtime", ["kubernetes", None])
def test_connection_and_waiting_settings_are_operator_arguments_not_pod_settings(key, value, runtime):
    with pytest.raises(ConfigurationError, match=rf"kubernetes\['{key}'\] is not a pod setting: pass {key}=.* to "
                                                 "BatchScoringOperator itself"):
        operator(runtime=runtime, kubernetes={"image": IMAGE, key: value})


def test_deferrable_defaults_to_the_operators_config_and_the_arguments_reach_the_runtime(mocked, monkeypatch):
    from airflow_batch_scoring.kubernetes.runtime import KubernetesRuntime

    monkeypatch.setenv("AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE", "true")
    assert operator().deferrable is None  # not given: decided when the task runs (the stage's, else the config's)
    operator(runtime="kubernetes", kubernetes={"image": IMAGE}, deferrable=None).execute(context())
    assert mocked.runtime_for.call_args.args[0].deferrable is True  # None: the config's default at run time
    task = operator(runtime="kubernetes", kubernetes={"image": IMAGE}, deferrable="False", kubernetes_conn_id="k8s",
                    poll_interval="2.5")  # as rendered from templates
    task.execute(context())
    resolved = mocked.runtime_for.call_args.args[0]
    assert (resolved.deferrable, resolved.kubernetes_conn_id, resolved.poll_interval) == (False, "k8s", 2.5)
    settings = KubernetesRuntime.settings_of(resolved)
    assert (settings.kubernetes_conn_id, settings.poll_interval) == ("k8s", 2.5)
    with pytest.raises(AirflowFailException, match="poll_interval must be a positive number of seconds, got '0'"):
        operator(poll_interval="0").execute(context())
    with pytest.raises(AirflowFailException, match="deferrable must be true or false, got 'later'"):
        operator(deferrable="later").execute(context())


@pytest.mark.parametrize("config_default", [False, True])
def test_a_deferrable_the_task_passes_wins_over_the_stages(monkeypatch, config_default):
    """The stage only changes deferrable's default: a value the task passes stays, even one equal to the default."""
    from airflow_batch_scoring.stages import Stage

    monkeypatch.setenv("AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE", str(config_default).lower())

    def resolved(stage_deferrable: bool | None, **given: Any) -> bool:
        settings = {"image": IMAGE} if stage_deferrable is None else {"image": IMAGE, "deferrable": stage_deferrable}
        stage = Stage(name="PROD", alias="champion", runtime="kubernetes", kubernetes=settings)
        return ResolvedTask.resolve(model="models:/churn", runtime=None, replicas=None, kubernetes=None, stage=stage,
                                    try_number=1, retries=0, **given).deferrable

    for explicit in (False, True, "false", "True"):  # as passed, or as rendered from a template
        for stage_deferrable in (None, False, True):
            assert resolved(stage_deferrable, deferrable=explicit) is (str(explicit).lower() == "true")
    assert resolved(True) is True and resolved(False) is False  # not given: the stage's
    assert resolved(not config_default, deferrable=None) is (not config_default)
    assert resolved(None) is config_default and resolved(None, deferrable="") is config_default  # else the config's


def test_a_stage_may_still_set_the_connection_and_waiting_settings(mocked, monkeypatch):
    monkeypatch.setenv("AIRFLOW__BATCH_SCORING__STAGES", '{"PROD": {"alias": "champion", "runtime": "kubernetes", '
                       '"kubernetes": {"namespace": "ns", "deferrable": true, "kubernetes_conn_id": "prod_k8s", '
                       '"poll_interval": 30}}}')
    task = operator(stage="PROD", kubernetes={"image": IMAGE})
    task.model = "models:/churn"
    task.execute(context())
    resolved = mocked.runtime_for.call_args.args[0]
    assert resolved.kubernetes == {"namespace": "ns", "image": IMAGE}
    assert (resolved.deferrable, resolved.kubernetes_conn_id, resolved.poll_interval) == (True, "prod_k8s", 30.0)
    task = operator(stage="PROD", kubernetes={"image": IMAGE}, kubernetes_conn_id="mine", poll_interval=5)
    task.model = "models:/churn"
    task.execute(context())
    resolved = mocked.runtime_for.call_args.args[0]
    assert (resolved.kubernetes_conn_id, resolved.poll_interval) == ("mine", 5.0)  # the task's own arguments win
