"""SQL test databases (a fresh PostgreSQL database, or SQLite, each with an Airflow connection) and scoring into them
through the driver. The fixtures ``pg``, ``lite`` and ``db`` (both) are registered by tests/conftest.py."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
import sqlalchemy as sa

from airflow_batch_scoring.artifacts import process_model
from airflow_batch_scoring.driver.prepare import prepare_job
from airflow_batch_scoring.driver.run import execute_job
from airflow_batch_scoring.options import ScoringOptions
from airflow_batch_scoring.specs import parse_data_spec
from tests.support.launchers import InProcessLauncher


@dataclass
class Database:
    """One test database: its SQLAlchemy URL (secret material), an Airflow connection id, and helpers."""

    kind: str
    url: str
    conn_id: str
    password: str | None = None

    @property
    def engine(self) -> sa.Engine:
        return sa.create_engine(self.url, poolclass=sa.pool.NullPool)

    def secrets(self) -> dict:
        return {"source": {"sqlalchemy_url": self.url}, "sink": {"sqlalchemy_url": self.url}}

    def load(self, frame: pd.DataFrame, table: str, **kwargs) -> None:
        frame.to_sql(table, self.engine, index=False, if_exists="replace", **kwargs)

    def read(self, table: str, order: str = "id") -> pd.DataFrame:
        with self.engine.connect() as connection:
            return pd.read_sql(sa.text(f"SELECT * FROM {table} ORDER BY {order}"), connection)

    def execute(self, *statements: str) -> None:
        with self.engine.begin() as connection:
            for statement in statements:
                connection.exec_driver_sql(statement)

    def tables(self) -> list[str]:
        return sa.inspect(self.engine).get_table_names()

    def staging_tables(self) -> list[str]:
        return [name for name in self.tables() if name.startswith("_bs_")]


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


@pytest.fixture
def pg(postgres, monkeypatch) -> Database:
    """A fresh database on the session's PostgreSQL server, and an Airflow connection to it."""
    name = unique("t")
    admin = sa.create_engine(postgres.url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    conn_id = "pg_test"
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps({**postgres.connection(), "schema": name}))
    return Database("postgres", postgres.url.rsplit("/", 1)[0] + f"/{name}", conn_id, postgres.password)


@pytest.fixture
def lite(tmp_path, monkeypatch) -> Database:
    path = tmp_path / "scores.db"
    conn_id = "sqlite_test"
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps({"conn_type": "sqlite", "host": str(path)}))
    return Database("sqlite", f"sqlite:///{path}", conn_id)


@pytest.fixture(params=["postgres", "sqlite"])
def db(request) -> Database:
    return request.getfixturevalue("pg" if request.param == "postgres" else "lite")


def score(db: Database, model: str, source: dict, sink: dict, tmp_path: Path, *, launcher=None, job_id=None,
          attempt="try1", log=None, **kwargs) -> dict:
    """Plan and run a job through the driver (in process unless a launcher is given)."""
    source_spec = parse_data_spec({"conn_id": db.conn_id, **source} if "uri" not in source else source, "source")
    sink_spec = parse_data_spec({"conn_id": db.conn_id, **sink} if "uri" not in sink else sink, "sink")
    kwargs.setdefault("passthrough_columns", ["id"])
    job, files = prepare_job(
        job_id=job_id or unique("job"),
        attempt=attempt,
        model=process_model(model, str(tmp_path / "model")),
        source=source_spec,
        sink=sink_spec,
        storage_options=db.secrets(),
        options=ScoringOptions.parse(**kwargs),
    )
    return execute_job(job, files, storage_options=db.secrets(), log=log or (lambda line: None),
                       launcher=launcher or InProcessLauncher())


def as_arrow(frame: pd.DataFrame) -> pa.Table:
    return pa.Table.from_pandas(frame, preserve_index=False)
