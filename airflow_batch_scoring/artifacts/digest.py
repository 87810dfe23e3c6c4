"""Content digests of model artifacts (a file, or a folder hashed file by file in name order)."""

from __future__ import annotations

import hashlib
import os


def sha256_of(path: str) -> str:
    """Return ``sha256:<hex>`` of a file, or of a folder's relative file names and contents."""
    digest = hashlib.sha256()
    if os.path.isfile(path):
        files = [("", path)]
    else:
        files = []
        for root, dirs, names in os.walk(path):
            dirs.sort()
            for name in sorted(names):
                full = os.path.join(root, name)
                files.append((os.path.relpath(full, path), full))
    for relative, full in files:
        digest.update(relative.encode() + b"\0")
        with open(full, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
    return f"sha256:{digest.hexdigest()}"
