"""The MLflow connection: tracking URI, registry URI and token of an MLflow tracking/registry server.

Connection type ``mlflow`` (its form fields are declared in ``get_provider_info``). The tracking URI is the
``tracking_uri`` field, or the Host field (``https://mlflow.example.com``, or a host name completed with Port and the
``https`` scheme); the registry URI defaults to the tracking URI; the token (sent as a bearer token, as MLflow's
``MLFLOW_TRACKING_TOKEN``) is the ``token`` field or the Password field. The token is registered with Airflow's secret
masker as soon as it is read, so it never shows in a log.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from airflow.sdk import BaseHook

from airflow_batch_scoring.errors import ConfigurationError

TOKEN_VARIABLE = "MLFLOW_TRACKING_TOKEN"


@dataclass(frozen=True)
class MlflowSettings:
    """Where the MLflow server is and how to authenticate (``token`` is secret: never log it)."""

    tracking_uri: str | None
    registry_uri: str | None
    token: str | None

    def __repr__(self) -> str:
        token = "***" if self.token else None
        return f"MlflowSettings(tracking_uri={self.tracking_uri!r}, registry_uri={self.registry_uri!r}, token={token})"


class MlflowHook(BaseHook):
    """Reads an MLflow connection and gives MLflow clients configured with it.

    :param mlflow_conn_id: the Airflow connection of type ``mlflow``.
    """

    conn_name_attr = "mlflow_conn_id"
    default_conn_name = "mlflow_default"
    conn_type = "mlflow"
    hook_name = "MLflow"

    def __init__(self, mlflow_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.mlflow_conn_id = mlflow_conn_id

    def get_settings(self) -> MlflowSettings:
        """Read the connection; the token is masked before it is returned.

        :raises ConfigurationError: when the connection is missing or names no tracking URI.
        """
        try:
            conn = self.get_connection(self.mlflow_conn_id)
        except Exception as err:
            raise ConfigurationError(
                f"The MLflow connection {self.mlflow_conn_id!r} cannot be read ({type(err).__name__}: {err}). Create "
                "it (Admin > Connections, type MLflow, or an AIRFLOW_CONN_* variable) or fix mlflow_conn_id."
            ) from err
        extra = conn.extra_dejson or {}
        tracking_uri = (extra.get("tracking_uri") or "").strip() or _uri_from_host(conn.host, conn.port, extra)
        if not tracking_uri:
            raise ConfigurationError(
                f"The MLflow connection {self.mlflow_conn_id!r} names no tracking URI: set its Tracking URI field "
                "(e.g. https://mlflow.example.com, or sqlite:////data/mlflow.db)."
            )
        token = (extra.get("token") or conn.password or "").strip() or None
        if token:
            from airflow.sdk.log import mask_secret

            mask_secret(token)
        registry_uri = (extra.get("registry_uri") or "").strip() or None
        return MlflowSettings(tracking_uri=tracking_uri, registry_uri=registry_uri, token=token)

    @contextmanager
    def environment(self) -> Iterator[MlflowSettings]:
        """Make the token visible to MLflow's REST client (``MLFLOW_TRACKING_TOKEN``) for the block only."""
        settings = self.get_settings()
        previous = os.environ.get(TOKEN_VARIABLE)
        if settings.token:
            os.environ[TOKEN_VARIABLE] = settings.token
        try:
            yield settings
        finally:
            if settings.token:
                if previous is None:
                    os.environ.pop(TOKEN_VARIABLE, None)
                else:
                    os.environ[TOKEN_VARIABLE] = previous

    def get_conn(self) -> Any:
        """An ``MlflowClient`` for the connection's tracking and registry URIs (the token is read from the
        environment by MLflow at each request: use it inside :meth:`environment`)."""
        from mlflow import MlflowClient

        settings = self.get_settings()
        return MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.registry_uri)

    def test_connection(self) -> tuple[bool, str]:
        """List one registered model, as the UI's Test button does."""
        try:
            with self.environment():
                self.get_conn().search_registered_models(max_results=1)
        except Exception as err:
            return False, f"{type(err).__name__}: {err}"
        return True, "Connection successfully tested"


def _uri_from_host(host: str | None, port: int | None, extra: dict[str, Any]) -> str | None:
    if not host:
        return None
    host = host.strip()
    if "://" in host:
        return host
    scheme = extra.get("scheme") or "https"
    return f"{scheme}://{host}:{port}" if port else f"{scheme}://{host}"
