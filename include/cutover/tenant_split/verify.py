"""Verify one unit: the tenant's rows in the source (all its source tables) against the target table.

* **count and checksum of every row**, in the consistency engine's canonical row form
  (:mod:`cutover.consistency.normalize`: each value rendered by its kind — decimals at their scale,
  timestamps in UTC to the microsecond, bytes as hex, text with its length — joined and hashed to 60
  bits): one ``COUNT(*), SUM(hash)`` query per side, the source filtered by the tenant column. Equal
  counts and sums say every row arrived unchanged;
* on a difference, :func:`cutover.consistency.diff.diff_pair` names the missing, extra and changed
  keys (keyed tables; a table merged from several sources is compared as a whole);
* the **GX gate** (:func:`cutover.quality.run_gate`, data docs rebuilt): the row count, the key not
  null and unique, on the target table.

Rows that went to dead letters are expected to be missing: the check subtracts them, and names them.

**At a fence** (:func:`verify_at_fence`, what the build and the cutover use with a binary log): the
source is read inside a consistent snapshot at binlog position P and the target is caught up to exactly
P under the tenant's catch-up lock, so both sides show one moment however fast the source is written.
The same pass over the log advances the other tenants it can (their locks free, not behind): the
build's fences read the log once between them, not once per tenant.
:func:`reprove_rows` re-proves only named rows at a later fence (the cutover's pause: what changed since
the full proof), by each row's canonical hash on both sides.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any

from cutover import control
from cutover.connections import mysql_connect, pg_connect
from cutover.consistency.normalize import MYSQL, PhysicalType, infer_kind
from cutover.identifiers import quote_mysql, slugify
from cutover.lifecycle.spec import Verification
from cutover.mysql_schema import text_of
from cutover.tenant_split.config import PIPELINE, TenantSplitConfig
from cutover.tenant_split.plan import SourceTable

log = logging.getLogger(__name__)


def _q(name: str) -> str:
    """A quoted identifier safe in a statement run with parameters (``%`` doubled)."""
    return quote_mysql(name).replace("%", "%%")


def column_types(cur: Any, database: str, table: str) -> dict[str, PhysicalType]:
    """Column → physical type, as the consistency engine reads them."""
    cur.execute(
        """SELECT COLUMN_NAME, DATA_TYPE, NUMERIC_SCALE, COLUMN_TYPE, CHARACTER_SET_NAME, DATETIME_PRECISION
           FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s ORDER BY ORDINAL_POSITION""",
        (database, table))
    return {text_of(r[0]): PhysicalType(text_of(r[1]), None if r[2] is None else int(r[2]), text_of(r[3] or ""),
                                         text_of(r[4] or ""),
                                    None if r[5] is None else int(r[5])) for r in cur.fetchall()}


def row_checksum_sql(table_sql: str, columns: list[str], types: dict[str, PhysicalType], kinds: dict[str, Any],
                     where: str = "") -> str:
    """``SELECT COUNT(*), SUM(<60-bit hash of the canonical row>)`` over ``table_sql`` (already quoted)."""
    parts = [MYSQL.canonical(_q(c), kinds[c], types.get(c)) for c in columns]
    return f"SELECT COUNT(*), COALESCE(SUM({MYSQL.hash60(MYSQL.row_text(parts))}), 0) FROM {table_sql}{where}"


def verify_unit(cfg: TenantSplitConfig, detail: dict[str, Any], unit_key: str, *, run_id: str,
                source_cursor: Any = None) -> Verification:
    """Counts and checksums of one unit (see the module docstring); never raises for a mismatch.

    ``source_cursor``: a cursor on the source whose session is already inside a read snapshot (a fence:
    :func:`verify_at_fence`): the source is read there, as of that snapshot, and the session is left in
    it. None: a snapshot of its own, now (the weaker mode: the target may show another moment)."""
    db, table, tenant = detail["database"], detail["table"], detail["tenant"]
    sources = [SourceTable.from_dict(s) for s in detail["sources"]]
    failures: list[str] = []
    with mysql_connect(cfg.target_conn_id, database="") as tconn:
        tcur = tconn.cursor()
        tcur.execute("SET SESSION time_zone = '+00:00'")
        ttypes = column_types(tcur, db, table)
        if not ttypes:
            return Verification(0, 0, None, None, [f"target table {db}.{table} does not exist"])
    src_count, src_sum = 0, 0
    per_source = {}
    with contextlib.ExitStack() as stack:
        if source_cursor is None:
            sconn = stack.enter_context(mysql_connect(cfg.source_conn_id, database=""))
            scur = sconn.cursor()
        else:
            sconn, scur = None, source_cursor
        scur.execute("SET SESSION time_zone = '+00:00'")
        stypes = {s.table: column_types(scur, cfg.source_database, s.table) for s in sources}
        # compared: the target's columns every source has (a merged source fills the columns it has; the
        # columns all of them share are checked row by row, and the count covers every row)
        lowers = {s.table: {c.lower(): c for c in stypes[s.table]} for s in sources}
        cols = [c for c in ttypes if all(c.lower() in lowers[s.table] for s in sources)]
        first = sources[0].table
        kinds = {c: infer_kind(stypes[first][lowers[first][c.lower()]], ttypes[c]) for c in cols}
        if sconn is not None:
            scur.execute("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            scur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
        for s in sources:
            src_cols = [lowers[s.table][c.lower()] for c in cols]
            skinds = {lowers[s.table][c.lower()]: k for c, k in kinds.items()}
            cond, params = s.tenant_filter(cfg.source_database, tenant)  # with orphans: copy_to, those rows too
            where = f" WHERE {cond}" if cond else ""
            scur.execute(row_checksum_sql(f"{_q(cfg.source_database)}.{_q(s.table)}", src_cols, stypes[s.table], skinds, where),
                         params)
            n, h = scur.fetchone()
            per_source[s.table] = {"rows": int(n), "checksum": str(h), "columns": len(cols)}
            src_count += int(n)
            src_sum += int(h)
        if sconn is not None:
            sconn.rollback()
    with pg_connect(cfg.control_conn_id) as pg:
        dead = int(pg.execute(f"SELECT count(*) FROM {control.SCHEMA}.dead_letters WHERE pipeline = %s AND unit_key = %s",
                              (PIPELINE, unit_key)).fetchone()[0])
    with mysql_connect(cfg.target_conn_id, database="") as tconn:
        tcur = tconn.cursor()
        tcur.execute("SET SESSION time_zone = '+00:00'")
        tcur.execute(row_checksum_sql(f"{_q(db)}.{_q(table)}", cols, ttypes, kinds), [])
        n, h = tcur.fetchone()
        tgt_count, tgt_sum = int(n), int(h)
    expected = src_count - dead
    if tgt_count != expected:
        failures.append(f"{db}.{table}: {tgt_count} rows, the source has {src_count}"
                        + (f" ({dead} in dead letters)" if dead else ""))
    elif src_sum != tgt_sum and not dead:
        failures.append(f"{db}.{table}: checksum differs (source {src_sum}, target {tgt_sum}) over {src_count} rows")
    detail_out: dict[str, Any] = {"sources": per_source, "dead_letters": dead, "target_rows": tgt_count}
    if failures and len(sources) == 1 and sources[0].key:
        detail_out["diff"] = _explain(cfg, sources[0], tenant, db, table)
        d = detail_out["diff"]
        failures.append(f"missing {len(d.get('missing_keys') or [])}, extra {len(d.get('extra_keys') or [])}, "
                        f"changed {len(d.get('changed_keys') or [])} key(s); first: "
                        f"{(d.get('missing_keys') or d.get('extra_keys') or d.get('changed_keys') or [None])[:5]}")
    if cfg.gx_gate and not failures:
        detail_out["gate"] = _gate(cfg, db, table, sources, expected, run_id, failures)
    return Verification(src_count, tgt_count, str(src_sum), str(tgt_sum), failures, detail_out)


def _explain(cfg: TenantSplitConfig, s: SourceTable, tenant: str, db: str, table: str) -> dict[str, Any]:
    """Which keys differ (the consistency engine over the tenant's rows)."""
    from cutover.consistency.diff import diff_pair
    from cutover.consistency.spec import Endpoint, PairSpec

    lit = "CONVERT(X'" + tenant.encode("utf-8").hex() + "' USING utf8mb4)"
    query = (f"SELECT * FROM {_q(cfg.source_database)}.{_q(s.table)} WHERE {_q(s.tenant_column)} = {lit}"
             if s.tenant_column else f"SELECT * FROM {_q(cfg.source_database)}.{_q(s.table)}")
    try:
        with mysql_connect(cfg.target_conn_id, database="") as tconn:
            tcur = tconn.cursor()
            types = column_types(tcur, db, table)
        cols = [c for c in types if c not in s.key]
        kinds = {c: str(infer_kind(None, t)) for c, t in types.items()}
        spec = PairSpec(name=f"{PIPELINE}:{db}.{table}", source=Endpoint(cfg.source_conn_id, query=query),
                        target=Endpoint(cfg.target_conn_id, table=f"{db}.{table}"), key=s.key, columns=tuple(cols),
                        kinds=kinds)
        return diff_pair(spec).details(max_keys=100)
    except Exception as exc:  # noqa: BLE001 - the explanation is a courtesy; the failure stands
        log.warning("tenant_split: could not list the differing keys of %s.%s: %s", db, table, exc)
        return {"error": str(exc)}


def _gate(cfg: TenantSplitConfig, db: str, table: str, sources: list[SourceTable], rows: int, run_id: str,
          failures: list[str]) -> dict[str, Any]:
    from cutover.quality import run_gate

    key = sources[0].key if len(sources) == 1 else ()
    exps: list[dict[str, Any]] = [{"type": "expect_table_row_count_to_equal", "kwargs": {"value": rows}}]
    for c in key:
        exps.append({"type": "expect_column_values_to_not_be_null", "kwargs": {"column": c}})
    if len(key) == 1:
        exps.append({"type": "expect_column_values_to_be_unique", "kwargs": {"column": key[0]}})
    elif key:
        exps.append({"type": "expect_compound_columns_to_be_unique", "kwargs": {"column_list": list(key)}})
    res = run_gate(f"generated__tenant_split__{slugify(db)}__{slugify(table)}", conn_id=cfg.target_conn_id, schema=db, table=table,
                   expectations=exps, run_id=run_id, raise_on_failure=False)
    if not res.success:
        failures.append(f"GX gate failed on {db}.{table}: " + "; ".join(res.failures[:5]))
    return {"success": res.success, "evaluated": res.evaluated, "failed": res.failed, "docs": res.docs_index}


def verify_at_fence(cfg: TenantSplitConfig, detail: dict[str, Any], unit_key: str, *, run_id: str,
                    advance_others: bool = True) -> Verification:
    """:func:`verify_unit` with both sides at one binlog position: a proof that converges under writes.

    Holds :func:`cutover.tenant_split.sync.catch_up_lock` on the tenant's database (no other catch-up
    can move it), opens a read snapshot on the source with :func:`cutover.binlog.consistent_snapshot`
    (its position P is the *fence*), catches the tenant's tables up to exactly P
    (:func:`~cutover.tenant_split.sync.catch_up_held`), checksums the source inside that snapshot and
    the target, and lets go. A writer that keeps writing moves neither side during the proof, so one
    round is the answer (the old catch-up-then-compare chased a moving source and, under a steady
    writer, never met it).

    **One pass over the log for every tenant** (``advance_others``, the default): the catch-up to P
    decodes the whole log from the lowest stored position anyway (every tenant's rows of the shared
    tables), so it also advances every other built tenant whose catch-up lock is free right now
    (:func:`~cutover.tenant_split.sync.free_catch_up_locks`: taken without waiting; a tenant held by
    another verify, the sync DAG or a cutover is skipped, and so is one routed to its database) and
    whose tables are not behind this tenant's (``companions`` of
    :func:`~cutover.tenant_split.sync.catch_up_held`: one far behind would make the fence read log this
    tenant does not need), on a pass of at least
    :data:`~cutover.tenant_split.sync.RIDE_ALONG_MIN_BYTES` of log (a short delta between two fences is
    cheaper read again than every companion's rows applied: measured). Their locks are let go as soon as the catch-up has committed, before the
    checksums: only this tenant's tables must stay at P while they are checksummed. The next unit's
    fence, of any tenant, then finds only the log written since this one: a build's verify costs one
    decode of the log since the copy, not one per tenant (which, under a steady writer of a few
    thousand rows/s, fell further behind with each tenant and never finished). Other tenants'
    positions end at P or wherever they were. Should the shared pass fail (another tenant's change
    refused, its position purged), the tenant is caught up alone and the error is kept in the evidence
    (``others.error``): another tenant's trouble never fails this unit's proof.

    The Verification's ``detail["fence"]`` is ``{"position": "file:pos", "reached", "applied",
    "tenant_applied", "lock_wait_s", "catch_up_s", "check_s", "others": {"advanced": [tenants],
    "applied", "busy": [tenants], "behind": [tenants], "error"?}}`` (seconds; ``applied``: the rows the
    catch-up to the fence applied in all, ``tenant_applied`` of them to this tenant, ``others.applied``
    to the other tenants it advanced; ``busy`` / ``behind``: the built tenants it left alone). Raises :class:`cutover.binlog.BinlogUnavailable` when the source
    has no binary log (the caller falls back to :func:`verify_unit`), ``TimeoutError`` when another
    catch-up holds the tenant too long.
    """
    from cutover.binlog import consistent_snapshot
    from cutover.tenant_split import sync

    tenant, db = detail["tenant"], detail["database"]
    t0 = time.monotonic()
    with sync.catch_up_lock(cfg, [db]):
        t1 = time.monotonic()
        with contextlib.ExitStack() as stack:
            others = (stack.enter_context(sync.free_catch_up_locks(cfg, exclude={db})) if advance_others
                      else sync.FreeLocks(None, {}, []))
            sconn = stack.enter_context(mysql_connect(cfg.source_conn_id, database=""))
            scur = sconn.cursor()
            try:
                fence = consistent_snapshot(scur)
                failed_with_others = None
                try:
                    caught = sync.catch_up_held(cfg, {tenant: db}, stop_at=fence, companions=others.tenants)
                except Exception as exc:
                    if not others.tenants:
                        raise
                    # another tenant's change would not apply (or its position is gone): this unit's proof
                    # must not fail for it; what was committed stays (positions move with their changes)
                    failed_with_others = f"{type(exc).__name__}: {exc}"[:500]
                    log.warning("tenant %s: the fence catch-up with %d other tenant(s) failed (%s): caught up alone",
                                tenant, len(others.tenants), failed_with_others)
                    others.release()
                    caught = sync.catch_up_held(cfg, {tenant: db}, stop_at=fence)
                others.release()  # committed: the other tenants may move on; this one stays at P
                t2 = time.monotonic()
                v = verify_unit(cfg, detail, unit_key, run_id=run_id, source_cursor=scur)
            finally:
                sconn.rollback()
    t3 = time.monotonic()
    per = caught.get("tenants") or {}
    mine = per.get(tenant) or {}
    riding = caught.get("companions") or {}
    advanced = [t for t in riding.get("advanced") or [] if t in per]
    v.detail["fence"] = {"position": str(fence), "reached": caught.get("reached"), "applied": int(caught.get("applied") or 0),
                         "tenant_applied": int(mine.get("applied") or 0),
                         "lock_wait_s": round(t1 - t0, 4), "catch_up_s": round(t2 - t1, 4), "check_s": round(t3 - t2, 4),
                         "others": {"advanced": sorted(advanced),
                                    "applied": sum(int((per.get(t) or {}).get("applied") or 0) for t in advanced),
                                    "busy": sorted(others.busy), "behind": sorted(riding.get("behind") or []),
                                    "short": sorted(riding.get("short") or [])}}
    if failed_with_others:
        v.detail["fence"]["others"]["error"] = failed_with_others
    return v


def _row_hash_sql(columns: list[str], types: dict[str, PhysicalType], kinds: dict[str, Any]) -> str:
    """The 60-bit hash of one row's canonical form (the term :func:`row_checksum_sql` sums)."""
    return MYSQL.hash60(MYSQL.row_text([MYSQL.canonical(_q(c), kinds[c], types.get(c)) for c in columns]))


#: keys per statement when rows are re-proved by key
REPROVE_CHUNK = 500


def reprove_rows(cfg: TenantSplitConfig, detail: dict[str, Any], unit_key: str, keys: list[Any] | None,
                 source_cursor: Any) -> dict[str, Any]:
    """Re-prove only the rows of one unit that changed since an earlier proof, at the fence of ``source_cursor``.

    ``keys``: the target table's changed keys (tuples in copy-key order, as
    :func:`cutover.tenant_split.sync.catch_up_held` names them in ``touched``), or None when they
    cannot be named (a keyless table, a cascade). ``source_cursor``: a session inside the fence's
    snapshot (the target already caught up to that fence). Each key's canonical row hash is compared
    on both sides (a row on one side only is a difference). A unit with ``keys`` None, several
    sources (a merge) or no key gets a full :func:`verify_unit` instead, and a note saying so.

    Returns ``{"mode": "keys" | "full", "rows": rows compared, "failures": [text], "note"?: text,
    "differing"?: [first keys]}``; never raises for a difference.
    """
    from dataclasses import replace

    db, table, tenant = detail["database"], detail["table"], detail["tenant"]
    sources = [SourceTable.from_dict(s) for s in detail["sources"]]
    if keys is None or len(sources) != 1 or not sources[0].key:
        why = ("its changed rows cannot be named by key" if keys is None else
               "it merges several source tables" if len(sources) != 1 else "it has no key")
        v = verify_unit(replace(cfg, gx_gate=False), detail, unit_key, run_id="", source_cursor=source_cursor)
        return {"mode": "full", "rows": v.rows_target, "failures": list(v.failures),
                "note": f"{db}.{table}: whole table checksummed ({why})"}
    if not keys:
        return {"mode": "keys", "rows": 0, "failures": []}
    s = sources[0]
    scur = source_cursor
    stypes = column_types(scur, cfg.source_database, s.table)
    with mysql_connect(cfg.target_conn_id, database="") as tconn:
        tcur = tconn.cursor()
        tcur.execute("SET SESSION time_zone = '+00:00'")
        ttypes = column_types(tcur, db, table)
        if not ttypes:
            return {"mode": "keys", "rows": 0, "failures": [f"target table {db}.{table} does not exist"]}
        lower = {c.lower(): c for c in stypes}
        tlower = {c.lower(): c for c in ttypes}
        cols = [c for c in ttypes if c.lower() in lower]
        kinds = {c: infer_kind(stypes[lower[c.lower()]], ttypes[c]) for c in cols}
        skinds = {lower[c.lower()]: k for c, k in kinds.items()}
        src_cols = [lower[c.lower()] for c in cols]
        skey = [lower.get(k.lower(), k) for k in s.key]
        tkey = [tlower.get(k.lower(), k) for k in s.key]
        cond, params = s.tenant_filter(cfg.source_database, tenant)
        src_hash, tgt_hash = _row_hash_sql(src_cols, stypes, skinds), _row_hash_sql(cols, ttypes, kinds)
        differing: list[Any] = []
        compared = 0
        uniq = sorted({tuple(k) for k in keys}, key=repr)
        for i in range(0, len(uniq), REPROVE_CHUNK):
            chunk = uniq[i:i + REPROVE_CHUNK]
            marks = ", ".join("(" + ", ".join(["%s"] * len(s.key)) + ")" for _ in chunk)
            flat = [v for k in chunk for v in k]
            stuple = "(" + ", ".join(_q(c) for c in skey) + ")"
            ttuple = "(" + ", ".join(_q(c) for c in tkey) + ")"
            where = f" WHERE {stuple} IN ({marks})" + (f" AND {cond}" if cond else "")
            scur.execute(f"SELECT {', '.join(_q(c) for c in skey)}, {src_hash} FROM "
                         f"{_q(cfg.source_database)}.{_q(s.table)}{where}", [*flat, *params])
            src = {tuple(r[:-1]): int(r[-1]) for r in scur.fetchall()}
            tcur.execute(f"SELECT {', '.join(_q(c) for c in tkey)}, {tgt_hash} FROM {_q(db)}.{_q(table)} "
                         f"WHERE {ttuple} IN ({marks})", flat)
            tgt = {tuple(r[:-1]): int(r[-1]) for r in tcur.fetchall()}
            compared += len(set(src) | set(tgt))
            differing += [k for k in sorted(set(src) | set(tgt), key=repr) if src.get(k) != tgt.get(k)]
        tconn.rollback()
    out: dict[str, Any] = {"mode": "keys", "rows": compared, "failures": []}
    if differing:
        out["differing"] = [list(k) for k in differing[:20]]
        out["failures"].append(f"{db}.{table}: {len(differing)} of the {compared} changed row(s) differ from the source "
                               f"at the fence; first keys: {out['differing'][:5]}")
    return out
