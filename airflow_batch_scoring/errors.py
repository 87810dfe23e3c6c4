"""Exceptions raised for errors a user can cause; each message says what was wrong and how to fix it.

Shared with the runtime: never imports Airflow.
"""

from __future__ import annotations


class BatchScoringError(Exception):
    """Base class of every error this package raises on purpose."""


class ConfigurationError(BatchScoringError, ValueError):
    """An operator or job parameter is invalid."""


class SchemaError(BatchScoringError, ValueError):
    """A model schema is malformed, or the input does not match it."""


class InputError(BatchScoringError):
    """The input cannot be read: missing, empty, malformed, or of the wrong type.

    :param message: what was wrong and how to fix it.
    :param path: the input file, when known.
    :param line: the 1-based line number (text formats), when known.
    :param row: the 1-based row number (Parquet), when known.
    :param column: the column name, when known.
    """

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        line: int | None = None,
        row: int | None = None,
        column: str | None = None,
    ):
        where = []
        if path:
            where.append(f"file {path}")
        if line is not None:
            where.append(f"line {line}")
        if row is not None:
            where.append(f"row {row}")
        if column:
            where.append(f"column {column!r}")
        super().__init__(f"{', '.join(where)}: {message}" if where else message)
        self.path = path
        self.line = line
        self.row = row
        self.column = column


class ModelError(BatchScoringError):
    """The model cannot be found, loaded or used."""


class ReplicaError(BatchScoringError):
    """A scoring replica failed; the message carries the replica's own error."""
