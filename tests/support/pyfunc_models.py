"""Custom MLflow pyfunc models for the probability tests. Replicas unpickle them: the tests put the checkout on
the replicas' PYTHONPATH (``tests.support.pyfunc_models``, the ``replicas_import_tests`` fixture)."""

from __future__ import annotations

from typing import Any

import mlflow.pyfunc
import pandas as pd


class ClassProbabilities(mlflow.pyfunc.PythonModel):
    """Returns a scikit-learn classifier's ``predict_proba`` as a DataFrame with one column per class."""

    def __init__(self, classifier: Any):
        self.classifier = classifier

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> pd.DataFrame:
        proba = self.classifier.predict_proba(model_input)
        return pd.DataFrame(proba, columns=[str(c) for c in self.classifier.classes_])


class Scores(mlflow.pyfunc.PythonModel):
    """Returns two scores per row that are not probabilities (a value above 1)."""

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> pd.DataFrame:
        return pd.DataFrame({"low": model_input["f0"] * 0 + 0.5, "high": model_input["f0"] * 0 + 2.5})
