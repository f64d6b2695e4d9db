"""``make demo``: seed sample data and run every pipeline end to end on the embedded defaults.

Each pipeline contributes a :class:`DemoStep`: a function that seeds its sample data and returns the
run configuration (the same Params a user fills in the trigger form), and the DAG id. The DAGs run
for real through ``dag.test()`` against the Airflow metadata database of ``make airflow`` (database
``airflow`` in the embedded PostgreSQL, :mod:`cutover.airflow_metadata`; ``AIRFLOW__DATABASE__SQL_ALCHEMY_CONN``
wins), so their runs show up in its UI afterwards.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
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
    from cutover.tenant_split import demo as ts

    steps.append(DemoStep("tenant_split_build", ts.demo_step, "shared MySQL tables -> one database per tenant"))
    steps.append(DemoStep("tenant_split_sync", ts.demo_sync_step, "binlog catch-up of changes made after the build"))
    steps.append(DemoStep("tenant_split_cutover", ts.demo_cutover_step,
                          "tenants 1 and 2 -> their own databases, after a write pause (approval off for the demo)"))
    from cutover.mysql_to_postgres import demo as m2p

    steps.append(DemoStep("mysql_to_postgres_build", m2p.demo_step,
                          "MySQL (read-only user) -> PostgreSQL, every type mapped, 2 rows -> dead letters"))
    steps.append(DemoStep("mysql_to_postgres_sync", m2p.demo_sync_step, "binlog refresh: inserts, updates, deletes"))
    steps.append(DemoStep("mysql_to_postgres_cutover", m2p.demo_cutover_step,
                          "readers of orders and events_log -> PostgreSQL (approval off for the demo)"))
    steps.append(DemoStep("platform_schema", m2p.demo_platform_step, "platform tables + row-level security"))
    steps.append(DemoStep("consistency_checks", cc_step, "source vs target diff of a registered pair"))
    return steps


def prepare_airflow() -> None:
    """Point Airflow at this project and at ``make airflow``'s metadata database (the embedded
    PostgreSQL's ``airflow``, created when missing, unless one is configured) and migrate it (idempotent)."""
    os.environ.setdefault("AIRFLOW_HOME", str(DATA_DIR / "airflow"))
    os.environ.setdefault("AIRFLOW__CORE__DAGS_FOLDER", str(PROJECT_ROOT / "dags"))
    os.environ.setdefault("AIRFLOW__CORE__PLUGINS_FOLDER", str(PROJECT_ROOT / "plugins"))
    os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    if not os.environ.get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"):
        from cutover.airflow_metadata import LOCAL_DATABASE, metadata_url

        # the metadata database of `make airflow`, so the demo's runs show in its UI
        os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = metadata_url(LOCAL_DATABASE)
    from airflow.utils import db

    db.initdb()


#: where ``make demo`` writes the full output of its runs (Airflow's and the tasks' logs)
DEMO_LOG = DATA_DIR / "demo.log"


@contextlib.contextmanager
def output_to(path: Path) -> Iterator[None]:
    """Send everything written to stdout / stderr to ``path`` while the block runs, at the file
    descriptor level (1 and 2): ``print``, logging handlers and Airflow's structlog, which keeps the
    stream objects it was configured with, all write there. The stream objects themselves are never
    swapped (a logger holding a swapped-in file would write to it after it is closed). The terminal
    keeps only what is printed outside the block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(path, "a", encoding="utf-8") as fh:
        os.dup2(fh.fileno(), 1)
        os.dup2(fh.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def _duration(ti: Any) -> float:
    if ti.start_date and ti.end_date:
        return float((ti.end_date - ti.start_date).total_seconds())
    return 0.0


def stage_lines(dr: Any) -> list[str]:
    """One line per stage (task) of a DAG run: state, mapped count, seconds; with the run's unit counts
    (source rows read, target rows written, rows/s) from the control schema where it has units."""
    from cutover import connections, control

    by_task: dict[str, list[Any]] = {}
    for ti in dr.get_task_instances():
        by_task.setdefault(ti.task_id, []).append(ti)
    units: dict[str, Any] = {}
    try:
        with connections.pg_connect() as conn:
            control.ensure_schema(conn)
            row = conn.execute(
                f"""SELECT count(*), coalesce(sum(rows_read), 0), coalesce(sum(rows_written), 0),
                           string_agg(DISTINCT state, ', ') FROM {control.SCHEMA}.units WHERE run_id = %s""",
                (dr.run_id,)).fetchone()
            if row and row[0]:
                units = {"n": int(row[0]), "read": int(row[1]), "written": int(row[2]), "states": row[3]}
    except Exception as exc:  # noqa: BLE001 - the summary still prints
        units = {"error": str(exc)}
    import datetime as dt

    far = dt.datetime.max.replace(tzinfo=dt.UTC)
    lines = []
    for task_id, tis in sorted(by_task.items(), key=lambda kv: min(ti.start_date or far for ti in kv[1])):
        states = sorted({str(ti.state) for ti in tis})
        secs = sum(_duration(ti) for ti in tis)
        mapped = f" ×{len(tis)}" if len(tis) > 1 or tis[0].map_index >= 0 else ""
        extra = ""
        if task_id.endswith("copy") and units.get("n") and secs > 0:
            extra = (f"  {units['read']:,} source rows read, {units['written']:,} target rows written "
                     f"({units['read'] / secs:,.0f} rows/s)")
        lines.append(f"      {task_id + mapped:<26} {'/'.join(states):<10} {secs:6.1f} s{extra}")
    if units.get("n"):
        lines.append(f"      {'units':<26} {units['states']:<10} {units['n']} unit(s)")
    return lines


def run_demo(*, scale: float = 1.0, only: list[str] | None = None) -> int:
    """Seed and run every demo step; print one line per run and per stage, where the full log and the
    data docs are. Returns an exit code."""
    from cutover import connections, control
    from cutover.quality.gate import docs_dir

    started = time.monotonic()
    DEMO_LOG.parent.mkdir(parents=True, exist_ok=True)
    DEMO_LOG.write_text("")
    print(f"=== Cutover demo (the full output of every run goes to {DEMO_LOG}) ===", flush=True)
    with output_to(DEMO_LOG):
        connections.apply_default_env()
        with connections.pg_connect() as conn:
            control.ensure_schema(conn)
        prepare_airflow()
        from cutover.consistency.demo import remove_legacy_table

        if remove_legacy_table():
            log.info("demo: dropped cutover_source.demo_accounts, left in tenant_split's source by an older demo")
        from airflow.dag_processing.dagbag import DagBag

        dags_dir = PROJECT_ROOT / "dags"
        bag = DagBag(dag_folder=str(dags_dir), bundle_path=dags_dir)
    if bag.import_errors:
        for path, err in bag.import_errors.items():
            print(f"DAG import error in {path}: {err}")
        return 1
    results: list[tuple[str, str, float, str]] = []
    for step in demo_steps():
        if only and step.dag_id not in only:
            continue
        t0 = time.monotonic()
        dag = bag.get_dag(step.dag_id)
        if dag is None:
            log.error("demo: DAG %s not found", step.dag_id)
            results.append((step.dag_id, "missing", 0.0, step.description))
            continue
        with output_to(DEMO_LOG):
            log.info("demo: seeding %s (%s)", step.dag_id, step.description)
            conf = step.seed(scale)
            log.info("demo: running %s with %s", step.dag_id, conf)
            dr = dag.test(run_conf=conf)
        results.append((step.dag_id, str(dr.state), time.monotonic() - t0, step.description))
        print(f"  {step.dag_id:<28} {str(dr.state):<10} {time.monotonic() - t0:6.1f} s   {step.description}", flush=True)
        for line in stage_lines(dr):
            print(line, flush=True)
    wall = time.monotonic() - started
    print(f"  {'total wall time':<28} {'':<10} {wall:6.1f} s")
    print(f"\nFull log of the runs: {DEMO_LOG} (the demo runs in this process, so the Airflow UI has no task "
          "log files for them; runs you trigger from the UI have their logs there)")
    print(f"Data docs: {docs_dir() / 'index.html'}")
    print("Airflow UI: run `make airflow`, open http://localhost:8080 -> Plugins -> Cutover -> Data docs / Migration status")
    cut = [dag_id for dag_id, *_ in results if dag_id.endswith("_cutover")]
    if cut:
        print(f"\n{' and '.join(cut)} ran with the approval policy off for the demo's own process "
              "(CUTOVER_REQUIRE_APPROVAL_<PIPELINE>=off: no human in the demo); a deployment keeps the policy on "
              "(the default) and approves under Required Actions.")
    return 0 if results and all(state == "success" for _, state, *_ in results) else 1
