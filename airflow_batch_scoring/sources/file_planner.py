"""Shard planning: split the listed inputs into ``replicas`` deterministic shards, once, before any replica starts.

- Text (CSV, JSON lines): the files are laid end to end and cut into ``replicas`` byte ranges of (nearly) equal size,
  with every cut on a multiple of ``part_size`` (or of ``total / replicas`` when that is smaller); a range owns the
  lines that start inside it, so one large file is scored by every replica and every line exactly once.
- CSV with line breaks inside quoted values (``newlines_in_values``) and compressed text (``.gz``, ``.bz2``, ``.xz``,
  ``.zst``) cannot be split: whole files, balanced by size.
- Parquet: row groups, balanced by row count; a file with one row group goes to one replica.

The same listing always gives the same plan, so a retried replica redoes exactly its own shard.
"""

from __future__ import annotations

import heapq
import importlib.util
from dataclasses import replace

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from airflow_batch_scoring.errors import ConfigurationError, InputError
from airflow_batch_scoring.formats import compression_of
from airflow_batch_scoring.io.files import InputFile
from airflow_batch_scoring.io.store_ops import map_files
from airflow_batch_scoring.job import Piece
from airflow_batch_scoring.specs import FileSpec

_UNSUPPORTED_COMPRESSION = (".zip", ".snappy", ".lz4")


def _splittable(spec: FileSpec, file: InputFile) -> bool:
    """Whether a text file can be cut into byte ranges: not when compressed (a stream is read from its start), nor
    CSV whose quoted values may hold line breaks."""
    return not (spec.format == "csv" and spec.newlines_in_values) and compression_of(file.uri) is None


def plan_text(spec: FileSpec, files: list[InputFile], replicas: int, part_size: int) -> list[list[Piece]]:
    """Cut text inputs into ``replicas`` byte-balanced shards, cutting only on multiples of ``part_size``."""
    total = sum(f.size for f in files)
    if total == 0:
        raise InputError(
            f"the input is empty: {len(files)} file(s), 0 bytes ({', '.join(f.uri for f in files[:3])}); "
            "check that the upstream job wrote its output."
        )
    unsupported = [f.uri for f in files if f.uri.lower().endswith(_UNSUPPORTED_COMPRESSION)]
    if unsupported:
        raise ConfigurationError(
            f"This compression is not supported ({unsupported[0]}): recompress the files as .gz, .bz2, .xz or .zst, "
            "or convert them to Parquet."
        )
    if any(compression_of(f.uri) == "zstd" for f in files) and importlib.util.find_spec("zstandard") is None:
        raise ConfigurationError(
            "Reading .zst files needs the 'zstandard' package in the runtime: pip install zstandard."
        )
    shards: list[list[Piece]] = [[] for _ in range(replicas)]
    whole = [f for f in files if not _splittable(spec, f)]
    split = [f for f in files if _splittable(spec, f)]
    split_total = sum(f.size for f in split)
    if split_total:
        # Cut on part_size boundaries; an input smaller than part_size x replicas is cut finer, so that no replica
        # idles while another scores everything.
        unit = max(1, min(part_size, split_total // replicas))
        bounds = [min(split_total, (split_total * i // replicas + unit // 2) // unit * unit) for i in range(replicas)]
        bounds.append(split_total)
        offset = 0
        for file in split:
            file_start, file_end = offset, offset + file.size
            for shard in range(replicas):
                start, end = max(bounds[shard], file_start), min(bounds[shard + 1], file_end)
                if start < end:
                    shards[shard].append(Piece(file.uri, start - file_start, end - file_start))
            offset = file_end
    loads = [(sum(p.end - p.start for p in shard), index) for index, shard in enumerate(shards)]
    heapq.heapify(loads)
    for file in sorted(whole, key=lambda f: (-f.size, f.uri)):
        load, index = heapq.heappop(loads)
        # (a compressed file is read to its end: its decompressed size is not known)
        shards[index].append(Piece(file.uri, 0, -1 if compression_of(file.uri) else file.size))
        heapq.heappush(loads, (load + file.size, index))
    return shards


def plan_parquet(
    files: list[InputFile], replicas: int, fs: fsspec.AbstractFileSystem,
    schemas: list[tuple[str, pa.Schema]] | None = None,
) -> list[list[Piece]]:
    """Split Parquet inputs by row groups into ``replicas`` row-balanced shards.

    :param schemas: receives each file's URI and Arrow schema (read from the same footers), when given.

    :raises InputError: naming a file that is not Parquet, or when no file holds a row.
    """
    def footer(file: InputFile) -> tuple[pq.FileMetaData, pa.Schema]:
        try:
            with fs.open(fs._strip_protocol(file.uri), "rb") as f:
                parquet = pq.ParquetFile(f)
                return parquet.metadata, parquet.schema_arrow
        except (pa.ArrowInvalid, OSError) as err:
            raise InputError(
                f"is not a readable Parquet file ({err}); replace it or remove it from the input.", path=file.uri
            ) from err

    groups: list[tuple[str, int, int]] = []
    for file, (metadata, schema) in zip(files, map_files(fs, files, footer), strict=True):
        if schemas is not None:
            schemas.append((file.uri, schema))
        groups.extend((file.uri, index, metadata.row_group(index).num_rows) for index in range(metadata.num_row_groups))
    total = sum(rows for _, _, rows in groups)
    if total == 0:
        raise InputError(
            f"the input is empty: {len(files)} Parquet file(s) with 0 rows ({', '.join(f.uri for f in files[:3])}); "
            "check that the upstream job wrote its output."
        )
    shards: list[list[Piece]] = [[] for _ in range(replicas)]
    before = 0
    for uri, index, rows in groups:
        shard = min(replicas - 1, (2 * before + rows) * replicas // (2 * total))
        before += rows
        pieces = shards[shard]
        last = pieces[-1] if pieces else None
        if last is not None and last.path == uri:
            pieces[-1] = replace(last, row_groups=(*(last.row_groups or ()), index), rows=(last.rows or 0) + rows)
        else:
            pieces.append(Piece(uri, row_groups=(index,), rows=rows))
    return shards


def plan_shards(
    spec: FileSpec, files: list[InputFile], replicas: int, fs: fsspec.AbstractFileSystem, part_size: int = 1,
    schemas: list[tuple[str, pa.Schema]] | None = None,
) -> list[list[Piece]]:
    """Plan ``replicas`` shards over ``files``; some shards may be empty when the input is small.

    :param schemas: Parquet: receives each file's URI and Arrow schema.
    """
    if spec.format == "parquet":
        return plan_parquet(files, replicas, fs, schemas)
    return plan_text(spec, files, replicas, part_size)
