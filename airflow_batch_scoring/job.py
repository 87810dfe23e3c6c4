"""The ScoringJob spec: the one JSON document the driver hands to every replica.

A job and its parts (:class:`ModelSpec`, :class:`Piece`, the source and sink specs of
:mod:`airflow_batch_scoring.specs`) are frozen values: the driver builds the final job with
:func:`dataclasses.replace`, and the job is serialised only where it crosses a process boundary
(:meth:`ScoringJob.to_json`, :meth:`ScoringJob.from_json`).

A job names the processed model, the source and the sink, the scoring options, and the shard plan. It never holds
credentials: those travel separately (see :mod:`airflow_batch_scoring.runtime.secrets`).

Shared with the runtime: never imports Airflow.
"""

from __future__ import annotations

import base64
import json
from dataclasses import asdict, dataclass
from typing import Any

import pyarrow as pa

from airflow_batch_scoring.schema import ModelSchema
from airflow_batch_scoring.specs import DataSpec, spec_from_dict, spec_to_dict

DEFAULT_PART_SIZE = 16 * 1024 * 1024
DEFAULT_WRITE_CONCURRENCY = 4
MIN_UPLOAD_PART = 5 * 1024 * 1024


@dataclass(frozen=True)
class Piece:
    """A part of one input file: a byte range (text formats) or a list of row groups (Parquet).

    A text piece owns the lines whose first byte lies in ``[start, end)``; ``end = -1`` means the end of the file.
    ``rows`` is the piece's row count when the planner knows it (Parquet), for progress and ETA.
    """

    path: str
    start: int = 0
    end: int = -1
    row_groups: tuple[int, ...] | None = None
    rows: int | None = None
    #: SQL source: the piece's range of the partition column (see :mod:`airflow_batch_scoring.sources.sql_relation`).
    sql_range: dict[str, Any] | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Piece:
        """The piece as JSON held it (its row groups back as a tuple)."""
        row_groups = data.get("row_groups")
        return cls(**{**data, "row_groups": tuple(row_groups) if row_groups is not None else None})


@dataclass(frozen=True)
class ModelSpec:
    """The processed model every replica loads.

    :param uri: the model as the user named it (``models:/churn@champion``, a path, ...).
    :param path: the local folder or file the runtime loads (MODEL_PATH).
    :param flavor: ``mlflow`` or ``sklearn``.
    :param resolved_uri: the fixed reference the alias or stage resolved to (``models:/churn/3``).
    :param version: the registry version, when the model came from a registry.
    :param digest: ``sha256:<hex>`` of the processed artifact.
    :param artifact_type: the artifact type it was processed as (``python/mlflow``, ``sklearn/joblib``, ``onnx``,
        ``h2o3/mojo``, or a plug-in's name).
    :param source_model_name: the registry model name it came from, when it came from a registry.
    :param source_model_version: the registry version it came from (an alias resolved to a fixed version).
    :param source_metadata: what else is known about the source (alias, run id, tags, the source URI's digest).
    """

    uri: str
    path: str
    flavor: str
    resolved_uri: str | None = None
    name: str | None = None
    version: str | None = None
    digest: str | None = None
    input_schema: list[dict[str, str]] | None = None
    output_schema: list[dict[str, str]] | None = None
    artifact_type: str | None = None
    source_model_name: str | None = None
    source_model_version: str | None = None
    source_metadata: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ScoringJob:
    """Everything a replica needs to score its shard, as one JSON document.

    :param job_id: unique per run (every attempt of one run shares it); names the staging folder.
    :param attempt: names this attempt of the run (``try2``); staged part names carry it, and only the attempt
        holding the run's lease may publish (see :mod:`airflow_batch_scoring.sinks.file_staging`).
    :param runtime_image: the container image the replicas run in (the Kubernetes runtime), for the manifest.
    :param shards: ``shards[i]`` holds the pieces replica ``i`` scores.
    :param staging_uri: where replicas write their parts before the commit publishes them.
    :param part_size: bytes per read request and per multipart-upload part (at least 5 MiB is used for
        uploads), and the unit in which a large text file is split between replicas.
    :param write_concurrency: parts of one output object uploaded at once (S3 and S3-compatible stores).
    :param on_bad_rows: ``"fail"`` at the first bad row, or ``"quarantine"`` bad rows into ``<sink>/_errors/``
        (see :mod:`airflow_batch_scoring.io.bad_rows.policy`).
    :param max_bad_rows: quarantine: the run fails when more rows are bad (``None``: no count limit).
    :param max_bad_fraction: quarantine: the run fails when a larger share of the rows read is bad.
    """

    job_id: str
    model: ModelSpec
    source: DataSpec
    sink: DataSpec
    staging_uri: str
    shards: tuple[tuple[Piece, ...], ...] = ()
    batch_size: int = 100_000
    passthrough_columns: tuple[str, ...] = ()
    input_schema: list[dict[str, str]] | None = None
    output_schema: list[dict[str, str]] | None = None
    schema_check: bool = True
    predict_probabilities: bool = False
    part_size: int = DEFAULT_PART_SIZE
    write_concurrency: int = DEFAULT_WRITE_CONCURRENCY
    attempt: str = "try1"
    runtime_image: str | None = None
    on_bad_rows: str = "fail"
    max_bad_rows: int | None = None
    max_bad_fraction: float | None = None
    #: the passthrough columns' Arrow types for the whole run, decided by the driver before any replica starts (an
    #: Arrow IPC schema, base64; see :mod:`airflow_batch_scoring.runtime.passthrough`).
    passthrough_types: str | None = None
    #: a metrics job: what each replica counts into its shard's report beside scoring (a
    #: :class:`~airflow_batch_scoring.metrics.config.MetricsConfig` as a dict); ``None`` for a scoring job.
    metrics: dict[str, Any] | None = None
    #: where the replicas run Python, for the manifest and the replicas' own record: ``{"mode": "worker"}``, or
    #: the model environment's hash, Python version, requirements and resolved packages
    #: (see :mod:`airflow_batch_scoring.environments`); ``None``: not recorded (the worker's).
    environment: dict[str, Any] | None = None
    #: incremental scoring: the key, where its state is, the watermark the run starts from and the one it ends at,
    #: and what is new (see :mod:`airflow_batch_scoring.driver.incremental`); ``None`` for a run that scores all.
    incremental: dict[str, Any] | None = None

    @property
    def replicas(self) -> int:
        return len(self.shards)

    def input_model_schema(self) -> ModelSchema | None:
        return ModelSchema.parse(self.input_schema)

    def output_model_schema(self) -> ModelSchema | None:
        return ModelSchema.parse(self.output_schema)

    def passthrough_arrow_types(self) -> dict[str, pa.DataType]:
        """The run's passthrough column types, by lower-cased name (empty when the driver recorded none)."""
        if not self.passthrough_types:
            return {}
        schema = pa.ipc.read_schema(pa.py_buffer(base64.b64decode(self.passthrough_types)))
        return {f.name.lower(): f.type for f in schema}

    def to_json(self) -> str:
        """The job as the JSON document a replica reads (the process boundary; the specs carry their ``kind``)."""
        data = asdict(self)
        data["source"], data["sink"] = spec_to_dict(self.source), spec_to_dict(self.sink)
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ScoringJob:
        """The job :meth:`to_json` wrote, its JSON lists back as tuples."""
        data = json.loads(text)
        data["model"] = ModelSpec(**data["model"])
        data["source"] = spec_from_dict(data["source"])
        data["sink"] = spec_from_dict(data["sink"])
        data["shards"] = tuple(tuple(Piece.from_dict(piece) for piece in shard) for shard in data["shards"])
        data["passthrough_columns"] = tuple(data.get("passthrough_columns") or ())
        return cls(**data)
