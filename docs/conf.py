"""Sphinx configuration of the airflow-batch-scoring docs.

Build (warnings are errors, as in ``.ci/run``)::

    pip install -e '.[docs]'
    sphinx-build -W -b html docs docs/_build

Pages are reStructuredText or Markdown (MyST). Two references are generated from the code at build time by the
local extension ``_ext/provider_docs.py``: the configuration options and connection types from
``get_provider_info()``; the command line comes from its argparse parser through ``sphinx-argparse``.
"""

from __future__ import annotations

import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
sys.path[:0] = [str(DOCS / "_ext"), str(DOCS.parent)]

from airflow_batch_scoring.get_provider_info import get_provider_info  # noqa: E402

project = "airflow-batch-scoring"
author = "airflow-batch-scoring contributors"
release = version = get_provider_info()["versions"][0]

extensions = ["myst_parser", "sphinxarg.ext", "provider_docs"]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build"]
# Markdown headings get anchors, so that [text](page.md#heading) links resolve (and -W catches those that do not).
myst_heading_anchors = 3
nitpicky = False
html_theme = "furo"
html_title = f"airflow-batch-scoring {release}"
pygments_style = "sphinx"
