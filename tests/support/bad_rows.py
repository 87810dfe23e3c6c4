"""Bad-row inputs and outputs shared by the bad-rows tests of every level: CSV lines, bad lines spread over blocks,
the published output and the quarantined rows."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from tests.support.helpers import FEATURES, make_frame, write_frame

COLUMNS = ["id", *FEATURES]


def output_of(sink: Path) -> pa.Table:
    """The published parts as one table, the ids as numbers (a CSV or JSON lines source carries them as text)."""
    parts = sorted(p for p in sink.iterdir() if p.name.startswith("part-"))
    table = pa.concat_tables([pq.read_table(p) for p in parts])
    if "id" in table.column_names and pa.types.is_string(table.schema.field("id").type):
        table = table.set_column(table.schema.get_field_index("id"), "id", table.column("id").cast(pa.int64()))
    return table


def errors_of(sink: Path) -> list[dict]:
    folder = sink / "_errors"
    if not folder.exists():
        return []
    return [json.loads(line) for part in sorted(folder.iterdir()) for line in part.read_text().splitlines()]


def spread_bad_lines(frame: pd.DataFrame, folder: Path) -> tuple[Path, dict[int, tuple[str, str | None]]]:
    """A 3000-line CSV with bad lines of every CSV reason spread over many blocks (part_size=4096)."""
    lines = frame_lines(frame, "csv", folder)
    bad: dict[int, tuple[str, str | None]] = {}
    for n, index in enumerate(range(5, len(lines), 211)):
        kind = n % 4
        fields = lines[index].rstrip(b"\n").split(b",")
        if kind == 0:
            fields[2] = b"x" + fields[2]
            bad[index] = ("type_mismatch", "f1")
        elif kind == 1:
            fields = fields[:4]
            bad[index] = ("missing_fields", None)
        elif kind == 2:
            fields.append(b"7")
            bad[index] = ("extra_fields", None)
        else:
            fields[5] = b'"' + fields[5]
            bad[index] = ("malformed_row", None)
        lines[index] = b",".join(fields) + b"\n"
    path = folder / "in" / "data.csv"
    write_lines(path, lines)
    return path, bad


def csv_with_bad_lines(folder: Path, rows: int, bad: list[int]) -> dict:
    frame = make_frame(rows, seed=13)
    lines = frame_lines(frame, "csv", folder)
    for index in bad:
        lines[index] = lines[index].replace(b",", b",oops,", 1)
    write_lines(folder / "in.csv", lines)
    return {"uri": (folder / "in.csv").as_uri(), "columns": COLUMNS}


def write_lines(path: Path, lines: list[bytes]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(lines))


def frame_lines(frame: pd.DataFrame, fmt: str, folder: Path) -> list[bytes]:
    scratch = folder / f"scratch.{fmt}"
    write_frame(frame, scratch, fmt)
    return scratch.read_bytes().splitlines(keepends=True)
