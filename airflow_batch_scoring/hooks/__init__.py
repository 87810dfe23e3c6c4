"""Hooks: Airflow connections turned into what the runtime needs (storage options), never logged."""
