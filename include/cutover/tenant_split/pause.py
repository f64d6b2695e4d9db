"""The write pause of a tenant's cutover, scoped to that tenant by construction.

Cutover holds a tenant's writes on the source with locking reads in one transaction. Which rows such
a read locks depends on how InnoDB reaches them, so every table the pause locks is classified at plan
(:func:`pause_plan`) and locked only in a way that cannot touch another tenant's rows:

* ``index`` — the table has an index whose *first* column is the whole tenant column: the locking read
  ``SELECT … FORCE INDEX (that index) WHERE tenant = ? FOR UPDATE`` visits only the tenant's index
  entries. It runs under **READ COMMITTED**, so InnoDB takes record locks only — no gap or next-key
  locks: under REPEATABLE READ the gap after the tenant's last entry runs up to the next tenant's first
  one, and that tenant's inserts of a key below its smallest (or every insert of a tenant with no rows
  in the table yet) waited for the pause (InnoDB lock wait 1205);
* ``none`` — no index leads with the tenant column: the table is **not locked** (warned at plan and
  in the cutover's evidence). Locking the tenant's rows there, even one by one through the primary
  key, would hold every other tenant's UPDATE or DELETE that finds its rows by a scan (the statement
  locks each row it reads, the paused tenant's included): measured, 2 s lock waits for another
  tenant's ``UPDATE … WHERE tenant = ?``. Add an index on ``(tenant, …)`` to have the table held.

What is guaranteed: another tenant's statement that reaches its rows through an index led by the
tenant column or through a key (every insert, and updates and deletes by tenant or by key) never
waits for the pause; a statement that reads the paused tenant's rows with locks (a scan of the whole
table) does, by its own nature.

What the locks hold: every UPDATE and DELETE of the tenant's existing rows, and every write that
checks a foreign key onto a locked row (the tenant directory's row is one: inserts of child rows that
reference it wait). What they cannot hold without gap locks is an INSERT of a new row with no such
key: those are held by the routing entry's ``paused`` state (the application's contract), and the
cutover's binlog fence (:func:`cutover.tenant_split.cutover.tenant_switch`) catches up whatever the
tenant still wrote to the source after the final position, before and after the route moves, so such
a write is applied, counted and reported, never lost.

Triggers: a trigger on a locked table runs in the writer's transaction. The tables it writes are
listed per table (``trigger_writes``); a write it makes into a table the pause does not lock is not
held, and one into a table without a tenant column (shared rows) may make a held writer of this
tenant hold a lock that another tenant's writer then waits for — both are warned.
"""

from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass
from typing import Any

from cutover.identifiers import quote_mysql
from cutover.mysql_schema import DatabaseSchema, TableSchema

#: how a table is locked by the pause (see the module docstring)
MODES = ("index", "none")
_WRITES = re.compile(r"\b(?:INSERT(?:\s+IGNORE)?\s+INTO|REPLACE\s+INTO|UPDATE(?:\s+IGNORE)?|DELETE\s+FROM)\s+"
                     r"((?:`(?:[^`]|``)+`|\w+)(?:\s*\.\s*(?:`(?:[^`]|``)+`|\w+))?)", re.IGNORECASE)


@dataclass(frozen=True)
class PauseTable:
    """How the pause locks one tenant-scoped source table.

    ``mode`` is one of :data:`MODES`; ``index`` names the index used in ``index`` mode; ``key`` is the
    table's copy key; ``trigger_writes`` are the tables its triggers write;
    ``warnings`` say where the guarantee is weaker (empty: none).
    """

    table: str
    tenant_column: str
    mode: str
    index: str | None
    key: tuple[str, ...]
    trigger_writes: tuple[str, ...]
    warnings: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON-able (plan findings, unit detail, the cutover's evidence)."""
        d = asdict(self)
        d["key"], d["trigger_writes"], d["warnings"] = list(self.key), list(self.trigger_writes), list(self.warnings)
        return d


def tenant_index(table: TableSchema, tenant_column: str) -> str | None:
    """The name of an index whose first column is the whole ``tenant_column`` (the primary key first,
    then unique, then plain indexes), or None. A prefix index does not count: its entries of another
    tenant sharing the prefix would be read, and locked."""
    order = {"primary": 0, "unique": 1}
    for ix in sorted(table.indexes, key=lambda i: (order.get(i.kind, 2), i.name)):
        if not ix.columns or ix.columns[0].lower() != tenant_column.lower():
            continue
        if ix.kind not in ("primary", "unique", "index"):
            continue  # fulltext / spatial cannot serve an equality range
        if ix.sub_parts and ix.sub_parts[0] is not None:
            continue
        return ix.name
    return None


def _unquote(name: str) -> str:
    name = name.split(".")[-1].strip()
    return name[1:-1].replace("``", "`") if name.startswith("`") else name


def trigger_writes(table: TableSchema) -> tuple[str, ...]:
    """The tables the triggers of ``table`` write (INSERT / REPLACE / UPDATE / DELETE in their bodies)."""
    out: set[str] = set()
    for t in table.triggers:
        out |= {_unquote(m.group(1)) for m in _WRITES.finditer(t.statement or t.definition)}
    return tuple(sorted(out))


def pause_plan(schema: DatabaseSchema, rules: dict[str, Any]) -> dict[str, PauseTable]:
    """Source table → how the write pause locks it, for every tenant-scoped table the split copies.

    ``rules`` are the mapping's resolved rules (``action``, ``tenant_column``); shared and dropped
    tables are not locked (the pause is per tenant)."""
    scoped = {n: r.tenant_column for n, r in rules.items() if r.action == "copy" and r.tenant_column}
    out: dict[str, PauseTable] = {}
    for name, col in sorted(scoped.items()):
        table = schema.tables[name]
        idx = tenant_index(table, col)
        key = table.copy_key()
        warnings: list[str] = []
        if idx is not None:
            mode = "index"
        else:
            mode = "none"
            warnings.append(f"{name}: no index starts with the tenant column {col!r}: the pause cannot lock the tenant's "
                            "rows there without holding other tenants' writes, so it does not lock them (the tenant's "
                            f"writes held only by the route's paused state; the binlog fence applies what slips through); "
                            f"add an index on ({col}, …)")
        writes = trigger_writes(table)
        for w in writes:
            if w not in schema.tables:
                continue
            if w not in scoped:
                warnings.append(f"{name}: a trigger writes {w!r}, which has no tenant column: a held writer of this "
                                "tenant may hold a lock on its shared rows that other tenants' writers wait for")
        out[name] = PauseTable(name, col, mode, idx, key, writes, tuple(warnings))
    for p in list(out.values()):  # trigger targets the pause cannot lock
        for w in p.trigger_writes:
            if w in out and out[w].mode == "none":
                out[p.table] = PauseTable(p.table, p.tenant_column, p.mode, p.index, p.key, p.trigger_writes,
                                          (*p.warnings, f"{p.table}: a trigger writes {w!r}, which the pause does not lock"))
    return out


def pause_warnings(plan: dict[str, PauseTable]) -> list[str]:
    """Every warning of a pause plan, one text each (empty: the pause is scoped to the tenant everywhere)."""
    return [w for p in plan.values() for w in p.warnings]


def lock_tenant(cur: Any, database: str, plan: list[PauseTable], tenant: str) -> dict[str, Any]:
    """Take the pause's locks on ``tenant``'s rows of ``plan``'s tables in the open transaction of ``cur``.

    The caller has set READ COMMITTED and started the transaction; it ends the pause by rolling back.
    Returns ``{"locked_rows", "tables": {table: {"mode", "rows", "s"}}}``. Raises the server's error (a
    lock wait timeout: a writer of this tenant holds a row longer than the pause waits)."""
    db = quote_mysql(database)
    tables: dict[str, Any] = {}
    total = 0
    for p in plan:
        t0 = time.monotonic()
        name, col = f"{db}.{quote_mysql(p.table)}", quote_mysql(p.tenant_column)
        n = 0
        if p.mode == "index" and p.index:
            index = "PRIMARY" if p.index.upper() == "PRIMARY" else quote_mysql(p.index)
            cur.execute(f"SELECT COUNT(*) FROM (SELECT 1 FROM {name} FORCE INDEX ({index}) WHERE {col} = %s FOR UPDATE) x",
                        (tenant,))
            n = int(cur.fetchone()[0])
        tables[p.table] = {"mode": p.mode, "rows": n, "s": round(time.monotonic() - t0, 4)}
        total += n
    return {"locked_rows": total, "tables": tables}
