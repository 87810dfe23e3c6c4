"""The peers: what a user would write instead of the engine, each a fresh child process that reads the whole input,
predicts with the model, and writes (id, prediction) in the input's format (CSV without header, or Parquet).

- ``pandas``: ``pandas.read_csv`` / ``read_parquet`` -> ``model.predict`` -> ``to_csv`` / ``to_parquet``.
- ``polars``: polars' reader -> the features as one matrix in a DataFrame with their names -> ``model.predict`` ->
  polars' writer.
- ``duckdb``: ``read_csv`` / ``read_parquet`` in DuckDB -> an Arrow table -> one matrix -> ``model.predict`` -> Arrow's
  writer.
- ``pyfunc``: the naive MLflow script: ``mlflow.pyfunc.load_model(folder)`` -> pandas read -> ``predict`` -> pandas
  write.

Run as ``python benchmarks/peers.py <peer> <model> <input> <output>``; prints one JSON line (rows, in-process phase
times, peak RSS). The models (joblib files, MLflow folders, a registry) and the Parquet input are made by
:func:`prepare`; the outputs are checked against the model's own predictions by :func:`check_output`.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from harness.data import DATA, FEATURES, NAMES, Log
from harness.measure import self_rss

#: MLflow 3 writes scikit-learn models with skops by default; a HistGradientBoosting model needs this type trusted.
HGB_TRUSTED = ["sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"]
REGISTRY = DATA / "mlflow" / "registry.db"


def _is_csv(path: str) -> bool:
    return path.endswith(".csv")


def peer_pandas(model_path: str, data: str, out: str) -> dict[str, Any]:
    import joblib

    return _pandas_job(joblib.load(model_path), data, out)


def _pandas_job(model: Any, data: str, out: str) -> dict[str, Any]:
    """Read ``data`` with pandas, predict with ``model``, write (id, prediction) with pandas."""
    import pandas as pd

    t0 = time.perf_counter()
    df = pd.read_csv(data, header=None, names=NAMES) if _is_csv(data) else pd.read_parquet(data)
    t1 = time.perf_counter()
    result = df[["id"]].copy()
    result["prediction"] = model.predict(df[FEATURES])
    t2 = time.perf_counter()
    if _is_csv(out):
        result.to_csv(out, index=False, header=False)
    else:
        result.to_parquet(out, index=False)
    return _phases(len(df), t0, t1, t2, time.perf_counter())


def peer_polars(model_path: str, data: str, out: str) -> dict[str, Any]:
    import joblib
    import pandas as pd
    import polars as pl

    model = joblib.load(model_path)
    t0 = time.perf_counter()
    df = pl.read_csv(data, has_header=False, new_columns=NAMES) if _is_csv(data) else pl.read_parquet(data)
    t1 = time.perf_counter()
    features = pd.DataFrame(df.select(FEATURES).to_numpy(order="c"), columns=FEATURES, copy=False)
    result = pl.DataFrame({"id": df["id"], "prediction": model.predict(features)})
    t2 = time.perf_counter()
    if _is_csv(out):
        result.write_csv(out, include_header=False)
    else:
        result.write_parquet(out)
    return _phases(df.height, t0, t1, t2, time.perf_counter())


def peer_duckdb(model_path: str, data: str, out: str) -> dict[str, Any]:
    import duckdb
    import joblib
    import numpy as np
    import pandas as pd
    import pyarrow as pa

    model = joblib.load(model_path)
    t0 = time.perf_counter()
    if _is_csv(data):
        columns = ", ".join(f"'{name}': '{'BIGINT' if name == 'id' else 'DOUBLE'}'" for name in NAMES)
        query = f"SELECT * FROM read_csv('{data}', header = false, columns = {{{columns}}})"
    else:
        query = f"SELECT * FROM read_parquet('{data}')"
    table = duckdb.sql(query).fetch_arrow_table()
    t1 = time.perf_counter()
    matrix = np.column_stack([table.column(name).to_numpy() for name in FEATURES])
    prediction = model.predict(pd.DataFrame(matrix, columns=FEATURES, copy=False))
    result = pa.table({"id": table.column("id"), "prediction": prediction})
    t2 = time.perf_counter()
    _write_arrow(result, out)
    return _phases(table.num_rows, t0, t1, t2, time.perf_counter())


def peer_pyfunc(model_folder: str, data: str, out: str) -> dict[str, Any]:
    import mlflow.pyfunc

    return _pandas_job(mlflow.pyfunc.load_model(model_folder), data, out)


def _write_arrow(table: Any, out: str) -> None:
    import pyarrow.csv as pa_csv
    import pyarrow.parquet as pq

    if _is_csv(out):
        pa_csv.write_csv(table, out, write_options=pa_csv.WriteOptions(include_header=False))
    else:
        pq.write_table(table, out)


def _phases(rows: int, t0: float, t1: float, t2: float, t3: float) -> dict[str, Any]:
    return {"rows": rows, "read_s": t1 - t0, "predict_s": t2 - t1, "write_s": t3 - t2, **self_rss()}


PEERS = {"pandas": peer_pandas, "polars": peer_polars, "duckdb": peer_duckdb, "pyfunc": peer_pyfunc}


# --- inputs, models and checks (run in the benchmark's own process) ----------------------------------------------


def parquet_input(csv: Path, log: Log) -> Path:
    """The CSV data set as one Parquet file (row groups of 131,072 rows, so that two replicas can share it), once."""
    import pyarrow as pa
    import pyarrow.csv as pa_csv
    import pyarrow.parquet as pq

    path = csv.with_suffix(".parquet")
    if path.exists() and path.stat().st_mtime >= csv.stat().st_mtime:
        return path
    table = pa_csv.read_csv(
        csv,
        read_options=pa_csv.ReadOptions(column_names=NAMES),
        convert_options=pa_csv.ConvertOptions(column_types={"id": pa.int64()} | {f: pa.float64() for f in FEATURES}),
    )
    tmp = path.with_suffix(".parquet.tmp")
    pq.write_table(table, tmp, row_group_size=131_072)
    tmp.rename(path)
    log(f"wrote {path.name}: {table.num_rows:,} rows, {path.stat().st_size / 1e6:,.0f} MB")
    return path


def mlflow_models(joblib_models: dict[str, Path], log: Log) -> dict[str, dict[str, str]]:
    """Each joblib model as an MLflow model folder (``mlflow.sklearn.save_model`` with its defaults: skops in MLflow 3,
    a signature from 5 rows) and as version 1 of a registered model with the alias ``champion`` in a local SQLite
    registry; made once per model file. Returns per model ``{"folder": ..., "uri": "models:/...@champion"}``."""
    import joblib

    made: dict[str, dict[str, str]] = {}
    for key, path in joblib_models.items():
        folder = DATA / "mlflow" / key
        stamp = folder / ".from"
        name = f"bench-{key}"
        made[key] = {"folder": str(folder), "uri": f"models:/{name}@champion"}
        if stamp.exists() and stamp.read_text() == f"{path.stat().st_mtime_ns}":
            continue
        import mlflow
        import pandas as pd
        from mlflow.models import infer_signature

        model = joblib.load(path)
        example = pd.DataFrame([[0.0] * len(FEATURES)] * 5, columns=FEATURES)
        shutil.rmtree(folder, ignore_errors=True)
        trusted = HGB_TRUSTED if key == "hgb" else None
        signature = infer_signature(example, model.predict(example))
        mlflow.sklearn.save_model(model, str(folder), signature=signature, skops_trusted_types=trusted)
        client = mlflow.MlflowClient(tracking_uri=registry_uri(), registry_uri=registry_uri())
        if not client.search_registered_models(f"name = '{name}'"):
            client.create_registered_model(name)
        version = client.create_model_version(name, source=str(folder))
        client.set_registered_model_alias(name, "champion", version.version)
        stamp.write_text(f"{path.stat().st_mtime_ns}")
        log(f"saved {key} as an MLflow model: {folder}, registered as {name} version {version.version} @champion")
    return made


def registry_uri() -> str:
    REGISTRY.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{REGISTRY}"


def reference_predictions(model: Path, data: Path) -> Path:
    """The model's own ``predict`` of every row of ``data`` (in order), saved once as ``.npy`` beside the model."""
    import joblib
    import numpy as np
    import pandas as pd

    path = model.with_name(f"{model.stem}-{data.stem}.npy")
    if path.exists() and path.stat().st_mtime >= max(model.stat().st_mtime, data.stat().st_mtime):
        return path
    frame = pd.read_csv(data, header=None, names=NAMES)
    np.save(path, np.asarray(joblib.load(model).predict(frame[FEATURES])))
    return path


def read_output(out: Path) -> Any:
    """(id, prediction) of an output: one file, or an engine's folder of parts in shard order."""
    import pyarrow as pa
    import pyarrow.csv as pa_csv
    import pyarrow.parquet as pq

    def one(path: Path) -> pa.Table:
        if path.suffix == ".csv":
            return pa_csv.read_csv(path, read_options=pa_csv.ReadOptions(column_names=["id", "prediction"]))
        return pq.read_table(path).rename_columns(["id", "prediction"])

    if out.is_dir():
        return pa.concat_tables([one(p) for p in sorted(out.glob("part-*")) if p.suffix in (".csv", ".parquet")])
    return one(out)


def check_output(out: Path, reference: Path) -> dict[str, Any]:
    """Every id once, in order, and every prediction equal to the model's own."""
    import numpy as np

    table = read_output(out)
    expected = np.load(reference)
    ids = table.column("id").to_numpy()
    predictions = table.column("prediction").to_numpy()
    return {
        "rows": table.num_rows,
        "ids_in_order": bool(len(ids) == len(expected) and np.array_equal(ids, np.arange(len(expected)))),
        "prediction_mismatches": int(np.sum(predictions != expected)) if len(predictions) == len(expected) else -1,
    }


def main(argv: list[str]) -> int:
    """Run one peer: ``peers.py <peer> <model> <input> <output>``; print its result as one JSON line."""
    kind, *rest = argv
    if kind not in PEERS:
        raise SystemExit(f"unknown peer {kind!r}; one of {', '.join(PEERS)}")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    print(json.dumps(PEERS[kind](*rest)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
