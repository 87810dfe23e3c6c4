"""ONNX models (flavor and artifact type ``onnx``), scored with onnxruntime on the CPU (one thread per replica unless
``BATCH_SCORING_ONNX_THREADS`` says otherwise, so that a row's prediction never depends on its batch).

The input schema comes from the graph when every input is one column (shape ``[N]`` or ``[N, 1]``: the input's name
is the column's name, its element type the column's type). A model with one matrix input (``[N, k]``) does not name
its columns: give them as ``input_schema`` (parameter, or the model's ``input_schema`` metadata property, JSON).

Never imports Airflow; onnxruntime is imported only when a model is processed or loaded.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pyarrow as pa

from airflow_batch_scoring.coercion import ColumnIndex
from airflow_batch_scoring.errors import ModelError, SchemaError
from airflow_batch_scoring.flavors.base import Flavor, Predictor, output_columns, output_table
from airflow_batch_scoring.flavors.processing import (
    ArtifactRequest,
    first_schema,
    require_local,
    schema_json,
    schemas_from_metadata,
    stage,
)
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


class OnnxFlavor(Flavor):
    """A ``.onnx`` file scored with onnxruntime."""

    name = "onnx"
    artifact_type = "onnx"
    aliases = ("onnx",)
    description = "an ONNX file (.onnx)"

    def detect(self, path: str) -> bool:
        return os.path.isfile(path) and path.lower().endswith(".onnx")

    def process(self, request: ArtifactRequest) -> ModelSpec:
        return process_onnx(request)

    def load(self, spec: ModelSpec, *, probabilities: bool, output_schema: ModelSchema | None) -> Predictor:
        return OnnxPredictor(spec, probabilities=probabilities, output_schema=output_schema)


def process_onnx(request: ArtifactRequest) -> ModelSpec:
    """Process a ``.onnx`` file: check onnxruntime loads it and read its schema.

    :raises ModelError: when it is not a readable ONNX file.
    """
    path = require_local(request.uri, OnnxFlavor.artifact_type, "ONNX file (.onnx)")
    if not os.path.isfile(path):
        raise ModelError(f"An ONNX model is one .onnx file, but {path!r} is a folder. Name the file itself.")
    path = stage(path, request.target_dir, request.copy)
    session = open_session(path)
    meta_in, meta_out = schemas_from_metadata(metadata_of(session), f"{path} (ONNX metadata_props)")
    return ModelSpec(
        uri=request.uri,
        path=path,
        flavor=OnnxFlavor.name,
        input_schema=schema_json(first_schema(meta_in, graph_schema(session))),
        output_schema=schema_json(meta_out),
        artifact_type=OnnxFlavor.artifact_type,
        source_metadata={
            "inputs": [
                {"name": i.name, "type": i.type, "shape": [str(d) for d in i.shape]} for i in session.get_inputs()
            ],
            "outputs": [{"name": o.name, "type": o.type} for o in session.get_outputs()],
            "producer": session.get_modelmeta().producer_name,
        },
    )


#: numpy dtypes onnxruntime wants for each tensor element type.
_ONNX_DTYPES: dict[str, Any] = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(int32)": np.int32,
    "tensor(int64)": np.int64,
    "tensor(bool)": np.bool_,
    "tensor(string)": object,
}


class OnnxPredictor(Predictor):
    """An ONNX model scored with onnxruntime (CPU).

    Inputs are fed one column per graph input (matched by name, ignoring case), or, for a model with a single matrix
    input ``[N, k]``, as one matrix of the input schema's columns in order. The first graph output is the prediction;
    with ``probabilities`` the output whose name contains ``prob`` gives one ``probability_<class>`` column per class
    (class names from a ZipMap output, else the class index).
    """

    def __init__(self, spec: ModelSpec, *, probabilities: bool, output_schema: ModelSchema | None):
        self.session = open_session(spec.path)
        self.inputs = self.session.get_inputs()
        self.matrix = len(self.inputs) == 1 and not is_column_input(list(self.inputs[0].shape))
        for graph_input in self.inputs:
            if graph_input.type not in _ONNX_DTYPES:
                raise ModelError(
                    f"The ONNX input {graph_input.name!r} has type {graph_input.type}, which batch scoring cannot feed "
                    f"(supported: {', '.join(ONNX_TYPES)})."
                )
        outputs = self.session.get_outputs()
        self.prediction_output = outputs[0].name
        self.probability_output = next((o.name for o in outputs[1:] if "prob" in o.name.lower()), None)
        if probabilities and self.probability_output is None:
            raise ModelError(
                f"predict_probabilities=True, but the ONNX model has no probability output (its outputs: "
                f"{', '.join(o.name for o in outputs)}); use a classifier or switch predict_probabilities off."
            )
        super().__init__(
            input_schema=graph_schema(self.session), output_schema=output_schema, probabilities=probabilities
        )
        declared = ModelSchema.parse(spec.input_schema)
        if declared is not None:
            self._check_schema(declared)

    def _check_schema(self, schema: ModelSchema) -> None:
        """Refuse an input schema whose columns or types the graph cannot take."""
        if self.matrix:
            width = self.inputs[0].shape[1]
            if isinstance(width, int) and width != len(schema):
                raise SchemaError(
                    f"The ONNX model takes {width} columns in its input {self.inputs[0].name!r}, but the input schema "
                    f"has {len(schema)} ({', '.join(schema.names)}); make input_schema list exactly its columns."
                )
            wanted = [self.inputs[0].type] * len(schema)
            names = schema.names
        else:
            columns = ColumnIndex(schema.names)
            missing = columns.missing(i.name for i in self.inputs)
            if missing:
                raise SchemaError(
                    f"The ONNX model's input(s) {missing} are not in the input schema ({', '.join(schema.names)}); "
                    "name the schema's columns after the model's inputs."
                )
            wanted = [i.type for i in self.inputs]
            names = columns.resolve([i.name for i in self.inputs])
        for name, onnx_type in zip(names, wanted, strict=True):
            column_type = schema.find(name).type  # type: ignore[union-attr]
            if (onnx_type == "tensor(string)") != (column_type == ColumnType.STRING):
                raise SchemaError(
                    f"The input schema gives column {name!r} type {column_type.value}, but the ONNX model wants "
                    f"{onnx_type} there; fix the column's type in input_schema."
                )

    def _feed(self, table: pa.Table) -> dict[str, np.ndarray]:
        if self.matrix:
            graph_input = self.inputs[0]
            dtype = _ONNX_DTYPES[graph_input.type]
            columns = [_column_array(table.column(i), dtype) for i in range(table.num_columns)]
            return {graph_input.name: np.column_stack(columns) if columns else np.empty((table.num_rows, 0), dtype)}
        by_name = ColumnIndex(table.column_names)
        feed = {}
        for graph_input in self.inputs:
            name = by_name.get(graph_input.name)
            if name is None:
                raise SchemaError(
                    f"The ONNX model needs the input column {graph_input.name!r}, but the input has only "
                    f"{', '.join(table.column_names)}."
                )
            array = _column_array(table.column(name), _ONNX_DTYPES[graph_input.type])
            feed[graph_input.name] = array.reshape(-1, 1) if len(graph_input.shape) == 2 else array
        return feed

    def predict(self, features: pa.Table) -> pa.Table:
        wanted = [self.prediction_output] + ([self.probability_output] if self.probabilities else [])
        results = self.session.run(wanted, self._feed(features))
        names, arrays = output_columns(results[0])
        if not self.probabilities:
            return output_table(names, arrays, self.output_schema)
        classes, proba = _probabilities(results[1])
        return output_table(names, arrays, self.output_schema, classes=classes, probabilities=proba)


def _column_array(column: pa.ChunkedArray, dtype: Any) -> np.ndarray:
    if dtype is object:
        return np.asarray(column.to_pylist(), dtype=object)
    try:
        return column.to_numpy().astype(dtype, copy=False)
    except (TypeError, ValueError) as err:
        raise SchemaError(
            f"An input column of type {column.type} cannot be fed to the ONNX model as {np.dtype(dtype).name} ({err}); "
            "fix the column's type in input_schema."
        ) from err


def _probabilities(result: Any) -> tuple[list[Any], np.ndarray]:
    """Class labels and an ``[N, classes]`` matrix from a ZipMap (list of dicts) or a tensor output."""
    if isinstance(result, list) and result and isinstance(result[0], dict):
        classes = list(result[0].keys())
        return classes, np.array([[row[c] for c in classes] for row in result], dtype=np.float64)
    matrix = np.asarray(result)
    return list(range(matrix.shape[1])), matrix
