"""Extra links of the batch scoring task: where its output is."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import quote

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


class OutputLocationLink(BaseOperatorLink):
    """Links a batch scoring task to its output folder."""

    name = "Scoring output"
    key = "batch_scoring_output"

    def get_link(self, operator: Any, *, ti_key: TaskInstanceKey) -> str:
        value = XCom.get_value(key=self.key, ti_key=ti_key)
        return value if isinstance(value, str) else ""

    @classmethod
    def persist(cls, context: Context, url: str) -> None:
        """Store the link in XCom before scoring starts, so it works while the task runs."""
        context["ti"].xcom_push(key=cls.key, value=url)
