"""The Kubernetes training Job's pieces: its name, its pod's command, and the result line read from the pod's log."""

from __future__ import annotations

import json

from airflow_batch_scoring.kubernetes import manifests
from airflow_batch_scoring.kubernetes.training import result_from_log
from airflow_batch_scoring.training.process import RESULT_MARKER


def test_a_training_job_has_its_own_name_and_the_train_command():
    scoring = manifests.job_name("dag", "train", "run-1", -1)
    training = manifests.job_name("dag", "train", "run-1", -1, kind="training")
    assert scoring.startswith("job-scoring-train-") and training.startswith("job-training-train-")
    assert len(manifests.job_name("d", "t" * 80, "r", 3, kind="training")) <= 52
    assert manifests.training_arguments() == [
        "train", "--job", f"{manifests.JOB_MOUNT}/{manifests.JOB_KEY}",
        "--secrets-file", f"{manifests.SECRETS_MOUNT}/{manifests.SECRETS_KEY}",
    ]


def test_the_result_is_the_last_result_line_of_the_log():
    first, last = {"version": "1"}, {"version": "2", "model_uri": "models:/m/2"}
    log = "\n".join(["Read 10 rows", RESULT_MARKER + json.dumps(first), RESULT_MARKER + json.dumps(last), "bye"])
    assert result_from_log(log) == last
    assert result_from_log("Read 10 rows\n") is None
    assert result_from_log(RESULT_MARKER + "{cut") is None
