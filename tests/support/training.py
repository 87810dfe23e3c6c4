"""Training callables for the training tests (the training process imports them: ``tests.support.training:...``)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

FEATURES = ["f0", "f1", "f2", "f3", "f4"]


def logistic(frame: pd.DataFrame, label_column: str, c: float = 1.0):
    """A scikit-learn logistic regression on every feature (``c``: its inverse regularisation)."""
    from sklearn.linear_model import LogisticRegression

    x = frame.drop(columns=[label_column])
    return LogisticRegression(C=c, max_iter=500).fit(x, frame[label_column])


def forest_from_batches(batches, label_column: str):
    """A histogram gradient boosting classifier fitted on the Arrow batches gathered."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    frame = pa.Table.from_batches(list(batches)).to_pandas()
    return HistGradientBoostingClassifier(max_iter=20, random_state=0).fit(
        frame.drop(columns=[label_column]), frame[label_column])


class MeanModel:
    """Not a scikit-learn estimator: predicts the training labels' mean (logged as a pyfunc model)."""

    def __init__(self, mean: float):
        self.mean = mean

    def predict(self, x):
        return np.full(len(x), self.mean)


def mean_model(frame: pd.DataFrame, label_column: str) -> MeanModel:
    return MeanModel(float(frame[label_column].astype(float).mean()))


def returns_none(frame: pd.DataFrame) -> None:
    return None


def returns_text(frame: pd.DataFrame) -> str:
    return "not a model"


def raises(frame: pd.DataFrame) -> None:
    raise ValueError("the labels are all the same")
