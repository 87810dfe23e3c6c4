"""The benchmark's two models, trained once on 100k rows of the data set's distribution (a pandas DataFrame, so they
keep feature names) and saved with joblib: ``LogisticRegression`` (cheap, I/O-bound scoring) and
``HistGradientBoostingClassifier`` with exactly 100 trees (compute-bound)."""

from __future__ import annotations

import json
import time
from pathlib import Path

from harness.data import DATA, FEATURES, MODELS, SEED, Log, labels


def train_models(log: Log) -> dict[str, Path]:
    """Train both models (unless trained with this scikit-learn already); their paths by key (``lr``, ``hgb``)."""
    import joblib
    import numpy as np
    import pandas as pd
    import sklearn

    folder = DATA / "models"
    paths = {key: folder / f"{key}.joblib" for key in MODELS}
    meta = folder / "models.json"
    if all(p.exists() for p in paths.values()) and meta.exists():
        if json.loads(meta.read_text()).get("sklearn") == sklearn.__version__:
            return paths
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([SEED, 1000])
    x = np.round(rng.standard_normal((100_000, len(FEATURES))), 6)
    frame = pd.DataFrame(x, columns=FEATURES)
    y = labels(x)
    info = {"sklearn": sklearn.__version__, "train_rows": len(frame), "positive_share": float(y.mean())}
    started = time.perf_counter()
    lr = LogisticRegression(max_iter=1000).fit(frame, y)
    # early_stopping=False: exactly 100 trees (the default turns early stopping on above 10k rows).
    hgb = HistGradientBoostingClassifier(max_iter=100, early_stopping=False, random_state=0).fit(frame, y)
    info.update(
        lr_train_accuracy=float(lr.score(frame, y)),
        hgb_train_accuracy=float(hgb.score(frame, y)),
        hgb_n_iter=int(hgb.n_iter_),
        train_s=round(time.perf_counter() - started, 2),
    )
    joblib.dump(lr, paths["lr"])
    joblib.dump(hgb, paths["hgb"])
    meta.write_text(json.dumps(info))
    log(f"trained models: {info}")
    return paths


def model_info() -> dict:
    """What :func:`train_models` recorded about the models (scikit-learn version, train accuracy, trees)."""
    return json.loads((DATA / "models" / "models.json").read_text())
