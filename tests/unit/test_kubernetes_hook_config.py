"""How the Kubernetes hooks find their cluster: a connection's kubeconfig file, or ``config_file``, for the sync hook
(the launcher's) and the async hook (the trigger's) alike. Nothing is called on a cluster: the loaded client
configuration's host is checked."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from airflow_batch_scoring.errors import ConfigurationError


def _kubeconfig(folder: Path, server: str, name: str = "kubeconfig.yaml") -> str:
    path = folder / name
    path.write_text(
        "apiVersion: v1\nkind: Config\n"
        f"clusters:\n- name: c\n  cluster:\n    server: {server}\n"
        "contexts:\n- name: c\n  context:\n    cluster: c\n    user: u\n"
        "current-context: c\n"
        "users:\n- name: u\n  user:\n    token: not-a-secret-test-token\n"
    )
    return str(path)


@pytest.fixture
def connection(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A Kubernetes connection whose ``kube_config_path`` is a kubeconfig file on disk."""
    path = _kubeconfig(tmp_path, "https://from-connection.example:6443", "connection.yaml")
    monkeypatch.setenv(
        "AIRFLOW_CONN_SCORING_CLUSTER", json.dumps({"conn_type": "kubernetes", "extra": {"kube_config_path": path}})
    )
    return "scoring_cluster"


async def _async_host(**kwargs: object) -> str:
    from airflow_batch_scoring.hooks.kubernetes import AsyncScoringJobHook

    async with AsyncScoringJobHook(**kwargs).connection("read the Job", "ns") as client:  # type: ignore[arg-type]
        return str(client.configuration.host)


def _sync_host(**kwargs: object) -> str:
    from airflow_batch_scoring.hooks.kubernetes import ScoringJobHook

    return str(ScoringJobHook(**kwargs).api_client.configuration.host)  # type: ignore[arg-type]


def test_the_async_hook_loads_the_kubeconfig_file_of_its_connection(connection: str):
    assert asyncio.run(_async_host(conn_id=connection)) == "https://from-connection.example:6443"
    assert _sync_host(conn_id=connection) == "https://from-connection.example:6443"


def test_the_async_hook_honours_config_file_as_the_sync_hook_does(tmp_path: Path):
    """The provider's ``AsyncKubernetesHook`` ignores ``config_file`` (it reads a kubeconfig path only from the
    connection); the trigger's hook must reach the cluster the launcher reached."""
    path = _kubeconfig(tmp_path, "https://from-config-file.example:6443")
    assert asyncio.run(_async_host(conn_id=None, config_file=path)) == "https://from-config-file.example:6443"
    assert _sync_host(conn_id=None, config_file=path) == "https://from-config-file.example:6443"


def test_config_file_overrides_the_connections_kubeconfig_in_both_hooks(connection: str, tmp_path: Path):
    path = _kubeconfig(tmp_path, "https://from-config-file.example:6443")
    assert asyncio.run(_async_host(conn_id=connection, config_file=path)) == "https://from-config-file.example:6443"
    assert _sync_host(conn_id=connection, config_file=path) == "https://from-config-file.example:6443"


def test_a_kubeconfig_that_cannot_be_loaded_says_how_to_configure_the_cluster(tmp_path: Path):
    broken = tmp_path / "broken.yaml"
    broken.write_text("apiVersion: v1\nkind: Config\nclusters: []\n")
    with pytest.raises(ConfigurationError, match="Cannot configure the Kubernetes client .*kubernetes_conn_id="):
        asyncio.run(_async_host(conn_id=None, config_file=str(broken)))
    from airflow_batch_scoring.hooks.kubernetes import ScoringJobHook

    hook = ScoringJobHook(conn_id=None, config_file=str(broken))
    with pytest.raises(ConfigurationError, match="Cannot configure the Kubernetes client"):
        hook.read_job("job-x", "ns")
