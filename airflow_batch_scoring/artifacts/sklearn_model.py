"""scikit-learn estimators saved with joblib or pickle (``sklearn/joblib``).

Loading a pickle runs code that the file names, so a pickle is never loaded while processing: it is read only from
the location the user names, its sha256 is checked against ``expected_sha256`` (when given) before anything else,
and the digest of the processed copy is pinned in the ModelSpec. Every replica checks that digest again right before
it loads the file, so a file changed after processing is refused, never unpickled.

The input schema is given by the ``input_schema`` parameter or metadata, or, at scoring time, by the feature names an
estimator fitted on a DataFrame remembers.

Shared with the runtime: never imports Airflow.
"""

from __future__ import annotations

import os

from airflow_batch_scoring.artifacts.base import SKLEARN, SKLEARN_SUFFIXES, ArtifactRequest, require_local, stage
from airflow_batch_scoring.artifacts.digest import sha256_of
from airflow_batch_scoring.errors import ModelError
from airflow_batch_scoring.job import ModelSpec


def process_sklearn(request: ArtifactRequest) -> ModelSpec:
    """Process a joblib/pickle file without loading it.

    :raises ModelError: when the path is not a local file.
    """
    path = require_local(request.uri, SKLEARN, f"file ({', '.join(SKLEARN_SUFFIXES)})")
    if not os.path.isfile(path):
        raise ModelError(
            f"A {SKLEARN} model is one file saved with joblib.dump or pickle.dump, but {path!r} is a folder. "
            "Name the file itself."
        )
    path = stage(path, request.target_dir, request.copy)
    return ModelSpec(uri=request.uri, path=path, flavor="sklearn", digest=sha256_of(path), artifact_type=SKLEARN)
