"""A bounded uniform sample of a shard's labeled rows (:class:`Reservoir`), for the permutation importance.

Each row gets a random key, uniform on ``[0, 1)``, and the reservoir keeps the ``size`` rows of smallest keys: a
uniform sample without replacement of the rows seen (every subset of ``size`` rows is as likely). Merging two
reservoirs keeps the ``size`` smallest keys of both, which is exactly the sample one reservoir would have kept over
both shards' rows: so the driver's merge of the replicas' samples is a uniform sample of all the labeled rows, each
shard weighted by its number of rows (a shard of 10 times the rows gives about 10 times the sampled rows). The keys
come from a generator seeded by ``(seed, shard)``: a run is repeatable. Memory: ``size`` rows, whatever the input.

Once full, a batch only costs its keys: the rows whose key beats the largest kept one (about ``size / rows seen`` of
them) are taken from it.

Never imports Airflow.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

import numpy as np
import pyarrow as pa

#: the sampled rows' label column in the reservoir (the features keep their names).
LABEL = "__label__"


def _encode(table: pa.Table) -> str:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema, options=pa.ipc.IpcWriteOptions(compression="zstd")) as writer:
        writer.write_table(table)
    return base64.b64encode(sink.getvalue().to_pybytes()).decode("ascii")


def _decode(text: str) -> pa.Table:
    with pa.ipc.open_stream(pa.py_buffer(base64.b64decode(text))) as reader:
        return reader.read_all()


class Reservoir:
    """At most ``size`` rows (the model's features and the label), uniformly sampled from the rows added.

    :param size: the largest number of rows kept.
    :param seed: with ``shard``, seeds the rows' keys.
    :param shard: the shard whose rows are added.
    """

    def __init__(self, size: int, seed: int = 0, shard: int = 0):
        self.size = size
        self.seed = seed
        self.shard = shard
        self.keys = np.empty(0, dtype=np.float64)
        self.table: pa.Table | None = None
        self._rng = np.random.default_rng([seed, shard])

    @property
    def rows(self) -> int:
        return len(self.keys)

    def add(self, features: pa.Table, label: pa.Array | pa.ChunkedArray) -> None:
        """Offer a batch's rows (``features`` and their labels, rows without label already left out)."""
        if self.size <= 0 or features.num_rows == 0:
            return
        keys = self._rng.random(features.num_rows)
        if self.rows >= self.size:
            taken = np.flatnonzero(keys < self.keys.max())
            if not taken.size:
                return
            keys = keys[taken]
            batch = features.append_column(LABEL, label).take(pa.array(taken))
        else:
            batch = features.append_column(LABEL, label)
        self._keep(keys, batch)

    def _keep(self, keys: np.ndarray, batch: pa.Table) -> None:
        if self.table is not None:
            batch = pa.concat_tables([self.table, batch], promote_options="permissive")
            keys = np.concatenate([self.keys, keys])
        if len(keys) > self.size:
            kept = np.argpartition(keys, self.size - 1)[: self.size]
            keys, batch = keys[kept], batch.take(pa.array(kept))
        order = np.argsort(keys, kind="stable")  # by key: the same sample in the same order, however merged
        self.keys, self.table = keys[order], batch.take(pa.array(order)).combine_chunks()

    def merge(self, other: Reservoir) -> Reservoir:
        """Keep the ``size`` smallest keys of both (the sample of both shards' rows)."""
        if other.table is not None:
            self._keep(other.keys, other.table)
        return self

    def to_dict(self) -> dict[str, Any]:
        return {
            "size": self.size, "seed": self.seed, "shard": self.shard,
            "keys": base64.b64encode(self.keys.astype("<f8").tobytes()).decode("ascii"),
            "rows": _encode(self.table) if self.table is not None else None,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Reservoir:
        reservoir = cls(int(data["size"]), int(data["seed"]), int(data["shard"]))
        reservoir.keys = np.frombuffer(base64.b64decode(data["keys"]), dtype="<f8").astype(np.float64)
        reservoir.table = _decode(data["rows"]) if data.get("rows") else None
        return reservoir
