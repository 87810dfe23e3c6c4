"""Lineage of a scoring task: OpenLineage datasets and Airflow asset events.

- :func:`dataset_name` maps a file, folder or glob URI to the OpenLineage ``(namespace, name)`` pair of the OpenLineage
  naming spec: ``s3://bucket`` + key and ``gs://bucket`` + key as ``airflow.sdk.ObjectStoragePath`` (and the common.io
  provider) name them, ``file`` + absolute path, ``abfss://container@account.dfs.core.windows.net`` + path.
- A SQL table is named by its connection's hook (:func:`~airflow_batch_scoring.hooks.sql.openlineage_table`: the
  hook's ``get_openlineage_database_info``, as the common.sql operators do).
- The model is an input dataset too, as the SageMaker operators report their model data: its registry model
  (``models:/name``, in the registry's namespace), run artifact (``runs:/...``) or file, with the registry version
  (else the content digest) in the standard ``version`` facet and the digest in a ``batchScoringModelArtifact`` facet.
- :func:`operator_lineage` builds what ``BatchScoringOperator.get_openlineage_facets_on_complete`` returns: the input
  and output datasets with their schema facets and the output's row count. Names are worked out only then (a run
  without the OpenLineage listener pays nothing); the OpenLineage provider is an optional extra
  (``airflow-batch-scoring[openlineage]``) imported only there.
- :func:`emit_asset_events` attaches the scoring summary to the task's Asset outlets, and adds an asset event for the
  concrete output folder to every AssetAlias outlet (so a templated sink becomes an asset per partition).

Never includes a credential: names come from URIs (user info dropped) and connection host/port only.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from airflow_batch_scoring.io.files import normalize_uri, scheme_of

if TYPE_CHECKING:
    from airflow.providers.openlineage.extractors import OperatorLineage
    from airflow.sdk import Context

_GLOB_CHARS = "*?["
_AZURE = ("abfs", "abfss")
_POSTGRES = ("postgres", "postgresql")
#: Stores whose ``ObjectStoragePath.namespace`` and ``.key`` are the OpenLineage names (for ``file``, its key drops the
#: leading slash of the path; for Azure, its namespace lacks the account).
_OBJECT_STORAGE_PATH = ("s3", "gs")
#: The keys of the scoring summary copied into asset events (small, JSON, no secret).
ASSET_EVENT_KEYS = ("output_uri", "manifest_uri", "rows_in", "rows_out", "parts", "model_uri", "model_version",
                    "model_digest")


def _strip_glob(path: str) -> str:
    """A glob's fixed folder: ``/data/day=*/x.csv`` -> ``/data``."""
    cut = min((path.index(c) for c in _GLOB_CHARS if c in path), default=-1)
    if cut < 0:
        return path
    return path[:cut].rsplit("/", 1)[0] or "/"


def _key(path: str) -> str:
    key = _strip_glob(path).strip("/")
    return key or "/"


def dataset_name(uri: str, *, account_name: str | None = None) -> tuple[str, str]:
    """Return the OpenLineage ``(namespace, name)`` of a file, folder, glob or table URI.

    A glob is named by its fixed folder; a folder by its path without the trailing slash.

    :param uri: ``file:///path`` (or a bare path), ``s3://``, ``gs://``, ``abfs://container/path``,
        ``abfss://container@account.dfs.core.windows.net/path``, ``wasb(s)://container@account.blob...``, or
        ``postgres://host:port/database/schema/table`` (Airflow's asset form; ``database.schema.table`` works too).
    :param account_name: the Azure storage account, when the URI does not name it (it comes from the connection).
    """
    raw_scheme = scheme_of(uri)
    if raw_scheme in ("wasb", "wasbs"):
        # wasb(s)://container@account.blob.core.windows.net/path: keep the account before normalize_uri drops it.
        authority = uri.split("://", 1)[1].partition("/")[0]
        if "@" in authority:
            account_name = account_name or authority.split("@", 1)[1].split(".", 1)[0]
    uri = normalize_uri(uri)
    scheme = scheme_of(uri)
    if scheme == "file":
        path = uri.split("://", 1)[1] if "://" in uri else uri
        path = "/" + _strip_glob(path).strip("/")
        return "file", path
    if scheme in _POSTGRES:
        return _postgres_name(uri)
    authority, _, path = uri.split("://", 1)[1].partition("/")
    if scheme in _AZURE:
        container, _, host = authority.partition("@")
        account = account_name or (host.split(".", 1)[0] if host else None)
        if account:
            return f"abfss://{container}@{account}.dfs.core.windows.net", _key(path)
        return f"abfs://{container}", _key(path)
    if scheme in _OBJECT_STORAGE_PATH:  # the names ObjectStoragePath gives are the spec's for these stores
        from airflow.sdk import ObjectStoragePath

        store_path = ObjectStoragePath(f"{scheme}://{authority}/{_strip_glob(path)}")
        return store_path.namespace, _key(store_path.key)
    return f"{scheme}://{authority}", _key(path)


def _postgres_name(uri: str) -> tuple[str, str]:
    parts = urlsplit(uri)
    host = parts.hostname or "localhost"
    namespace = f"postgres://{host}:{parts.port or 5432}"
    names = [p for p in parts.path.split("/") if p]
    if len(names) == 1 and names[0].count(".") == 2:
        return namespace, names[0]
    if len(names) == 2:  # database/table: the default schema
        names = [names[0], "public", names[1]]
    return namespace, ".".join(names)


def _spec_value(spec: Any, name: str) -> Any:
    if isinstance(spec, Mapping):
        return spec.get(name)
    return getattr(spec, name, None)


def spec_dataset_name(spec: Any, storage_options: Mapping[str, Any] | None = None) -> tuple[str, str] | None:
    """The OpenLineage name of a source or sink spec (a :data:`~airflow_batch_scoring.specs.DataSpec` or a
    mapping): its URI, or its table and connection.

    Returns ``None`` when the spec names no dataset (e.g. a SQL query, whose tables are not parsed here).
    """
    if isinstance(spec, str):
        return dataset_name(spec)
    uri = _spec_value(spec, "uri")
    if uri:
        return dataset_name(str(uri), account_name=(storage_options or {}).get("account_name"))
    table, conn_id = _spec_value(spec, "table"), _spec_value(spec, "conn_id")
    if table and conn_id:
        from airflow_batch_scoring.hooks.sql import openlineage_table

        return openlineage_table(str(conn_id), str(table))
    return None


def registry_namespace(registry_uri: str | None) -> str:
    """The OpenLineage namespace of an MLflow registry: its URI without credentials, query or trailing slash
    (``https://mlflow.example.com``, ``sqlite:////data/mlflow.db``, ``databricks``); ``mlflow`` when unknown."""
    if not registry_uri:
        return "mlflow"
    if "://" not in registry_uri:
        return registry_uri.rstrip("/") or "mlflow"
    parts = urlsplit(registry_uri)
    netloc = parts.netloc.rpartition("@")[2]  # no user info
    return f"{parts.scheme}://{netloc}{parts.path.rstrip('/')}"


def model_dataset_name(model_uri: str, registry_uri: str | None = None) -> tuple[str, str]:
    """The OpenLineage name of the model a task scored: a registry model is ``models:/<name>`` (its version goes to
    the version facet) in the registry's namespace; a run artifact ``runs:/<run>/<path>`` likewise; a file or folder is
    named as any file (``file`` + path, or its store)."""
    uri = str(model_uri).strip()
    if uri.startswith("models:/"):
        name = uri[len("models:/"):].split("@", 1)[0]
        return registry_namespace(registry_uri), "models:/" + name.split("/", 1)[0]
    if uri.startswith("runs:/"):
        return registry_namespace(registry_uri), uri.rstrip("/")
    return dataset_name(uri)


def _plain_spec(spec: Any) -> Any:
    """What naming needs of a spec (URI, table, connection id): no secret, nothing that changes later."""
    if isinstance(spec, str):
        return spec
    values = {name: _spec_value(spec, name) for name in ("uri", "table", "conn_id")}
    if values["table"] is not None:
        values["table"] = str(values["table"])  # a parsed TableName as "schema.name"
    return values


@dataclass
class ScoringLineage:
    """What a finished scoring task read and wrote, kept on the operator for the OpenLineage listener.

    The dataset names (a SQL table's ask its connection's hook) and the manifest (for the schema facets) are worked
    out only when the listener asks, so a run without OpenLineage pays nothing. ``storage_options`` stay in memory:
    they are never logged or serialized.
    """

    source_spec: Any
    sink_spec: Any
    summary: Mapping[str, Any] = field(default_factory=dict)
    storage_options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict, repr=False)
    registry_uri: str | None = None

    @classmethod
    def of(cls, source: Any, sink: Any, summary: Mapping[str, Any],
           storage_options: Mapping[str, Mapping[str, Any]] | None = None,
           registry_uri: str | None = None) -> ScoringLineage:
        from airflow_batch_scoring.links import registry_uri_of

        return cls(
            source_spec=_plain_spec(source),
            sink_spec=_plain_spec(sink),
            summary=dict(summary),
            storage_options={k: dict(v or {}) for k, v in (storage_options or {}).items()},
            registry_uri=registry_uri_of(registry_uri),
        )

    @property
    def source(self) -> tuple[str, str] | None:
        """The source's ``(namespace, name)``, or ``None`` for a query."""
        return spec_dataset_name(self.source_spec, self.storage_options.get("source"))

    @property
    def sink(self) -> tuple[str, str] | None:
        """The sink's ``(namespace, name)``."""
        return spec_dataset_name(self.sink_spec, self.storage_options.get("sink"))

    @property
    def model(self) -> tuple[str, str] | None:
        """The model's ``(namespace, name)`` (see :func:`model_dataset_name`), or ``None`` when the run names none."""
        uri = self.summary.get("model_uri")
        return model_dataset_name(str(uri), self.registry_uri) if uri else None

    def manifest(self) -> dict[str, Any]:
        """The published ``_manifest.json`` (empty when it cannot be read: lineage never fails a task)."""
        import json

        from airflow_batch_scoring.io.files import filesystem

        uri = self.summary.get("manifest_uri")
        if not uri:
            return {}
        try:
            fs, path = filesystem(str(uri), self.storage_options.get("sink"))
            with fs.open(path, "r") as f:
                return json.load(f)
        except Exception:  # the output is published; a missing facet is not worth a failure
            return {}


def record_lineage(context: Context, outlets: Iterable[Any], source: Any, sink: Any, summary: Mapping[str, Any],
                   storage_options: Mapping[str, Mapping[str, Any]] | None = None,
                   registry_uri: str | None = None) -> ScoringLineage:
    """After a successful run: fill the outlet asset events and return the state the OpenLineage facets need.

    :param registry_uri: the MLflow registry (or tracking) URI the model came from (``None``: MLflow's environment).
    """
    emit_asset_events(context, outlets, summary)
    return ScoringLineage.of(source, sink, summary, storage_options, registry_uri)


@cache
def _model_facet_class() -> type:
    """``batchScoringModelArtifact``: the content digest of the scored artifact (a custom dataset facet: OpenLineage
    has no standard place for a digest beside the version)."""
    import attr
    from airflow.providers.common.compat.openlineage.facet import DatasetFacet

    @attr.define
    class ModelArtifactDatasetFacet(DatasetFacet):
        digest: str
        """``sha256:<hex>`` of the processed artifact the replicas loaded."""

    return ModelArtifactDatasetFacet


def _model_facets(version: Any, digest: Any) -> dict[str, Any]:
    from openlineage.client.facet_v2 import dataset_version_dataset

    facets: dict[str, Any] = {}
    if version not in (None, "") or digest:
        facets["version"] = dataset_version_dataset.DatasetVersionDatasetFacet(datasetVersion=str(version or digest))
    if digest:
        facets["batchScoringModelArtifact"] = _model_facet_class()(digest=str(digest))
    return facets


def _schema_fields(columns: Iterable[Any] | None) -> list[tuple[str, str | None]]:
    out: list[tuple[str, str | None]] = []
    for column in columns or []:
        if isinstance(column, Mapping) and column.get("name"):
            out.append((str(column["name"]), str(column["type"]) if column.get("type") else None))
        elif isinstance(column, (list, tuple)) and column:
            out.append((str(column[0]), str(column[1]) if len(column) > 1 else None))
        elif isinstance(column, str):
            out.append((column, None))
    return out


def operator_lineage(state: ScoringLineage | None) -> OperatorLineage:
    """The OpenLineage input and output datasets of a finished scoring task (empty when it did not finish)."""
    from airflow.providers.common.compat.openlineage.facet import (
        InputDataset,
        OutputDataset,
        OutputStatisticsOutputDatasetFacet,
        SchemaDatasetFacet,
        SchemaDatasetFacetFields,
    )
    from airflow.providers.openlineage.extractors import OperatorLineage

    if state is None:
        return OperatorLineage()

    def schema_facet(columns: Iterable[Any] | None) -> dict[str, Any]:
        fields_ = _schema_fields(columns)
        if not fields_:
            return {}
        return {"schema": SchemaDatasetFacet(fields=[SchemaDatasetFacetFields(name=n, type=t) for n, t in fields_])}

    manifest = state.manifest()
    inputs, outputs = [], []
    source, sink, model = state.source, state.sink, state.model
    if source:
        inputs.append(InputDataset(namespace=source[0], name=source[1],
                                   facets=schema_facet(manifest.get("input_schema"))))
    if model:
        inputs.append(InputDataset(namespace=model[0], name=model[1], facets=_model_facets(
            state.summary.get("model_version"), state.summary.get("model_digest"))))
    if sink:
        output_facets: dict[str, Any] = {}
        if state.summary.get("rows_out") is not None:
            output_facets["outputStatistics"] = OutputStatisticsOutputDatasetFacet(
                rowCount=int(state.summary["rows_out"]), fileCount=state.summary.get("parts"),
            )
        outputs.append(OutputDataset(namespace=sink[0], name=sink[1],
                                     facets=schema_facet(manifest.get("output_columns")), outputFacets=output_facets))
    return OperatorLineage(inputs=inputs, outputs=outputs)


def asset_uri(uri: str) -> str:
    """The Airflow asset URI of an output folder: the normalized URI without its trailing slash."""
    uri = normalize_uri(uri)
    if "://" not in uri:
        uri = f"file://{uri}"
    return uri.rstrip("/") if not uri.endswith(":///") else uri


def emit_asset_events(context: Context, outlets: Iterable[Any], summary: Mapping[str, Any]) -> None:
    """Attach the scoring summary to the task's outlet asset events.

    An ``Asset`` outlet gets the summary as its event's extra (a downstream DAG reads ``output_uri`` from it); an
    ``AssetAlias`` outlet gets an event for the concrete output folder (``Asset(<sink URI>)``) with the same extra.
    """
    from airflow.sdk import Asset, AssetAlias

    extra = {key: summary[key] for key in ASSET_EVENT_KEYS if summary.get(key) is not None}
    events = context["outlet_events"]
    for outlet in outlets or []:
        if isinstance(outlet, AssetAlias):
            events[outlet].add(Asset(uri=asset_uri(str(summary["output_uri"]))), extra=dict(extra))
        elif isinstance(outlet, Asset):
            events[outlet].extra.update(extra)
