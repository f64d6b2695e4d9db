"""Plan a tenant split: tenants and tables from ``information_schema``, the mapping applied, units sized.

Each tenant gets a database named by :func:`tenant_databases` (stable, collision-free, stored). Each
unit is one (tenant, target table): a copied table, a renamed one, a table that others merge into
(its sources are copied one after the other), or — with ``shared: copy`` — a shared reference table
copied whole. Dropped tables and, with ``shared: keep``, shared ones make no unit; the diff report
lists them. Rows per unit come from one ``GROUP BY tenant`` query per source table (the cost grows
with tables, not with tenants × tables).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from cutover import control
from cutover.connections import mysql_connect, pg_connect
from cutover.identifiers import NameMapper, quote_mysql, slugify
from cutover.lifecycle.model import PlannedUnit, UnitKey
from cutover.mysql_schema import DatabaseSchema, TableSchema, read_database, text_of
from cutover.tenant_split.config import MYSQL_MAX_NAME, PIPELINE, TenantSplitConfig
from cutover.tenant_split.mapping import Mapping, MappingError, TableRule, load_mapping

log = logging.getLogger(__name__)


class PlanError(ValueError):
    """The source or the request cannot be planned (the message says what and where)."""


@dataclass(frozen=True)
class SourceTable:
    """One source table feeding a unit: its name, tenant column (None: shared, copied whole), copy key."""

    table: str
    tenant_column: str | None
    key: tuple[str, ...]
    rows: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-able."""
        return {"table": self.table, "tenant_column": self.tenant_column, "key": list(self.key), "rows": self.rows}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SourceTable:
        """Inverse of :meth:`to_dict`."""
        return cls(d["table"], d.get("tenant_column"), tuple(d.get("key") or ()), int(d.get("rows") or 0))


def tenant_database(cfg: TenantSplitConfig, tenant: str) -> str:
    """The database name a tenant id maps to before collision handling: ``<prefix><slug>``, where the
    slug is the id lower-cased to ``[a-z0-9_]`` with a hash suffix whenever that changed it, cut to 64."""
    return slugify(tenant, prefix=cfg.database_prefix, max_bytes=MYSQL_MAX_NAME)


def stored_database(conn: Any, cfg: TenantSplitConfig, tenant: str) -> str:
    """The database name stored for a tenant (``conn``: the control connection); raises ``LookupError``
    for a tenant never planned."""
    db = control.load_name_map(conn, PIPELINE, cfg.scope).get(tenant)
    if db is None:
        raise LookupError(f"tenant {tenant!r} was never planned: no database name")
    return db


def tenant_databases(cfg: TenantSplitConfig, tenants: list[str], *, existing: set[str] | None = None) -> dict[str, str]:
    """Tenant id → database name for every tenant, reusing the names stored in ``cutover.name_map``.

    New names are checked against each other (case-insensitively: MySQL on macOS / Windows, or with
    ``lower_case_table_names``) and against ``existing`` databases on the target that are not ours,
    and stored. Raises :class:`PlanError` when a name is taken by a database Cutover did not create.
    """
    with pg_connect(cfg.control_conn_id) as conn:
        control.ensure_schema(conn)
        stored = control.load_name_map(conn, PIPELINE, cfg.scope)
        ours = set(stored.values())
        mapper = NameMapper(max_bytes=MYSQL_MAX_NAME, case_insensitive=True, existing=stored)
        out: dict[str, str] = {}
        new: dict[str, str] = {}
        for t in tenants:
            if t in stored:
                out[t] = stored[t]
                continue
            name = mapper.map(tenant_database(cfg, t))
            if existing and name.lower() in {e.lower() for e in existing} and name not in ours:
                raise PlanError(f"tenant {t!r} maps to database {name!r}, which already exists on the target and "
                                "was not created by Cutover: drop or rename it, or set another database_prefix")
            out[t] = new[t] = name
        if new:
            control.save_name_map(conn, PIPELINE, cfg.scope, new)
            log.info("tenant_split: %d new tenant database name(s), e.g. %s", len(new),
                     ", ".join(f"{k!r} → {v}" for k, v in list(new.items())[:5]))
    return out



def discover_tenants(cur: Any, cfg: TenantSplitConfig, schema: DatabaseSchema, rules: dict[str, TableRule]) -> list[str]:
    """Every tenant id, as text: the tenant directory's tenant column, or the distinct values of every
    tenant-scoped table's tenant column. Raises :class:`PlanError` when the directory is not a table."""
    db = quote_mysql(cfg.source_database)
    if cfg.tenant_directory:
        tab = schema.tables.get(cfg.tenant_directory)
        if tab is None:
            raise PlanError(f"tenant_directory {cfg.tenant_directory!r} is not a table of {cfg.source_database!r}")
        rule = rules.get(tab.name)
        col = (rule.tenant_column if rule and rule.tenant_column else None) or load_mapping(cfg.mapping_path).tenant_column
        if tab.column(col) is None:
            raise PlanError(f"tenant_directory {tab.name!r} has no tenant column {col!r}")
        cur.execute(f"SELECT DISTINCT {quote_mysql(col)} FROM {db}.{quote_mysql(tab.name)} WHERE {quote_mysql(col)} IS NOT NULL")
        values = {text_of(r[0]) for r in cur.fetchall()}
    else:
        values = set()
        for rule in rules.values():
            if rule.action == "copy" and rule.tenant_column:
                cur.execute(f"SELECT DISTINCT {quote_mysql(rule.tenant_column)} FROM {db}.{quote_mysql(rule.source)} "
                            f"WHERE {quote_mysql(rule.tenant_column)} IS NOT NULL")
                values |= {text_of(r[0]) for r in cur.fetchall()}
    return sorted(values, key=lambda v: (len(v), v) if v.isdigit() else (10**9, v))


def rows_per_tenant(cur: Any, database: str, table: TableSchema, tenant_column: str) -> dict[str, int]:
    """Rows of each tenant in one table (one ``GROUP BY`` over the tenant column's index)."""
    col = quote_mysql(tenant_column)
    cur.execute(f"SELECT {col}, COUNT(*) FROM {quote_mysql(database)}.{quote_mysql(table.name)} GROUP BY {col}")
    return {text_of(k): int(n) for k, n in cur.fetchall() if k is not None}


def load_rules(cfg: TenantSplitConfig, schema: DatabaseSchema) -> tuple[Mapping, dict[str, TableRule]]:
    """The mapping file applied to the source's tables; checks each tenant column exists.

    Raises :class:`MappingError` (file and line) for a mapping that does not fit the source.
    """
    mapping = load_mapping(cfg.mapping_path)
    rules = mapping.resolve(schema.tables)
    for rule in rules.values():
        if rule.action == "copy" and rule.tenant_column and schema.tables[rule.source].column(rule.tenant_column) is None:
            where = f" line {rule.line}" if rule.line else ""
            raise MappingError(f"{mapping.path}{where}: table {rule.source!r} has no tenant column {rule.tenant_column!r} "
                               f"(its columns: {', '.join(schema.tables[rule.source].column_names[:20])}); set "
                               "tenant_column for it, or mark it shared or drop")
    return mapping, rules


def plan_units(cfg: TenantSplitConfig, wanted: list[str] | None = None) -> tuple[list[PlannedUnit], dict[str, Any]]:
    """The units of a split and the plan's findings (``schema`` and ``rules`` for the diff report).

    ``wanted`` (unit names ``tenant`` or ``tenant / table``) and the config's ``tenants`` / ``tables``
    narrow the plan; a wanted tenant or table that does not exist raises :class:`PlanError`.
    """
    with mysql_connect(cfg.source_conn_id, database="") as src:
        cur = src.cursor()
        schema = read_database(cur, cfg.source_database)
        mapping, rules = load_rules(cfg, schema)
        tenants = discover_tenants(cur, cfg, schema, rules)
        targets: dict[str, list[TableRule]] = {}
        for rule in rules.values():
            if rule.action == "drop" or (rule.action == "shared" and cfg.shared == "keep"):
                continue
            targets.setdefault(rule.target, []).append(rule)
        counts: dict[str, dict[str, int]] = {}
        whole: dict[str, int] = {}
        for rule in rules.values():
            if rule.action == "copy" and rule.tenant_column:
                counts[rule.source] = rows_per_tenant(cur, cfg.source_database, schema.tables[rule.source], rule.tenant_column)
            elif rule.action == "shared" and cfg.shared == "copy":
                cur.execute(f"SELECT COUNT(*) FROM {quote_mysql(cfg.source_database)}.{quote_mysql(rule.source)}")
                whole[rule.source] = int(cur.fetchone()[0])
        with mysql_connect(cfg.target_conn_id, database="") as tgt:
            tc = tgt.cursor()
            tc.execute("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA")
            existing = {text_of(r[0]) for r in tc.fetchall()}
    want_tenants = set(cfg.tenants)
    want_tables = set(cfg.tables)
    want_pairs: set[tuple[str, str]] = set()
    for w in wanted or []:
        tenant, sep, table = w.rpartition(" / ")
        if sep:
            want_pairs.add((tenant, table))
        else:
            want_tenants.add(w)
    missing = sorted((want_tenants | {t for t, _ in want_pairs}) - set(tenants))
    if missing:
        raise PlanError(f"tenant(s) not in {cfg.source_database!r}: {missing[:20]} (it has {len(tenants)} tenants)")
    bad_tables = sorted((want_tables | {t for _, t in want_pairs}) - set(targets) - set(rules))
    if bad_tables:
        raise PlanError(f"table(s) not planned: {bad_tables[:20]} (target tables: {sorted(targets)[:30]})")
    picked = [t for t in tenants if (not want_tenants and not want_pairs) or t in want_tenants
              or any(t == p for p, _ in want_pairs)]
    dbs = tenant_databases(cfg, picked, existing=existing)
    units: list[PlannedUnit] = []
    for tenant in picked:
        for target, members in sorted(targets.items()):
            names = {target} | {m.source for m in members}
            if want_tables and not names & want_tables:
                continue
            if want_pairs and tenant not in want_tenants and not any(p == tenant and t in names for p, t in want_pairs):
                continue
            owner = next((m for m in members if not m.merged), members[0])
            sources = [SourceTable(m.source, m.tenant_column if m.action == "copy" else None,
                                   schema.tables[m.source].copy_key(),
                                   counts.get(m.source, {}).get(tenant, 0) if m.action == "copy" else whole.get(m.source, 0))
                       for m in sorted(members, key=lambda m: (m.merged, m.source))]
            units.append(PlannedUnit(
                UnitKey(cfg.scope, (tenant, target)), sum(s.rows for s in sources),
                {"tenant": tenant, "database": dbs[tenant], "table": target, "owner": owner.source,
                 "shared": owner.action == "shared", "sources": [s.to_dict() for s in sources]},
            ))
    findings = {"schema": schema, "rules": rules, "mapping": mapping, "tenants": len(picked), "databases": dbs}
    log.info("tenant_split: %d tenant(s), %d source table(s) (%d dropped, %d target tables), %d unit(s)", len(picked),
             len(rules), sum(r.action == "drop" for r in rules.values()), len(targets), len(units))
    return units, findings
