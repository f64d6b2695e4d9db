"""The trigger-form Params the mysql_to_postgres DAGs share (light: imported by DAG files at parse time)."""

from __future__ import annotations

from typing import Any

from airflow.sdk import Param


def source_params() -> dict[str, Any]:
    """Where from and where to (every mysql_to_postgres DAG)."""
    return {
        "source_conn_id": Param("mysql_readonly", type="string", minLength=1, title="Source connection",
                                description="A MySQL connection whose user is read-only (proven at the start of each run)."),
        "source_database": Param("cutover_m2p", type="string", minLength=1, title="Source database",
                                 description="The MySQL database whose tables are copied."),
        "target_conn_id": Param("postgres_target", type="string", minLength=1, title="Target connection",
                                description="The PostgreSQL connection the tables are copied into."),
        "target_schema": Param("mysql_mirror", type="string", minLength=1, maxLength=63, title="Target schema",
                               description="The PostgreSQL schema that receives the tables (created if missing)."),
    }


def tables_params() -> dict[str, Any]:
    """Which tables."""
    return {
        "tables": Param([], type="array", items={"type": "string"}, title="Tables",
                        description="Exact MySQL table names, one per line; empty = every table matching the pattern."),
        "table_pattern": Param("*", type="string", title="Table pattern",
                               description="Shell-style pattern (fnmatch, case-sensitive) used when Tables is empty."),
    }


def reverse_params() -> dict[str, Any]:
    """Reverse replication after a table's switch (PostgreSQL → MySQL) and stray writes to MySQL."""
    return {
        "reverse_conn_id": Param("mysql_reverse", type="string", minLength=1, title="Reverse connection",
                                 description="A MySQL connection that may write the source tables: reverse replication "
                                             "applies PostgreSQL's writes through it after a table's switch."),
        "forward_stray_writes": Param(False, type="boolean", title="Forward stray writes",
                                      description="Writes that still reach MySQL after a table's switch are always "
                                                  "recorded; on: also applied to PostgreSQL."),
    }
