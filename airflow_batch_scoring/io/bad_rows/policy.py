"""The ``on_bad_rows`` policy, driver side: parsed once, the thresholds that fail a run, the manifest's section.

``on_bad_rows="fail"`` (the default) stops at the first row that cannot be read or coerced, naming its file, line (or
Parquet row), column, value and expected type. ``on_bad_rows="quarantine"`` sets each such row aside with a reason
code into an error output (see :mod:`airflow_batch_scoring.io.bad_rows.quarantine`, the replica side), scores the
good rows of the same batch in order, and fails the run only when the bad rows exceed ``max_bad_rows`` or their share
of the rows read exceeds ``max_bad_fraction``.

Errors about a whole file (it is not Parquet, cannot be opened, lacks a column, is empty, or none of its first lines
can be read, as with a wrong delimiter) are not row errors: they fail the run in both modes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from airflow_batch_scoring.coercion import to_optional_float, to_optional_int
from airflow_batch_scoring.errors import ConfigurationError, InputError

ON_BAD_ROWS = ("fail", "quarantine")
#: quarantine's default ceiling on the share of bad rows: more is a wrong input, not a few bad rows.
DEFAULT_MAX_BAD_FRACTION = 0.1
#: the folder of the error output, inside the staging folder and inside the sink.
ERRORS_FOLDER = "_errors"
#: examples of bad rows kept in a shard's report (and quoted in a threshold failure).
EXAMPLES = 3


@dataclass(frozen=True)
class BadRowPolicy:
    """What to do with a row that cannot be read or coerced.

    :param mode: ``"fail"`` or ``"quarantine"``.
    :param max_bad_rows: quarantine only: the run fails when more rows than this are bad (``None``: no count limit).
    :param max_bad_fraction: quarantine only: the run fails when the bad rows' share of the rows read is larger
        (``None`` in fail mode; :data:`DEFAULT_MAX_BAD_FRACTION` when quarantine is asked without one).
    """

    mode: str = "fail"
    max_bad_rows: int | None = None
    max_bad_fraction: float | None = None

    @property
    def quarantine(self) -> bool:
        return self.mode == "quarantine"

    @classmethod
    def parse(cls, on_bad_rows: Any = "fail", max_bad_rows: Any = None, max_bad_fraction: Any = None) -> BadRowPolicy:
        """Validate the three parameters (templated values arrive as strings).

        :raises ConfigurationError: naming the parameter that is wrong.
        """
        mode = str(on_bad_rows if on_bad_rows not in (None, "") else "fail").strip().lower()
        if mode not in ON_BAD_ROWS:
            raise ConfigurationError(f"on_bad_rows must be one of {ON_BAD_ROWS}, got {on_bad_rows!r}.")
        count = to_optional_int(max_bad_rows, "max_bad_rows")
        if count is not None and count < 0:
            raise ConfigurationError(f"max_bad_rows must be 0 or more (or None for no limit), got {max_bad_rows!r}.")
        share = to_optional_float(max_bad_fraction, "max_bad_fraction")
        if share is not None and not 0.0 <= share <= 1.0:
            raise ConfigurationError(
                f"max_bad_fraction must be between 0 and 1 (0.01 is 1% of the rows read), got {max_bad_fraction!r}."
            )
        if mode == "fail":
            return cls("fail", None, None)  # the limits only apply to quarantined rows
        return cls(mode, count, DEFAULT_MAX_BAD_FRACTION if share is None else share)

    def limits(self) -> str:
        return f"max_bad_rows={self.max_bad_rows}, max_bad_fraction={self.max_bad_fraction}"


def reasons_text(reasons: Mapping[str, int]) -> str:
    """``type_mismatch: 12, missing_fields: 3``: the counts by reason, most frequent first."""
    ordered = sorted(reasons.items(), key=lambda item: (-item[1], item[0]))
    return ", ".join(f"{reason}: {count:,}" for reason, count in ordered)


def totals(reports: Sequence[Any]) -> dict[str, Any]:
    """Sum the shards' bad-row counts: ``{"rows_bad", "reasons", "examples"}``."""
    reasons: dict[str, int] = {}
    examples: list[str] = []
    for report in reports:
        for reason, count in (getattr(report, "bad_reasons", None) or {}).items():
            reasons[reason] = reasons.get(reason, 0) + count
        examples.extend(getattr(report, "bad_examples", None) or [])
    rows_bad = sum(getattr(r, "rows_bad", 0) or 0 for r in reports)
    return {"rows_bad": rows_bad, "reasons": dict(sorted(reasons.items())), "examples": examples[:EXAMPLES]}


def check_thresholds(policy: BadRowPolicy, rows_good: int, reports: Sequence[Any]) -> None:
    """Fail the run when the quarantined rows exceed ``max_bad_rows`` or their share exceeds ``max_bad_fraction``.

    :param rows_good: the rows read that were not bad; the share is ``bad / (good + bad)``.
    :raises InputError: with the counts, the limits and the first reasons; nothing is published.
    """
    summary = totals(reports)
    bad = summary["rows_bad"]
    if not bad:
        return
    read = rows_good + bad
    share = bad / read
    over = []
    if policy.max_bad_rows is not None and bad > policy.max_bad_rows:
        over.append(f"more than max_bad_rows={policy.max_bad_rows}")
    if policy.max_bad_fraction is not None and share > policy.max_bad_fraction:
        over.append(f"more than max_bad_fraction={policy.max_bad_fraction:g} ({policy.max_bad_fraction:.2%})")
    if not over:
        return
    raise InputError(
        f"too many bad rows: {bad:,} of the {read:,} rows read ({share:.2%}) are bad, {' and '.join(over)}; "
        f"nothing was published. Reasons: {reasons_text(summary['reasons'])}. First: "
        f"{'; '.join(summary['examples'])}. Fix the input, or raise the limits (on_bad_rows='quarantine', "
        "max_bad_rows, max_bad_fraction)."
    )


def manifest_section(policy: BadRowPolicy, reports: Sequence[Any], sink_uri: str) -> dict[str, Any]:
    """The manifest's ``bad_rows`` entry: the policy, the counts by reason, and where the error output is."""
    summary = totals(reports)
    parts = sorted(p for r in reports for p in (getattr(r, "error_parts", None) or []))
    return {
        "on_bad_rows": policy.mode,
        "max_bad_rows": policy.max_bad_rows,
        "max_bad_fraction": policy.max_bad_fraction,
        "rows_bad": summary["rows_bad"],
        "reasons": summary["reasons"],
        "errors_uri": errors_uri(sink_uri) if parts else None,
    }


def errors_uri(sink_uri: str) -> str:
    """Where the error output is published: ``<sink>/_errors/``."""
    return f"{sink_uri.rstrip('/')}/{ERRORS_FOLDER}/"
