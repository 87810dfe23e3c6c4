"""The training callable's checks, in process: a malformed or unimportable reference, a callable that raises or
returns no model each fail with a TrainingError (or ConfigurationError) that names what to fix; ``label_column`` is
passed only to a callable that takes it."""

from __future__ import annotations

import pytest

from airflow_batch_scoring.errors import ConfigurationError, TrainingError, is_retryable
from airflow_batch_scoring.training.callable import call_training, check_reference, load_callable
from tests.support import training


@pytest.mark.parametrize("reference", ["tests.support.training", "a b:c", ":fit", None])
def test_a_malformed_reference_is_refused(reference):
    with pytest.raises(ConfigurationError, match="package.module:function"):
        check_reference(reference)


@pytest.mark.parametrize(("reference", "expected"), [
    ("tests.support.no_such_module:fit", "module 'tests.support.no_such_module' fails to import (ModuleNotFound"),
    ("tests.support.training:no_such_function", "module 'tests.support.training' has no attribute "
                                                "'no_such_function'"),
    ("tests.support.training:FEATURES", "is a list, not a function"),
])
def test_an_unimportable_callable_names_what_is_missing(reference, expected):
    with pytest.raises(TrainingError, match="cannot be imported|not a function") as caught:
        load_callable(reference)
    assert expected in str(caught.value) and not is_retryable(caught.value)


@pytest.mark.parametrize(("function", "expected"), [
    (training.raises, "raised ValueError: the labels are all the same. Nothing was registered."),
    (training.returns_none, "returned None, not a fitted model"),
    (training.returns_text, "returned a builtins.str, which has no predict method"),
])
def test_a_callable_that_raises_or_returns_no_model_fails(function, expected):
    with pytest.raises(TrainingError) as caught:
        call_training(function, "pkg:fit", object(), "label", {})
    assert expected in str(caught.value)


def test_label_column_goes_only_to_a_callable_that_takes_it():
    seen = {}

    def with_label(data, label_column, depth=1):
        seen.update(label_column=label_column, depth=depth)
        return training.MeanModel(0.0)

    def without(data):
        return training.MeanModel(1.0)

    assert call_training(with_label, "pkg:fit", None, "y", {"depth": 3}).mean == 0.0
    assert seen == {"label_column": "y", "depth": 3}
    assert call_training(without, "pkg:fit", None, "y", {}).mean == 1.0
