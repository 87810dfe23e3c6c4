"""Metrics jobs: a model's efficacy, fairness and drift over labeled data, computed by the replicas as mergeable
per-shard statistics and merged by the driver, in memory bounded by the metrics, not by the input.

- :mod:`.config`: what a metrics job counts (``ScoringJob.metrics``);
- :mod:`.values`: labels, predictions and groups as compared (class keys);
- :mod:`.classification`, :mod:`.curves`: confusion counts, ROC and PR curves, log loss, calibration;
- :mod:`.regression`, :mod:`.sketch`: sums and the relative-error quantile sketch;
- :mod:`.fairness`: group confusion counts and their rates and gaps; :mod:`.drift`: PSI and KS against a baseline;
- :mod:`.shard`: one shard's statistics; :mod:`.stage`: the replica's assemble stage that counts them;
- :mod:`.results`: the merged metrics document; :mod:`.thresholds`: the gates a run must pass;
- :mod:`.run`: the driver's side (jobs, merge, ``metrics.json``), for the operator and ``batch-scoring metrics``.

Never imports Airflow (the operator is :class:`airflow_batch_scoring.operators.BatchMetricsOperator`).
"""
