"""Plan a tenant split: tenants and tables from ``information_schema``, the mapping applied, units sized.

Each tenant gets a database named by :func:`tenant_databases` (stable, collision-free, stored). Each
unit is one (tenant, target table): a copied table, a renamed one, a table that others merge into
(its sources are copied one after the other), or — with ``shared: copy`` — a shared reference table
copied whole. Dropped tables and, with ``shared: keep``, shared ones make no unit; the diff report
lists them. Rows per unit come from one ``GROUP BY tenant`` query per source table (the cost grows
with tables, not with tenants × tables).

**Every source row is accounted for**: the same query shows the rows outside every planned tenant —
tenant column NULL, a tenant id the tenant directory does not list (*orphans*), or a tenant of the
directory this run leaves out (*excluded*: another run copies them). :func:`count_outside` counts
them per table with sample keys, and the mapping's ``orphans`` policy decides: ``error`` (default)
stops the plan naming table, counts and keys; ``report`` records them; ``copy_to`` adds them to that
tenant's unit (:meth:`SourceTable.tenant_filter`).

**Refused before anything is written** (:func:`refuse_unsafe`, :func:`check_tenant_ids`), each naming
table and column: a non-transactional table (MyISAM …: a chunk and its checkpoint cannot commit
together) unless the mapping opts in with ``non_transactional: copy``; a copy key over a generated
column; an empty (or blank) tenant id, or one whose database would be named just the prefix.
Generated columns themselves are copied correctly: they are left out of every insert column list
and recomputed by the target (see :func:`cutover.tenant_split.build.copy_unit`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from cutover import control
from cutover.connections import mysql_connect, pg_connect
from cutover.identifiers import NameMapper, quote_mysql, slugify
from cutover.lifecycle.model import PlannedUnit, UnitKey
from cutover.mysql_schema import DatabaseSchema, TableSchema, read_database, text_of
from cutover.tenant_split.config import MYSQL_MAX_NAME, PIPELINE, TenantSplitConfig
from cutover.tenant_split.mapping import Mapping, MappingError, OrphanPolicy, TableRule, load_mapping
from cutover.tenant_split.pause import pause_plan, pause_warnings

log = logging.getLogger(__name__)

#: storage engines whose writes commit and roll back with a transaction (any other is refused at plan)
TRANSACTIONAL_ENGINES = frozenset({"innodb", "xtradb", "rocksdb", "tokudb", "ndbcluster", "ndb"})
#: sample keys kept per table and kind of row outside the tenants
SAMPLE_KEYS = 5


class PlanError(ValueError):
    """The source or the request cannot be planned (the message says what and where)."""


@dataclass(frozen=True)
class SourceTable:
    """One source table feeding a unit: its name, tenant column (None: shared, copied whole), copy key."""

    table: str
    tenant_column: str | None
    key: tuple[str, ...]
    rows: int
    #: ``orphans: copy_to`` this unit's tenant: the unit also takes the table's rows outside every tenant —
    #: ``{"directory": [table, column] | None}`` (None: tenants came from the data, so only NULL ones)
    orphans: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-able."""
        d: dict[str, Any] = {"table": self.table, "tenant_column": self.tenant_column, "key": list(self.key),
                             "rows": self.rows}
        if self.orphans is not None:
            d["orphans"] = self.orphans
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SourceTable:
        """Inverse of :meth:`to_dict`."""
        return cls(d["table"], d.get("tenant_column"), tuple(d.get("key") or ()), int(d.get("rows") or 0),
                   d.get("orphans"))

    def tenant_filter(self, database: str, tenant: str) -> tuple[str, list[Any]]:
        """The SQL condition (no ``WHERE``) selecting the rows of ``tenant`` in this source table, and its
        parameters; ``("", [])`` for a shared table (every row). With :attr:`orphans`, also the rows whose
        tenant is NULL or absent from the directory (a ``NOT EXISTS``, compared by the server as the copy
        compares). Names are quoted with ``%`` doubled: the condition always runs with parameters."""
        if not self.tenant_column:
            return "", []

        def q(name: str) -> str:
            return quote_mysql(name).replace("%", "%%")

        col = q(self.tenant_column)
        if self.orphans is None:
            return f"{col} = %s", [tenant]
        outer = f"{q(database)}.{q(self.table)}.{col}"
        terms = [f"{outer} = %s", f"{outer} IS NULL"]
        directory = self.orphans.get("directory")
        if directory:
            dtab, dcol = directory
            terms.append(f"NOT EXISTS (SELECT 1 FROM {q(database)}.{q(dtab)} AS cutover_dir "
                         f"WHERE cutover_dir.{q(dcol)} = {outer})")
        return "(" + " OR ".join(terms) + ")", [tenant]


@dataclass(frozen=True)
class TableOrphans:
    """The rows of one tenant-scoped source table outside every tenant a run plans.

    ``rows``: every row of the table; ``null``: tenant column NULL; ``unknown``: a tenant id the
    tenant directory does not list (``unknown_ids``: up to 20 of them); ``excluded``: rows of directory
    tenants this run leaves out (``tenants`` / ``tables`` / ``units``; another run copies them);
    ``samples``: up to :data:`SAMPLE_KEYS` per kind, ``{"kind", "tenant", "key"}``; ``policy`` the
    mapping's ``orphans`` for the table. Orphans are ``null + unknown``: rows no run would copy.
    """

    table: str
    tenant_column: str
    rows: int
    null: int = 0
    unknown: int = 0
    excluded: int = 0
    unknown_ids: tuple[str, ...] = ()
    samples: tuple[dict[str, Any], ...] = ()
    policy: OrphanPolicy = field(default_factory=OrphanPolicy)

    @property
    def orphans(self) -> int:
        """Rows no tenant of the directory claims (NULL or unknown tenant)."""
        return self.null + self.unknown

    def describe(self) -> str:
        """One line for an error or a log: the table, the counts, the unknown ids, sample keys."""
        parts = [f"{self.null:,} with {self.tenant_column} NULL"] if self.null else []
        if self.unknown:
            parts.append(f"{self.unknown:,} with a tenant the directory does not list "
                         f"({', '.join(repr(t) for t in self.unknown_ids[:10])})")
        keys = "; ".join(f"{s['kind']} {s['key']}" for s in self.samples[:SAMPLE_KEYS])
        return (f"table {self.table!r}: {self.orphans:,} of {self.rows:,} row(s) outside every tenant: "
                + ", ".join(parts) + (f"; sample keys: {keys}" if keys else ""))

    def to_dict(self) -> dict[str, Any]:
        """JSON-able (run evidence, the schema diff report's figures)."""
        return {"table": self.table, "tenant_column": self.tenant_column, "rows": self.rows, "null": self.null,
                "unknown": self.unknown, "orphans": self.orphans, "excluded": self.excluded,
                "unknown_ids": list(self.unknown_ids), "samples": list(self.samples), "policy": str(self.policy),
                "copy_to": self.policy.tenant}


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



def directory_column(cfg: TenantSplitConfig, schema: DatabaseSchema, rules: dict[str, TableRule]) -> str | None:
    """The tenant column of the tenant directory table (None: no directory, tenants come from the data).
    Raises :class:`PlanError` when the directory is not a table or lacks the column."""
    if not cfg.tenant_directory:
        return None
    tab = schema.tables.get(cfg.tenant_directory)
    if tab is None:
        raise PlanError(f"tenant_directory {cfg.tenant_directory!r} is not a table of {cfg.source_database!r}")
    rule = rules.get(tab.name)
    col = (rule.tenant_column if rule and rule.tenant_column else None) or load_mapping(cfg.mapping_path).tenant_column
    found = tab.column(col)
    if found is None:
        raise PlanError(f"tenant_directory {tab.name!r} has no tenant column {col!r}")
    return found.name


def discover_tenants(cur: Any, cfg: TenantSplitConfig, schema: DatabaseSchema, rules: dict[str, TableRule]) -> list[str]:
    """Every tenant id, as text: the tenant directory's tenant column, or the distinct values of every
    tenant-scoped table's tenant column. Raises :class:`PlanError` when the directory is not a table."""
    db = quote_mysql(cfg.source_database)
    col = directory_column(cfg, schema, rules)
    if col is not None:
        cur.execute(f"SELECT DISTINCT {quote_mysql(col)} FROM {db}.{quote_mysql(cfg.tenant_directory)} "
                    f"WHERE {quote_mysql(col)} IS NOT NULL")
        values = {text_of(r[0]) for r in cur.fetchall()}
    else:
        values = set()
        for rule in rules.values():
            if rule.action == "copy" and rule.tenant_column:
                cur.execute(f"SELECT DISTINCT {quote_mysql(rule.tenant_column)} FROM {db}.{quote_mysql(rule.source)} "
                            f"WHERE {quote_mysql(rule.tenant_column)} IS NOT NULL")
                values |= {text_of(r[0]) for r in cur.fetchall()}
    return sorted(values, key=lambda v: (len(v), v) if v.isdigit() else (10**9, v))


def check_tenant_ids(cfg: TenantSplitConfig, tenants: list[str], rules: dict[str, TableRule],
                     directory_col: str | None = None) -> None:
    """Refuse tenant ids that cannot name a database: empty or blank (MySQL's PAD SPACE collations make
    ``' '`` equal to ``''``), or mapping to a database named just ``database_prefix``. Raises
    :class:`PlanError` naming where the id comes from (the directory's table and ``directory_col``, or
    the tables)."""
    bad = [t for t in tenants if not t.strip() or tenant_database(cfg, t) in ("", cfg.database_prefix)]
    if not bad:
        return
    if cfg.tenant_directory:
        where = f"the tenant directory {cfg.tenant_directory!r}, column {directory_col or 'tenant'!r}"
    else:
        where = "the tenant column of " + ", ".join(
            f"{r.source!r} ({r.tenant_column!r})" for r in rules.values() if r.action == "copy" and r.tenant_column)
    raise PlanError(f"{cfg.source_database!r}: {where} holds {len(bad)} empty or blank tenant id(s) "
                    f"({', '.join(repr(t) for t in bad[:5])}): such a tenant would get a database named just the "
                    f"prefix {cfg.database_prefix!r} (or a hash of blanks); fix or delete those rows before the split")


def tenant_groups(cur: Any, database: str, table: TableSchema, tenant_column: str) -> dict[str | None, int]:
    """Rows per tenant column value in one table, NULL (key ``None``) included: one ``GROUP BY`` over
    the tenant column's index."""
    col = quote_mysql(tenant_column)
    cur.execute(f"SELECT {col}, COUNT(*) FROM {quote_mysql(database)}.{quote_mysql(table.name)} GROUP BY {col}")
    out: dict[str | None, int] = {}
    for k, n in cur.fetchall():
        key = None if k is None else text_of(k)
        out[key] = out.get(key, 0) + int(n)
    return out


def rows_per_tenant(cur: Any, database: str, table: TableSchema, tenant_column: str) -> dict[str, int]:
    """Rows of each tenant in one table (one ``GROUP BY`` over the tenant column's index)."""
    return {k: n for k, n in tenant_groups(cur, database, table, tenant_column).items() if k is not None}


def _jsonable(v: Any) -> Any:
    if v is None or isinstance(v, (int, float, str)):
        return v
    if isinstance(v, (bytes, bytearray)):
        try:
            return bytes(v).decode("utf-8")
        except UnicodeDecodeError:
            return "0x" + bytes(v).hex()
    return str(v)


def _qp(name: str) -> str:
    """A quoted name for a statement run with parameters (``%`` doubled)."""
    return quote_mysql(name).replace("%", "%%")


def _samples(cur: Any, database: str, table: TableSchema, tenant_column: str, kind: str, where: str,
             params: list[Any]) -> list[dict[str, Any]]:
    key = table.copy_key()
    cols = ", ".join(_qp(c) for c in (tenant_column, *key))
    order = f" ORDER BY {', '.join(_qp(c) for c in key)}" if key else ""
    cur.execute(f"SELECT {cols} FROM {_qp(database)}.{_qp(table.name)} AS t WHERE {where}{order} "
                f"LIMIT {SAMPLE_KEYS}", params)
    return [{"kind": kind, "tenant": _jsonable(r[0]),
             "key": {c: _jsonable(v) for c, v in zip(key, r[1:], strict=True)} if key else None}
            for r in cur.fetchall()]


def count_outside(cur: Any, cfg: TenantSplitConfig, table: TableSchema, tenant_column: str,
                  groups: dict[str | None, int], directory: tuple[list[str], str] | None, picked: set[str],
                  policy: OrphanPolicy) -> tuple[TableOrphans, bool]:
    """The rows of ``table`` outside every planned tenant (see :class:`TableOrphans`) from its
    :func:`tenant_groups`; ``directory`` is (the directory's tenant ids, its tenant column) or None.

    Where a value is not one of the directory's ids text for text, the server decides (a ``NOT EXISTS``
    against the directory, compared as the copy's ``tenant = %s`` compares: case, trailing spaces). The
    second value is False when the server could not compare the two columns (their collations clash):
    the counts are then text-exact, and ``copy_to`` is refused for the table.
    """
    db, name, col = _qp(cfg.source_database), _qp(table.name), _qp(tenant_column)  # every statement has parameters
    total = sum(groups.values())
    null = groups.get(None, 0)
    samples: list[dict[str, Any]] = []
    if null:
        samples += _samples(cur, cfg.source_database, table, tenant_column, "NULL tenant", f"t.{col} IS NULL", [])
    unknown, ids, comparable = 0, [], True
    if directory is not None:
        listed = set(directory[0])
        strays = sorted(k for k in groups if k is not None and k not in listed)
        if strays:
            # only the groups whose value is not a directory id text for text can hold such rows: the tenant
            # column's index finds them (IN compares as the copy's `=` does), the rest of the table is not read
            few = len(strays) <= 1000
            narrow = f"t.{col} IN ({', '.join(['%s'] * len(strays))})" if few else f"t.{col} IS NOT NULL"
            not_listed = (f"{narrow} AND NOT EXISTS (SELECT 1 FROM {db}.{_qp(cfg.tenant_directory)} "
                          f"AS d WHERE d.{_qp(directory[1])} = t.{col})")
            args = list(strays) if few else []
            try:
                cur.execute(f"SELECT COUNT(*) FROM {db}.{name} AS t WHERE {not_listed}", args)
                unknown = int(cur.fetchone()[0])
                cur.execute(f"SELECT DISTINCT t.{col} FROM {db}.{name} AS t WHERE {not_listed} LIMIT 20", args)
                ids = [text_of(r[0]) for r in cur.fetchall()]
                if unknown:
                    samples += _samples(cur, cfg.source_database, table, tenant_column, "unknown tenant", not_listed,
                                        args)
            except Exception as exc:  # noqa: BLE001 - e.g. 1267 illegal mix of collations: compare as text
                log.warning("tenant_split: %s: cannot compare %s with the directory's column on the server (%s); "
                            "counting tenant ids the directory lacks text for text", table.name, tenant_column, exc)
                comparable = False
                unknown, ids = sum(groups[k] for k in strays), strays[:20]
                marks = ", ".join(["%s"] * min(len(strays), 20))
                samples += _samples(cur, cfg.source_database, table, tenant_column, "unknown tenant",
                                    f"t.{col} IN ({marks})", strays[:20])
    planned = sum(n for k, n in groups.items() if k is not None and k in picked)
    excluded = max(0, total - null - unknown - planned)
    return TableOrphans(table.name, tenant_column, total, null, unknown, excluded, tuple(ids), tuple(samples),
                        policy), comparable


def refuse_unsafe(cfg: TenantSplitConfig, schema: DatabaseSchema, mapping: Mapping, rules: dict[str, TableRule]) -> None:
    """Refuse, before anything is written, what the copy cannot do safely; raises :class:`PlanError`
    listing every such table (and column):

    * a non-transactional table (MyISAM, Aria, MEMORY, …: the target gets the same engine) — a chunk
      and its checkpoint cannot commit together, so a killed copy resumes with duplicates or gaps;
      ``non_transactional: copy`` on the table accepts that;
    * a copy key with a generated column (generated columns are not written, the target recomputes
      them, so the key could not be read back from what was written).
    """
    problems: list[str] = []
    for rule in rules.values():
        if rule.action == "drop" or (rule.action == "shared" and cfg.shared == "keep"):
            continue
        tab = schema.tables[rule.source]
        where = f" (line {rule.line})" if rule.line else ""
        engine = tab.engine.lower()
        if engine and engine not in TRANSACTIONAL_ENGINES and not rule.allow_non_transactional:
            problems.append(f"table {tab.name!r} uses the {tab.engine} engine, which is not transactional: a chunk and "
                            "its checkpoint cannot commit together, so a killed copy would resume with duplicate or "
                            f"missing rows; convert it (ALTER TABLE … ENGINE=InnoDB) or opt in with "
                            f"`{tab.name}: {{non_transactional: copy}}` in {mapping.path}{where}")
        for c in tab.copy_key():
            column = tab.column(c)
            if column is not None and column.generation is not None:
                problems.append(f"table {tab.name!r}, column {column.name!r}: a generated column ({column.extra}) in the "
                                "copy key: generated columns are recomputed by the target, not written, so the copy "
                                "cannot page on it; give the table a primary key over stored columns")
    if problems:
        raise PlanError(f"{cfg.source_database!r}: {len(problems)} table(s) cannot be copied safely: " + "; ".join(problems))


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


def _wanted(cfg: TenantSplitConfig, wanted: list[str] | None) -> tuple[set[str], set[str], set[tuple[str, str]]]:
    """(tenants, tables, (tenant, table) pairs) the run asks for: the config's lists and ``wanted``."""
    want_tenants, want_tables = set(cfg.tenants), set(cfg.tables)
    want_pairs: set[tuple[str, str]] = set()
    for w in wanted or []:
        tenant, sep, table = w.rpartition(" / ")
        if sep:
            want_pairs.add((tenant, table))
        else:
            want_tenants.add(w)
    return want_tenants, want_tables, want_pairs


def pick_tenants(cfg: TenantSplitConfig, tenants: list[str], wanted: list[str] | None) -> list[str]:
    """The tenants a run plans, in directory order; raises :class:`PlanError` for one not in the source."""
    want_tenants, _, want_pairs = _wanted(cfg, wanted)
    missing = sorted((want_tenants | {t for t, _ in want_pairs}) - set(tenants))
    if missing:
        raise PlanError(f"tenant(s) not in {cfg.source_database!r}: {missing[:20]} (it has {len(tenants)} tenants)")
    return [t for t in tenants if (not want_tenants and not want_pairs) or t in want_tenants
            or any(t == p for p, _ in want_pairs)]


def account_rows(cur: Any, cfg: TenantSplitConfig, schema: DatabaseSchema, mapping: Mapping,
                 rules: dict[str, TableRule], tenants: list[str], picked: list[str],
                 groups: dict[str, dict[str | None, int]], *, strict: bool = True) -> dict[str, TableOrphans]:
    """Every tenant-scoped table's rows outside the planned tenants (:func:`count_outside`), the mapping's
    ``orphans`` policy applied: raises :class:`PlanError` for ``error`` (default) with each table's counts
    and sample keys, or for a ``copy_to`` tenant the source does not have. ``groups``: the tables'
    :func:`tenant_groups`. Returns source table → :class:`TableOrphans` for every table that has rows
    outside the planned tenants; ``strict=False`` (the report) counts without raising."""
    dcol = directory_column(cfg, schema, rules)
    directory = (tenants, dcol) if dcol is not None else None
    chosen = set(picked)
    out: dict[str, TableOrphans] = {}
    refused: list[str] = []
    for rule in sorted(rules.values(), key=lambda r: r.source):
        if rule.action != "copy" or not rule.tenant_column or rule.source not in groups:
            continue
        policy = mapping.orphan_policy(rule)
        tab = schema.tables[rule.source]
        col = (tab.column(rule.tenant_column) or tab.columns[0]).name
        found, comparable = count_outside(cur, cfg, tab, col, groups[rule.source], directory, chosen, policy)
        if not (found.orphans or found.excluded):
            continue
        out[rule.source] = found
        if not found.orphans:
            continue
        where = f"{mapping.path} line {policy.line}" if policy.line else f"{mapping.path} (default orphans: error)"
        if not strict:
            continue
        if policy.mode == "error":
            refused.append(found.describe())
        elif policy.mode == "copy_to":
            if policy.tenant not in tenants:
                raise PlanError(f"{where}: orphans of table {rule.source!r} go to tenant {policy.tenant!r} (copy_to), "
                                f"which {cfg.source_database!r} does not have")
            if not comparable:
                raise PlanError(f"{where}: orphans of table {rule.source!r} cannot be copied to {policy.tenant!r}: the "
                                f"server cannot compare {col!r} with the tenant directory's column (collations clash); "
                                "use orphans: report, or give both columns one collation")
            log.warning("tenant_split: %s → copied to tenant %r", found.describe(), policy.tenant)
        else:
            log.warning("tenant_split: %s → reported, copied nowhere (orphans: report)", found.describe())
    if refused:
        raise PlanError(f"{cfg.source_database!r}: rows outside every tenant, and the mapping {mapping.path} says "
                        "orphans: error (the default): " + " | ".join(refused)
                        + ". Fix the rows, or set `orphans: report` (copied nowhere, reported) or "
                        "`orphans: {copy_to: <tenant>}` for the table or the whole mapping")
    return out


def outside_rows(cfg: TenantSplitConfig, picked: list[str] | None = None, wanted: list[str] | None = None,
                 ) -> dict[str, TableOrphans]:
    """The rows outside every planned tenant now, per source table (for the report, which counts again
    after the copy: the run's figures and these are of the same moment, within a build's verify).
    ``picked``: the run's tenants (None: as the plan would pick them from ``wanted``). Never raises
    for the ``orphans`` policy: the report shows it."""
    with mysql_connect(cfg.source_conn_id, database="") as src:
        cur = src.cursor()
        schema = read_database(cur, cfg.source_database, with_create=False)
        mapping, rules = load_rules(cfg, schema)
        tenants = discover_tenants(cur, cfg, schema, rules)
        chosen = pick_tenants(cfg, tenants, wanted) if picked is None else picked
        groups = {r.source: tenant_groups(cur, cfg.source_database, schema.tables[r.source], r.tenant_column)
                  for r in rules.values() if r.action == "copy" and r.tenant_column}
        return account_rows(cur, cfg, schema, mapping, rules, tenants, chosen, groups, strict=False)


def plan_units(cfg: TenantSplitConfig, wanted: list[str] | None = None) -> tuple[list[PlannedUnit], dict[str, Any]]:
    """The units of a split and the plan's findings (``schema``, ``rules``, ``mapping``, ``tenants``,
    ``databases`` and ``orphans``: source table → :class:`TableOrphans`).

    ``wanted`` (unit names ``tenant`` or ``tenant / table``) and the config's ``tenants`` / ``tables``
    narrow the plan; a wanted tenant or table that does not exist raises :class:`PlanError`, and so do
    the refusals of :func:`refuse_unsafe`, :func:`check_tenant_ids` and :func:`account_rows`.
    """
    want_tenants, want_tables, want_pairs = _wanted(cfg, wanted)
    with mysql_connect(cfg.source_conn_id, database="") as src:
        cur = src.cursor()
        schema = read_database(cur, cfg.source_database)
        mapping, rules = load_rules(cfg, schema)
        refuse_unsafe(cfg, schema, mapping, rules)
        tenants = discover_tenants(cur, cfg, schema, rules)
        check_tenant_ids(cfg, tenants, rules, directory_column(cfg, schema, rules))
        targets: dict[str, list[TableRule]] = {}
        for rule in rules.values():
            if rule.action == "drop" or (rule.action == "shared" and cfg.shared == "keep"):
                continue
            targets.setdefault(rule.target, []).append(rule)
        bad_tables = sorted((want_tables | {t for _, t in want_pairs}) - set(targets) - set(rules))
        if bad_tables:
            raise PlanError(f"table(s) not planned: {bad_tables[:20]} (target tables: {sorted(targets)[:30]})")
        picked = pick_tenants(cfg, tenants, wanted)
        groups: dict[str, dict[str | None, int]] = {}
        counts: dict[str, dict[str, int]] = {}
        whole: dict[str, int] = {}
        for rule in rules.values():
            if rule.action == "copy" and rule.tenant_column:
                groups[rule.source] = tenant_groups(cur, cfg.source_database, schema.tables[rule.source], rule.tenant_column)
                counts[rule.source] = {k: n for k, n in groups[rule.source].items() if k is not None}
            elif rule.action == "shared" and cfg.shared == "copy":
                cur.execute(f"SELECT COUNT(*) FROM {quote_mysql(cfg.source_database)}.{quote_mysql(rule.source)}")
                whole[rule.source] = int(cur.fetchone()[0])
        orphans = account_rows(cur, cfg, schema, mapping, rules, tenants, picked, groups)
        with mysql_connect(cfg.target_conn_id, database="") as tgt:
            tc = tgt.cursor()
            tc.execute("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA")
            existing = {text_of(r[0]) for r in tc.fetchall()}
    dbs = tenant_databases(cfg, picked, existing=existing)
    dcol = directory_column(cfg, schema, rules)

    def source(m: TableRule, tenant: str) -> SourceTable:
        if m.action != "copy":
            return SourceTable(m.source, None, schema.tables[m.source].copy_key(), whole.get(m.source, 0))
        rows = counts.get(m.source, {}).get(tenant, 0)
        found = orphans.get(m.source)
        policy = mapping.orphan_policy(m)
        if found is not None and found.orphans and policy.mode == "copy_to" and policy.tenant == tenant:
            return SourceTable(m.source, m.tenant_column, schema.tables[m.source].copy_key(), rows + found.orphans,
                               {"directory": [cfg.tenant_directory, dcol] if dcol else None, "rows": found.orphans})
        return SourceTable(m.source, m.tenant_column, schema.tables[m.source].copy_key(), rows)

    pauses = pause_plan(schema, rules)  # how the cutover's write pause locks each table, and where it cannot
    for warning in pause_warnings(pauses):
        log.warning("tenant_split plan: write pause: %s", warning)
    units: list[PlannedUnit] = []
    for tenant in picked:
        for target, members in sorted(targets.items()):
            names = {target} | {m.source for m in members}
            if want_tables and not names & want_tables:
                continue
            if want_pairs and tenant not in want_tenants and not any(p == tenant and t in names for p, t in want_pairs):
                continue
            owner = next((m for m in members if not m.merged), members[0])
            sources = [source(m, tenant) for m in sorted(members, key=lambda m: (m.merged, m.source))]
            units.append(PlannedUnit(
                UnitKey(cfg.scope, (tenant, target)), sum(s.rows for s in sources),
                {"tenant": tenant, "database": dbs[tenant], "table": target, "owner": owner.source,
                 "shared": owner.action == "shared", "sources": [s.to_dict() for s in sources],
                 "write_pause": {m.source: pauses[m.source].to_dict() for m in members if m.source in pauses}},
            ))
    findings = {"schema": schema, "rules": rules, "mapping": mapping, "tenants": len(picked), "databases": dbs,
                "orphans": orphans, "write_pause": pauses}
    log.info("tenant_split: %d tenant(s), %d source table(s) (%d dropped, %d target tables), %d unit(s)", len(picked),
             len(rules), sum(r.action == "drop" for r in rules.values()), len(targets), len(units))
    return units, findings
