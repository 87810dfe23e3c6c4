"""Filesystem access through fsspec: resolve URIs, list inputs, describe them for the manifest."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import unquote

import fsspec
from fsspec.core import url_to_fs

from airflow_batch_scoring.errors import BatchScoringError, ConfigurationError, InputError

_GLOB_CHARS = set("*?[")
_SCHEME_ALIASES = {"s3a": "s3", "s3n": "s3", "gcs": "gs", "wasb": "abfs", "wasbs": "abfs"}
_STORE_NAMES = {
    "s3": "S3",
    "gs": "GCS",
    "abfs": "Azure Blob Storage",
    "abfss": "Azure Blob Storage",
    "file": "local files",
}


def scheme_of(uri: str) -> str:
    """The URI's scheme (``file`` for a bare path)."""
    return uri.split("://", 1)[0].lower() if "://" in uri else "file"


def normalize_uri(uri: str) -> str:
    """Map accepted aliases to the fsspec scheme: ``s3a://``/``s3n://`` -> ``s3://``, ``gcs://`` -> ``gs://``,
    ``wasb(s)://container@account.blob.core.windows.net/path`` -> ``abfs://container/path`` (the account comes from
    the connection)."""
    scheme = scheme_of(uri)
    target = _SCHEME_ALIASES.get(scheme)
    if target is None:
        return uri
    rest = uri.split("://", 1)[1]
    if scheme in ("wasb", "wasbs"):
        authority, _, path = rest.partition("/")
        container = authority.split("@", 1)[0]
        rest = f"{container}/{path}" if path else container
    return f"{target}://{rest}"


#: schemes whose ``container@account`` authority is not user info (``abfs://container@account.dfs.core.windows.net``).
_AZURE_SCHEMES = ("abfs", "abfss", "az", "wasb", "wasbs")


def user_info(uri: str) -> str | None:
    """The user info of a store or file URI (``KEY:SECRET`` in ``s3://KEY:SECRET@bucket/``), or ``None``.

    An Azure ``container@account`` authority has no user info; ``models:/name@alias`` and bare paths have none.
    """
    if "://" not in uri:
        return None
    authority = uri.split("://", 1)[1].split("/", 1)[0]
    if "@" not in authority:
        return None
    info = authority.rsplit("@", 1)[0]
    if scheme_of(uri) in _AZURE_SCHEMES and ":" not in info:
        return None
    return info


def check_user_info(uri: str, what: str) -> None:
    """Refuse credentials written into a store or file URI, without echoing them (nor the URI).

    :raises ConfigurationError: saying where the credentials go instead.
    """
    if isinstance(uri, str) and user_info(uri.strip()) is not None:
        raise ConfigurationError(
            f"{what} holds credentials before '@' ({scheme_of(uri.strip())}://<user info>@...); they were not used "
            "and are not shown. Remove them from the URI and put them in an Airflow connection named by conn_id "
            "(or, outside Airflow, in the --storage-options file)."
        )


def describe_access(uri: str, conn_id: str | None) -> str:
    """Name the store and the connection of ``uri`` for an error message (never a credential)."""
    store = _STORE_NAMES.get(scheme_of(normalize_uri(uri)), scheme_of(uri))
    via = f"connection {conn_id!r}" if conn_id else "the default credentials (no conn_id)"
    return f"{store} through {via}"


def filesystem(uri: str, storage_options: Mapping[str, Any] | None = None) -> tuple[fsspec.AbstractFileSystem, str]:
    """Return the filesystem of ``uri`` and the path inside it.

    :raises ConfigurationError: for a scheme no installed fsspec implementation serves, or a URI with credentials.
    """
    check_user_info(uri, "A URI")
    uri = normalize_uri(uri)
    if uri.startswith("file://") and "%" in uri:
        uri = unquote(uri)  # a file URI is percent-encoded (RFC 8089): pathlib writes day=1 as day%3D1
    try:
        fs, path = url_to_fs(uri, **dict(storage_options or {}))
    except (ValueError, ImportError) as err:
        scheme = uri.split("://", 1)[0] if "://" in uri else "file"
        raise ConfigurationError(
            f"Cannot open {uri!r}: no filesystem for scheme {scheme!r} ({err}). Use file://, or install the "
            "extra of that store (airflow-batch-scoring[amazon|google|azure])."
        ) from err
    return fs, (path.rstrip("/") or path)


def is_local(fs: fsspec.AbstractFileSystem) -> bool:
    """Whether ``fs`` is the local filesystem (where folders exist and must be made)."""
    protocols = fs.protocol if isinstance(fs.protocol, (tuple, list)) else (fs.protocol,)
    return "file" in protocols or "local" in protocols


def check_sink_root(uri: str, storage_options: Mapping[str, Any] | None, conn_id: str | None) -> None:
    """Fail early when the sink's bucket or container does not exist or cannot be reached (never create one).

    :raises InputError: naming the location and the connection.
    """
    fs, path = filesystem(uri, storage_options)
    if is_local(fs):
        return
    root = path.strip("/").split("/", 1)[0]
    try:
        exists = fs.exists(root)
    except PermissionError as err:
        raise InputError(
            f"access to the sink {uri!r} was refused ({err}); check the credentials of "
            f"{describe_access(uri, conn_id)}."
        ) from None
    if not exists:
        raise InputError(
            f"the sink's bucket or container {root!r} does not exist; create it or fix the sink URI "
            f"({describe_access(uri, conn_id)})."
        )


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


def list_inputs(
    uri: str, storage_options: Mapping[str, Any] | None = None, conn_id: str | None = None
) -> list[InputFile]:
    """List the files an input URI names: one file, every file under a folder, or a glob; sorted by name.

    Files and folders whose names start with ``_`` or ``.`` (``_SUCCESS``, ``.crc``) are skipped under folders.

    :raises InputError: when nothing exists at ``uri``, no file matches, or the store refuses access.
    """
    try:
        return _list_inputs(uri, storage_options)
    except BatchScoringError:
        raise
    except PermissionError as err:
        raise InputError(
            f"access to the input {uri!r} was refused ({err}); check the credentials of "
            f"{describe_access(uri, conn_id)} and its permissions on that location."
        ) from None
    except (OSError, ValueError) as err:
        if isinstance(err, FileNotFoundError) or "NoSuchBucket" in str(err) or "does not exist" in str(err):
            raise InputError(
                f"the input {uri!r} does not exist ({err}); check the bucket/container and the path, and "
                f"{describe_access(uri, conn_id)}.",
                retryable=True,  # it may land before a retry
            ) from None
        raise InputError(f"cannot list the input {uri!r} via {describe_access(uri, conn_id)}: {err}") from None


def _list_inputs(uri: str, storage_options: Mapping[str, Any] | None) -> list[InputFile]:
    fs, path = filesystem(uri, storage_options)
    if _GLOB_CHARS & set(path):
        infos = fs.glob(path, detail=True)
        files = {p: i for p, i in infos.items() if i.get("type") != "directory"}
        if not files:
            raise InputError(f"no input file matches the pattern {uri!r}; check the path and the pattern.",
                             retryable=True)
    elif fs.isdir(path):
        root = path.rstrip("/")
        infos = fs.find(root, detail=True)
        files = {p: i for p, i in infos.items() if i.get("type") != "directory" and not _is_hidden(p, root)}
        if not files:
            raise InputError(f"the input folder {uri!r} holds no files; put the input there or fix the path.",
                             retryable=True)
    elif fs.isfile(path):
        files = {path: fs.info(path)}
    else:
        raise InputError(f"the input {uri!r} does not exist; check the path (and the connection, for a store).",
                         retryable=True)  # it may land before a retry
    return [InputFile(full_uri(fs, p), int(files[p].get("size") or 0), _version(files[p])) for p in sorted(files)]
