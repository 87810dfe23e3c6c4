"""An MLflow model folder read without MLflow: its ``MLmodel`` file, and the native model of the flavours this
provider loads itself.

Importing ``mlflow`` costs a process about 0.8 s, and loading a model through it another 0.4 s (measured here:
``benchmarks/README.md``), once in the driver and once in every replica. Neither is needed for most models: the
``MLmodel`` file is YAML that names each flavour's files and how they were written, and the signature is JSON in it.
So the driver reads schemas and metadata from it directly, and a replica loads these flavours as MLflow's own
loaders do (same files, same deserialisers), without importing MLflow:

- ``sklearn``, serialised with ``skops`` (MLflow 3's default; with the model's recorded trusted types), ``cloudpickle``
  or ``pickle``;
- ``xgboost`` models of the scikit-learn API (``XGBClassifier``, ``XGBRegressor``, ...), from their ``.xgb``/``.json``
  file;
- ``lightgbm``: a ``Booster`` from its model file, or a model of the scikit-learn API as its serialisation format says.

Everything else (another flavour, a custom ``PythonModel``, an XGBoost ``Booster``, a flavour with ``code_paths``, or
``MLFLOW_ALLOW_PICKLE_DESERIALIZATION`` set to anything but true) is loaded by MLflow, as before: :func:`native_model`
returns ``None``. The digest check does not change: a replica loads from its verified private copy either way
(:mod:`airflow_batch_scoring.runtime.verified`).

Never imports Airflow or MLflow.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from airflow_batch_scoring.errors import ModelError
from airflow_batch_scoring.schema import ModelSchema


@dataclass(frozen=True)
class MLmodelFile:
    """What an ``MLmodel`` file says: its flavours (each one's configuration), metadata and signature.

    :param folder: the model folder (the ``MLmodel`` file's).
    :param flavors: each flavour's configuration, by name (``python_function``, ``sklearn``, ...).
    :param metadata: the model's ``metadata`` mapping, if any.
    :param signature_inputs: the signature's inputs as the JSON text MLflow writes, if any.
    :param signature_outputs: the signature's outputs, likewise.
    """

    folder: str
    flavors: Mapping[str, Mapping[str, Any]]
    metadata: Mapping[str, Any] | None = None
    signature_inputs: str | None = None
    signature_outputs: str | None = None

    @classmethod
    def read(cls, folder: str) -> MLmodelFile:
        """Read ``<folder>/MLmodel``.

        :raises ModelError: when the file is missing, is not YAML, or is not a mapping with ``flavors``.
        """
        import yaml  # PyYAML: a dependency of Airflow and of MLflow

        path = os.path.join(folder, "MLmodel")
        try:
            with open(path, encoding="utf-8") as stream:
                content = yaml.safe_load(stream)
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
            raise ModelError(f"{folder!r} is not a readable MLflow model folder (its MLmodel file: {err}).") from err
        flavors = content.get("flavors") if isinstance(content, dict) else None
        if not isinstance(flavors, dict) or not flavors:
            raise ModelError(
                f"{path!r} is not an MLflow MLmodel file: it names no flavors. Point model at the folder "
                "mlflow.<flavor>.log_model/save_model wrote."
            )
        signature = content.get("signature") or {}
        metadata = content.get("metadata")
        return cls(
            folder=folder,
            flavors={str(name): dict(conf or {}) for name, conf in flavors.items()},
            metadata=metadata if isinstance(metadata, dict) else None,
            signature_inputs=signature.get("inputs") if isinstance(signature, dict) else None,
            signature_outputs=signature.get("outputs") if isinstance(signature, dict) else None,
        )

    def input_schema(self) -> ModelSchema | None:
        """The signature's input columns (``None`` without a signature, or for a tensor signature)."""
        return ModelSchema.from_mlflow_json(self.signature_inputs)

    def output_schema(self) -> ModelSchema | None:
        """The signature's output columns (``None`` without a signature, or for a tensor signature)."""
        return ModelSchema.from_mlflow_json(self.signature_outputs)


@dataclass(frozen=True)
class NativeModel:
    """A model loaded without MLflow.

    :param model: the estimator (with ``predict``, and ``predict_proba`` for a classifier).
    :param wants_frame: give it a DataFrame (what MLflow's pyfunc wrapper gives it, or an estimator fitted on one).
    """

    model: Any
    wants_frame: bool


def native_model(model_file: MLmodelFile) -> NativeModel | None:
    """Load the model of ``model_file`` without MLflow, as MLflow's loader of its flavour would (see the module
    docstring), or return ``None`` when MLflow must load it.

    :raises ModelError: when its files cannot be deserialised (the message names the file and the error).
    """
    if not _deserialisation_allowed() or any(conf.get("code") for conf in model_file.flavors.values()):
        return None
    flavors = model_file.flavors
    for name, loader in (("sklearn", _sklearn), ("xgboost", _xgboost), ("lightgbm", _lightgbm)):
        if name in flavors:
            return loader(model_file.folder, flavors[name])
    return None


def _deserialisation_allowed() -> bool:
    """Whether MLflow's own switch allows loading a serialised model (unset means yes, as in MLflow); any other value
    than true leaves the model to MLflow, which applies (and explains) its rule."""
    return os.environ.get("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "true").strip().lower() in ("true", "1")


def _member(folder: str, conf: Mapping[str, Any], key: str) -> str | None:
    """The file of the flavour's configuration ``key``, when it is a file inside ``folder``."""
    name = conf.get(key)
    if not isinstance(name, str) or not name:
        return None
    root = os.path.realpath(folder)
    path = os.path.realpath(os.path.join(root, name))
    return path if path.startswith(root + os.sep) and os.path.isfile(path) else None


def _deserialise(path: str, serialization_format: str, trusted: Any) -> Any:
    """Read the scikit-learn-style file ``path`` written in ``serialization_format`` (``skops``, ``cloudpickle`` or
    ``pickle``), as ``mlflow.sklearn`` does."""
    try:
        if serialization_format == "skops":
            import skops.io

            return skops.io.load(path, trusted=trusted)
        with open(path, "rb") as stream:
            if serialization_format == "cloudpickle":
                import cloudpickle

                return cloudpickle.load(stream)
            return pickle.load(stream)
    except Exception as err:
        raise ModelError(
            f"Cannot load the MLflow model file {path!r} ({serialization_format}; {type(err).__name__}: {err})."
        ) from err


_SERIALIZATION_FORMATS = ("skops", "cloudpickle", "pickle")


def _sklearn(folder: str, conf: Mapping[str, Any]) -> NativeModel | None:
    serialization_format = conf.get("serialization_format", "pickle")
    path = _member(folder, conf, "pickled_model")
    if path is None or serialization_format not in _SERIALIZATION_FORMATS:
        return None  # MLflow says what is wrong with it
    model = _deserialise(path, serialization_format, conf.get("skops_trusted_types"))
    return NativeModel(model, wants_frame=getattr(model, "feature_names_in_", None) is not None)


def _xgboost(folder: str, conf: Mapping[str, Any]) -> NativeModel | None:
    module_name, _, class_name = str(conf.get("model_class", "")).rpartition(".")
    path = _member(folder, conf, "data")
    if module_name != "xgboost.sklearn" or path is None:
        return None  # a Booster: MLflow's wrapper builds a DMatrix
    try:
        import xgboost.sklearn

        model_class = getattr(xgboost.sklearn, class_name, None)
        if not (isinstance(model_class, type) and issubclass(model_class, xgboost.sklearn.XGBModel)):
            return None
        model = model_class()
        model.load_model(path)
    except Exception as err:
        raise ModelError(f"Cannot load the XGBoost model file {path!r} ({type(err).__name__}: {err}).") from err
    return NativeModel(model, wants_frame=True)


def _lightgbm(folder: str, conf: Mapping[str, Any]) -> NativeModel | None:
    path = _member(folder, conf, "data")
    if path is None:
        return None
    if conf.get("model_class", "lightgbm.basic.Booster") != "lightgbm.basic.Booster":
        serialization_format = conf.get("serialization_format", "cloudpickle")
        if serialization_format not in _SERIALIZATION_FORMATS:
            return None
        return NativeModel(_deserialise(path, serialization_format, conf.get("skops_trusted_types")), True)
    try:
        import lightgbm

        return NativeModel(lightgbm.Booster(model_file=path), wants_frame=True)
    except Exception as err:
        raise ModelError(f"Cannot load the LightGBM model file {path!r} ({type(err).__name__}: {err}).") from err
