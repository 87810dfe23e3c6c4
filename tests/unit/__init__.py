"""Unit tests: in this process, no server, no Airflow metadata DB, no replica process."""
