"""The training callable: ``package.module:function``, imported, called with the labeled data, its model checked.

Shared with the runtime: never imports Airflow.
"""

from __future__ import annotations

import importlib
import inspect
import re
from collections.abc import Callable, Mapping
from typing import Any

from airflow_batch_scoring.errors import BatchScoringError, ConfigurationError, TrainingError

_REFERENCE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


def check_reference(reference: Any) -> str:
    """``reference`` when it has the form ``package.module:function``.

    :raises ConfigurationError: otherwise, showing the form.
    """
    if not isinstance(reference, str) or not _REFERENCE.match(reference.strip()):
        raise ConfigurationError(
            f"training={reference!r} is not an importable callable: give it as 'package.module:function' (a module "
            "the training process can import, and a function in it that returns a fitted model)."
        )
    return reference.strip()


def load_callable(reference: str) -> Callable[..., Any]:
    """Import the training callable.

    :raises TrainingError: naming the module or the attribute that cannot be found, and why.
    """
    module_name, _, attribute = check_reference(reference).partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as err:  # ImportError, or the module's own error at import
        raise TrainingError(
            f"The training callable {reference!r} cannot be imported: module {module_name!r} fails to import "
            f"({type(err).__name__}: {err}). Install it where the training runs (the worker, or the runtime image), "
            "or fix the module name."
        ) from None
    value: Any = module
    for part in attribute.split("."):
        if not hasattr(value, part):
            raise TrainingError(
                f"The training callable {reference!r} cannot be imported: module {module_name!r} has no attribute "
                f"{attribute!r}. Fix the name after the ':'."
            )
        value = getattr(value, part)
    if not callable(value):
        raise TrainingError(f"The training callable {reference!r} is a {type(value).__name__}, not a function.")
    return value


def call_training(
    function: Callable[..., Any], reference: str, data: Any, label_column: str, kwargs: Mapping[str, Any]
) -> Any:
    """Call ``function(data, [label_column=...], **kwargs)`` (``label_column`` when it takes it) and return its model.

    :raises TrainingError: with the callable's own error when it raises, or when it returns no fitted model.
    """
    arguments = dict(kwargs)
    try:
        parameters: Mapping[str, inspect.Parameter] = inspect.signature(function).parameters
    except (TypeError, ValueError):
        parameters = {}  # a builtin without a signature: data and the given keywords only
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    if "label_column" in parameters or takes_any:
        arguments.setdefault("label_column", label_column)
    try:
        model = function(data, **arguments)
    except BatchScoringError:
        raise  # the input's own error (a missing label column, a bad value), met while the callable read it
    except Exception as err:
        raise TrainingError(
            f"The training callable {reference!r} raised {type(err).__name__}: {err}. Nothing was registered."
        ) from err
    check_model(model, reference)
    return model


def check_model(model: Any, reference: str) -> None:
    """Refuse what is not a fitted model (``None``, or an object without ``predict``).

    :raises TrainingError: saying what it returned.
    """
    if model is None:
        raise TrainingError(
            f"The training callable {reference!r} returned None, not a fitted model: return the model (an object "
            "with a predict method, e.g. a fitted scikit-learn estimator). Nothing was registered."
        )
    if not callable(getattr(model, "predict", None)):
        raise TrainingError(
            f"The training callable {reference!r} returned a {type(model).__module__}.{type(model).__qualname__}, "
            "which has no predict method: return the fitted model. Nothing was registered."
        )
