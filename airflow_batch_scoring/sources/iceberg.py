"""An Apache Iceberg table (SQL catalog) as a source: pinned to one snapshot, split by its data files' row groups.

The driver loads the table once and pins its snapshot (``source['snapshot_id']``, or the current one then); the
snapshot's data files (its scan's tasks, pruned by ``source['filter']`` on partitions and column statistics) are
planned as Parquet files, and each replica reads its row groups (with ``columns`` or a ``filter``: only the columns
needed, the rows the filter keeps: :mod:`~airflow_batch_scoring.sources.iceberg_reader`). Tables whose snapshot needs
delete files (row-level deletes) are refused for now.

Shared with the runtime: never imports Airflow.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pyarrow as pa

from airflow_batch_scoring.errors import ConfigurationError, InputError
from airflow_batch_scoring.io.bad_rows.quarantine import BadRow
from airflow_batch_scoring.io.files import InputFile, filesystem
from airflow_batch_scoring.io.iceberg import load_catalog, load_table, storage_of
from airflow_batch_scoring.io.readers import make_reader
from airflow_batch_scoring.io.readers.columns import ReadPlan
from airflow_batch_scoring.job import Piece, ScoringJob
from airflow_batch_scoring.sources.base import PREFLIGHT_ROWS, ShardReader, job_fingerprint, read_plan
from airflow_batch_scoring.sources.file_planner import plan_parquet
from airflow_batch_scoring.sources.files import _FileShardReader
from airflow_batch_scoring.sources.iceberg_reader import IcebergShardReader
from airflow_batch_scoring.sources.incremental import NewData, iceberg_new
from airflow_batch_scoring.sources.table_files import TableFilesSource
from airflow_batch_scoring.sources.table_filter import iceberg_filter
from airflow_batch_scoring.specs import DataSpec, FileSpec, IcebergSpec, narrow


class IcebergSource(TableFilesSource):
    """An Iceberg table read at one snapshot.

    :param secrets: ``{"storage": <fsspec options of the warehouse>, "catalog_url": <the catalog's URL>}``.
    """

    row_errors = False

    def __init__(self, spec: DataSpec, secrets: Mapping[str, Any] | None, files: Sequence[InputFile] = ()):
        self.spec = narrow(spec, IcebergSpec)
        self.secrets = secrets
        self.files = list(files)
        self.what = f"the Iceberg table {self.spec.table}" + (
            f" (snapshot {self.spec.snapshot_id})" if self.spec.snapshot_id is not None else "")
        self._schema: pa.Schema | None = None

    @staticmethod
    def place(spec: DataSpec) -> tuple[DataSpec, str | None]:
        return spec, spec.uri.rstrip("/") + "/"

    def listing(self) -> list[InputFile]:
        """Load the table, pin its snapshot, and list the snapshot's data files."""
        from dataclasses import replace

        table = load_table(load_catalog(self.spec, self.secrets), self.spec)
        if table is None:
            raise InputError(f"there is no Iceberg table {self.spec.table} in the catalog; check source['table'] and "
                             "the catalog.")
        snapshot = (table.snapshot_by_id(self.spec.snapshot_id) if self.spec.snapshot_id is not None
                    else table.current_snapshot())
        if snapshot is None:
            raise InputError(f"the Iceberg table {self.spec.table} has "
                             f"{'no snapshot ' + str(self.spec.snapshot_id) if self.spec.snapshot_id else 'no data'}.")
        self.spec = replace(self.spec, snapshot_id=snapshot.snapshot_id)
        self.what = f"the Iceberg table {self.spec.table} (snapshot {snapshot.snapshot_id})"
        self._schema = table.schema().as_arrow()
        self._check_names(self._schema.names)
        scan = table.scan(snapshot_id=snapshot.snapshot_id, row_filter=iceberg_filter(self.spec.filter or ()),
                          selected_fields=tuple(self.spec.columns or ("*",)))
        try:
            tasks = list(scan.plan_files())
        except (ValueError, TypeError) as err:  # a value that does not fit its column's type
            raise InputError(f"source['filter'] {[list(c) for c in self.spec.filter or ()]} does not fit the columns "
                             f"of {self.what}: {str(err).splitlines()[0][:300]}. Give each value in its column's "
                             "type.") from None
        if any(task.delete_files for task in tasks):
            raise ConfigurationError(f"{self.what} has row-level delete files, which this source does not read yet; "
                                     "compact the table first.")
        self.files = [InputFile(task.file.file_path, int(task.file.file_size_in_bytes),
                                version=f"iceberg:{snapshot.snapshot_id}") for task in tasks]
        return self.files

    def _check_names(self, names: list[str]) -> None:
        """Every column ``filter`` and ``columns`` name is the table's.

        :raises InputError: naming the column and the table's columns.
        """
        for key, named in (("filter", [c[0] for c in self.spec.filter or ()]), ("columns", self.spec.columns or ())):
            for column in named:
                if column not in names:
                    raise InputError(f"source[{key!r}] names the column {column!r}, which {self.what} does not have; "
                                     f"its columns are {names}. Nothing was scored.")

    def restrict_to_new(self, since: Mapping[str, Any] | None) -> NewData:
        """Keep the data files the ``append`` snapshots after ``since`` added (see
        :func:`~airflow_batch_scoring.sources.incremental.iceberg_new`)."""
        table = load_table(load_catalog(self.spec, self.secrets), self.spec)
        new = iceberg_new(table, since, table.snapshot_by_id(self.spec.snapshot_id), self.files, self.spec.table)
        self.files = new.files
        return new

    def _fs(self) -> Any:
        return filesystem(self.spec.uri, storage_of(self.secrets))[0]

    def plan(self, replicas: int, plan: ReadPlan, part_size: int) -> list[list[Piece]]:
        if not self.files:
            raise InputError(f"{self.what} holds no data file"
                             f"{' where source[filter] holds' if self.spec.filter else ''}: nothing to score.")
        return plan_parquet(self.files, replicas, self._fs())

    def _reader(self, plan: ReadPlan, batch_size: int) -> ShardReader:
        if self.spec.filter or self.spec.columns:
            return IcebergShardReader(self.spec, plan, self._fs(), batch_size)
        spec = FileSpec(uri=self.spec.uri, format="parquet")
        return _FileShardReader(make_reader(spec, plan, self._fs(), block_size=1 << 20, batch_size=batch_size))

    def preflight(self, job: ScoringJob) -> str:
        reader = self._reader(read_plan(job), PREFLIGHT_ROWS)
        rows = next((t.num_rows for pieces in job.shards for piece in pieces for t in reader.read(piece)), 0)
        return f"Preflight: read {rows:,} sample rows of {self.what}: {len(self.files)} data file(s): OK"

    def open_reader(
        self, job: ScoringJob, plan: ReadPlan, *, batch_size: int, on_bad_row: Callable[[BadRow], None] | None = None
    ) -> ShardReader:
        return self._reader(plan, batch_size)

    def fingerprint(self, job: ScoringJob) -> str | None:
        """The table and its pinned snapshot (with the job's options): a snapshot's files never change."""
        return job_fingerprint(job, {"table": self.spec.table, "snapshot": self.spec.snapshot_id})

    def check_unchanged(self, job: ScoringJob) -> None:
        """A pinned snapshot does not change: nothing to check."""

    def describe(self, job: ScoringJob) -> dict[str, Any]:
        return {"table": self.spec.table, "format": "iceberg", "warehouse": self.spec.warehouse,
                "snapshot_id": self.spec.snapshot_id, "files": len(self.files),
                "columns": list(self.spec.columns) if self.spec.columns else None,
                "filter": [list(c) for c in self.spec.filter] if self.spec.filter else None}
