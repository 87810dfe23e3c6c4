"""The Kubernetes value grammar that ``kubernetes={...}`` is checked against before anything reaches the API server.

Label and annotation keys and values, quantities, tolerations, affinity keys, namespaces and names, pull secrets: a
mistake here fails when the task starts, naming the setting and the rule, rather than as an API server's 422 after the
run's staging folder and Secret exist. Never imports Airflow or the Kubernetes client.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from airflow_batch_scoring.coercion import to_int
from airflow_batch_scoring.errors import ConfigurationError

PULL_POLICIES = ("Always", "IfNotPresent", "Never")
TOLERATION_KEYS = ("key", "operator", "value", "effect", "tolerationSeconds")
TOLERATION_OPERATORS = ("Exists", "Equal")
TOLERATION_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
AFFINITY_KEYS = ("nodeAffinity", "podAffinity", "podAntiAffinity")

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_NAME = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
_QUANTITY = re.compile(r"^[+]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+|[KMGTPE]i|[numkMGTPE])?$")


def plain(value: Any) -> Any:
    """A Kubernetes client model (``V1Toleration``, ``V1Affinity``, ``V1ResourceRequirements``, ...) as the API's
    JSON (camelCase, unset fields left out), as the client's ``ApiClient.sanitize_for_serialization`` writes it, read
    from the model's own ``attribute_map``; mappings and lists item by item; anything else as it is.

    So a setting written as the client's models or as in a pod manifest is checked by the same rules.
    """
    if hasattr(value, "openapi_types") and hasattr(value, "attribute_map"):
        fields = ((value.attribute_map[attr], getattr(value, attr)) for attr in value.openapi_types)
        return {key: plain(item) for key, item in fields if item is not None}
    if isinstance(value, Mapping):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    return value


def where(name: str) -> str:
    """How an error names the setting ``name``: ``kubernetes['name']``."""
    return f"kubernetes[{name!r}]"


def string(value: Any, name: str, *, required: bool = False) -> str | None:
    """A text setting, stripped; ``None`` for a missing or empty one (refused when ``required``)."""
    if value is None or value == "":
        if required:
            raise ConfigurationError(f"{where(name)} is required.")
        return None
    if not isinstance(value, str):
        raise ConfigurationError(f"{where(name)} must be a string, got {value!r}.")
    return value.strip()


def mapping(value: Any, what: str) -> Mapping[str, Any]:
    """A mapping setting (``None``: empty)."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigurationError(f"{what} must be a mapping, got {type(value).__name__}: {value!r}.")
    return value


def check_label_key(key: Any, what: str) -> str:
    """Check a label or annotation key (``[prefix/]name``, the prefix a DNS subdomain, the name up to 63 characters).

    :raises ConfigurationError: naming the key and the rule.
    """
    if not isinstance(key, str) or not key:
        raise ConfigurationError(f"{what} keys must be non-empty strings, got {key!r}.")
    prefix, _, name = key.rpartition("/")
    if (prefix and (len(prefix) > 253 or not _DNS_SUBDOMAIN.match(prefix))) or len(name) > 63 or not (
        _LABEL_NAME.match(name)
    ):
        raise ConfigurationError(
            f"{what} key {key!r} is not a valid Kubernetes key: an optional DNS prefix and '/', then up to 63 "
            "letters, digits, '-', '_' or '.', starting and ending with a letter or digit."
        )
    return key


def label_map(value: Any, name: str) -> dict[str, str]:
    """Labels: valid keys, and values of up to 63 letters, digits, '-', '_' or '.'."""
    result = {}
    for key, item in mapping(value, where(name)).items():
        check_label_key(key, where(name))
        text = "" if item is None else str(item)
        if len(text) > 63 or not _LABEL_VALUE.match(text):
            raise ConfigurationError(
                f"{where(name)}[{key!r}] = {item!r} is not a valid label value: up to 63 letters, digits, '-', '_' "
                "or '.', starting and ending with a letter or digit."
            )
        result[key] = text
    return result


def annotation_map(value: Any, name: str) -> dict[str, str]:
    """Annotations: valid keys, scalar values (as text)."""
    result = {}
    for key, item in mapping(value, where(name)).items():
        check_label_key(key, where(name))
        if not isinstance(item, (str, int, float, bool)):
            raise ConfigurationError(f"{where(name)}[{key!r}] must be a string, got {item!r}.")
        result[key] = str(item)
    return result


def quantity(value: Any, what: str) -> str:
    """A Kubernetes quantity (``500m``, ``2``, ``4Gi``), as text."""
    text = str(value).strip() if isinstance(value, (str, int, float)) and not isinstance(value, bool) else None
    if text is None or not _QUANTITY.match(text):
        raise ConfigurationError(
            f"{what} = {value!r} is not a Kubernetes quantity: use e.g. '500m' or 2 (CPU), '4Gi' or '512Mi' (memory), "
            "1 (GPUs)."
        )
    return text


def tolerations(value: Any) -> list[dict[str, Any]]:
    """Tolerations as in a pod manifest: known keys, operators and effects."""
    if value is None:
        return []
    if not isinstance(value, (list, tuple)):
        raise ConfigurationError(f"kubernetes['tolerations'] must be a list of mappings, got {value!r}.")
    result = []
    for i, item in enumerate(value):
        what = f"kubernetes['tolerations'][{i}]"
        item = mapping(item, what)
        unknown = sorted(set(item) - set(TOLERATION_KEYS))
        if unknown:
            raise ConfigurationError(
                f"Unknown key(s) {unknown} in {what}: the keys are {list(TOLERATION_KEYS)} (as in a pod manifest)."
            )
        if item.get("operator") not in (None, *TOLERATION_OPERATORS):
            raise ConfigurationError(f"{what}['operator'] must be 'Exists' or 'Equal', got {item['operator']!r}.")
        if item.get("effect") not in (None, "", *TOLERATION_EFFECTS):
            raise ConfigurationError(
                f"{what}['effect'] must be one of {list(TOLERATION_EFFECTS)}, got {item['effect']!r}."
            )
        toleration = {k: v for k, v in item.items() if v is not None}
        if "tolerationSeconds" in toleration:
            toleration["tolerationSeconds"] = to_int(toleration["tolerationSeconds"], f"{what}['tolerationSeconds']", 0)
        result.append(toleration)
    return result


def affinity(value: Any) -> dict[str, Any] | None:
    """Affinity as in a pod manifest (its three kinds, camelCase); ``None`` for none."""
    if value is None or value == {}:
        return None
    affinity = mapping(value, "kubernetes['affinity']")
    unknown = sorted(set(affinity) - set(AFFINITY_KEYS))
    if unknown:
        raise ConfigurationError(
            f"Unknown key(s) {unknown} in kubernetes['affinity']: the keys are {list(AFFINITY_KEYS)}, written as in "
            "a pod manifest (camelCase)."
        )
    return dict(affinity)


def pull_secrets(value: Any) -> list[str]:
    """Image pull Secret names: a list (of names, or of references ``{'name': ...}`` as ``V1LocalObjectReference``
    gives them), or one comma-separated string."""
    if value is None or value == "":
        return []
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",") if part.strip()]
    if isinstance(value, (list, tuple)):
        value = [item["name"] if isinstance(item, Mapping) and set(item) == {"name"} else item for item in value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and _DNS_SUBDOMAIN.match(v) for v in value):
        raise ConfigurationError(
            f"kubernetes['image_pull_secrets'] must be a list of Secret names (or one comma-separated string), "
            f"got {value!r}."
        )
    return list(value)


def dns_label(value: str | None, what: str) -> str | None:
    """Check a namespace (a DNS label: lowercase letters, digits and '-', up to 63 characters)."""
    if value and (len(value) > 63 or not _DNS_LABEL.match(value)):
        raise ConfigurationError(
            f"{what} = {value!r} is not a valid namespace (lowercase letters, digits and '-', up to 63 characters)."
        )
    return value


def dns_subdomain(value: str | None, what: str) -> str | None:
    """Check an object name (a DNS subdomain), e.g. a service account."""
    if value and not _DNS_SUBDOMAIN.match(value):
        raise ConfigurationError(f"{what} = {value!r} is not a valid name.")
    return value


def env_name(name: Any, what: str) -> str:
    """Check an environment variable's name."""
    if not isinstance(name, str) or not _ENV_NAME.match(name):
        raise ConfigurationError(f"{what} has an invalid variable name {name!r}.")
    return name
