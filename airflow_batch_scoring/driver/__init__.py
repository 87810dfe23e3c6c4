"""The driver side of a scoring run (the Airflow worker, or the shell of ``batch-scoring score``)."""
