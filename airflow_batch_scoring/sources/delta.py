"""A Delta Lake table as a source: pinned to one version, split by its own data files' row groups.

The driver opens the table once (at ``source['version']``, or the latest version then), which pins the version for
the whole run (the job carries it; every replica reads that version, and the manifest records it). The data files of
that version, pruned by the ``filter`` conditions on partition columns, are planned like Parquet files (row groups
spread over the replicas); each replica reads its row groups, adds the partition columns from the table's log, and
drops the rows the other ``filter`` conditions exclude.

Tables whose files need a reader feature this does not implement (deletion vectors, column mapping) are refused.

Shared with the runtime: never imports Airflow.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from decimal import Decimal
from typing import Any

import pyarrow as pa

from airflow_batch_scoring.errors import ConfigurationError, InputError
from airflow_batch_scoring.io import locations
from airflow_batch_scoring.io.bad_rows.quarantine import BadRow
from airflow_batch_scoring.io.delta import open_table, table_schema
from airflow_batch_scoring.io.files import InputFile, filesystem
from airflow_batch_scoring.io.readers.columns import (
    ColumnMap,
    MissingColumn,
    ReadPlan,
    resolve_columns,
)
from airflow_batch_scoring.job import Piece, ScoringJob
from airflow_batch_scoring.sources.base import PREFLIGHT_ROWS, ShardReader, job_fingerprint, read_plan
from airflow_batch_scoring.sources.file_planner import plan_parquet
from airflow_batch_scoring.sources.incremental import NewData, delta_new
from airflow_batch_scoring.sources.table_files import TableFilesSource, read_piece
from airflow_batch_scoring.sources.table_filter import arrow_filter
from airflow_batch_scoring.specs import DataSpec, DeltaSpec, narrow

#: reader features whose files this source cannot read as plain Parquet.
UNSUPPORTED_FEATURES = ("deletionVectors", "columnMapping")


def _table_or_fail(spec: DeltaSpec, secrets: Mapping[str, Any] | None, version: int | None) -> Any:
    table = open_table(spec.uri, secrets, version)
    if table is None:
        raise InputError(
            f"there is no Delta table at {spec.uri} (no _delta_log); check source['uri'] and its connection "
            f"({spec.conn_id or 'no conn_id'})."
        )
    features = set(table.protocol().reader_features or ())
    unsupported = sorted(features & set(UNSUPPORTED_FEATURES))
    if unsupported:
        raise ConfigurationError(
            f"The Delta table {spec.uri} uses the reader feature(s) {unsupported}, which this source does not read "
            "yet; compact it (OPTIMIZE / purge deletion vectors) or read a copy without them."
        )
    return table


def _partition_value(text: str | None, kind: pa.DataType) -> Any:
    """A partition value as the log holds it (a string) -> a Python value of the column's type."""
    if text is None:
        return None
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return text
    if pa.types.is_boolean(kind):
        return text.lower() == "true"
    if pa.types.is_integer(kind):
        return int(text)
    if pa.types.is_floating(kind):
        return float(text)
    if pa.types.is_decimal(kind):
        return Decimal(text)
    if pa.types.is_date(kind):
        return dt.date.fromisoformat(text)
    if pa.types.is_timestamp(kind):
        return dt.datetime.fromisoformat(text)
    return text


class DeltaShardReader:
    """Reads pieces (row groups of the table's data files) with their partition columns, filtered and coerced."""

    bytes_done = 0

    def __init__(self, spec: DeltaSpec, plan: ReadPlan, secrets: Mapping[str, Any] | None, batch_size: int):
        self.spec = spec
        self.plan = plan
        self.batch_size = batch_size
        table = _table_or_fail(spec, secrets, spec.version)
        self.schema = table_schema(table)
        self.partition_columns = list(table.metadata().partition_columns)
        actions = pa.table(table.get_add_actions(flatten=True))
        self.fs, _ = filesystem(spec.uri, secrets)
        root = spec.uri.rstrip("/")
        self.values: dict[str, dict[str, Any]] = {}
        for row in actions.to_pylist():
            self.values[_file_uri(root, row["path"])] = {
                c: _partition_value(row.get(f"partition.{c}"), self.schema.field(c).type)
                for c in self.partition_columns
            }
        available = list(spec.columns) if spec.columns else list(self.schema.names)
        self.columns: ColumnMap = resolve_columns(available, plan, spec.uri, missing=_missing(spec.uri))
        self.row_filter = [c for c in spec.filter or () if c[0] not in self.partition_columns]
        wanted = {*self.columns.source_names, *(c[0] for c in self.row_filter)}
        self.file_columns = [n for n in self.schema.names if n in wanted and n not in self.partition_columns]

    def read(self, piece: Piece) -> Iterator[pa.Table]:
        partition = self.values.get(piece.path, {})
        row_filter = arrow_filter(self.row_filter) if self.row_filter else None

        def complete(table: pa.Table) -> pa.Table:
            for name in self.partition_columns:
                if name in self.columns.source_names or any(c[0] == name for c in self.row_filter):
                    kind = self.schema.field(name).type
                    table = table.append_column(name, pa.array([partition.get(name)] * table.num_rows, kind))
            return table.filter(row_filter) if row_filter is not None else table

        return read_piece(self.fs, piece, self.plan, self.batch_size, lambda _: (self.columns, self.file_columns),
                          complete)

    def close(self) -> None:
        """Nothing stays open between pieces."""


def _file_uri(root: str, path: str) -> str:
    from urllib.parse import unquote

    return f"{root}/{unquote(path)}"


def _missing(uri: str) -> MissingColumn:
    def missing(kind: str, name: str, available: list[str]) -> InputError:
        return InputError(
            f"the Delta table {uri} has no {kind} column {name!r}; its columns are {available}. Fix the column "
            "names, or source['columns']."
        )

    return missing


class DeltaSource(TableFilesSource):
    """A Delta Lake table (local files, S3, GCS, Azure), read at one version.

    :param spec: the source spec (a :class:`~airflow_batch_scoring.specs.DeltaSpec`).
    :param secrets: the fsspec options of the table's store (mapped to delta-rs's own for the log).
    :param files: the data files the driver listed (none on a replica).
    """

    row_errors = False

    def __init__(self, spec: DataSpec, secrets: Mapping[str, Any] | None, files: Sequence[InputFile] = ()):
        self.spec = narrow(spec, DeltaSpec)
        self.secrets = secrets
        self.files = list(files)
        self.what = f"the Delta table {self.spec.uri}" + (
            f" (version {self.spec.version})" if self.spec.version is not None else "")
        self._schema: pa.Schema | None = None
        self._live: tuple[set[str], bool] = (set(), False)  # every data file of the pinned version; partitioned?

    @staticmethod
    def place(spec: DataSpec) -> tuple[DataSpec, str | None]:
        resolved = replace(narrow(spec, DeltaSpec), uri=locations.normalize_location(spec.uri, "source").rstrip("/"))
        return resolved, resolved.uri + "/"

    def listing(self) -> list[InputFile]:
        """Open the table, pin its version, and list the data files the partition conditions keep."""
        table = _table_or_fail(self.spec, self.secrets, self.spec.version)
        self.spec = replace(self.spec, version=table.version())
        self.what = f"the Delta table {self.spec.uri} (version {self.spec.version})"
        schema = table_schema(table)
        self._schema = schema
        partition_columns = list(table.metadata().partition_columns)
        names = {n.lower() for n in schema.names}
        for column, _, _ in self.spec.filter or ():
            if column.lower() not in names:
                raise ConfigurationError(
                    f"source['filter'] names the column {column!r}, which {self.what} does not have; its columns "
                    f"are {schema.names}."
                )
        for column in self.spec.columns or ():
            if column.lower() not in names:
                raise ConfigurationError(
                    f"source['columns'] names {column!r}, which {self.what} does not have; its columns are "
                    f"{schema.names}."
                )
        actions = pa.table(table.get_add_actions(flatten=True))
        root = self.spec.uri.rstrip("/")
        self._live = ({_file_uri(root, p) for p in actions.column("path").to_pylist()}, bool(partition_columns))
        pruning = [c for c in self.spec.filter or () if c[0] in partition_columns]
        if pruning and actions.num_rows:
            typed = pa.table({
                c: pa.array([_partition_value(v, schema.field(c).type)
                             for v in actions.column(f"partition.{c}").to_pylist()], schema.field(c).type)
                for c in {c[0] for c in pruning}
            }).append_column("__row", pa.array(range(actions.num_rows), pa.int64()))
            actions = actions.take(typed.filter(arrow_filter(pruning)).column("__row"))
        self.files = [
            InputFile(_file_uri(root, path), int(size), version=f"delta:{self.spec.version}")
            for path, size in zip(actions.column("path").to_pylist(), actions.column("size_bytes").to_pylist(),
                                  strict=True)
        ]
        return self.files

    def restrict_to_new(self, since: Mapping[str, Any] | None) -> NewData:
        """Keep the data files the commits after version ``since`` appended (see
        :func:`~airflow_batch_scoring.sources.incremental.delta_new`)."""
        live, partitioned = self._live
        new = delta_new(self.spec.uri, since, int(self.spec.version or 0), self.files, live, partitioned,
                        self.secrets)
        self.files = new.files
        return new

    def plan(self, replicas: int, plan: ReadPlan, part_size: int) -> list[list[Piece]]:
        if not self.files:
            raise InputError(
                f"{self.what} holds no data file{' where source[filter] holds' if self.spec.filter else ''}: "
                "nothing to score."
            )
        fs, _ = filesystem(self.spec.uri, self.secrets)
        return plan_parquet(self.files, replicas, fs)

    def preflight(self, job: ScoringJob) -> str:
        """Read the first rows of the first non-empty shard the way a replica will.

        :raises InputError: for a missing column or a value that does not fit the model schema.
        """
        reader = DeltaShardReader(self.spec, read_plan(job), self.secrets, PREFLIGHT_ROWS)
        rows = next((t.num_rows for pieces in job.shards for piece in pieces for t in reader.read(piece)), 0)
        pieces = sum(len(p) for p in job.shards)
        return (f"Preflight: read {rows:,} sample rows of {self.what}: {len(self.files)} data file(s), {pieces} "
                f"piece(s) over {job.replicas} replica(s): OK")

    def open_reader(
        self, job: ScoringJob, plan: ReadPlan, *, batch_size: int, on_bad_row: Callable[[BadRow], None] | None = None
    ) -> ShardReader:
        return DeltaShardReader(self.spec, plan, self.secrets, batch_size)

    def fingerprint(self, job: ScoringJob) -> str | None:
        """The table and its pinned version (with the job's options): a version's files never change."""
        return job_fingerprint(job, {"table": self.spec.uri, "version": self.spec.version})

    def check_unchanged(self, job: ScoringJob) -> None:
        """A pinned version does not change: nothing to check."""

    def describe(self, job: ScoringJob) -> dict[str, Any]:
        return {
            "uri": self.spec.uri,
            "format": "delta",
            "version": self.spec.version,
            "columns": list(self.spec.columns) if self.spec.columns else None,
            "filter": [list(c) for c in self.spec.filter] if self.spec.filter else None,
            "files": len(self.files),
        }

