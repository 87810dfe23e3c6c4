"""Formats and stores: listing inputs, reading shards as Arrow tables, writing part files.

Shared with the runtime: never imports Airflow.
"""
