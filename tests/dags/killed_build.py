"""``python -m tests.dags.killed_build SCHEMA``: ``ship_wide_build`` through ``dag.test()`` whose copy
stalls after its first committed chunk (prints ``COPYING <run id>``), for a test to ``kill -9`` it there:
the DAG run stays ``running`` in Airflow's metadata and the run ``running`` in the control schema, a
ship ``copying``. The parent passes its environment (the tests' AIRFLOW_HOME, database, connections)."""

from __future__ import annotations

import sys
import time
from typing import Any


def main(schema: str) -> None:
    """Run the build until killed."""
    from cutover.ship_wide import copy as sw_copy
    from tests.dags.conftest import load_dag

    real = sw_copy.copy_history

    def stalled(*args: Any, **kw: Any) -> Any:
        def hook(stage: str, chunk: int) -> None:
            if stage == "committed":
                print(f"COPYING {kw.get('run_id')}", flush=True)
                time.sleep(600)

        return real(*args, **{**kw, "hook": hook})

    sw_copy.copy_history = stalled
    load_dag("ship_wide_build").test(run_conf={"units": [], "schema": schema, "chunk_rows": 1000, "pivot": "client",
                                               "copy_connections": 1, "dry_run": False})


if __name__ == "__main__":
    main(sys.argv[1])
