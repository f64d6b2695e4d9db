"""The consistency DAGs' wiring, shared by ``consistency_checks`` (every 10 minutes, recent window) and
``consistency_sweep`` (nightly, whole pairs): list the registered pairs → one mapped ``check`` per
pair (a difference fails it after recording it, which fires the alert) → the GX gate over the results.

Light to import (Airflow SDK only): DAG files call :func:`consistency_dag` at parse time.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from airflow.sdk import DAG, Param, dag, task

from cutover.dag_defaults import default_args

#: what both consistency DAGs show in the UI below their own heading (their doc_md ends with it)
CHECK_DOC = """
While both sides of a migration live (dual-write, incremental sync, per-tenant routing), this DAG
compares every pair registered in `cutover.sync_pairs` — source vs target, MySQL or PostgreSQL on
either side, tables or queries (e.g. a narrow table vs its wide pivot) — over its **recent window**:
`[run time − settle − recent_window, run time − settle)` on the pair's window column. Segment
checksums are computed inside each database and only differing segments are bisected, down to the
keys: every **missing** (source only), **extra** (target only) and **changed** key is reported.

Each check is recorded in `cutover.consistency_results`; *Plugins → Cutover → Migration status* shows each
pair's last check, lag and differences (view `cutover.consistency_status`), and the GX suite
`consistency_results` validates the run's results into the data docs (*Plugins → Cutover → Data docs*).

**A difference fails the pair's task** (after recording it), which fires the alert: a loud log line
and, when the Airflow connection `cutover_alerts` exists, a JSON POST to its webhook.

**Params** (the trigger form):

| param | meaning |
|---|---|
| `pairs` | pair names to check; empty = every enabled pair |
| `full_sweep` | compare whole pairs instead of their recent window (the nightly `consistency_sweep` does this) |
| `repair` | re-sync the differing keys of pairs registered with `repair` ≠ `none`, then re-check |

**Register a pair** (from the pipeline that keeps it in sync):
`cutover.consistency.registry.register_pair(conn, PairSpec(name=…, source=Endpoint(conn_id, table=…),
target=Endpoint(…), key=("id",), window_column="updated_at", mapping={…}, repair="upsert"))`.

Read-only unless `repair` is set; rerunning is always safe.
"""


def alert(context: dict) -> None:
    """Failure callback of a check: loud log line + `cutover_alerts` webhook (imported lazily)."""
    from cutover.consistency.alerts import consistency_alert

    consistency_alert(context)


def consistency_dag(
    dag_id: str, schedule: str, *, full_sweep: bool, doc_md: str | None, extra_tags: tuple[str, ...] = ()
) -> DAG:
    """Build one consistency DAG; ``full_sweep`` is the default of the trigger form's `full_sweep`."""

    @dag(
        dag_id=dag_id,
        schedule=schedule,
        start_date=datetime(2025, 1, 1, tzinfo=UTC),
        catchup=False,
        max_active_runs=1,
        default_args=default_args(retry_delay=timedelta(seconds=20)),
        doc_md=doc_md,
        tags=["cutover", "consistency", "sync", *extra_tags],
        params={
            "pairs": Param([], type="array", items={"type": "string"}, description="Pair names; empty = all enabled."),
            "full_sweep": Param(full_sweep, type="boolean", description="Compare whole pairs, not their recent window."),
            "repair": Param(False, type="boolean", description="Re-sync differing keys where the pair allows it."),
        },
    )
    def consistency_dag() -> None:
        @task
        def list_pairs(params: dict | None = None) -> list[str]:
            """Names of the registered, enabled pairs to check (the Params' `pairs`, else all)."""
            from cutover.connections import pg_connect
            from cutover.consistency import registry

            with pg_connect() as conn:
                registry.ensure_registry(conn)
                return [p.name for p in registry.list_pairs(conn, (params or {}).get("pairs") or None)]

        @task(on_failure_callback=alert, max_active_tis_per_dagrun=4)
        def check(pair: str, params: dict | None = None, data_interval_end=None, dag_run=None, run_id=None) -> dict:
            """Diff one pair over its window, record it, repair if asked; fail (→ alert) on a difference."""
            from airflow.sdk.exceptions import AirflowFailException

            from cutover.consistency.runner import ConsistencyMismatch, raise_if_different, run_check

            params = params or {}
            as_of = data_interval_end or dag_run.run_after
            outcome = run_check(pair, as_of=as_of, full=bool(params.get("full_sweep")), repair=bool(params.get("repair")),
                                run_id=run_id)
            try:
                return raise_if_different(outcome)
            except ConsistencyMismatch as exc:  # a difference is not transient: no retry, alert now
                raise AirflowFailException(str(exc)) from exc

        @task(trigger_rule="all_done")
        def results_gate(run_id=None) -> dict:
            """Validate this run's latest result per pair with the GX suite `consistency_results` (data docs)."""
            from airflow.sdk.exceptions import AirflowFailException

            from cutover.consistency.runner import results_gate_query
            from cutover.quality import QualityGateFailed, run_gate

            try:
                result = run_gate("consistency_results", query=results_gate_query(run_id),
                                  asset_name="consistency_results_latest", run_id=run_id)
            except QualityGateFailed as exc:  # a failed suite is a finding, not a transient error
                raise AirflowFailException(str(exc)) from exc
            return {"success": result.success, "evaluated": result.evaluated, "docs": result.docs_index}

        check.expand(pair=list_pairs()) >> results_gate()

    return consistency_dag()
