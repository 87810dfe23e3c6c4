"""The benchmark harness: what every benchmark script here shares.

- :mod:`harness.data` - the data set (CSV, id + 20 features) and the paths;
- :mod:`harness.models` - the two scikit-learn models;
- :mod:`harness.measure` - one process tree measured from outside (wall, CPU, per-process peak RSS from ``/proc``);
- :mod:`harness.noise` - noise control on a shared machine (wait for quiet, redo disturbed runs);
- :mod:`harness.rounds` - interleaved rounds of many configurations, re-measuring disturbed ones;
- :mod:`harness.checkout` - the code measured (git state) and a second checkout for before/after comparisons;
- :mod:`harness.summary` - medians of the least disturbed runs, targets, before/after verdicts;
- :mod:`harness.report` - Markdown tables and ``results/`` files.

The workloads themselves (naive pipeline, limits, engine CLI) are in ``benchmarks/workloads.py``. Nothing here imports
more than the standard library at module level, so a measured child process starts as light as before.
"""
