"""An MLflow HTTP(S) tracking server asked through its REST API, without importing MLflow.

Resolving ``models:/name@alias`` with ``MlflowClient`` costs the driver ``import mlflow`` (about 1.3 s here) before the
first request; the requests themselves take milliseconds. For the common production set-up, a tracking server
reached over ``http://`` or ``https://``, :class:`RestRegistry` makes the same calls MLflow's REST store makes
(``GET /api/2.0/mlflow/registered-models/alias``, ``GET /api/2.0/mlflow/model-versions/get``,
``POST /api/2.0/mlflow/registered-models/get-latest-versions``, ``GET /api/2.0/mlflow/model-versions/get-download-uri``)
with the credentials MLflow would send, and :meth:`RestRegistry.download` fetches a version's files when the server
serves them (``mlflow-artifacts:/...``: ``GET /api/2.0/mlflow-artifacts/artifacts?path=...`` lists a folder,
``GET /api/2.0/mlflow-artifacts/artifacts/<path>`` streams a file; a ``runs:/<run>/<path>`` location is the run's
artifact folder, ``GET /api/2.0/mlflow/runs/get``, + path) or when they lie in a local folder.

Credentials are read as MLflow reads them: ``MLFLOW_TRACKING_USERNAME`` / ``MLFLOW_TRACKING_PASSWORD`` (or
``~/.mlflow/credentials``) as basic auth, else ``MLFLOW_TRACKING_TOKEN`` as a bearer token (what the ``mlflow``
connection's hook sets); ``MLFLOW_TRACKING_INSECURE_TLS``, ``MLFLOW_TRACKING_SERVER_CERT_PATH``,
``MLFLOW_TRACKING_CLIENT_CERT_PATH`` and ``MLFLOW_HTTP_REQUEST_TIMEOUT`` as MLflow does. They are sent in a header
only, never put in a URL, a message or a log.

Everything else stays with ``MlflowClient`` (:func:`RestRegistry.for_uris` returns ``None``, or a call raises
:class:`RestUnavailable` and the caller starts over with MLflow): a database or file store, Databricks, a tracking
URI with credentials in it, custom auth (``MLFLOW_TRACKING_AUTH``, ``MLFLOW_TRACKING_AWS_SIGV4``, request-header
plug-ins), workspaces (``MLFLOW_WORKSPACE``), an artifact store of another scheme, and any answer that is not the
registry saying "not found" (a server error, a refused connection, an unexpected body): MLflow then retries and
reports as it always did. ``BATCH_SCORING_MLFLOW_REST=0`` turns this client off. (Certificates: the system's CA
store, or ``REQUESTS_CA_BUNDLE`` / ``CURL_CA_BUNDLE``; a TLS failure also goes to MLflow, which uses certifi's.)

Never imports Airflow or MLflow.
"""

from __future__ import annotations

import base64
import configparser
import json
import os
import posixpath
import shutil
import ssl
import sys
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from airflow_batch_scoring import entry_points
from airflow_batch_scoring.flavors.mlflow_registry import RegistryLookupError, VersionInfo

API = "/api/2.0/mlflow"
ARTIFACTS_API = "/api/2.0/mlflow-artifacts/artifacts"
SWITCH = "BATCH_SCORING_MLFLOW_REST"
#: the registry's answers that mean "it does not exist" (anything else goes back to MlflowClient)
NOT_FOUND = frozenset({"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"})
#: settings that change how MLflow talks to the server in ways this client does not copy
UNSUPPORTED_SETTINGS = ("MLFLOW_TRACKING_AUTH", "MLFLOW_WORKSPACE")
PLUGIN_GROUPS = ("mlflow.request_header_provider", "mlflow.request_auth_provider")
CHUNK = 1 << 20


class RestUnavailable(Exception):
    """This client cannot answer (an unexpected response, a transport error, an unsupported case): ask MLflow."""


def _true(value: str | None) -> bool:
    return (value or "").strip().lower() in ("true", "1", "yes")


def _http_uri(uri: str | None) -> bool:
    if not uri:
        return False
    parsed = urllib.parse.urlparse(uri)
    return parsed.scheme in ("http", "https") and bool(parsed.hostname) and "@" not in parsed.netloc


class RestRegistry:
    """An MLflow tracking/registry server over HTTP(S) (see the module docstring).

    :param registry_uri: the registry server's URI (``http(s)://host[:port][/prefix]``).
    :param tracking_uri: the tracking server's URI (the artifacts of ``mlflow-artifacts:/`` come from it), or
        ``None`` when it is not HTTP(S) (such artifacts are then left to MLflow).
    """

    def __init__(self, registry_uri: str, tracking_uri: str | None) -> None:
        self.registry_uri = registry_uri.rstrip("/")
        self.tracking_uri = tracking_uri.rstrip("/") if tracking_uri else None
        self._headers = {"Accept": "application/json", "User-Agent": "airflow-batch-scoring (MLflow REST)"}
        authorization = _authorization()
        if authorization:
            self._headers["Authorization"] = authorization
        self._timeout = float(os.environ.get("MLFLOW_HTTP_REQUEST_TIMEOUT") or 120)
        # No redirects: the credentials go to the server named, never on to another one (MLflow follows them).
        handlers: list[urllib.request.BaseHandler] = [_NoRedirect()]
        if any(uri.startswith("https:") for uri in (registry_uri, tracking_uri or "")):
            handlers.append(urllib.request.HTTPSHandler(context=_tls_context()))  # (loading CAs takes 20-50 ms)
        self._opener = urllib.request.build_opener(*handlers)

    def __repr__(self) -> str:  # the headers hold the credentials
        return f"RestRegistry(registry_uri={self.registry_uri!r}, tracking_uri={self.tracking_uri!r})"

    @classmethod
    def for_uris(cls, tracking_uri: str | None, registry_uri: str | None) -> RestRegistry | None:
        """The REST client for these URIs (``None``: each falls back to ``MLFLOW_TRACKING_URI`` and
        ``MLFLOW_REGISTRY_URI`` as MLflow's), or ``None`` when MLflow's own client must answer."""
        if not _true(os.environ.get(SWITCH, "1")):
            return None
        if tracking_uri is None and registry_uri is None and "mlflow" in sys.modules:
            return None  # mlflow.set_tracking_uri() may have set URIs this process's environment does not show
        tracking = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or None
        registry = registry_uri or tracking_uri or os.environ.get("MLFLOW_REGISTRY_URI") or tracking
        if not _http_uri(registry):
            return None
        if any(os.environ.get(name, "").strip() for name in UNSUPPORTED_SETTINGS):
            return None
        if _true(os.environ.get("MLFLOW_TRACKING_AWS_SIGV4")):
            return None
        if any(entry_points.group(group) for group in PLUGIN_GROUPS):
            return None
        assert registry is not None
        return cls(registry, tracking if _http_uri(tracking) else None)

    # --- the registry (the Registry protocol of .mlflow_registry) ---------------------------------------------

    def version_by_alias(self, name: str, alias: str) -> VersionInfo:
        answer = self._call("GET", "/registered-models/alias", {"name": name, "alias": alias})
        return _version_info(answer)

    def version(self, name: str, version: str) -> VersionInfo:
        answer = self._call("GET", "/model-versions/get", {"name": name, "version": version})
        return _version_info(answer)

    def latest_versions(self, name: str, stage: str | None) -> list[str]:
        body: dict[str, Any] = {"name": name}
        if stage is not None:
            body["stages"] = [stage]
        answer = self._call("POST", "/registered-models/get-latest-versions", body)
        try:
            return [str(v["version"]) for v in answer.get("model_versions", [])]
        except (KeyError, TypeError, AttributeError) as err:
            raise RestUnavailable(f"unexpected answer to get-latest-versions: {type(err).__name__}") from err

    def download_uri(self, name: str, version: str) -> str:
        answer = self._call("GET", "/model-versions/get-download-uri", {"name": name, "version": version})
        location = answer.get("artifact_uri")
        if not isinstance(location, str) or not location:
            raise RestUnavailable("get-download-uri gave no artifact_uri")
        return location

    # --- the version's files ------------------------------------------------------------------------------------

    def download(self, name: str, version: str, target: str) -> str:
        """Download the files of ``name`` version ``version`` into ``target`` (as ``target/<last part of their
        location>``, where MLflow's download puts them) and return that folder.

        The files are written into a temporary folder beside it, which takes the final name once every file is
        there: a failed download leaves no partial model behind.

        :raises RestUnavailable: when they are not on the tracking server nor in a local folder (MLflow downloads
            them), or the server does not serve them as expected.
        """
        location = self.download_uri(name, version).rstrip("/")
        if location.startswith("runs:/"):
            location = self._run_artifacts(location)
        parsed = urllib.parse.urlparse(location)
        os.makedirs(target, exist_ok=True)
        final = os.path.join(target, posixpath.basename(parsed.path.rstrip("/")) or "model")
        partial = f"{final}.partial-{os.getpid()}"
        shutil.rmtree(partial, ignore_errors=True)
        try:
            if parsed.scheme == "mlflow-artifacts":
                self._download_served(parsed, partial)
            elif parsed.scheme in ("", "file") and not parsed.netloc:
                folder = urllib.parse.unquote(parsed.path)
                if not os.path.isdir(folder):
                    raise RestUnavailable("the version's files are not a local folder")
                shutil.copytree(folder, partial)
            else:
                raise RestUnavailable(f"artifact scheme {parsed.scheme!r} is left to MLflow")
            if os.path.isdir(final):
                shutil.rmtree(final)
            elif os.path.exists(final):
                os.remove(final)
            os.rename(partial, final)
        finally:
            shutil.rmtree(partial, ignore_errors=True)
        return final

    def _run_artifacts(self, location: str) -> str:
        """Where ``runs:/<run_id>/<path>`` lies: the run's artifact folder (from the tracking server) + path. (A
        path that is not there, e.g. a logged model MLflow finds elsewhere, lists no files: MLflow downloads it.)"""
        run_id, _, path = location[len("runs:/"):].strip("/").partition("/")
        if self.tracking_uri is None or not run_id:
            raise RestUnavailable("a runs:/ location needs an HTTP(S) tracking URI")
        answer = self._call("GET", "/runs/get", {"run_id": run_id}, base=self.tracking_uri)
        try:
            root = answer["run"]["info"]["artifact_uri"]
        except (KeyError, TypeError) as err:
            raise RestUnavailable("unexpected answer to runs/get") from err
        if not isinstance(root, str) or not root:
            raise RestUnavailable("the run has no artifact location")
        return f"{root.rstrip('/')}/{path}" if path else root

    def _download_served(self, location: urllib.parse.ParseResult, folder: str) -> None:
        """Copy the folder ``mlflow-artifacts:[//host]/<path>`` from the tracking server into ``folder``."""
        if self.tracking_uri is None:
            raise RestUnavailable("mlflow-artifacts need an HTTP(S) tracking URI")
        tracking = urllib.parse.urlparse(self.tracking_uri)
        base = f"{tracking.scheme}://{location.netloc or tracking.netloc}{tracking.path.rstrip('/')}{ARTIFACTS_API}"
        root = location.path.strip("/")
        files = self._list_tree(base, root)
        if not files:
            raise RestUnavailable("the tracking server lists no files for the version")
        for relative in files:
            destination = os.path.join(folder, *relative.split("/"))
            os.makedirs(os.path.dirname(destination), exist_ok=True)
            url = f"{base}/{urllib.parse.quote(posixpath.join(root, relative))}"
            with self._open("GET", url, None) as response, open(destination, "wb") as out:
                for chunk in iter(lambda: response.read(CHUNK), b""):
                    out.write(chunk)

    def _list_tree(self, base: str, root: str) -> list[str]:
        """Every file under ``root`` on the artifact server, relative to it (``a/b.txt``), depth first."""
        found: list[str] = []
        pending = [""]
        while pending:
            relative = pending.pop()
            query = urllib.parse.urlencode({"path": posixpath.join(root, relative) if relative else root})
            answer = self._json(self._open("GET", f"{base}?{query}", None))
            for entry in answer.get("files", []):
                name = entry.get("path") if isinstance(entry, dict) else None
                if not isinstance(name, str) or not _safe(name):
                    raise RestUnavailable("the artifact server listed an unsafe or unreadable path")
                path = posixpath.join(relative, name) if relative else name
                (pending if entry.get("is_dir") else found).append(path)
        return sorted(found)

    # --- HTTP -----------------------------------------------------------------------------------------------------

    def _call(self, method: str, endpoint: str, body: dict[str, Any], base: str | None = None) -> dict[str, Any]:
        """One API call (to the registry unless ``base`` names another server); a "not found" answer becomes
        :class:`RegistryLookupError`."""
        url = f"{base or self.registry_uri}{API}{endpoint}"
        if method == "GET":
            return self._json(self._open(method, f"{url}?{urllib.parse.urlencode(body)}", None))
        return self._json(self._open(method, url, json.dumps(body).encode()))

    def _open(self, method: str, url: str, data: bytes | None) -> Any:
        headers = dict(self._headers)
        if data is not None:
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(url, data=data, headers=headers, method=method)
        try:
            return self._opener.open(request, timeout=self._timeout)
        except urllib.error.HTTPError as err:
            with err:
                code, message = _error_of(err)
            if code in NOT_FOUND and message is not None:
                raise RegistryLookupError(f"{code}: {message}") from None
            raise RestUnavailable(f"HTTP {err.code} from {urllib.parse.urlparse(url).path}") from None
        except (OSError, ValueError) as err:  # refused, reset, timed out, a TLS failure, a malformed URL
            raise RestUnavailable(f"{type(err).__name__} on {urllib.parse.urlparse(url).path}") from None

    @staticmethod
    def _json(response: Any) -> dict[str, Any]:
        with response:
            try:
                answer = json.loads(response.read() or b"{}")
            except ValueError:
                raise RestUnavailable("the server's answer is not JSON") from None
        if not isinstance(answer, dict):
            raise RestUnavailable("the server's answer is not a JSON object")
        return answer


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # the 3xx answer is raised as an HTTPError: RestUnavailable


def _error_of(err: urllib.error.HTTPError) -> tuple[str | None, str | None]:
    """The ``error_code`` and ``message`` of an MLflow error answer (``None``, ``None`` if it is not one)."""
    try:
        body = json.loads(err.read() or b"{}")
    except (ValueError, OSError):
        return None, None
    if not isinstance(body, dict):
        return None, None
    code, message = body.get("error_code"), body.get("message")
    return (code if isinstance(code, str) else None), (message if isinstance(message, str) else None)


def _version_info(answer: dict[str, Any]) -> VersionInfo:
    try:
        version = answer["model_version"]
        tags = {t["key"]: t.get("value", "") for t in version.get("tags", [])}
        # as MlflowClient's ModelVersion.from_proto reads the same message: absent strings "" (run_id None), 0
        return VersionInfo(
            name=version["name"],
            version=str(version["version"]),
            run_id=version.get("run_id"),
            source=version.get("source", ""),
            tags=tags,
            aliases=list(version.get("aliases", [])),
            creation_timestamp=int(version.get("creation_timestamp", 0)),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise RestUnavailable(f"unexpected model version answer: {type(err).__name__}") from err


def _safe(path: str) -> bool:
    parts = path.split("/")
    return bool(path) and not path.startswith("/") and "\\" not in path and all(p not in ("", ".", "..") for p in parts)


def _authorization() -> str | None:
    """The ``Authorization`` header MLflow would send: basic auth first, then the bearer token."""
    username = os.environ.get("MLFLOW_TRACKING_USERNAME") or None
    password = os.environ.get("MLFLOW_TRACKING_PASSWORD") or None
    if not (username and password):
        saved_user, saved_password = _saved_credentials()
        username, password = username or saved_user, password or saved_password
    if username and password:
        return "Basic " + base64.standard_b64encode(f"{username}:{password}".encode()).decode()
    token = os.environ.get("MLFLOW_TRACKING_TOKEN") or None
    return f"Bearer {token}" if token else None


def _saved_credentials() -> tuple[str | None, str | None]:
    """``mlflow_tracking_username`` / ``mlflow_tracking_password`` of ``~/.mlflow/credentials``, as MLflow reads it."""
    path = os.path.expanduser("~/.mlflow/credentials")
    if not os.path.exists(path):
        return None, None
    config = configparser.ConfigParser()
    try:
        config.read(path)
    except configparser.Error:
        return None, None
    if "mlflow" not in config:
        return None, None
    section = config["mlflow"]
    return section.get("mlflow_tracking_username"), section.get("mlflow_tracking_password")


def _tls_context() -> ssl.SSLContext:
    """TLS as MLflow's settings ask: no verification, another CA bundle, a client certificate."""
    insecure = _true(os.environ.get("MLFLOW_TRACKING_INSECURE_TLS"))
    server_cert = (
        os.environ.get("MLFLOW_TRACKING_SERVER_CERT_PATH")
        or os.environ.get("REQUESTS_CA_BUNDLE")  # requests (MLflow's HTTP client) reads these two
        or os.environ.get("CURL_CA_BUNDLE")
        or None
    )
    client_cert = os.environ.get("MLFLOW_TRACKING_CLIENT_CERT_PATH") or None
    context = ssl.create_default_context(cafile=server_cert)
    if insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if client_cert:
        context.load_cert_chain(client_cert)
    return context
