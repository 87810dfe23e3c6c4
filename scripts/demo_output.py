"""The demo's output filter: from the log of ``python dags/example_batch_scoring.py``, only the provider's own lines.

``dag.test()`` prints every framework log line (DAG bundles, serialization, the execution API, XCom pushes with the
whole task instance, MLflow's progress bars). The demo shows only what airflow_batch_scoring itself says (model
resolved, shards planned, replicas, rows scored), errors from anywhere (cut short), and the DAG file's
closing ``Run ... finished`` line; ``scripts/demo`` keeps the whole log in a file beside it.

    python dags/example_batch_scoring.py 2>&1 | python scripts/demo_output.py
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable, Iterator

#: a structlog console line: ``2026-12-05T03:24:31.43Z [info     ] <message> [<logger>] key=value ...``
LOG_LINE = re.compile(r"^\S+Z \[(?P<level>\w+)\s*\] (?P<message>.*?)\s+\[(?P<logger>[\w.]+)\](?: |$)")
#: a standard-library logging line (MLflow's): ``2026/12/05 03:24:02 WARNING mlflow.utils.environment: <message>``
STDLIB_LINE = re.compile(r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d (?P<level>[A-Z]+) (?P<logger>[\w.]+): (?P<message>.*)$")
#: the provider's loggers, directly or as Airflow names them for operators and hooks (airflow.task.operators.<class>)
OWN_LOGGER = re.compile(r"(^|\.)airflow_batch_scoring(\.|$)")
PROBLEMS = {"error", "critical", "exception"}
#: the closing line of the example DAG files (``Run <run_id> finished: <state>; output in <folder>``)
CLOSING = re.compile(r"^Run \S+ finished: ")
MAX_PROBLEM = 300


def summary_lines(lines: Iterable[str]) -> Iterator[str]:
    """The lines worth showing, each stripped of its time stamp, level padding and logger (errors keep a prefix)."""
    for raw in lines:
        line = raw.rstrip("\n")
        match = LOG_LINE.match(line) or STDLIB_LINE.match(line)
        if match is None:
            if CLOSING.match(line):
                yield line
            continue
        level, message, logger = match["level"].lower(), match["message"].strip(), match["logger"]
        if OWN_LOGGER.search(logger) and level not in PROBLEMS:
            yield f"  {message}"
        elif level in PROBLEMS:
            short = message if len(message) <= MAX_PROBLEM else message[:MAX_PROBLEM] + " ..."
            yield f"  {level.upper()} ({logger}): {short}"


def main() -> None:
    for line in summary_lines(sys.stdin):
        print(line, flush=True)


if __name__ == "__main__":
    main()
