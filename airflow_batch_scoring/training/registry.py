"""Log a trained model to MLflow, register it as a new version, set its alias, and record the training data.

A scikit-learn estimator is logged with the ``sklearn`` flavour (skops, its types trusted as saved; cloudpickle when
skops cannot write it); any other model with ``predict`` as a ``pyfunc`` model around it (cloudpickle). Both carry
the signature (the sample's features, the model's predictions on them) and an input example. The run gets the tags
of :mod:`airflow_batch_scoring.training.job` (``batch_scoring.training.*``).

Imported by the training process (and where a pyfunc model it logged is loaded); never imports Airflow.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from typing import Any

from mlflow.pyfunc import PythonModel

from airflow_batch_scoring.errors import TrainingError

_ARTIFACT = "model"
#: the model version's tag naming the training job (one task instance, every try) that registered it.
TAG_JOB = "batch_scoring.training.job_id"
TAG_FLAVOR = "batch_scoring.training.flavor"


def is_sklearn(model: Any) -> bool:
    try:
        from sklearn.base import BaseEstimator
    except ImportError:
        return False
    return isinstance(model, BaseEstimator)


class PredictingModel(PythonModel):
    """The pyfunc model around a trained model that only promises ``predict`` (pickled with it; loading it imports
    this module)."""

    def __init__(self, model: Any):
        self.model = model

    def predict(self, context, model_input, params=None):  # (no type hints: MLflow would check them)
        return self.model.predict(model_input)


def _log_sklearn(model: Any, signature: Any, example: Any, name: str) -> Any:
    import mlflow.sklearn
    import sklearn

    requirements = [f"scikit-learn=={sklearn.__version__}"]  # (skips MLflow's slow requirement inference)
    try:
        import skops.io

        trusted = skops.io.get_untrusted_types(data=skops.io.dumps(model))
        return mlflow.sklearn.log_model(model, name=_ARTIFACT, signature=signature, input_example=example,
                                        registered_model_name=name, serialization_format="skops",
                                        skops_trusted_types=trusted, pip_requirements=requirements)
    except ImportError:
        pass
    except Exception:  # skops cannot write every estimator: fall back to cloudpickle
        pass
    return mlflow.sklearn.log_model(model, name=_ARTIFACT, signature=signature, input_example=example,
                                    registered_model_name=name, serialization_format="cloudpickle",
                                    pip_requirements=requirements)


def log_and_register(
    model: Any,
    *,
    sample: Any,
    register_as: str,
    alias: str,
    tags: Mapping[str, str],
    run_name: str,
    tracking_uri: str | None,
    registry_uri: str | None,
    experiment: str | None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Log ``model`` with its signature and an input example, register a new version of ``register_as``, set
    ``alias`` on it; return ``{"model_uri", "version", "run_id", "flavor", "name", "alias"}``.

    :param sample: a few rows of the features (pandas), for the signature and the input example; cut to the
        model's ``feature_names_in_`` when it has them.
    :raises TrainingError: when the model cannot predict on the sample.
    """
    import mlflow
    from mlflow.models import infer_signature

    names = getattr(model, "feature_names_in_", None)  # a scikit-learn model fitted on named columns
    if names is not None and set(names) <= set(sample.columns):
        sample = sample[list(names)]  # the signature names what the model takes (not an id beside the features)
    try:
        predictions = model.predict(sample)
    except Exception as err:
        raise TrainingError(
            f"The trained model cannot predict on the training features ({type(err).__name__}: {err}); the training "
            "callable must return a model fitted on the features without the label. Nothing was registered."
        ) from err
    signature = infer_signature(sample, predictions)
    example = sample.head(5)
    if tracking_uri:
        mlflow.set_tracking_uri(tracking_uri)
    if registry_uri:
        mlflow.set_registry_uri(registry_uri)
    if experiment:
        mlflow.set_experiment(experiment)
    flavor = "sklearn" if is_sklearn(model) else "pyfunc"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # skops and MLflow warn about what the caller cannot change
        with mlflow.start_run(run_name=run_name) as run:
            mlflow.set_tags(dict(tags))
            if flavor == "sklearn":
                info = _log_sklearn(model, signature, example, register_as)
            else:
                import cloudpickle
                import mlflow.pyfunc

                info = mlflow.pyfunc.log_model(
                    name=_ARTIFACT, python_model=PredictingModel(model), signature=signature, input_example=example,
                    registered_model_name=register_as, pip_requirements=[f"cloudpickle=={cloudpickle.__version__}"],
                )
    version = str(info.registered_model_version)
    client = mlflow.MlflowClient(tracking_uri=tracking_uri, registry_uri=registry_uri)
    client.set_model_version_tag(register_as, version, TAG_JOB, run_name)  # a retry of this job finds it
    client.set_model_version_tag(register_as, version, TAG_FLAVOR, flavor)
    client.set_registered_model_alias(register_as, alias, version)
    log(f"Registered {register_as} version {version} ({flavor}) from run {run.info.run_id}; alias {alias!r} set")
    return {"model_uri": f"models:/{register_as}/{version}", "version": version, "run_id": run.info.run_id,
            "flavor": flavor, "name": register_as, "alias": alias}


def find_registered(
    *, register_as: str, job_id: str, digest: str | None, tracking_uri: str | None, registry_uri: str | None
) -> dict[str, Any] | None:
    """The version an earlier try of the training job ``job_id`` registered from the same input (its recorded
    digest equal to ``digest``; any, when the input has no digest), or ``None``: a retried task then does not
    register a second version. Returns what :func:`log_and_register` returned, with the run's training tags."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from airflow_batch_scoring.training.job import TAG_DIGEST, TAG_LABEL, TAG_ROWS

    client = mlflow.MlflowClient(tracking_uri=tracking_uri, registry_uri=registry_uri)
    try:
        versions = client.search_model_versions(f"name='{register_as}'")
    except MlflowException:
        return None  # no such model yet
    for found in sorted(versions, key=lambda v: int(v.version), reverse=True):
        if (found.tags or {}).get(TAG_JOB) != job_id or not found.run_id:
            continue
        run_tags = client.get_run(found.run_id).data.tags
        if digest is not None and run_tags.get(TAG_DIGEST) != digest:
            continue  # the input changed since (a cleared task on new data): train anew
        return {"model_uri": f"models:/{register_as}/{found.version}", "version": str(found.version),
                "run_id": found.run_id, "flavor": found.tags.get(TAG_FLAVOR), "name": register_as,
                "rows": int(run_tags.get(TAG_ROWS) or 0), "digest": run_tags.get(TAG_DIGEST),
                "label_column": run_tags.get(TAG_LABEL)}
    return None
