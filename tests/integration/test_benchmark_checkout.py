"""The second checkout of the benchmark's before/after mode (``bench_scoring.py --compare-with REV_OR_PATH``):
a revision is exported read-only, and the processes of that side import the export, not this checkout."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from harness import checkout

ROOT = Path(__file__).resolve().parents[2]


def test_compare_with_a_revision_exports_it_read_only_and_imports_that_export(tmp_path, monkeypatch):
    monkeypatch.setattr(checkout, "DATA", tmp_path)
    monkeypatch.chdir(ROOT)  # the CLI runs as `python -c`, which puts the working directory (this checkout) first
    status = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True).stdout
    side = checkout.other_checkout("HEAD", "before")
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    assert side.root == tmp_path / "compare" / head[:12] and side.revision == head[:12]
    assert (side.root / "airflow_batch_scoring" / "__init__.py").is_file()
    assert side.verify() == (side.root / "airflow_batch_scoring").resolve()  # not this checkout's package
    assert side.cli()[:2] == [sys.executable, "-c"] and "airflow_batch_scoring.cli" in side.cli()[2]
    assert subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True).stdout == status
    assert checkout.this_checkout().verify() == (ROOT / "airflow_batch_scoring").resolve()


def test_compare_with_something_that_is_neither_a_revision_nor_a_checkout_says_what_to_give(tmp_path):
    with pytest.raises(SystemExit, match=r"neither a directory holding airflow_batch_scoring/.*git log --oneline"):
        checkout.other_checkout(str(tmp_path / "no-such-revision"))
