"""Models that misbehave on purpose, for the fault tests. Replicas unpickle them: keep this module importable
from the tests folder (the tests put it on the replicas' PYTHONPATH)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import numpy as np
import pandas as pd
from helpers import FEATURES

#: rows whose f4 equals this are scored slowly (SlowWhereMarked) or kill the replica (KillOnce).
MARK = 4242.0


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
