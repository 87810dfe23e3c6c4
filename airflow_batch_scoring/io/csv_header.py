"""Whether a CSV file's first line is a header line (``header="auto"``), and whether it looks like one.

``header="auto"`` (the default) reads a file's first line as its header when its fields are the expected column
names, ignoring case and surrounding spaces: ``source['columns']`` when given (the same names in the same order),
else the model's input columns (each of them among the fields; a header may carry more columns, such as an id).
When neither is known, a first line whose fields all look like names (:func:`looks_like_names`) is a header.

A first line read as data that fails and looks like names is most likely a header the user did not declare: the
reader then says so (``line 1 looks like a header (id, f0, ...): set header=True``) instead of reporting a bad row,
in both ``on_bad_rows`` modes.

Shared with the runtime: never imports Airflow.
"""

from __future__ import annotations

from collections.abc import Sequence

#: fields shown in the "looks like a header" message.
_SHOWN = 6
#: delimiters of other CSV dialects: a field holding one is not a name (and a hint that the file uses one).
OTHER_DELIMITERS = (";", "\t", "|")


def _key(name: str) -> str:
    return name.strip().lower()


def looks_like_names(fields: Sequence[str]) -> bool:
    """Whether every field could be a column name: not a number, with a letter, without another delimiter (``;``,
    tab, ``|``: a line of another delimiter is reported as such), and no two the same (ignoring case)."""
    keys = [_key(f) for f in fields]
    if not keys or len(set(keys)) != len(keys):
        return False
    if any(not any(c.isalpha() for c in k) or any(d in k for d in OTHER_DELIMITERS) for k in keys):
        return False
    for key in keys:
        try:
            float(key)
        except ValueError:
            continue
        return False  # (also "nan", "inf": not names a header would use either)
    return True


def is_header(fields: Sequence[str], columns: Sequence[str] | None, model_columns: Sequence[str] | None) -> bool:
    """Whether a first line with these ``fields`` is the header (``header="auto"``).

    :param columns: ``source['columns']``: the file's column names in order, when given.
    :param model_columns: the model's input column names, when known.
    """
    keys = [_key(f) for f in fields]
    if columns:
        return keys == [_key(c) for c in columns]
    if model_columns:
        return set(_key(c) for c in model_columns) <= set(keys)
    return looks_like_names(fields)


def header_hint(fields: Sequence[str]) -> str:
    """The message for a first line that fails as data and looks like a header."""
    shown = ", ".join(f.strip() for f in fields[:_SHOWN]) + (", ..." if len(fields) > _SHOWN else "")
    return (
        f"line 1 looks like a header ({shown}): set header=True (source['header']) if the file has a header line; "
        "its names must include the model's input columns (and the passthrough columns). Or remove the line."
    )
