"""Exceptions raised for errors a user can cause; each message says what was wrong and how to fix it."""

from __future__ import annotations


class BatchScoringError(Exception):
    """Base class of every error this package raises on purpose.

    ``retryable`` says whether running the task again can change the outcome: ``False`` (the default) for what only
    the user can fix (a setting, a schema, the input in ``fail`` mode, a bad-row threshold, the model), so that the
    operators fail at once instead of burning their retries; ``True`` for a store outage or a lost replica.
    """

    retryable: bool = False


class ConfigurationError(BatchScoringError, ValueError):
    """An operator or job parameter is invalid."""


class ModelEnvironmentError(ConfigurationError):
    """The model's own Python environment (``model_environment="model"``) cannot be built: its requirements cannot
    be resolved or installed, its Python version is not available, or the build took too long. Nothing was scored."""


class SchemaError(BatchScoringError, ValueError):
    """A model schema is malformed, or the input does not match it."""


class InputError(BatchScoringError):
    """The input cannot be read: missing, empty, malformed, or of the wrong type.

    :param message: what was wrong and how to fix it.
    :param path: the input file, when known.
    :param line: the 1-based line number (text formats), when known.
    :param row: the 1-based row number (Parquet), when known.
    :param column: the column name, when known.
    :param retryable: whether a retry can change it (an input that is missing yet, or changed during the run).
    """

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        line: int | None = None,
        row: int | None = None,
        column: str | None = None,
        retryable: bool = False,
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
        self.message = message
        self.path = path
        self.line = line
        self.row = row
        self.column = column
        self.retryable = retryable


class ModelError(BatchScoringError):
    """The model cannot be found, loaded or used."""


class TrainingError(BatchScoringError):
    """A training callable cannot be imported, raised, or returned no fitted model (a retry cannot change it)."""


class ReplicaError(BatchScoringError):
    """A scoring replica failed (killed, out of memory, an unexpected crash); the message carries its own error."""

    retryable = True


class StorageError(BatchScoringError):
    """A store (object storage, a database) could not be reached or failed while a replica read or wrote."""

    retryable = True


_UNREACHABLE = ("ConnectionError", "EndpointConnectionError", "ConnectTimeoutError", "ReadTimeoutError",
                "ServiceUnavailable", "ServerDisconnectedError", "ClientConnectorError", "TimeoutError")


def is_unreachable(error: BaseException) -> bool:
    """Whether ``error`` (or what caused it) says a store could not be reached, whatever its client library."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, (ConnectionError, TimeoutError)):
            return True
        if any(cls.__name__ in _UNREACHABLE for cls in type(seen).__mro__):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def is_retryable(error: BaseException) -> bool:
    """Whether running the task again can change the outcome of ``error``.

    A store that could not be reached can come back, whatever error reported it; one of ours says so itself
    (:attr:`BatchScoringError.retryable`); any other exception (an unexpected crash) keeps its retries.
    """
    if is_unreachable(error):
        return True
    if isinstance(error, BatchScoringError):
        return bool(error.retryable)
    return True
