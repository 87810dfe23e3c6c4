"""Part writers: stream Arrow tables into one CSV, JSON lines or Parquet file through fsspec.

The first table fixes the part's schema; later tables are cast to it, so a part never changes columns midway.
"""

from __future__ import annotations

import json
from typing import Any, BinaryIO

import fsspec
import fsspec.compression
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from airflow_batch_scoring.io.uploads import open_for_upload
from airflow_batch_scoring.job import MIN_UPLOAD_PART


class PartWriter:
    """Writes one part file; ``close`` returns the number of rows written."""

    def __init__(
        self,
        fs: fsspec.AbstractFileSystem,
        path: str,
        *,
        header: bool = False,
        part_size: int = MIN_UPLOAD_PART,
        write_concurrency: int = 1,
        compression: str | None = None,
    ):
        self.fs = fs
        self.compression = compression
        self._raw: BinaryIO | None = None  # the stored object, under the compressor when there is one
        self.part_size = max(part_size, MIN_UPLOAD_PART)
        self.write_concurrency = write_concurrency
        self.path = path
        self.header = header
        self.rows = 0
        self.schema: pa.Schema | None = None
        self._file: BinaryIO | None = None

    def write(self, table: pa.Table) -> None:
        if self.schema is None:
            self.schema = table.schema
            # Object stores upload a part each time part_size bytes are buffered (multipart upload).
            raw = open_for_upload(self.fs, self.path, self.part_size, self.write_concurrency)
            stream: BinaryIO = raw
            if self.compression:  # (gzip.GzipFile and the others leave the object they write to open)
                stream = fsspec.compression.compr[self.compression](raw, mode="wb")
            self._raw, self._file = raw, stream
            self._open(stream, table.schema)
        elif table.schema != self.schema:
            table = table.cast(self.schema)
        self._write(table)
        self.rows += table.num_rows

    def close(self) -> int:
        if self._file is not None and self._raw is not None:
            self._close()
            if self._file is not self._raw:
                self._file.close()  # the compressor's trailer
            self._raw.close()
            self._file = self._raw = None
        return self.rows

    def abort(self) -> None:
        """Close without completing; the caller discards the staging folder."""
        if self._raw is not None:
            try:
                abort = getattr(self._raw, "abort", None)
                (abort or self._raw.close)()
            finally:
                self._file = self._raw = None

    def _open(self, f: BinaryIO, schema: pa.Schema) -> None:
        raise NotImplementedError

    def _write(self, table: pa.Table) -> None:
        raise NotImplementedError

    def _close(self) -> None:
        pass


class CsvPartWriter(PartWriter):
    """CSV with a header line only when asked; floats at full (shortest round-trip) precision."""

    def _open(self, f: BinaryIO, schema: pa.Schema) -> None:
        self._writer = pa_csv.CSVWriter(f, schema, write_options=pa_csv.WriteOptions(include_header=self.header))

    def _write(self, table: pa.Table) -> None:
        self._writer.write_table(table)

    def _close(self) -> None:
        self._writer.close()


class ParquetPartWriter(PartWriter):
    def _open(self, f: BinaryIO, schema: pa.Schema) -> None:
        self._writer = pq.ParquetWriter(f, schema, compression="snappy")

    def _write(self, table: pa.Table) -> None:
        self._writer.write_table(table)

    def _close(self) -> None:
        self._writer.close()


_ESCAPES = [("\\", "\\\\"), ('"', '\\"'), ("\n", "\\n"), ("\r", "\\r"), ("\t", "\\t"), ("\b", "\\b"), ("\f", "\\f")]


def _json_strings(array: pa.Array) -> pa.Array:
    """Encode a string column as JSON string literals (vectorised; per value only for rare control characters)."""
    if pc.any(pc.match_substring_regex(array, "[\\x00-\\x07\\x0b\\x0e-\\x1f]")).as_py():
        return pa.array([None if v is None else json.dumps(v) for v in array.to_pylist()], pa.string())
    for old, new in _ESCAPES:
        array = pc.replace_substring(array, old, new)
    return pc.binary_join_element_wise('"', array, '"', "")


def json_values(array: pa.Array) -> pa.Array:
    """Encode one column as JSON literals, nulls (and NaN/infinity) as ``null``."""
    kind = array.type
    if pa.types.is_dictionary(kind):
        array = array.cast(kind.value_type)
        kind = array.type
    if pa.types.is_boolean(kind):
        encoded = pc.if_else(array, "true", "false")
    elif pa.types.is_floating(kind):
        encoded = pc.if_else(pc.is_finite(array), array.cast(pa.string()), None)
    elif pa.types.is_integer(kind) or pa.types.is_decimal(kind):
        encoded = array.cast(pa.string())
    elif pa.types.is_timestamp(kind):
        encoded = _json_strings(pc.strftime(array, format="%Y-%m-%dT%H:%M:%S"))
    elif pa.types.is_date(kind) or pa.types.is_time(kind):
        encoded = _json_strings(array.cast(pa.string()))
    elif pa.types.is_string(kind) or pa.types.is_large_string(kind):
        encoded = _json_strings(array.cast(pa.string()))
    else:
        encoded = pa.array([None if v is None else json.dumps(v, default=str) for v in array.to_pylist()], pa.string())
    return pc.fill_null(encoded, "null")


class JsonLinesPartWriter(PartWriter):
    """JSON lines, built column-wise with Arrow compute and written straight from the result's data buffer."""

    def _open(self, f: BinaryIO, schema: pa.Schema) -> None:
        self._f = f
        self._keys = [json.dumps(name) for name in schema.names]

    def _write(self, table: pa.Table) -> None:
        if not table.num_rows:
            return
        parts: list[Any] = []
        for position, (key, column) in enumerate(zip(self._keys, table.columns, strict=True)):
            parts.append(("{" if position == 0 else ",") + key + ":")
            parts.append(json_values(column.combine_chunks()))
        parts.append("}\n")
        lines = pc.binary_join_element_wise(*parts, "")
        offsets = lines.buffers()[1]
        first = pa.Array.from_buffers(pa.int32(), 1, [None, offsets], offset=lines.offset).to_pylist()[0]
        last = pa.Array.from_buffers(pa.int32(), 1, [None, offsets], offset=lines.offset + len(lines)).to_pylist()[0]
        self._f.write(memoryview(lines.buffers()[2])[first:last])


_WRITERS = {"csv": CsvPartWriter, "jsonl": JsonLinesPartWriter, "parquet": ParquetPartWriter}


def make_writer(
    fmt: str,
    fs: fsspec.AbstractFileSystem,
    path: str,
    *,
    header: bool = False,
    part_size: int = MIN_UPLOAD_PART,
    write_concurrency: int = 1,
    compression: str | None = None,
) -> PartWriter:
    """Return a writer of ``fmt`` for the part file at ``path`` (compressed with ``compression``: CSV and JSON lines).
    """
    return _WRITERS[fmt](
        fs, path, header=header, part_size=part_size, write_concurrency=write_concurrency, compression=compression
    )
