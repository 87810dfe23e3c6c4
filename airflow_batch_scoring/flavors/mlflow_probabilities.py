"""Class probabilities of MLflow models (``predict_probabilities=True``).

Every MLflow flavour whose native model is a classifier with ``predict_proba`` gives its probabilities through that
native model: scikit-learn estimators, XGBoost and LightGBM models logged through their scikit-learn API
(``XGBClassifier``, ``LGBMClassifier``), CatBoost classifiers, and any other flavour whose pyfunc wrapper hands out
the raw model (``get_raw_model``). The predictions then come from the same native model (what its pyfunc wrapper
calls too), so that a row's prediction and probabilities always agree.

A model without ``predict_proba`` (a custom ``PythonModel``, an XGBoost ``Booster`` trained with ``multi:softprob``)
can still be scored with probabilities when its own output already is one probability per class: a matrix or
DataFrame of at least two columns, every value within [0, 1] and every row summing to 1. Its columns become the
``probability_<class>`` columns (classes named by the DataFrame's columns, or by an output schema with one name per
column, else numbered from 0) and ``prediction`` is the class with the highest probability.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from airflow_batch_scoring.errors import ModelError
from airflow_batch_scoring.flavors.base import PREDICTION, Predictor, output_table
from airflow_batch_scoring.flavors.sklearn import EstimatorPredictor
from airflow_batch_scoring.schema import ModelSchema

#: How far a row of probabilities may sum from 1 (float32 softmax outputs round).
_SUM_TOLERANCE = 1e-4

_WHAT_TO_DO = (
    "Log a classifier that has predict_proba (scikit-learn; xgboost.XGBClassifier with mlflow.xgboost; "
    "lightgbm.LGBMClassifier with mlflow.lightgbm; catboost.CatBoostClassifier with mlflow.catboost), or a pyfunc "
    "model whose predict returns one probability column per class, or switch predict_probabilities off."
)


def describe_flavor(meta: Any, model: Any = None) -> str:
    """``flavor xgboost (xgboost.core.Booster)``: the MLmodel's native flavour and its model class, for messages."""
    flavors = dict(getattr(meta, "flavors", None) or {})
    native = [name for name in flavors if name != "python_function"]
    if not native:
        loader = (flavors.get("python_function") or {}).get("loader_module", "")
        custom = " (a custom PythonModel)" if loader == "mlflow.pyfunc.model" else ""
        return f"flavor python_function{custom}"
    conf = flavors[native[0]] or {}
    model_class = conf.get("model_class") or conf.get("model_type")
    if not model_class and model is not None and not hasattr(model, "get_raw_model"):  # an estimator, not a pyfunc
        model_class = f"{type(model).__module__}.{type(model).__qualname__}"
    return f"flavor {native[0]}" + (f" ({model_class})" if model_class else "")


def _signature_width(meta: Any) -> int | None:
    """How many values per row the signature says the model returns, or ``None`` when it does not say."""
    signature = getattr(meta, "signature", None)
    outputs = getattr(signature, "outputs", None)
    if outputs is None:
        return None
    specs = list(getattr(outputs, "inputs", []) or [])
    if outputs.is_tensor_spec():
        if len(specs) != 1:
            return None
        shape = tuple(specs[0].shape)
        if len(shape) == 1:
            return 1
        return shape[1] if len(shape) == 2 and shape[1] > 0 else None
    return len(specs) or None


def _native_classifier(model: Any) -> Any | None:
    """The model itself, or the raw model behind its pyfunc wrapper, when it has ``predict_proba``."""
    if hasattr(model, "predict_proba"):
        return model
    get_raw = getattr(model, "get_raw_model", None)
    if get_raw is None:
        return None
    try:
        raw = get_raw()
    except NotImplementedError:
        return None
    return raw if hasattr(raw, "predict_proba") else None


def probability_predictor(
    model: Any,
    meta: Any,
    *,
    input_schema: ModelSchema | None,
    output_schema: ModelSchema | None,
    wants_frame: bool,
) -> Predictor:
    """A predictor with class probabilities for a loaded MLflow model (estimator or pyfunc) and its MLmodel ``meta``.

    :raises ModelError: when the model has no ``predict_proba`` and its signature says it returns fewer than two
        values per row (it cannot be per-class probabilities): the message names the flavour and what to do.
    """
    native = _native_classifier(model)
    if native is not None:
        if native is not model:  # the raw model gets a DataFrame, as its pyfunc wrapper gives it
            wants_frame = True
        return EstimatorPredictor(
            native, input_schema=input_schema, output_schema=output_schema, probabilities=True, wants_frame=wants_frame
        )
    width = _signature_width(meta)
    if width is not None and width < 2:
        raise ModelError(
            f"predict_probabilities=True, but the MLflow model ({describe_flavor(meta, model)}) has no predict_proba, "
            f"and its signature says it returns {width} value per row, not one probability per class. {_WHAT_TO_DO}"
        )
    return OutputProbabilityPredictor(
        model, describe_flavor(meta, model), input_schema=input_schema, output_schema=output_schema, width=width
    )


class OutputProbabilityPredictor(EstimatorPredictor):
    """A model without ``predict_proba`` whose output is one probability per class (see the module docstring)."""

    def __init__(
        self,
        model: Any,
        flavor: str,
        *,
        input_schema: ModelSchema | None,
        output_schema: ModelSchema | None,
        width: int | None,
    ):
        super().__init__(model, input_schema=input_schema, output_schema=None, probabilities=False, wants_frame=True)
        self.probabilities = True
        self.flavor = flavor
        self.classes: list[Any] | None = None
        self.prediction_schema: ModelSchema | None = None
        if output_schema is not None:
            if len(output_schema) == 1:
                self.prediction_schema = output_schema  # names (and types) the prediction column
            elif width is None or len(output_schema) == width:
                self.classes = output_schema.names  # one name per probability column: the classes
            else:
                raise ModelError(
                    f"The output schema names {len(output_schema)} columns ({', '.join(output_schema.names)}) but "
                    f"the model returns {width} probabilities per row; with predict_probabilities=True give one "
                    "output_schema column per class, or one column naming the prediction."
                )

    def predict(self, features: pa.Table) -> pa.Table:
        result = self.model.predict(self.features(features))
        classes, proba = self._probabilities(result)
        label_type = pa.int64() if all(isinstance(c, int) for c in classes) else pa.string()
        prediction = pa.array([classes[i] for i in np.argmax(proba, axis=1)], type=label_type)
        return output_table([PREDICTION], [prediction], self.prediction_schema, classes=classes, probabilities=proba)

    def _probabilities(self, result: Any) -> tuple[list[Any], np.ndarray]:
        """The classes and the ``[rows, classes]`` matrix of ``result``, checked to be probabilities."""
        columns: list[Any] | None = None
        if isinstance(result, pd.DataFrame):
            columns = [str(c) for c in result.columns]
            matrix = result.to_numpy()
        else:
            matrix = np.asarray(result)
        if matrix.ndim != 2 or matrix.shape[1] < 2:
            shape = "one value per row" if matrix.ndim == 1 else f"an array of shape {matrix.shape}"
            raise ModelError(
                f"predict_probabilities=True, but the MLflow model ({self.flavor}) has no predict_proba, and it "
                f"returns {shape}, not one probability per class. {_WHAT_TO_DO}"
            )
        try:
            matrix = matrix.astype(np.float64, copy=False)
        except (TypeError, ValueError) as err:
            raise ModelError(
                f"predict_probabilities=True, but the MLflow model ({self.flavor}) has no predict_proba, and its "
                f"output ({matrix.dtype}) is not numeric probabilities. {_WHAT_TO_DO}"
            ) from err
        bad = ~np.isfinite(matrix) | (matrix < 0) | (matrix > 1)
        sums = matrix.sum(axis=1)
        if bad.any() or (np.abs(sums - 1) > _SUM_TOLERANCE).any():
            row = int(np.argmax(bad.any(axis=1) | (np.abs(sums - 1) > _SUM_TOLERANCE)))
            raise ModelError(
                f"predict_probabilities=True, but the MLflow model ({self.flavor}) has no predict_proba, and its "
                f"{matrix.shape[1]} output columns are not per-class probabilities (a row holds "
                f"{matrix[row].tolist()}: each value must be within [0, 1] and each row sum to 1). {_WHAT_TO_DO}"
            )
        if self.classes is not None and len(self.classes) != matrix.shape[1]:
            raise ModelError(
                f"The output schema names {len(self.classes)} classes ({', '.join(self.classes)}) but the model "
                f"returns {matrix.shape[1]} probabilities per row; give one output_schema column per class."
            )
        return columns or self.classes or list(range(matrix.shape[1])), matrix
