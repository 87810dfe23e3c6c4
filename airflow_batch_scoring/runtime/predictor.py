"""The base of every loaded model: a :class:`Predictor` turns an Arrow table of input columns into prediction columns.

The flavours (:mod:`~airflow_batch_scoring.runtime.predictors` for scikit-learn, MLflow and ONNX,
:mod:`~airflow_batch_scoring.runtime.mojo`, :mod:`~airflow_batch_scoring.runtime.probabilities`) build on it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from airflow_batch_scoring.errors import ModelError, SchemaError
from airflow_batch_scoring.schema import ModelSchema

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
        """The model's input: one C-contiguous float64 matrix when every column is a float (row-wise models such
        as tree ensembles read rows; measured 25 % faster than the column-major frame ``to_pandas`` builds),
        wrapped without a copy in a DataFrame when the model knows its feature names; a DataFrame otherwise."""
        if all(pa.types.is_floating(t) for t in table.schema.types):
            matrix = _row_major(table)
            return pd.DataFrame(matrix, columns=table.column_names, copy=False) if self.wants_frame else matrix
        frame = table.to_pandas(split_blocks=False, self_destruct=False)
        return frame if self.wants_frame else frame.to_numpy()

    def predict(self, features: pa.Table) -> pa.Table:
        """Return the output columns for ``features`` (the model's input columns, in schema order)."""
        x = self._features(features)
        result = self.model.predict(x)
        names, arrays = output_columns(result)
        if self.probabilities:
            proba = np.asarray(self.model.predict_proba(x))
            for index, label in enumerate(getattr(self.model, "classes_", range(proba.shape[1]))):
                names.append(f"{PROBABILITY_PREFIX}{label}")
                arrays.append(pa.array(proba[:, index]))
        if self.output_schema is not None:
            names, arrays = apply_output_schema(self.output_schema, names, arrays)
        return pa.Table.from_arrays(arrays, names=names)


_TILE_ROWS = 8192


def _row_major(table: pa.Table) -> np.ndarray:
    """Copy the float columns of ``table`` into one C-contiguous float64 matrix (nulls become NaN).

    The copy goes tile by tile (8,192 rows of every column, then the next rows), so the rows being written stay in
    cache: 2.8x faster than filling whole columns one after the other (0.064 vs 0.178 s per 2M rows x 20 columns).
    """
    matrix = np.empty((table.num_rows, table.num_columns), dtype=np.float64)
    start = 0
    for batch in table.to_batches():
        columns = [column.to_numpy(zero_copy_only=False) for column in batch.columns]
        for first in range(0, batch.num_rows, _TILE_ROWS):
            last = min(first + _TILE_ROWS, batch.num_rows)
            rows = matrix[start + first : start + last]
            for index, values in enumerate(columns):
                rows[:, index] = values[first:last]
        start += batch.num_rows
    return matrix


def output_columns(result: Any) -> tuple[list[str], list[pa.Array]]:
    """The names and columns of a model's output: ``prediction`` for one value per row, else one column each."""
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


def apply_output_schema(
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
