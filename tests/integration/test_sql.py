"""SQL tables as source and sink, on a real PostgreSQL (started by the ``postgres`` fixture) and SQLite.

The three end-to-end flows run inside ``dag.test()`` with real replica processes; the mode, type and planning tests
drive the same engine with an in-process launcher (the replica command itself is covered by the flows and by the
killed-replica test).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import threading
from datetime import date, datetime
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import sqlalchemy as sa

from airflow_batch_scoring.artifacts import process_model
from airflow_batch_scoring.driver.local import LocalLauncher
from airflow_batch_scoring.driver.prepare import prepare_job
from airflow_batch_scoring.driver.run import execute_job
from airflow_batch_scoring.errors import ConfigurationError, InputError, ReplicaError
from airflow_batch_scoring.io.readers.columns import ReadPlan
from airflow_batch_scoring.options import ScoringOptions
from airflow_batch_scoring.sources.sql_relation import SqlReader, SqlRelation
from airflow_batch_scoring.specs import DataSpec, parse_data_spec
from tests.support.helpers import FEATURES, Models, SlowModel, make_frame, write_frame
from tests.support.scoring import check_predictions
from tests.support.sql import Database, as_arrow, score, unique

# -- the three flows, in dag.test() with real replicas ----------------------------------------------------------


# -- sink modes --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("unique_index", [True, False])
def test_replace_and_upsert(db: Database, models: Models, tmp_path, unique_index: bool):
    frame = make_frame(600, seed=65).assign(id=np.arange(600))
    db.load(frame, "src")
    db.execute("CREATE TABLE scores (id BIGINT, prediction DOUBLE PRECISION, note TEXT)")
    if unique_index:
        db.execute("CREATE UNIQUE INDEX scores_id ON scores (id)")
    db.execute("INSERT INTO scores VALUES (-1, 0.5, 'old'), (0, 0.25, 'kept note'), (1, 0.75, NULL)")
    regressor = str(models.regressor_path)
    summary = score(db, regressor, {"table": "src", "partition_column": "id"},
                    {"table": "scores", "mode": "upsert", "merge_keys": ["ID"]}, tmp_path, replicas=2)
    assert summary["sql"]["updated"] == 2 and summary["sql"]["inserted"] == 598
    output = db.read("scores")
    assert output["id"].tolist() == [-1, *range(600)]
    notes = output["note"].tolist()
    assert notes[:2] == ["old", "kept note"] and pd.isna(notes[2])  # a column the run does not write is kept
    assert output["prediction"].iloc[0] == 0.5  # a key the run does not hold is left alone
    check_predictions(frame, as_arrow(output[output["id"] >= 0]), models.regressor)
    # the same run again: an upsert is idempotent
    score(db, regressor, {"table": "src"}, {"table": "scores", "mode": "upsert", "merge_keys": ["id"]}, tmp_path)
    assert db.read("scores")["id"].tolist() == [-1, *range(600)]
    # replace: the old rows go, in the same transaction as the new rows arrive
    small = frame[frame["id"] < 100]
    db.load(small, "src_small")
    summary = score(db, regressor, {"table": "src_small"}, {"table": "scores", "mode": "replace"}, tmp_path)
    assert summary["sql"]["deleted"] == 601 and summary["sql"]["inserted"] == 100
    output = db.read("scores")
    check_predictions(small, as_arrow(output), models.regressor)
    assert output["note"].isna().all()
    if unique_index:  # the table keeps its definition (the unique index refuses a duplicate)
        with pytest.raises(sa.exc.IntegrityError):
            db.execute("INSERT INTO scores (id) VALUES (5)")


def test_upsert_refuses_duplicate_keys_and_append_twice_appends_once(db: Database, models: Models, tmp_path):
    frame = make_frame(50, seed=66)
    doubled = pd.concat([frame, frame.iloc[:3]])
    db.load(doubled, "src")
    with pytest.raises(InputError, match=r"holds 2 rows with the merge keys \{'id': \d+\}.*needs each key once"):
        score(db, str(models.regressor_path), {"table": "src"},
              {"table": "scores", "mode": "upsert", "merge_keys": ["id"]}, tmp_path)
    assert "scores" not in db.tables() and db.staging_tables() == []
    db.load(frame, "src")
    run = unique("run")
    first = score(db, str(models.regressor_path), {"table": "src"}, {"table": "scores"}, tmp_path, job_id=run)
    assert first["sql"]["inserted"] == 50
    # a retry of a run whose commit succeeded (its success was lost): nothing is appended twice
    again = score(db, str(models.regressor_path), {"table": "src"}, {"table": "scores"}, tmp_path, job_id=run,
                  attempt="try2")
    assert again["sql"]["already_committed"] is True and again["sql"]["inserted"] == 0
    assert len(db.read("scores")) == 50 and db.staging_tables() == []


# -- the seven types, with NULLs ---------------------------------------------------------------------------------

SEVEN = [("b", "Boolean"), ("t", "Time64"), ("f32", "Float32"), ("f64", "Float64"), ("i32", "Int32"),
         ("i64", "Int64"), ("s", "String")]


class TypedModel:
    """Takes the seven typed columns; predicts a float from the Float64 and Int64 columns (NULL as 0)."""

    feature_names_in_ = np.array([name for name, _ in SEVEN], dtype=object)  # a DataFrame, please

    def predict(self, x: pd.DataFrame) -> np.ndarray:
        assert list(x.columns) == [name for name, _ in SEVEN]
        return x["f64"].fillna(0).to_numpy(dtype=float) + x["i64"].fillna(0).to_numpy(dtype=float)


def _typed_rows() -> list[dict]:
    rows = [
        {"id": 1, "b": True, "t": datetime(2026, 1, 2, 3, 4, 5, 678901), "f32": float(np.float32(0.1)),
         "f64": 1e-300, "i32": 2147483647, "i64": 9007199254740993, "s": 'quote " comma , newline \n ünï'},
        {"id": 2, "b": False, "t": datetime(1970, 1, 1), "f32": -3.5, "f64": -0.1, "i32": -2147483648,
         "i64": -9223372036854775807, "s": ""},
    ]
    for i, (name, _) in enumerate(SEVEN):  # one row with a NULL in each column, one with NULL everywhere
        row = dict(rows[i % 2], id=10 + i)
        row[name] = None
        rows.append(row)
    rows.append({"id": 99, **{name: None for name, _ in SEVEN}})
    return rows


def test_seven_types_round_trip_with_nulls(db: Database, tmp_path):
    types = {"Boolean": sa.Boolean(), "Time64": sa.DateTime(), "Float32": sa.REAL(), "Float64": sa.Double(),
             "Int32": sa.Integer(), "Int64": sa.BigInteger(), "String": sa.Text()}
    metadata = sa.MetaData()
    source = sa.Table("typed", metadata, sa.Column("id", sa.BigInteger()),
                      *[sa.Column(name, types[kind]) for name, kind in SEVEN])
    rows = _typed_rows()
    with db.engine.begin() as connection:
        source.create(connection)
        connection.execute(source.insert(), rows)
    joblib.dump(TypedModel(), tmp_path / "typed.joblib")
    summary = score(db, str(tmp_path / "typed.joblib"), {"table": "typed", "partition_column": "id"},
                    {"table": "typed_out"}, tmp_path, replicas=3, batch_size=4,
                    input_schema=[{"name": name, "type": kind} for name, kind in SEVEN],
                    passthrough_columns=["id"] + [name for name, _ in SEVEN])
    assert summary["rows_out"] == len(rows)
    with db.engine.connect() as connection:
        target = sa.Table("typed_out", sa.MetaData(), autoload_with=connection)
        written = [dict(r._mapping) for r in connection.execute(sa.select(target).order_by(target.c.id))]
    declared = {c.name: c.type.compile(dialect=db.engine.dialect) for c in target.columns}
    expected_types = {
        "postgres": {"b": "BOOLEAN", "t": "TIMESTAMP WITHOUT TIME ZONE", "f32": "REAL", "f64": "DOUBLE PRECISION",
                     "i32": "INTEGER", "i64": "BIGINT", "s": "TEXT", "prediction": "DOUBLE PRECISION"},
        "sqlite": {"b": "BOOLEAN", "t": "DATETIME", "f32": "REAL", "f64": "DOUBLE", "i32": "INTEGER",
                   "i64": "BIGINT", "s": "TEXT", "prediction": "DOUBLE"},
    }[db.kind]
    assert {k: v for k, v in declared.items() if k != "id"} == expected_types
    assert len(written) == len(rows)
    for got, want in zip(written, sorted(rows, key=lambda r: r["id"]), strict=True):
        for name, _ in SEVEN:
            if name == "f32" and want[name] is not None:
                assert np.float32(got[name]) == np.float32(want[name]), (got, want)
            else:
                assert got[name] == want[name], (name, got, want)
            assert (got[name] is None) == (want[name] is None)
        assert got["prediction"] == (want["f64"] or 0.0) + float(want["i64"] or 0)


# -- failures leave the target as it was; the retry writes every row once ----------------------------------------


def test_killed_replica_leaves_target_unchanged_and_retry_writes_once(pg: Database, tmp_path, monkeypatch,
                                                                      replicas_import_tests):
    joblib.dump(SlowModel(), tmp_path / "slow.joblib")
    frame = make_frame(3000, seed=67)
    source, target = unique("big"), unique("scores")
    pg.load(frame, source)
    pg.execute(f"CREATE TABLE {target} (id BIGINT, prediction DOUBLE PRECISION)",
               f"INSERT INTO {target} VALUES (-2, 1.0), (-1, 2.0)")
    before = pg.read(target)
    run = unique("run")
    started = threading.Event()

    def log(line: str) -> None:
        if line.startswith("[replica 1]") and "rows scored" in line:
            started.set()

    launcher = LocalLauncher(log)

    def kill_replica_1() -> None:
        assert started.wait(120)
        victim = launcher.process_of(1)
        os.kill(victim.pid, signal.SIGKILL)

    threading.Thread(target=kill_replica_1, daemon=True).start()
    with pytest.raises(ReplicaError, match="Replica 1 was killed by signal 9"):
        score(pg, str(tmp_path / "slow.joblib"), {"table": source, "partition_column": "id"}, {"table": target},
              tmp_path, launcher=launcher, job_id=run, replicas=3, batch_size=10)
    pd.testing.assert_frame_equal(pg.read(target), before)  # the target is exactly as it was
    assert pg.staging_tables() == []
    # a worker killed outright leaves its staging tables: the next attempt of the run drops them first
    pg.execute(f"CREATE TABLE _bs_{hashlib.sha256(run.encode()).hexdigest()[:10]}_try1_s00000 (x INT)")
    lines: list[str] = []
    summary = score(pg, str(tmp_path / "slow.joblib"), {"table": source, "partition_column": "id"},
                    {"table": target}, tmp_path, launcher=LocalLauncher(lines.append), job_id=run, attempt="try2",
                    log=lines.append, replicas=3, batch_size=100)
    assert any("Dropped 1 staging table(s)" in line for line in lines)
    assert summary["sql"]["inserted"] == 3000
    output = pg.read(target)
    assert output["id"].tolist() == [-2, -1, *frame["id"]]  # every row exactly once, the old rows kept
    np.testing.assert_array_equal(output["prediction"].to_numpy()[2:], frame["f0"].to_numpy() * 2)
    assert pg.staging_tables() == []


def test_bad_value_midway_leaves_target_unchanged(pg: Database, models: Models, tmp_path):
    frame = make_frame(2500, seed=68)
    frame["f2"] = frame["f2"].map(repr)
    frame.loc[2100, "f2"] = "abc"  # after the preflight's sample
    source, target = unique("texty"), unique("scores")
    pg.load(frame, source)
    pg.execute(f"CREATE TABLE {target} (id BIGINT, prediction DOUBLE PRECISION)", f"INSERT INTO {target} VALUES (7, 7)")
    with pytest.raises(InputError) as err:
        score(pg, str(models.regressor_path), {"table": source}, {"table": target}, tmp_path, batch_size=300)
    message = str(err.value)
    assert f"table {source}, column 'f2'" in message and "'abc'" in message and "Float64" in message
    assert pg.read(target)["id"].tolist() == [7] and pg.staging_tables() == []


# -- bad input ---------------------------------------------------------------------------------------------------


def test_missing_table_column_query_error_and_uncoercible_type(db: Database, models: Models, tmp_path):
    regressor = str(models.regressor_path)
    with pytest.raises(InputError, match="table no_such_table does not exist"):
        score(db, regressor, {"table": "no_such_table"}, {"table": "out"}, tmp_path)
    db.load(make_frame(20, seed=69).drop(columns=["f3"]), "lacking")
    with pytest.raises(InputError, match=r"table lacking: the model's input column 'f3' does not exist; its columns "
                                         r"are \['id', 'f0', 'f1', 'f2', 'f4'\]"):
        score(db, regressor, {"table": "lacking"}, {"table": "out"}, tmp_path)
    with pytest.raises(InputError, match="table lacking: the partition column 'day' does not exist"):
        score(db, regressor, {"table": "lacking", "partition_column": "day"}, {"table": "out"}, tmp_path,
              input_schema=[{"name": "f0", "type": "Float64"}])
    with pytest.raises(InputError, match=r"the source query failed: .*(nowhere|syntax)"):
        score(db, regressor, {"query": "SELECT id, f0 FROM nowhere"}, {"table": "out"}, tmp_path)
    texty = make_frame(20, seed=70)
    texty["f1"] = ["12.5"] * 5 + ["twelve"] + ["1"] * 14
    db.load(texty, "texty")
    with pytest.raises(InputError, match=r"table texty, column 'f1' \(row 6 of the source\): value 'twelve' cannot "
                                         r"be read as Float64"):
        score(db, regressor, {"table": "texty"}, {"table": "out"}, tmp_path)
    # a target whose columns do not fit the output: named, and nothing written
    db.load(make_frame(20, seed=71), "fine")
    db.execute("CREATE TABLE narrow (id BIGINT)")
    with pytest.raises(ConfigurationError, match=r"sink table narrow has no column\(s\) \['prediction'\]"):
        score(db, regressor, {"table": "fine"}, {"table": "narrow"}, tmp_path)
    assert "out" not in db.tables() and db.staging_tables() == []


@pytest.mark.parametrize(
    ("spec", "role", "message"),
    [
        ({"table": "scores; DROP TABLE x"}, "sink", "sink['table'] 'scores; DROP TABLE x' is not a valid table name"),
        ({"table": "x; DROP TABLE x"}, "source", "is not a valid table name"),
        ({"table": 'a"."b'}, "source", "is not a valid table name"),
        ({"table": "a.b.c"}, "sink", "has more than two parts"),
        ({"table": "t", "partition_column": "id; --"}, "source", "source['partition_column'] 'id; --' is not a valid"),
        ({"table": "t", "mode": "upsert", "merge_keys": ["id) OR (1=1"]}, "sink", "sink['merge_keys']"),
        ({"table": "t", "mode": "upsert"}, "sink", "sink['merge_keys'] must be a non-empty list"),
        ({"table": "t", "mode": "merge"}, "sink", "sink['mode'] must be one of append, replace, upsert"),
        ({"table": "t", "query": "SELECT 1"}, "source", "either source['table'] or source['query']"),
        ({"query": "SELECT 1"}, "sink", "sink['query'] is only for sources"),
        ({"table": "t", "format": "csv"}, "sink", "applies to files"),
        ({"table": "t", "uri": "postgresql://u:secret@h/db"}, "source", "holds a password"),
    ],
)
def test_malicious_or_invalid_names_are_rejected(spec: dict, role: str, message: str):
    with pytest.raises(ConfigurationError) as err:
        parse_data_spec({"conn_id": "pg_test", **spec}, role)
    assert message in str(err.value)
    assert "secret" not in str(err.value)


def test_connection_errors_name_the_connection_never_the_password(postgres, monkeypatch, models: Models, tmp_path):
    from airflow_batch_scoring.hooks.sql import sql_secrets

    wrong = "Wr0ng-Pa55-xyz"
    monkeypatch.setenv("AIRFLOW_CONN_PG_BAD", json.dumps({**postgres.connection(), "password": wrong}))
    monkeypatch.setenv("AIRFLOW_CONN_NOT_SQL", json.dumps({"conn_type": "aws", "login": "a", "password": "b"}))
    source = parse_data_spec({"conn_id": "pg_bad", "table": "t"}, "source")
    secrets = {"source": sql_secrets(source), "sink": {}}
    with pytest.raises(InputError) as err:
        prepare_job(job_id="bad", model=process_model(str(models.regressor_path), str(tmp_path)), source=source,
                    sink=parse_data_spec({"uri": (tmp_path / "out").as_uri()}, "sink"), storage_options=secrets)
    assert "connection 'pg_bad'" in str(err.value) and "password authentication failed" in str(err.value)
    assert wrong not in str(err.value)
    with pytest.raises(ConfigurationError, match="is not a SQL hook"):
        sql_secrets(parse_data_spec({"conn_id": "not_sql", "table": "t"}, "source"))


# -- planning: every row exactly once, NULLs included ------------------------------------------------------------


def _read_shards(db: Database, spec: DataSpec, replicas: int, columns: list[str]) -> list[pa.Table]:
    plan = ReadPlan(model_columns=None, passthrough=[])
    source = SqlRelation(spec, db.secrets()["source"])
    try:
        shards = source.plan(replicas, plan)
    finally:
        source.close()
    reader = SqlReader(spec, plan, db.secrets()["source"], batch_size=7)
    tables = []
    for pieces in shards:
        parts = [t.select(columns) for piece in pieces for t in reader.read(piece)]
        tables.append(pa.concat_tables(parts) if parts else None)
    reader.close()
    return tables


def test_partitions_hold_every_row_once_nulls_in_one(db: Database):
    ids = [None] * 7 + list(range(100)) + [5, 5]
    frame = pd.DataFrame({"k": pd.array(ids, dtype="Int64"), "v": range(len(ids)), "s": ["a%b"] * len(ids)})
    db.load(frame, "ranged")
    spec = parse_data_spec({"conn_id": db.conn_id, "table": "ranged", "partition_column": "k"}, "source")
    shards = _read_shards(db, spec, 3, ["k", "v"])
    assert [t.num_rows for t in shards] == [42, 33, 34]
    assert shards[0].column("k").null_count == 7 and all(t.column("k").null_count == 0 for t in shards[1:])
    assert sorted(v for t in shards for v in t.column("v").to_pylist()) == list(range(len(ids)))
    # a query (with a literal % and no parameters) split by a column: the same rows
    spec = parse_data_spec({"conn_id": db.conn_id, "query": "SELECT k, v FROM ranged WHERE s LIKE 'a%'",
                           "partition_column": "K"}, "source")
    shards = _read_shards(db, spec, 4, ["k", "v"])
    assert sorted(v for t in shards if t for v in t.column("v").to_pylist()) == list(range(len(ids)))
    # no partition column: a table splits by its primary key (SQLite: rowid); a query is read by one replica
    db.execute("CREATE TABLE keyed (pk INTEGER PRIMARY KEY, v INTEGER)")
    db.execute(*[f"INSERT INTO keyed VALUES ({i * 3}, {i})" for i in range(30)])
    shards = _read_shards(db, parse_data_spec({"conn_id": db.conn_id, "table": "keyed"}, "source"), 3, ["v"])
    assert [t.num_rows for t in shards] == [10, 10, 10]
    spec = parse_data_spec({"conn_id": db.conn_id, "query": "SELECT v FROM keyed"}, "source")
    assert [t.num_rows if t else 0 for t in _read_shards(db, spec, 3, ["v"])] == [30, 0, 0]
    # a table without a key: SQLite splits by its rowid; elsewhere one replica reads it
    spec = parse_data_spec({"conn_id": db.conn_id, "table": "ranged"}, "source")
    counts = [t.num_rows if t else 0 for t in _read_shards(db, spec, 3, ["v"])]
    assert sum(counts) == len(ids) and (all(counts) if db.kind == "sqlite" else counts == [len(ids), 0, 0])


def test_partition_by_date_and_timestamp(pg: Database):
    days = [date(2026, 1, 1 + i % 28) for i in range(200)]
    frame = pd.DataFrame({"day": days, "at": [datetime(2026, 3, 1, i % 24, i % 60) for i in range(200)],
                          "v": range(200)})
    pg.load(frame, "dated", dtype={"day": sa.Date()})
    for column in ("day", "at"):
        spec = parse_data_spec({"conn_id": pg.conn_id, "table": "dated", "partition_column": column}, "source")
        shards = _read_shards(pg, spec, 4, ["v"])
        assert sum(1 for t in shards if t is not None and t.num_rows) == 4
        assert sorted(v for t in shards if t for v in t.column("v").to_pylist()) == list(range(200))
    pg.load(frame.assign(v=frame["v"].astype(str)), "texted")
    spec = parse_data_spec({"conn_id": pg.conn_id, "table": "texted", "partition_column": "v"}, "source")
    with pytest.raises(ConfigurationError, match=r"the partition column 'v' holds str values \('0'\); it must be"):
        _read_shards(pg, spec, 2, ["v"])


def test_command_line_scores_a_table_into_a_table_with_the_password_out_of_argv(pg: Database, models: Models,
                                                                               tmp_path):
    """``batch-scoring score`` with JSON source/sink specs: the URL without its password on the command line, the
    full URL in the --storage-options file; the password shows nowhere in the command's output."""
    import subprocess
    import sys

    frame = make_frame(1200, seed=71)
    pg.load(frame, "cli_customers")
    without_password = pg.url.replace(f":{pg.password}@", "@")
    assert pg.password and pg.password not in without_password
    (tmp_path / "creds.json").write_text(json.dumps(pg.secrets()))
    command = [
        str(Path(sys.executable).parent / "batch-scoring"), "score", "--model", str(models.regressor_path),
        "--source", json.dumps({"uri": without_password, "table": "cli_customers", "partition_column": "id"}),
        "--sink", json.dumps({"uri": without_password, "table": "cli_scores", "mode": "upsert", "merge_keys": ["id"]}),
        "--passthrough", "id", "--replicas", "2", "--storage-options", str(tmp_path / "creds.json"),
    ]
    run = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert json.loads(run.stdout)["rows_out"] == 1200
    assert pg.password not in run.stdout + run.stderr
    check_predictions(frame, pa.Table.from_pandas(pg.read("cli_scores")), models.regressor)


# -- a retry into a table reuses the shards an earlier attempt finished --------------------------------------------


def _file_into_table_attempt(pg: Database, tmp_path: Path, run: str, target: str, attempt: str, launcher, log,
                             batch_size: int = 100) -> dict:
    model = process_model(str(tmp_path / "slow.joblib"), str(tmp_path / "model"))
    job, files = prepare_job(
        job_id=run,
        attempt=attempt,
        model=model,
        source=parse_data_spec({"uri": (tmp_path / "in.csv").as_uri(), "columns": ["id", *FEATURES]}, "source"),
        sink=parse_data_spec({"conn_id": pg.conn_id, "table": target}, "sink"),
        storage_options=pg.secrets(),
        options=ScoringOptions.parse(replicas=3, batch_size=batch_size, passthrough_columns=["id"], part_size=4096),
    )
    return execute_job(job, files, storage_options=pg.secrets(), log=log, launcher=launcher, keep_on_failure=True)


@pytest.fixture
def killed_first_attempt(pg: Database, tmp_path: Path, monkeypatch, replicas_import_tests):
    """A CSV scored into a new table by 3 replicas; replica 1 (the slow shard) is killed once the others finished,
    while Airflow retries remain (keep_on_failure): the finished shards' staging tables stay."""
    from tests.support.fault_models import SlowWhereMarked, marked_frame
    from tests.support.launchers import KillWhenOthersFinish

    joblib.dump(SlowWhereMarked(), tmp_path / "slow.joblib")
    frame = marked_frame(3000, seed=71, marked=range(1000, 2000))  # shard 1's rows are slow
    write_frame(frame, tmp_path / "in.csv", "csv")
    run, target = unique("run"), unique("scores")
    killer = KillWhenOthersFinish(victim=1, replicas=3)
    with pytest.raises(ReplicaError, match="Replica 1 was killed by signal 9"):
        _file_into_table_attempt(pg, tmp_path, run, target, "try1", killer, killer._log)
    assert target not in pg.tables()  # nothing committed (the table is created by the commit)
    kept = pg.staging_tables()
    assert any(name.endswith("_try1_s00000") for name in kept) and any(name.endswith("_try1_s00002") for name in kept)
    return frame, run, target


def test_a_retry_into_a_table_rescores_only_the_unfinished_shard(pg: Database, tmp_path: Path,
                                                                 killed_first_attempt):
    frame, run, target = killed_first_attempt
    lines: list[str] = []
    summary = _file_into_table_attempt(pg, tmp_path, run, target, "try2", LocalLauncher(lines.append), lines.append)
    assert any("Resuming: shard(s) [0, 2] completed in an earlier attempt" in line for line in lines), lines
    assert {line.split("]")[0] for line in lines if "rows scored" in line} == {"[replica 1"}  # only shard 1 ran
    assert summary["rows_out"] == 3000 and summary["sql"]["inserted"] == 3000
    output = pg.read(target)
    output["id"] = output["id"].astype("int64")  # (a CSV source's passthrough id is its text)
    output = output.sort_values("id").reset_index(drop=True)
    assert output["id"].tolist() == sorted(frame["id"])  # every row exactly once
    np.testing.assert_array_equal(output["prediction"].to_numpy(), frame.sort_values("id")["f0"].to_numpy() * 2)
    assert pg.staging_tables() == []  # the reused tables of try1 are gone with the commit


def test_a_retry_with_other_options_scores_every_shard_again(pg: Database, tmp_path: Path, killed_first_attempt):
    frame, run, target = killed_first_attempt
    lines: list[str] = []
    _file_into_table_attempt(pg, tmp_path, run, target, "try2", LocalLauncher(lines.append), lines.append,
                             batch_size=250)
    assert any("Not resuming: the model, the input listing or the options changed" in line for line in lines)
    # (shards 0 and 2, and shard 1's when the killed replica had written a batch before it was killed)
    assert any(re.search(r"Dropped [23] staging table\(s\)", line) for line in lines)
    assert {line.split("]")[0] for line in lines if "rows scored" in line} == {"[replica 0", "[replica 1", "[replica 2"}
    assert sorted(pg.read(target)["id"]) == sorted(frame["id"].astype(str))  # a CSV passthrough id is its text
    assert pg.staging_tables() == []
