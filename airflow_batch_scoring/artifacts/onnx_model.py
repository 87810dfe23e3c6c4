"""ONNX models (``onnx``), scored with onnxruntime on the CPU (one thread per replica unless
``BATCH_SCORING_ONNX_THREADS`` says otherwise, so that a row's prediction never depends on its batch).

The input schema comes from the graph when every input is one column (shape ``[N]`` or ``[N, 1]``: the input's name
is the column's name, its element type the column's type). A model with one matrix input (``[N, k]``) does not name
its columns: give them as ``input_schema`` (parameter, or the model's ``input_schema`` metadata property, JSON).

Shared with the runtime: never imports Airflow.
"""

from __future__ import annotations

import os
from typing import Any

from airflow_batch_scoring.artifacts.base import (
    ONNX,
    ArtifactRequest,
    first_schema,
    require_local,
    schema_json,
    schemas_from_metadata,
    stage,
)
from airflow_batch_scoring.artifacts.digest import sha256_of
from airflow_batch_scoring.errors import ModelError
from airflow_batch_scoring.job import ModelSpec
from airflow_batch_scoring.schema import Column, ColumnType, ModelSchema

#: ONNX tensor element types (as onnxruntime names them) -> column types.
ONNX_TYPES: dict[str, ColumnType] = {
    "tensor(float)": ColumnType.FLOAT32,
    "tensor(double)": ColumnType.FLOAT64,
    "tensor(int32)": ColumnType.INT32,
    "tensor(int64)": ColumnType.INT64,
    "tensor(string)": ColumnType.STRING,
    "tensor(bool)": ColumnType.BOOLEAN,
}


def open_session(path: str) -> Any:
    """An onnxruntime CPU session for the model at ``path``.

    :raises ModelError: when onnxruntime is missing or cannot read the file.
    """
    try:
        import onnxruntime
    except ImportError as err:
        raise ModelError(
            "ONNX models need onnxruntime: pip install 'airflow-batch-scoring[onnx]' (or onnxruntime)."
        ) from err
    options = onnxruntime.SessionOptions()
    # One thread by default: onnxruntime's multi-threaded tree ensembles sum the trees in an order that depends on
    # the batch, so a row's float32 prediction could differ in the last bit with its batch. Replicas give the
    # parallelism; BATCH_SCORING_ONNX_THREADS trades that determinism for threads.
    threads = os.environ.get("BATCH_SCORING_ONNX_THREADS", "1")
    options.intra_op_num_threads = int(threads) if threads.isdigit() else 1
    options.inter_op_num_threads = 1
    try:
        return onnxruntime.InferenceSession(path, sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as err:
        raise ModelError(f"onnxruntime cannot load {path!r} as an ONNX model ({type(err).__name__}: {err}).") from err


def is_column_input(shape: list[Any]) -> bool:
    """Whether an input of this shape holds one column (``[N]`` or ``[N, 1]``)."""
    return len(shape) == 1 or (len(shape) == 2 and shape[1] == 1)


def graph_schema(session: Any) -> ModelSchema | None:
    """The input schema the graph tells, when every input is one column of a supported type."""
    inputs = session.get_inputs()
    if not all(is_column_input(list(i.shape)) and i.type in ONNX_TYPES for i in inputs):
        return None
    return ModelSchema(tuple(Column(i.name, ONNX_TYPES[i.type]) for i in inputs))


def metadata_of(session: Any) -> dict[str, str]:
    return dict(session.get_modelmeta().custom_metadata_map or {})


def process_onnx(request: ArtifactRequest) -> ModelSpec:
    """Process a ``.onnx`` file: check onnxruntime loads it and read its schema.

    :raises ModelError: when it is not a readable ONNX file.
    """
    path = require_local(request.uri, ONNX, "ONNX file (.onnx)")
    if not os.path.isfile(path):
        raise ModelError(f"An ONNX model is one .onnx file, but {path!r} is a folder. Name the file itself.")
    path = stage(path, request.target_dir, request.copy)
    session = open_session(path)
    meta_in, meta_out = schemas_from_metadata(metadata_of(session), f"{path} (ONNX metadata_props)")
    return ModelSpec(
        uri=request.uri,
        path=path,
        flavor="onnx",
        digest=sha256_of(path),
        input_schema=schema_json(first_schema(meta_in, graph_schema(session))),
        output_schema=schema_json(meta_out),
        artifact_type=ONNX,
        source_metadata={
            "inputs": [
                {"name": i.name, "type": i.type, "shape": [str(d) for d in i.shape]} for i in session.get_inputs()
            ],
            "outputs": [{"name": o.name, "type": o.type} for o in session.get_outputs()],
            "producer": session.get_modelmeta().producer_name,
        },
    )
