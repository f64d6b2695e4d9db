"""The pivot inside PostgreSQL, for when the narrow table and the wide tables share one database.

Sending every narrow row to the client and back costs more than the pivot itself, so when source
and target are the same database the copy asks PostgreSQL to pivot each chunk. A chunk goes through
up to three stages, each taking what the one before left:

1. the **fast path** (:mod:`cutover.ship_wide.arrival`): times whose rows arrive in an order
   already seen, by arrays and subscripts — nearly every time of a healthy ship;
2. the **general statement** (this module), for the times the fast path left;
3. the **client** (:mod:`cutover.ship_wide.pivot`), for the times the general statement calls
   problems.

**The general statement.** ``max(CASE WHEN data_channel_id = 'x' …)`` per channel compares every
narrow row's channel *text* with every channel: rows × channels string comparisons. Here each row is
joined (hash join) to a small map ``channel → (position, format)`` once, and each column's aggregate
filters on that integer (``FILTER (WHERE pos = k)``), on the typed value column, so the per-row work
is one hash probe and integer comparisons.

**Same rules as the client path** (:mod:`cutover.ship_wide.config`). A row gets a position only when
it is valid (``VALID_SQL``), its channel has a column, and its format fits that column (the map holds
the one format a typed column takes, NULL for a text column, which takes all four). Per ``created_time`` the statement counts
the rows, the rows with a position, and the cells it filled; a time where the three agree is
*clean* — every row valid and mapped, no (channel, time) twice — and is inserted. Any other time (a
duplicate, an invalid or incompatible row, a channel seen for the first time) is returned, and the
copy pivots just those times in the client, which adds columns, lets the later row win and writes
dead letters with their reasons. The three stages write disjoint sets of times in the chunk's transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from psycopg import Connection, sql

from cutover.identifiers import pg_ident, with_params
from cutover.ship_wide.config import (
    TIME_COLUMN,
    VALID_SQL,
    VALUE_TEXT_SQL,
    ShipWideConfig,
    accepted_format,
)
from cutover.ship_wide.ddl import WideTable

#: the aggregate of one cell per column type (a clean time has at most one row per cell)
_AGG = {
    "double precision": "max(double_v)",
    "bigint": "max(long_v)",
    "boolean": "bool_or(bool_v)",
    "text": f"max({VALUE_TEXT_SQL})",
}


@dataclass
class ServerChunk:
    """What the in-database pivot of one chunk did, and the times it left to the client."""

    wide_rows: int  # clean times inserted
    narrow_rows: int  # narrow rows of those times
    problem_times: list[str]  # times (text) the client must pivot


def same_database(a: Connection[Any], b: Connection[Any]) -> bool:
    """True when both connections reach the same database of the same server."""
    ia, ib = a.info, b.info
    return (ia.host, ia.port, ia.dbname) == (ib.host, ib.port, ib.dbname)


def supported(wide: WideTable) -> bool:
    """True when every column's type has an in-database aggregate (the types the pipeline creates)."""
    return all(t in _AGG for t in wide.types.values())


def chunk_where(ship_id: str, lo: str | None, hi: str | None) -> tuple[sql.Composed, list[Any]]:
    """`` WHERE ship_id = %s`` and the chunk's ``created_time`` bounds ``(lo, hi]`` (a None bound is
    left open), with its parameters.

    Every chunk read of the copy, in the database or in the client, uses it. Rows without a time fall
    in no chunk: the copy sends them to dead letters after its last chunk.
    """
    cond = sql.SQL(" WHERE ship_id = %s") + (
        sql.SQL(" AND created_time > %s") if lo is not None else sql.SQL(" AND created_time IS NOT NULL"))
    cond += sql.SQL(" AND created_time <= %s") if hi is not None else sql.SQL("")
    return cond, [ship_id, *(x for x in (lo, hi) if x is not None)]


def channel_map(wide: WideTable) -> tuple[list[str], list[str | None], list[int], list[str]]:
    """(channels, formats, positions) of the map, and the columns in position order.

    The format is the one a typed column takes, NULL for a text column (which takes every format).
    Channels whose column is not in the table are left out (their rows become problems).
    """
    mapped = set(wide.columns.values())
    cols = [c for c in wide.types if c in mapped]
    pos = {c: i for i, c in enumerate(cols)}
    chs: list[str] = []
    fmts: list[str | None] = []
    ps: list[int] = []
    for ch, col in wide.columns.items():
        if col in pos:
            chs.append(ch)
            fmts.append(accepted_format(wide.types[col]))
            ps.append(pos[col])
    return chs, fmts, ps, cols


def chunk_settings(conn: Connection[Any], *, ordered: bool = True) -> None:
    """Settings for the rest of a chunk's transaction (they end with it).

    * ``jit = off``: the chunk statements hold an expression per column, which pushes their cost past
      ``jit_above_cost``; compiling them takes longer than running them (0.7 s against 0.1 s for a
      chunk of 200,000 rows of 50 channels on PostgreSQL 15).
    * ``enable_sort = off`` (``ordered``, the fast path): the chunk is read through the (ship_id,
      created_time) index. On a small table the planner may prefer a scan and a sort, and a sort does
      not keep the rows of one time in arrival order: every time would look new to the fast path
      (only speed depends on it, never results). The general statement needs no order (``ordered=False``):
      the planner may take a bitmap scan, which reads a ship stored in random order in heap order —
      0.30 s instead of 0.45 s for 200,000 rows of 50 channels.
    """
    conn.execute("SET LOCAL jit = off; SET LOCAL enable_sort = " + ("off" if ordered else "on"))


def sum_nonnulls(names: list[str]) -> sql.Composable:
    """``num_nonnulls`` over many columns (it takes at most 100 arguments: add it up per hundred)."""
    if not names:
        return sql.SQL("0")
    return sql.SQL(" + ").join(
        sql.SQL("num_nonnulls({})").format(sql.SQL(", ").join(map(sql.Identifier, names[k:k + 100])))
        for k in range(0, len(names), 100)
    )


def pivot_statement(cfg: ShipWideConfig, wide: WideTable, cols: list[str], where: sql.Composable) -> sql.Composed:
    """The statement: pivot the rows ``where`` selects, insert the clean times, return the problem times.

    Parameters, in order: channels, formats, positions (arrays), then those of ``where``.
    """
    names = [f"a{i}" for i in range(len(cols))]
    aggs = [
        sql.SQL("{} FILTER (WHERE pos = {}) AS {}").format(sql.SQL(_AGG[wide.types[c]]), sql.Literal(i), sql.Identifier(a))
        for i, (c, a) in enumerate(zip(cols, names, strict=True))
    ]
    return sql.SQL(
        """WITH m AS (SELECT * FROM unnest(%s::text[], %s::text[], %s::int[]) AS m(ch, fmt, pos)),
        r AS (SELECT n.created_time, n.double_v, n.long_v, n.str_v, n.bool_v,
                     CASE WHEN (m.fmt IS NULL OR m.fmt = n.value_format) AND {valid} THEN m.pos END AS pos
              FROM (SELECT * FROM {narrow}{where}) n
              LEFT JOIN m ON m.ch = n.data_channel_id
              OFFSET 0),
        p AS (SELECT created_time, count(*) AS n_all, count(pos) AS n_ok{aggs} FROM r GROUP BY created_time),
        c AS (SELECT p.*, n_all = n_ok AND n_ok = {filled} AS clean FROM p),
        ins AS (INSERT INTO {wide} ({tcol}{cols}) SELECT created_time{anames} FROM c WHERE clean RETURNING 1)
        SELECT (SELECT count(*) FROM ins),
               coalesce(sum(n_all) FILTER (WHERE clean), 0),
               coalesce(array_agg(created_time::text) FILTER (WHERE NOT clean), '{{}}')
        FROM c"""
    ).format(
        valid=sql.SQL(VALID_SQL),
        narrow=pg_ident(cfg.schema, cfg.narrow_table),
        where=where,
        aggs=sql.SQL("").join(sql.SQL(", ") + a for a in aggs),
        filled=sum_nonnulls(names),
        wide=wide.ident,
        tcol=pg_ident(TIME_COLUMN),
        cols=sql.SQL("").join(sql.SQL(", ") + pg_ident(c) for c in cols),
        anames=sql.SQL("").join(sql.SQL(", ") + sql.Identifier(a) for a in names),
    )


def pivot_in_database(
    conn: Connection[Any], cfg: ShipWideConfig, wide: WideTable, times: list[Any] | None = None, *,
    lo: str | None = None, hi: str | None = None,
) -> ServerChunk:
    """Pivot the ship's narrow rows into the wide table, inside ``conn``'s transaction (see
    :func:`pivot_statement`): the rows of ``times`` (what the fast path left), or else the chunk
    ``(lo, hi]``. The times it could not take are returned for the client."""
    chs, fmts, ps, cols = channel_map(wide)
    if times is not None:
        where: sql.Composable = sql.SQL(" WHERE ship_id = %s AND created_time = ANY(%s)")
        params = [wide.ship_id, times]
    else:
        where, params = chunk_where(wide.ship_id, lo, hi)
    chunk_settings(conn, ordered=False)
    row = conn.execute(with_params(pivot_statement(cfg, wide, cols, where)), [chs, fmts, ps, *params]).fetchone()
    assert row is not None
    return ServerChunk(wide_rows=int(row[0]), narrow_rows=int(row[1]), problem_times=list(row[2]))


def problem_filter(times: list[str]) -> tuple[sql.Composable, list[Any]]:
    """`` AND created_time::text = ANY(…)``: the client's re-read of the problem times (compared as
    text, the form the statement returned, whatever the column's type)."""
    return sql.SQL(" AND created_time::text = ANY(%s::text[])"), [times]
