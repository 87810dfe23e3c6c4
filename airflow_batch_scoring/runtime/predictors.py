"""Load a processed model as a :class:`~airflow_batch_scoring.runtime.predictor.Predictor`.

Two loaders: the raw scikit-learn estimator (joblib/pickle files, and MLflow models with the ``sklearn`` flavor, loaded
through MLflow so that MLflow 3's skops format with trusted types works), and MLflow pyfunc for every other flavor.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pyarrow as pa

from airflow_batch_scoring.errors import ModelError, SchemaError
from airflow_batch_scoring.job import ModelSpec
from airflow_batch_scoring.runtime.predictor import (
    PROBABILITY_PREFIX,
    Predictor,
    apply_output_schema,
    output_columns,
)
from airflow_batch_scoring.runtime.verified import verified_model
from airflow_batch_scoring.schema import Column, ColumnType, ModelSchema


def _sklearn_schema(estimator: Any) -> ModelSchema | None:
    names = getattr(estimator, "feature_names_in_", None)
    if names is None:
        return None
    return ModelSchema(tuple(Column(str(name), ColumnType.FLOAT64) for name in names))


def load_predictor(spec: ModelSpec, *, probabilities: bool, output_schema: ModelSchema | None) -> Predictor:
    """Load the model at ``spec.path``.

    :raises ModelError: when the path does not exist or does not hold a loadable model.
    """
    path = spec.path
    if output_schema is None and spec.output_schema:
        output_schema = ModelSchema.parse(spec.output_schema)  # the processed model's own (metadata or signature)
    if not os.path.exists(path):
        raise ModelError(f"The model path {path!r} does not exist; check the model URI ({spec.uri!r}).")
    # Every flavour: a pickle (or a model's code) runs when it is loaded, so load a private copy whose bytes were
    # hashed against the pinned digest while they were copied; an artifact changed since it was processed is refused.
    spec = verified_model(spec)
    path = spec.path
    if spec.flavor == "sklearn":
        import joblib

        try:
            estimator = joblib.load(path)
        except Exception as err:
            raise ModelError(
                f"Cannot load the scikit-learn model {path!r} with joblib ({type(err).__name__}: {err}); "
                "it must be a file saved with joblib.dump or pickle.dump."
            ) from err
        if not hasattr(estimator, "predict"):
            raise ModelError(f"The object in {path!r} ({type(estimator).__name__}) has no predict method.")
        return Predictor(
            estimator,
            input_schema=_sklearn_schema(estimator),
            output_schema=output_schema,
            probabilities=probabilities,
            wants_frame=getattr(estimator, "feature_names_in_", None) is not None,
        )
    if spec.flavor == "mlflow":
        return _load_mlflow(spec, probabilities=probabilities, output_schema=output_schema)
    if spec.flavor == "onnx":
        return OnnxPredictor(spec, probabilities=probabilities, output_schema=output_schema)
    if spec.flavor == "mojo":
        from airflow_batch_scoring.runtime.mojo import MojoPredictor

        return MojoPredictor(spec, probabilities=probabilities, output_schema=output_schema)
    raise ModelError(
        f"Unknown model flavor {spec.flavor!r}: use 'mlflow', 'sklearn', 'onnx' or 'mojo' (process the model with "
        "ProcessArtifactOperator or process_model to get a valid spec)."
    )


def _load_mlflow(spec: ModelSpec, *, probabilities: bool, output_schema: ModelSchema | None) -> Predictor:
    from mlflow.models import Model

    try:
        meta = Model.load(os.path.join(spec.path, "MLmodel"))
    except Exception as err:
        raise ModelError(f"{spec.path!r} is not an MLflow model folder (no readable MLmodel file): {err}") from err
    signature = meta.signature
    input_schema = ModelSchema.from_mlflow(signature.inputs) if signature is not None else None
    if output_schema is None and signature is not None and signature.outputs is not None:
        declared = ModelSchema.from_mlflow(signature.outputs)
        output_schema = declared if declared is not None and len(declared) > 1 else None
    try:
        if "sklearn" in meta.flavors:
            import mlflow.sklearn

            model: Any = mlflow.sklearn.load_model(spec.path)
            wants_frame = getattr(model, "feature_names_in_", None) is not None
        else:
            import mlflow.pyfunc

            model = mlflow.pyfunc.load_model(spec.path)
            wants_frame = True
    except Exception as err:
        raise ModelError(f"Cannot load the MLflow model at {spec.path!r} ({type(err).__name__}: {err}).") from err
    input_schema = input_schema or (_sklearn_schema(model) if "sklearn" in meta.flavors else None)
    if probabilities:  # the flavour's native classifier, or an output that already is per-class probabilities
        from airflow_batch_scoring.runtime.probabilities import mlflow_predictor

        return mlflow_predictor(
            model, meta, input_schema=input_schema, output_schema=output_schema, wants_frame=wants_frame
        )
    return Predictor(model, input_schema=input_schema, output_schema=output_schema, wants_frame=wants_frame)


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
        from airflow_batch_scoring.artifacts.onnx_model import ONNX_TYPES, graph_schema, is_column_input, open_session

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
            self.session,
            input_schema=graph_schema(self.session),
            output_schema=output_schema,
            probabilities=False,
            wants_frame=False,
        )
        self.probabilities = probabilities
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
            by_name = {column.name.lower(): column for column in schema.columns}
            missing = [i.name for i in self.inputs if i.name.lower() not in by_name]
            if missing:
                raise SchemaError(
                    f"The ONNX model's input(s) {missing} are not in the input schema ({', '.join(schema.names)}); "
                    "name the schema's columns after the model's inputs."
                )
            wanted = [i.type for i in self.inputs]
            names = [by_name[i.name.lower()].name for i in self.inputs]
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
        by_name = {name.lower(): name for name in table.column_names}
        feed = {}
        for graph_input in self.inputs:
            name = by_name.get(graph_input.name.lower())
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
        if self.probabilities:
            classes, proba = _probabilities(results[1])
            for index, label in enumerate(classes):
                names.append(f"{PROBABILITY_PREFIX}{label}")
                arrays.append(pa.array(proba[:, index]))
        if self.output_schema is not None:
            names, arrays = apply_output_schema(self.output_schema, names, arrays)
        return pa.Table.from_arrays(arrays, names=names)


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
