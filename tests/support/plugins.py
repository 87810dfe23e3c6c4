"""Installing a plug-in package in a test the way pip leaves one: a module and a dist-info with entry_points.txt."""

from __future__ import annotations

import textwrap
from pathlib import Path


def install_plugin(site: Path, module: str, source: str, entry_points: str) -> Path:
    """Write ``<module>.py`` (``source``) and its ``<module>-0.1.dist-info`` (``entry_points``: the text of
    entry_points.txt) into ``site``; return ``site`` for the caller to put on ``sys.path`` (and ``PYTHONPATH`` for
    replicas)."""
    dist = site / f"{module}-0.1.dist-info"
    dist.mkdir(parents=True)
    (site / f"{module}.py").write_text(source)
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module.replace('_', '-')}\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(textwrap.dedent(entry_points))
    return site
