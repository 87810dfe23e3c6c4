"""Extra links of the batch scoring task: where its output is, and the model version it used (and a metrics task's
report)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit, urlunsplit

from airflow.sdk import BaseOperatorLink
from airflow.sdk.execution_time.xcom import XCom

from airflow_batch_scoring.io.files import normalize_uri, scheme_of

if TYPE_CHECKING:
    from airflow.sdk import Context
    from airflow.sdk.types import TaskInstanceKey


def output_location_url(uri: str, endpoint_url: str | None = None) -> str:
    """A browsable address of an output folder: the cloud console, the S3-compatible endpoint, or the file URI."""
    uri = normalize_uri(uri)
    scheme = scheme_of(uri)
    bucket, _, prefix = uri.split("://", 1)[1].partition("/") if "://" in uri else ("", "", "")
    if scheme == "s3":
        if endpoint_url:
            return f"{endpoint_url.rstrip('/')}/{bucket}/{prefix}"
        return f"https://s3.console.aws.amazon.com/s3/buckets/{bucket}?prefix={quote(prefix)}"
    if scheme == "gs":
        if endpoint_url:
            return f"{endpoint_url.rstrip('/')}/storage/v1/b/{bucket}/o?prefix={quote(prefix)}"
        return f"https://console.cloud.google.com/storage/browser/{bucket}/{prefix}"
    if scheme in ("abfs", "abfss"):
        return f"https://portal.azure.com/#browse/Microsoft.Storage%2FStorageAccounts?container={bucket}&prefix={prefix}"
    return uri


#: The attribute of a running operator that holds the links its task stored (key -> URL).
LINKS_ATTRIBUTE = "batch_scoring_links"


def _stored_link(operator: Any, key: str, ti_key: TaskInstanceKey) -> str:
    """The URL stored under ``key`` for this task instance, or ``""``.

    Airflow asks every extra link for its URL when the task finishes (and pushes it as ``_link_<class>``). The
    operator that ran remembers what it stored: no XCom is read then, so a link the task had no URL for (a local
    MLflow store has no version page; a task that failed before its sink was known) is simply empty, where reading
    the missing XCom would log ``[error] XCom not found`` in the task log.
    """
    links = getattr(operator, LINKS_ATTRIBUTE, None)
    if isinstance(links, dict):
        value = links.get(key)
    else:
        value = XCom.get_value(key=key, ti_key=ti_key)
    return value if isinstance(value, str) else ""


def _store_link(context: Context, key: str, url: str) -> None:
    """Push ``url`` under ``key`` and remember it on the running operator (see :func:`_stored_link`)."""
    ti = context["ti"]
    ti.xcom_push(key=key, value=url)
    links = getattr(getattr(ti, "task", None), LINKS_ATTRIBUTE, None)
    if isinstance(links, dict):
        links[key] = url


class _XComLink(BaseOperatorLink):
    """A link whose URL the task stored under ``key`` (see :func:`_stored_link`)."""

    key: str

    def get_link(self, operator: Any, *, ti_key: TaskInstanceKey) -> str:
        return _stored_link(operator, self.key, ti_key)


class OutputLocationLink(_XComLink):
    """Links a batch scoring task to its output folder."""

    name = "Scoring output"
    key = "batch_scoring_output"

    @classmethod
    def persist(cls, context: Context, url: str) -> None:
        """Store the link in XCom before scoring starts, so it works while the task runs."""
        _store_link(context, cls.key, url)


class MetricsReportLink(_XComLink):
    """Links a metrics task to its HTML report (``report.html`` beside ``metrics.json``)."""

    name = "Metrics report"
    key = "batch_metrics_report"

    @classmethod
    def persist(cls, context: Context, url: str) -> None:
        _store_link(context, cls.key, url)


def model_version_url(registry_uri: str | None, name: str | None, version: str | int | None) -> str | None:
    """The MLflow UI page of a registered model version, when the registry is an MLflow server (http or https).

    A local store (``sqlite:``, a folder, ``databricks``) has no page to link: ``None``. Credentials in the URI
    (``https://user:password@host``) are dropped.
    """
    if not registry_uri or not name or version in (None, ""):
        return None
    parts = urlsplit(registry_uri)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    base = urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))
    return f"{base}/#/models/{quote(str(name), safe='')}/versions/{quote(str(version), safe='')}"


def registry_uri_of(tracking_uri: str | None, registry_uri: str | None = None) -> str | None:
    """The registry the model came from: the given registry or tracking URI, else MLflow's environment variables."""
    return (registry_uri or os.environ.get("MLFLOW_REGISTRY_URI") or tracking_uri
            or os.environ.get("MLFLOW_TRACKING_URI"))


class ModelVersionLink(_XComLink):
    """Links a task to the model version it used, on the MLflow server's UI (no link for a local store)."""

    name = "Model version"
    key = "batch_scoring_model_version"

    @classmethod
    def persist(cls, context: Context, model: Any, tracking_uri: str | None = None,
                registry_uri: str | None = None) -> str | None:
        """Store the link of ``model`` (a ModelSpec from the registry) once it is resolved.

        :return: the URL, or ``None`` when the model has no registry page.
        """
        name = getattr(model, "source_model_name", None) or getattr(model, "name", None)
        version = getattr(model, "source_model_version", None) or getattr(model, "version", None)
        url = model_version_url(registry_uri_of(tracking_uri, registry_uri), name, version)
        if url:
            _store_link(context, cls.key, url)
        return url
