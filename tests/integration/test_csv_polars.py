"""CSV scoring with polars' parser from the first block (``BATCH_SCORING_CSV_PARSER=polars``): the same predictions,
and bad lines reported exactly as with Arrow's parser (the block goes back to Arrow, which names file, line and
column).

By default a replica turns to polars only after 48 MiB, more than any test input: these tests switch it on from the
first block (``tests/unit/test_csv_numeric.py`` compares the two parsers on random blocks).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from airflow_batch_scoring.errors import InputError
from airflow_batch_scoring.io.readers import csv_numeric
from tests.support.helpers import (
    Models,
    assert_nothing_published,
    make_frame,
    read_output,
    source_spec,
    write_frame,
)
from tests.support.scoring import check_predictions, score

pytest.importorskip("polars")


@pytest.fixture(autouse=True)
def polars_from_the_first_block(monkeypatch: pytest.MonkeyPatch):
    """The driver (preflight) and every replica it starts parse plain numeric blocks with polars."""
    monkeypatch.setenv("BATCH_SCORING_CSV_PARSER", "polars")
    csv_numeric._mode.cache_clear()
    yield
    csv_numeric._mode.cache_clear()


def run(models: Models, tmp_path: Path, source: Path, **kwargs) -> None:
    score(str(models.regressor_path), source_spec("csv", source.as_uri()), {"uri": (tmp_path / "out").as_uri()},
          tmp_path, passthrough_columns=["id"], **kwargs)


def test_a_csv_split_between_replicas_scores_every_line_once(models: Models, tmp_path: Path):
    frame = make_frame(20_000, seed=5)
    source = tmp_path / "big.csv"
    write_frame(frame, source, "csv")
    run(models, tmp_path, source, replicas=3, batch_size=1000)
    check_predictions(frame, read_output(tmp_path / "out", "csv", ["id", "prediction"]), models.regressor)


def test_a_numeric_line_with_a_field_missing_is_named(models: Models, tmp_path: Path):
    """Polars reads a short line as nulls; the delimiter count sends the block to Arrow, which names the line."""
    source = tmp_path / "in.csv"
    write_frame(make_frame(400, seed=8), source, "csv")
    lines = source.read_text().splitlines(keepends=True)
    lines[300] = lines[300].rsplit(",", 1)[0] + "\n"  # all numbers, one field short
    source.write_text("".join(lines))
    with pytest.raises(InputError) as err:
        run(models, tmp_path, source)
    assert "line 301" in str(err.value) and "5 field(s) where 6 are expected" in str(err.value), err.value
    assert_nothing_published(tmp_path / "out")


def test_a_value_that_is_not_a_number_is_named(models: Models, tmp_path: Path):
    source = tmp_path / "in.csv"
    write_frame(make_frame(400, seed=7), source, "csv")
    lines = source.read_text().splitlines(keepends=True)
    fields = lines[250].split(",")
    fields[3] = "1.5.3"  # f2
    lines[250] = ",".join(fields)
    source.write_text("".join(lines))
    with pytest.raises(InputError, match=r"line 251, column 'f2': value '1\.5\.3' cannot be read as Float64"):
        run(models, tmp_path, source)
    assert_nothing_published(tmp_path / "out")


def test_blank_lines_are_skipped_as_arrow_skips_them(models: Models, tmp_path: Path):
    frame = make_frame(400, seed=9)
    source = tmp_path / "in.csv"
    write_frame(frame, source, "csv")
    lines = source.read_text().splitlines(keepends=True)
    source.write_text("".join(lines[:200]) + "\n" + "".join(lines[200:]))
    run(models, tmp_path, source)
    check_predictions(frame, read_output(tmp_path / "out", "csv", ["id", "prediction"]), models.regressor)
