"""Code the tests share: models, data, servers, a Kubernetes emulator, an Airflow stack. Never a test module."""
