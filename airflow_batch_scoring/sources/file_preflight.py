"""Preflight: before any replica starts, read the head of each input and check it against the model schema.

A run that would fail on its inputs' shape (a missing column, a wrong type in the first rows, a file that is not
Parquet, the wrong delimiter) fails here in seconds, with the file, line and column, instead of after the replicas
have started and the model has been loaded N times.

Shared with the runtime: never imports Airflow.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from airflow_batch_scoring.errors import InputError
from airflow_batch_scoring.formats import compression_of
from airflow_batch_scoring.io.files import InputFile, filesystem
from airflow_batch_scoring.io.readers import make_reader
from airflow_batch_scoring.io.readers.columns import ReadPlan
from airflow_batch_scoring.job import Piece, ScoringJob
from airflow_batch_scoring.schema import ModelSchema
from airflow_batch_scoring.specs import FileSpec, narrow

#: bytes read from the head of each text file.
SAMPLE_BYTES = 256 * 1024
#: rows read from the head of each Parquet file.
SAMPLE_ROWS = 1000
#: files sampled (the first ones in listing order); a listing of thousands of files is not read twice.
MAX_FILES = 20


def preflight(
    job: ScoringJob,
    files: list[InputFile],
    storage_options: Mapping[str, Any] | None = None,
    *,
    max_files: int = MAX_FILES,
) -> int:
    """Read a sample of each input file (up to ``max_files``) the way the replicas will, and return its rows.

    The schema in force is the job's ``input_schema`` or the processed model's; when neither is known (a model whose
    columns only its loaded object knows) errors in the sample are left to the replicas, which judge the rows
    against the loaded model's columns and types. With ``on_bad_rows="quarantine"`` a bad row in
    the sample is left to the replicas to quarantine; errors about a whole file still fail here.

    :raises InputError: naming the file, the line or row, the column, the value and the expected type.
    """
    schema = job.input_model_schema() or ModelSchema.parse(job.model.input_schema)
    plan = ReadPlan(
        model_columns=list(schema.columns) if schema is not None else None,
        coerce=job.schema_check,
        passthrough=list(job.passthrough_columns),
        passthrough_types=job.passthrough_arrow_types(),
    )
    source = narrow(job.source, FileSpec)
    fs, _ = filesystem(source.uri, storage_options)
    block = min(job.part_size, SAMPLE_BYTES)
    reader = make_reader(source, plan, fs, block_size=block, batch_size=SAMPLE_ROWS)
    quarantine = getattr(job, "on_bad_rows", "fail") == "quarantine"
    rows = 0
    for file in files[:max_files]:
        if source.format == "parquet":
            piece = Piece(path=file.uri, row_groups=None)
        elif source.newlines_in_values or compression_of(file.uri):
            piece = Piece(path=file.uri, start=0, end=-1)  # the whole file, of which only the first block is read
        else:
            piece = Piece(path=file.uri, start=0, end=min(file.size, block))
        try:
            for table in reader.read(piece):
                rows += table.num_rows
                break  # the first batch (Parquet) or block (text) is the sample
        except InputError as err:
            if schema is None and (err.line is not None or err.row is not None or err.column is not None):
                continue  # without the model's columns rows cannot be judged: the replicas tell, with them
            if quarantine and (err.line is not None or err.row is not None):
                continue  # a row error: the replicas quarantine it
            raise
    return rows
