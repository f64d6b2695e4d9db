"""SQL fragments the stages of ``ship_wide_build`` share, written once.

* :func:`loadable_narrow` — a ship's *loadable* narrow rows: valid (:data:`~cutover.ship_wide.config.VALID_SQL`),
  fitting their channel's column (:func:`compat_sql`), the latest per ``(created_time, channel)`` by
  ingest sequence. The reader view over the narrow table, the verification and the consistency
  pair all read exactly these rows, so they can never disagree about what "the narrow side" is.
* :func:`wide_cells` — the wide table unpivoted back into ``(created_time, ch, val)`` cells (text).

Names from data go through :func:`cutover.identifiers.pg_ident` / ``sql.Literal`` only; a statement
built from these and run with parameters must go through :func:`cutover.identifiers.with_params`.
"""

from __future__ import annotations

from psycopg import sql

from cutover.identifiers import pg_ident
from cutover.ship_wide.config import FORMAT_COLUMN, VALID_SQL, ShipWideConfig, accepted_format
from cutover.ship_wide.ddl import WideTable


def compat_sql(wide: WideTable) -> sql.Composable:
    """SQL true when a narrow row's format fits its channel's column (typed columns take one format)."""
    whens: list[sql.Composable] = []
    for fmt in FORMAT_COLUMN:
        chans = [ch for ch, col in wide.columns.items() if accepted_format(wide.types.get(col, "text")) == fmt]
        if chans:
            whens.append(sql.SQL("WHEN data_channel_id = ANY({}::text[]) THEN value_format = {}").format(
                sql.Literal(chans), sql.Literal(fmt)))
    if not whens:
        return sql.SQL("true")
    return sql.SQL("(CASE {} ELSE true END)").format(sql.SQL(" ").join(whens))


def loadable_narrow(cfg: ShipWideConfig, wide: WideTable, columns: sql.Composable,
                    extra_where: sql.Composable | None = None) -> sql.Composed:
    """``SELECT DISTINCT ON (created_time, data_channel_id) <columns> FROM <narrow> WHERE <the ship's
    loadable rows> [AND extra_where] ORDER BY …, <seq> DESC``: one row per time and channel, the latest
    valid one that fits its column."""
    return sql.SQL(
        "SELECT DISTINCT ON (created_time, data_channel_id) {cols} FROM {narrow} "
        "WHERE ship_id = {ship} AND {valid} AND {compat}{extra} "
        "ORDER BY created_time, data_channel_id, {seq} DESC"
    ).format(
        cols=columns, narrow=pg_ident(cfg.schema, cfg.narrow_table), ship=sql.Literal(wide.ship_id),
        valid=sql.SQL(VALID_SQL), compat=compat_sql(wide),
        extra=sql.SQL(" AND ") + extra_where if extra_where is not None else sql.SQL(""),
        seq=pg_ident(cfg.seq_column),
    )


def wide_cells(wide: WideTable) -> sql.Composed:
    """``FROM <wide> w CROSS JOIN LATERAL (VALUES (channel, w.col::text), …) v(ch, val) WHERE v.val IS NOT NULL``:
    every non-NULL cell of the wide table as ``w.created_time, v.ch, v.val``."""
    pairs = [(ch, col) for ch, col in wide.columns.items() if col in wide.types]
    values = sql.SQL(", ").join(
        sql.SQL("({}, w.{}::text)").format(sql.Literal(ch), pg_ident(col)) for ch, col in pairs
    ) if pairs else sql.SQL("(NULL::text, NULL::text)")
    return sql.SQL("FROM {t} w CROSS JOIN LATERAL (VALUES {values}) v(ch, val) WHERE v.val IS NOT NULL").format(
        t=wide.ident, values=values)
