"""The driver side of a run (an Airflow worker, or a shell): prepare, begin, launch and finish a job.

Shared with the runtime: never imports Airflow.
"""
