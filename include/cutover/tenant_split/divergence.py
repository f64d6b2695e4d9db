"""Writes a tenant's database holds that the shared tables lack: what a rollback would lose.

After a tenant's cutover its application writes to the tenant database; nothing flows back to the
shared source tables yet. :func:`target_divergence` (the life cycle's ``target_divergence`` hook)
compares one unit row by row — the tenant's rows in its source table against the target table,
through the consistency engine (:func:`cutover.consistency.diff.diff_pair`, the canonical row form
verify uses) — and names what differs:

* ``inserted``: keys only the tenant database has (rows written there after the cutover);
* ``updated``: keys on both sides with other values;
* ``deleted``: keys only the source has (deleted in the tenant database), rows that went to dead
  letters at copy excepted (they never reached the target).

A unit merged from several source tables, or without a key, is compared by count and checksum (as
verify does): the counts say how many rows more or fewer, a changed checksum with equal counts says
rows changed, without keys.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import replace
from typing import Any

from cutover import control
from cutover.connections import mysql_connect, pg_connect
from cutover.identifiers import quote_mysql
from cutover.lifecycle.model import UnitKey
from cutover.tenant_split.config import PIPELINE, TenantSplitConfig
from cutover.tenant_split.plan import SourceTable

log = logging.getLogger(__name__)

#: sample keys listed per kind (the counts are exact)
SAMPLE_KEYS = 20


def _q(name: str) -> str:
    return quote_mysql(name)


def _literal(value: str) -> str:
    """A MySQL string literal that no quoting can break (hex, converted to utf8mb4)."""
    return "CONVERT(X'" + value.encode("utf-8").hex() + "' USING utf8mb4)"


def unit_plan(cfg: TenantSplitConfig, key: UnitKey) -> dict[str, Any] | None:
    """The unit's latest plan detail (``database``, ``table``, ``tenant``, ``sources``); None: never planned."""
    with pg_connect(cfg.control_conn_id) as conn:
        row = conn.execute(
            f"""SELECT detail -> 'plan' FROM {control.SCHEMA}.units WHERE pipeline = %s AND unit_key = %s
                  AND detail -> 'plan' ? 'database' ORDER BY updated_at DESC LIMIT 1""",
            (PIPELINE, str(key))).fetchone()
    return row[0] if row else None


def _source_query(cfg: TenantSplitConfig, s: SourceTable, tenant: str) -> str:
    """``SELECT *`` of the tenant's rows in one source table, values inlined (the engine takes no parameters)."""
    table = f"{_q(cfg.source_database)}.{_q(s.table)}"
    if not s.tenant_column:
        return f"SELECT * FROM {table}"
    filt = getattr(s, "tenant_filter", None)  # the plan's own filter (it knows orphans: copy_to)
    if filt is None:
        return f"SELECT * FROM {table} WHERE {_q(s.tenant_column)} = {_literal(tenant)}"
    cond, params = filt(cfg.source_database, tenant)
    values = iter(params)
    cond = re.sub(r"%%|%s", lambda m: "%" if m.group() == "%%" else _literal(str(next(values))), cond)
    return f"SELECT * FROM {table} WHERE {cond}"


def _dead_letter_keys(cfg: TenantSplitConfig, key: UnitKey) -> set[str]:
    """Record keys (JSON arrays of key values, as the copy writes them) of the unit's dead letters."""
    with pg_connect(cfg.control_conn_id) as conn:
        return {str(r[0]) for r in conn.execute(
            f"SELECT DISTINCT record_key FROM {control.SCHEMA}.dead_letters WHERE pipeline = %s AND unit_key = %s",
            (PIPELINE, str(key))).fetchall()}


def _key_json(k: Any) -> str:
    return json.dumps([v if isinstance(v, (int, float, str)) or v is None else str(v) for v in k], ensure_ascii=False)


def keyed_pair(cfg: TenantSplitConfig, plan: dict[str, Any]) -> Any:
    """The consistency engine's pair for a unit's plan detail: the tenant's rows in its one keyed source
    table against the target table (a :class:`cutover.consistency.spec.PairSpec`), or None for a unit
    merged from several tables or without a key. Raises ``RuntimeError`` when the target table is gone."""
    from cutover.consistency.normalize import infer_kind
    from cutover.consistency.spec import Endpoint, PairSpec
    from cutover.tenant_split.verify import column_types

    db, table, tenant = plan["database"], plan["table"], plan["tenant"]
    sources = [SourceTable.from_dict(s) for s in plan["sources"]]
    with mysql_connect(cfg.target_conn_id, database="") as tconn:
        types = column_types(tconn.cursor(), db, table)
    if not types:
        raise RuntimeError(f"target table {db}.{table} does not exist: cannot tell what it held")
    if len(sources) != 1 or not sources[0].key:
        return None
    s = sources[0]
    return PairSpec(name=f"{PIPELINE}:rollback:{db}.{table}",
                    source=Endpoint(cfg.source_conn_id, query=_source_query(cfg, s, tenant)),
                    target=Endpoint(cfg.target_conn_id, table=f"{db}.{table}"), key=s.key,
                    columns=tuple(c for c in types if c not in s.key),
                    kinds={c: str(infer_kind(None, t)) for c, t in types.items()})


def target_divergence(cfg: TenantSplitConfig, key: UnitKey) -> dict[str, Any] | None:
    """What the unit's target table holds that the tenant's source rows lack (None: nothing).

    Returns ``{"table": "<db>.<table>", "tenant", "inserted", "updated", "deleted", "sample_keys":
    {"inserted": […], "updated": […], "deleted": […]}, "source_rows", "target_rows", "compared"}``
    (row counts; keys as lists of key values in key-column order, or the value for one column).
    Raises ``LookupError`` for a unit never planned and ``RuntimeError`` when its table is gone.
    """
    from cutover.consistency.diff import diff_pair

    plan = unit_plan(cfg, key)
    if plan is None:
        raise LookupError(f"tenant_split unit {key.label}: no plan recorded, cannot compare it with the source")
    db, table, tenant = plan["database"], plan["table"], plan["tenant"]
    base = {"table": f"{db}.{table}", "tenant": tenant}
    spec = keyed_pair(cfg, plan)
    if spec is not None:
        res = diff_pair(spec)
        dead = _dead_letter_keys(cfg, key) if res.missing else set()
        deleted = [k for k in res.missing if _key_json(k) not in dead]
        if not (res.extra or res.changed or deleted):
            return None
        d = res.details(max_keys=SAMPLE_KEYS)
        return {**base, "inserted": len(res.extra), "updated": len(res.changed), "deleted": len(deleted),
                "sample_keys": {"inserted": d["extra_keys"], "updated": d["changed_keys"],
                                "deleted": [k[0] if len(k) == 1 else list(k) for k in deleted[:SAMPLE_KEYS]]},
                "source_rows": res.source_rows, "target_rows": res.target_rows, "compared": "row by row, by key",
                **({"dead_letters_not_counted": len(res.missing) - len(deleted)} if dead else {})}
    # merged from several tables, or keyless: count and checksum, as verify compares them
    from cutover.tenant_split.verify import verify_unit

    v = verify_unit(replace(cfg, gx_gate=False), plan, str(key), run_id="")
    if v.passed:
        return None
    expected = v.rows_source - int(v.detail.get("dead_letters") or 0)
    more, fewer = max(0, v.rows_target - expected), max(0, expected - v.rows_target)
    return {**base, "inserted": more, "updated": 0 if (more or fewer) else None, "deleted": fewer, "sample_keys": {},
            "source_rows": v.rows_source, "target_rows": v.rows_target,
            "compared": "count and checksum (merged or keyless table: no keys to name)",
            **({"rows_changed": "checksum differs with equal counts"} if not (more or fewer) else {}),
            "failures": v.failures[:5]}
