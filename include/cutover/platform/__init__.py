"""The platform's own tables in PostgreSQL, with row-level security (the ``mysql_to_postgres`` hybrid).

The platform keeps its customer data in MySQL, read-only for it, and builds its own tables in
PostgreSQL (a Supabase-style setup). This package ships them as versioned, reviewable SQL files
(``migrations/NNNN_<name>.sql``) and applies them idempotently into a schema of your choice:

* :mod:`cutover.platform.config` — defaults, role names, the tenant setting, the run's config (light:
  the DAG file imports it at parse time);
* :mod:`cutover.platform.schema` — :func:`~cutover.platform.schema.apply_platform_schema` and the
  migration runner (imports the driver);
* ``python -m cutover.platform [--schema S] [--dry-run] …`` — the same without Airflow; the
  ``platform_schema`` DAG is its Airflow form.
"""

from cutover.platform.config import (
    DEFAULT_APP_ROLE,
    DEFAULT_CONN_ID,
    DEFAULT_SCHEMA,
    DEFAULT_SERVICE_ROLE,
    PLATFORM_TABLES,
    TENANT_CLAIM,
    TENANT_SETTING,
    PlatformSchemaConfig,
)

__all__ = [
    "DEFAULT_APP_ROLE",
    "DEFAULT_CONN_ID",
    "DEFAULT_SCHEMA",
    "DEFAULT_SERVICE_ROLE",
    "PLATFORM_TABLES",
    "TENANT_CLAIM",
    "TENANT_SETTING",
    "PlatformSchemaConfig",
]
