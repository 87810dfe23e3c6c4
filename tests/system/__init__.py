"""System tests: Airflow itself (dag.test() runs of the operator, the example DAGs, a scheduler, a browser)."""
