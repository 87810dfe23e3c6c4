"""Training jobs: a user's callable fits a model on labeled rows from any source; the model is logged to MLflow
with its signature and input example, registered as a new version and given an alias (default ``challenger``).

- :mod:`.job`: :class:`~.job.TrainingJob`, the one JSON document the training process reads;
- :mod:`.callable`: importing, calling and checking the training callable (``package.module:function``);
- :mod:`.data`: the labeled rows as a pandas frame or an iterator of Arrow record batches, counted and digested;
- :mod:`.registry`: logging, registering and aliasing the model, with the training data's tags;
- :mod:`.process`: what the training process runs (``python -m airflow_batch_scoring.runtime train``);
- :mod:`.run`: the driver's side (plan the source, launch the process, return the summary).

Never imports Airflow.
"""
