"""The measurements of ``bench_scoring.py``, built from the workloads: the interleaved rounds of the nine
configurations (with the output check), the per-model profile and floor, the fixed-cost diagnostics, the 10M-row memory
run, and the before/after comparison of two checkouts."""

from __future__ import annotations

import functools
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from harness.checkout import Checkout
from harness.data import DATA, MODELS, Log, generate_data, remove_data, warm_page_cache
from harness.noise import measured
from harness.report import mb
from harness.rounds import Config, run_rounds
from workloads import compare_outputs, python_child, run_engine


def scoring_configs(models: dict[str, Path], data: Path, out: Path) -> list[Config]:
    """The nine configurations: the read+write limit; per model the naive pipeline, the predict-only limit and the
    engine with 1 and 2 replicas."""
    configs: list[Config] = [("io_limit", functools.partial(python_child, "io_limit", data, out / "io.csv"))]
    for key, model in models.items():
        configs.append((f"naive_{key}", functools.partial(python_child, "naive", model, data, out / f"n_{key}.csv")))
        configs.append((f"predict_limit_{key}", functools.partial(python_child, "predict_limit", model, data)))
        for replicas in (1, 2):
            label = f"engine_{key}_r{replicas}"
            configs.append((label, functools.partial(run_engine, model, data, replicas, label, keep=True)))
    return configs


def describe_engine_run(r: dict[str, Any]) -> str:
    return (
        f"wall {r['wall_s']:.2f}s duration_s {r['duration_s']:.2f}, replica peak "
        f"{', '.join(map(mb, r['replica_peak_rss']))}, phases "
        + ", ".join(f"{k} {v:.2f}" for k, v in r["phases"].items())
        + "; shards "
        + "; ".join(
            f"read {x['read_s']:.2f} predict {x['predict_s']:.2f} write {x['write_s']:.2f} of {x['duration_s']:.2f}"
            for x in r["shards"]
        )
    )


def run_scoring_rounds(
    models: dict[str, Path], data: Path, out: Path, rounds: int, max_rounds: int, log: Log
) -> tuple[dict[str, list[dict[str, Any]]], dict[str, Any]]:
    """The nine configurations in interleaved rounds; the first engine run of each configuration is compared with the
    naive pipeline's output of the same round (same ids in the same order, no differing prediction)."""
    checks: dict[str, Any] = {}

    def after_run(name: str, r: dict[str, Any]) -> str:
        if name.startswith("engine_"):
            key, replicas = name.split("_")[1], name.rsplit("_r", 1)[1]
            if f"{key}_r{replicas}" not in checks and (out / f"n_{key}.csv").exists():
                checks[f"{key}_r{replicas}"] = compare_outputs(out / f"n_{key}.csv", Path(r["sink"]))
            shutil.rmtree(r["sink"], ignore_errors=True)
            return describe_engine_run(r)
        if name.startswith("naive_"):
            return (
                f"wall {r['wall_s']:.2f}s (read {r['read_s']:.2f} predict {r['predict_s']:.2f} "
                f"write {r['write_s']:.2f}), peak {mb(r['peak_rss'])}"
            )
        if name == "io_limit":
            return f"read {r['read_s']:.2f}s write {r['write_s']:.2f}s, peak {mb(r['peak_rss'])}"
        return f"predict {r['predict_s']:.2f}s"

    raw = run_rounds(scoring_configs(models, data, out), rounds, max_rounds, log, after_run=after_run)
    for path in out.glob("*.csv"):
        path.unlink()
    return raw, checks


def per_model(kind: str, models: dict[str, Path], data: Path, out: Path, log: Log) -> dict[str, Any]:
    """One ``kind`` child per model (its output file removed afterwards)."""
    results = {}
    for key, model in models.items():
        results[key] = measured(functools.partial(python_child, kind, model, data, out / f"{kind}.csv"), kind, log)
        (out / f"{kind}.csv").unlink(missing_ok=True)
    return results


def bytecode_env(folder: Path) -> dict[str, str]:
    """The environment with a bytecode cache (this machine sets PYTHONDONTWRITEBYTECODE=1 and the virtualenv holds no
    .pyc files, so every interpreter compiles pandas, pyarrow and scikit-learn from source at each start)."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(folder)
    return env


def run_diagnostics(models: dict[str, Path], data: Path, out: Path, log: Log) -> dict[str, Any]:
    """Fixed costs: the engine and the naive pipeline on a 1,000-row file (start-up, imports, model load, publish),
    as the machine is, and with a bytecode cache; then the full-size engine runs again with the bytecode cache."""
    tiny = generate_data(1_000, log)
    result: dict[str, Any] = {"tiny_rows": 1_000}
    with tempfile.TemporaryDirectory(prefix="bench-pycache-") as cache:
        envs = {"as_is": None, "bytecode_cache": bytecode_env(Path(cache))}
        # fill the cache once (not measured)
        python_child("naive", models["hgb"], tiny, out / "tiny.csv", env=envs["bytecode_cache"])
        run_engine(models["hgb"], tiny, 1, "tiny", env=envs["bytecode_cache"])
        for name, env in envs.items():
            for key in MODELS:
                naive = measured(
                    functools.partial(python_child, "naive", models[key], tiny, out / "tiny.csv", env=env),
                    f"tiny naive {key} {name}",
                    log,
                )
                engine = measured(
                    functools.partial(run_engine, models[key], tiny, 1, "tiny", env=env), f"tiny engine {name}", log
                )
                result[f"tiny_naive_{key}_{name}"] = {
                    k: naive[k] for k in ("wall_s", "total_s", "load_model_s", "cpu_s")
                }
                result[f"tiny_engine_{key}_{name}"] = {
                    k: engine[k] for k in ("wall_s", "duration_s", "phases", "cpu_s", "replica_peak_rss")
                }
                log(
                    f"  tiny {key} {name}: naive wall {naive['wall_s']:.2f}s, engine wall {engine['wall_s']:.2f}s "
                    f"(phases {engine['phases']})"
                )
        (out / "tiny.csv").unlink(missing_ok=True)
        env = envs["bytecode_cache"]
        for key in MODELS:
            naive = measured(
                functools.partial(python_child, "naive", models[key], data, out / "naive.csv", env=env),
                f"naive {key} bytecode_cache",
                log,
            )
            (out / "naive.csv").unlink(missing_ok=True)
            result[f"naive_{key}_bytecode_cache"] = naive
            for replicas in (1, 2):
                engine = measured(
                    functools.partial(run_engine, models[key], data, replicas, "bytecode", env=env),
                    f"engine {key} r{replicas} bytecode_cache",
                    log,
                )
                result[f"engine_{key}_r{replicas}_bytecode_cache"] = engine
                log(
                    f"  {key} r{replicas} with bytecode cache: naive wall {naive['wall_s']:.2f}s, engine wall "
                    f"{engine['wall_s']:.2f}s duration_s {engine['duration_s']:.2f} (phases {engine['phases']})"
                )
    return result


def run_big(model: Path, rows: int, naive: bool, keep: bool, out: Path, log: Log) -> dict[str, Any]:
    """Memory flatness: the engine (LR, one replica) and, unless ``naive`` is false, the naive pipeline on ``rows``
    rows; the data file is removed afterwards unless ``keep``."""
    big_data = generate_data(rows, log)
    warm_page_cache(big_data)
    big: dict[str, Any] = {"rows": rows, "size": big_data.stat().st_size}
    big["engine_lr_r1"] = e = measured(
        functools.partial(run_engine, model, big_data, 1, "engine_big"), "big engine", log
    )
    log(f"big engine lr r1: wall {e['wall_s']:.2f}s, replica peak {', '.join(map(mb, e['replica_peak_rss']))}")
    if naive:
        big["naive_lr"] = n = measured(
            functools.partial(python_child, "naive", model, big_data, out / "naive_big.csv"), "big naive", log
        )
        (out / "naive_big.csv").unlink(missing_ok=True)
        log(f"big naive lr: wall {n['wall_s']:.2f}s, peak {mb(n['peak_rss'])}")
    if not keep:
        remove_data(big_data)
    return big


def run_comparison(
    sides: tuple[Checkout, Checkout], models: dict[str, Path], data: Path, rounds: int, max_rounds: int, log: Log
) -> tuple[dict[str, list[dict[str, Any]]], dict[str, Any]]:
    """The engine CLI of both checkouts (per model, replicas 1 and 2) in the same rounds: each configuration's two
    sides one right after the other, the side that goes first alternating from round to round. The first run of each
    configuration checks that both sides wrote the same output."""
    configs: list[Config] = []
    for key, model in models.items():
        for replicas in (1, 2):
            for side in sides:
                label = f"engine_{key}_r{replicas}@{side.label}"
                run = functools.partial(
                    run_engine, model, data, replicas, label.replace("@", "_"), keep=True, env=side.env(),
                    cli=side.cli(),
                )
                configs.append((label, run))
    checks: dict[str, Any] = {}

    def order(round_index: int, todo: list[Config]) -> list[Config]:
        """Both sides of every configuration due (a side re-measured brings its partner along), in pairs."""
        due = {name.split("@")[0] for name, _ in todo}
        pairs: dict[str, list[Config]] = {}
        for name, run in configs:
            if name.split("@")[0] in due:
                pairs.setdefault(name.split("@")[0], []).append((name, run))
        return [c for pair in pairs.values() for c in (pair if round_index % 2 == 0 else pair[::-1])]

    def after_run(name: str, r: dict[str, Any]) -> str:
        config, side = name.split("@")
        other_side = sides[1].label if side == sides[0].label else sides[0].label
        other = DATA / "out" / f"{config}_{other_side}"
        if config not in checks and other.exists():
            checks[config] = compare_outputs(other, Path(r["sink"]), names=(other_side, side))
        if config in checks:
            shutil.rmtree(other, ignore_errors=True)
            shutil.rmtree(r["sink"], ignore_errors=True)
        return describe_engine_run(r)

    raw = run_rounds(configs, rounds, max_rounds, log, after_run=after_run, order=order)
    return raw, checks
