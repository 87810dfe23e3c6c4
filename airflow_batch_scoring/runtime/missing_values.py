"""Missing and infinite values a model refuses: find the first one's place, or set such rows aside.

Nulls reach the model as NaN, and inf as inf; many models handle them. When a model refuses a batch that holds some
(scikit-learn: ``ValueError: Input X contains NaN``, ``... contains infinity``), the kinds it refuses are told apart
(:func:`refused_kinds`) and the shard is read again with those values treated as bad rows: with
``on_bad_rows="fail"`` the error names the first one as precisely as any other bad value (:func:`refused_value_error`);
with ``"quarantine"`` the engine scores the shard again, setting those rows aside (``missing_value``,
``infinite_value``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from airflow_batch_scoring.errors import BatchScoringError, InputError, ModelError
from airflow_batch_scoring.io.bad_rows import quarantine
from airflow_batch_scoring.io.readers.columns import ReadPlan
from airflow_batch_scoring.job import Piece, ScoringJob
from airflow_batch_scoring.sources.base import Source

#: the kinds of values a model may refuse.
MISSING = "missing"
INFINITE = "infinite"
#: rows of a batch a probe sends to the model to tell which kind it refuses.
_PROBE_ROWS = 8


def _masks(table: pa.Table) -> dict[str, pa.ChunkedArray | None]:
    """Per kind, the rows of ``table`` holding a value of that kind in some column (``None``: no such row)."""
    found: dict[str, Any] = {MISSING: None, INFINITE: None}
    for array in table.columns:
        kinds = {MISSING: pc.is_null(array)}
        if pa.types.is_floating(array.type):
            kinds[MISSING] = pc.or_kleene(kinds[MISSING], pc.fill_null(pc.is_nan(array), True))
            kinds[INFINITE] = pc.fill_null(pc.is_inf(array), False)
        for kind, mask in kinds.items():
            if pc.any(mask).as_py():
                found[kind] = mask if found[kind] is None else pc.or_(found[kind], mask)
    return found


def non_finite_kinds(table: pa.Table) -> set[str]:
    """The kinds of values ``table`` holds that a model may refuse: ``missing`` (null, NaN), ``infinite``."""
    return {kind for kind, mask in _masks(table).items() if mask is not None}


def _probe(table: pa.Table, kind: str, mask: pa.ChunkedArray) -> pa.Table:
    """A few rows holding ``kind``, the other kind's values replaced by 0."""
    rows = table.filter(mask).slice(0, _PROBE_ROWS)
    columns = []
    for array in rows.columns:
        if pa.types.is_floating(array.type):
            zero = pa.scalar(0.0, array.type)
            if kind == MISSING:
                array = pc.if_else(pc.fill_null(pc.is_inf(array), False), zero, array)
            else:
                array = pc.fill_null(pc.if_else(pc.fill_null(pc.is_nan(array), False), zero, array), zero)
        elif kind == INFINITE and array.null_count:
            try:
                array = pc.fill_null(array, pa.scalar(0).cast(array.type))
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
                pass
        columns.append(array)
    return pa.Table.from_arrays(columns, names=rows.column_names)


def refused_kinds(predict: Callable[[pa.Table], Any], features: pa.Table) -> set[str]:
    """The kinds of values (``missing``, ``infinite``) a model that failed on ``features`` refuses.

    A batch that holds one kind: that kind. A batch that holds both: each kind is sent alone, on a few of the rows
    that hold it (the other kind's values set to 0), and the kinds the model fails on are the ones it refuses (both
    when it fails on neither alone). Empty when the batch holds neither: the failure is something else.
    """
    masks = {kind: mask for kind, mask in _masks(features).items() if mask is not None}
    if len(masks) < 2:
        return set(masks)
    refused = set()
    for kind, mask in masks.items():
        try:
            predict(_probe(features, kind, mask))
        except Exception:  # (any failure of the model's own code)
            refused.add(kind)
    return refused or set(masks)


def _what(kinds: set[str]) -> str:
    return " and ".join(
        text for kind, text in ((MISSING, "missing values (null or NaN)"), (INFINITE, "infinite values (inf)"))
        if kind in kinds
    )


def refused_value_error(
    job: ScoringJob,
    source: Source,
    plan: ReadPlan,
    pieces: Sequence[Piece],
    err: Exception,
    kinds: set[str] | None = None,
) -> BatchScoringError:
    """The error for a model that refused a batch with missing or infinite values: the shard is read again,
    treating a value of the refused ``kinds`` as bad, to name the first one's file, line (or row) and column.
    """
    kinds = kinds or {MISSING}
    cause = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
    if source.row_errors:  # (a SQL source does not locate single values yet)
        scan_plan = dataclasses.replace(plan, reject_missing=MISSING in kinds, reject_infinite=INFINITE in kinds)

        def on_bad_row(bad: quarantine.BadRow) -> None:  # quarantine: other bad rows were quarantined in the run too
            if bad.reason in (quarantine.MISSING_VALUE, quarantine.INFINITE_VALUE):
                raise bad.error()

        scanner = source.open_reader(
            job, scan_plan, batch_size=job.batch_size,
            on_bad_row=on_bad_row if job.on_bad_rows == "quarantine" else None,
        )
        try:
            for piece in pieces:
                for _ in scanner.read(piece):
                    pass
        except InputError as located:
            return InputError(
                f"{located.message} (The model failed with {cause})", path=located.path, line=located.line,
                row=located.row, column=located.column,
            )
        finally:
            scanner.close()
    return ModelError(
        f"The model failed on a batch with {_what(kinds)} in its input columns: {cause}. Fix those values upstream "
        "(fill missing values, replace infinite ones), or score with a model that handles them (e.g. with an imputer "
        "in its pipeline)."
    )
