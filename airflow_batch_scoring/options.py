"""The scoring options of one run, parsed once at the edge (the operator's rendered arguments, the CLI's flags).

Everything inward (``prepare_job``, the runtimes) receives a :class:`ScoringOptions` and never re-parses. Shared with
the runtime: never imports Airflow.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from airflow_batch_scoring.coercion import to_bool, to_columns, to_positive_int
from airflow_batch_scoring.errors import ConfigurationError, SchemaError
from airflow_batch_scoring.io.bad_rows.policy import BadRowPolicy
from airflow_batch_scoring.job import DEFAULT_PART_SIZE, DEFAULT_WRITE_CONCURRENCY
from airflow_batch_scoring.schema import ModelSchema

#: rows per batch read, predicted and written, when none is given.
DEFAULT_BATCH_SIZE = 100_000


def _schema(value: Any, name: str) -> ModelSchema | None:
    """A schema argument (JSON text or a list of ``{"name", "type"}``), its error naming the argument."""
    try:
        return ModelSchema.parse(value)
    except SchemaError as err:
        raise SchemaError(f"{name}: {err}") from None


@dataclass(frozen=True)
class ScoringOptions:
    """How one run scores, independent of where it reads, writes and runs.

    :param replicas: parallel replicas (shards).
    :param batch_size: rows per batch read, predicted and written.
    :param passthrough_columns: input columns copied to the output, in order.
    :param passthrough_schema: types for some passthrough columns (the others get the source's type or text).
    :param input_schema: the model's input columns, overriding the model's own schema.
    :param output_schema: the model's output columns, overriding the model's own schema.
    :param schema_check: check and coerce the input columns against the input schema.
    :param predict_probabilities: add ``probability_<class>`` columns.
    :param part_size: bytes per read request and upload part.
    :param write_concurrency: parts of one object uploaded at once.
    :param bad_rows: what to do with rows that cannot be read or coerced.
    :param incremental: score only what is new since the last run of :attr:`incremental_key` that published.
    :param incremental_key: names "the same task into the same sink" (the operator's
        ``<dag_id>.<task_id>.<map_index>``); required with ``incremental``.
    :param incremental_state: the folder (URI) of the incremental state; ``None``: a table sink's own bookkeeping
        folder (a file or SQL sink needs one).
    """

    replicas: int = 1
    batch_size: int = DEFAULT_BATCH_SIZE
    passthrough_columns: tuple[str, ...] = ()
    passthrough_schema: ModelSchema | None = None
    input_schema: ModelSchema | None = None
    output_schema: ModelSchema | None = None
    schema_check: bool = True
    predict_probabilities: bool = False
    part_size: int = DEFAULT_PART_SIZE
    write_concurrency: int = DEFAULT_WRITE_CONCURRENCY
    bad_rows: BadRowPolicy = field(default_factory=BadRowPolicy)
    incremental: bool = False
    incremental_key: str | None = None
    incremental_state: str | None = None

    @classmethod
    def parse(
        cls,
        *,
        replicas: Any = 1,
        batch_size: Any = DEFAULT_BATCH_SIZE,
        passthrough_columns: Any = None,
        passthrough_schema: Any = None,
        input_schema: Any = None,
        output_schema: Any = None,
        schema_check: Any = True,
        predict_probabilities: Any = False,
        part_size: Any = None,
        write_concurrency: Any = None,
        on_bad_rows: Any = "fail",
        max_bad_rows: Any = None,
        max_bad_fraction: Any = None,
        incremental: Any = False,
        incremental_key: Any = None,
        incremental_state: Any = None,
    ) -> ScoringOptions:
        """Parse the user's values: the real types or their rendered template text (``"4"``, ``"True"``,
        ``"id, score"``, a schema's JSON). ``None`` for ``batch_size``, ``part_size`` and ``write_concurrency``
        means the default.

        :raises ConfigurationError: naming the argument and the value that is wrong.
        :raises SchemaError: for a schema argument that is not a schema (naming the argument).
        """
        is_incremental = to_bool(incremental, "incremental")
        key = str(incremental_key).strip() if incremental_key not in (None, "") else None
        state = str(incremental_state).strip() if incremental_state not in (None, "") else None
        if is_incremental and not key:
            raise ConfigurationError(
                "incremental scoring needs a key that names the same task into the same sink across runs "
                "(batch-scoring score --incremental-key NAME; the operator sets <dag_id>.<task_id>.<map_index>)."
            )
        return cls(
            incremental=is_incremental,
            incremental_key=key if is_incremental else None,
            incremental_state=state if is_incremental else None,
            replicas=to_positive_int(replicas, "replicas"),
            batch_size=to_positive_int(DEFAULT_BATCH_SIZE if batch_size is None else batch_size, "batch_size"),
            passthrough_columns=tuple(to_columns(passthrough_columns, "passthrough_columns") or ()),
            passthrough_schema=_schema(passthrough_schema, "passthrough_schema"),
            input_schema=_schema(input_schema, "input_schema"),
            output_schema=_schema(output_schema, "output_schema"),
            schema_check=to_bool(schema_check, "schema_check"),
            predict_probabilities=to_bool(predict_probabilities, "predict_probabilities"),
            part_size=to_positive_int(DEFAULT_PART_SIZE if part_size is None else part_size, "part_size"),
            write_concurrency=to_positive_int(
                DEFAULT_WRITE_CONCURRENCY if write_concurrency is None else write_concurrency, "write_concurrency"
            ),
            bad_rows=BadRowPolicy.parse(on_bad_rows, max_bad_rows, max_bad_fraction),
        )
