"""A ship_wide build that a test kills with ``kill -9`` in the middle of its copy (run as a subprocess).

``python -m tests.integration.killable RUN_ID SCHEMA`` plans the run, prepares its ships and starts
the copy in 50-row chunks; after the first committed chunk it prints ``COPYING`` and sleeps, so the
test can SIGKILL it while a unit is ``copying`` — exactly what a task process killed by the kernel
leaves behind (no except, no finally, no atexit runs). The parent passes its environment (the tests'
own database and connections, ``AIRFLOW_CONN_*``).
"""

from __future__ import annotations

import dataclasses
import sys
import time
from typing import Any


def _spec() -> Any:
    from cutover.lifecycle.model import PlannedUnit
    from cutover.lifecycle.spec import CopyResult
    from cutover.ship_wide import ShipWideConfig
    from cutover.ship_wide.copy import copy_history
    from cutover.ship_wide.spec import SPEC

    def copy(cfg: Any, unit: PlannedUnit, ctx: Any) -> Any:
        def stall(stage: str, chunk: int) -> None:
            if stage == "committed":
                print("COPYING", flush=True)
                time.sleep(600)

        out = copy_history(cfg, unit.key.parts[0], run_id=ctx.run_id, rows_total=unit.rows, on_chunk=ctx.chunk_done,
                           hook=stall)
        return CopyResult(out["rows_done"], out["rows_written"], out)

    return dataclasses.replace(
        SPEC, copy=copy,
        config=lambda p: dataclasses.replace(ShipWideConfig.from_params(p), chunk_rows=50))


def params(schema: str) -> dict[str, Any]:
    """The run's Params (client pivot, one connection: one chunk at a time)."""
    return {"schema": schema, "chunk_rows": 1000, "units": [], "pivot": "client", "copy_connections": 1}


def main(run_id: str, schema: str) -> None:
    """Plan, prepare, then copy until killed."""
    from cutover.lifecycle.stages import plan, run_unit_stage

    spec = _spec()
    p = params(schema)
    batches = plan(spec, p, run_id, max_batches=1, dag_id="ship_wide_build")
    run_unit_stage(spec, "prepare", p, batches[0], run_id)
    run_unit_stage(spec, "copy", p, batches[0], run_id)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
