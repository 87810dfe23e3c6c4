"""Score an H2O-3 MOJO with Java: each batch goes through ``hex.genmodel.tools.PredictCsv`` as a CSV file.

The batch is written with a header (H2O matches columns by name), PredictCsv writes ``predict`` and, for
classifiers, one probability column per class, in decimal (shortest round-trip form, so the doubles are exact).
``predict`` becomes ``prediction``; with ``probabilities`` the class columns become ``probability_<class>``.
"""

from __future__ import annotations

import os
import subprocess
import tempfile

import pyarrow as pa
import pyarrow.csv as pa_csv

from airflow_batch_scoring.artifacts.h2o_mojo import genmodel_jar, java_command, mojo_schemas, read_model_ini
from airflow_batch_scoring.errors import ModelError
from airflow_batch_scoring.job import ModelSpec
from airflow_batch_scoring.runtime.predictor import PREDICTION, PROBABILITY_PREFIX, Predictor, apply_output_schema
from airflow_batch_scoring.schema import ModelSchema

PREDICT_CSV = "hex.genmodel.tools.PredictCsv"


class MojoPredictor(Predictor):
    """An H2O-3 MOJO scored by ``java -cp h2o.jar hex.genmodel.tools.PredictCsv``."""

    def __init__(self, spec: ModelSpec, *, probabilities: bool, output_schema: ModelSchema | None):
        ini = read_model_ini(spec.path)
        inputs, self.response, self.classes = mojo_schemas(ini)
        if probabilities and not self.classes:
            raise ModelError(
                f"predict_probabilities=True, but the MOJO is a {ini['info'].get('category', 'non-classifier')} model "
                "without classes; use a classifier or switch predict_probabilities off."
            )
        self.command = [
            java_command(),
            f"-Xmx{os.environ.get('BATCH_SCORING_JAVA_XMX', '1g')}",
            "-cp",
            genmodel_jar(),
            PREDICT_CSV,
            "--mojo",
            spec.path,
            "--decimal",
        ]
        super().__init__(
            None, input_schema=inputs, output_schema=output_schema, probabilities=False, wants_frame=False
        )
        self.probabilities = probabilities

    def predict(self, features: pa.Table) -> pa.Table:
        with tempfile.TemporaryDirectory(prefix="mojo-batch-") as folder:
            source, target = os.path.join(folder, "in.csv"), os.path.join(folder, "out.csv")
            pa_csv.write_csv(features, source)
            done = subprocess.run(
                [*self.command, "--input", source, "--output", target], capture_output=True, text=True, check=False
            )
            if done.returncode != 0 or not os.path.exists(target):
                tail = (done.stderr or done.stdout or "").strip()[-2000:]
                raise ModelError(f"H2O PredictCsv failed on a batch (exit code {done.returncode}): {tail}")
            types = {"predict": pa.string()} if self.classes else {}
            result = pa_csv.read_csv(target, convert_options=pa_csv.ConvertOptions(column_types=types))
        if result.num_rows != features.num_rows:
            raise ModelError(
                f"H2O PredictCsv returned {result.num_rows} rows for a batch of {features.num_rows}; check that no "
                "input value holds a line break."
            )
        names, arrays = [], []
        for name in result.column_names:
            if name == "predict":
                names.append(PREDICTION)
            elif self.classes and name in self.classes:
                if not self.probabilities:
                    continue
                names.append(f"{PROBABILITY_PREFIX}{name}")
            else:
                names.append(name)
            arrays.append(result.column(name).combine_chunks())
        if self.output_schema is not None:
            names, arrays = apply_output_schema(self.output_schema, names, arrays)
        return pa.Table.from_arrays(arrays, names=names)
