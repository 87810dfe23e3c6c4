"""Iceberg sinks, the commit: every data file of a run enters the table in ONE catalog commit, at most once.

Every snapshot the commit makes carries the run id and attempt in its summary (:data:`RUN_ID_KEY`); before
committing, the sink looks for it (:func:`committed_snapshot`) and commits nothing again when it is there. The modes,
as for a Delta table (:mod:`~airflow_batch_scoring.sinks.delta_commit`):

- ``append``: the replicas' files are added (``add_files``); a missing table is created in the same transaction, with
  identity partitions on ``partition_by``;
- ``overwrite``: every row is deleted, then the files are added, in the same transaction;
- ``overwrite_partition``: the rows of ``sink['partition']`` are deleted (whole files of that partition are dropped),
  then the files are added, in the same transaction; every file written must lie in that partition;
- ``merge``: the staged files are read back and merged on ``merge_keys`` with pyiceberg's ``upsert`` in the same
  transaction (rows whose keys exist are updated, the others inserted); pyiceberg's upsert holds the run's output in
  memory, so ``merge`` suits outputs that fit in the driver's memory.

A partitioned table's files keep their partition columns (Iceberg readers take the values from the files and the
manifests); only identity partitions are written.

Shared with the runtime: never imports Airflow.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from airflow_batch_scoring.errors import ConfigurationError
from airflow_batch_scoring.io.delta import partition_text
from airflow_batch_scoring.io.iceberg import ATTEMPT_KEY, RUN_ID_KEY
from airflow_batch_scoring.job import ScoringJob
from airflow_batch_scoring.specs import IcebergSpec


def committed_snapshot(table: Any, job_id: str) -> int | None:
    """The id of the snapshot that committed run ``job_id`` (the last one, for a commit of several), or ``None``."""
    found = None
    for snapshot in table.snapshots() if table is not None else ():
        summary = snapshot.summary
        if summary is not None and summary.get(RUN_ID_KEY) == job_id:
            found = snapshot.snapshot_id
    return found


def identity_columns(table: Any, name: str) -> list[str]:
    """The partition columns of ``table``'s current spec (identity transforms only).

    :raises ConfigurationError: for a partition field of another transform (bucket, day, truncate, ...).
    """
    from pyiceberg.transforms import IdentityTransform

    schema, columns, other = table.schema(), [], []
    for field in table.spec().fields:
        if isinstance(field.transform, IdentityTransform):
            columns.append(str(schema.find_column_name(field.source_id)))
        else:
            other.append(f"{field.name} ({field.transform})")
    if other:
        raise ConfigurationError(
            f"The Iceberg table {name} has partition field(s) {other} that are not identity partitions; this sink "
            "writes tables partitioned by column values only: write to a table partitioned by identity columns."
        )
    return columns


def _new_layout(schema: pa.Schema, partition_by: Sequence[str], name: str) -> tuple[Any, Any]:
    """The Iceberg schema and identity partition spec of a table the run creates."""
    from pyiceberg.catalog import Catalog
    from pyiceberg.partitioning import UNPARTITIONED_PARTITION_SPEC, PartitionField, PartitionSpec
    from pyiceberg.schema import assign_fresh_schema_ids
    from pyiceberg.transforms import IdentityTransform

    iceberg = assign_fresh_schema_ids(Catalog._convert_schema_if_needed(schema))
    if not partition_by:
        return iceberg, UNPARTITIONED_PARTITION_SPEC
    missing = [c for c in partition_by if c not in schema.names]
    if missing:
        raise ConfigurationError(
            f"sink['partition_by'] names {missing}, which the output for the Iceberg table {name} lacks (its "
            f"columns: {schema.names}): add them to passthrough_columns."
        )
    fields = [PartitionField(source_id=iceberg.find_field(c).field_id, field_id=1000 + i,
                             transform=IdentityTransform(), name=c) for i, c in enumerate(partition_by)]
    return iceberg, PartitionSpec(*fields)


def partition_filter(partition: Sequence[tuple[str, Any]]) -> Any:
    """The rows of a partition, as a pyiceberg expression (every column equal to its value, or null)."""
    from pyiceberg import expressions

    ops: Any = expressions  # (pydantic models: their constructors confuse type checkers)
    terms = [ops.IsNull(c) if v is None else ops.EqualTo(c, v) for c, v in partition]
    return functools.reduce(ops.And, terms[1:], terms[0])


def check_partition(spec: IcebergSpec, actions: Sequence[Mapping[str, Any]]) -> None:
    """Every file of an ``overwrite_partition`` run lies in ``sink['partition']``.

    :raises ConfigurationError: naming a partition of the output outside it.
    """
    wanted = {k: partition_text(v) for k, v in spec.partition or ()}
    outside = sorted({str(a["partition_values"]) for a in actions
                      if {k: a["partition_values"].get(k) for k in wanted} != wanted})
    if outside:
        raise ConfigurationError(
            f"The run's output holds rows outside the partition {wanted} it overwrites (e.g. {outside[0]}); nothing "
            "was committed. Filter the input to that partition, or fix sink['partition']."
        )


def read_staged(fs: Any, paths: Sequence[str]) -> pa.Table:
    tables = []
    for path in paths:
        with fs.open(path, "rb") as f:
            tables.append(pq.read_table(f))
    return pa.concat_tables(tables)


def commit(
    job: ScoringJob,
    catalog: Any,
    table: Any,
    schema: pa.Schema,
    files: Sequence[str],
    read_files: Callable[[], pa.Table],
    log: Callable[[str], None],
) -> dict[str, Any]:
    """Commit the run's files (``files``: their URIs) to ``table`` (``None``: create it) in one catalog commit.

    :param read_files: the staged output as one Arrow table (``merge`` only).
    :returns: ``{"created": bool, "inserted": int, "updated": int}`` (the last two for ``merge``).
    :raises ConfigurationError: for rows outside the partition overwritten, duplicate merge keys in the output.
    """
    from pyiceberg.expressions import AlwaysTrue

    assert isinstance(job.sink, IcebergSpec)
    spec = job.sink
    properties = {RUN_ID_KEY: job.job_id, ATTEMPT_KEY: job.attempt}
    created = table is None
    details: dict[str, Any] = {"created": created}
    missing = [k for k in spec.merge_keys or () if k not in schema.names]
    if spec.mode == "merge" and missing:
        raise ConfigurationError(
            f"The output for the Iceberg table {spec.table} has no column(s) {missing} named in sink['merge_keys'] "
            f"(its columns: {schema.names}); nothing was committed. Add them to passthrough_columns."
        )
    if created:
        catalog.create_namespace_if_not_exists(spec.table.split(".", 1)[0])
        iceberg_schema, partition_spec = _new_layout(schema, spec.partition_by or (), spec.table)
        transaction = catalog.create_table_transaction(spec.table, schema=iceberg_schema, location=spec.uri,
                                                       partition_spec=partition_spec)
    else:
        transaction = table.transaction()
    data = read_files() if spec.mode == "merge" else None
    with transaction as tx:
        if not created and spec.allow_new_columns:
            with tx.update_schema() as update:
                update.union_by_name(schema)
        if data is not None and not created:
            try:
                result = tx.upsert(data, join_cols=list(spec.merge_keys or ()), snapshot_properties=properties)
            except ValueError as err:
                if "Duplicate rows" not in str(err):
                    raise
                raise ConfigurationError(
                    f"The run's output holds several rows with the same merge_keys {list(spec.merge_keys or ())}; "
                    f"nothing was committed to the Iceberg table {spec.table}. Make the keys unique in the input."
                ) from None
            details.update(updated=result.rows_updated, inserted=result.rows_inserted)
        elif data is not None:
            tx.append(data, snapshot_properties=properties)
            details.update(updated=0, inserted=data.num_rows)
        else:
            if spec.mode == "overwrite" and not created:
                tx.delete(AlwaysTrue(), snapshot_properties=properties)
            elif spec.mode == "overwrite_partition" and not created:
                with warnings.catch_warnings():  # a partition written for the first time has nothing to delete
                    warnings.filterwarnings("ignore", "Delete operation did not match any records")
                    tx.delete(partition_filter(spec.partition or ()), snapshot_properties=properties)
            tx.add_files(list(files), snapshot_properties=properties)
    if created:
        log(f"Created the Iceberg table {spec.table} at {spec.uri}"
            + (f", partitioned by {list(spec.partition_by)}" if spec.partition_by else ""))
    return details


__all__ = ["check_partition", "commit", "committed_snapshot", "identity_columns", "partition_filter", "read_staged"]
