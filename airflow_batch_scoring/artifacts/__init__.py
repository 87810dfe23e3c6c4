"""Artifact processing: a model reference becomes a local artifact a runtime loads (MODEL_PATH), with a pinned
version, digest and schema. Each model flavour (:mod:`airflow_batch_scoring.flavors`) processes its own artifacts;
artifact processor plug-ins turn other formats into one of them (:mod:`.plugins`).

Shared with the runtime: never imports Airflow.
"""

from airflow_batch_scoring.artifacts.plugins import ENTRY_POINT_GROUP, CommandProcessor
from airflow_batch_scoring.artifacts.process import detect_type, process_model

__all__ = ["ENTRY_POINT_GROUP", "CommandProcessor", "detect_type", "process_model"]
