"""
### mysql_to_postgres_sync — keep the copied tables fresh from MySQL

Every minute (trigger by hand too), for every table `mysql_to_postgres_build` has finalized:

* **binlog** mode — change data capture from MySQL's binary log from each table's stored position:
  inserts, updates **and deletes**; the changed keys' rows are read again through the copy's own
  type mapping and upserted, vanished keys deleted, each group of transactions committed with the new
  positions (a killed run resumes exactly; applying twice changes nothing). Needs ROW images
  (`log_bin`, `binlog_format=ROW`, `binlog_row_image=FULL`) and REPLICATION SLAVE / CLIENT for the user.
* **watermark** mode (no binary log) — rows whose `watermark_column` moved since the last run.
  **Deletes are not seen**, nor updates that leave that column unchanged.

**reverse** — for every table switched to PostgreSQL whose reverse stream runs, the rows PostgreSQL's
writers changed (captured by triggers) are applied back to MySQL through `reverse_conn_id`, exactly once,
with the stream's lag on the status page; writes that still reach MySQL after the switch (stray writes) are
recorded with their keys, and with `forward_stray_writes` applied to PostgreSQL too.

`consistency_checks` compares every table pair the build registered.

**Params**: the source / target Params, the reverse Params, `max_seconds` (stop a long catch-up and
continue next run).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from airflow.sdk import Param, dag, task

from cutover.dag_defaults import default_args
from cutover.mysql_to_postgres.params import reverse_params, source_params


@dag(
    dag_id="mysql_to_postgres_sync",
    schedule="* * * * *",
    start_date=datetime(2024, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    default_args=default_args(retry_delay=timedelta(seconds=5), max_retry_delay=timedelta(minutes=1)),
    doc_md=__doc__,
    tags=["cutover", "mysql_to_postgres", "sync"],
    params={
        **source_params(),
        **reverse_params(),
        "max_seconds": Param(600, type="integer", minimum=10, title="Max seconds",
                             description="Stop after this long; the next run continues from the stored positions."),
    },
)
def mysql_to_postgres_sync() -> None:
    @task
    def refresh(params: dict | None = None) -> dict:
        """Apply every built table's changes since its stored position (or watermark)."""
        from cutover.mysql_to_postgres.config import MysqlToPostgresConfig
        from cutover.mysql_to_postgres.sync import sync_units

        p = dict(params or {})
        return sync_units(MysqlToPostgresConfig.from_params(p), max_seconds=float(p.get("max_seconds") or 600))

    @task
    def reverse(params: dict | None = None) -> dict:
        """Apply PostgreSQL's writes of switched tables to MySQL; record stray writes to MySQL."""
        from cutover.mysql_to_postgres import reverse as rev
        from cutover.mysql_to_postgres.config import MysqlToPostgresConfig

        p = dict(params or {})
        return rev.run(MysqlToPostgresConfig.from_params(p), max_seconds=float(p.get("max_seconds") or 600))

    refresh()
    reverse()


mysql_to_postgres_sync()
