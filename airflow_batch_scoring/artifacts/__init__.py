"""Artifact processing: a model reference becomes a local artifact a runtime loads (MODEL_PATH), with a pinned
version, digest and schema. One module per artifact type; plug-ins add types through an entry point.

Shared with the runtime: never imports Airflow.
"""

from airflow_batch_scoring.artifacts.base import ARTIFACT_TYPES
from airflow_batch_scoring.artifacts.plugins import ENTRY_POINT_GROUP, CommandProcessor
from airflow_batch_scoring.artifacts.process import detect_type, process_model

__all__ = ["ARTIFACT_TYPES", "ENTRY_POINT_GROUP", "CommandProcessor", "detect_type", "process_model"]
