"""Content digests of model artifacts.

A file's digest is the plain sha256 of its bytes (what ``sha256sum`` prints), so that ``expected_sha256`` can be
taken from any tool. A folder is hashed file by file in name order: each file's relative name, a NUL byte, and its
contents. In an MLflow model folder (an ``MLmodel`` file at its top), the notes MLflow writes there about how the
folder was downloaded rather than about the model (``registered_model_meta``: the registry name and version, written
only by a ``models:/`` download) are not hashed, so one model version has one digest however it is reached.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from collections.abc import Iterator
from typing import BinaryIO

from airflow_batch_scoring.errors import ConfigurationError, ModelError

_HEX = re.compile(r"^[0-9a-f]{64}$")

#: Files at the top of an MLflow model folder that describe its download or registration, not the model: MLflow
#: writes them on one download path and not on another, and never reads them when it loads the model.
MLFLOW_DOWNLOAD_NOTES = frozenset({"registered_model_meta"})


def _entries(path: str) -> Iterator[tuple[str | None, str]]:
    """What a digest covers, in order: ``(None, path)`` for a file; ``(relative name, full path)`` for each file of a
    folder, in name order."""
    if os.path.isfile(path):
        yield None, path
        return
    skip = MLFLOW_DOWNLOAD_NOTES if os.path.isfile(os.path.join(path, "MLmodel")) else frozenset()
    for root, dirs, names in os.walk(path):
        dirs.sort()
        for name in sorted(names):
            if root == path and name in skip:
                continue
            full = os.path.join(root, name)
            yield os.path.relpath(full, path), full


def sha256_of(path: str) -> str:
    """Return ``sha256:<hex>`` of a file, or of a folder's relative file names and contents."""
    digest = hashlib.sha256()
    for relative, full in _entries(path):
        if relative is not None:
            digest.update(relative.encode() + b"\0")
        _update(digest, full)
    return f"sha256:{digest.hexdigest()}"


def _update(digest: hashlib._Hash, path: str, copy: BinaryIO | None = None) -> None:
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
            if copy is not None:
                copy.write(chunk)


def verified_copy(path: str, expected: str, into: str, what: str = "The model artifact") -> str:
    """Copy the artifact at ``path`` (a file or a folder) into the private folder ``into``, hashing exactly the bytes
    it writes, and return the copy's path once its digest is ``expected``.

    Each byte is read once: what is hashed is what is copied, so the copy (in a folder only this process's user can
    open) cannot differ from what was checked, whatever happens to ``path`` meanwhile. Load the model from the copy.

    :raises ModelError: when the digests differ (the copy is removed; nothing of it was loaded).
    """
    wanted = normalize_sha256(expected)
    os.makedirs(into, mode=0o700, exist_ok=True)
    os.chmod(into, 0o700)
    target = os.path.join(into, os.path.basename(os.path.normpath(path)))
    digest = hashlib.sha256()
    for relative, full in _entries(path):
        destination = target if relative is None else os.path.join(target, relative)
        if relative is not None:
            digest.update(relative.encode() + b"\0")
            os.makedirs(os.path.dirname(destination), mode=0o700, exist_ok=True)
        descriptor = os.open(destination, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
        with os.fdopen(descriptor, "wb") as copy:
            _update(digest, full, copy)
    actual = f"sha256:{digest.hexdigest()}"
    if actual != wanted:
        if os.path.isdir(target):
            shutil.rmtree(target, ignore_errors=True)
        elif os.path.exists(target):
            os.remove(target)
        raise _changed(what, path, actual, wanted)
    return target


def _changed(what: str, path: str, actual: str, wanted: str) -> ModelError:
    return ModelError(
        f"{what} {path!r} has digest {actual}, but {wanted} was expected: it was changed after the digest was "
        "taken, or the wrong file is named. It was NOT loaded. Check where it came from; if the new content is "
        "trusted, give its digest as expected_sha256 (or process the artifact again)."
    )


def normalize_sha256(value: str) -> str:
    """Return ``sha256:<hex>`` for ``<hex>`` or ``sha256:<hex>`` (any case).

    :raises ConfigurationError: when ``value`` is not 64 hexadecimal digits.
    """
    text = str(value).strip().lower()
    if text.startswith("sha256:"):
        text = text[len("sha256:") :]
    if not _HEX.match(text):
        raise ConfigurationError(
            f"expected_sha256 must be 64 hexadecimal digits (as printed by `sha256sum FILE`), optionally prefixed "
            f"with 'sha256:', got {value!r}."
        )
    return f"sha256:{text}"


def verify_digest(path: str, expected: str, what: str = "The model artifact") -> str:
    """Check that ``path`` has the digest ``expected``; return the digest.

    :raises ModelError: when the digests differ (the artifact was changed, or the wrong one was named).
    """
    wanted = normalize_sha256(expected)
    actual = sha256_of(path)
    if actual != wanted:
        raise _changed(what, path, actual, wanted)
    return actual
