"""A trigger form for batch scoring: Airflow Params that render as a form in the UI's Trigger dialog.

:func:`scoring_params` returns the Params (model, source, sink, output, scaling, resources, checks), each with a
title, a description, a section, and JSON-schema validation (enums, minimum/maximum, patterns), so that a conf that
does not fit is refused when the run is triggered, before the run exists. :func:`scoring_templates` returns the
matching ``BatchScoringOperator`` arguments as templates that read those params::

    with DAG("score_on_demand", schedule=None, params=scoring_params(model="models:/churn@champion")):
        BatchScoringOperator(task_id="score", **scoring_templates())

The templates render to the right types with or without ``render_template_as_native_obj``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from airflow.sdk import Param

FORMATS = ["csv", "jsonl", "parquet"]
FORMAT_NAMES = {"csv": "CSV", "jsonl": "JSON lines", "parquet": "Parquet"}
#: Object store URIs the runtime reads and writes (see README "Object stores and connections"), without ``.`` or
#: ``..`` segments (also percent-encoded): a form cannot climb out of a folder. Where the sink may be is the
#: operator's ``allowed_sink_prefixes``, checked at run time. No credentials before '@' (they belong in a connection;
#: an Azure ``container@account`` authority is allowed).
URI_PATTERN = (
    r"^(?!(file|s3|s3a|s3n|gs|gcs)://[^\s/]*@)(?!(abfs|abfss|wasb|wasbs)://[^\s/@]*:[^\s/]*@)"
    r"(file|s3|s3a|s3n|gs|gcs|abfs|abfss|wasb|wasbs)://"
    r"(?!(.*/)?(\.|%2[eE])(\.|%2[eE])?(/|$))(?!.*%2[fF])[^\s]+$"
)
#: Kubernetes CPU quantities: "2", "0.5", "500m".
CPU_PATTERN = r"^([1-9][0-9]*m|[0-9]+(\.[0-9]{1,3})?)$"
#: Kubernetes memory quantities: "512Mi", "2Gi", "1G", "1073741824".
MEMORY_PATTERN = r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|k|K|M|G|T|P)?$"
MAX_REPLICAS = 64
MAX_BATCH_SIZE = 1_000_000


def _data_params(role: str, uri: str, conn_id: str | None, fmt: str, header: bool) -> dict[str, Param]:
    title = role.capitalize()
    what = "input: a file, a folder (every file in it) or a glob" if role == "source" else "output folder"
    section = f"{title} ({'input' if role == 'source' else 'output'})"
    return {
        f"{role}_uri": Param(
            uri,
            type="string",
            pattern=URI_PATTERN,
            title=f"{title} URI",
            description=f"The {what}: file://, s3://, gs://, abfs:// (or wasb://).",
            section=section,
        ),
        f"{role}_conn_id": Param(
            conn_id,
            type=["null", "string"],
            title=f"{title} connection",
            description="The Airflow connection of the store (aws, google_cloud_platform, wasb); empty for local files "
            "or the default credentials.",
            section=section,
        ),
        f"{role}_format": Param(
            fmt,
            type="string",
            enum=FORMATS,
            values_display=FORMAT_NAMES,
            title=f"{title} format",
            description="CSV, JSON lines or Parquet.",
            section=section,
        ),
        f"{role}_header": Param(
            header,
            type="boolean",
            title=f"{title} CSV has a header line",
            description="CSV only: the first line holds the column names"
            + (" (without one, columns are the model's inputs in order)." if role == "source" else "."),
            section=section,
        ),
    }


def scoring_params(
    *,
    model: str = "",
    source_uri: str = "file:///data/input/",
    source_conn_id: str | None = None,
    source_format: str = "csv",
    source_header: bool = True,
    sink_uri: str = "file:///data/scores/",
    sink_conn_id: str | None = None,
    sink_format: str = "parquet",
    sink_header: bool = True,
    sink_compression: str = "none",
    passthrough_columns: list[str] | None = None,
    predict_probabilities: bool = False,
    replicas: int = 1,
    batch_size: int = 100_000,
    cpu: str = "1",
    memory: str = "2Gi",
    schema_check: bool = True,
) -> dict[str, Param]:
    """The Params of a scoring trigger form; the arguments are the form's defaults.

    Sections: Model, Source, Sink, Output, Scaling, Resources, Checks. ``cpu`` and ``memory`` are the resources of
    one replica (Kubernetes quantities); the local runtime records them and runs replicas on the worker.
    """
    return {
        "model": Param(
            model,
            type="string",
            minLength=1,
            title="Model",
            description="models:/name@alias, models:/name/version, runs:/<run id>/<path>, or a model file or folder "
            "path. An alias is resolved to a fixed version once per run.",
            section="Model",
        ),
        **_data_params("source", source_uri, source_conn_id, source_format, source_header),
        **_data_params("sink", sink_uri, sink_conn_id, sink_format, sink_header),
        "sink_compression": Param(
            sink_compression,
            type="string",
            enum=["none", "gzip", "bz2", "xz"],
            title="Sink compression",
            description="CSV and JSON lines only: compress each output part (part-00000.csv.gz); Parquet compresses "
            "its columns itself.",
            section="Sink (output)",
        ),
        "passthrough_columns": Param(
            list(passthrough_columns if passthrough_columns is not None else ["id"]),
            type="array",
            items={"type": "string", "minLength": 1},
            title="Passthrough columns",
            description="Input columns copied to each output row before the predictions (one per line), e.g. an id.",
            section="Output",
        ),
        "predict_probabilities": Param(
            predict_probabilities,
            type="boolean",
            title="Class probabilities",
            description="Classifiers: add one probability_<class> column per class.",
            section="Output",
        ),
        "replicas": Param(
            replicas,
            type="integer",
            minimum=1,
            maximum=MAX_REPLICAS,
            title="Replicas",
            description=f"Parallel replicas (1 to {MAX_REPLICAS}); each scores its own shard of the input.",
            section="Scaling",
        ),
        "batch_size": Param(
            batch_size,
            type="integer",
            minimum=100,
            maximum=MAX_BATCH_SIZE,
            title="Batch size",
            description="Rows per batch read, predicted and written; memory grows with it.",
            section="Scaling",
        ),
        "cpu": Param(
            cpu,
            type="string",
            pattern=CPU_PATTERN,
            title="CPU per replica",
            description='Kubernetes CPU quantity, e.g. "2" or "500m" (recorded by the local runtime).',
            section="Resources",
        ),
        "memory": Param(
            memory,
            type="string",
            pattern=MEMORY_PATTERN,
            title="Memory per replica",
            description='Kubernetes memory quantity, e.g. "2Gi" or "512Mi" (recorded by the local runtime).',
            section="Resources",
        ),
        "schema_check": Param(
            schema_check,
            type="boolean",
            title="Check the input schema",
            description="Check and coerce every input column to the model's schema; a bad value stops the run with "
            "its file, line and column.",
            section="Checks",
        ),
    }


def _data_templates(role: str) -> dict[str, str]:
    return {
        "uri": f"{{{{ params.{role}_uri }}}}",
        "format": f"{{{{ params.{role}_format }}}}",
        "header": f"{{{{ params.{role}_header }}}}",
        "conn_id": f"{{{{ params.{role}_conn_id or '' }}}}",
    }


def scoring_templates(kubernetes: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``BatchScoringOperator`` keyword arguments that read the params of :func:`scoring_params`.

    :param kubernetes: the Kubernetes runtime's settings (``{"image": ...}``, see README "Kubernetes runtime"): the
        replicas then run as pods whose CPU and memory requests (and limits) come from the form. Without it,
        replicas run on the worker and the form's resources are only recorded.
    """
    templates = _templates()
    if kubernetes is not None:
        resources = {"requests": {"cpu": "{{ params.cpu }}", "memory": "{{ params.memory }}"},
                     "limits": {"memory": "{{ params.memory }}"}}
        templates.update(runtime="kubernetes", kubernetes={**dict(kubernetes), "resources": resources})
    return templates


def _templates() -> dict[str, Any]:
    return {
        "model": "{{ params.model }}",
        "source": _data_templates("source"),
        "sink": {**_data_templates("sink"), "compression": "{{ params.sink_compression }}"},
        "passthrough_columns": "{{ params.passthrough_columns | join(',') }}",
        "predict_probabilities": "{{ params.predict_probabilities }}",
        "replicas": "{{ params.replicas }}",
        "batch_size": "{{ params.batch_size }}",
        "schema_check": "{{ params.schema_check }}",
    }


def resources_of(params: dict[str, Any]) -> dict[str, str]:
    """The per-replica resources a run asked for (``{"cpu": ..., "memory": ...}``), as Kubernetes quantities."""
    return {"cpu": str(params.get("cpu", "")), "memory": str(params.get("memory", ""))}
