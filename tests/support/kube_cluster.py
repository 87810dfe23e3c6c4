"""A Kubernetes cluster without a cluster, for the Kubernetes runtime's tests.

- **API server**: kmock's ``KubernetesEmulator`` (an HTTP server keeping objects in memory) on 127.0.0.1, reached
  through a kubeconfig file by the real clients (the cncf-kubernetes provider's hooks, sync and asyncio). Like the real
  API server it gives each created object a ``uid`` and a ``creationTimestamp``; it filters nothing by label (the
  code under test filters pods by their owner itself).
- **Job controller and kubelet** (:class:`Kubelet`): a thread that watches Jobs through the same API and, for each
  completion index, creates the pod as the Job controller does (labels, annotations, owner) and either *runs the
  pod's own container command with the pod's own environment as a local process*, its ConfigMap and Secret written to
  files as they would be mounted, or plays a scripted outcome (OOMKilled, an image that cannot be pulled, an exit code
  with a log). It then writes the pod's and the Job's status back (``completedIndexes``, ``failedIndexes``,
  conditions), honouring ``backoffLimitPerIndex``, ``maxFailedIndexes`` (set or not) and the exit-code pod failure
  policy (``FailIndex``, ``FailJob``: the Job's running pods are then stopped).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import kmock

logging.getLogger("aiohttp.access").setLevel(logging.WARNING)

RESOURCES = ("batch/v1/jobs", "v1/pods", "v1/secrets", "v1/configmaps")
TEST_AGENT = "kube-cluster-test"
VERBS = {"POST": "create", "PATCH": "patch", "PUT": "update", "DELETE": "delete"}
INDEX_KEY = "batch.kubernetes.io/job-completion-index"
#: Variables a real container does not have but these test processes must keep (no cloud probes from SDKs).
SAFE_ENV = ("PATH", "HOME", "TMPDIR", "AWS_EC2_METADATA_DISABLED", "NO_GCE_CHECK", "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT",
            "MLFLOW_DISABLE_TELEMETRY", "DO_NOT_TRACK")


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Emulator(kmock.KubernetesEmulator):
    """kmock's emulator, plus what the API server adds to every object it creates, and RBAC refusals."""

    forbidden: set[tuple[str, str]] = set()

    async def _handle(self, request: Any) -> Any:
        if request.action == kmock.action.CREATE and (
            getattr(request.resource, "plural", None), request.namespace
        ) in self.forbidden:
            return await self._render_error(kmock.KubernetesError(
                status=403, reason="Forbidden", message=f"{request.resource.plural} is forbidden: RBAC"
            ))
        if request.resource is not None and request.action == kmock.action.CREATE and isinstance(request.data, dict):
            meta = request.data.setdefault("metadata", {})
            meta.setdefault("uid", str(uuid.uuid4()))
            meta.setdefault("creationTimestamp", _now())
            if request.namespace and not meta.get("namespace"):
                meta["namespace"] = request.namespace
        return await super()._handle(request)


class FakeCluster:
    """The emulator on a free loopback port, a kubeconfig for it, and the requests it received."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.logs: dict[str, str] = {}
        self.forbidden: set[tuple[str, str]] = set()  # (resource plural, namespace) whose creation answers 403
        self._stop = False
        self._ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=lambda: self._loop.run_until_complete(self._serve()), daemon=True)
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("the Kubernetes emulator did not start")
        self.kubeconfig = folder / "kubeconfig.yaml"
        self.kubeconfig.write_text(
            "apiVersion: v1\nkind: Config\n"
            f"clusters:\n- name: emulator\n  cluster:\n    server: {self.url}\n"
            "contexts:\n- name: emulator\n  context:\n    cluster: emulator\n    user: tester\n"
            "current-context: emulator\n"
            "users:\n- name: tester\n  user:\n    token: not-a-secret-emulator-token\n"
        )

    async def _serve(self) -> None:
        async with Emulator() as emulator, kmock.Server(emulator) as server:
            self.emulator = emulator
            self.url = str(server.url).rstrip("/")
            for resource in RESOURCES:
                emulator.resources[resource] = {}
            emulator["get", kmock.resource("v1/pods"), kmock.subresource("log")] << (
                lambda request: self.logs.get(request.name, "").encode()
            )
            emulator.forbidden = self.forbidden
            self._ready.set()
            while not self._stop:
                await asyncio.sleep(0.02)

    def stop(self) -> None:
        self._stop = True
        self._thread.join(10)

    def client(self) -> Any:
        """A plain Kubernetes API client on the emulator (the tests' own view, as kubectl would have)."""
        from kubernetes import client

        configuration = client.Configuration()
        configuration.host = self.url
        api = client.ApiClient(configuration)
        api.user_agent = TEST_AGENT  # tells the test's own requests from those of the code under test
        return api

    def requests(self, method: str, plural: str) -> list[Any]:
        """The requests of ``method`` on ``plural`` received so far (each with ``data``, ``params``, ``name``)."""
        return [
            r for r in list(iter(self.emulator))
            if str(r.method).lower().endswith(method.lower()) and getattr(r.resource, "plural", None) == plural
            and not r.subresource
        ]

    def rbac_uses(self) -> set[tuple[str, str, str]]:
        """``(apiGroup, resource[/subresource], verb)`` of every request the code under test made, as RBAC sees it."""
        uses = set()
        for request in list(iter(self.emulator)):
            if request.resource is None or request.headers.get("User-Agent") == TEST_AGENT:
                continue
            method = str(request.method).rsplit(".", 1)[-1].upper()
            verb = VERBS.get(method) or ("get" if request.name else "watch" if request.params.get("watch") else "list")
            resource = request.resource.plural + (f"/{request.subresource}" if request.subresource else "")
            uses.add((request.resource.group or "", resource, verb))
        return uses

    def created(self, plural: str) -> list[dict[str, Any]]:
        """The bodies of every ``plural`` object created, exactly as the client sent them (plus uid/timestamp)."""
        return [dict(r.data) for r in self.requests("post", plural)]


@dataclass
class Outcome:
    """A scripted container outcome: ``ok``, ``exit`` (with ``code`` and ``log``), ``oom``, ``image`` or ``hang``."""

    kind: str
    code: int = 0
    log: str = ""
    message: str = ""


@dataclass
class Kubelet:
    """Plays the Job controller and the kubelet for the Jobs created on a :class:`FakeCluster`.

    :param namespace: the namespace whose Jobs it controls.
    :param script: per completion index, a scripted :class:`Outcome`; an index without one runs the pod's container
        command locally (its exit code decides).
    """

    cluster: FakeCluster
    workdir: Path
    namespace: str
    script: dict[int, Outcome] = field(default_factory=dict)
    runs: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        from kubernetes import client

        self._api = self.cluster.client()
        self.batch = client.BatchV1Api(self._api)
        self.core = client.CoreV1Api(self._api)
        self._seen: set[str] = set()
        self._stop = False
        self._lock = threading.Lock()
        self._processes: dict[str, subprocess.Popen[str]] = {}
        self._terminating: dict[str, threading.Event] = {}
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop = True
        self._thread.join(10)
        for process in list(self._processes.values()):
            if process.poll() is None:
                process.kill()

    def _watch(self) -> None:
        while not self._stop:
            try:
                jobs = self._api.sanitize_for_serialization(self.batch.list_job_for_all_namespaces().items)
            except Exception:
                jobs = []
            jobs = [j for j in jobs if j["metadata"].get("namespace") == self.namespace]
            for job in jobs:
                uid = job["metadata"]["uid"]
                if uid not in self._seen:
                    self._seen.add(uid)
                    threading.Thread(target=self._control, args=(job,), daemon=True).start()
            live = {j["metadata"]["uid"] for j in jobs}
            for uid, process in list(self._processes.items()):
                if uid.split("/")[0] not in live and process.poll() is None:
                    process.kill()  # the Job was deleted: its pods are stopped
            time.sleep(0.1)

    # -- the Job controller ---------------------------------------------------------------------------------------

    def _control(self, job: dict[str, Any]) -> None:
        """The Job controller for an Indexed Job with ``backoffLimitPerIndex``, as documented in
        https://kubernetes.io/docs/concepts/workloads/controllers/job/#backoff-limit-per-index and
        https://kubernetes.io/docs/concepts/workloads/controllers/job/#pod-failure-policy: an index is retried up to
        ``backoffLimitPerIndex`` times (``FailIndex`` on an exit code ends it at once) and then added to
        ``failedIndexes``; without ``maxFailedIndexes`` the other indexes run to their end and the Job then fails
        (reason ``FailedIndexes``); once more indexes than ``maxFailedIndexes`` failed, or a ``FailJob`` rule matched,
        the Job fails at once and its running pods are terminated."""
        meta, spec = job["metadata"], job["spec"]
        name, namespace, uid = meta["name"], meta["namespace"], meta["uid"]
        completions = spec["completions"]
        retries = spec.get("backoffLimitPerIndex", 6)
        parallelism = spec.get("parallelism") or completions
        max_failed = spec.get("maxFailedIndexes")

        def codes(action: str) -> set[int]:
            return {
                code for rule in (spec.get("podFailurePolicy") or {}).get("rules", []) if rule.get("action") == action
                for code in (rule.get("onExitCodes") or {}).get("values", [])
            }

        fail_codes, fail_job_codes = codes("FailIndex"), codes("FailJob")
        state = {"completed": set(), "failed": set(), "failed_pods": 0, "active": 0, "stuck": False}
        lock = threading.Lock()
        terminating = threading.Event()
        self._terminating[uid] = terminating

        def terminate() -> None:
            terminating.set()
            for key, process in list(self._processes.items()):
                if key.startswith(f"{uid}/") and process.poll() is None:
                    process.kill()

        def run_index(index: int) -> None:
            phase, code = "Failed", None
            for _ in range(retries + 1):
                if terminating.is_set():
                    return
                with lock:
                    state["active"] += 1
                self._update_job(name, namespace, state, completions, final=None)
                phase, code = self._run_pod(job, index)
                with lock:
                    state["active"] -= 1
                    if terminating.is_set():
                        return  # a pod stopped because the Job failed does not count
                    if phase == "Succeeded":
                        state["completed"].add(index)
                    elif phase == "Failed":
                        state["failed_pods"] += 1
                    elif phase == "Stuck":
                        state["stuck"] = True
                if phase == "Failed" and code in fail_job_codes:
                    with lock:
                        state["failed"].add(index)
                        state["reason"] = "PodFailurePolicy"
                    terminate()
                    return
                if phase != "Failed" or code in fail_codes:
                    break
            if phase == "Failed":
                with lock:
                    state["failed"].add(index)
                    if max_failed is not None and len(state["failed"]) > max_failed:
                        state["reason"] = "MaxFailedIndexesExceeded"
                        terminate()
                if not terminating.is_set():  # failedIndexes is published while the other indexes run on
                    self._update_job(name, namespace, state, completions, final=None)

        indexes = list(range(completions))
        while indexes and not self._stop and not terminating.is_set():
            batch, indexes = indexes[:parallelism], indexes[parallelism:]
            threads = [threading.Thread(target=run_index, args=(i,), daemon=True) for i in batch]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        if state["stuck"] and not terminating.is_set():
            self._update_job(name, namespace, state, completions, final=None)
            return  # a pod waiting on its image never ends the Job
        final = "Complete" if len(state["completed"]) == completions else "Failed"
        self._update_job(name, namespace, state, completions, final=final)

    def _update_job(
        self, name: str, namespace: str, state: dict[str, Any], completions: int, final: str | None
    ) -> None:
        status: dict[str, Any] = {
            "active": state["active"],
            "succeeded": len(state["completed"]),
            "failed": state["failed_pods"],
            "completedIndexes": _ranges(state["completed"]),
            "failedIndexes": _ranges(state["failed"]),
            "startTime": _now(),
        }
        if final == "Complete":
            status["conditions"] = [{"type": "Complete", "status": "True", "lastTransitionTime": _now()}]
            status["completionTime"] = _now()
        elif final == "Failed":
            reason = state.get("reason", "FailedIndexes")
            status["conditions"] = [{"type": "Failed", "status": "True", "reason": reason,
                                     "message": "Job has failed indexes", "lastTransitionTime": _now()}]
        try:
            self.batch.patch_namespaced_job_status(name, namespace, {"status": status})
        except Exception:
            pass  # deleted meanwhile

    # -- the kubelet ----------------------------------------------------------------------------------------------

    def _run_pod(self, job: dict[str, Any], index: int) -> tuple[str, int | None]:
        meta = job["metadata"]
        template = job["spec"]["template"]
        pod_name = f"{meta['name']}-{index}-{uuid.uuid4().hex[:5]}"
        labels = {**(template["metadata"].get("labels") or {}), "batch.kubernetes.io/job-name": meta["name"],
                  "job-name": meta["name"], "batch.kubernetes.io/controller-uid": meta["uid"], INDEX_KEY: str(index)}
        annotations = {**(template["metadata"].get("annotations") or {}), INDEX_KEY: str(index)}
        pod = {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": pod_name, "namespace": meta["namespace"], "labels": labels, "annotations": annotations,
                         "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": meta["name"],
                                              "uid": meta["uid"], "controller": True}]},
            "spec": template["spec"],
            "status": {"phase": "Pending"},
        }
        self.core.create_namespaced_pod(meta["namespace"], pod)
        container = template["spec"]["containers"][0]
        outcome = self.script.get(index)
        if outcome is None:
            code, log = self._execute(job, pod_name, index)
            outcome = Outcome("ok" if code == 0 else "exit", code=code, log=log)
        self.cluster.logs[pod_name] = outcome.log
        terminated: dict[str, Any] | None = None
        waiting: dict[str, Any] | None = None
        if outcome.kind == "ok":
            phase, terminated = "Succeeded", {"exitCode": 0, "reason": "Completed"}
        elif outcome.kind == "exit":
            phase, terminated = "Failed", {"exitCode": outcome.code, "reason": "Error",
                                           "message": outcome.log[-2000:]}
        elif outcome.kind == "oom":
            phase, terminated = "Failed", {"exitCode": 137, "reason": "OOMKilled"}
        elif outcome.kind == "image":
            phase, waiting = "Pending", {"reason": "ImagePullBackOff", "message": outcome.message or (
                f'Back-off pulling image "{container["image"]}": ErrImagePull: manifest unknown')}
        else:  # hang
            phase = "Running"
        state = {"terminated": terminated} if terminated else {"waiting": waiting} if waiting else {"running": {}}
        status = {"phase": phase, "containerStatuses": [{
            "name": container["name"], "image": container["image"], "ready": False, "restartCount": 0,
            "imageID": "", "state": state,
        }]}
        try:
            self.core.patch_namespaced_pod_status(pod_name, meta["namespace"], {"status": status})
        except Exception:
            pass
        if outcome.kind == "hang":
            ended = self._terminating.get(meta["uid"])
            while not self._stop and self._job_alive(meta) and not (ended and ended.is_set()):
                time.sleep(0.1)
            return "Failed", None
        code = terminated.get("exitCode") if terminated else None
        return ("Stuck" if outcome.kind == "image" else phase), code

    def _job_alive(self, meta: dict[str, Any]) -> bool:
        try:
            return self.batch.read_namespaced_job(meta["name"], meta["namespace"]).metadata.uid == meta["uid"]
        except Exception:
            return False

    def _execute(self, job: dict[str, Any], pod_name: str, index: int) -> tuple[int, str]:
        """Run the pod's container: its own command, args and env, its volumes written out as they are mounted."""
        namespace = job["metadata"]["namespace"]
        spec = job["spec"]["template"]["spec"]
        root = self.workdir / pod_name
        mounted = mount_volumes(spec, root, self.core, namespace)
        command, env = container_process(spec, mounted, index)
        began = time.monotonic()
        process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self._processes[f"{job['metadata']['uid']}/{index}"] = process
        output, _ = process.communicate()
        self.runs.append({"pod": pod_name, "index": index, "command": command, "env": env, "code": process.returncode,
                          "output": output, "seconds": round(time.monotonic() - began, 1)})
        return process.returncode, output


def mount_volumes(spec: dict[str, Any], root: Path, core: Any, namespace: str) -> dict[str, Path]:
    """Write each ConfigMap and Secret volume of a pod spec into ``root/<volume>`` (Secret data decoded, as the
    kubelet does) and return ``{mountPath: local folder}``."""
    folders: dict[str, Path] = {}
    for volume in spec.get("volumes") or []:
        folder = root / volume["name"]
        folder.mkdir(parents=True, exist_ok=True)
        if "configMap" in volume:
            data = core.read_namespaced_config_map(volume["configMap"]["name"], namespace).data or {}
            for key, value in data.items():
                (folder / key).write_text(value)
        elif "secret" in volume:
            data = core.read_namespaced_secret(volume["secret"]["secretName"], namespace).data or {}
            for key, value in data.items():
                (folder / key).write_bytes(base64.b64decode(value))
                os.chmod(folder / key, volume["secret"].get("defaultMode", 0o644))
        folders[volume["name"]] = folder
    container = spec["containers"][0]
    return {m["mountPath"]: folders[m["name"]] for m in container.get("volumeMounts") or []}


def container_process(spec: dict[str, Any], mounts: dict[str, Path], index: int) -> tuple[list[str], dict[str, str]]:
    """The pod's container as a local process: its command and args (mount paths mapped to the local folders, the
    image's ``python`` to this interpreter) and its environment (the manifest's, plus ``JOB_COMPLETION_INDEX``, which
    the Job controller sets)."""
    container = spec["containers"][0]
    command = list(container.get("command") or []) + list(container.get("args") or [])

    def local(arg: str) -> str:
        for mount, folder in mounts.items():
            if arg == mount or arg.startswith(mount + "/"):
                return str(folder) + arg[len(mount):]
        return arg

    command = [sys.executable if i == 0 and arg == "python" else local(arg) for i, arg in enumerate(command)]
    env = {name: os.environ[name] for name in SAFE_ENV if name in os.environ}
    for item in container.get("env") or []:
        env[item["name"]] = local(item.get("value", ""))  # TMPDIR=/tmp: the pod's scratch emptyDir
    env["JOB_COMPLETION_INDEX"] = str(index)
    return command, env


def _ranges(indexes: set[int]) -> str | None:
    """``{0, 2, 3, 4}`` -> ``"0,2-4"``, as the Job status writes completed and failed indexes."""
    if not indexes:
        return None
    ordered, parts = sorted(indexes), []
    start = prev = ordered[0]
    for i in ordered[1:] + [None]:  # type: ignore[list-item]
        if i is not None and i == prev + 1:
            prev = i
            continue
        parts.append(str(start) if start == prev else f"{start}-{prev}")
        if i is not None:
            start = prev = i
    return ",".join(parts)

