"""``batch-scoring`` for shell users and CI: a job on object storage with credentials from a file, and the manifest
inspected as JSON, one field, or a summary."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.support.helpers import Models, make_frame, read_output, write_frame
from tests.support.scoring import check_predictions
from tests.support.servers import S3_KEY, S3_SECRET

BIN = Path(sys.executable).parent / "batch-scoring"


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN), *args], capture_output=True, text=True)


def test_score_on_s3_with_a_storage_options_file_then_inspect_the_manifest(seaweedfs, models: Models,
                                                                          tmp_path: Path):
    import boto3
    import fsspec

    boto3.client("s3", endpoint_url=seaweedfs.endpoint, aws_access_key_id=S3_KEY, aws_secret_access_key=S3_SECRET,
                 region_name="us-east-1").create_bucket(Bucket="cli-scoring")
    options = {"key": S3_KEY, "secret": S3_SECRET, "endpoint_url": seaweedfs.endpoint}
    fs = fsspec.filesystem("s3", **options)
    frame = make_frame(777, seed=51)
    write_frame(frame, tmp_path / "in.csv", "csv")
    fs.put(str(tmp_path / "in.csv"), "cli-scoring/in/part-0.csv")
    options_file = tmp_path / "options.json"
    options_file.write_text(json.dumps({"source": options, "sink": options}))
    options_file.chmod(0o600)

    scored = run("score", "--model", str(models.classifier_path), "--source", "s3://cli-scoring/in/",
                 "--sink", "s3://cli-scoring/out/", "--columns", "id,f0,f1,f2,f3,f4", "--passthrough", "id",
                 "--replicas", "2", "--sink-format", "parquet", "--storage-options", str(options_file))
    assert scored.returncode == 0, scored.stderr[-3000:]
    assert S3_SECRET not in scored.stdout + scored.stderr
    assert json.loads(scored.stdout)["rows_out"] == 777
    fs.get("cli-scoring/out/", str(tmp_path / "out"), recursive=True)
    check_predictions(frame, read_output(tmp_path / "out", "parquet", []), models.classifier)

    field = run("manifest", "s3://cli-scoring/out/", "--storage-options", str(options_file), "--field",
                "totals.rows_out")
    assert (field.returncode, field.stdout.strip()) == (0, "777")
    version = run("manifest", "s3://cli-scoring/out/", "--storage-options", str(options_file), "--field",
                  "output.uri")
    assert version.stdout.strip() == "s3://cli-scoring/out/"
    text = run("manifest", "s3://cli-scoring/out/", "--storage-options", str(options_file), "--summary").stdout
    assert "777 in, 777 out" in text and str(models.classifier_path) in text and "2 file(s)" not in text
    assert "input     s3://cli-scoring/in/ (csv, 1 file(s)" in text

    missing = run("manifest", "s3://cli-scoring/out/", "--storage-options", str(options_file), "--field",
                  "totals.nope")
    assert missing.returncode == 2 and "rows_in" in missing.stderr and "'nope'" in missing.stderr
    unreadable = run("manifest", "s3://cli-scoring/out/", "--storage-options", str(tmp_path / "none.json"))
    assert unreadable.returncode == 2 and "storage options file" in unreadable.stderr
