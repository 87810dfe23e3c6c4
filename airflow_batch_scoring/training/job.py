"""The TrainingJob: the one JSON document the driver hands to the training process (never a credential).

Shared with the runtime: never imports Airflow.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from airflow_batch_scoring.job import DEFAULT_PART_SIZE, ModelSpec, Piece, ScoringJob
from airflow_batch_scoring.metrics.training_baseline import DIGEST_TAG, LABEL_TAG, ROWS_TAG, SOURCE_TAG
from airflow_batch_scoring.specs import DataSpec, spec_from_dict, spec_to_dict

DATA_MODES = ("pandas", "arrow")
DEFAULT_ALIAS = "challenger"
DEFAULT_TRAINING_BATCH = 65_536

#: the tags recorded on the MLflow run of every version a training job registers (the contract with metrics jobs:
#: ``baseline="training"`` reads them back).
TAG_SOURCE, TAG_DIGEST, TAG_ROWS, TAG_LABEL = SOURCE_TAG, DIGEST_TAG, ROWS_TAG, LABEL_TAG


@dataclass(frozen=True)
class TrainingJob:
    """Everything the training process needs.

    :param job_id: names the run (logs, the MLflow run's name).
    :param source: the labeled rows' spec (with what the listing told, e.g. the files' format).
    :param pieces: the source as one shard: every piece the process reads, in order.
    :param label_column: the column of labels (or targets); handed to the callable with the features.
    :param training: the callable, ``package.module:function``.
    :param data: ``"pandas"`` (one DataFrame) or ``"arrow"`` (an iterator of ``pyarrow.RecordBatch``).
    :param register_as: the registered model's name.
    :param alias: the alias the new version gets.
    :param training_kwargs: further keyword arguments for the callable (JSON values).
    :param source_record: the source's description (its files as listed, or its table), for the log; never a
        credential.
    :param digest: the digest of the input as listed (the files' URIs, sizes and versions:
        :func:`~airflow_batch_scoring.metrics.training_baseline.input_digest`), or ``None`` (a SQL source): the
        process then digests the rows as read.
    :param tracking_uri: MLflow's tracking URI (default: ``$MLFLOW_TRACKING_URI``).
    :param registry_uri: MLflow's registry URI (default: the tracking URI).
    :param experiment: the MLflow experiment of the training run (default: MLflow's active or default one).
    """

    job_id: str
    source: DataSpec
    pieces: tuple[Piece, ...]
    label_column: str
    training: str
    register_as: str
    data: str = "pandas"
    alias: str = DEFAULT_ALIAS
    training_kwargs: dict[str, Any] = field(default_factory=dict)
    source_record: dict[str, Any] = field(default_factory=dict)
    digest: str | None = None
    tracking_uri: str | None = None
    registry_uri: str | None = None
    experiment: str | None = None
    batch_size: int = DEFAULT_TRAINING_BATCH
    part_size: int = DEFAULT_PART_SIZE

    def reading_job(self) -> ScoringJob:
        """The job a source's reader is opened with (the readers are scoring's: no model, every column as read)."""
        return ScoringJob(
            job_id=self.job_id, model=ModelSpec(uri="training", path="", flavor="none"), source=self.source,
            sink=self.source, staging_uri="", shards=(self.pieces,), batch_size=self.batch_size,
            schema_check=False, part_size=self.part_size,
        )

    def to_json(self) -> str:
        data = asdict(self)
        data["source"] = spec_to_dict(self.source)
        return json.dumps(data, sort_keys=True, default=str)

    @classmethod
    def from_json(cls, text: str) -> TrainingJob:
        data = json.loads(text)
        data["source"] = spec_from_dict(data["source"])
        data["pieces"] = tuple(Piece.from_dict(piece) for piece in data["pieces"])
        return cls(**data)


def source_tag(spec: DataSpec) -> str:
    """The source as the ``batch_scoring.training.source`` tag holds it: the spec's keys as a source spec takes them
    (what :func:`~airflow_batch_scoring.specs.parse_data_spec` reads back; never a credential), as JSON."""
    keys = {k: v for k, v in spec_to_dict(spec).items() if k != "kind" and v is not None}
    return json.dumps(keys, sort_keys=True, default=str)


def training_tags(source: DataSpec, digest: str, rows: int, label_column: str) -> dict[str, str]:
    """The ``batch_scoring.training.*`` tags of the run (read back by
    :mod:`airflow_batch_scoring.metrics.training_baseline` for ``baseline="training"``)."""
    return {TAG_SOURCE: source_tag(source), TAG_DIGEST: digest, TAG_ROWS: str(rows), TAG_LABEL: label_column}
