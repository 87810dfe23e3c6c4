"""The job's secret material: fsspec storage options for the source and the sink, kept out of the job JSON.

A local replica reads it from its standard input (never argv, the environment or a file); a pod reads it from the file
a Kubernetes Secret mounts, named by ``BATCH_SCORING_SECRETS_FILE``.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

SECRETS_FILE_ENV = "BATCH_SCORING_SECRETS_FILE"


def read_secrets(from_stdin: bool, path: str | None = None) -> dict[str, Any]:
    """Return ``{"source": {...}, "sink": {...}}`` storage options, or ``{}`` when there are none.

    :param from_stdin: read them from the standard input (a local replica).
    :param path: read them from this file (a pod: the mounted Secret); default ``$BATCH_SCORING_SECRETS_FILE``.
    """
    path = path or os.environ.get(SECRETS_FILE_ENV)
    if from_stdin:
        text = sys.stdin.read()
    elif path:
        with open(path) as f:
            text = f.read()
    else:
        return {}
    return json.loads(text) if text.strip() else {}
