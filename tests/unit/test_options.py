"""ScoringOptions.parse: every scoring option parsed once, from real values or rendered template text."""

from __future__ import annotations

import dataclasses

import pytest

from airflow_batch_scoring.errors import ConfigurationError, SchemaError
from airflow_batch_scoring.io.bad_rows.policy import DEFAULT_MAX_BAD_FRACTION, BadRowPolicy
from airflow_batch_scoring.job import DEFAULT_PART_SIZE, DEFAULT_WRITE_CONCURRENCY
from airflow_batch_scoring.options import DEFAULT_BATCH_SIZE, ScoringOptions
from airflow_batch_scoring.schema import ModelSchema

SCHEMA = [{"name": "f0", "type": "Float64"}, {"name": "f1", "type": "Int64"}]


def test_defaults() -> None:
    options = ScoringOptions.parse()
    assert options == ScoringOptions()
    assert (options.replicas, options.batch_size, options.part_size, options.write_concurrency) == (
        1, DEFAULT_BATCH_SIZE, DEFAULT_PART_SIZE, DEFAULT_WRITE_CONCURRENCY,
    )
    assert options.passthrough_columns == ()
    assert options.input_schema is None and options.output_schema is None and options.passthrough_schema is None
    assert options.schema_check is True and options.predict_probabilities is False
    assert options.bad_rows == BadRowPolicy("fail", None, None)
    assert ScoringOptions.parse(batch_size=None, part_size=None, write_concurrency=None) == options


def test_rendered_template_strings() -> None:
    """What Jinja renders (every templated argument is text) parses to the same options as the real values."""
    rendered = ScoringOptions.parse(
        replicas="3", batch_size=" 500 ", passthrough_columns="id, name", input_schema='[{"name": "f0", "type": '
        '"Float64"}, {"name": "f1", "type": "Int64"}]', output_schema="", passthrough_schema=" ",
        schema_check="False", predict_probabilities="true", part_size="4096", write_concurrency="2",
        on_bad_rows="Quarantine", max_bad_rows="10", max_bad_fraction="0.5",
    )
    native = ScoringOptions.parse(
        replicas=3, batch_size=500, passthrough_columns=["id", "name"], input_schema=SCHEMA, schema_check=False,
        predict_probabilities=True, part_size=4096, write_concurrency=2, on_bad_rows="quarantine", max_bad_rows=10,
        max_bad_fraction=0.5,
    )
    assert rendered == native
    assert rendered.replicas == 3 and rendered.passthrough_columns == ("id", "name")
    assert rendered.input_schema == ModelSchema.parse(SCHEMA)
    assert rendered.bad_rows == BadRowPolicy("quarantine", 10, 0.5)
    assert ScoringOptions.parse(on_bad_rows="quarantine").bad_rows.max_bad_fraction == DEFAULT_MAX_BAD_FRACTION


def test_frozen() -> None:
    options = ScoringOptions.parse()
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.replicas = 2  # type: ignore[misc]
    assert dataclasses.replace(options, replicas=2).replicas == 2


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"replicas": "two"}, "replicas must be a positive integer, got 'two'"),
        ({"replicas": 0}, "replicas must be a positive integer, got 0"),
        ({"batch_size": "{{ params.batch }}"}, "batch_size must be a positive integer"),
        ({"batch_size": True}, "batch_size must be a positive integer, got True"),
        ({"part_size": -1}, "part_size must be a positive integer"),
        ({"write_concurrency": "1.5"}, "write_concurrency must be a positive integer"),
        ({"schema_check": "maybe"}, "schema_check must be true or false, got 'maybe'"),
        ({"predict_probabilities": 2}, "predict_probabilities must be true or false"),
        ({"passthrough_columns": "id, ID"}, "passthrough_columns names a column twice"),
        ({"passthrough_columns": 5}, "passthrough_columns must be a list of column names"),
        ({"on_bad_rows": "skip"}, "on_bad_rows must be one of"),
        ({"on_bad_rows": "quarantine", "max_bad_rows": "many"}, "max_bad_rows must be a whole number"),
        ({"on_bad_rows": "quarantine", "max_bad_fraction": "2"}, "max_bad_fraction must be between 0 and 1"),
    ],
)
def test_errors_name_the_argument(arguments: dict, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        ScoringOptions.parse(**arguments)


@pytest.mark.parametrize("name", ["input_schema", "output_schema", "passthrough_schema"])
def test_schema_errors_name_the_argument(name: str) -> None:
    with pytest.raises(SchemaError, match=f"^{name}: The schema is not valid JSON"):
        ScoringOptions.parse(**{name: "[{not json"})
    with pytest.raises(SchemaError, match=f"^{name}: Unknown column type 'Float99'"):
        ScoringOptions.parse(**{name: [{"name": "x", "type": "Float99"}]})
