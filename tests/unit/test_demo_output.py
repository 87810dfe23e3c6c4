"""scripts/demo shows only the provider's own lines of a ``dag.test()`` run: its filter, on a captured demo log."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "tests" / "fixtures" / "demo_dag_test.log"


def _filter():
    spec = importlib.util.spec_from_file_location("demo_output", ROOT / "scripts" / "demo_output.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_captured_demo_run_shows_only_the_summary():
    lines = list(_filter().summary_lines(SAMPLE.read_text(encoding="utf-8").splitlines()))
    assert lines == [
        "  Model models:/demo-churn@champion resolved to models:/demo-churn/1 "
        "(mlflow, sha256:79154cd5d8cac64dea4117f9d8c05f623ff8cfa900c7827541576d0b09eca3a4)",
        "  Planned 2 shard(s) over 1 input file(s), 8353306 bytes",
        "  Preflight: read 1,582 sample rows from 1 of 1 input file(s): OK",
        "  Scoring file:///tmp/airflow-batch-scoring-demo/input/2026-12-05/ with models:/demo-churn/1 "
        "on 2 local replica(s)",
        "  [replica 1] model loaded in 17.40s; waiting for a shard",
        "  [replica 0] model loaded in 17.68s; waiting for a shard",
        "  [replica 1] replica 2/2: 24,967 rows scored, 43,143 rows/s, finished in 0.6s",
        "  [replica 0] replica 1/2: 25,033 rows scored, 45,841 rows/s, finished in 0.5s",
        "  Scored 50,000 rows into file:///tmp/airflow-batch-scoring-demo/scores/2026-12-05/ in 19.4s (2,582 rows/s)",
        "Run manual__2026-12-05T03:23:16.229110+00:00 finished: success; output in "
        "/tmp/airflow-batch-scoring-demo/scores",
    ]


def test_the_xcom_line_that_mentions_the_scoring_task_is_dropped():
    """The old grep (``Scor|replica|finished|...``) let Airflow's XCom line through: it names score_customers."""
    sample = SAMPLE.read_text(encoding="utf-8").splitlines()
    xcom = [line for line in sample if "Pushing xcom" in line and "score_customers" in line]
    assert xcom and len(xcom[0]) > 600
    assert list(_filter().summary_lines(xcom)) == []
    assert all(len(line) < 200 for line in _filter().summary_lines(sample))


def test_errors_from_anywhere_show_cut_short_and_own_warnings_show():
    demo = _filter()
    error = ("2026-12-05T03:24:50.9Z [error    ] Task failed with exception " + "x" * 900 +
             " [task] loc=task_runner.py:1000 ti=RuntimeTaskInstance(...)")
    own_warning = ("2026-12-05T03:24:50.9Z [warning  ] 3 bad row(s) quarantined "
                   "[airflow.task.operators.airflow_batch_scoring.operators.batch_scoring.BatchScoringOperator] "
                   "loc=run.py:1")
    framework_warning = ("2026-12-05T03:23:16.4Z [warning  ] GitWildMatchPattern is deprecated [py.warnings] "
                         "category=DeprecationWarning")
    mlflow = "2026/12/05 03:24:30 ERROR mlflow.store.db.utils: could not open the database"
    lines = list(demo.summary_lines([error, own_warning, framework_warning, mlflow]))
    assert lines[0].startswith("  ERROR (task): Task failed with exception xxx") and lines[0].endswith(" ...")
    assert len(lines[0]) < 400
    assert lines[1:] == ["  3 bad row(s) quarantined",
                         "  ERROR (mlflow.store.db.utils): could not open the database"]


def test_the_filter_reads_stdin_as_the_demo_pipes_it():
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "demo_output.py")], input=SAMPLE.read_text(),
                         capture_output=True, text=True, check=True)
    assert out.stdout.splitlines()[-1].startswith("Run manual__2026-12-05T03:23:16.229110+00:00 finished: success")
    assert len(out.stdout.splitlines()) == 10
