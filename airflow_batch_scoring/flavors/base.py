"""What every model flavour shares: the :class:`Flavor` interface (detect, process, load) and the :class:`Predictor`
a loaded model is, with the helpers that shape its output (``prediction`` columns, ``probability_<class>`` columns,
the output schema's names and types).

Never imports Airflow, nor any model library (each flavour imports its own when it processes or loads a model).
"""

from __future__ import annotations

import sys
from abc import ABC, abstractmethod
from collections.abc import Iterable
from typing import Any

import numpy as np
import pyarrow as pa

from airflow_batch_scoring.errors import ModelError, SchemaError
from airflow_batch_scoring.flavors.processing import ArtifactRequest
from airflow_batch_scoring.job import ModelSpec
from airflow_batch_scoring.schema import ModelSchema

PREDICTION = "prediction"
PROBABILITY_PREFIX = "probability_"


class Predictor(ABC):
    """A loaded model: turns an Arrow table of input columns into an Arrow table of output columns.

    :param input_schema: the model's own input schema, when the artifact or the model tells it.
    :param output_schema: names (and types) for the model's outputs, in order.
    :param probabilities: whether :meth:`predict` adds one ``probability_<class>`` column per class.
    """

    def __init__(
        self, *, input_schema: ModelSchema | None, output_schema: ModelSchema | None, probabilities: bool = False
    ):
        self.input_schema = input_schema
        self.output_schema = output_schema
        self.probabilities = probabilities

    @abstractmethod
    def predict(self, features: pa.Table) -> pa.Table:
        """Return the output columns for ``features`` (the model's input columns, in schema order)."""


class Flavor(ABC):
    """One kind of model artifact: how to recognise it, process it (driver side) and load it (replica side).

    Built-in flavours live in one module each (:mod:`.sklearn`, :mod:`.mlflow`, :mod:`.onnx`, :mod:`.mojo`); other
    packages add flavours through the entry point group :data:`airflow_batch_scoring.flavors.ENTRY_POINT_GROUP`.
    """

    #: The name a processed model records (``ModelSpec.flavor``); replicas find the flavour to load it by this name.
    name: str
    #: The artifact type users write (``artifact_type="onnx"``) and the processed model records.
    artifact_type: str
    #: Other spellings of the artifact type (lower case).
    aliases: tuple[str, ...] = ()
    #: What a detected artifact looks like, for the message when nothing is detected (``an ONNX file (.onnx)``).
    description: str = ""
    #: The loaded model tells its own input schema (scikit-learn feature names), so processing may leave it unknown.
    input_schema_from_model: bool = False

    def claims_uri(self, uri: str) -> bool:
        """Whether ``uri``, which is not a local path, names a model of this flavour (``models:/...``)."""
        return False

    @abstractmethod
    def detect(self, path: str) -> bool:
        """Whether the existing local ``path`` is an artifact of this flavour (``artifact_type="auto"``)."""

    @abstractmethod
    def process(self, request: ArtifactRequest) -> ModelSpec:
        """Resolve (download, copy) and describe the artifact ``request`` names; the pipeline pins its digest.

        :raises ModelError: when it is not an artifact of this flavour.
        """

    @abstractmethod
    def load(self, spec: ModelSpec, *, probabilities: bool, output_schema: ModelSchema | None) -> Predictor:
        """Load the processed artifact at ``spec.path``.

        :param probabilities: add one ``probability_<class>`` column per class.
        :param output_schema: names (and types) for the outputs (already resolved from the job and the spec).
        :raises ModelError: when it does not hold a loadable model, or has no class probabilities but they are asked.
        """


def output_columns(result: Any) -> tuple[list[str], list[pa.Array]]:
    """The names and columns of a model's output: ``prediction`` for one value per row, else one column each."""
    pd = sys.modules.get("pandas")  # a pandas result means pandas is loaded; DAG parsing must not import it
    if pd is not None and isinstance(result, pd.DataFrame):
        return [str(c) for c in result.columns], [pa.array(result[c].to_numpy()) for c in result.columns]
    if pd is not None and isinstance(result, pd.Series):
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


def output_table(
    names: list[str],
    arrays: list[pa.Array],
    output_schema: ModelSchema | None,
    *,
    classes: Iterable[Any] = (),
    probabilities: np.ndarray | None = None,
) -> pa.Table:
    """The output table: the model's columns, then one ``probability_<class>`` column per class (column ``i`` of the
    ``[rows, classes]`` matrix ``probabilities``), the model's columns named and typed by ``output_schema``.

    :raises SchemaError: when the output schema does not fit the model's columns.
    """
    names, arrays = list(names), list(arrays)
    if probabilities is not None:
        for index, label in enumerate(classes):
            names.append(f"{PROBABILITY_PREFIX}{label}")
            arrays.append(pa.array(probabilities[:, index]))
    if output_schema is not None:
        names, arrays = apply_output_schema(output_schema, names, arrays)
    return pa.Table.from_arrays(arrays, names=names)


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
