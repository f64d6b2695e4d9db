"""
### Validate a table against a Great Expectations suite (the Cutover quality gate, on demand)

Runs the same quality gate every Cutover migration passes before its cutover, on any table you
name: **validate → publish**. Only an all-success validation reaches `publish`, which records the
approval in the run's evidence bundle (control schema `cutover.runs`); a failed suite fails the run
and `publish` is never executed.

**Params** (the trigger form):

| param | meaning |
|---|---|
| `conn_id` | Airflow connection of the database (`postgres_target`, `postgres_source`, `mysql_source`, `mysql_target`) |
| `schema` | schema (PostgreSQL) or database (MySQL) of the table |
| `table` | the table to validate |
| `suite` | a suite from `great_expectations/expectations/` (e.g. `table_not_empty`, `cutover_keyed_table`) |

**Read the result**: every run rebuilds the GX data docs; open *Plugins → Cutover → Data docs* in the Airflow
menu (or `great_expectations/uncommitted/data_docs/local_site/index.html`). *Plugins → Cutover → Migration
status* lists the latest gate results.

Nothing is written to the validated table; rerunning is always safe.
"""

from __future__ import annotations

from airflow.sdk import Param, dag, task

from cutover.dag_defaults import default_args
from cutover.quality.task import quality_gate


@dag(
    dag_id="cutover_validate",
    schedule=None,
    catchup=False,
    max_active_runs=1,
    default_args=default_args(),
    doc_md=__doc__,
    tags=["cutover", "quality", "verify"],
    params={
        "conn_id": Param(
            "postgres_target",
            type="string",
            enum=["postgres_target", "postgres_source", "mysql_source", "mysql_target"],
            description="Airflow connection of the database holding the table.",
        ),
        "schema": Param("public", type="string", minLength=1, description="Schema (PostgreSQL) or database (MySQL)."),
        "table": Param("table_name", type="string", minLength=1, description="Table to validate."),
        "suite": Param("table_not_empty", type="string", minLength=1, description="GX suite name."),
    },
)
def cutover_validate() -> None:
    @task
    def publish(gate: dict, run_id: str | None = None) -> None:
        """Record the passed gate in the run's evidence bundle (only reached when validation passed)."""
        from cutover import control
        from cutover.connections import pg_connect

        assert run_id is not None
        with pg_connect() as conn:
            control.ensure_schema(conn)
            control.start_run(conn, run_id, "cutover_validate", gate, kind="validate", dag_id="cutover_validate")
            control.finish_run(conn, run_id, "success", {"quality_gate": gate, "published": True})

    gate = quality_gate.override(task_id="validate")(
        suite="{{ params.suite }}",
        conn_id="{{ params.conn_id }}",
        schema="{{ params.schema }}",
        table="{{ params.table }}",
    )
    publish(gate)


cutover_validate()
