"""A real Airflow end to end: scheduler, dag-processor and api-server on loopback, and a real browser.

One Airflow (SQLite, LocalExecutor) and one MLflow server are started for the module, with a test-only DAGs folder
holding the example DAGs as they are, except the hourly one, whose copy starts a few hours ago and ends after
``RUNS`` intervals (so that catch-up makes exactly ``RUNS`` runs). The hour at index ``BAD`` has a malformed input
file before the scheduler starts: its scoring fails, the next hour must not start, and once the file is fixed and the
run cleared (with the documented queued-state fix) the hours finish in order.

OpenLineage events go to a file (the provider's file transport): the scoring task's COMPLETE event carries our
input and output datasets. Screenshots of the trigger form and the finished run land in test-artifacts/.
"""

from __future__ import annotations

import json
import shutil
import urllib.parse
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from itertools import pairwise
from pathlib import Path
from types import ModuleType

import pytest

from tests.support.airflow_stack import Stack, start_stack
from tests.support.examples import DAGS, ROOT, check_scores, demo_estimator, load_demo_module, read_output
from tests.support.waiting import wait_for

pytestmark = pytest.mark.timeout(900)

HOURLY, UI = "example_batch_scoring_hourly", "example_batch_scoring_ui"
RUNS, BAD = 4, 2
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@dataclass
class E2E:
    stack: Stack
    demo_dir: Path
    demo: ModuleType
    first_hour: datetime
    lineage_file: Path

    def hour(self, index: int) -> str:
        return (self.first_hour + timedelta(hours=index)).strftime("%Y%m%dT%H%M%S")

    def estimator(self):
        if not hasattr(self, "_estimator"):
            self._estimator = demo_estimator(self.stack.mlflow_url)
        return self._estimator


def hourly_copy(first_hour: datetime) -> str:
    """The hourly example as it is, but starting at ``first_hour`` and ending after RUNS intervals."""
    text = (DAGS / "example_batch_scoring_hourly.py").read_text()
    moving = 'START_DATE = pendulum.now("UTC").start_of("day").subtract(days=1)'
    assert moving in text and text.count("    catchup=True,\n") == 1
    fixed = f'START_DATE = pendulum.datetime({first_hour.year}, {first_hour.month}, {first_hour.day}, ' \
            f'{first_hour.hour}, tz="UTC")'
    text = text.replace(moving, fixed)
    return text.replace("    catchup=True,\n", f"    catchup=True,\n    end_date=START_DATE.add(hours={RUNS - 1}),\n")


@pytest.fixture(scope="module")
def e2e(tmp_path_factory: pytest.TempPathFactory):
    home = tmp_path_factory.mktemp("airflow-e2e")
    dags, demo_dir = home / "dags", home / "demo"
    dags.mkdir()
    for name in ("scoring_demo.py", ".airflowignore", "example_batch_scoring_ui.py",
                 "example_batch_scoring_assets.py"):
        shutil.copy(DAGS / name, dags / name)
    first_hour = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0) - timedelta(hours=6)
    (dags / "example_batch_scoring_hourly.py").write_text(hourly_copy(first_hour))
    demo = load_demo_module("scoring_demo_e2e")
    e2e = E2E(stack=None, demo_dir=demo_dir, demo=demo, first_hour=first_hour,  # type: ignore[arg-type]
              lineage_file=home / "openlineage.jsonl")
    # The hour at BAD has landed with a malformed value (the DAG lands only missing hours, so it stays).
    bad = demo_dir / "hourly" / "input" / f"{e2e.hour(BAD)}.jsonl"
    bad.parent.mkdir(parents=True)
    bad.write_text('{"id": 0, "x0": 1.0, "x1": 2.0, "x2": "three", "x3": 0.5, "x4": 0, "x5": 0, "x6": 0, "x7": 0}\n')
    e2e.stack = start_stack(home, dags, {
        "BATCH_SCORING_DEMO_DIR": str(demo_dir),
        "AIRFLOW__OPENLINEAGE__NAMESPACE": "e2e",
        "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps(
            {"type": "file", "log_file_path": str(e2e.lineage_file), "append": True}),
    })
    try:
        yield e2e
    finally:
        e2e.stack.stop()


def quote(run_id: str) -> str:
    return urllib.parse.quote(run_id, safe="")


def trigger(stack: Stack, dag_id: str, conf: dict) -> tuple[int, dict]:
    return stack.request("POST", f"/api/v2/dags/{dag_id}/dagRuns", {"logical_date": None, "conf": conf})


def lineage_events(e2e: E2E, job: str) -> list[dict]:
    if not e2e.lineage_file.exists():
        return []
    events = [json.loads(line) for line in e2e.lineage_file.read_text().splitlines() if line.strip()]
    return [e for e in events if e.get("job", {}).get("name") == job and e.get("eventType") == "COMPLETE"]


def test_connection_form_fields_reach_the_ui(e2e: E2E):
    (meta,) = [h for h in e2e.stack.get("/ui/connections/hook_meta") if h["connection_type"] == "mlflow"]
    fields = meta["extra_fields"]
    assert set(fields) == {"tracking_uri", "registry_uri", "token"}
    assert fields["token"]["schema"]["format"] == "password"
    assert meta["standard_fields"]["host"]["title"] == "Tracking URI (alternative)"


def test_rest_trigger_refuses_invalid_conf_before_a_run_exists(e2e: E2E):
    stack = e2e.stack
    wait_for(lambda: stack.request("GET", f"/api/v2/dags/{UI}")[0] == 200, 180, f"{UI} to be parsed")
    before = len(stack.runs(UI))
    for conf in ({"replicas": 0}, {"source_format": "xls"}, {"memory": "lots"}, {"source_uri": "ftp://h/x.csv"},
                 {"batch_size": "many"}):
        status, body = trigger(stack, UI, conf)
        assert status in (400, 422), (conf, status, body)
        assert next(iter(conf)) in json.dumps(body), body
    assert len(stack.runs(UI)) == before


def test_rest_trigger_scores_with_links_and_lineage(e2e: E2E):
    stack = e2e.stack
    sink = e2e.demo_dir / "ui" / "rest"
    status, run = trigger(stack, UI, {"sink_uri": sink.as_uri() + "/", "sink_format": "parquet", "replicas": 2,
                                      "predict_probabilities": True, "memory": "1Gi"})
    assert status == 200, run
    finished = stack.wait_run(UI, run["dag_run_id"], timeout=420)
    assert finished["state"] == "success", stack.task_instances(UI, run["dag_run_id"])
    output = read_output(sink, "parquet")
    assert len(output) == 10_000
    check_scores(e2e.demo.features("ui", 10_000), output, e2e.estimator(), probabilities=True)
    links = stack.get(f"/api/v2/dags/{UI}/dagRuns/{quote(run['dag_run_id'])}/taskInstances/score/links")
    assert links["extra_links"] == {"Scoring output": sink.as_uri() + "/",
                                    "Model version": f"{stack.mlflow_url}/#/models/demo-churn/versions/1"}
    # OpenLineage: the listener emitted our datasets (named by the naming spec) with schema and row count.
    events = wait_for(lambda: [e for e in lineage_events(e2e, f"{UI}.score")
                               if e["outputs"] and e["outputs"][0]["name"] == str(sink)], 60, "the lineage event")
    (output_ds,) = events[-1]["outputs"]
    # the inputs: the scored file, and the model (as the SageMaker operator reports it) with its registry version
    (source,) = [d for d in events[-1]["inputs"] if d["namespace"] == "file"]
    (model,) = [d for d in events[-1]["inputs"] if d["namespace"] != "file"]
    assert model["name"] == "models:/demo-churn"
    assert model["facets"]["version"]["datasetVersion"] == "1"
    assert (source["namespace"], source["name"]) == ("file", str(e2e.demo_dir / "ui" / "input" / "customers.csv"))
    assert [f["name"] for f in source["facets"]["schema"]["fields"]] == [f"x{i}" for i in range(8)]
    assert output_ds["namespace"] == "file"
    assert output_ds["outputFacets"]["outputStatistics"]["rowCount"] == 10_000


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)")
def test_browser_trigger_form_submits_and_the_run_succeeds(e2e: E2E):
    from playwright.sync_api import sync_playwright

    stack = e2e.stack
    sink = e2e.demo_dir / "ui" / "browser"
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-dev-shm-usage"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1300})
            page.goto(f"{stack.url}/dags/{UI}")
            page.get_by_role("button", name="Trigger").first.click()
            dialog = page.get_by_role("dialog")
            for section in ("Model", "Source (input)", "Sink (output)", "Output", "Scaling", "Resources", "Checks"):
                dialog.get_by_role("button", name=section, exact=True).wait_for()
            dialog.get_by_role("button", name="Sink (output)", exact=True).click()
            for label in ("Sink URI", "Sink connection", "Sink format", "Sink CSV has a header line"):
                dialog.get_by_text(label).first.wait_for()
            dialog.locator("#element_sink_uri").fill(sink.as_uri() + "/")
            dialog.get_by_label("Sink format").click()
            page.get_by_role("option", name="Parquet").click()
            page.screenshot(path=str(ARTIFACTS / "trigger-form.png"))
            dialog.get_by_role("button", name="Scaling", exact=True).click()
            dialog.get_by_label("Replicas").fill("3")
            dialog.get_by_role("button", name="Resources", exact=True).click()
            dialog.locator("#element_memory").fill("512Mi")
            with page.expect_response(lambda r: r.url.endswith(f"/dags/{UI}/dagRuns")
                                      and r.request.method == "POST") as response:
                dialog.get_by_role("button", name="Trigger", exact=True).click()
            assert response.value.status == 200, response.value.text()
            run = response.value.json()
            assert run["conf"]["sink_format"] == "parquet" and run["conf"]["replicas"] == 3
            assert run["conf"]["memory"] == "512Mi" and run["conf"]["sink_uri"] == sink.as_uri() + "/"
            finished = stack.wait_run(UI, run["dag_run_id"], timeout=420)
            page.goto(f"{stack.url}/dags/{UI}/runs/{quote(run['dag_run_id'])}")
            page.get_by_text("score").first.wait_for()
            page.screenshot(path=str(ARTIFACTS / "trigger-run.png"))
        finally:
            browser.close()
    assert finished["state"] == "success", stack.task_instances(UI, run["dag_run_id"])
    output = read_output(sink, "parquet")
    assert len(output) == 10_000 and len(list(sink.glob("part-*.parquet"))) == 3
    check_scores(e2e.demo.features("ui", 10_000), output, e2e.estimator())


def test_asset_landing_triggers_scoring_and_the_downstream_dag(e2e: E2E):
    stack = e2e.stack
    wait_for(lambda: stack.request("GET", "/api/v2/dags/example_batch_scoring_land")[0] == 200, 180, "assets DAGs")
    status, land = trigger(stack, "example_batch_scoring_land", {})
    assert status == 200, land
    assert stack.wait_run("example_batch_scoring_land", land["dag_run_id"])["state"] == "success"
    scored = wait_for(lambda: stack.runs("example_batch_scoring_on_landing"), 180, "the asset-triggered run")[0]
    assert scored["run_type"] == "asset_triggered"
    assert stack.wait_run("example_batch_scoring_on_landing", scored["dag_run_id"])["state"] == "success"
    downstream = wait_for(lambda: stack.runs("example_batch_scoring_downstream"), 180, "the downstream run")[0]
    assert stack.wait_run("example_batch_scoring_downstream", downstream["dag_run_id"])["state"] == "success"
    value = stack.get(f"/api/v2/dags/example_batch_scoring_downstream/dagRuns/{quote(downstream['dag_run_id'])}"
                      "/taskInstances/use_scores/xcomEntries/return_value")["value"]
    assert value["rows_out"] == 5_000
    assert value["event"]["output_uri"] == f"file://{e2e.demo_dir}/assets/scores/"
    assert value["event"]["model_uri"] == "models:/demo-churn/1"
    output = read_output(e2e.demo_dir / "assets" / "scores", "parquet")
    check_scores(e2e.demo.features(f"landing-{land['dag_run_id']}", 5_000), output, e2e.estimator(),
                 probabilities=True)


def test_hourly_waits_after_a_failed_hour_and_catches_up_in_order(e2e: E2E):
    stack = e2e.stack

    def runs() -> list[dict]:
        return stack.runs(HOURLY) if stack.request("GET", f"/api/v2/dags/{HOURLY}")[0] == 200 else []

    # The hours before the bad one succeed; the bad one fails; the next one is created but does not start.
    wait_for(lambda: len(r := runs()) > BAD and r[BAD]["state"] == "failed", 480, f"hour {BAD} to fail")
    waiting = wait_for(lambda: len(r := runs()) > BAD + 1 and r[BAD + 1], 120, "the next hour's run")
    history = runs()
    assert [r["state"] for r in history[:BAD]] == ["success"] * BAD
    assert [r["data_interval_start"][:13] for r in history] == [
        (e2e.first_hour + timedelta(hours=i)).strftime("%Y-%m-%dT%H") for i in range(len(history))]
    failed_tis = stack.task_instances(HOURLY, history[BAD]["dag_run_id"])
    assert failed_tis["score_hour"]["state"] == "failed"
    assert not (e2e.demo_dir / "hourly" / "scores" / e2e.hour(BAD)).exists()

    seen: list = []

    def held_by_the_previous_hour() -> bool:
        deps = stack.get(f"/api/v2/dags/{HOURLY}/dagRuns/{quote(waiting['dag_run_id'])}/taskInstances/"
                         "land_demo_hour/dependencies")["dependencies"]
        seen[:] = deps
        # PrevDagrunDep: depends_on_past / wait_for_downstream on the failed hour
        return any(d["name"] == "Previous Dagrun State" and "wait_for_downstream" in d["reason"] for d in deps)

    try:
        wait_for(held_by_the_previous_hour, 120, "the scheduler to hold the next hour on the failed one")
    except AssertionError as err:
        raise AssertionError(f"{err}; dependencies: {seen}") from None
    assert {ti["state"] for ti in stack.task_instances(HOURLY, waiting["dag_run_id"]).values()} <= {None, ""}
    assert not (e2e.demo_dir / "hourly" / "input" / f"{e2e.hour(BAD + 1)}.jsonl").exists()
    assert len(runs()) == BAD + 2  # max_active_runs=1: nothing later is created while it waits

    # Fix the input, clear the failed task, and put the waiting run back to queued (the documented fix).
    hour = e2e.hour(BAD)
    e2e.demo.write_input((e2e.demo_dir / "hourly" / "input" / f"{hour}.jsonl").as_uri(), key=f"hourly-{hour}",
                         rows=2_000, fmt="jsonl")
    status, body = stack.request("POST", f"/api/v2/dags/{HOURLY}/clearTaskInstances", {
        "dry_run": False, "dag_run_id": history[BAD]["dag_run_id"], "only_failed": True, "reset_dag_runs": True})
    assert status == 200, body
    status, body = stack.request("PATCH", f"/api/v2/dags/{HOURLY}/dagRuns/{quote(waiting['dag_run_id'])}",
                                 {"state": "queued"})
    assert status == 200, body

    wait_for(lambda: len(r := runs()) == RUNS and all(x["state"] == "success" for x in r), 480,
             f"all {RUNS} hours to succeed")
    final = runs()
    tis = [stack.task_instances(HOURLY, r["dag_run_id"]) for r in final]
    for earlier, later in pairwise(tis):  # in order: each hour starts after the previous hour's scoring ended
        assert earlier["score_hour"]["end_date"] <= later["land_demo_hour"]["start_date"]
    assert tis[BAD]["score_hour"]["try_number"] == 2
    for index in range(RUNS):
        hour = e2e.hour(index)
        output = read_output(e2e.demo_dir / "hourly" / "scores" / hour, "csv")
        assert len(output) == 2_000
        check_scores(e2e.demo.features(f"hourly-{hour}", 2_000), output, e2e.estimator())


def test_every_server_of_the_stack_listens_on_loopback_only(e2e: E2E):
    """Every process the test stack started (api-server, scheduler, dag-processor, MLflow, and their children, e.g.
    the LocalExecutor's workers) listens on 127.0.0.1 only: the scheduler serves no logs on 0.0.0.0. (Last in this
    module: the scheduler and its workers have run every DAG above by now.)"""
    wait_for(lambda: e2e.stack.get("/api/v2/monitor/health")["scheduler"]["status"] == "healthy", 120,
             "the scheduler's heartbeat")
    listening = e2e.stack.listening()
    assert any(name.startswith("api-server") for name in listening)  # the check sees the servers we know of ...
    assert any(name.startswith("mlflow") for name in listening)
    elsewhere = {name: [a for a in addresses if a[0] != "127.0.0.1"] for name, addresses in listening.items()}
    assert {name: a for name, a in elsewhere.items() if a} == {}  # ... and every one is on loopback
    log_port = int(e2e.stack.env["AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT"])
    assert not [a for addresses in listening.values() for a in addresses if a[1] == log_port]
