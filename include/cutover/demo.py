"""``make demo``: seed sample data and run every pipeline end to end on the embedded defaults.

Each pipeline contributes a :class:`DemoStep`: a function that seeds its sample data and returns the
run configuration (the same Params a user fills in the trigger form), and the DAG id. The DAGs run
for real through ``dag.test()`` against the Airflow metadata DB in ``$AIRFLOW_HOME`` (default
``.data/airflow``, the SQLite database ``airflow standalone`` uses), so their runs show up in the UI
afterwards (``make airflow``).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cutover.connections import DATA_DIR, PROJECT_ROOT

log = logging.getLogger(__name__)

DEMO_SCHEMA = "cutover_demo"


@dataclass(frozen=True)
class DemoStep:
    """One pipeline of the demo: what to seed, which DAG to run with which conf."""

    dag_id: str
    seed: Callable[[float], dict[str, Any]]
    description: str


def _seed_validate(scale: float) -> dict[str, Any]:
    """A small keyed table for the on-demand quality gate."""
    from cutover import connections

    rows = max(100, int(1000 * scale))
    with connections.pg_connect() as conn:
        conn.execute(f"CREATE SCHEMA IF NOT EXISTS {DEMO_SCHEMA}")
        conn.execute(f"DROP TABLE IF EXISTS {DEMO_SCHEMA}.customers")
        conn.execute(f"CREATE TABLE {DEMO_SCHEMA}.customers (id bigint PRIMARY KEY, name text NOT NULL)")
        conn.execute(
            f"INSERT INTO {DEMO_SCHEMA}.customers SELECT g, 'customer ' || g FROM generate_series(1, %s) g", (rows,)
        )
    return {"conn_id": "postgres_target", "schema": DEMO_SCHEMA, "table": "customers", "suite": "cutover_keyed_table"}


def demo_steps() -> list[DemoStep]:
    """The demo's steps, in order; pipelines register theirs here."""
    steps = [DemoStep("cutover_validate", _seed_validate, "quality gate on a sample table")]
    from cutover.consistency.demo import demo_step as cc_step
    from cutover.ship_wide.demo import demo_cutover_step
    from cutover.ship_wide.demo import demo_step as ship_step

    steps.append(DemoStep("ship_wide_build", ship_step, "narrow time series -> per-ship wide tables"))
    steps.append(DemoStep("ship_wide_cutover", demo_cutover_step,
                          "readers of verified ships -> wide tables (approval off for the demo)"))
    steps.append(DemoStep("consistency_checks", cc_step, "source vs target diff of a registered pair"))
    return steps


def prepare_airflow() -> None:
    """Point Airflow at this project and migrate its metadata DB (idempotent)."""
    os.environ.setdefault("AIRFLOW_HOME", str(DATA_DIR / "airflow"))
    os.environ.setdefault("AIRFLOW__CORE__DAGS_FOLDER", str(PROJECT_ROOT / "dags"))
    os.environ.setdefault("AIRFLOW__CORE__PLUGINS_FOLDER", str(PROJECT_ROOT / "plugins"))
    os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    from airflow.utils import db

    db.initdb()


def run_demo(*, scale: float = 1.0, only: list[str] | None = None) -> int:
    """Seed and run every demo step; print a summary and where the data docs are. Returns an exit code."""
    from cutover import connections, control
    from cutover.quality.gate import docs_dir

    started = time.monotonic()
    connections.apply_default_env()
    with connections.pg_connect() as conn:
        control.ensure_schema(conn)
    prepare_airflow()
    from airflow.dag_processing.dagbag import DagBag

    dags_dir = PROJECT_ROOT / "dags"
    bag = DagBag(dag_folder=str(dags_dir), bundle_path=dags_dir)
    if bag.import_errors:
        for path, err in bag.import_errors.items():
            log.error("DAG import error in %s: %s", path, err)
        return 1
    results: list[tuple[str, str, float, str]] = []
    for step in demo_steps():
        if only and step.dag_id not in only:
            continue
        t0 = time.monotonic()
        log.info("demo: seeding %s (%s)", step.dag_id, step.description)
        conf = step.seed(scale)
        dag = bag.get_dag(step.dag_id)
        if dag is None:
            log.error("demo: DAG %s not found", step.dag_id)
            results.append((step.dag_id, "missing", 0.0, step.description))
            continue
        log.info("demo: running %s with %s", step.dag_id, conf)
        dr = dag.test(run_conf=conf)
        results.append((step.dag_id, str(dr.state), time.monotonic() - t0, step.description))
    wall = time.monotonic() - started
    print("\n=== Cutover demo ===")
    for dag_id, state, secs, what in results:
        print(f"  {dag_id:<24} {state:<10} {secs:7.1f} s   {what}")
    print(f"  {'total wall time':<24} {'':<10} {wall:7.1f} s")
    print(f"\nData docs: {docs_dir() / 'index.html'}")
    print("Airflow UI: run `make airflow`, open http://localhost:8080 -> Plugins -> Cutover -> Data docs / Migration status")
    if any(dag_id == "ship_wide_cutover" for dag_id, *_ in results):
        print("\nship_wide_cutover ran with require_approval off (no human in the demo); a real cutover asks for "
              "an approval under Required Actions.")
    return 0 if results and all(state == "success" for _, state, *_ in results) else 1
