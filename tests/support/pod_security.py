"""The Pod Security Standards' ``baseline`` and ``restricted`` profiles as checks of a pod spec, written from the
official definition (https://kubernetes.io/docs/concepts/security/pod-security-standards/, "Profile Details"), for
Linux pods. :func:`restricted_violations` lists what a namespace labelled
``pod-security.kubernetes.io/enforce: restricted`` would refuse; an empty list means the pod is admitted."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: Baseline "Capabilities": the only ones that may be added.
BASELINE_CAPABILITIES = {"AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD",
                         "NET_BIND_SERVICE", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT"}
#: Baseline "SELinux": allowed types.
SELINUX_TYPES = {"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"}
#: Baseline "Sysctls": the safe set.
SAFE_SYSCTLS = {"kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.ip_unprivileged_port_start",
                "net.ipv4.tcp_syncookies", "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
                "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
                "net.ipv4.tcp_keepalive_probes"}
#: Restricted "Volume Types": the only volume sources allowed.
RESTRICTED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
                      "projected", "secret"}
SECCOMP_TYPES = {"RuntimeDefault", "Localhost"}


def _containers(spec: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    return [(f"{kind}[{c.get('name')}]", c) for kind in ("initContainers", "containers", "ephemeralContainers")
            for c in spec.get(kind) or []]


def baseline_violations(pod: Mapping[str, Any]) -> list[str]:
    """What the ``baseline`` profile refuses in ``pod`` (``{"metadata": ..., "spec": ...}``)."""
    spec, found = pod.get("spec") or {}, []
    pod_context = spec.get("securityContext") or {}
    contexts = [("spec.securityContext", pod_context)] + [
        (f"{where}.securityContext", c.get("securityContext") or {}) for where, c in _containers(spec)]
    for where, context in contexts:  # HostProcess, AppArmor, SELinux, Seccomp
        if (context.get("windowsOptions") or {}).get("hostProcess"):
            found.append(f"{where}.windowsOptions.hostProcess must be unset or false")
        apparmor = (context.get("appArmorProfile") or {}).get("type")
        if apparmor not in (None, "RuntimeDefault", "Localhost"):
            found.append(f"{where}.appArmorProfile.type {apparmor!r} is not allowed")
        selinux = context.get("seLinuxOptions") or {}
        if selinux.get("type", "") not in SELINUX_TYPES or selinux.get("user") or selinux.get("role"):
            found.append(f"{where}.seLinuxOptions {selinux!r} is not allowed")
        seccomp = (context.get("seccompProfile") or {}).get("type")
        if seccomp not in (None, *SECCOMP_TYPES):
            found.append(f"{where}.seccompProfile.type {seccomp!r} is not allowed")
    for name in ("hostNetwork", "hostPID", "hostIPC"):  # Host Namespaces
        if spec.get(name):
            found.append(f"spec.{name} must be unset or false")
    for where, container in _containers(spec):
        context = container.get("securityContext") or {}
        if context.get("privileged"):  # Privileged Containers
            found.append(f"{where}.securityContext.privileged must be unset or false")
        added = set((context.get("capabilities") or {}).get("add") or [])
        if added - BASELINE_CAPABILITIES:  # Capabilities
            found.append(f"{where} adds capabilities {sorted(added - BASELINE_CAPABILITIES)}")
        if context.get("procMount") not in (None, "Default"):  # /proc Mount Type
            found.append(f"{where}.securityContext.procMount must be unset or Default")
        for port in container.get("ports") or []:  # Host Ports
            if port.get("hostPort"):
                found.append(f"{where} uses hostPort {port['hostPort']}")
    for volume in spec.get("volumes") or []:  # HostPath Volumes
        if "hostPath" in volume:
            found.append(f"volume {volume.get('name')!r} is a hostPath")
    for annotation, value in ((pod.get("metadata") or {}).get("annotations") or {}).items():  # AppArmor (annotation)
        if annotation.startswith("container.apparmor.security.beta.kubernetes.io/") and not (
            value == "runtime/default" or value.startswith("localhost/")
        ):
            found.append(f"annotation {annotation}={value!r} is not allowed")
    for sysctl in pod_context.get("sysctls") or []:  # Sysctls
        if sysctl.get("name") not in SAFE_SYSCTLS:
            found.append(f"sysctl {sysctl.get('name')!r} is not in the safe set")
    return found


def restricted_violations(pod: Mapping[str, Any]) -> list[str]:
    """What the ``restricted`` profile (``baseline`` plus its own controls) refuses in ``pod``."""
    spec, found = pod.get("spec") or {}, baseline_violations(pod)
    pod_context = spec.get("securityContext") or {}
    for volume in spec.get("volumes") or []:  # Volume Types
        sources = set(volume) - {"name"}
        if not sources <= RESTRICTED_VOLUMES:
            found.append(f"volume {volume.get('name')!r} has a source not allowed: {sorted(sources)}")
    if pod_context.get("runAsUser") == 0:  # Running as Non-root user
        found.append("spec.securityContext.runAsUser must not be 0")
    for where, container in _containers(spec):
        context = container.get("securityContext") or {}
        if context.get("allowPrivilegeEscalation") is not False:  # Privilege Escalation
            found.append(f"{where}.securityContext.allowPrivilegeEscalation must be false")
        non_root = context.get("runAsNonRoot")  # Running as Non-root
        if non_root is False or (non_root is None and pod_context.get("runAsNonRoot") is not True):
            found.append(f"{where}: runAsNonRoot must be true (in the container, or in the pod and not unset here)")
        if context.get("runAsUser") == 0:  # Running as Non-root user
            found.append(f"{where}.securityContext.runAsUser must not be 0")
        seccomp = (context.get("seccompProfile") or {}).get("type")  # Seccomp
        pod_seccomp = (pod_context.get("seccompProfile") or {}).get("type")
        if seccomp not in SECCOMP_TYPES and not (seccomp is None and pod_seccomp in SECCOMP_TYPES):
            found.append(f"{where}: seccompProfile.type must be RuntimeDefault or Localhost (here or in the pod)")
        capabilities = context.get("capabilities") or {}  # Capabilities
        if "ALL" not in (capabilities.get("drop") or []):
            found.append(f"{where}.securityContext.capabilities.drop must include ALL")
        if set(capabilities.get("add") or []) - {"NET_BIND_SERVICE"}:
            found.append(f"{where} may add only NET_BIND_SERVICE")
    return found
