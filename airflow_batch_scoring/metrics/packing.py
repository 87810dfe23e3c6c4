"""Compact text for the large parts of a shard's statistics (bin counts, sketch buckets), which travel in the shard's
report and the run's manifest: sorted integer keys (delta-encoded) and their values as little-endian arrays,
compressed and base64-encoded. A histogram of 24,000 non-empty bins takes some 40 kB instead of 600 kB of JSON lists.

Never imports Airflow.
"""

from __future__ import annotations

import base64
import zlib
from collections.abc import Mapping

import numpy as np


def _pack(array: np.ndarray) -> str:
    return base64.b64encode(zlib.compress(array.tobytes(), 6)).decode("ascii")


def _unpack(text: str, dtype: np.dtype) -> np.ndarray:
    return np.frombuffer(zlib.decompress(base64.b64decode(text)), dtype=dtype)


def pack_counts(counts: Mapping[int, int | float]) -> dict[str, str]:
    """``{key: value}`` (integer keys; integer or float values) as compact text."""
    keys = np.array(sorted(counts), dtype="<i8")
    values = np.array([counts[k] for k in keys.tolist()])
    floats = values.dtype.kind == "f"
    deltas = np.diff(keys, prepend=np.array([0], dtype="<i8")).astype("<i8")
    return {"keys": _pack(deltas), ("floats" if floats else "ints"): _pack(values.astype("<f8" if floats else "<i8"))}


def unpack_counts(packed: Mapping[str, str]) -> dict[int, int | float]:
    """What :func:`pack_counts` packed."""
    keys = np.cumsum(_unpack(packed["keys"], np.dtype("<i8")))
    if "floats" in packed:
        return dict(zip(keys.tolist(), _unpack(packed["floats"], np.dtype("<f8")).tolist(), strict=True))
    return dict(zip(keys.tolist(), _unpack(packed["ints"], np.dtype("<i8")).tolist(), strict=True))
