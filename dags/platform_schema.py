"""
### platform_schema — the platform's own PostgreSQL tables, with row-level security

The `mysql_to_postgres` hybrid: customer data stays in MySQL (read-only for the platform), and the
platform builds its own tables in PostgreSQL — `message_templates`, `individual_variable_mappings`,
`workflows`, `workflow_runs`, `message_logs`, `daily_statistics`. This DAG creates or migrates
them in `schema` on `conn_id` from the versioned SQL files in `include/cutover/platform/migrations/`
(`NNNN_<name>.sql`, read them there), in order, each in its own transaction with its row in
`<schema>.schema_migrations` (version, name, SHA-256 checksum, applied at). Safe to trigger again:
what is applied is skipped, and concurrent runs on one schema wait for each other (advisory lock).

**Row-level security** (ENABLE + FORCE on every table):

* `service_role` reads and writes every row;
* `app_role` sees and writes only the rows of the request's tenant, taken Supabase-style from the
  JWT claims: `SELECT set_config('request.jwt.claims', '{"tenant_id": "acme"}', true)` per
  transaction (PostgREST does it per request). No tenant set: it sees nothing. `daily_statistics`
  is read-only to it; `workflow_runs` and `message_logs` cannot be deleted by it.

Missing roles are created `NOLOGIN`; existing ones are left exactly as they are (grant them to your
login roles, or `ALTER ROLE … LOGIN`, yourself).

**Params**

| param | meaning |
|---|---|
| `conn_id` | Airflow connection of the PostgreSQL database |
| `schema` | target schema (any name: it is always quoted) |
| `service_role`, `app_role` | the two roles the policies name (a schema keeps the names it was first migrated with) |
| `dry_run` | read only: the task's result lists what would be applied and which roles created |

**Refused** (the run fails at once, without retries, and the log names the file): an applied
migration file that was edited (checksum mismatch: restore it, add a new file instead), an applied
version with no file, a new file numbered below the newest applied one, other role names than the
schema was migrated with.

**Roll back**: the migrations only add. To remove the platform tables, `DROP SCHEMA "<schema>" CASCADE`
(after a backup); the roles are cluster-wide and shared, drop them only when no schema uses them.
"""

from __future__ import annotations

from airflow.sdk import Param, dag, task

from cutover.dag_defaults import default_args
from cutover.platform.config import DEFAULT_APP_ROLE, DEFAULT_CONN_ID, DEFAULT_SCHEMA, DEFAULT_SERVICE_ROLE


def _name_param(default: str, title: str, description: str) -> Param:
    return Param(default, type="string", minLength=1, maxLength=63, title=title, description=description)


@dag(
    dag_id="platform_schema",
    schedule=None,
    catchup=False,
    max_active_runs=1,
    default_args=default_args(),
    doc_md=__doc__,
    tags=["cutover", "mysql_to_postgres", "platform", "prepare"],
    params={
        "conn_id": Param(DEFAULT_CONN_ID, type="string", minLength=1, title="Connection",
                         description="Airflow connection of the PostgreSQL database to migrate."),
        "schema": _name_param(DEFAULT_SCHEMA, "Schema", "Schema the platform tables live in (created if missing)."),
        "service_role": _name_param(DEFAULT_SERVICE_ROLE, "Service role",
                                    "Role that reads and writes every row (created NOLOGIN if missing)."),
        "app_role": _name_param(DEFAULT_APP_ROLE, "Application role",
                                "Role that sees only the request's tenant (created NOLOGIN if missing)."),
        "dry_run": Param(False, type="boolean", title="Dry run",
                         description="Read only: list the migrations that would be applied."),
    },
)
def platform_schema() -> None:
    @task
    def apply_migrations(params: dict | None = None) -> dict:
        """Apply the pending platform migrations (a dry run lists them); refusals fail without retries."""
        from airflow.sdk.exceptions import AirflowFailException

        from cutover.platform.config import PlatformSchemaConfig
        from cutover.platform.schema import PlatformSchemaError, apply_platform_schema

        try:
            cfg = PlatformSchemaConfig.from_params(params or {})
            return dict(apply_platform_schema(cfg.conn_id, cfg.schema, cfg.service_role, cfg.app_role, cfg.dry_run))
        except (PlatformSchemaError, ValueError) as exc:
            if getattr(exc, "transient", False):  # lost connection, timeout, deadlock: retry
                raise
            raise AirflowFailException(str(exc)) from exc  # the same on every try: fail now

    apply_migrations()


platform_schema()
