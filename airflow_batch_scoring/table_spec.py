"""The keys of a Delta Lake or Apache Iceberg source or sink spec (``{"format": "delta"}``, ``"iceberg"``), checked
once with clear messages.

:func:`airflow_batch_scoring.specs.parse_data_spec` builds a :class:`~airflow_batch_scoring.specs.DeltaSpec` or an
:class:`~airflow_batch_scoring.specs.IcebergSpec` from what these helpers return; the table sources and sinks never
see an unchecked value.

Shared with the runtime: never imports Airflow.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from airflow_batch_scoring.errors import ConfigurationError
from airflow_batch_scoring.sql_spec import validate_identifier

#: the sink modes of a Delta table.
DELTA_MODES = ("append", "overwrite", "overwrite_partition", "merge")
#: the keys only a Delta source or sink holds (a file or SQL spec refuses them).
DELTA_KEYS = ("partition_by", "partition", "version", "filter", "allow_new_columns")
SOURCE_KEYS = frozenset({"format", "uri", "conn_id", "version", "columns", "filter"})
SINK_KEYS = frozenset({"format", "uri", "conn_id", "mode", "partition_by", "partition", "merge_keys",
                       "allow_new_columns"})
#: the comparison operators of a ``filter`` condition.
OPERATORS = ("=", "!=", "<", "<=", ">", ">=", "in", "not in")

#: a scalar a filter or a partition may compare with.
_SCALARS = (str, int, float, bool)


def check_keys(value: Mapping[str, Any], role: str) -> None:
    """Refuse keys a Delta ``role`` (source or sink) does not take.

    :raises ConfigurationError: naming the keys and the ones allowed.
    """
    allowed = SOURCE_KEYS if role == "source" else SINK_KEYS
    extra = sorted(k for k in value if k not in allowed and value[k] not in (None, [], {}, ""))
    if extra:
        raise ConfigurationError(
            f"{role}[{extra[0]!r}] is not a key of a Delta {role}; a Delta {role} takes {sorted(allowed)}."
        )


def as_names(value: Any, what: str) -> tuple[str, ...] | None:
    """A list of column names (``None`` when not given)."""
    if value is None or value == []:
        return None
    if isinstance(value, str) or not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise ConfigurationError(f"{what} must be a list of column names, e.g. ['day'], got {value!r}.")
    return tuple(validate_identifier(v, what) for v in value)


def as_version(value: Any, what: str) -> int | None:
    """A table version to pin (``None``: the latest when the run is planned)."""
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigurationError(f"{what} must be a table version (an integer >= 0), got {value!r}.")
    return value


def _scalar(value: Any, what: str) -> Any:
    if value is not None and not isinstance(value, _SCALARS):
        raise ConfigurationError(f"{what}: a value must be a string, number, boolean or null, got {value!r}.")
    return value


def as_filter(value: Any, what: str) -> tuple[tuple[str, str, Any], ...] | None:
    """Conditions that all hold: ``{"day": "2026-01-01"}`` (equalities) or ``[["day", ">=", "2026-01-01"], ...]``.

    Conditions on partition columns prune files; the others filter rows as they are read.
    """
    if value is None or value in ([], {}):
        return None
    if isinstance(value, Mapping):
        value = [[k, "=", v] for k, v in value.items()]
    if not isinstance(value, (list, tuple)):
        raise ConfigurationError(
            f"{what} must be a mapping of column to value, or a list of [column, operator, value], got {value!r}."
        )
    conditions = []
    for item in value:
        if not isinstance(item, (list, tuple)) or len(item) != 3:
            raise ConfigurationError(
                f"{what}: each condition is [column, operator, value], e.g. ['day', '>=', '2026-01-01'], got "
                f"{item!r}."
            )
        column, operator, operand = item
        column = validate_identifier(column, what)
        operator = str(operator).strip().lower()
        if operator not in OPERATORS:
            raise ConfigurationError(f"{what}: the operator of {item!r} must be one of {list(OPERATORS)}.")
        if operator in ("in", "not in"):
            if not isinstance(operand, (list, tuple)):
                raise ConfigurationError(f"{what}: {operator!r} takes a list of values, got {operand!r}.")
            operand = tuple(_scalar(v, what) for v in operand)
        else:
            operand = _scalar(operand, what)
        conditions.append((column, operator, operand))
    return tuple(conditions)


def as_partition(value: Any, what: str) -> tuple[tuple[str, Any], ...]:
    """The partition a run overwrites: ``{"day": "2026-01-01"}`` (every partition column with its value)."""
    if not isinstance(value, Mapping) or not value:
        raise ConfigurationError(
            f"{what} must name the partition the run overwrites, e.g. {{'day': '{{{{ ds }}}}'}}, got {value!r}."
        )
    return tuple((validate_identifier(k, what), _scalar(v, what)) for k, v in value.items())


def as_mode(value: Any, what: str) -> str:
    mode = str(value or "append").strip().lower()
    if mode not in DELTA_MODES:
        raise ConfigurationError(f"{what} must be one of {', '.join(DELTA_MODES)}, got {value!r}.")
    return mode


#: the sink modes of an Iceberg table (those of a Delta table).
ICEBERG_MODES = DELTA_MODES
ICEBERG_SOURCE_KEYS = frozenset({"format", "table", "catalog_uri", "catalog_conn_id", "warehouse", "conn_id",
                                 "snapshot_id", "columns", "filter"})
ICEBERG_SINK_KEYS = frozenset({"format", "table", "catalog_uri", "catalog_conn_id", "warehouse", "conn_id", "mode",
                               "partition_by", "partition", "merge_keys", "allow_new_columns"})


def check_iceberg_keys(value: Mapping[str, Any], role: str) -> None:
    """Refuse keys an Iceberg ``role`` (source or sink) does not take."""
    allowed = ICEBERG_SOURCE_KEYS if role == "source" else ICEBERG_SINK_KEYS
    extra = sorted(k for k in value if k not in allowed and value[k] not in (None, [], {}, ""))
    if extra:
        raise ConfigurationError(
            f"{role}[{extra[0]!r}] is not a key of an Iceberg {role}; an Iceberg {role} takes {sorted(allowed)}."
        )


def as_identifier(value: Any, what: str) -> tuple[str, str]:
    """``"namespace.table"`` -> ``("namespace", "table")``."""
    parts = value.strip().split(".") if isinstance(value, str) else []
    if len(parts) != 2:
        raise ConfigurationError(f"{what} must be 'namespace.table', e.g. 'analytics.scores', got {value!r}.")
    return validate_identifier(parts[0], what), validate_identifier(parts[1], what)
