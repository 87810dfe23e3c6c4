"""File formats and the file keys of a source or sink spec: format names and suffixes, compressions, CSV headers,
column lists, text encodings.

The spec types that use them are in :mod:`airflow_batch_scoring.specs`. Shared with the runtime: never imports
Airflow.
"""

from __future__ import annotations

import codecs
from typing import Any

from airflow_batch_scoring.coercion import to_bool
from airflow_batch_scoring.errors import ConfigurationError

FORMATS = ("csv", "jsonl", "parquet")
_SUFFIX_FORMATS = {
    ".csv": "csv",
    ".txt": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
}


#: compressed text inputs read as streams (each file whole, by one replica): suffix -> fsspec compression name.
COMPRESSIONS = {".gz": "gzip", ".bz2": "bz2", ".xz": "xz", ".zst": "zstd"}


def compression_of(uri: str) -> str | None:
    """The compression a file's suffix names (``day.csv.gz`` -> ``gzip``), or ``None``."""
    name = uri.rstrip("/").rsplit("/", 1)[-1].lower()
    return next((codec for suffix, codec in COMPRESSIONS.items() if name.endswith(suffix)), None)


def infer_format(uri: str) -> str | None:
    """Return the format a URI's suffix names (``data.csv`` or ``data.csv.gz`` -> ``csv``), or ``None``."""
    name = uri.rstrip("/").rsplit("/", 1)[-1].lower()
    for suffix in COMPRESSIONS:
        name = name.removesuffix(suffix)
    for suffix, fmt in _SUFFIX_FORMATS.items():
        if name.endswith(suffix):
            return fmt
    return None


def normalize_format(fmt: str | None, uri: str, role: str) -> str:
    """Validate ``fmt`` or infer it from ``uri``.

    :raises ConfigurationError: for an unknown format, or when none is given and the suffix tells none.
    """
    if fmt:
        value = str(fmt).strip().lower()
        value = {"json": "jsonl", "ndjson": "jsonl", "json_lines": "jsonl", "pq": "parquet"}.get(value, value)
        if value not in FORMATS:
            raise ConfigurationError(f"Unknown {role} format {fmt!r}: use one of {', '.join(FORMATS)}.")
        return value
    inferred = infer_format(uri)
    if inferred is None:
        raise ConfigurationError(
            f"Cannot tell the {role} format of {uri!r} from its name: set {role}['format'] to one of "
            f"{', '.join(FORMATS)}."
        )
    return inferred


#: ``header="auto"``: decide from the file's first line (source), or from the input (sink).
AUTO = "auto"


def as_header(value: Any, what: str) -> bool | str:
    """A CSV ``header`` key: ``True``, ``False`` or :data:`AUTO` (also for ``None`` and ``""``)."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", AUTO)):
        return AUTO
    try:
        return to_bool(value, what)
    except ConfigurationError:
        raise ConfigurationError(f"{what} must be true, false or 'auto', got {value!r}.") from None


def as_columns(value: Any, what: str) -> tuple[str, ...] | None:
    """A CSV file's column names in file order (a list or comma-separated text), each once; ``None`` when empty."""
    if value is None or value == "" or value == []:
        return None
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",") if part.strip()]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v for v in value):
        raise ConfigurationError(f"{what} must be a list of column names, got {value!r}.")
    lowered = [v.lower() for v in value]
    if len(set(lowered)) != len(lowered):
        raise ConfigurationError(f"{what} names a column twice (names are case-insensitive): {value!r}.")
    return tuple(value)


_COMPRESSION_NAMES = {"gzip": "gzip", "gz": "gzip", "bz2": "bz2", "xz": "xz"}
#: the file suffix of each output compression.
COMPRESSION_SUFFIXES = {"gzip": "gz", "bz2": "bz2", "xz": "xz"}


def as_compression(value: Any, role: str) -> str | None:
    """A file sink's output compression (``gzip``, ``bz2``, ``xz``), or ``None``; refused for a source."""
    if value in (None, "", "none", False):
        return None
    if role != "sink":
        raise ConfigurationError(
            f"{role}['compression'] is not set: a source's compression is read from its file names (.gz, .bz2, .xz, "
            ".zst)."
        )
    name = _COMPRESSION_NAMES.get(str(value).strip().lower())
    if name is None:
        raise ConfigurationError(f"{role}['compression'] must be gzip, bz2 or xz (or none), got {value!r}.")
    return name


_ASCII_PROBE = "\n\r,;\t|\"'{}[]:\\ 0123456789.+-eE_abcxyzABCXYZ"


def as_encoding(value: Any, role: str) -> str | None:
    """A text source's encoding as its codec's name; ``None`` for UTF-8 (the default).

    :raises ConfigurationError: for a sink, an unknown codec, or one that does not write ASCII as ASCII (UTF-16).
    """
    if value in (None, ""):
        return None
    if role != "sink" and isinstance(value, str):
        try:
            name = codecs.lookup(value.strip()).name
        except LookupError:
            name = ""
        if name in ("utf-8", "utf-8-sig"):
            return None
        if name:
            try:
                compatible = _ASCII_PROBE.encode(name) == _ASCII_PROBE.encode("ascii")
            except (UnicodeError, LookupError):
                compatible = False
            if compatible:
                return name
            raise ConfigurationError(
                f"{role}['encoding'] {value!r} does not write ASCII characters as single ASCII bytes (as UTF-16 and "
                "UTF-32 do): convert the files to UTF-8 first."
            )
        raise ConfigurationError(
            f"{role}['encoding'] {value!r} is not a known text encoding; use e.g. 'utf-8' (the default), 'latin-1' "
            "or 'cp1252'."
        )
    if role == "sink":
        raise ConfigurationError(f"{role}['encoding'] is for sources: outputs are always written as UTF-8.")
    raise ConfigurationError(f"{role}['encoding'] must be an encoding's name such as 'latin-1', got {value!r}.")


def as_max_line_bytes(value: Any, role: str) -> int | None:
    """A text source's longest line in bytes (at least 1024), or ``None`` for the default; refused for a sink."""
    if value in (None, ""):
        return None
    if role == "sink":
        raise ConfigurationError(f"{role}['max_line_bytes'] is for sources.")
    try:
        number = int(value) if not isinstance(value, bool) and float(value) == int(float(value)) else 0
    except (TypeError, ValueError):
        number = 0
    if number < 1024:
        raise ConfigurationError(
            f"{role}['max_line_bytes'] must be a whole number of bytes, at least 1024 (the default is 16 MiB, "
            f"16777216), got {value!r}."
        )
    return number
