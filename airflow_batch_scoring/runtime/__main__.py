"""``python -m airflow_batch_scoring.runtime``: the runtime's command line (the pod entrypoint)."""

from airflow_batch_scoring.runtime.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
