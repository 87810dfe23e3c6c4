"""Lineage of a scoring task: OpenLineage datasets and Airflow asset events.

- :func:`dataset_name` maps a source or sink to the OpenLineage ``(namespace, name)`` pair of the OpenLineage naming
  spec: ``file`` + path, ``s3://bucket`` + key, ``gs://bucket`` + key,
  ``abfss://container@account.dfs.core.windows.net`` + path, ``postgres://host:port`` + ``database.schema.table``.
- :func:`operator_lineage` builds what ``BatchScoringOperator.get_openlineage_facets_on_complete`` returns: the input
  and output datasets with their schema facets and the output's row count. It imports the OpenLineage provider
  lazily: the provider is an optional extra (``airflow-batch-scoring[openlineage]``) and only its listener calls this.
- :func:`emit_asset_events` attaches the scoring summary to the task's Asset outlets, and adds an asset event for the
  concrete output folder to every AssetAlias outlet (so a templated sink becomes an asset per partition).

Never includes a credential: names come from URIs and connection host/port only.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from airflow_batch_scoring.io.files import normalize_uri, scheme_of

if TYPE_CHECKING:
    from airflow.providers.openlineage.extractors import OperatorLineage
    from airflow.sdk import Context

_GLOB_CHARS = "*?["
_AZURE = ("abfs", "abfss")
_POSTGRES = ("postgres", "postgresql")
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


def table_dataset_name(conn_type: str, host: str | None, port: int | None, database: str | None,
                       table: str) -> tuple[str, str]:
    """The OpenLineage name of a SQL table reached through an Airflow connection (``schema.table`` or ``table``).

    Postgres follows the spec (``postgres://host:port``, ``database.schema.table``, schema ``public`` by default);
    other databases use ``<type>://host:port`` and ``database.table`` as written.
    """
    conn_type = (conn_type or "sql").lower()
    if conn_type in _POSTGRES:
        schema_table = table if "." in table else f"public.{table}"
        return f"postgres://{host or 'localhost'}:{port or 5432}", f"{database}.{schema_table}"
    authority = f"{host}:{port}" if port else (host or "")
    return f"{conn_type}://{authority}", f"{database}.{table}" if database else table


def _spec_value(spec: Any, name: str) -> Any:
    if isinstance(spec, Mapping):
        return spec.get(name)
    return getattr(spec, name, None)


def spec_dataset_name(spec: Any, storage_options: Mapping[str, Any] | None = None) -> tuple[str, str] | None:
    """The OpenLineage name of a source or sink spec (a DataSpec or mapping): its URI, or its table and connection.

    Returns ``None`` when the spec names no dataset (e.g. a SQL query, whose tables are not parsed here).
    """
    if isinstance(spec, str):
        return dataset_name(spec)
    uri = _spec_value(spec, "uri")
    if uri:
        return dataset_name(str(uri), account_name=(storage_options or {}).get("account_name"))
    table, conn_id = _spec_value(spec, "table"), _spec_value(spec, "conn_id")
    if table and conn_id:
        from airflow.sdk import BaseHook

        conn = BaseHook.get_connection(str(conn_id))
        return table_dataset_name(conn.conn_type, conn.host, conn.port, conn.schema, str(table))
    return None


@dataclass
class ScoringLineage:
    """What a finished scoring task read and wrote, kept on the operator for the OpenLineage listener.

    The manifest (for the schema facets) is read only when the listener asks, so a run without OpenLineage pays
    nothing. ``sink_options`` stays in memory: it is never logged or serialized.
    """

    source: tuple[str, str] | None
    sink: tuple[str, str] | None
    summary: Mapping[str, Any] = field(default_factory=dict)
    sink_options: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def of(cls, source: Any, sink: Any, summary: Mapping[str, Any],
           storage_options: Mapping[str, Mapping[str, Any]] | None = None) -> ScoringLineage:
        options = storage_options or {}
        return cls(
            source=spec_dataset_name(source, options.get("source")),
            sink=spec_dataset_name(sink, options.get("sink")),
            summary=dict(summary),
            sink_options=dict(options.get("sink") or {}),
        )

    def manifest(self) -> dict[str, Any]:
        """The published ``_manifest.json`` (empty when it cannot be read: lineage never fails a task)."""
        import json

        from airflow_batch_scoring.io.files import filesystem

        uri = self.summary.get("manifest_uri")
        if not uri:
            return {}
        try:
            fs, path = filesystem(str(uri), self.sink_options)
            with fs.open(path, "r") as f:
                return json.load(f)
        except Exception:  # the output is published; a missing facet is not worth a failure
            return {}


def record_lineage(context: Context, outlets: Iterable[Any], source: Any, sink: Any, summary: Mapping[str, Any],
                   storage_options: Mapping[str, Mapping[str, Any]] | None = None) -> ScoringLineage:
    """After a successful run: fill the outlet asset events and return the state the OpenLineage facets need."""
    emit_asset_events(context, outlets, summary)
    return ScoringLineage.of(source, sink, summary, storage_options)


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
    if state.source:
        inputs.append(InputDataset(namespace=state.source[0], name=state.source[1],
                                   facets=schema_facet(manifest.get("input_schema"))))
    if state.sink:
        output_facets = {}
        if state.summary.get("rows_out") is not None:
            output_facets["outputStatistics"] = OutputStatisticsOutputDatasetFacet(
                rowCount=int(state.summary["rows_out"]), fileCount=state.summary.get("parts"),
            )
        outputs.append(OutputDataset(namespace=state.sink[0], name=state.sink[1],
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
