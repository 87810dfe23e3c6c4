"""Missing values a model refuses: find the first one's file, line (or row) and column for the error message.

Nulls reach the model as NaN, and many models handle them. When a model refuses a batch that holds some (scikit-learn:
``ValueError: Input X contains NaN``), the shard is read again with missing values treated as bad rows, so that the
error names the first one as precisely as any other bad value.

Shared with the runtime: never imports Airflow.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from airflow_batch_scoring.errors import BatchScoringError, InputError, ModelError
from airflow_batch_scoring.io import bad_rows
from airflow_batch_scoring.io.files import filesystem
from airflow_batch_scoring.io.readers import ReadPlan, make_reader
from airflow_batch_scoring.job import Piece, ScoringJob


def has_missing(table: pa.Table) -> bool:
    """Whether any value of ``table`` is null or NaN."""
    for array in table.columns:
        if array.null_count or (pa.types.is_floating(array.type) and pc.any(pc.is_nan(array)).as_py()):
            return True
    return False


def missing_value_error(
    job: ScoringJob, plan: ReadPlan, pieces: list[Piece], source_options: Mapping[str, Any] | None, err: Exception
) -> BatchScoringError:
    """The error for a model that refused a batch with missing values: the shard is read again, treating a missing
    value as bad, to name the first one's file, line (or row) and column.
    """
    cause = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
    if not job.source.is_sql:
        scan_plan = dataclasses.replace(plan, reject_missing=True)

        def on_bad_row(bad: bad_rows.BadRow) -> None:  # quarantine: other bad rows were quarantined in the run too
            if bad.reason == bad_rows.MISSING_VALUE:
                raise InputError(bad.message or "", path=bad.file, line=bad.line, row=bad.row, column=bad.column)

        source_fs, _ = filesystem(job.source.uri, source_options)
        scanner = make_reader(
            job.source, scan_plan, source_fs, block_size=job.part_size, batch_size=job.batch_size,
            on_bad_row=on_bad_row if job.on_bad_rows == "quarantine" else None,
        )
        try:
            for piece in pieces:
                for _ in scanner.read(piece):
                    pass
        except InputError as located:
            return InputError(
                f"{located.message} (The model failed with {cause})", path=located.path, line=located.line,
                row=located.row, column=located.column,
            )
    return ModelError(
        f"The model failed on a batch with missing values (null or NaN) in its input columns: {cause}. Fill the "
        "missing values upstream, or score with a model that handles them (e.g. with an imputer in its pipeline)."
    )
