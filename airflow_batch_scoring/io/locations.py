"""Where a source and a sink are: URIs with their ``.`` and ``..`` resolved, and the checks that keep a sink apart
from its source, off a filesystem's or a bucket's root, and inside the prefixes a DAG author allows.

A sink that is, holds or lies inside its source would publish its output among the input (the next run reads it) or,
before the manifest decided what a publish removes, delete the input. Every check runs before anything is read or
written.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from fnmatch import fnmatchcase
from urllib.parse import unquote

from airflow_batch_scoring.errors import ConfigurationError
from airflow_batch_scoring.io.files import normalize_uri, scheme_of

_GLOB_CHARS = "*?["
_LOCAL = ("file", "local")


def _resolve_segments(path: str, uri: str, role: str) -> list[str]:
    """The path's segments with ``.`` and empty segments dropped and ``..`` applied.

    :raises ConfigurationError: when ``..`` climbs above the filesystem's or the bucket's root.
    """
    segments: list[str] = []
    for segment in path.split("/"):
        if segment in ("", "."):
            continue
        if segment == "..":
            if not segments:
                raise ConfigurationError(
                    f"The {role} URI {uri!r} climbs above its root with '..'; name the folder without '..'."
                )
            segments.pop()
            continue
        segments.append(segment)
    return segments


def _has_dot_segments(path: str) -> bool:
    return any(s in (".", "..") for s in path.split("/")) or "//" in path


def normalize_location(uri: str, role: str = "sink") -> str:
    """``uri`` with its ``.`` and ``..`` segments (also percent-encoded ones in a ``file://`` URI) and doubled
    slashes resolved, e.g. ``s3://b/scores/../other/`` -> ``s3://b/other/``; a URI without them is returned as is.

    :raises ConfigurationError: when ``..`` climbs above the root (of the filesystem, or out of the bucket).
    """
    if "://" not in uri:  # a bare local path
        if not _has_dot_segments(uri):
            return uri
        uri = uri if uri.startswith("/") else os.path.join(os.getcwd(), uri)
        resolved = "/".join(_resolve_segments(uri, uri, role))
        return ("/" if uri.startswith("/") else "") + resolved + ("/" if uri.endswith("/") and resolved else "")
    scheme, rest = uri.split("://", 1)
    local = scheme_of(normalize_uri(uri)) in _LOCAL
    if local:
        authority, slash, path = "", "/", rest.removeprefix("/")  # file:///data -> path "data"
        if rest and not rest.startswith("/"):  # file://host/data
            authority, _, path = rest.partition("/")
        decoded = unquote(path) if "%" in path else path  # filesystem() decodes a file URI: decode before resolving
    else:
        authority, slash, path = rest.partition("/")
        decoded = path
        if authority in (".", ".."):
            raise ConfigurationError(f"The {role} URI {uri!r} names no bucket or container; name one.")
    if not _has_dot_segments("/" + decoded.rstrip("/")) and decoded == path:
        return uri
    resolved = "/".join(_resolve_segments(decoded, uri, role))
    if local and "%" in path:
        resolved = resolved.replace("%", "%25")  # keep a literal % literal once filesystem() decodes the URI
    trailing = "/" if path.endswith("/") and resolved else ""
    return f"{scheme}://{authority}{slash}{resolved}{trailing}"


@dataclass(frozen=True)
class Location:
    """A folder or file on one store, comparable with another: ``store`` names the store and bucket (or container),
    ``segments`` the path inside it (for local files: the absolute path with symbolic links resolved)."""

    store: str
    segments: tuple[str, ...]
    #: a glob's segments after ``segments`` (its folder that holds every match), e.g. ``("day=*", "*.csv")``.
    pattern: tuple[str, ...] = ()

    def contains(self, other: Location) -> bool:
        """Whether ``other`` is this location or lies inside it."""
        return self.store == other.store and other.segments[: len(self.segments)] == self.segments

    def overlaps(self, folder: Location) -> bool:
        """Whether ``folder`` (a sink) is this location, holds it, or lies inside it; for a glob: whether a file
        inside ``folder`` could match the glob (``in/*.csv`` does not reach ``in/scores/part-00000.csv``; ``**``
        reaches every folder below)."""
        if folder.contains(self):
            return True
        if not self.contains(folder):
            return False
        if not self.pattern or any("**" in p for p in self.pattern):
            return True
        below = folder.segments[len(self.segments):]
        patterns = self.pattern[: len(below)]
        return len(self.pattern) > len(below) and all(fnmatchcase(n, p) for n, p in zip(below, patterns, strict=True))

    def __str__(self) -> str:
        return f"{self.store}/{'/'.join(self.segments)}"


def _static_part(path: str) -> tuple[str, tuple[str, ...]]:
    """A glob's folder that holds every match, and the pattern's segments below it: ``data/day=*/x.csv`` ->
    ``("data", ("day=*", "x.csv"))``; a path without a glob character is its own folder."""
    cut = min((path.index(c) for c in _GLOB_CHARS if c in path), default=-1)
    if cut < 0:
        return path, ()
    static = path[:cut].rsplit("/", 1)[0] if "/" in path[:cut] else ""
    return static, tuple(s for s in path[len(static):].split("/") if s)


def locations_of(uri: str, role: str = "sink") -> list[Location]:
    """The location(s) ``uri`` names, for comparison: one, or two for an object store key holding ``%`` (read
    literally by the store, but also compared decoded, so that an encoded name cannot slip past a check).

    A glob names the folder that holds every file it can match, with the pattern below it.
    """
    uri = normalize_location(normalize_uri(uri), role)
    scheme = scheme_of(uri)
    if scheme in _LOCAL:
        from fsspec.implementations.local import LocalFileSystem

        path = LocalFileSystem._strip_protocol(unquote(uri) if uri.startswith("file://") else uri)
        static, pattern = _static_part(path)
        path = os.path.realpath(static or "/")
        return [Location("file://", tuple(s for s in path.split("/") if s), pattern)]
    rest = uri.split("://", 1)[1]
    bucket, _, path = rest.partition("/")
    bucket = bucket.split("@", 1)[0]  # abfs://container@account.dfs.core.windows.net/path
    store = f"{scheme}://{bucket}"
    variants = {path, unquote(path)} if "%" in path else {path}
    found = []
    for variant in sorted(variants):
        static, pattern = _static_part(variant)
        found.append(Location(store, tuple(_resolve_segments(static, uri, role)), pattern))
    return found


def check_sink_not_root(uri: str) -> None:
    """Refuse a sink at the root of a filesystem or of a bucket or container: publishing there would mix the output
    with everything else the store holds.

    :raises ConfigurationError: naming the sink and what to do instead.
    """
    if any(not location.segments for location in locations_of(uri, "sink")):
        raise ConfigurationError(
            f"The sink {uri!r} is the root of its filesystem, bucket or container; write the output into a folder "
            "of its own, e.g. 's3://bucket/scores/2026-11-21/'."
        )


def check_apart(source_uri: str, sink_uri: str) -> None:
    """Refuse a sink that is the source, lies inside it, or holds it: the output would be published among the input
    (and read by the next run).

    The URIs are compared after ``..``, doubled and trailing slashes, percent-encoding, scheme aliases (``s3a://``)
    and, for local files, symbolic links are resolved; object stores compare bucket and prefix.

    :raises ConfigurationError: naming both locations and what to do instead.
    """
    for source in locations_of(source_uri, "source"):
        for sink in locations_of(sink_uri, "sink"):
            if not source.overlaps(sink):
                continue
            how = "is" if source.segments == sink.segments else "holds" if sink.contains(source) else "lies inside"
            raise ConfigurationError(
                f"The sink {sink_uri!r} {how} the source {source_uri!r} (compared as {sink} and {source}): the "
                "output would be written among the input and read again by the next run. Write the output to a "
                "folder outside the input's, e.g. a sibling 'scores/' folder."
            )


def check_tables_apart(source_table: str | None, source_db: tuple[str | None, str | None], sink_table: str | None,
                       sink_db: tuple[str | None, str | None], mode: str | None) -> None:
    """Refuse replacing the very table being scored (a SQL source table that is also the sink, ``mode="replace"``).

    :param source_db: the source's ``(conn_id, uri)``; ``sink_db`` the sink's: the same pair is the same database.
    :raises ConfigurationError: naming the table.
    """
    if not source_table or not sink_table or (mode or "append") != "replace":
        return
    same_db = tuple(v or "" for v in source_db) == tuple(v or "" for v in sink_db)
    if source_table.strip().lower() == sink_table.strip().lower() and same_db:
        raise ConfigurationError(
            f"The sink table {sink_table!r} is the source table and mode='replace' would replace the input with "
            "its own scores; write the scores to another table."
        )


def _prefix_locations(prefix: str) -> list[Location]:
    if not isinstance(prefix, str) or not (re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", prefix) or prefix.startswith("/")):
        raise ConfigurationError(
            f"allowed_sink_prefixes holds {prefix!r}, which is not a URI or an absolute path; give prefixes such as "
            "'s3://bucket/scores/' or 'file:///data/scores/'."
        )
    if any(c in prefix for c in _GLOB_CHARS):
        raise ConfigurationError(f"allowed_sink_prefixes holds the pattern {prefix!r}; give plain folder URIs.")
    return locations_of(prefix, "allowed sink prefix")


def check_prefixes(prefixes: Iterable[str]) -> None:
    """Check that each allowed sink prefix is a plain folder URI (or absolute path).

    :raises ConfigurationError: naming the prefix that is not.
    """
    for prefix in prefixes:
        _prefix_locations(prefix)


def check_allowed(sink_uri: str, prefixes: Iterable[str] | None) -> None:
    """Refuse a sink outside every allowed prefix (a folder and everything under it; compared after resolving
    ``..``, percent-encoding and symbolic links, segment by segment: ``s3://b/out`` does not allow ``s3://b/outside``).

    :param prefixes: ``None`` allows every sink; an empty list allows none.
    :raises ConfigurationError: naming the sink and the allowed prefixes.
    """
    if prefixes is None:
        return
    if isinstance(prefixes, str):
        prefixes = [prefixes]
    prefixes = list(prefixes)
    allowed = [location for prefix in prefixes for location in _prefix_locations(prefix)]
    sinks = locations_of(sink_uri, "sink")
    if not all(any(prefix.contains(sink) for prefix in allowed) for sink in sinks):
        raise ConfigurationError(
            f"The sink {sink_uri!r} is outside the locations this task may write to ({', '.join(prefixes) or 'none'}, "
            "its allowed_sink_prefixes); choose a sink under one of them, or ask the DAG's author to allow it."
        )
