"""The registry of pairs kept in sync: ``cutover.sync_pairs``, and the status view over the results.

Every pipeline that puts a pair in sync (dual-write, incremental sync, per-tenant routing) calls
:func:`register_pair` with its key, compared columns, window column and column mapping; the
``consistency_checks`` DAG checks every enabled pair. ``cutover.consistency_status`` is one row per
registered pair with its last check, the sync lag measured then, and the differences found — the
query the UI's status page reads.

Like :mod:`cutover.control`, functions take an open psycopg connection and never commit.
"""

from __future__ import annotations

from typing import Any

from psycopg import Connection
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from cutover import control
from cutover.consistency.spec import Endpoint, PairSpec

SCHEMA = control.SCHEMA


STATUS_QUERY = f"SELECT * FROM {SCHEMA}.consistency_status ORDER BY (last_status = 'different') DESC, pair_name"


def ensure_registry(conn: Connection[Any]) -> None:
    """Create the control schema with ``sync_pairs`` and the status view if missing (idempotent)."""
    control.ensure_schema(conn)


def register_pair(conn: Connection[Any], spec: PairSpec, *, pipeline: str | None = None) -> None:
    """Add or update a pair (idempotent: registering the same pair twice changes nothing but updated_at)."""
    conn.execute(
        f"""INSERT INTO {SCHEMA}.sync_pairs (name, pipeline, source_conn, source_table, source_query, target_conn,
                target_table, target_query, key_columns, columns, mapping, kinds, window_column, recent_window_s,
                settle_s, repair, enabled, description)
            VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
            ON CONFLICT (name) DO UPDATE SET pipeline = EXCLUDED.pipeline, source_conn = EXCLUDED.source_conn,
                source_table = EXCLUDED.source_table, source_query = EXCLUDED.source_query,
                target_conn = EXCLUDED.target_conn, target_table = EXCLUDED.target_table,
                target_query = EXCLUDED.target_query, key_columns = EXCLUDED.key_columns,
                columns = EXCLUDED.columns, mapping = EXCLUDED.mapping, kinds = EXCLUDED.kinds,
                window_column = EXCLUDED.window_column, recent_window_s = EXCLUDED.recent_window_s,
                settle_s = EXCLUDED.settle_s, repair = EXCLUDED.repair, enabled = EXCLUDED.enabled,
                description = EXCLUDED.description, updated_at = now()""",
        (
            spec.name, pipeline, spec.source.conn_id, spec.source.table, spec.source.query, spec.target.conn_id,
            spec.target.table, spec.target.query, list(spec.key), list(spec.columns), Jsonb(spec.mapping),
            Jsonb(spec.kinds), spec.window_column, spec.recent_window_s, spec.settle_s, spec.repair, spec.enabled,
            spec.description,
        ),
    )


def _spec(row: dict[str, Any]) -> PairSpec:
    return PairSpec(
        name=row["name"],
        source=Endpoint(row["source_conn"], table=row["source_table"], query=row["source_query"]),
        target=Endpoint(row["target_conn"], table=row["target_table"], query=row["target_query"]),
        key=tuple(row["key_columns"]),
        columns=tuple(row["columns"] or ()),
        mapping=dict(row["mapping"] or {}),
        kinds=dict(row["kinds"] or {}),
        window_column=row["window_column"],
        recent_window_s=int(row["recent_window_s"]),
        settle_s=int(row["settle_s"]),
        repair=row["repair"],
        enabled=bool(row["enabled"]),
        description=row["description"] or "",
    )


def get_pair(conn: Connection[Any], name: str) -> PairSpec | None:
    """One registered pair, or None."""
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(f"SELECT * FROM {SCHEMA}.sync_pairs WHERE name = %s", (name,)).fetchone()
    return _spec(row) if row else None


def list_pairs(
    conn: Connection[Any], names: list[str] | None = None, *, enabled_only: bool = True, pipeline: str | None = None
) -> list[PairSpec]:
    """Registered pairs (enabled ones by default), optionally only ``names`` or one pipeline's, by name."""
    conds: list[str] = []
    params: list[Any] = []
    if enabled_only:
        conds.append("enabled")
    if names:
        conds.append("name = ANY(%s)")
        params.append(list(names))
    if pipeline:
        conds.append("pipeline = %s")
        params.append(pipeline)
    where = (" WHERE " + " AND ".join(conds)) if conds else ""
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(f"SELECT * FROM {SCHEMA}.sync_pairs{where} ORDER BY name", params).fetchall()
    return [_spec(r) for r in rows]


def set_enabled(conn: Connection[Any], name: str, enabled: bool) -> None:
    """Pause or resume the checks of a pair (e.g. after cutover, when the source is retired)."""
    conn.execute(f"UPDATE {SCHEMA}.sync_pairs SET enabled = %s, updated_at = now() WHERE name = %s", (enabled, name))


def unregister_pair(conn: Connection[Any], name: str) -> None:
    """Remove a pair from the registry (its results stay in ``consistency_results``)."""
    conn.execute(f"DELETE FROM {SCHEMA}.sync_pairs WHERE name = %s", (name,))


def pair_status(conn: Connection[Any], names: list[str] | None = None) -> list[dict[str, Any]]:
    """Rows of ``cutover.consistency_status``: last check, lag and differences per pair."""
    with conn.cursor(row_factory=dict_row) as cur:
        if names:
            return cur.execute(
                f"SELECT * FROM {SCHEMA}.consistency_status WHERE pair_name = ANY(%s) ORDER BY pair_name", (names,)
            ).fetchall()
        return cur.execute(STATUS_QUERY).fetchall()
