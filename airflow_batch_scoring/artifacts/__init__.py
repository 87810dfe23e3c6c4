"""Artifact processing: a model URI becomes a local artifact a runtime loads (MODEL_PATH), with a pinned digest.

Shared with the runtime: never imports Airflow.
"""

from airflow_batch_scoring.artifacts.process import process_model

__all__ = ["process_model"]
