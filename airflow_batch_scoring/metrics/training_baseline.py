"""``baseline="training"``: drift against the data the model was trained on, as the training job recorded it on the
MLflow run of the model version.

The training job (``BatchTrainingOperator``, ``batch-scoring train``) records these run tags (:data:`TAGS`):

- ``batch_scoring.training.source``: the training source's spec as JSON, without credentials (a ``conn_id`` names
  the connection they come from, as for any source);
- ``batch_scoring.training.digest``: the digest of the training input as listed (:func:`input_digest`);
- ``batch_scoring.training.rows``: the rows it was trained on;
- ``batch_scoring.training.label_column``: the label column (left out of the drift).

:func:`training_baseline` reads them for a model that came from a registry or a run (its ``run_id``) and builds the
baseline's source spec; the metrics run compares the recorded digest with the input's now and warns when the data
changed since the training.

Never imports Airflow.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from airflow_batch_scoring.errors import ConfigurationError
from airflow_batch_scoring.io.files import InputFile
from airflow_batch_scoring.job import ModelSpec
from airflow_batch_scoring.specs import DataSpec, parse_data_spec

#: the ``baseline=`` value that asks for the training data.
TRAINING = "training"
TAG_PREFIX = "batch_scoring.training."
SOURCE_TAG, DIGEST_TAG, ROWS_TAG, LABEL_TAG = (f"{TAG_PREFIX}{n}" for n in ("source", "digest", "rows", "label_column"))
TAGS = (SOURCE_TAG, DIGEST_TAG, ROWS_TAG, LABEL_TAG)


def is_training(baseline: Any) -> bool:
    """Whether ``baseline=`` asks for the training data recorded with the model."""
    return isinstance(baseline, str) and baseline.strip().lower() == TRAINING


def input_digest(files: Sequence[InputFile]) -> str | None:
    """The digest of an input as listed (each file's URI, size and version), whatever job reads it; ``None`` for a
    source without a listing (a SQL table or query)."""
    if not files:
        return None
    listing = sorted((f.to_dict() for f in files), key=lambda f: f["uri"])
    return "sha256:" + hashlib.sha256(json.dumps(listing, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class TrainingBaseline:
    """The training data as the model's run recorded it."""

    spec: DataSpec
    run_id: str
    digest: str | None
    rows: int | None
    label_column: str | None

    def describe(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "digest": self.digest, "rows": self.rows, "label_column": self.label_column}


def training_baseline(
    model: ModelSpec, *, tracking_uri: str | None = None, registry_uri: str | None = None
) -> TrainingBaseline:
    """The training data recorded on the run of ``model`` (a registry version or a ``runs:/`` model).

    :raises ConfigurationError: when the model did not come from a registry or a run, or its run records no
        training data.
    """
    shown = model.resolved_uri or model.uri
    run_id = (model.source_metadata or {}).get("run_id")
    if not run_id:
        raise ConfigurationError(
            f"baseline='training' needs a model from an MLflow registry or run (models:/name@alias, "
            f"models:/name/version or runs:/<run_id>/<path>), whose run records its training data; {shown!r} is "
            "not one. Give baseline= a source spec of the reference data instead."
        )
    from mlflow import MlflowClient

    tags = MlflowClient(tracking_uri=tracking_uri, registry_uri=registry_uri).get_run(run_id).data.tags
    if SOURCE_TAG not in tags:
        raise ConfigurationError(
            f"baseline='training': the MLflow run {run_id} of the model {shown!r} records no training data (no "
            f"{SOURCE_TAG!r} tag: the model was not trained by BatchTrainingOperator or batch-scoring train). "
            "Give baseline= a source spec of the training data instead."
        )
    try:
        value = json.loads(tags[SOURCE_TAG])
        spec = parse_data_spec(value, "source")
    except (ValueError, TypeError) as err:
        raise ConfigurationError(
            f"baseline='training': the {SOURCE_TAG!r} tag of the MLflow run {run_id} is not a source spec ({err}). "
            "Fix the tag, or give baseline= a source spec instead."
        ) from None
    rows = tags.get(ROWS_TAG)
    return TrainingBaseline(
        spec=spec, run_id=run_id, digest=tags.get(DIGEST_TAG) or None,
        rows=int(rows) if rows and rows.strip().isdigit() else None, label_column=tags.get(LABEL_TAG) or None,
    )
