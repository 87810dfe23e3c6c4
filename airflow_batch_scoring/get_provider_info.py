"""What Airflow discovers through the ``apache_airflow_provider`` entry point."""

from __future__ import annotations

from typing import Any


def get_provider_info() -> dict[str, Any]:
    """Return the provider metadata Airflow's providers manager reads."""
    return {
        "package-name": "airflow-batch-scoring",
        "name": "Batch Scoring",
        "description": "Batch scoring of ML models (MLflow, scikit-learn, ONNX, H2O MOJO) as Airflow tasks.",
        "versions": ["0.1.0"],
        "operators": [
            {
                "integration-name": "Batch Scoring",
                "python-modules": [
                    "airflow_batch_scoring.operators.batch_scoring",
                    "airflow_batch_scoring.operators.batch_metrics",
                    "airflow_batch_scoring.operators.batch_training",
                    "airflow_batch_scoring.operators.process_artifact",
                ],
            }
        ],
        "hooks": [
            {
                "integration-name": "Batch Scoring",
                "python-modules": ["airflow_batch_scoring.hooks.mlflow", "airflow_batch_scoring.hooks.kubernetes"],
            }
        ],
        "connection-types": [
            {
                "hook-class-name": "airflow_batch_scoring.hooks.mlflow.MlflowHook",
                "hook-name": "MLflow",
                "connection-type": "mlflow",
                "conn-fields": {
                    "tracking_uri": {
                        "label": "Tracking URI",
                        "description": "The MLflow tracking server or store, e.g. https://mlflow.example.com",
                        "schema": {"type": ["string", "null"]},
                    },
                    "registry_uri": {
                        "label": "Registry URI",
                        "description": "The model registry, when it is not the tracking server (default: the same)",
                        "schema": {"type": ["string", "null"]},
                    },
                    "token": {
                        "label": "Token",
                        "description": "Bearer token sent to the server (MLFLOW_TRACKING_TOKEN)",
                        "schema": {"type": ["string", "null"], "format": "password"},
                    },
                },
                "ui-field-behaviour": {
                    "hidden-fields": ["schema", "login", "port", "password"],
                    "relabeling": {"host": "Tracking URI (alternative)"},
                    "placeholders": {
                        "host": "https://mlflow.example.com",
                        "tracking_uri": "https://mlflow.example.com",
                        "registry_uri": "https://mlflow-registry.example.com",
                    },
                },
            }
        ],
        "extra-links": [
            "airflow_batch_scoring.links.OutputLocationLink",
            "airflow_batch_scoring.links.ModelVersionLink",
            "airflow_batch_scoring.links.MetricsReportLink",
        ],
        "config": {
            "batch_scoring": {
                "description": "Settings of the airflow-batch-scoring provider.",
                "options": {
                    "stages": {
                        "description": "Stages as JSON, keyed by name: each names the registry alias it scores and "
                        "may bring its runtime, replicas and Kubernetes settings. Without it, DEV, SIT, UAT and "
                        "PROD score the aliases dev, sit, uat and prod.",
                        "version_added": "0.1.0",
                        "type": "string",
                        "example": '{"PROD": {"alias": "champion", "runtime": "kubernetes", "replicas": 8, '
                        '"kubernetes": {"namespace": "scoring-prod"}}}',
                        "default": None,
                    }
                },
            }
        },
        "triggers": [
            {
                "integration-name": "Batch Scoring",
                "python-modules": ["airflow_batch_scoring.triggers.kubernetes"],
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
