"""Airflow connections -> fsspec storage options the runtime can use without Airflow.

Credentials are resolved by the providers' own hooks (``S3Hook``, ``GoogleBaseHook``, the Azure provider's ``get_fs``),
so every credential chain those support (keys, session tokens, assumed roles, service accounts, connection strings,
service principals) works unchanged; this module only turns their result into plain JSON-able options. Every secret
value is registered with Airflow's secret masker before it goes anywhere.

Short-lived credentials (an S3 session token from an assumed role or STS, a GCS access token) are taken once, when
the run starts, and handed to the replicas as they are: the options cross a process boundary (standard input, a
Kubernetes Secret) as JSON, where a refreshing credential object cannot go. A run that outlives them fails on its
next store request; :func:`storage_options` logs when it hands out such credentials and until when they hold.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from airflow_batch_scoring.coercion import to_bool
from airflow_batch_scoring.errors import ConfigurationError
from airflow_batch_scoring.io.files import normalize_uri, scheme_of, user_info

S3_SCHEMES = ("s3",)
GCS_SCHEMES = ("gs", "gcs")
AZURE_SCHEMES = ("abfs", "abfss", "az")
log = logging.getLogger(__name__)
_SECRET_KEYS = {"secret", "token", "key", "account_key", "sas_token", "client_secret", "connection_string",
                "private_key", "refresh_token", "client_secret_auth_config"}


def _mask(options: dict[str, Any]) -> None:
    from airflow.sdk.log import mask_secret

    for name, value in options.items():
        if isinstance(value, dict):
            _mask(value)
        elif name in _SECRET_KEYS and isinstance(value, str) and value and value != "anon":
            mask_secret(value)


def mask_uri_credentials(value: Any) -> None:
    """Register the credentials written into any store or file URI inside ``value`` (a string, or mappings and lists
    of them) with Airflow's secret masker, so that the task log and the rendered fields never show them while the run
    is refused (:func:`~airflow_batch_scoring.io.files.check_user_info` says why, without echoing them)."""
    from urllib.parse import unquote

    from airflow.sdk.log import mask_secret

    if isinstance(value, str):
        info = user_info(value.strip())
        if info:
            for secret in {info, unquote(info), info.partition(":")[2], unquote(info.partition(":")[2])}:
                if secret:
                    mask_secret(secret)
    elif isinstance(value, dict):
        for item in value.values():
            mask_uri_credentials(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            mask_uri_credentials(item)


def _not_found(conn_id: str, store: str, err: Exception) -> ConfigurationError:
    return ConfigurationError(
        f"The Airflow connection {conn_id!r} for {store} cannot be used: {type(err).__name__}: {err}. Create it "
        "(Admin > Connections, or an AIRFLOW_CONN_* variable) or fix conn_id."
    )


def _s3_options(conn_id: str | None) -> dict[str, Any]:
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    try:
        hook = S3Hook(aws_conn_id=conn_id)
        config = hook.conn_config
    except Exception as err:
        raise _not_found(str(conn_id), "S3", err) from err
    extra = config.extra_config
    options: dict[str, Any] = {}
    credentials = hook.get_credentials()
    if credentials is None or not credentials.access_key:
        options["anon"] = True
    else:
        options["key"] = credentials.access_key
        options["secret"] = credentials.secret_key
        if credentials.token:
            options["token"] = credentials.token
            log.info(
                "The S3 connection %r gives temporary credentials (a session token, e.g. an assumed role): they are "
                "taken now and used for the whole run, which fails if it outlives them; give the role a maximum "
                "session duration longer than the run.", conn_id,
            )
    endpoint = config.get_service_endpoint_url(service_name="s3")
    if endpoint:
        options["endpoint_url"] = endpoint
    if config.region_name:
        options["client_kwargs"] = {"region_name": config.region_name}
    config_kwargs = dict(extra.get("config_kwargs") or {})
    if to_bool(extra.get("path_style", extra.get("pathStyle", False)) or False, "the S3 connection's path_style"):
        config_kwargs.setdefault("s3", {})["addressing_style"] = "path"
    if config_kwargs:
        options["config_kwargs"] = config_kwargs
    return options


def _gcs_options(conn_id: str | None) -> dict[str, Any]:
    from airflow.providers.google.cloud.fs.gcs import GCS_ENDPOINT
    from airflow.providers.google.common.hooks.base_google import GoogleBaseHook, get_field

    try:
        hook = GoogleBaseHook(gcp_conn_id=conn_id) if conn_id else GoogleBaseHook()
        extras = hook.extras
    except Exception as err:
        raise _not_found(str(conn_id), "GCS", err) from err
    options: dict[str, Any] = {}
    keyfile = get_field(extras, "keyfile_dict")
    if to_bool(get_field(extras, "is_anonymous") or False, "the GCS connection's is_anonymous"):
        options["token"] = "anon"
    elif keyfile:  # a service-account key: gcsfs refreshes its own tokens from it
        options["token"] = json.loads(keyfile) if isinstance(keyfile, str) else keyfile
    else:
        # A short-lived access token from the hook's own credential chain (key path, ADC, impersonation).
        credentials = hook.get_credentials()
        from google.auth.transport.requests import Request

        credentials.refresh(Request())
        options["token"] = credentials.token
        log.info(
            "The GCS connection %r gives an access token valid until %s (UTC): it is taken now and used for the "
            "whole run, which fails if it outlives it; give the connection a keyfile_dict (its tokens are refreshed) "
            "for longer runs.", conn_id, getattr(credentials, "expiry", None) or "unknown",
        )
    project = hook.project_id if not options.get("token") == "anon" else extras.get("project")
    if project:
        options["project"] = project
    if extras.get(GCS_ENDPOINT):
        options["endpoint_url"] = extras[GCS_ENDPOINT]
    return options


def _azure_options(conn_id: str | None) -> dict[str, Any]:
    from airflow.providers.microsoft.azure.fs.adls import get_fs

    try:
        fs = get_fs(conn_id)
    except Exception as err:
        raise _not_found(str(conn_id), "Azure Blob Storage", err) from err
    # adlfs keeps the options it was built with; a credential object is rebuilt by adlfs from its parts.
    return {k: v for k, v in fs.storage_options.items() if k != "credential" and v is not None}


def storage_options(uri: str, conn_id: str | None) -> dict[str, Any]:
    """Return the fsspec options that open ``uri`` with the credentials of connection ``conn_id``.

    Local files need none. The values are registered with Airflow's secret masker.

    :raises ConfigurationError: when the connection does not exist or the scheme has no store here.
    """
    scheme = scheme_of(normalize_uri(uri))
    if scheme in ("file", "local"):
        return {}
    if scheme in S3_SCHEMES:
        options = _s3_options(conn_id)
    elif scheme in GCS_SCHEMES:
        options = _gcs_options(conn_id)
    elif scheme in AZURE_SCHEMES:
        options = _azure_options(conn_id)
    else:
        raise ConfigurationError(
            f"No store for {uri!r}: use file://, s3://, gs://, abfs:// (or wasb://, wasbs://)."
        )
    _mask(options)
    return options
