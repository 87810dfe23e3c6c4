"""H2O-3 MOJO models (flavor ``mojo``, artifact type ``h2o3/mojo``): a ``.zip`` with a ``model.ini``, scored by
Java with the genmodel classes.

Processing reads ``model.ini`` without Java: the feature columns (the first ``n_features`` of ``[columns]``; a
supervised model's response comes after them) and their types (a column with a domain is categorical -> ``String``,
every other is numeric -> ``Float64``), the model category, and the response's classes. ``input_schema`` (parameter
or metadata) wins over that.

Scoring needs ``java`` (``JAVA_HOME`` or the PATH) and a jar with ``hex.genmodel``: ``BATCH_SCORING_H2O_JAR``, or
the ``h2o.jar`` the PyPI package ``h2o`` ships (``pip install 'airflow-batch-scoring[h2o]'``). Each batch goes
through ``hex.genmodel.tools.PredictCsv`` as a CSV file, with a header (H2O matches columns by name); PredictCsv
writes ``predict`` and, for classifiers, one probability column per class, in decimal (shortest round-trip form, so
the doubles are exact). ``predict`` becomes ``prediction``; with ``probabilities`` the class columns become
``probability_<class>``.

Never imports Airflow.
"""

from __future__ import annotations

import configparser
import importlib.util
import os
import shutil
import subprocess
import tempfile
import zipfile
from typing import Any

import pyarrow as pa
import pyarrow.csv as pa_csv

from airflow_batch_scoring.errors import ModelError
from airflow_batch_scoring.flavors.base import PREDICTION, PROBABILITY_PREFIX, Flavor, Predictor, output_table
from airflow_batch_scoring.flavors.processing import ArtifactRequest, require_local, schema_json, stage
from airflow_batch_scoring.job import ModelSpec
from airflow_batch_scoring.schema import Column, ColumnType, ModelSchema

PREDICT_CSV = "hex.genmodel.tools.PredictCsv"
SUFFIXES = (".zip", ".mojo")


class MojoFlavor(Flavor):
    """An H2O-3 MOJO zip scored by Java."""

    name = "mojo"
    artifact_type = "h2o3/mojo"
    aliases = ("mojo", "h2o", "h2o3", "h2o/mojo")
    description = "an H2O MOJO (.zip with model.ini)"

    def detect(self, path: str) -> bool:
        return path.lower().endswith(SUFFIXES) and is_mojo(path)

    def process(self, request: ArtifactRequest) -> ModelSpec:
        return process_mojo(request)

    def load(self, spec: ModelSpec, *, probabilities: bool, output_schema: ModelSchema | None) -> Predictor:
        return MojoPredictor(spec, probabilities=probabilities, output_schema=output_schema)


def is_mojo(path: str) -> bool:
    """Whether ``path`` is an H2O MOJO: a zip archive with a ``model.ini``."""
    if not os.path.isfile(path) or not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return "model.ini" in archive.namelist()


def read_model_ini(path: str) -> dict[str, Any]:
    """The parts of a MOJO's ``model.ini`` scoring needs: info, column names, and each categorical's levels.

    :raises ModelError: when ``path`` is not a MOJO zip.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            text = archive.read("model.ini").decode("utf-8")
            parser = configparser.ConfigParser(allow_no_value=True, delimiters=("=",), interpolation=None)
            parser.optionxform = str  # type: ignore[assignment,method-assign]
            info_text, _, rest = text.partition("[columns]")
            parser.read_string(info_text)
            columns_text, _, domains_text = rest.partition("[domains]")
            columns = [line.strip() for line in columns_text.splitlines() if line.strip()]
            domains: dict[int, list[str]] = {}
            for line in domains_text.splitlines():
                if ":" not in line:
                    continue
                index, _, spec = line.partition(":")
                file_name = spec.split()[-1]
                levels = archive.read(f"domains/{file_name}").decode("utf-8").splitlines()
                domains[int(index)] = levels
    except (KeyError, zipfile.BadZipFile, configparser.Error, ValueError) as err:
        raise ModelError(
            f"{path!r} is not a readable H2O MOJO (a .zip with model.ini, as model.download_mojo() writes): {err}"
        ) from err
    info = dict(parser["info"]) if parser.has_section("info") else {}
    return {"info": info, "columns": columns, "domains": domains}


def mojo_schemas(ini: dict[str, Any]) -> tuple[ModelSchema, str | None, list[str] | None]:
    """The input schema, the response column (supervised models) and its classes (classifiers)."""
    info, columns, domains = ini["info"], ini["columns"], ini["domains"]
    n_features = int(info.get("n_features", len(columns)))
    inputs = ModelSchema(
        tuple(
            Column(name, ColumnType.STRING if index in domains else ColumnType.FLOAT64)
            for index, name in enumerate(columns[:n_features])
        )
    )
    supervised = str(info.get("supervised", "false")).lower() == "true"
    response = columns[n_features] if supervised and len(columns) > n_features else None
    classes = domains.get(n_features) if response is not None else None
    return inputs, response, classes


def java_command() -> str:
    """The ``java`` executable: ``$JAVA_HOME/bin/java``, else ``java`` on the PATH.

    :raises ModelError: when there is none.
    """
    home = os.environ.get("JAVA_HOME")
    if home and os.path.isfile(os.path.join(home, "bin", "java")):
        return os.path.join(home, "bin", "java")
    found = shutil.which("java")
    if not found:
        raise ModelError(
            "H2O MOJO models are scored by Java, but no java was found: install a JRE (8 or newer; e.g. apt-get "
            "install openjdk-17-jre-headless) or set JAVA_HOME."
        )
    return found


def genmodel_jar() -> str:
    """A jar with ``hex.genmodel``: ``$BATCH_SCORING_H2O_JAR``, else the ``h2o.jar`` of the installed ``h2o`` package.

    :raises ModelError: when there is none.
    """
    configured = os.environ.get("BATCH_SCORING_H2O_JAR")
    if configured:
        if not os.path.isfile(configured):
            raise ModelError(f"BATCH_SCORING_H2O_JAR names {configured!r}, which does not exist.")
        return configured
    spec = importlib.util.find_spec("h2o")
    if spec is not None and spec.submodule_search_locations:
        for folder in spec.submodule_search_locations:
            jar = os.path.join(folder, "backend", "bin", "h2o.jar")
            if os.path.isfile(jar):
                return jar
    raise ModelError(
        "H2O MOJO models need the genmodel classes: pip install 'airflow-batch-scoring[h2o]' (the h2o package ships "
        "h2o.jar), or set BATCH_SCORING_H2O_JAR to a jar with hex.genmodel (h2o-genmodel.jar)."
    )


def process_mojo(request: ArtifactRequest) -> ModelSpec:
    """Process a MOJO zip: read its columns and classes from ``model.ini``.

    :raises ModelError: when it is not a MOJO zip.
    """
    path = require_local(request.uri, MojoFlavor.artifact_type, "MOJO .zip file")
    if not os.path.isfile(path):
        raise ModelError(f"An H2O MOJO is one .zip file, but {path!r} is a folder. Name the zip itself.")
    ini = read_model_ini(path)
    inputs, response, classes = mojo_schemas(ini)
    path = stage(path, request.target_dir, request.copy)
    info = ini["info"]
    return ModelSpec(
        uri=request.uri,
        path=path,
        flavor=MojoFlavor.name,
        input_schema=schema_json(inputs),
        artifact_type=MojoFlavor.artifact_type,
        source_metadata={
            "algo": info.get("algo"),
            "category": info.get("category"),
            "h2o_version": info.get("h2o_version"),
            "mojo_version": info.get("mojo_version"),
            "uuid": info.get("uuid"),
            "response": response,
            "classes": classes,
        },
    )


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
        super().__init__(input_schema=inputs, output_schema=output_schema, probabilities=probabilities)

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
        return output_table(names, arrays, self.output_schema)
