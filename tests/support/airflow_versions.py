"""What the installed Airflow offers, for the tests of features that depend on its version (see pyproject.toml's
supported range; .ci/run's oldest-Airflow lane runs the unit tests and the example DAGs on the oldest release)."""

from __future__ import annotations

from importlib.metadata import version

from packaging.version import Version

AIRFLOW = Version(version("apache-airflow-core"))
#: Airflow builds a provider's connection form from its provider info ("conn-fields") from 3.2 on; 3.1 builds forms
#: from hooks' Flask widgets only, so the MLflow connection has the standard fields (Host, Password, Extra) there.
READS_CONN_FIELDS = AIRFLOW >= Version("3.2")
