"""The scoring runtime: the engine, shard planning, the local launcher and the commit.

It never imports Airflow: the local runner and the runtime image execute exactly this code.
"""
