"""Filesystem access through fsspec: resolve URIs, list inputs, describe them for the manifest."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import fsspec
from fsspec.core import url_to_fs

from airflow_batch_scoring.errors import ConfigurationError, InputError

_GLOB_CHARS = set("*?[")


def filesystem(uri: str, storage_options: Mapping[str, Any] | None = None) -> tuple[fsspec.AbstractFileSystem, str]:
    """Return the filesystem of ``uri`` and the path inside it.

    :raises ConfigurationError: for a scheme no installed fsspec implementation serves.
    """
    try:
        return url_to_fs(uri, **dict(storage_options or {}))
    except (ValueError, ImportError) as err:
        scheme = uri.split("://", 1)[0] if "://" in uri else "file"
        raise ConfigurationError(
            f"Cannot open {uri!r}: no filesystem for scheme {scheme!r} ({err}). Use file://, or install the "
            "extra of that store (airflow-batch-scoring[amazon|google|azure])."
        ) from err


def full_uri(fs: fsspec.AbstractFileSystem, path: str) -> str:
    """Return ``path`` with its filesystem's protocol (``file:///...``, ``s3://...``)."""
    return fs.unstrip_protocol(path)


@dataclass(frozen=True)
class InputFile:
    """One input file as listed before scoring; ``version`` is an etag or modification time when known."""

    uri: str
    size: int
    version: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _is_hidden(path: str, root: str) -> bool:
    relative = path[len(root) :].lstrip("/") if path.startswith(root) else path.rsplit("/", 1)[-1]
    return any(part.startswith(("_", ".")) for part in relative.split("/") if part)


def _version(info: Mapping[str, Any]) -> str | None:
    for key in ("ETag", "etag", "md5Hash", "mtime", "LastModified", "last_modified", "updated"):
        if info.get(key) is not None:
            return str(info[key])
    return None


def list_inputs(uri: str, storage_options: Mapping[str, Any] | None = None) -> list[InputFile]:
    """List the files an input URI names: one file, every file under a folder, or a glob; sorted by name.

    Files and folders whose names start with ``_`` or ``.`` (``_SUCCESS``, ``.crc``) are skipped under folders.

    :raises InputError: when nothing exists at ``uri`` or no file matches.
    """
    fs, path = filesystem(uri, storage_options)
    if _GLOB_CHARS & set(path):
        infos = fs.glob(path, detail=True)
        files = {p: i for p, i in infos.items() if i.get("type") != "directory"}
        if not files:
            raise InputError(f"no input file matches the pattern {uri!r}; check the path and the pattern.")
    elif fs.isdir(path):
        root = path.rstrip("/")
        infos = fs.find(root, detail=True)
        files = {p: i for p, i in infos.items() if i.get("type") != "directory" and not _is_hidden(p, root)}
        if not files:
            raise InputError(f"the input folder {uri!r} holds no files; put the input there or fix the path.")
    elif fs.isfile(path):
        files = {path: fs.info(path)}
    else:
        raise InputError(f"the input {uri!r} does not exist; check the path (and the connection, for a store).")
    return [InputFile(full_uri(fs, p), int(files[p].get("size") or 0), _version(files[p])) for p in sorted(files)]
