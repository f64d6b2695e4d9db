"""Verify a ship: counts, a full checksum of every (created_time, channel, value), and a GX suite.

Under the ship's lock (no sync interleaves), after a catch-up sync whose watermark ``S`` bounds the
comparison (narrow rows with ``seq <= S``):

* **count** — distinct ``created_time`` of the narrow side's loadable rows = rows of the wide table;
* **checksum** — every cell, not a sample: the sum of a 64-bit hash (md5 prefix) of
  ``created_time | channel | value text`` over the narrow side's loadable rows (valid, fitting their
  column, the latest per channel and time — the rules of :mod:`cutover.ship_wide.config`, in SQL) and
  over the wide table unpivoted (``CROSS JOIN LATERAL (VALUES …)``), plus the number of cells;
* **GX** (through :func:`cutover.quality.run_gate`, data docs rebuilt) — ``created_time`` not null
  and unique, each column of its mapped type, no row outside the narrow time range, the row count.

Any failure raises :class:`ShipVerificationFailed`, which stops the run before the cutover.

When every check passed, the readers' typical queries are timed on both sides
(:func:`cutover.ship_wide.readers.time_reader_queries`, the narrow side up to ``S``): the figure goes
into the result under ``readers`` (the unit's evidence). It is evidence, not a check: a figure that
cannot be measured is a note under ``readers.skipped`` (a query over ``readers_timeout_s``, default
10 s: under that query's ``skipped``). Its cost is bounded: the time range is the last
``readers_window`` times (``cfg.extra``, default 240: an hour), fewer for a wide ship
(:data:`READERS_PIVOT_BUDGET`), and a query gets fewer than ``readers_repeats`` (3) timed runs when
they would take more than ``readers_budget_s`` (2 s). Answers that differ are a failure: readers
would see other data after the cutover.
"""

from __future__ import annotations

from typing import Any

from psycopg import Connection, sql
from psycopg.pq import TransactionStatus

from cutover.connections import pg_connect
from cutover.identifiers import pg_ident, slugify, with_params
from cutover.ship_wide.config import TIME_COLUMN, VALUE_TEXT_SQL, ShipWideConfig
from cutover.ship_wide.ddl import WideTable, load_wide
from cutover.ship_wide.fragments import loadable_narrow, wide_cells
from cutover.ship_wide.plan import session_setup
from cutover.ship_wide.sync import _sync_locked, ship_lock

#: how GX (SQLAlchemy's PostgreSQL dialect) names the column types
GX_TYPES = {
    "double precision": "DOUBLE PRECISION", "bigint": "BIGINT", "text": "TEXT", "boolean": "BOOLEAN",
    "timestamp with time zone": "TIMESTAMP WITH TIME ZONE", "timestamp without time zone": "TIMESTAMP WITHOUT TIME ZONE",
}
#: the verification times the readers' time range over at most this many times × channels² (the
#: narrow pivot's work): 240 times up to 144 channels, 5 times for 1,000
READERS_PIVOT_BUDGET = 5_000_000
_HASH = "sum(('x' || substr(md5({t}::text || chr(31) || {c} || chr(31) || {v}), 1, 16))::bit(64)::bigint::numeric)"


class ShipVerificationFailed(RuntimeError):
    """The wide table does not match the narrow one (the message lists every failed check)."""


def narrow_stats(conn: Connection[Any], cfg: ShipWideConfig, wide: WideTable, upto_seq: int) -> dict[str, Any]:
    """Times, cells, checksum and time range of the ship's loadable narrow rows with ``seq <= upto_seq``."""
    rows = loadable_narrow(cfg, wide, sql.SQL("created_time, data_channel_id, {} AS val").format(sql.SQL(VALUE_TEXT_SQL)),
                           sql.SQL("{} <= %s").format(pg_ident(cfg.seq_column)))
    q = sql.SQL(
        """SELECT count(DISTINCT created_time), count(*), coalesce({h}, 0)::text,
                  min(created_time)::text, max(created_time)::text FROM ({rows}) v"""
    ).format(h=sql.SQL(_HASH.format(t="created_time", c="data_channel_id", v="val")), rows=rows)
    row = conn.execute(with_params(q), (upto_seq,)).fetchone()
    assert row is not None
    return {"times": int(row[0]), "cells": int(row[1]), "checksum": row[2], "first": row[3], "last": row[4]}


def wide_stats(conn: Connection[Any], wide: WideTable) -> dict[str, Any]:
    """Rows, cells, checksum and time range of the wide table (unpivoted back to channel, value)."""
    q = sql.SQL(
        """SELECT (SELECT count(*) FROM {t}), count(*), coalesce({h}, 0)::text,
                  (SELECT min(created_time)::text FROM {t}), (SELECT max(created_time)::text FROM {t}) {cells}"""
    ).format(t=wide.ident, h=sql.SQL(_HASH.format(t="w.created_time", c="v.ch", v="v.val")), cells=wide_cells(wide))
    row = conn.execute(q).fetchone()
    assert row is not None
    return {"rows": int(row[0]), "cells": int(row[1]), "checksum": row[2], "first": row[3], "last": row[4]}


def gate_expectations(wide: WideTable, narrow: dict[str, Any], time_type: str) -> list[dict[str, Any]]:
    """The GX suite of one ship's wide table."""
    exps: list[dict[str, Any]] = [
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": TIME_COLUMN}},
        {"type": "expect_column_values_to_be_unique", "kwargs": {"column": TIME_COLUMN}},
        {"type": "expect_table_row_count_to_equal", "kwargs": {"value": narrow["times"]}},
        {"type": "expect_column_values_to_be_of_type", "kwargs": {"column": TIME_COLUMN, "type_": GX_TYPES.get(time_type, "TIMESTAMP")}},
    ]
    if narrow["first"] is not None:
        exps.append({"type": "expect_column_values_to_be_between",
                     "kwargs": {"column": TIME_COLUMN, "min_value": narrow["first"], "max_value": narrow["last"]}})
    for col, typ in wide.types.items():
        exps.append({"type": "expect_column_values_to_be_of_type", "kwargs": {"column": col, "type_": GX_TYPES[typ]}})
    return exps


def reader_figure(src: Connection[Any], tgt: Connection[Any], cfg: ShipWideConfig, wide: WideTable,
                  upto_seq: int) -> dict[str, Any]:
    """The readers' queries timed on both sides (narrow rows up to ``upto_seq``), bounded as the module
    says; ``{"skipped": why}`` when it could not be measured. Raises
    :class:`cutover.ship_wide.readers.ReaderAnswersDiffer` when the two sides answer differently."""
    from cutover.ship_wide import readers

    extra = cfg.extra or {}
    want = int(extra.get("readers_window", readers.DEFAULT_WINDOW))
    # the narrow pivot's cost grows with times × channels²: fewer times for a wide ship
    window = max(1, min(want, READERS_PIVOT_BUDGET // max(1, len(wide.types)) ** 2))
    try:
        fig = readers.time_reader_queries(
            tgt, cfg, wide, source=src, upto_seq=upto_seq, window=window,
            repeats=int(extra.get("readers_repeats", 3)), timeout_s=float(extra.get("readers_timeout_s", 10.0)),
            budget_s=float(extra.get("readers_budget_s", 2.0)))
    except readers.ReaderAnswersDiffer:
        raise
    except Exception as exc:  # noqa: BLE001 - evidence, not a check: say why it is missing
        for c in (src, tgt):
            if not c.closed and c.info.transaction_status != TransactionStatus.IDLE:
                c.rollback()
        return {"skipped": f"the readers' queries could not be timed: {type(exc).__name__}: {exc}".strip()}
    if window < want and isinstance(fig.get("range"), dict) and "window" in fig["range"]:
        fig["range"]["window"]["asked"] = want
    return fig


def verify_ship(cfg: ShipWideConfig, ship_id: str, *, run_id: str | None = None, gate: bool = True,
                raise_on_failure: bool = True, readers: bool = True, update_docs: bool = True) -> dict[str, Any]:
    """Catch up, compare narrow and wide (counts, checksum), run the GX gate, time the readers' queries.
    ``update_docs=False``: the gate leaves the data docs site for the run's close to rebuild once.

    Returns ``{"narrow": {...}, "wide": {...}, "gate": {...}, "readers": {...}, "failures": [str, …]}``
    (``readers`` when every check passed and ``readers`` is on); raises
    :class:`ShipVerificationFailed` listing every failed check unless ``raise_on_failure`` is off
    (the life cycle records the failures on the unit itself).
    """
    with pg_connect(cfg.source_conn_id, autocommit=True) as src, pg_connect(cfg.target_conn_id) as tgt:
        session_setup(src)
        session_setup(tgt)
        tgt.commit()
        with ship_lock(tgt, cfg, ship_id):
            synced = _sync_locked(src, tgt, cfg, ship_id, run_id)
            if synced.get("skipped"):
                raise ShipVerificationFailed(f"ship {ship_id!r} is not built yet ({synced.get('why')})")
            wide = load_wide(tgt, cfg, ship_id)
            assert wide is not None
            upto = int(synced["sync_seq"])
            narrow = narrow_stats(src, cfg, wide, upto)
            target = wide_stats(tgt, wide)
            tgt.commit()
            failures: list[str] = []
            if narrow["times"] != target["rows"]:
                failures.append(f"count: {narrow['times']} distinct created_time in narrow, {target['rows']} rows in wide")
            if narrow["cells"] != target["cells"]:
                failures.append(f"cells: {narrow['cells']} narrow values, {target['cells']} wide cells")
            if narrow["checksum"] != target["checksum"]:
                failures.append(f"checksum: narrow {narrow['checksum']} ≠ wide {target['checksum']}")
            result: dict[str, Any] = {"ship_id": ship_id, "upto_seq": upto, "narrow": narrow, "wide": target}
            if gate:
                from cutover.quality import run_gate

                time_type = tgt.execute(
                    "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = %s::regclass AND attname = %s",
                    (wide.ident.as_string(tgt), TIME_COLUMN),
                ).fetchone()
                tgt.commit()
                g = run_gate(
                    f"generated__ship_wide__{slugify(wide.unit)}", conn_id=cfg.target_conn_id, schema=wide.schema,
                    table=wide.table, expectations=gate_expectations(wide, narrow, time_type[0] if time_type else ""),
                    run_id=run_id, raise_on_failure=False, update_docs=update_docs,
                )
                result["gate"] = {"success": g.success, "evaluated": g.evaluated, "failed": g.failed, "docs": g.docs_index}
                if not g.success:
                    failures.append(f"GX suite {g.suite}: {g.failed}/{g.evaluated} failed ({'; '.join(g.failures[:5])})")
            if readers and not failures:
                from cutover.ship_wide.readers import ReaderAnswersDiffer

                try:
                    result["readers"] = reader_figure(src, tgt, cfg, wide, upto)
                except ReaderAnswersDiffer as exc:
                    failures.append(f"readers: {exc}")
            result["failures"] = failures
            if failures and raise_on_failure:
                raise ShipVerificationFailed(f"ship {ship_id!r} ({wide.schema}.{wide.table}): " + " | ".join(failures))
            return result
