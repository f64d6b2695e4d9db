"""The build's stage functions per table (plan, prepare, copy, finalize, verify) and the run's close.

Unit: one MySQL table → one PostgreSQL table; key ``<source db>><target schema>:<table>``. The plan
carries the table's whole mapping (:class:`cutover.mysql_to_postgres.typemap.TableMap`), so every later
stage works from what the plan decided (and the report shows).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from cutover import binlog
from cutover.connections import pg_connect
from cutover.identifiers import NameMapper, quote_mysql, quote_pg
from cutover.lifecycle.model import PlannedUnit, UnitKey
from cutover.lifecycle.spec import CopyResult, UnitContext, Verification
from cutover.mysql_schema import read_database, table_names, text_of
from cutover.mysql_to_postgres import load, target
from cutover.mysql_to_postgres.config import PIPELINE, MysqlToPostgresConfig
from cutover.mysql_to_postgres.typemap import (
    TableMap,
    TypeMapError,
    count_flags,
    json_columns,
    load_overrides,
    map_table,
)
from cutover.streaming import Progress

log = logging.getLogger(__name__)


class PlanError(ValueError):
    """The plan cannot be made (no such table, a name taken, the source writable): the message says which."""


def unit_key(cfg: MysqlToPostgresConfig, table: str) -> UnitKey:
    """The unit of a source table."""
    return UnitKey(cfg.scope, (table,))


def plan_tables(cfg: MysqlToPostgresConfig, wanted: list[str] | None = None) -> tuple[list[TableMap], dict[str, Any]]:
    """Read the source catalog, select the tables (``wanted`` unit names, else the config's list or
    pattern) and map each; returns the maps and what the plan found (binlog status, read-only proof).

    A table that cannot be mapped (a type with no rule, an override that does not fit the column) is left
    out of the maps and named in ``found["unmapped"]`` (``{table: error with the override to write}``):
    its unit fails, the others go on.

    Raises :class:`PlanError` for an unknown wanted / listed table or no table at all,
    :class:`~cutover.mysql_to_postgres.typemap.TypeMapError` for a malformed override file (every key and
    value checked) or one naming a table that is not there, and
    :class:`~cutover.mysql_to_postgres.readonly.WritableSourceError` for a writable source (unless allowed).
    """
    from cutover.mysql_to_postgres.readonly import WritableSourceError, prove_read_only

    overrides = load_overrides(cfg.overrides_path(), required=cfg.overrides != type(cfg).overrides)
    with load.source_session(cfg.source_conn_id) as conn:
        cur = conn.cursor()
        names = table_names(cur, cfg.source_database)
        if wanted:
            picked = wanted_tables(cfg, wanted)
        elif cfg.tables:
            picked = list(cfg.tables)
        else:
            picked = [n for n in names if cfg.selects(n)]
        missing = [t for t in picked if t not in names]
        if missing:
            raise PlanError(f"no base table {missing} in MySQL database {cfg.source_database!r}")
        if not picked:
            raise PlanError(f"no table of {cfg.source_database!r} matches {cfg.table_pattern!r}")
        unknown = set(overrides) - set(names)
        if unknown:
            raise TypeMapError(f"{cfg.overrides_path()}: tables {sorted(unknown)} are not in {cfg.source_database!r}")
        schema = read_database(cur, cfg.source_database, tables=set(picked), with_create=False)
        jcols = json_columns(cur, cfg.source_database)
        found: dict[str, Any] = {}
        try:
            binlog.require_binlog(cur)
            found["binlog"] = "ok"
        except binlog.BinlogUnavailable as exc:
            found["binlog"] = f"unavailable: {exc}"
    first = schema.tables[picked[0]]
    try:
        found["read_only"] = prove_read_only(cfg.source_conn_id, cfg.source_database, first.name,
                                             first.columns[0].name if first.columns else None)
    except WritableSourceError as exc:
        if not cfg.allow_writable_source:
            raise
        log.warning("allow_writable_source is on: %s", exc)
        found["read_only"] = {"writable": str(exc)}
    tables = NameMapper()
    indexes = NameMapper()
    maps = []
    unmapped: dict[str, str] = {}
    for t in picked:
        try:
            maps.append(map_table(schema.tables[t], target=tables.map(t), json_columns=jcols.get(t, set()),
                                  zero_date=cfg.zero_date, enum_empty=cfg.enum_empty, overrides=overrides.get(t),
                                  index_names=indexes))
        except TypeMapError as exc:  # this table's unit fails; every other table goes on
            unmapped[t] = f"{exc} (overrides file: {cfg.overrides_path()})"
            log.error("table %s cannot be mapped: %s", t, unmapped[t])
    found["unmapped"] = unmapped
    found["tables"] = picked
    found["rows_estimate"] = {t: schema.tables[t].rows_estimate for t in unmapped}
    with load.source_session(cfg.source_conn_id) as conn:
        cur = conn.cursor()
        for tm in maps:
            found.setdefault("mis_encoded", {}).update(mis_encoded(cur, cfg.source_database, schema.tables[tm.source], tm))
    return maps, found


def mis_encoded(cur: Any, database: str, ts: Any, tm: TableMap, samples: int = 5) -> dict[str, int]:
    """Text in a non-UTF-8 column (latin1 …) whose bytes are valid multi-byte UTF-8 — UTF-8 written through
    a latin1 connection ("mojibake"): copying it converts it faithfully into garbage (``cafÃ©``). Each such
    column gets a warning with the count and a few keys in the report; returns ``{"table.column": count}``."""
    cols = [c for c in ts.columns if c.charset and not c.charset.lower().startswith(("utf8", "binary", "ascii"))
            and any(m.source == c.name for m in tm.columns)]
    out: dict[str, int] = {}
    q = f"{quote_mysql(database)}.{quote_mysql(tm.source)}"
    for c in cols:
        col = quote_mysql(c.name)
        cond = (f"{col} REGEXP '[^ -~]' AND HEX(CONVERT(BINARY {col} USING utf8mb4)) = HEX({col}) "
                f"AND LENGTH({col}) > CHAR_LENGTH(CONVERT(BINARY {col} USING utf8mb4))")
        cur.execute(f"SELECT COUNT(*) FROM {q} WHERE {cond}".replace("%", "%%"), ())
        n = int(cur.fetchone()[0])
        if not n:
            continue
        keys: list[Any] = []
        if tm.key:
            cur.execute(f"SELECT {', '.join(quote_mysql(k) for k in tm.key)} FROM {q} WHERE {cond} LIMIT {samples}"
                        .replace("%", "%%"), ())
            keys = [r[0] if len(r) == 1 else list(r) for r in cur.fetchall()]
        cm = next(m for m in tm.columns if m.source == c.name)
        cm.warnings.append(f"{n} value(s) look like UTF-8 bytes stored as {c.charset} (mojibake); copied as {c.charset} "
                           f"text converted to UTF-8 — fix the source or override; e.g. keys {keys}")
        log.warning("%s.%s: %d value(s) look mis-encoded (UTF-8 stored as %s), e.g. keys %s", tm.source, c.name, n,
                    c.charset, keys)
        out[f"{tm.source}.{c.name}"] = n
    return out


def plan(cfg: MysqlToPostgresConfig, wanted: list[str] | None) -> list[PlannedUnit]:
    """The units: one per selected table, with its mapping, row estimate and sync mode."""
    maps, found = plan_tables(cfg, wanted)
    mode = cfg.sync_mode
    if mode == "auto":
        mode = "binlog" if found.get("binlog") == "ok" else "watermark"
    if mode == "binlog" and found.get("binlog") != "ok":
        raise PlanError(f"sync_mode binlog, but {found['binlog']}")
    log.info("mysql_to_postgres: %d table(s), sync %s; %s", len(maps), mode,
             "source proven read-only" if "writable" not in found.get("read_only", {}) else "SOURCE IS WRITABLE")
    ro = found.get("read_only", {}).get("attempt", "")
    units = {m.source: PlannedUnit(unit_key(cfg, m.source), max(m.rows_estimate, 1),
                                   {"table": m.to_dict(), "sync_mode": mode, "read_only": ro}) for m in maps}
    for t, error in found.get("unmapped", {}).items():  # planned, to fail in prepare with the reason
        units[t] = PlannedUnit(unit_key(cfg, t), max(int(found["rows_estimate"].get(t) or 0), 1),
                               {"plan_error": error, "sync_mode": mode, "read_only": ro})
    return [units[t] for t in found.get("tables") or list(units) if t in units]


def wanted_tables(cfg: MysqlToPostgresConfig, wanted: list[str] | None) -> list[str]:
    """The table names of ``wanted`` unit names or keys (empty: none named)."""
    return [w.split(":", 1)[1] if w.startswith(cfg.scope + ":") else w for w in wanted or []]


def _table(unit: PlannedUnit) -> TableMap:
    return TableMap.from_dict(unit.detail["table"])


def prepare_unit(cfg: MysqlToPostgresConfig, unit: PlannedUnit) -> dict[str, Any]:
    """Create the target table fresh (dropping a previous one) and clear the unit's checkpoint and sync
    position — unless a copy was killed part-way into a table of the same columns: a new run resumes it.
    Raises :class:`TypeMapError` (permanent) for a table the plan could not map, with the override to write."""
    if "plan_error" in unit.detail:  # the plan could not map this table: it fails here, the others go on
        raise TypeMapError(str(unit.detail["plan_error"]))
    tm = _table(unit)
    key = str(unit.key)
    with pg_connect(cfg.target_conn_id) as conn:
        load.ensure_state(conn)
        cp = load.read_checkpoint(conn, key)
        exists = conn.execute("SELECT to_regclass(%s) IS NOT NULL",
                              (load.target_name(cfg.target_schema, tm),)).fetchone()[0]
        if cp is not None and not cp["done"] and exists:
            have = [r[0] for r in conn.execute(
                "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped "
                "ORDER BY attnum", (load.target_name(cfg.target_schema, tm),)).fetchall()]
            if have == [c.target for c in tm.columns]:
                return {"kept": "resuming a copy in progress", "rows_written": cp["rows_written"]}
        target.create_table(conn, tm, cfg.target_schema)
        conn.execute(f"DELETE FROM {load.STATE_SCHEMA}.m2p_checkpoints WHERE unit_key = %s", (key,))
        conn.execute(f"DELETE FROM {load.STATE_SCHEMA}.m2p_positions WHERE unit_key = %s", (key,))
    return {"created": f"{cfg.target_schema}.{tm.target}", "columns": len(tm.columns)}


def _start_marks(cfg: MysqlToPostgresConfig, cur: Any, tm: TableMap, mode: str) -> tuple[str | None, str | None]:
    """Where the sync starts for this table: the binlog position now, or the watermark column's maximum now."""
    if mode == "binlog":
        return str(binlog.current_position(cur)), None
    wm = cfg.watermark_column
    if tm.key and any(c.source == wm for c in tm.columns):
        cur.execute(f"SELECT CAST(MAX({quote_mysql(wm)}) AS CHAR) FROM {quote_mysql(cfg.source_database)}."
                    f"{quote_mysql(tm.source)}".replace("%", "%%"), ())
        v = cur.fetchone()[0]
        return None, text_of(v) if v is not None else ""
    return None, None


def copy_unit(cfg: MysqlToPostgresConfig, unit: PlannedUnit, ctx: UnitContext) -> CopyResult:
    """Copy the table in keyset chunks (each with its checkpoint and progress in one PostgreSQL
    transaction), or whole from one snapshot when it has no key. Resumes after the last committed chunk.

    Every value a rule changes (zero / partial dates and year 0 → NULL, the invalid ENUM value, characters
    a charset cannot carry to UTF-8, a boolean override's other numbers) is flagged by MySQL in the chunk's
    own read and counted over the rows actually written (dead letters left out), kept in the checkpoint
    (a resumed copy goes on counting) and returned in ``detail["rule_changes"]``
    (``{column: {rule: values}}``)."""
    tm = _table(unit)
    key = str(unit.key)
    mode = str(unit.detail.get("sync_mode") or "binlog")
    progress_in_chunk = load.same_database(cfg.target_conn_id, cfg.control_conn_id)
    tgt, cols = load.target_name(cfg.target_schema, tm), load.column_list(tm)
    with pg_connect(cfg.target_conn_id) as conn:
        load.ensure_state(conn)
        cp = load.read_checkpoint(conn, key) or {"last_key": None, "rows_read": 0, "rows_written": 0, "done": False,
                                                 "start_position": None, "start_watermark": None}
    if cp["done"]:
        return CopyResult(cp["rows_read"], cp["rows_written"], {"resumed": "already done",
                                                                "rule_changes": cp.get("rule_counts") or {}})
    counts: dict[str, dict[str, int]] = dict(cp.get("rule_counts") or {})  # values changed by rule, so far
    prog = Progress(f"{PIPELINE} {tm.source}", unit.rows, logger=ctx.log)
    read, written, dead_n = cp["rows_read"], cp["rows_written"], 0
    prog.add(read)
    t0 = time.monotonic()
    if not tm.key:
        with load.source_session(cfg.source_conn_id, snapshot=True) as src, pg_connect(cfg.target_conn_id) as conn:
            cur = src.cursor()
            pos = None
            if mode == "binlog":
                cur.execute("SHOW STATUS WHERE Variable_name IN ('binlog_snapshot_file', 'binlog_snapshot_position')")
                st = {text_of(k).lower(): text_of(v) for k, v in cur.fetchall()}
                if st.get("binlog_snapshot_file"):
                    pos = f"{st['binlog_snapshot_file']}:{st['binlog_snapshot_position']}"
                else:
                    pos = str(binlog.current_position(cur))
            cur.close()
            counts = {}
            written, dead = load.reload_whole(src, conn, tm, cfg.source_database, cfg.target_schema, cfg.chunk_rows,
                                              rule_counts=counts)
            read = written + len(dead)
            load.record_dead(conn, PIPELINE, key, tm.source, dead, run_id=ctx.run_id) if progress_in_chunk else None
            load.write_checkpoint(conn, key, last_key=None, rows_read=read, rows_written=written, done=True,
                                  start_position=pos, rule_counts=counts)
            if progress_in_chunk:
                ctx.chunk_done(conn, read, written)
        if not progress_in_chunk:
            with pg_connect(cfg.control_conn_id) as c2:
                load.record_dead(c2, PIPELINE, key, tm.source, dead, run_id=ctx.run_id)
        prog.add(read)
        prog.finish()
        return CopyResult(read, written, {"keyless": True, "dead_letters": len(dead), "rule_changes": counts,
                                          "seconds": round(time.monotonic() - t0, 3)})

    with load.source_session(cfg.source_conn_id) as src:
        cur = src.cursor()
        if cp["start_position"] is None and cp["start_watermark"] is None:
            cp["start_position"], cp["start_watermark"] = _start_marks(cfg, cur, tm, mode)
        start_pos, start_wm = cp["start_position"], cp["start_watermark"]

        def next_chunk(prev: Any) -> load.Chunk | None:
            last = cp["last_key"] if prev is None else prev.keys[-1]
            ch = load.read_chunk(cur, tm, cfg.source_database, last, cfg.chunk_rows)
            return ch if ch.lines else None

        with pg_connect(cfg.target_conn_id) as conn:
            for ch in load.prefetch(next_chunk, None):
                with conn.transaction():
                    w = load.write_lines(conn, tgt, cols, ch)
                    read += len(ch.lines)
                    written += w.rows
                    dead_n += len(w.dead)
                    chunk_counts = count_flags(tm, ch.copied_flags(w.dead), {}) if ch.flags else {}
                    for col, by_rule in chunk_counts.items():
                        for label, n in by_rule.items():
                            counts.setdefault(col, {})[label] = counts.get(col, {}).get(label, 0) + n
                    load.write_checkpoint(conn, key, last_key=ch.keys[-1], rows_read=read, rows_written=written,
                                          done=False, start_position=start_pos, start_watermark=start_wm,
                                          rule_counts=counts)
                    if progress_in_chunk:
                        load.record_dead(conn, PIPELINE, key, tm.source, w.dead, run_id=ctx.run_id)
                        ctx.chunk_done(conn, read, written)
                if not progress_in_chunk:
                    with pg_connect(cfg.control_conn_id) as c2:
                        load.record_dead(c2, PIPELINE, key, tm.source, w.dead, run_id=ctx.run_id)
                        ctx.chunk_done(c2, read, written)
                prog.add(len(ch.lines))
                if w.dead:
                    ctx.log.warning("%s: %d row(s) refused → dead letters (first: %s)", tm.source, len(w.dead), w.dead[0][1])
            with conn.transaction():
                load.write_checkpoint(conn, key, last_key=None, rows_read=read, rows_written=written, done=True,
                                      start_position=start_pos, start_watermark=start_wm)
        cur.close()
    prog.finish()
    if counts:
        ctx.log.info("%s: values changed by rule: %s", tm.source, counts)
    return CopyResult(read, written, {"dead_letters": dead_n, "rule_changes": counts,
                                      "seconds": round(time.monotonic() - t0, 3),
                                      "rows_per_s": round((read - cp["rows_read"]) / max(time.monotonic() - t0, 1e-9))})


def finalize_unit(cfg: MysqlToPostgresConfig, unit: PlannedUnit) -> dict[str, Any]:
    """Keys and indexes, identity sequences past the copied maximum, the ON UPDATE trigger, ANALYZE, and
    the table's sync position (from the copy's start); safe to run again."""
    tm = _table(unit)
    key = str(unit.key)
    with pg_connect(cfg.target_conn_id) as conn:
        built = target.build_keys(conn, tm, cfg.target_schema)
        seqs = target.reset_identity(conn, tm, cfg.target_schema)
        trig = target.on_update_triggers(conn, tm, cfg.target_schema)
        cp = load.read_checkpoint(conn, key) or {}
        mode = str(unit.detail.get("sync_mode") or "binlog")
        conn.execute(
            f"""INSERT INTO {load.STATE_SCHEMA}.m2p_positions (unit_key, mode, position, watermark)
                VALUES (%s, %s, %s, %s) ON CONFLICT (unit_key) DO NOTHING""",
            (key, mode, cp.get("start_position"), cp.get("start_watermark")))
    with pg_connect(cfg.target_conn_id, autocommit=True) as conn:
        conn.execute(f"ANALYZE {load.target_name(cfg.target_schema, tm)}")
    return {**built, "identity": seqs, "on_update_trigger": trig}


def verify_unit(cfg: MysqlToPostgresConfig, unit: PlannedUnit, run_id: str) -> Verification:
    """Prove the table: in binlog mode at a fence (:func:`cutover.mysql_to_postgres.verify.verify_at_fence`:
    both sides at one binlog position, so it passes while the source is written); in watermark mode catch
    up, then compare with the source read now. Counts and checksums after type mapping through the
    consistency engine (the differing keys when any), then the GX gate."""
    from cutover.mysql_to_postgres import sync
    from cutover.mysql_to_postgres.verify import compare_table, verify_at_fence

    tm = _table(unit)
    key = str(unit.key)
    with pg_connect(cfg.target_conn_id) as conn:
        load.ensure_state(conn)
        row = conn.execute(f"SELECT mode, position FROM {load.STATE_SCHEMA}.m2p_positions WHERE unit_key = %s",
                           (key,)).fetchone()
    if row is not None and row[0] == "binlog" and row[1]:
        return verify_at_fence(cfg, tm, key, run_id)
    caught = sync.sync_units(cfg, [key], {key: tm})
    res = compare_table(cfg, tm, key, run_id)
    res.detail["caught_up"] = caught
    res.detail["fence"] = None
    res.detail["fence_note"] = ("watermark mode: no binlog position to prove at; compared with the source read now "
                                "(under steady writes this table verifies once they stop)")
    return res


def close_run(cfg: MysqlToPostgresConfig, run_id: str, units: list[dict[str, Any]]) -> dict[str, Any]:
    """Foreign keys between the copied tables (each table's fail its unit), the pairs registered with the
    consistency engine, and the type-mapping report (HTML + JSON beside the data docs)."""
    from cutover.mysql_to_postgres import report

    failed: dict[str, str] = {}
    maps = {}
    for u in units:
        d = (u.get("detail") or {}).get("plan") or {}
        if "table" in d:
            maps[u["unit_key"]] = TableMap.from_dict(d["table"])
    targets = {tm.source: tm.target for tm in maps.values()}
    fks: dict[str, list[str]] = {}
    done = {u["unit_key"] for u in units if u["state"] in ("verified", "cut_over")}
    for k, tm in maps.items():
        if k not in done:
            continue
        try:
            with pg_connect(cfg.target_conn_id) as conn:
                fks[tm.source] = target.add_foreign_keys(conn, tm, cfg.target_schema,
                                                         {s: t for s, t in targets.items()})
        except Exception as exc:  # noqa: BLE001 - the unit fails with the database's reason
            failed[k] = f"foreign key of {tm.source}: {exc}"
    pairs = register_pairs(cfg, [tm for k, tm in maps.items() if k in done and k not in failed])
    found: dict[str, Any] = {}
    plan_maps = list(maps.values())
    if not units:  # a dry run records no unit: map again for the report (a failed plan has none to show)
        try:
            plan_maps, found = plan_tables(cfg)
        except Exception as exc:  # noqa: BLE001 - the plan's own failure already makes the run red
            return {"failed": failed, "type_mapping": {"error": f"no report: the plan failed ({exc})"}}
    # the report shows the states the verdict will judge: with the failures of these run-level checks
    judged = [{**u, "state": "failed", "error": failed[u["unit_key"]], "failed_stage": "close"}
              if u["unit_key"] in failed else u for u in units]
    entry = report.save(cfg, run_id, plan_maps, judged, found, dry_run=not units)
    return {"failed": failed, "foreign_keys": fks, "pairs": pairs, "type_mapping": entry}


def register_pairs(cfg: MysqlToPostgresConfig, maps: list[TableMap]) -> list[str]:
    """Register each copied table with the consistency engine (``consistency_checks`` compares them)."""
    from cutover.consistency.registry import ensure_registry, register_pair
    from cutover.mysql_to_postgres.verify import pair_spec

    names = []
    with pg_connect(cfg.control_conn_id) as conn:
        ensure_registry(conn)
        for tm in maps:
            if not tm.key:
                continue
            spec = pair_spec(cfg, tm)
            register_pair(conn, spec, pipeline=PIPELINE)
            names.append(spec.name)
    return names


def known_units(cfg: MysqlToPostgresConfig) -> list[UnitKey]:
    """Every table with a checkpoint or a sync position in the target (built at least in part)."""
    with pg_connect(cfg.target_conn_id) as conn:
        load.ensure_state(conn)
        rows = conn.execute(f"""SELECT unit_key FROM {load.STATE_SCHEMA}.m2p_checkpoints
                                UNION SELECT unit_key FROM {load.STATE_SCHEMA}.m2p_positions""").fetchall()
    return sorted((UnitKey.parse(r[0]) for r in rows if r[0].startswith(cfg.scope + ":")), key=str)


def drop_unit(conn: Any, cfg: MysqlToPostgresConfig, key: UnitKey) -> dict[str, Any]:
    """Rollback with drop: the target table, its checkpoint, its sync position and its consistency pair."""
    from cutover.consistency.registry import unregister_pair

    name = _stored_target(cfg, key)
    with pg_connect(cfg.target_conn_id) as tconn:
        existed = target.drop_table(tconn, name, cfg.target_schema)
        load.ensure_state(tconn)
        tconn.execute(f"DELETE FROM {load.STATE_SCHEMA}.m2p_checkpoints WHERE unit_key = %s", (str(key),))
        tconn.execute(f"DELETE FROM {load.STATE_SCHEMA}.m2p_positions WHERE unit_key = %s", (str(key),))
    try:
        unregister_pair(conn, pair_name(cfg, key.parts[0]))
    except Exception:  # noqa: BLE001 - no pair registered
        pass
    return {"dropped": f"{cfg.target_schema}.{name}" if existed else None}


def pair_name(cfg: MysqlToPostgresConfig, table: str) -> str:
    """The consistency pair's name of a table."""
    return f"{PIPELINE}:{cfg.source_database}.{table}->{cfg.target_schema}"


def latest_plans(cfg: MysqlToPostgresConfig, keys: list[str]) -> dict[str, TableMap]:
    """unit key → the table mapping of its latest plan (one query; keys never planned are left out)."""
    from cutover import control

    with pg_connect(cfg.control_conn_id) as conn:
        control.ensure_schema(conn)
        rows = conn.execute(f"""SELECT DISTINCT ON (unit_key) unit_key, detail -> 'plan' -> 'table' FROM {control.SCHEMA}.units
                                WHERE pipeline = %s AND unit_key = ANY(%s) AND detail -> 'plan' ? 'table'
                                ORDER BY unit_key, updated_at DESC""", (PIPELINE, keys)).fetchall()
    return {k: TableMap.from_dict(d) for k, d in rows if d}


def _stored_target(cfg: MysqlToPostgresConfig, key: UnitKey) -> str:
    """The target table name the latest plan of ``key`` chose (the source name when never planned)."""
    tm = latest_plans(cfg, [str(key)]).get(str(key))
    return tm.target if tm is not None else key.parts[0]


def route_unit(conn: Any, cfg: MysqlToPostgresConfig, key: UnitKey, backend: str) -> dict[str, Any]:
    """Point the table's readers (and cooperative writers) at ``backend`` (``mysql`` or ``postgres``): a
    routing entry in the control schema naming where the table now lives. Inside a cutover's write pause
    (the entry is ``paused``) a move to PostgreSQL keeps it paused — :func:`cutover.mysql_to_postgres.
    cutover.table_switch` makes it active once the reverse stream runs; a move back to MySQL (rollback)
    is always active."""
    from cutover import control

    name = _stored_target(cfg, key)
    where = ({"backend": "postgres", "conn_id": cfg.target_conn_id, "schema": cfg.target_schema, "table": name}
             if backend == "postgres" else
             {"backend": "mysql", "conn_id": cfg.source_conn_id, "database": cfg.source_database, "table": key.parts[0]})
    now = control.get_route(conn, PIPELINE, cfg.scope, key.parts[0])
    paused = backend == "postgres" and now is not None and now["state"] == "paused"
    control.set_route(conn, PIPELINE, cfg.scope, key.parts[0], where, state="paused" if paused else "active",
                      reason=f"readers → {backend}" + (" (write pause: active once the switch completes)" if paused else ""))
    return where


__all__ = ["PlanError", "close_run", "copy_unit", "finalize_unit", "known_units", "plan", "prepare_unit",
           "quote_pg", "route_unit", "verify_unit"]
