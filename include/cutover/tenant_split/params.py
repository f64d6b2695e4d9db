"""The trigger-form Params the tenant_split DAGs share (light: imported by DAG files at parse time)."""

from __future__ import annotations

from typing import Any

from airflow.sdk import Param


def source_params() -> dict[str, Any]:
    """Where the shared tables are and how tenants map to databases (every tenant_split DAG)."""
    return {
        "source_database": Param("cutover_source", type="string", minLength=1, title="Source database",
                                 description="The MySQL database holding the shared multi-tenant tables (connection mysql_source)."),
        "mapping": Param("mappings/tenant_split.yaml", type="string", minLength=1, title="Mapping file",
                         description="YAML: what to copy, drop, rename, merge; tenant column per table (path from the project root)."),
        "database_prefix": Param("tenant_", type="string", maxLength=20, title="Database prefix",
                                 description="Each tenant's database is <prefix><tenant id>, mapped to a safe stored name."),
    }


def tenants_param() -> Param:
    """The tenants to work on (empty = all)."""
    return Param([], type="array", items={"type": "string"}, title="Tenants",
                 description="Tenant ids, one per line; empty = every tenant.")
