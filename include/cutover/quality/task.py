"""The quality gate as a reusable Airflow task.

Use it in any DAG (importing this module is cheap: GX loads only when the task runs)::

    from cutover.quality.task import quality_gate

    gate = quality_gate.override(task_id="gate_orders")(
        suite="cutover_keyed_table", conn_id="postgres_target", schema="sales", table="orders"
    )
    gate >> cutover_task          # cutover runs only when the suite passed

A failed suite raises ``AirflowFailException`` (no retry: the data is wrong, retrying cannot help),
so every downstream task ends ``upstream_failed``; connection errors still retry. The result is
recorded in ``cutover.quality_results`` and the data docs are rebuilt either way.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import task


@task
def quality_gate(
    suite: str,
    conn_id: str = "postgres_target",
    schema: str | None = None,
    table: str | None = None,
    query: str | None = None,
    expectations: list[dict[str, Any]] | None = None,
    asset_name: str | None = None,
    run_id: str | None = None,
) -> dict[str, Any]:
    """Validate a table or query against a GX suite; fail the task (and block cutover) when it fails."""
    from airflow.sdk.exceptions import AirflowFailException

    from cutover.quality.gate import QualityGateFailed, run_gate

    try:
        result = run_gate(
            suite, conn_id=conn_id, schema=schema, table=table, query=query, expectations=expectations,
            asset_name=asset_name, run_id=run_id,
        )
    except QualityGateFailed as exc:
        raise AirflowFailException(str(exc)) from exc
    return {
        "suite": result.suite,
        "asset": result.asset,
        "evaluated": result.evaluated,
        "failed": result.failed,
        "docs": result.docs_index,
        "result_id": result.result_id,
    }
