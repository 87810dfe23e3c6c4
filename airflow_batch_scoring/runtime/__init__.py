"""What runs in a replica: the engine (:func:`~airflow_batch_scoring.runtime.engine.run_shard` and its
:class:`~airflow_batch_scoring.runtime.pipeline.ShardPipeline`), the runtime command line and its error protocol.

It never imports Airflow: the local replicas and the runtime image execute exactly this code.
"""
