"""What Airflow discovers through the ``apache_airflow_provider`` entry point."""

from __future__ import annotations

from typing import Any


def get_provider_info() -> dict[str, Any]:
    """Return the provider metadata Airflow's providers manager reads."""
    return {
        "package-name": "airflow-batch-scoring",
        "name": "Batch Scoring",
        "description": "Batch scoring of machine-learning models (MLflow, scikit-learn) as Airflow tasks.",
        "versions": ["0.1.0"],
        "operators": [
            {
                "integration-name": "Batch Scoring",
                "python-modules": ["airflow_batch_scoring.operators.batch_scoring"],
            }
        ],
        "integrations": [
            {
                "integration-name": "Batch Scoring",
                "external-doc-url": "https://pypi.org/project/airflow-batch-scoring/",
                "tags": ["software"],
            }
        ],
    }
