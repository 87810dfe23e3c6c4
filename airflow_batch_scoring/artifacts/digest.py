"""Content digests of model artifacts.

A file's digest is the plain sha256 of its bytes (what ``sha256sum`` prints), so that ``expected_sha256`` can be
taken from any tool. A folder is hashed file by file in name order: each file's relative name, a NUL byte, and its
contents.
"""

from __future__ import annotations

import hashlib
import os
import re

from airflow_batch_scoring.errors import ConfigurationError, ModelError

_HEX = re.compile(r"^[0-9a-f]{64}$")


def sha256_of(path: str) -> str:
    """Return ``sha256:<hex>`` of a file, or of a folder's relative file names and contents."""
    digest = hashlib.sha256()
    if os.path.isfile(path):
        _update(digest, path)
        return f"sha256:{digest.hexdigest()}"
    for root, dirs, names in os.walk(path):
        dirs.sort()
        for name in sorted(names):
            full = os.path.join(root, name)
            digest.update(os.path.relpath(full, path).encode() + b"\0")
            _update(digest, full)
    return f"sha256:{digest.hexdigest()}"


def _update(digest: hashlib._Hash, path: str) -> None:
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)


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
        raise ModelError(
            f"{what} {path!r} has digest {actual}, but {wanted} was expected: it was changed after the digest was "
            "taken, or the wrong file is named. It was NOT loaded. Check where it came from; if the new content is "
            "trusted, give its digest as expected_sha256 (or process the artifact again)."
        )
    return actual
