"""What every source is: the :class:`Source` protocol (driver and replica side) and its :class:`ShardReader`.

A source is built from its spec and its secret material (and, on the driver, the listing it made). The driver lists,
plans and preflights it once; each replica opens a reader on its shard's pieces. Nothing here knows files from
tables: :func:`airflow_batch_scoring.sources.open_source` picks the implementation from the spec.

Shared with the runtime: never imports Airflow.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict
from typing import Any, Protocol

import pyarrow as pa

from airflow_batch_scoring.io.bad_rows.quarantine import BadRow
from airflow_batch_scoring.io.files import InputFile
from airflow_batch_scoring.io.readers.columns import ReadPlan
from airflow_batch_scoring.job import Piece, ScoringJob
from airflow_batch_scoring.schema import ModelSchema
from airflow_batch_scoring.sources.incremental import NewData
from airflow_batch_scoring.specs import DataSpec

#: rows a source's preflight reads before any replica starts (tables and queries; files read their own sample).
PREFLIGHT_ROWS = 1000


class ShardReader(Protocol):
    """Streams the pieces of one shard as Arrow tables."""

    @property
    def bytes_done(self) -> int:
        """Text bytes consumed so far (for progress; 0 for sources without bytes)."""
        ...

    def read(self, piece: Piece) -> Iterator[pa.Table]: ...

    def close(self) -> None: ...


class Source(Protocol):
    """Where a job reads its rows from.

    Built from a spec, its secret material and (on the driver) its listing; an implementation narrows the spec to
    the kind it reads.

    :ivar spec: the source spec (after :meth:`plan`, with what the listing told, e.g. the files' format).
    :ivar what: the source for messages (``file:///data/in.csv``, ``table public.customers``).
    :ivar row_errors: whether its readers report bad rows one by one (``on_bad_rows="quarantine"``, and locating a
        value the model refused); a source without cannot quarantine.
    """

    what: str
    row_errors: bool

    def __init__(self, spec: DataSpec, secrets: Mapping[str, Any] | None, files: Sequence[InputFile] = ()) -> None:
        ...

    @property
    def spec(self) -> DataSpec: ...

    @staticmethod
    def place(spec: DataSpec) -> tuple[DataSpec, str | None]:
        """The spec with its location resolved (``..`` removed), and the files' location (``None`` for a table or
        a query)."""
        ...

    def listing(self) -> list[InputFile]:
        """List the inputs (the driver, once); a source without files returns ``[]``."""
        ...

    def restrict_to_new(self, since: Mapping[str, Any] | None) -> NewData:
        """Incremental scoring: keep only what is new since the watermark ``since`` (``None``: everything), after
        :meth:`listing` and before :meth:`plan`; return it with the watermark once it is scored (see
        :mod:`airflow_batch_scoring.sources.incremental`).

        :raises ConfigurationError: for a source that cannot be read incrementally (a SQL table or query).
        """
        ...

    def plan(self, replicas: int, plan: ReadPlan, part_size: int) -> list[list[Piece]]:
        """Split the source into ``replicas`` shards (and sets :attr:`spec`'s format when the listing tells it)."""
        ...

    def output_format(self) -> str:
        """The format a file sink writes when its spec names none."""
        ...

    def detect_header(self, plan: ReadPlan, part_size: int) -> bool:
        """Whether the input has a header line (a CSV output then gets one)."""
        ...

    def decide_passthrough(
        self, names: list[str], given: ModelSchema | None, model_columns: list[str] | None
    ) -> dict[str, pa.DataType]:
        """The passthrough columns' types for the whole run (see :mod:`airflow_batch_scoring.runtime.passthrough`)."""
        ...

    def preflight(self, job: ScoringJob) -> str:
        """Read a sample the way the replicas will; return the log line saying what was read."""
        ...

    def open_reader(
        self, job: ScoringJob, plan: ReadPlan, *, batch_size: int, on_bad_row: Callable[[BadRow], None] | None = None
    ) -> ShardReader:
        """A reader of this source's pieces (a replica, or a scan)."""
        ...

    def fingerprint(self, job: ScoringJob) -> str | None:
        """A digest of the job and the input as listed, or ``None`` when the source cannot be resumed."""
        ...

    def check_unchanged(self, job: ScoringJob) -> None:
        """Refuse to publish when the input changed while it was scored (a source without listing: nothing)."""
        ...

    def describe(self, job: ScoringJob) -> dict[str, Any]:
        """The manifest's ``input`` section (never a credential)."""
        ...


def job_fingerprint(job: ScoringJob, input_state: Mapping[str, Any]) -> str:
    """A digest of everything that decides a shard's output: the job (the model's digest, every option, the shard
    plan) and ``input_state`` (the input's listing, a table's pinned version). What differs between attempts of one
    run (its id, staging folder and attempt, the processed model's local path) is left out."""
    spec = asdict(job)
    for key in ("job_id", "staging_uri", "attempt"):
        spec.pop(key, None)
    spec["model"] = {k: v for k, v in spec["model"].items() if k != "path"}
    document = {"job": spec, **input_state}
    return "sha256:" + hashlib.sha256(json.dumps(document, sort_keys=True, default=str).encode()).hexdigest()


def read_plan(job: ScoringJob) -> ReadPlan:
    """The columns the driver knows before a replica loads the model (``input_schema`` or the processed model's)."""
    schema = job.input_model_schema() or ModelSchema.parse(job.model.input_schema)
    return ReadPlan(
        model_columns=list(schema.columns) if schema is not None else None,
        coerce=job.schema_check,
        passthrough=list(job.passthrough_columns),
        passthrough_types=job.passthrough_arrow_types(),
    )
