"""Operators of the batch scoring provider."""

from airflow_batch_scoring.operators.batch_scoring import BatchScoringOperator

__all__ = ["BatchScoringOperator"]
