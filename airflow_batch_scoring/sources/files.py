"""Files as a source: listed once, planned into byte ranges or row groups, preflighted, resumable.

The driver lists the input (:func:`~airflow_batch_scoring.io.files.list_inputs`), plans the shards
(:mod:`~airflow_batch_scoring.sources.file_planner`) and reads a sample
(:mod:`~airflow_batch_scoring.sources.file_preflight`); the listing is the run's fingerprint for resuming, and is
listed again before publishing to refuse an input that changed meanwhile. Each replica opens the format's reader
(:mod:`airflow_batch_scoring.io.readers`) on its pieces.

Shared with the runtime: never imports Airflow.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from typing import Any

import pyarrow as pa

from airflow_batch_scoring.errors import ConfigurationError, InputError
from airflow_batch_scoring.formats import infer_format
from airflow_batch_scoring.io import locations
from airflow_batch_scoring.io.bad_rows.quarantine import BadRow
from airflow_batch_scoring.io.files import InputFile, describe_access, filesystem, list_inputs
from airflow_batch_scoring.io.readers import make_reader
from airflow_batch_scoring.io.readers.base import PieceReader
from airflow_batch_scoring.io.readers.columns import ReadPlan
from airflow_batch_scoring.job import Piece, ScoringJob
from airflow_batch_scoring.runtime import passthrough
from airflow_batch_scoring.schema import ModelSchema
from airflow_batch_scoring.sources.base import ShardReader, job_fingerprint
from airflow_batch_scoring.sources.file_planner import plan_shards
from airflow_batch_scoring.sources.file_preflight import SAMPLE_BYTES, preflight
from airflow_batch_scoring.sources.incremental import NewData, new_files
from airflow_batch_scoring.specs import DataSpec, FileSpec, narrow


def format_of_listing(uri: str, files: Sequence[InputFile]) -> str:
    """Infer the input format from the listed files' suffixes (a folder or glob URI tells none itself).

    :raises ConfigurationError: when the suffixes disagree or tell nothing.
    """
    formats = {infer_format(f.uri) for f in files}
    if len(formats) == 1 and None not in formats:
        return formats.pop()  # type: ignore[return-value]
    raise ConfigurationError(
        f"Cannot tell the format of the input {uri!r} from its files' names ({', '.join(f.uri for f in files[:3])}): "
        "set source['format'] to csv, jsonl or parquet."
    )


def fingerprint(job: ScoringJob, files: Sequence[InputFile]) -> str:
    """The job's fingerprint with its input listing (names, sizes, versions): see
    :func:`~airflow_batch_scoring.sources.base.job_fingerprint`."""
    return job_fingerprint(job, {"inputs": [f.to_dict() for f in files]})


class _FileShardReader:
    """A format reader as a :class:`~airflow_batch_scoring.sources.base.ShardReader` (its files close per piece)."""

    def __init__(self, reader: PieceReader):
        self.reader = reader

    @property
    def bytes_done(self) -> int:
        return self.reader.bytes_done

    def read(self, piece: Piece) -> Iterator[pa.Table]:
        return self.reader.read(piece)

    def close(self) -> None:
        """Nothing stays open between pieces."""


class FileSource:
    """A file, folder or glob of CSV, JSON lines or Parquet files.

    :param spec: the source spec (a :class:`~airflow_batch_scoring.specs.FileSpec`).
    :param secrets: the source's fsspec options.
    :param files: the listing the driver made (none on a replica, which reads the pieces it is given).
    """

    row_errors = True

    def __init__(self, spec: DataSpec, secrets: Mapping[str, Any] | None, files: Sequence[InputFile] = ()):
        self.spec = narrow(spec, FileSpec)
        self.secrets = secrets
        self.files = list(files)
        self.what = self.spec.uri
        self._parquet_schemas: list[tuple[str, pa.Schema]] = []

    @staticmethod
    def place(spec: DataSpec) -> tuple[DataSpec, str | None]:
        resolved = replace(narrow(spec, FileSpec), uri=locations.normalize_location(spec.uri, "source"))
        return resolved, resolved.uri

    def listing(self) -> list[InputFile]:
        self.files = list_inputs(self.spec.uri, self.secrets, conn_id=self.spec.conn_id)
        return self.files

    def restrict_to_new(self, since: Mapping[str, Any] | None) -> NewData:
        """Keep the listed files not scored yet (see :func:`~airflow_batch_scoring.sources.incremental.new_files`)."""
        new = new_files(self.files, since, self.spec.uri)
        self.files = new.files
        return new

    def plan(self, replicas: int, plan: ReadPlan, part_size: int) -> list[list[Piece]]:
        if not self.spec.format:
            self.spec = replace(self.spec, format=format_of_listing(self.spec.uri, self.files))
        fs, _ = filesystem(self.spec.uri, self.secrets)
        self._parquet_schemas = []
        return plan_shards(self.spec, self.files, replicas, fs, part_size, self._parquet_schemas)

    def output_format(self) -> str:
        return self.spec.format

    def detect_header(self, plan: ReadPlan, part_size: int) -> bool:
        if self.spec.format != "csv":
            return False
        fs, _ = filesystem(self.spec.uri, self.secrets)
        reader = make_reader(self.spec, plan, fs, block_size=min(part_size, SAMPLE_BYTES), batch_size=1)
        return bool(reader.detect_header(Piece(self.files[0].uri)))  # type: ignore[attr-defined]

    def decide_passthrough(
        self, names: list[str], given: ModelSchema | None, model_columns: list[str] | None
    ) -> pa.Schema:
        return passthrough.decide(self.spec.format, names, given, model_columns, parquet_schemas=self._parquet_schemas)

    def preflight(self, job: ScoringJob) -> str:
        rows = preflight(job, self.files, self.secrets)
        return (
            f"Preflight: read {rows:,} sample rows from {min(len(self.files), 20)} of {len(self.files)} input file(s): "
            "OK"
        )

    def open_reader(
        self, job: ScoringJob, plan: ReadPlan, *, batch_size: int, on_bad_row: Callable[[BadRow], None] | None = None
    ) -> ShardReader:
        fs, _ = filesystem(self.spec.uri, self.secrets)
        return _FileShardReader(
            make_reader(self.spec, plan, fs, block_size=job.part_size, batch_size=batch_size, on_bad_row=on_bad_row)
        )

    def fingerprint(self, job: ScoringJob) -> str | None:
        return fingerprint(job, self.files)

    def check_unchanged(self, job: ScoringJob) -> None:
        """List the input again after scoring and refuse to publish when a file was added, removed or changed.

        :raises InputError: naming the files that differ.
        """
        now = list_inputs(self.spec.uri, self.secrets, conn_id=self.spec.conn_id)
        before = {f.uri: f for f in self.files}
        after = {f.uri: f for f in now if not job.incremental or f.uri in before}  # new files: the next run's
        added = sorted(set(after) - set(before))
        removed = sorted(set(before) - set(after))
        changed = sorted(u for u in set(before) & set(after) if before[u] != after[u])
        if added or removed or changed:
            details = "; ".join(
                f"{what}: {', '.join(names[:5])}{' ...' if len(names) > 5 else ''}"
                for what, names in (("added", added), ("removed", removed), ("changed", changed))
                if names
            )
            raise InputError(
                f"the input {self.spec.uri} changed while it was being scored ({details}); nothing was published. "
                f"Write inputs completely before the run starts (e.g. land them under a name starting with '_' and "
                f"rename), then retry ({describe_access(self.spec.uri, self.spec.conn_id)}).",
                retryable=True,  # a retry plans the input as it is now
            )

    def describe(self, job: ScoringJob) -> dict[str, Any]:
        return {
            "uri": self.spec.uri,
            "format": self.spec.format,
            "header": self.spec.header,
            "files": [f.to_dict() for f in self.files],
        }
