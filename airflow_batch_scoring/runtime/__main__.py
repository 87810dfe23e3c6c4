"""``python -m airflow_batch_scoring.runtime``: the runtime's command line (the pod entrypoint)."""

import os
import sys

from airflow_batch_scoring.runtime.cli import main

if __name__ == "__main__":
    code = main()
    # The shard's output and report are closed by now. Skip the interpreter's teardown: native thread pools (OpenMP,
    # Arrow) torn down at exit were seen to abort the process ("terminate called without an active exception")
    # after a successful shard, turning it into a failed replica.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
