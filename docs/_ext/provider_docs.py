"""Sphinx directives that render the provider's own metadata, so the reference pages cannot drift from the code.

``.. provider-config::`` lists every configuration option of ``get_provider_info()["config"]``;
``.. provider-connections::`` lists the connection types it declares with their form fields.
"""

from __future__ import annotations

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective
from sphinx.util.nodes import nested_parse_with_titles

from airflow_batch_scoring.get_provider_info import get_provider_info


def _literal(value: object) -> str:
    return "``" + str(value) + "``" if value not in (None, "") else "(none)"


def config_lines(info: dict) -> list[str]:
    """reST for every ``[section] option`` of the provider info, in the order the provider declares them."""
    lines: list[str] = []
    for section, spec in info.get("config", {}).items():
        lines += [f"``[{section}]``", "-" * (len(section) + 6), "", spec.get("description", ""), ""]
        for name, option in spec["options"].items():
            env = f"AIRFLOW__{section.upper()}__{name.upper()}"
            lines += [
                f"``{name}``",
                "~" * (len(name) + 4),
                "",
                option["description"],
                "",
                f":Type: {option.get('type', 'string')}",
                f":Default: {_literal(option.get('default'))}",
                f":Environment variable: ``{env}``",
                f":Version added: {option.get('version_added', '')}",
            ]
            if option.get("example"):
                lines.append(f":Example: ``{option['example']}``")
            lines.append("")
    return lines


def connection_lines(info: dict) -> list[str]:
    """reST for every connection type of the provider info: its hook and its form fields."""
    lines: list[str] = []
    for conn in info.get("connection-types", []):
        lines += [
            f"- **{conn['hook-name']}** (type ``{conn['connection-type']}``, hook ``{conn['hook-class-name']}``)",
            "",
        ]
        for name, field in conn.get("conn-fields", {}).items():
            secret = " (a password field: masked in the form and in every log)" if (
                field.get("schema", {}).get("format") == "password") else ""
            lines.append(f"  - *{field['label']}* (extra ``{name}``): {field['description']}{secret}")
        hidden = conn.get("ui-field-behaviour", {}).get("hidden-fields", [])
        if hidden:
            lines.append(f"  - hidden standard fields: {', '.join(hidden)}")
        lines.append("")
    return lines


class _Generated(SphinxDirective):
    has_content = False

    def lines(self) -> list[str]:
        raise NotImplementedError

    def run(self) -> list[nodes.Node]:
        container = nodes.container()
        nested_parse_with_titles(self.state, StringList(self.lines(), source="get_provider_info()"), container)
        return container.children


class ProviderConfig(_Generated):
    def lines(self) -> list[str]:
        return config_lines(get_provider_info())


class ProviderConnections(_Generated):
    def lines(self) -> list[str]:
        return connection_lines(get_provider_info())


def setup(app: Sphinx) -> dict:
    app.add_directive("provider-config", ProviderConfig)
    app.add_directive("provider-connections", ProviderConnections)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
