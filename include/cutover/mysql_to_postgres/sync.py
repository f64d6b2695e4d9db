"""Keep copied tables fresh: change data capture from the MySQL binary log, or a watermark where there is none.

**binlog** (inserts, updates, deletes): one reader (:func:`cutover.binlog.read_changes`) from the lowest
stored position of the tables synced; each transaction's changed keys of a table whose stored position
is before it are collected, then the rows of those keys are read again from MySQL through the copy's
own rendering and upserted, keys MySQL no longer has deleted (:func:`cutover.mysql_to_postgres.load.
refresh_keys`) — one PostgreSQL transaction per group of MySQL transactions, with every table's new
position in it, so a killed sync resumes exactly and re-applying is harmless. A table without a key is
reloaded whole from a snapshot when it changed.

Keys are compared **the way MySQL compares them** where it matters: the rows of the changed keys are read
back from MySQL (which matches them under the key column's collation) and a target row is kept only when
MySQL returned its key byte for byte — so a key changed only in case (``alpha-1`` → ``ALPHA-1`` under a
``_ci`` collation), accents or trailing spaces (PAD SPACE) leaves no stale row behind.

**The unit lock**: every sync transaction of a table first takes a PostgreSQL advisory lock on its
unit key (:func:`lock_units`, in the target database); a proof at a fence (:mod:`cutover.mysql_to_postgres.
verify`) holds it for the whole session while it checksums, so no other sync moves the target past the
fence meanwhile. A sync that is handed the fence's own ``source`` snapshot session and ``target`` connection
(the lock holder: advisory locks are re-entrant per session) re-reads the changed keys **from that
snapshot**, so the target holds the source's state at ``stop_at`` exactly.

**Forward lag**: each flush reports every table it moved on the status page
(:func:`cutover.control.report_stream`, direction ``forward``, the table's name, its new position, the
seconds between the newest change applied and now — 0 once the log's end is reached — and the rows
applied). Tables whose readers are on PostgreSQL (routing entry ``postgres``, after a cutover) are not
synced forward any more (:func:`switched_units`): their writes now happen there; a rollback routes them
back and the forward sync resumes from the fence position the switch left.

**watermark** (no binary log): rows whose ``watermark_column`` (e.g. ``updated_at``) is at or after the
stored watermark are read in (watermark, key) order and upserted; target rows whose key MySQL would take
for one of them but which differ byte for byte (the old spelling of a key changed in case, accents or
trailing spaces: :func:`cutover.mysql_to_postgres.load.collation_twins`) are checked against MySQL and
deleted when it no longer has them. Other **deletes are not seen** in this mode, nor updates that do not
move the watermark column; the status page and the task log say so.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

from cutover import binlog, control
from cutover.connections import pg_connect
from cutover.identifiers import quote_mysql, quote_pg
from cutover.keyset import after_key, after_params, decode_key, encode_key
from cutover.mysql_schema import text_of
from cutover.mysql_to_postgres import load
from cutover.mysql_to_postgres.config import PIPELINE, MysqlToPostgresConfig
from cutover.mysql_to_postgres.typemap import TableMap

log = logging.getLogger(__name__)

#: changed keys collected before they are applied in one PostgreSQL transaction
FLUSH_KEYS = 5_000
FLUSH_S = 1.0


def built_units(cfg: MysqlToPostgresConfig) -> dict[str, TableMap]:
    """Every unit of ``cfg``'s scope with a sync position (finalized at least once), with the mapping of
    its latest plan."""
    from cutover.mysql_to_postgres.build import latest_plans

    with pg_connect(cfg.target_conn_id) as conn:
        load.ensure_state(conn)
        keys = [r[0] for r in conn.execute(f"SELECT unit_key FROM {load.STATE_SCHEMA}.m2p_positions "
                                           "WHERE starts_with(unit_key, %s)", (cfg.scope + ":",)).fetchall()]
    return latest_plans(cfg, keys)


def lock_id_sql(param: str = "%s") -> str:
    """The SQL of a unit's advisory lock id (a bigint) from its unit key text."""
    return f"hashtextextended('cutover:m2p:' || {param}, 0)"


def lock_units(conn: Any, keys: list[str], *, session: bool = False) -> None:
    """Take the advisory locks of ``keys`` (sorted: two syncs never wait on each other in a cycle) on
    ``conn`` (the target database): for the open transaction, or ``session``-long (release with
    :func:`unlock_units`). Blocks while another session holds one."""
    fn = "pg_advisory_lock" if session else "pg_advisory_xact_lock"
    for k in sorted(set(keys)):
        conn.execute(f"SELECT {fn}({lock_id_sql()})", (k,))


def unlock_units(conn: Any, keys: list[str]) -> None:
    """Release session-long advisory locks taken by :func:`lock_units` (``session=True``)."""
    for k in sorted(set(keys)):
        conn.execute(f"SELECT pg_advisory_unlock({lock_id_sql()})", (k,))


def switched_units(cfg: MysqlToPostgresConfig, keys: list[str]) -> set[str]:
    """The unit keys among ``keys`` whose routing entry points readers (and writers) at PostgreSQL."""
    with pg_connect(cfg.control_conn_id) as conn:
        control.ensure_schema(conn)
        names = [r[0] for r in conn.execute(
            f"""SELECT name FROM {control.SCHEMA}.routes WHERE pipeline = %s AND scope = %s
                AND location ->> 'backend' = 'postgres'""", (PIPELINE, cfg.scope)).fetchall()]
    by_name = {f"{cfg.scope}:{n}" for n in names}
    return {k for k in keys if k in by_name}


def _positions(conn: Any, keys: list[str]) -> dict[str, dict[str, Any]]:
    rows = conn.execute(f"SELECT unit_key, mode, position, watermark, watermark_key FROM {load.STATE_SCHEMA}.m2p_positions "
                        "WHERE unit_key = ANY(%s)", (keys,)).fetchall()
    return {r[0]: {"mode": r[1], "position": r[2], "watermark": r[3], "watermark_key": r[4]} for r in rows}


def sync_units(cfg: MysqlToPostgresConfig, keys: list[str] | None = None, maps: dict[str, TableMap] | None = None, *,
               max_seconds: float = 600.0, stop_at: binlog.BinlogPosition | None = None, source: Any | None = None,
               target: Any | None = None, include_switched: bool = False) -> dict[str, Any]:
    """Bring the tables of ``keys`` (default: every built one) up to the source's state now (binlog: up to
    ``stop_at`` when given — the transaction ending there is the last one read).

    ``source``: an open MySQL connection inside a consistent snapshot (a fence) that the changed rows are
    read again from, instead of a new session per flush: with ``stop_at`` = the snapshot's position the
    target then holds the source's state at that position exactly. ``target``: an autocommit PostgreSQL
    connection to apply in (one transaction per flush), e.g. the one holding the units' session locks.
    ``include_switched``: sync tables whose readers are on PostgreSQL too (the cutover's last catch-up;
    otherwise they are left out and listed under ``"switched"``).

    Returns ``{"binlog": {...}, "watermark": {...}}`` with changes applied per table and the rate.
    Raises :class:`cutover.binlog.BinlogUnavailable` / ``BinlogPositionPurged`` when the log cannot be
    read from the stored position (the table must then be copied again).
    """
    maps = maps if maps is not None else built_units(cfg)
    keys = list(keys) if keys is not None else list(maps)
    switched = set() if include_switched or not keys else switched_units(cfg, keys)
    keys = [k for k in keys if k not in switched]
    with pg_connect(cfg.target_conn_id) as conn:
        load.ensure_state(conn)
        pos = _positions(conn, keys)
    by_mode: dict[str, list[str]] = {}
    for k in keys:
        if k in pos:
            by_mode.setdefault(pos[k]["mode"], []).append(k)
    out: dict[str, Any] = {"switched": sorted(switched)} if switched else {}
    if by_mode.get("binlog"):
        out["binlog"] = _binlog_sync(cfg, {k: maps[k] for k in by_mode["binlog"]}, pos, max_seconds, stop_at,
                                     source, target)
    if by_mode.get("watermark"):
        out["watermark"] = _watermark_sync(cfg, {k: maps[k] for k in by_mode["watermark"]}, pos, max_seconds)
        out["watermark"]["note"] = ("watermark mode: deletes are not seen, nor updates that leave "
                                    f"{cfg.watermark_column!r} unchanged")
    return out


@contextmanager
def _target_txn(cfg: MysqlToPostgresConfig, target: Any | None) -> Iterator[Any]:
    """One PostgreSQL transaction: on ``target`` (an autocommit connection) or on a new connection."""
    if target is None:
        with pg_connect(cfg.target_conn_id) as conn:
            yield conn
    else:
        with target.transaction():
            yield target


@contextmanager
def _source_cursor(cfg: MysqlToPostgresConfig, source: Any | None) -> Iterator[Any]:
    """A cursor on ``source`` (the fence's snapshot session) or on a new source session."""
    if source is None:
        with load.source_session(cfg.source_conn_id) as src:
            cur = src.cursor()
            try:
                yield cur
            finally:
                cur.close()
    else:
        cur = source.cursor()
        try:
            yield cur
        finally:
            cur.close()


@contextmanager
def _snapshot(cfg: MysqlToPostgresConfig, source: Any | None) -> Iterator[Any]:
    """A source session in a consistent snapshot: ``source`` itself, or a new one."""
    if source is not None:
        yield source
    else:
        with load.source_session(cfg.source_conn_id, snapshot=True) as snap:
            yield snap


def report_forward(cfg: MysqlToPostgresConfig, maps: dict[str, TableMap], moved: dict[str, tuple[str, int]],
                   lag_s: float | None, state: str = "running") -> None:
    """Record the forward stream of each moved table (``{unit key: (position, rows applied)}``) on the status
    page (:func:`cutover.control.report_stream`). A failure to record is logged, never raised: the sync's
    own transaction has committed."""
    if not moved:
        return
    try:
        with pg_connect(cfg.control_conn_id) as conn:
            for k, (position, n) in moved.items():
                control.report_stream(conn, PIPELINE, cfg.scope, maps[k].source, "forward", position=position,
                                      lag_s=None if lag_s is None else round(lag_s, 3), applied=n, state=state,
                                      detail={"unit_key": k, "mode": "binlog"})
    except Exception:  # noqa: BLE001 - the status page misses one report; the data is applied
        log.exception("could not record the forward stream's position on the status page")


def _binlog_sync(cfg: MysqlToPostgresConfig, maps: dict[str, TableMap], pos: dict[str, dict[str, Any]],
                 max_seconds: float, stop_at: binlog.BinlogPosition | None, source: Any | None = None,
                 target: Any | None = None) -> dict[str, Any]:
    t0 = time.monotonic()
    positions = {k: binlog.BinlogPosition.parse(pos[k]["position"]) for k in maps if pos[k]["position"]}
    if not positions:
        return {"tables": 0}
    by_table = {maps[k].source: k for k in positions}
    # deletes and key changes a foreign key cascades (ON DELETE / UPDATE CASCADE, SET NULL, SET DEFAULT) are
    # not in the binlog: a change of the parent's row re-reads the child rows that pointed at it
    watch: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for k in positions:
        for fk in maps[k].foreign_keys if maps[k].key else ():
            if {str(fk.get("on_delete")).upper(), str(fk.get("on_update")).upper()} & {"CASCADE", "SET NULL", "SET DEFAULT"}:
                watch.setdefault(fk["ref_table"], []).append((k, fk))
    start = min(positions.values())
    pending: dict[str, list[tuple[Any, ...]]] = {}
    whole: set[str] = set()
    applied = {k: 0 for k in positions}
    stats: dict[str, Any] = {"transactions": 0, "changes": 0, "upserted": 0, "deleted": 0, "dead_letters": 0,
                             "rule_changes": {}}  # {table: {column: {rule: values}}} in the rows applied
    last: binlog.BinlogPosition | None = None
    last_ts = 0  # the newest applied change's commit time (Unix seconds)
    last_flush = time.monotonic()
    with pg_connect(cfg.control_conn_id) as c:
        control.ensure_schema(c)

    def flush(upto: binlog.BinlogPosition | None, at_end: bool = False) -> None:
        nonlocal pending, whole, last_flush
        if upto is None:
            return
        moved: dict[str, tuple[str, int]] = {}
        with _target_txn(cfg, target) as conn, _source_cursor(cfg, source) as cur:
            lock_units(conn, list(positions))  # a proof at a fence holds these while it checksums
            if target is None:  # a table switched while this sync waited: its writes are on PostgreSQL now
                for k in switched_units(cfg, list(positions)):
                    log.warning("%s was switched to PostgreSQL while this sync ran: not synced forward any more", k)
                    positions.pop(k, None)
                    pending.pop(k, None)
                    whole.discard(k)
                    by_table.pop(maps[k].source, None)
            for k, ks in pending.items():
                up, de, dead = load.refresh_keys(cur, conn, maps[k], cfg.source_database, cfg.target_schema, ks,
                                                 rule_counts=stats["rule_changes"].setdefault(maps[k].source, {}))
                stats["upserted"] += up
                stats["deleted"] += de
                stats["dead_letters"] += len(dead)
                load.record_dead(conn, PIPELINE, k, maps[k].source, dead)
            for k in whole:
                with _snapshot(cfg, source) as snap:
                    w, dead = load.reload_whole(snap, conn, maps[k], cfg.source_database, cfg.target_schema, cfg.chunk_rows)
                    load.record_dead(conn, PIPELINE, k, maps[k].source, dead)
            for k, p in positions.items():
                if p < upto:
                    positions[k] = upto
                    conn.execute(f"""UPDATE {load.STATE_SCHEMA}.m2p_positions SET position = %s,
                                     changes_applied = changes_applied + %s, updated_at = now() WHERE unit_key = %s""",
                                 (str(upto), applied[k], k))
                    moved[k] = (str(upto), applied[k])
                    applied[k] = 0
        lag = 0.0 if at_end else (max(0.0, time.time() - last_ts) if last_ts else None)
        report_forward(cfg, maps, moved, lag)
        pending, whole = {}, set()
        last_flush = time.monotonic()

    n_keys = 0
    with ExitStack() as stack:
        pconn = stack.enter_context(pg_connect(cfg.target_conn_id, autocommit=True)) if watch else None
        for batch in binlog.read_changes(cfg.source_conn_id, start, schemas=[cfg.source_database],
                                         tables=sorted(set(by_table) | set(watch)), stop_at=stop_at):
            stats["transactions"] += 1
            for ch in batch:
                for child, fk in watch.get(ch.table, ()):
                    if ch.before is None or child not in positions or not positions[child] < batch.position:
                        continue
                    if ch.after is not None and all(ch.before.get(c) == ch.after.get(c) for c in fk["ref_columns"]):
                        continue  # an update that left the referenced key as it was cascades nothing
                    found = _child_keys(pconn, cfg, maps[child], fk, [ch.before.get(c) for c in fk["ref_columns"]])
                    if found:
                        pending.setdefault(child, []).extend(found)
                        applied[child] += len(found)
                        n_keys += len(found)
            n_keys = _collect(batch, by_table, positions, maps, pending, whole, applied, stats, n_keys)
            last = batch.position
            if batch.timestamp:
                last_ts = batch.timestamp
            if n_keys >= FLUSH_KEYS or time.monotonic() - last_flush >= FLUSH_S:
                flush(last)
                n_keys = 0
            if time.monotonic() - t0 > max_seconds:
                log.warning("binlog sync stopped after %.0f s (max_seconds); the next run continues", max_seconds)
                stopped_early = True
                break
        else:
            stopped_early = False
    flush(last, at_end=not stopped_early)
    stats["rule_changes"] = {t: c for t, c in stats["rule_changes"].items() if c}
    secs = time.monotonic() - t0
    stats.update({"tables": len(positions), "seconds": round(secs, 3),
                  "changes_per_s": round(stats["changes"] / secs, 1) if secs > 0 else 0.0,
                  "position": str(last) if last else str(start)})
    log.info("binlog sync: %s", stats)
    return stats


def _child_keys(conn: Any, cfg: MysqlToPostgresConfig, tm: TableMap, fk: dict[str, Any], values: list[Any]) -> list[tuple[Any, ...]]:
    """The keys of ``tm``'s target rows whose foreign key ``fk`` holds ``values``."""
    if any(v is None for v in values):
        return []
    cols = [quote_pg(tm.column(c).target) for c in fk["columns"]]
    keys = [quote_pg(tm.column(c).target) for c in tm.key]
    head = f"SELECT {', '.join(keys)} FROM {load.target_name(cfg.target_schema, tm)} WHERE ".replace("%", "%%")
    where = " AND ".join(f"{c.replace('%', '%%')} = %s" for c in cols)
    return [tuple(r) for r in conn.execute(head + where, values).fetchall()]


def _collect(batch: Any, by_table: dict[str, str], positions: dict[str, Any], maps: dict[str, TableMap],
             pending: dict[str, list[tuple[Any, ...]]], whole: set[str], applied: dict[str, int], stats: dict[str, Any],
             n_keys: int) -> int:
    """Add a transaction's changed keys per synced table (tables whose position is before it)."""
    for ch in batch:
        k = by_table.get(ch.table)
        if k is None or k not in positions or not positions[k] < batch.position:
            continue
        tm = maps[k]
        stats["changes"] += 1
        applied[k] += 1
        if not tm.key:
            whole.add(k)
            continue
        for image in (ch.before, ch.after):
            if image is not None:
                pending.setdefault(k, []).append(tuple(image.get(c) for c in tm.key))
                n_keys += 1
    return n_keys


def _watermark_sync(cfg: MysqlToPostgresConfig, maps: dict[str, TableMap], pos: dict[str, dict[str, Any]],
                    max_seconds: float) -> dict[str, Any]:
    """Pages of rows in (watermark, key) order after the stored (watermark, key): every row of a bulk
    update sharing one timestamp is read, page after page; the first sync after the copy starts at the
    copy's watermark, ties included (re-applying a row is harmless)."""
    t0 = time.monotonic()
    out: dict[str, Any] = {"tables": {}}
    wm = cfg.watermark_column
    for k, tm in maps.items():
        if not tm.key or not any(c.source == wm for c in tm.columns):
            out["tables"][tm.source] = f"not synced: no key or no {wm!r} column (copy it again to refresh)"
            continue
        mark, last_key = pos[k]["watermark"], decode_key(pos[k].get("watermark_key"))
        n, removed = 0, 0
        changed: dict[str, dict[str, int]] = {}  # values a rule changed in the rows applied
        q = f"{quote_mysql(cfg.source_database)}.{quote_mysql(tm.source)}".replace("%", "%%")
        w = quote_mysql(wm).replace("%", "%%")
        kcols = ", ".join(quote_mysql(c) for c in tm.key).replace("%", "%%")
        with load.source_session(cfg.source_conn_id) as src:
            cur = src.cursor()
            while time.monotonic() - t0 < max_seconds:
                if not mark:
                    where, args = "TRUE", []
                elif last_key is None:
                    where, args = f"{w} >= %s", [mark]
                else:
                    where = f"({w} > %s OR ({w} = %s AND {after_key(tm.key, escape_percent=True)}))"
                    args = [mark, mark, *after_params(last_key)]
                cur.execute(f"SELECT CAST({w} AS CHAR), {kcols} FROM {q} WHERE {where} "
                            f"ORDER BY {w}, {kcols} LIMIT {int(cfg.chunk_rows)}", args)
                rows = cur.fetchall()
                if not rows:
                    break
                keys = [tuple(r[1:]) for r in rows]
                mark, last_key = text_of(rows[-1][0]), keys[-1]
                with pg_connect(cfg.target_conn_id) as conn:
                    lock_units(conn, [k])
                    up, _de, dead = load.refresh_keys(cur, conn, tm, cfg.source_database, cfg.target_schema, keys,
                                                      rule_counts=changed)
                    # a key changed only in case, accents or trailing spaces leaves its old spelling behind:
                    # no delete is seen here, so the rows MySQL would take for these keys are asked about
                    twins = load.collation_twins(conn, tm, cfg.target_schema, keys)
                    if twins:
                        _u, gone, dead2 = load.refresh_keys(cur, conn, tm, cfg.source_database, cfg.target_schema, twins)
                        dead += dead2
                        removed += gone
                    conn.execute(f"""UPDATE {load.STATE_SCHEMA}.m2p_positions SET watermark = %s, watermark_key = %s,
                                     changes_applied = changes_applied + %s, updated_at = now() WHERE unit_key = %s""",
                                 (mark, encode_key(list(last_key)), up, k))
                n += up
                if len(rows) < cfg.chunk_rows:
                    break
            cur.close()
        out["tables"][tm.source] = {"upserted": n, "watermark": mark, "stale_spellings_deleted": removed,
                                    "rule_changes": changed}
    out["seconds"] = round(time.monotonic() - t0, 3)
    return out
