"""Models whose prediction is known (``2 * f0``), some misbehaving on purpose, for the fault and publish tests.
Replicas unpickle them as ``tests.support.fault_models.*``: the tests put the checkout on the replicas' PYTHONPATH
(the ``replicas_import_tests`` fixture)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import numpy as np
import pandas as pd

from tests.support.helpers import FEATURES, make_frame

#: rows whose f4 equals this are scored slowly (SlowWhereMarked) or kill the replica (KillOnce).
MARK = 4242.0


def marked_frame(rows: int, seed: int, marked: range) -> pd.DataFrame:
    frame = make_frame(rows, seed=seed)
    frame.loc[frame.index[marked.start:marked.stop], "f4"] = MARK
    return frame


def check_exactly_once(frame: pd.DataFrame, output) -> None:
    """Every input id once, each with the model's prediction ``2 * f0``."""
    out = output.to_pandas()
    out = out.assign(id=out["id"].astype("int64")).sort_values("id").reset_index(drop=True)
    assert out["id"].tolist() == sorted(frame["id"].tolist())
    expected = frame.sort_values("id")["f0"].to_numpy() * 2
    np.testing.assert_array_equal(out["prediction"].to_numpy(), expected)


class Doubler:
    """Predicts ``2 * f0`` (exact in every format), so a test knows each row's prediction."""

    def __init__(self) -> None:
        self.feature_names_in_ = np.array(FEATURES, dtype=object)

    def predict(self, x):
        return x["f0"].to_numpy() * 2


class SlowWhereMarked:
    """Predicts ``2 * f0``; a batch holding a marked row takes 0.25 s, so its shard finishes last."""

    feature_names_in_ = np.array(FEATURES, dtype=object)

    def predict(self, x: pd.DataFrame) -> np.ndarray:
        if (x["f4"] == MARK).any():
            time.sleep(0.25)
        return x["f0"].to_numpy() * 2


class KillOnce:
    """Predicts ``2 * f0``; the first replica that meets a marked row kills itself with SIGKILL (mid-write: earlier
    batches are already in its part file), leaving ``flag`` behind so that a retry scores normally."""

    feature_names_in_ = np.array(FEATURES, dtype=object)

    def __init__(self, flag: Path):
        self.flag = str(flag)

    def predict(self, x: pd.DataFrame) -> np.ndarray:
        if (x["f4"] == MARK).any() and not os.path.exists(self.flag):
            Path(self.flag).touch()
            os.kill(os.getpid(), signal.SIGKILL)
        return x["f0"].to_numpy() * 2


class KillTimes:
    """Predicts ``2 * f0``; the first ``times`` replicas that meet a marked row kill themselves with SIGKILL (one
    flag file each in ``folder``), so that only the attempt after them scores normally."""

    feature_names_in_ = np.array(FEATURES, dtype=object)

    def __init__(self, folder: Path, times: int):
        self.folder, self.times = str(folder), times

    def predict(self, x: pd.DataFrame) -> np.ndarray:
        if (x["f4"] == MARK).any() and len(os.listdir(self.folder)) < self.times:
            Path(self.folder, f"killed-{len(os.listdir(self.folder))}").touch()
            os.kill(os.getpid(), signal.SIGKILL)
        return x["f0"].to_numpy() * 2
