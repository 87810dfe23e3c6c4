"""airflow-batch-scoring: batch scoring of machine-learning models as Airflow tasks.

Importing the package does not import Airflow: the runtime (``airflow_batch_scoring.runtime``) runs without it.
"""

__version__ = "0.1.0"
