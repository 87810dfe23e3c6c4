"""The benchmark's data set: an int64 ``id`` and 20 float64 features ~ N(0, 1) rounded to 6 decimals, CSV without
header, generated once into ``benchmarks/data/`` (git-ignored); the first rows are the same for every size."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent  # benchmarks/
DATA = HERE / "data"
RESULTS = HERE / "results"
FEATURES = [f"f{i}" for i in range(20)]
NAMES = ["id"] + FEATURES
BATCH = 100_000
CHUNK = 500_000
SEED = 20240611
MODELS = {"lr": "LogisticRegression", "hgb": "HistGradientBoostingClassifier(max_iter=100)"}
GIB = 1024**3

Log = Callable[[str], None]


def chunk(index: int, rows: int):
    """Rows ``[index * CHUNK, index * CHUNK + rows)`` of the data set: ids and 20 N(0, 1) features rounded to 1e-6."""
    import numpy as np

    rng = np.random.default_rng([SEED, index])
    x = np.round(rng.standard_normal((rows, len(FEATURES))), 6)
    ids = np.arange(index * CHUNK, index * CHUNK + rows, dtype=np.int64)
    return ids, x


def labels(x):
    """A non-linear binary target, so that the boosted trees have something to learn."""
    import numpy as np

    w = np.random.default_rng([SEED, 999]).normal(size=x.shape[1])
    logit = x @ w * 0.5 + 1.5 * np.sin(2 * x[:, 0]) * x[:, 1] + 0.8 * (x[:, 2] ** 2 - 1) - 0.7 * np.abs(x[:, 3])
    noise = np.random.default_rng([SEED, 998]).logistic(size=len(x))
    return (logit + noise > 0).astype(np.int64)


def data_file(rows: int) -> Path:
    return DATA / f"scoring_{rows}.csv"


def generate_data(rows: int, log: Log) -> Path:
    """Write ``rows`` rows (id, f0..f19) as CSV without header, once; the first rows are the same for every size."""
    import pyarrow as pa
    import pyarrow.csv as pa_csv

    path = data_file(rows)
    meta = path.with_suffix(".json")
    if path.exists() and meta.exists() and json.loads(meta.read_text()).get("size") == path.stat().st_size:
        return path
    DATA.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    tmp = path.with_suffix(".csv.tmp")
    with open(tmp, "wb") as f:
        for index in range((rows + CHUNK - 1) // CHUNK):
            ids, x = chunk(index, min(CHUNK, rows - index * CHUNK))
            table = pa.Table.from_arrays([pa.array(ids)] + [pa.array(x[:, i]) for i in range(x.shape[1])], names=NAMES)
            pa_csv.write_csv(table, f, write_options=pa_csv.WriteOptions(include_header=False))
    tmp.rename(path)
    meta.write_text(json.dumps({"rows": rows, "seed": SEED, "size": path.stat().st_size}))
    log(
        f"generated {path.name}: {rows:,} rows, {path.stat().st_size / 1e6:,.0f} MB "
        f"in {time.perf_counter() - started:.1f}s"
    )
    return path


def remove_data(path: Path) -> None:
    """Remove a generated data file and its description."""
    path.unlink(missing_ok=True)
    path.with_suffix(".json").unlink(missing_ok=True)


def warm_page_cache(path: Path) -> None:
    """Read ``path`` once, so that every measurement reads it from memory."""
    with open(path, "rb") as f:
        while f.read(64 << 20):
            pass
