"""Load a processed model and turn Arrow tables into prediction columns.

Two loaders: the raw scikit-learn estimator (joblib/pickle files, and MLflow models with the ``sklearn`` flavor, loaded
through MLflow so that MLflow 3's skops format with trusted types works), and MLflow pyfunc for every other flavor.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from airflow_batch_scoring.errors import ModelError, SchemaError
from airflow_batch_scoring.job import ModelSpec
from airflow_batch_scoring.schema import Column, ColumnType, ModelSchema

PREDICTION = "prediction"
PROBABILITY_PREFIX = "probability_"


class Predictor:
    """A loaded model.

    :param model: the estimator or pyfunc model.
    :param input_schema: the model's own input schema, when the artifact tells it.
    :param output_schema: names (and types) for the model's outputs, in order.
    :param probabilities: add one ``probability_<class>`` column per class (classifiers with ``predict_proba``).
    """

    def __init__(
        self,
        model: Any,
        *,
        input_schema: ModelSchema | None,
        output_schema: ModelSchema | None,
        probabilities: bool = False,
        wants_frame: bool = True,
    ):
        self.model = model
        self.input_schema = input_schema
        self.output_schema = output_schema
        self.probabilities = probabilities
        self.wants_frame = wants_frame
        if probabilities and not hasattr(model, "predict_proba"):
            raise ModelError(
                f"predict_probabilities=True, but the model ({type(model).__name__}) has no predict_proba; "
                "use a classifier or switch predict_probabilities off."
            )

    def _features(self, table: pa.Table) -> pd.DataFrame | np.ndarray:
        if self.wants_frame:
            return table.to_pandas(split_blocks=False, self_destruct=False)
        return np.column_stack([column.to_numpy() for column in table.columns])

    def predict(self, features: pa.Table) -> pa.Table:
        """Return the output columns for ``features`` (the model's input columns, in schema order)."""
        x = self._features(features)
        result = self.model.predict(x)
        names, arrays = _outputs(result)
        if self.probabilities:
            proba = np.asarray(self.model.predict_proba(x))
            for index, label in enumerate(getattr(self.model, "classes_", range(proba.shape[1]))):
                names.append(f"{PROBABILITY_PREFIX}{label}")
                arrays.append(pa.array(proba[:, index]))
        if self.output_schema is not None:
            names, arrays = _apply_output_schema(self.output_schema, names, arrays)
        return pa.Table.from_arrays(arrays, names=names)


def _outputs(result: Any) -> tuple[list[str], list[pa.Array]]:
    if isinstance(result, pd.DataFrame):
        return [str(c) for c in result.columns], [pa.array(result[c].to_numpy()) for c in result.columns]
    if isinstance(result, pd.Series):
        return [PREDICTION], [pa.array(result.to_numpy())]
    array = np.asarray(result)
    if array.ndim == 1:
        return [PREDICTION], [pa.array(array)]
    if array.ndim == 2:
        if array.shape[1] == 1:
            return [PREDICTION], [pa.array(array[:, 0])]
        width = array.shape[1]
        return [f"{PREDICTION}_{i}" for i in range(width)], [pa.array(array[:, i]) for i in range(width)]
    raise ModelError(f"The model returned an array of shape {array.shape}; batch scoring needs one or two dimensions.")


def _apply_output_schema(
    schema: ModelSchema, names: list[str], arrays: list[pa.Array]
) -> tuple[list[str], list[pa.Array]]:
    """Name (and type) the model's leading outputs by the output schema; extra probability columns keep their names."""
    model_outputs = [n for n in names if not n.startswith(PROBABILITY_PREFIX)]
    if len(schema) != len(model_outputs):
        raise SchemaError(
            f"The output schema names {len(schema)} column(s) ({', '.join(schema.names)}) but the model returns "
            f"{len(model_outputs)} ({', '.join(model_outputs)}); make output_schema list one column per model output."
        )
    renamed, cast = list(names), list(arrays)
    for position, column in enumerate(schema.columns):
        renamed[position] = column.name
        try:
            cast[position] = arrays[position].cast(column.type.arrow_type)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as err:
            raise SchemaError(
                f"The model's output {names[position]!r} cannot be cast to {column.type.value} as the output schema "
                f"says ({err}); fix output_schema."
            ) from err
    return renamed, cast


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
    if not os.path.exists(path):
        raise ModelError(f"The model path {path!r} does not exist; check the model URI ({spec.uri!r}).")
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
    raise ModelError(f"Unknown model flavor {spec.flavor!r}: use 'mlflow' or 'sklearn'.")


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
    return Predictor(
        model,
        input_schema=input_schema or (_sklearn_schema(model) if "sklearn" in meta.flavors else None),
        output_schema=output_schema,
        probabilities=probabilities,
        wants_frame=wants_frame,
    )
