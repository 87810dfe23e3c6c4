"""The Kubernetes API calls of a scoring run, on the cncf-kubernetes provider's hooks.

:class:`ScoringJobHook` (on ``KubernetesHook``) is what the launcher calls on the worker: create (or replace) the run's
Secret and ConfigMap, create the Indexed Job, give the Job its dependents, read the Job, its pods and a pod's log, read
the ConfigMap back, delete with a propagation policy. :class:`AsyncScoringJobHook` (on ``AsyncKubernetesHook``) is what
the trigger calls in the triggerer: read the Job and its pods, delete the Job.

Both turn an API refusal into an error that says what to fix (:func:`explain`); a refusal about a Secret never quotes
the server's message, which may echo the Secret's body. Objects are returned as the API's JSON (``dict``, camelCase),
which :mod:`airflow_batch_scoring.kubernetes.status` judges.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from typing import Any

from airflow.providers.cncf.kubernetes.hooks.kubernetes import AsyncKubernetesHook, KubernetesHook
from kubernetes.client import models as k8s
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException
from kubernetes_asyncio import client as async_client
from kubernetes_asyncio.client.exceptions import ApiException as AsyncApiException
from kubernetes_asyncio.config.config_exception import ConfigException as AsyncConfigException

from airflow_batch_scoring.errors import ConfigurationError
from airflow_batch_scoring.kubernetes.status import JOB_NAME_LABEL, PENDING_PODS

#: Lines of a pod's log kept to explain its failure.
LOG_TAIL_LINES = 200
#: Deletion propagation policies (``Foreground``: the Job is gone once its pods and dependents are).
PROPAGATION_POLICIES = ("Foreground", "Background", "Orphan")
#: The connection fields that name a kubeconfig; ``config_file`` replaces them, as ``KubernetesHook`` does.
_KUBECONFIG_PATH_FIELDS = ("kube_config_path", "extra__kubernetes__kube_config_path")


def explain(what: str, err: Any, *, namespace: str | None, conn_id: str | None, quiet: bool = False) -> Exception:
    """An API refusal as an error that says what to fix; other errors are returned as they are.

    :param what: what was refused, e.g. ``create the Secret``.
    :param err: the ``ApiException`` (of the sync or the asyncio client).
    :param namespace: where.
    :param conn_id: the Airflow connection whose identity was refused.
    :param quiet: leave the server's message out (it may quote a Secret's body).
    """
    detail = "" if quiet else _api_message(err)
    where = f"namespace {namespace!r}"
    if err.status in (401, 403):
        return ConfigurationError(
            f"The Kubernetes API refused to {what} in {where} ({err.status} {err.reason}{detail}): give the "
            f"identity of connection {conn_id!r} the Role in README 'Kubernetes runtime' (jobs, pods, pods/log, "
            "secrets, configmaps)."
        )
    if err.status == 404 and what.startswith("create"):
        return ConfigurationError(
            f"Cannot {what}: {where} does not exist ({err.reason}{detail}). Create it, or set kubernetes['namespace']."
        )
    if err.status in (400, 422):
        return ConfigurationError(f"Kubernetes refused to {what} ({err.status} {err.reason}{detail}).")
    return err


def _api_message(err: Any) -> str:
    try:
        message = json.loads(err.body or "{}").get("message")
    except (TypeError, ValueError, AttributeError):
        message = None
    return f": {message}" if message else ""


def _configuration_error(err: Exception) -> ConfigurationError:
    return ConfigurationError(
        f"Cannot configure the Kubernetes client ({err}): pass kubernetes_conn_id= a Kubernetes connection "
        "(kubeconfig, or in-cluster), or set kubernetes['config_file'] or kubernetes['in_cluster']=True."
    )


def _check_policy(propagation: str) -> None:
    if propagation not in PROPAGATION_POLICIES:
        raise ValueError(f"propagation must be one of {PROPAGATION_POLICIES}, got {propagation!r}")


class ScoringJobHook(KubernetesHook):
    """The Kubernetes API calls of a scoring run on the worker (the launcher's).

    Takes ``KubernetesHook``'s arguments (``conn_id``, ``in_cluster``, ``config_file``, ``cluster_context``, ...).
    """

    @contextmanager
    def explained(self, what: str, namespace: str | None, *, quiet: bool = False) -> Iterator[None]:
        """Turn a refusal inside the block into an error that says what to fix (:func:`explain`).

        :raises ConfigurationError: for a client that cannot be configured, a missing permission or namespace, or an
            object the API server refused; other API errors as they are.
        """
        try:
            yield
        except ConfigException as err:
            raise _configuration_error(err) from None
        except ApiException as err:
            raise explain(what, err, namespace=namespace, conn_id=self.conn_id, quiet=quiet) from None

    def to_api(self, obj: Any) -> Any:
        """``obj`` as the API's JSON (camelCase, no empty fields)."""
        return self.api_client.sanitize_for_serialization(obj)

    # -- reading ------------------------------------------------------------------------------------------------------

    def read_job(self, name: str, namespace: str | None) -> dict[str, Any] | None:
        """The Job with its status, or ``None`` when there is none."""
        try:
            with self.explained("read the Job", namespace):
                job = self.batch_v1_client.read_namespaced_job_status(name=name, namespace=namespace)
        except ApiException as err:  # a 404 is left as it is by explain()
            if err.status == 404:
                return None
            raise
        return self.to_api(job)

    def list_job_pods(self, name: str, namespace: str | None, *, pending: bool = False) -> list[dict[str, Any]]:
        """The pods of the Job ``name`` (by the Job controller's label; ``status.pods_of`` checks their owner).

        :param pending: only the pods still pending (what a poll needs: :data:`~status.PENDING_PODS`).
        """
        with self.explained("list the Job's pods", namespace):
            result = self.core_v1_client.list_namespaced_pod(
                namespace=namespace, label_selector=f"{JOB_NAME_LABEL}={name}",
                **({"field_selector": PENDING_PODS} if pending else {}),
            )
        return [self.to_api(pod) for pod in result.items or []]

    def tail_pod_log(self, pod: str, namespace: str | None, container: str, lines: int = LOG_TAIL_LINES) -> str:
        """The last ``lines`` lines of a container's log; ``""`` when it cannot be read (the pod is gone)."""
        try:
            response = self.core_v1_client.read_namespaced_pod_log(
                name=pod, namespace=namespace, container=container, tail_lines=lines, _preload_content=False
            )
            return str(response.data.decode("utf-8", errors="replace"))
        except (ApiException, OSError):
            return ""

    def read_config_map(self, name: str, namespace: str | None) -> dict[str, str] | None:
        """A ConfigMap's data, or ``None`` when there is no such ConfigMap."""
        try:
            with self.explained("read the ConfigMap", namespace):
                config_map = self.core_v1_client.read_namespaced_config_map(name=name, namespace=namespace)
        except ApiException as err:
            if err.status == 404:
                return None
            raise
        return dict(config_map.data or {})

    # -- creating -----------------------------------------------------------------------------------------------------

    def create_or_replace_secret(self, secret: k8s.V1Secret) -> None:
        """Create an (immutable) Secret; one of that name left by an attempt that died before owning it is replaced.

        A refusal never quotes the server's message (it may echo the Secret's data).
        """
        core = self.core_v1_client
        _create_or_replace(self, "Secret", secret, core.create_namespaced_secret, core.delete_namespaced_secret)

    def create_or_replace_config_map(self, config_map: k8s.V1ConfigMap) -> None:
        """Create an (immutable) ConfigMap; one of that name left by an earlier attempt is replaced."""
        core = self.core_v1_client
        _create_or_replace(
            self, "ConfigMap", config_map, core.create_namespaced_config_map, core.delete_namespaced_config_map
        )

    def submit_job(self, job: k8s.V1Job) -> dict[str, Any]:
        """Create the Job (through ``KubernetesHook.create_job``) and return it as created (with its ``uid``)."""
        with self.explained("create the Job", job.metadata.namespace):
            return dict(self.to_api(self.create_job(job)))

    def own_dependents(self, owner: Mapping[str, Any], *, namespace: str | None, secret: str, config_map: str) -> None:
        """Give the Secret and the ConfigMap an ``ownerReference`` to the Job: deleting the Job deletes them.

        :param owner: the ownerReference (as the API's JSON) of the Job as created (:meth:`submit_job`).
        """
        patch = {"metadata": {"ownerReferences": [dict(owner)]}}
        with self.explained("own the Secret", namespace, quiet=True):
            self.core_v1_client.patch_namespaced_secret(secret, namespace, patch)
        with self.explained("own the ConfigMap", namespace):
            self.core_v1_client.patch_namespaced_config_map(config_map, namespace, patch)

    # -- deleting -----------------------------------------------------------------------------------------------------

    def delete_job(self, name: str, namespace: str | None, propagation: str = "Foreground") -> None:
        """Delete the Job with ``propagation`` (``Foreground``, ``Background``); one already gone is fine."""
        _check_policy(propagation)
        try:
            with self.explained("delete the Job", namespace):
                self.batch_v1_client.delete_namespaced_job(
                    name=name, namespace=namespace, body=k8s.V1DeleteOptions(propagation_policy=propagation)
                )
        except ApiException as err:
            if err.status != 404:
                raise

    def delete_dependents(self, *, secret: str, config_map: str, namespace: str | None) -> None:
        """Delete a run's Secret and ConfigMap not owned by a Job yet, as far as possible (errors are ignored)."""
        core = self.core_v1_client
        for delete, name in ((core.delete_namespaced_secret, secret), (core.delete_namespaced_config_map, config_map)):
            try:
                delete(name=name, namespace=namespace)
            except ApiException:
                pass


def _create_or_replace(hook: ScoringJobHook, kind: str, body: Any, create: Any, delete: Any) -> None:
    """Create ``body``; one of its name already there (immutable) is deleted and created again."""
    namespace = body.metadata.namespace
    quiet = kind == "Secret"
    try:
        with hook.explained(f"create the {kind}", namespace, quiet=quiet):
            create(namespace=namespace, body=body)
        return
    except ApiException as err:
        if err.status != 409:
            raise
    with hook.explained(f"replace the {kind}", namespace, quiet=quiet):
        delete(name=body.metadata.name, namespace=namespace)
    with hook.explained(f"create the {kind}", namespace, quiet=quiet):
        create(namespace=namespace, body=body)


class AsyncScoringJobHook(AsyncKubernetesHook):
    """The Kubernetes API calls of a deferred scoring run's trigger, on the asyncio client.

    Takes ``AsyncKubernetesHook``'s arguments. Unlike the provider's async hook, which reads a kubeconfig only from the
    connection (its ``kube_config_path`` field), it honours ``config_file`` as ``KubernetesHook`` does: the file is
    given to the provider's loader in place of the connection's path (so its ``cluster_context``, relative
    certificate paths and exec credentials work as they would from the connection).
    """

    async def get_conn_extras(self) -> dict[str, Any]:
        """The connection's extra fields, with ``config_file`` (when given) as its ``kube_config_path``."""
        extras = dict(await super().get_conn_extras())
        if self.config_file:
            extras = {key: value for key, value in extras.items() if key not in _KUBECONFIG_PATH_FIELDS}
            extras["kube_config_path"] = self.config_file
        return extras

    @asynccontextmanager
    async def connection(self, what: str, namespace: str | None) -> AsyncIterator[Any]:
        """An API client (``get_conn``) whose refusals are explained (:func:`explain`)."""
        try:
            async with self.get_conn() as client:
                yield client
        except (ConfigException, AsyncConfigException) as err:
            raise _configuration_error(err) from None
        except AsyncApiException as err:
            raise explain(what, err, namespace=namespace, conn_id=self.conn_id) from None

    async def read_job_and_pods(
        self, name: str, namespace: str
    ) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
        """The Job with its status (``None`` when there is none) and its pending pods (what a poll needs:
        :data:`~airflow_batch_scoring.kubernetes.status.PENDING_PODS`), as the API's JSON."""
        async with self.connection("read the Job", namespace) as client:
            try:
                job = await async_client.BatchV1Api(client).read_namespaced_job_status(name, namespace)
            except AsyncApiException as err:
                if err.status == 404:
                    return None, []
                raise
            pods = await async_client.CoreV1Api(client).list_namespaced_pod(
                namespace, label_selector=f"{JOB_NAME_LABEL}={name}", field_selector=PENDING_PODS
            )
            return (
                client.sanitize_for_serialization(job),
                [client.sanitize_for_serialization(pod) for pod in pods.items or []],
            )

    async def delete_job(self, name: str, namespace: str, propagation: str = "Foreground") -> None:
        """Delete the Job with ``propagation``; one already gone is fine."""
        _check_policy(propagation)
        async with self.connection("delete the Job", namespace) as client:
            try:
                await async_client.BatchV1Api(client).delete_namespaced_job(
                    name, namespace, body=async_client.V1DeleteOptions(propagation_policy=propagation)
                )
            except AsyncApiException as err:
                if err.status != 404:
                    raise
