"""The replica's side of a metrics job: the assemble stage that also counts each scored batch into the shard's
statistics, which go into the shard's report (``ShardReport.metrics``) for the driver to merge.

Never imports Airflow.
"""

from __future__ import annotations

import pyarrow as pa

from airflow_batch_scoring.job import ScoringJob
from airflow_batch_scoring.metrics.config import MetricsConfig
from airflow_batch_scoring.metrics.sample import Reservoir
from airflow_batch_scoring.metrics.shard import ShardStats
from airflow_batch_scoring.runtime.shard_stages import AssembleStage, Conformed
from airflow_batch_scoring.runtime.shards import ShardReport


class MetricsAssembleStage(AssembleStage):
    """assemble, and count the batch (its labels, groups, features and the model's outputs) into :attr:`stats`."""

    def __init__(self, config: MetricsConfig, shard: int = 0):
        super().__init__()
        sample = None
        if config.label_column is not None and config.importance_sample:
            sample = Reservoir(config.importance_sample, config.importance_seed, shard)
        self.stats = ShardStats(config, sample=sample)

    def __call__(self, conformed: Conformed, outputs: pa.Table) -> pa.Table:
        result = super().__call__(conformed, outputs)
        self.stats.add(conformed.batch, conformed.features, outputs)
        return result

    def describe(self, report: ShardReport) -> None:
        super().describe(report)
        report.metrics = self.stats.to_dict()


def assemble_stage(job: ScoringJob, shard: int = 0) -> AssembleStage:
    """The job's assemble stage: counting statistics when the job is a metrics job (``shard`` seeds its sample)."""
    if job.metrics is None:
        return AssembleStage()
    return MetricsAssembleStage(MetricsConfig.from_dict(job.metrics), shard)
