"""The stage bodies of ``tenant_split`` (what :mod:`cutover.tenant_split.spec` hands the life cycle).

* :func:`plan_and_report` — the plan, the binary-log start position, the schema diff report;
* :func:`prepare_unit` — the tenant database, the target table (no triggers), the triggers' backup;
* :func:`copy_unit` — every source table of the unit (:mod:`.copy`), progress per chunk;
* :func:`finalize_unit` — triggers restored and proven, AUTO_INCREMENT checked, ANALYZE;
* :func:`close_run` — per tenant whose tables all verified: views and events, foreign keys proven.
"""

from __future__ import annotations

import logging
from typing import Any

from cutover import control
from cutover.connections import mysql_connect, pg_connect
from cutover.identifiers import quote_mysql
from cutover.lifecycle.model import PlannedUnit, UnitKey
from cutover.lifecycle.spec import CopyResult, UnitContext, Verification
from cutover.mysql_schema import read_database, table_names, text_of
from cutover.streaming import Progress
from cutover.tenant_split import copy as copier
from cutover.tenant_split import target
from cutover.tenant_split.config import PIPELINE, TenantSplitConfig
from cutover.tenant_split.mapping import load_mapping
from cutover.tenant_split.plan import SourceTable, load_rules, plan_units, stored_database
from cutover.tenant_split.verify import column_types

log = logging.getLogger(__name__)


def binlog_start(cfg: TenantSplitConfig) -> dict[str, Any]:
    """The source's binary-log position now (recorded before any copy), or why there is none.

    ``{"file", "pos"}`` when the server logs ROW images; ``{"unavailable": reason}`` otherwise (the
    split then runs in the weaker copy + verify mode, writes paused at cutover).
    """
    if cfg.binlog == "off":
        return {"unavailable": "binlog: off (copy + verify; writes paused at cutover)"}
    from cutover import binlog

    with mysql_connect(cfg.source_conn_id, database="") as conn:
        cur = conn.cursor()
        try:
            binlog.require_binlog(cur)
            pos = binlog.current_position(cur)
        except binlog.BinlogUnavailable as exc:
            log.warning("tenant_split: no binary-log catch-up for this run: %s", exc)
            return {"unavailable": str(exc)}
    return {"file": pos.file, "pos": pos.pos}


def plan_and_report(cfg: TenantSplitConfig, wanted: list[str] | None) -> list[PlannedUnit]:
    """Plan the units, each carrying the binary-log position taken *before* the plan read anything
    (every later change is after it; the catch-up starts there). The schema diff report and the
    tenant → database names go into the run's evidence when the run closes (:func:`close_run`)."""
    start = binlog_start(cfg)
    units, _ = plan_units(cfg, wanted)
    for u in units:
        u.detail["binlog_start"] = start
    return units


def _unit_figure(u: dict[str, Any], failed: dict[str, str]) -> dict[str, Any]:
    """One unit's figures from its verified record: ``rows_source`` (the source rows its verify counted,
    every source table of the unit), ``rows_target``, ``dead_letters``, ``checksums_match``, ``verified``
    (its state is an end state and the run's close did not fail it), ``state`` and ``error``."""
    d = u.get("detail") or {}
    v = d.get("verify") or {}
    state = "failed" if u["unit_key"] in failed else str(u.get("state"))
    fig: dict[str, Any] = {"verified": state in ("verified", "cut_over"), "state": state,
                           "error": failed.get(u["unit_key"]) or u.get("error")}
    if v.get("sources") is not None and v.get("target_rows") is not None:
        fig["rows_source"] = sum(int(x.get("rows") or 0) for x in v["sources"].values())
        fig["rows_target"] = int(v["target_rows"])
        fig["dead_letters"] = int(v.get("dead_letters") or 0)
        fig["checksums_match"] = u.get("checksum_source") is not None and u.get("checksum_source") == u.get("checksum_target")
    return fig


def report_figures(units: list[dict[str, Any]], rules: dict[str, Any], orphans: dict[str, Any],
                   failed: dict[str, str] | None = None, *, dry_run: bool = False) -> dict[str, dict[str, Any]]:
    """Target table → the schema diff report's figures (see :class:`cutover.tenant_split.diff_report.TableDiff`),
    built only from the run's unit records (``cutover.units``: state, checksums and the latest verify
    detail; ``failed``: units the run's close fails) and the rows outside every tenant
    (:func:`cutover.tenant_split.plan.outside_rows`), so that the report says what the verdict says:
    ``rows_source`` = the verified source rows of the planned tenants + rows outside every tenant that
    are not copied + rows of tenants the run left out. In a dry run only the tables' rows outside the
    tenants are given (no unit ran)."""
    failed = failed or {}
    figures: dict[str, dict[str, Any]] = {}
    for u in units:
        key = UnitKey.parse(u["unit_key"], 2)
        tenant, table = key.parts
        uf = _unit_figure(u, failed)
        f = figures.setdefault(table, {"rows_source": 0, "rows_target": 0, "dead_letters": 0, "units": 0,
                                       "units_verified": 0, "checksums_match": True, "per_tenant": {}})
        f["units"] += 1
        f["units_verified"] += int(uf["verified"])
        for k in ("rows_source", "rows_target", "dead_letters"):
            f[k] += int(uf.get(k) or 0)
        f["checksums_match"] = bool(f["checksums_match"] and uf.get("checksums_match"))
        f["per_tenant"][tenant] = uf
        if not uf["verified"] and uf.get("error") and not f.get("error"):
            f["error"] = f"tenant {tenant}: {uf['error']}"
    for f in figures.values():
        f["verified"] = f["units_verified"] == f["units"]
    targets: dict[str, list[str]] = {}
    for r in rules.values():
        if r.action == "copy":
            targets.setdefault(r.target, []).append(r.source)
    for target_table, sources in targets.items():
        found = [orphans[x] for x in sources if x in orphans]
        if not found or (target_table not in figures and not dry_run):
            continue
        f = figures.setdefault(target_table, {"verified": None})
        for o in found:
            n = int(o.orphans)
            policy = o.policy
            if policy.mode == "report":
                f["orphans_reported"] = f.get("orphans_reported", 0) + n
            elif policy.mode == "error":
                f["orphans_refused"] = f.get("orphans_refused", 0) + n
            elif policy.tenant in (f.get("per_tenant") or {}) or dry_run:
                f["orphans_copied"] = f.get("orphans_copied", 0) + n  # counted in that tenant's verified rows
                f["copy_to"] = policy.tenant
            else:  # its copy_to tenant is not in this run: another run copies them
                f["excluded"] = f.get("excluded", 0) + n
            f["excluded"] = f.get("excluded", 0) + int(o.excluded)
            if not dry_run:
                f["rows_source"] = int(f.get("rows_source") or 0) + int(o.excluded) + (
                    n if policy.mode in ("report", "error") or policy.tenant not in (f.get("per_tenant") or {}) else 0)
    return figures


def schema_report(cfg: TenantSplitConfig, run_id: str, units: list[dict[str, Any]], schema: Any, rules: Any, *,
                  phase: str = "copied", orphans: dict[str, Any] | None = None,
                  failed: dict[str, str] | None = None) -> dict[str, Any]:
    """The schema diff report of the run (source vs the DDL the mapping implies) in its ``phase``
    (``dry_run`` / ``planned`` / ``copied``), with the figures of :func:`report_figures` per target
    table, saved as HTML + xlsx + JSON; returns the evidence entry."""
    from cutover.tenant_split import diff_report

    figures = report_figures(units, rules, orphans or {}, failed, dry_run=phase == "dry_run")
    diff = diff_report.build_diff(schema, rules).with_phase(phase)
    known = {t.table for t in diff.tables if t.action != "drop"}
    figures = {k: v for k, v in figures.items() if k in known}
    if figures:
        diff = diff.with_figures(figures)
    paths = diff_report.save_report(diff, run_id)
    return diff_report.evidence_entry(paths, diff)


def _renames(cfg: TenantSplitConfig, rules: dict[str, Any]) -> dict[str, str | None]:
    """source table → its table in a tenant database (None: none there)."""
    out: dict[str, str | None] = {}
    for r in rules.values():
        kept = r.action == "copy" or (r.action == "shared" and cfg.shared == "copy")
        out[r.source] = r.target if kept else None
    return out


def prepare_unit(cfg: TenantSplitConfig, unit: PlannedUnit, *, run_id: str) -> dict[str, Any]:
    """Create the tenant database and the unit's table (from the owner source table, without triggers),
    back up the triggers of its source tables; safe to run again."""
    d = unit.detail
    db, table = d["database"], d["table"]
    sources = [SourceTable.from_dict(s) for s in d["sources"]]
    with mysql_connect(cfg.source_conn_id, database="") as sconn:  # only the unit's tables: cost per unit, not per table
        scur = sconn.cursor()
        names = table_names(scur, cfg.source_database)
        schema = read_database(scur, cfg.source_database, tables={d["owner"], *(s.table for s in sources)})
        scur.execute("SELECT DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME FROM information_schema.SCHEMATA "
                     "WHERE SCHEMA_NAME = %s", (cfg.source_database,))
        charset, collation = scur.fetchone()
    rules = load_mapping(cfg.mapping_path).resolve(names)  # checked against the columns by the plan
    renames = _renames(cfg, rules)
    owner = schema.tables[d["owner"]]
    ddl, findings = target.table_ddl(owner, table, renames)
    triggers = [t for s in sources for t in schema.tables[s.table].triggers]
    saved = target.backup_triggers(cfg, str(unit.key), triggers, table)
    with mysql_connect(cfg.target_conn_id, database="") as tconn:
        tcur = tconn.cursor()
        tcur.execute(f"SET SESSION lock_wait_timeout = {target.LOCK_WAIT_S}")
        copier.ensure_state(tcur, cfg.state_database)
        target.create_database(tcur, db, str(charset), str(collation))
        tcur.execute("SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s", (db, table))
        fresh = int(tcur.fetchone()[0]) == 0
        tcur.execute(f"USE {quote_mysql(db)}")
        tcur.execute("SET SESSION foreign_key_checks = 0")
        tcur.execute(ddl)
        aside = target.drop_triggers(tcur, db, table, [t.name for t in triggers])
        state = quote_mysql(cfg.state_database)
        if fresh:  # a table created now has no rows: whatever state an earlier build left is stale
            copier.clear_checkpoints(tcur, cfg.state_database, str(unit.key), db)
            tcur.execute(f"DELETE FROM {state}.binlog_positions WHERE target_database = %s AND target_table = %s",
                         (db, table))
        start = d.get("binlog_start") or {}
        if start.get("file"):  # the catch-up of this table starts at the earliest plan's position
            tcur.execute(
                f"""INSERT IGNORE INTO {state}.binlog_positions
                    (target_database, target_table, file, pos, started_file, started_pos) VALUES (%s, %s, %s, %s, %s, %s)""",
                (db, table, start["file"], int(start["pos"]), start["file"], int(start["pos"])))
    log.info("tenant %s: %s.%s ready (%d trigger(s) backed up and kept off%s)", d["tenant"], db, table, len(saved),
             f", {len(aside)} set aside again" if aside else "")
    return {"database": db, "table": table, "triggers_backed_up": [s["name"] for s in saved], "findings": findings}


def generated_columns(cur: Any, database: str, table: str) -> set[str]:
    """The generated columns (STORED / PERSISTENT or VIRTUAL) of a table, lower-cased: MySQL and MariaDB
    mark them in ``EXTRA`` (MySQL 8's ``DEFAULT_GENERATED`` marks a default expression, not one)."""
    cur.execute("""SELECT COLUMN_NAME, EXTRA FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s""",
                (database, table))
    out = set()
    for name, extra in cur.fetchall():
        e = text_of(extra or "").upper().replace("DEFAULT_GENERATED", "")
        if "GENERATED" in e or "PERSISTENT" in e:
            out.add(text_of(name).lower())
    return out


def copy_unit(cfg: TenantSplitConfig, unit: PlannedUnit, ctx: UnitContext) -> CopyResult:
    """Copy each source table of the unit from its checkpoint; progress in the log and the control schema."""
    d = unit.detail
    mode = copier.copy_mode(cfg)
    totals = copier.UnitCopy()
    if (d.get("binlog_start") or {}).get("file"):
        _catch_up_from_copy_start(cfg, unit)
    progress = Progress(f"tenant {d['tenant']} → {d['database']}.{d['table']}", unit.rows, logger=log)
    with mysql_connect(cfg.target_conn_id, database="") as tconn:
        tcur = tconn.cursor()
        generated = generated_columns(tcur, d["database"], d["table"])
        # generated columns (STORED or VIRTUAL) are never written: the target computes them (MySQL 3105 /
        # MariaDB 1906 otherwise); both copy modes take their insert column list from here
        ttypes = {c.lower(): c for c in column_types(tcur, d["database"], d["table"]) if c.lower() not in generated}
    pg = pg_connect(cfg.control_conn_id)
    conn = pg.__enter__()
    try:
        def on_commit(t: copier.UnitCopy) -> None:
            ctx.chunk_done(conn, t.rows_read, t.rows_written)
            conn.commit()
            progress.add(t.rows_read - progress.done)

        per_table = {}
        for s in (SourceTable.from_dict(x) for x in d["sources"]):
            with mysql_connect(cfg.source_conn_id, database="") as sconn:
                types = column_types(sconn.cursor(), cfg.source_database, s.table)
            cols = [c for c in types if c.lower() in ttypes]
            floats = frozenset(c for c in cols if types[c].data_type.lower() == "float")
            src = copier.Source(cfg.source_database, s, cols, d["tenant"], floats)
            cp = copier.copy_source(cfg, src, d["database"], d["table"], str(unit.key), mode=mode, totals=totals,
                                    on_commit=on_commit, run_id=ctx.run_id)
            per_table[s.table] = {"rows_read": cp.rows_read, "rows_written": cp.rows_written,
                                  "snapshot_position": cp.snapshot_position, "keyless": not s.key}
        progress.finish()
        log.info("tenant %s → %s.%s: %s rows written, %d chunk(s), %d dead letter(s)", d["tenant"], d["database"],
                 d["table"], f"{totals.rows_written:,}", totals.chunks, totals.dead_letters)
    finally:
        pg.__exit__(None, None, None)
    return CopyResult(totals.rows_read, totals.rows_written,
                      {"mode": mode, "chunks": totals.chunks, "dead_letters": totals.dead_letters, "sources": per_table})


def _catch_up_from_copy_start(cfg: TenantSplitConfig, unit: PlannedUnit) -> None:
    """Move a fresh unit's catch-up position from the plan's to the log's end now, as its copy starts.

    Every change committed before now is in the rows the copy will read (it reads the live table), so
    the catch-up need not read the log between the plan and this copy — with source and target on one
    server that stretch holds every earlier unit's copy. Only for a copy that has not begun (no
    checkpoint): a resumed copy keeps its position.
    """
    from cutover import binlog

    d = unit.detail
    with mysql_connect(cfg.source_conn_id, database="") as sconn:
        now = binlog.current_position(sconn.cursor())
    with mysql_connect(cfg.target_conn_id, database="") as tconn:
        tcur = tconn.cursor()
        tcur.execute(f"SELECT COUNT(*) FROM {quote_mysql(cfg.state_database)}.copy_checkpoints WHERE unit_hash = %s "
                     "AND target_database = %s", (copier.unit_hash(str(unit.key)), d["database"]))
        if int(tcur.fetchone()[0]):
            return
        tcur.execute(f"UPDATE {quote_mysql(cfg.state_database)}.binlog_positions SET file = %s, pos = %s "
                     "WHERE target_database = %s AND target_table = %s", (now.file, now.pos, d["database"], d["table"]))


def finalize_unit(cfg: TenantSplitConfig, unit: PlannedUnit, *, run_id: str) -> dict[str, Any]:
    """Restore the unit's triggers and prove them equal to the backup; AUTO_INCREMENT past the copied ids."""
    d = unit.detail
    db, table = d["database"], d["table"]
    backups = target.backed_up_triggers(cfg, str(unit.key))
    with mysql_connect(cfg.source_conn_id, database="") as sconn:
        owner = read_database(sconn.cursor(), cfg.source_database, tables={d["owner"]}, with_create=False).tables[d["owner"]]
    with mysql_connect(cfg.target_conn_id, database="") as tconn:
        tcur = tconn.cursor()
        tcur.execute(f"SET SESSION lock_wait_timeout = {target.LOCK_WAIT_S}")
        restored = target.restore_triggers(tcur, db, table, backups)
        auto = target.auto_increment_state(tcur, db, owner, table)
    with pg_connect(cfg.control_conn_id) as conn:
        for name in restored:
            control.mark_restored(conn, PIPELINE, str(unit.key), "trigger", name)
    log.info("tenant %s: %s.%s finalized: triggers %s; auto_increment %s", d["tenant"], db, table,
             restored or "none", auto or "none")
    return {"triggers": restored, "triggers_proven_equal": sorted(backups), "auto_increment": auto}


def _run_phase(cfg: TenantSplitConfig, run_id: str, units: list[dict[str, Any]]) -> tuple[str, list[str] | None]:
    """(the report's phase, the run's ``units`` Param): ``dry_run`` when the run's params say so,
    ``copied`` once any unit got past ``prepared``, else ``planned``."""
    with pg_connect(cfg.control_conn_id) as conn:
        run = control.get_run(conn, run_id) or {}
    params = run.get("params") or {}
    wanted = [str(x) for x in (params.get("units") or [])] or None
    if params.get("dry_run"):
        return "dry_run", wanted
    copied = any(u.get("state") not in ("planned", "prepared") or int(u.get("rows_written") or 0) for u in units)
    return ("copied" if copied else "planned"), wanted


def close_run(cfg: TenantSplitConfig, run_id: str, units: list[dict[str, Any]]) -> dict[str, Any]:
    """Per tenant whose units all verified: its views and events recreated, every foreign key proven;
    then the rows outside every tenant counted again and the schema diff report written from the run's
    unit records (so its figures and labels say what the verdict says).

    Returns ``{"failed": {unit key: error}, "tenants": {tenant: {...}}, "orphans": {table: {...}}}``: a
    broken foreign key fails every unit of its tenant (the tenant cannot be cut over), and so do rows
    outside every tenant that appeared after the plan in a table whose policy is ``orphans: error``.
    """
    from cutover.tenant_split.mapping import MappingError
    from cutover.tenant_split.plan import PlanError, outside_rows

    by_tenant: dict[str, list[dict[str, Any]]] = {}
    for u in units:
        key = UnitKey.parse(u["unit_key"], 2)
        by_tenant.setdefault(key.parts[0], []).append(u)
    with mysql_connect(cfg.source_conn_id, database="") as sconn:
        schema = read_database(sconn.cursor(), cfg.source_database)
    _, rules = load_rules(cfg, schema)
    phase, wanted = _run_phase(cfg, run_id, units)
    try:  # a plan that failed (a refusal) still gets its report: what it says then is the plan's reason
        orphans = outside_rows(cfg, sorted(by_tenant) if by_tenant and phase != "dry_run" else None, wanted)
    except (PlanError, MappingError) as exc:
        log.warning("tenant_split run %s: rows outside the tenants not counted: %s", run_id, exc)
        orphans = {}
    failed: dict[str, str] = {}
    for source, o in orphans.items():
        if o.orphans and o.policy.mode == "error" and phase != "dry_run":
            target_table = rules[source].target
            for u in units:
                if UnitKey.parse(u["unit_key"], 2).parts[1] == target_table:
                    failed[u["unit_key"]] = f"rows outside every tenant appeared after the plan: {o.describe()}"
    renames = _renames(cfg, rules)
    tenants: dict[str, Any] = {}
    if by_tenant:
        with mysql_connect(cfg.target_conn_id, database="") as tconn:
            tcur = tconn.cursor()
            for tenant, rows in sorted(by_tenant.items()):
                if any(r["state"] not in ("verified", "cut_over") for r in rows):
                    tenants[tenant] = {"skipped": "not every table verified"}
                    continue
                db = ((rows[0].get("detail") or {}).get("plan") or {}).get("database") or _stored_database(cfg, tenant)
                routines = target.restore_routines(tcur, schema.views + schema.events, cfg.source_database, db, renames)
                problems = target.validate_foreign_keys(tcur, db)
                tenants[tenant] = {"database": db, "routines": routines,
                                   "foreign_keys": "hold" if not problems else problems}
                if problems:
                    for r in rows:
                        failed.setdefault(r["unit_key"], "; ".join(problems[:5]))
                log.info("tenant %s (%s): %d view(s)/event(s), foreign keys %s", tenant, db, len(routines),
                         "hold" if not problems else f"BROKEN: {problems[:3]}")
    outside = {k: v.to_dict() for k, v in orphans.items()}
    for o in orphans.values():
        if o.orphans:
            log.warning("tenant_split run %s: %s (orphans: %s)", run_id, o.describe(), o.policy)
    entry = schema_report(cfg, run_id, units, schema, rules, phase=phase, orphans=orphans, failed=failed)
    with pg_connect(cfg.control_conn_id) as conn:
        control.add_evidence(conn, run_id, {"schema_diff": entry,
                                            "tenant_databases": control.load_name_map(conn, PIPELINE, cfg.scope),
                                            "copy_mode": copier.copy_mode(cfg),
                                            "orphans": outside})
    return {"failed": failed, "tenants": tenants, "orphans": outside}


def _stored_database(cfg: TenantSplitConfig, tenant: str) -> str:
    with pg_connect(cfg.control_conn_id) as conn:
        return stored_database(conn, cfg, tenant)


def verify_caught_up(cfg: TenantSplitConfig, unit: PlannedUnit, *, run_id: str, rounds: int = 1) -> Verification:
    """Verify a unit at a fence: the target caught up to exactly the position of the source's read snapshot.

    With a binary log (the run recorded a start position): :func:`cutover.tenant_split.verify.verify_at_fence`
    — under the tenant's catch-up lock, a consistent snapshot of the source at position P, the tenant's
    tables caught up to P and no further, both sides checksummed as of P. One round converges however
    fast the source is written; the fence position is in the Verification's ``detail["fence"]`` (the
    unit's evidence). ``rounds`` > 1 proves again at a new fence after a failure (a difference at a fence
    is real, so the default is 1).

    Without a binary log (the weaker mode, documented): the tenant's rows compared as they are now, no
    catch-up possible; the cutover's check under the write pause is the final word.
    """
    from cutover.binlog import BinlogUnavailable
    from cutover.tenant_split.verify import verify_at_fence, verify_unit

    d = unit.detail
    if not (d.get("binlog_start") or {}).get("file"):
        return verify_unit(cfg, d, str(unit.key), run_id=run_id)
    v: Verification | None = None
    for attempt in range(1, max(1, rounds) + 1):
        try:
            v = verify_at_fence(cfg, d, str(unit.key), run_id=run_id)
        except BinlogUnavailable as exc:
            log.warning("tenant %s, %s: no fence (%s): verified as the tables are now", d["tenant"], d["table"], exc)
            v = verify_unit(cfg, d, str(unit.key), run_id=run_id)
            v.detail["fence"] = {"unavailable": str(exc)}
            return v
        v.detail["fence"]["rounds"] = attempt
        v.detail["catch_up"] = {"applied": v.detail["fence"]["applied"], "rounds": attempt,
                                "reached": v.detail["fence"]["reached"]}
        if v.passed:
            return v
        log.warning("tenant %s, %s: differs at the fence %s: %s", d["tenant"], d["table"], v.detail["fence"]["position"],
                    v.failures[:2])
    assert v is not None
    return v
