"""Quarantine, replica side: what a bad row is, how a failed block is split into good runs and bad rows, and the
shard's error output (JSON lines, staged beside the parts as ``_errors/part-NNNNN.<attempt>.jsonl`` and published as
``<sink>/_errors/part-NNNNN.jsonl``). The policy and the run's thresholds are in
:mod:`airflow_batch_scoring.io.bad_rows.policy`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from airflow_batch_scoring.errors import InputError
from airflow_batch_scoring.io.bad_rows.policy import ERRORS_FOLDER, EXAMPLES, BadRowPolicy, reasons_text
from airflow_batch_scoring.io.files import is_local
from airflow_batch_scoring.io.uploads import open_for_upload
from airflow_batch_scoring.job import MIN_UPLOAD_PART, ScoringJob

#: a file whose first LEADING_BAD_LINES lines are all bad (or all of whose lines are bad) fails as a whole.
LEADING_BAD_LINES = 100
#: characters of a bad row's raw text kept in the error output.
MAX_RAW_CHARS = 65536

# Reason codes written with each quarantined row.
TYPE_MISMATCH = "type_mismatch"  # a value cannot be read as its column's type (e.g. 'abc' for Float64)
MISSING_FIELDS = "missing_fields"  # a CSV line with fewer fields than columns (a cut line, a wrong delimiter)
EXTRA_FIELDS = "extra_fields"  # a CSV line with more fields than columns (an unquoted delimiter in a value)
MALFORMED_ROW = "malformed_row"  # a CSV line that cannot be parsed (an unclosed quote)
INVALID_JSON = "invalid_json"  # a JSON lines line that is not JSON
NOT_AN_OBJECT = "not_an_object"  # a JSON lines line holding an array, a string or a number instead of an object
INVALID_UTF8 = "invalid_utf8"  # a line that is not UTF-8 text
INVALID_ENCODING = "invalid_encoding"  # a line that is not text in the source's declared encoding (not UTF-8)
LINE_TOO_LONG = "line_too_long"  # a line (or CSV record) longer than the source's max_line_bytes
MISSING_VALUE = "missing_value"  # a model column without a value, for a model that refuses missing values
INFINITE_VALUE = "infinite_value"  # a model column holding inf or -inf, for a model that refuses infinite values
REASONS = (
    TYPE_MISMATCH, MISSING_FIELDS, EXTRA_FIELDS, MALFORMED_ROW, INVALID_JSON, NOT_AN_OBJECT, INVALID_UTF8,
    INVALID_ENCODING, LINE_TOO_LONG, MISSING_VALUE, INFINITE_VALUE,
)


@dataclass
class BadRow:
    """One quarantined row, as written to the error output (one JSON object per line, every key always present).

    :param reason: one of :data:`REASONS`.
    :param file: the input file's URI.
    :param line: the 1-based line number in the file (text formats; a header is line 1).
    :param row: the 1-based row number in the file (Parquet).
    :param column: the column at fault, when one is.
    :param value: the value at fault, when one is.
    :param expected_type: the column's schema type (``Float64``, ...), when a value is at fault.
    :param message: what was wrong, in words.
    :param raw: the line as read (text formats) or the row's values as JSON (Parquet).
    """

    reason: str
    file: str
    line: int | None = None
    row: int | None = None
    column: str | None = None
    value: Any = None
    expected_type: str | None = None
    message: str = ""
    raw: str | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), default=str, ensure_ascii=False)

    def error(self) -> InputError:
        """The error fail mode raises for this row (``file ..., line 12, column 'f2': message``)."""
        return InputError(self.message, path=self.file, line=self.line, row=self.row, column=self.column)

    def describe(self) -> str:
        """``file ..., line 12, column 'f2': message`` (as a fail-mode error would say it)."""
        return str(self.error())


@dataclass
class Diagnosis:
    """Why one line (or row) cannot be read: a reason code (one of :data:`REASONS`), a message, and the column, value
    and expected type when one value is at fault. Where the row is comes with :meth:`bad_row` or :meth:`error`."""

    reason: str
    message: str
    column: str | None = None
    value: Any = None
    expected: str | None = None

    def bad_row(self, file: str, *, line: int | None = None, row: int | None = None, raw: str | None = None) -> BadRow:
        """The quarantined row of this diagnosis, at ``line`` (text formats) or ``row`` (Parquet) of ``file``."""
        return BadRow(
            self.reason, file, line=line, row=row, column=self.column, value=self.value,
            expected_type=self.expected, message=self.message, raw=raw,
        )

    def error(self, file: str, *, line: int | None = None, row: int | None = None) -> InputError:
        """The error fail mode raises for the row of this diagnosis."""
        return InputError(self.message, path=file, line=line, row=row, column=self.column)


def raw_text(data: bytes, encoding: str = "utf-8") -> str:
    """A bad line's text for the error output: decoded leniently, without its line break, capped in length."""
    text = data.decode(encoding, errors="replace").rstrip("\r\n")
    return text if len(text) <= MAX_RAW_CHARS else text[:MAX_RAW_CHARS] + "...(truncated)"


def error_part_name(shard: int, attempt: str | None = None) -> str:
    """The staged name of shard ``shard``'s error output, relative to the staging folder."""
    middle = f".{attempt}" if attempt else ""
    return f"{ERRORS_FOLDER}/part-{shard:05d}{middle}.jsonl"


def salvage(
    units: Sequence[bytes], parse: Callable[[bytes], Any], failures: tuple[type[BaseException], ...]
) -> Iterator[Any]:
    """Split a block that failed to parse into its good runs and its bad units, in order.

    Yields what ``parse`` returns for each maximal run of units that parses, and the index (an ``int``) of each unit
    that fails on its own. Runs are halved until they parse, so a block with ``k`` bad lines among ``n`` costs
    about ``2n + k log n`` units parsed, in Arrow, not line by line in Python. The whole block is assumed to have
    failed already, so it is not parsed again.
    """
    if len(units) <= 1:
        yield from range(len(units))
        return
    middle = len(units) // 2
    stack = [(middle, len(units)), (0, middle)]
    while stack:
        low, high = stack.pop()
        try:
            parsed = parse(b"".join(units[low:high]))
        except failures:
            if high - low == 1:
                yield low
            else:
                middle = (low + high) // 2
                stack.append((middle, high))
                stack.append((low, middle))
            continue
        yield parsed


@dataclass
class BadRowCounter:
    """Counts a shard's bad rows by reason and keeps the first examples (for the report and the messages)."""

    count: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    examples: list[str] = field(default_factory=list)

    def add(self, bad: BadRow) -> None:
        self.count += 1
        self.reasons[bad.reason] = self.reasons.get(bad.reason, 0) + 1
        if len(self.examples) < EXAMPLES:
            self.examples.append(_shorten(f"{bad.reason}: {bad.describe()}"))


def _shorten(text: str, limit: int = 400) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


class ErrorOutput:
    """Writes one shard's quarantined rows as JSON lines into the staging folder, opened on the first bad row.

    :param open_file: opens the staged error part for binary writing (the engine passes the store's upload writer).
    :param max_bad_rows: stop the shard as soon as it alone holds more bad rows than the run may.
    """

    def __init__(self, open_file: Callable[[], Any], name: str, max_bad_rows: int | None = None):
        self._open_file = open_file
        self.name = name
        self.max_bad_rows = max_bad_rows
        self.counter = BadRowCounter()
        self._file: Any = None

    def add(self, bad: BadRow) -> None:
        """Record ``bad``; raise when the shard alone exceeds ``max_bad_rows``.

        :raises InputError: the count limit's message, with the first reasons.
        """
        self.counter.add(bad)
        if self._file is None:
            self._file = self._open_file()
        self._file.write((bad.to_json() + "\n").encode())
        if self.max_bad_rows is not None and self.counter.count > self.max_bad_rows:
            raise InputError(
                f"too many bad rows: this shard alone found more than max_bad_rows={self.max_bad_rows} "
                f"({reasons_text(self.counter.reasons)}); nothing was published. First: "
                f"{'; '.join(self.counter.examples)}. Fix the input, or raise max_bad_rows."
            )

    def close(self) -> list[str]:
        """Complete the error part; return its staged name (none when no row was bad)."""
        if self._file is None:
            return []
        self._file.close()
        self._file = None
        return [self.name]

    def abort(self) -> None:
        if self._file is not None:
            try:
                (getattr(self._file, "abort", None) or self._file.close)()
            finally:
                self._file = None

    def finish(self, report: Any) -> None:
        """Complete the error part and put the counts into the shard's report."""
        report.error_parts = self.close()
        report.rows_bad = self.counter.count
        report.bad_reasons = dict(sorted(self.counter.reasons.items()))
        report.bad_examples = list(self.counter.examples)


def open_error_output(job: ScoringJob, shard: int, fs: Any, staging: str) -> ErrorOutput | None:
    """The error output of shard ``shard`` when the job quarantines bad rows (``None`` when it fails on them)."""
    policy = BadRowPolicy.parse(job.on_bad_rows, job.max_bad_rows, job.max_bad_fraction)
    if not policy.quarantine:
        return None
    name = error_part_name(shard, job.attempt)

    def open_file() -> Any:
        if is_local(fs):
            fs.makedirs(f"{staging}/{ERRORS_FOLDER}", exist_ok=True)
        return open_for_upload(fs, f"{staging}/{name}", max(job.part_size, MIN_UPLOAD_PART), 1)

    return ErrorOutput(open_file, name, policy.max_bad_rows)
