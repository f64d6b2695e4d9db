"""Cutover and rollback: readers read a view per ship, ``ts_reader_<ship>``, whose definition is switched.

The view always has the wide shape (``created_time`` + one column per channel, same names and
types either way):

* backend ``narrow`` — the pivot done by PostgreSQL over the narrow table (valid rows only, the
  latest row of each channel and time): what readers use before the cutover and after a rollback;
* backend ``wide`` — ``SELECT … FROM`` the wide table: after the cutover.

A switch is ``CREATE OR REPLACE VIEW`` plus a routing entry (``control.switch_backend``, pipeline
``ship_wide_build``, unit = ship id) in one transaction, so the view and the recorded backend never
disagree and every switch is in ``cutover.switch_history``. When the source and target connections
are different databases the narrow-backed view cannot exist: readers follow the routing entry.
"""

from __future__ import annotations

from typing import Any

from psycopg import Connection, sql

from cutover import control
from cutover.connections import pg_connect, resolve
from cutover.identifiers import pg_ident
from cutover.ship_wide.config import (
    FORMAT_COLUMN,
    PIPELINE,
    TIME_COLUMN,
    VALUE_TEXT_SQL,
    ShipWideConfig,
    accepted_format,
)
from cutover.ship_wide.ddl import WideTable, column_scope, load_wide
from cutover.ship_wide.fragments import loadable_narrow


def same_database(cfg: ShipWideConfig) -> bool:
    """Whether narrow and wide tables live in one database (so a view can read either)."""
    return resolve(cfg.source_conn_id).pg_conninfo() == resolve(cfg.target_conn_id).pg_conninfo()


def view_sql(cfg: ShipWideConfig, wide: WideTable, backend: str) -> sql.Composed:
    """The reader view's definition for ``backend`` (``narrow`` or ``wide``)."""
    by_col = {col: ch for ch, col in wide.columns.items()}
    cols = [c for c in wide.types if c in by_col]
    if backend == "wide":
        body = sql.SQL("SELECT {} FROM {}").format(
            sql.SQL(", ").join(pg_ident(c) for c in [TIME_COLUMN, *cols]), wide.ident
        )
    elif backend == "narrow":
        items: list[sql.Composable] = [pg_ident(TIME_COLUMN)]
        for col in cols:
            typ = wide.types[col]
            fmt = accepted_format(typ)
            value = sql.SQL(FORMAT_COLUMN[fmt] if fmt else VALUE_TEXT_SQL)
            cond = sql.SQL("data_channel_id = {}").format(sql.Literal(by_col[col]))
            if fmt:
                cond = cond + sql.SQL(" AND value_format = {}").format(sql.Literal(fmt))
            items.append(sql.SQL("(array_agg({v}) FILTER (WHERE {c}))[1]::{t} AS {n}").format(
                v=value, c=cond, t=sql.SQL(typ), n=pg_ident(col)))
        body = sql.SQL("SELECT {items} FROM ({rows}) n GROUP BY created_time").format(
            items=sql.SQL(", ").join(items), rows=loadable_narrow(cfg, wide, sql.SQL("*")))
    else:
        raise ValueError(f"unknown backend {backend!r} (narrow or wide)")
    return body


def current_backend(conn: Connection[Any], unit: str) -> str:
    """Where the ship's readers are now (``narrow`` until a cutover); ``unit`` is ``cfg.unit(ship)``."""
    sw = control.get_switch(conn, PIPELINE, unit)
    return sw.backend if sw else "narrow"


def refresh_reader_view(conn: Connection[Any], cfg: ShipWideConfig, wide: WideTable, backend: str | None = None) -> bool:
    """(Re)create the reader view for ``backend`` (default: the current one); False when it cannot exist."""
    backend = backend or current_backend(conn, wide.unit)
    view = pg_ident(wide.schema, wide.view)
    # a reader holding a long transaction must not make the switch wait forever (the task retries)
    conn.execute("SET LOCAL lock_timeout = '30s'")
    if backend == "narrow" and not same_database(cfg):
        conn.execute(sql.SQL("DROP VIEW IF EXISTS {}").format(view))
        return False
    body = view_sql(cfg, wide, backend)
    try:
        with conn.transaction():  # a savepoint: replace keeps grants when the columns still line up
            conn.execute(sql.SQL("CREATE OR REPLACE VIEW {} AS ").format(view) + body)
    except Exception:
        conn.execute(sql.SQL("DROP VIEW IF EXISTS {}").format(view))
        conn.execute(sql.SQL("CREATE VIEW {} AS ").format(view) + body)
    return True


def route_readers(conn: Connection[Any], cfg: ShipWideConfig, ship_id: str, backend: str) -> dict[str, Any]:
    """The life cycle's ``route`` hook: recreate the ship's reader view over ``backend`` on ``conn``.

    The life cycle records the switch (``cutover.switches`` / ``switch_history``) in the same
    transaction. Raises ``RuntimeError`` when ``backend`` is ``wide`` and the ship has no wide table.
    Returns ``{"view": "<schema>.<view>" | None, "routed": bool}`` (``routed``: a view or table exists).
    """
    wide = load_wide(conn, cfg, ship_id)
    if wide is None:
        if backend == "wide":
            raise RuntimeError(f"ship {ship_id!r} has no wide table: nothing to switch")
        return {"view": None, "routed": False}
    has_view = refresh_reader_view(conn, cfg, wide, backend)
    return {"view": f"{wide.schema}.{wide.view}" if has_view else None, "routed": True}


def drop_ship(conn: Connection[Any], cfg: ShipWideConfig, ship_id: str) -> dict[str, Any]:
    """The life cycle's ``drop`` hook: remove the wide table, its column map, key backup, watermark and pair."""
    from cutover.ship_wide.pair import unregister_ship  # pair imports this module

    wide = load_wide(conn, cfg, ship_id)
    unit = cfg.unit(ship_id)
    if wide is not None:
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(wide.ident))
    control.clear_checkpoint(conn, PIPELINE, unit)
    control.clear_name_map(conn, PIPELINE, column_scope(unit))
    conn.execute(f"DELETE FROM {control.SCHEMA}.object_backups WHERE pipeline = %s AND unit_key = %s", (PIPELINE, unit))
    unregister_ship(conn, cfg, ship_id)
    return {"table": f"{wide.schema}.{wide.table}" if wide is not None else None}


def _manual_run_id(kind: str) -> str:
    import datetime as dt

    return f"manual__{kind}__{dt.datetime.now(dt.UTC).strftime('%Y%m%dT%H%M%S.%f')}"


def cutover_ship(cfg: ShipWideConfig, ship_id: str, *, run_id: str | None = None, actor: str | None = None,
                 approval: dict[str, Any] | None = None) -> dict[str, Any]:
    """Readers of one verified ship → its wide table, outside Airflow (a library call for scripts and
    tests; the ``ship_wide_cutover`` DAG asks for the approval under *Required Actions*). The
    deployment's approval policy applies here too (:func:`cutover.lifecycle.switch.approval_policy`):
    where it requires an approval, ``approval`` must be one (``{"chosen_options": ["Approve"],
    "responded_by_user": …}``) or :class:`cutover.lifecycle.switch.ApprovalMissing` is raised, nothing
    switched. ``actor`` names the caller (recorded as who triggered it; None: unknown, recorded so).
    Recorded as a cutover run through :func:`cutover.lifecycle.switch.switch`; raises
    :class:`cutover.lifecycle.switch.NotReady` when the ship's latest verification did not pass."""
    from cutover.lifecycle.switch import NotReady, split_ready, switch, trigger_record
    from cutover.ship_wide.spec import SPEC

    ready, blocked = split_ready(SPEC, cfg, [ship_id])
    if blocked:
        raise NotReady(f"ship {ship_id!r}: {blocked[ship_id]}")
    out = switch(SPEC, cfg, ready, run_id or _manual_run_id("cutover"), approval=approval,
                 triggered_by=trigger_record(actor, via="cutover.ship_wide.cutover_ship"))
    return out["switched"][0]


def rollback_ship(
    cfg: ShipWideConfig, ship_id: str, *, drop: bool = False, run_id: str | None = None, actor: str | None = None,
) -> dict[str, Any]:
    """Readers → the narrow table; with ``drop`` also remove the wide table, its map and its state.
    Recorded as a rollback run through :func:`cutover.lifecycle.switch.rollback` (``actor``: who asked,
    recorded as who triggered it). Nothing written after the cutover is lost: writers write the narrow
    table, readers only read the wide one, so ship_wide has no ``target_divergence`` check."""
    from cutover.lifecycle.switch import rollback, trigger_record
    from cutover.ship_wide.spec import SPEC

    out = rollback(SPEC, cfg, [ship_id], run_id or _manual_run_id("rollback"), drop=drop,
                   triggered_by=trigger_record(actor, via="cutover.ship_wide.rollback_ship"))
    return out["rolled_back"][0]


def known_ships(cfg: ShipWideConfig) -> list[str]:
    """Every ship of this narrow table with a routing entry or a copy state (the ones a rollback can touch)."""
    prefix = cfg.unit("")
    with pg_connect(cfg.target_conn_id) as conn:
        control.ensure_schema(conn)
        rows = conn.execute(
            f"""SELECT unit_key FROM {control.SCHEMA}.switches WHERE pipeline = %s AND starts_with(unit_key, %s)
                UNION SELECT unit_key FROM {control.SCHEMA}.checkpoints WHERE pipeline = %s AND starts_with(unit_key, %s)
                ORDER BY 1""",
            (PIPELINE, prefix, PIPELINE, prefix),
        ).fetchall()
    return [r[0][len(prefix):] for r in rows]
