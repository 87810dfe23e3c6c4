"""Operators of the batch scoring provider."""

from airflow_batch_scoring.operators.batch_metrics import BatchMetricsOperator
from airflow_batch_scoring.operators.batch_scoring import BatchScoringOperator
from airflow_batch_scoring.operators.batch_training import BatchTrainingOperator
from airflow_batch_scoring.operators.process_artifact import ProcessArtifactOperator

__all__ = ["BatchMetricsOperator", "BatchScoringOperator", "BatchTrainingOperator", "ProcessArtifactOperator"]
