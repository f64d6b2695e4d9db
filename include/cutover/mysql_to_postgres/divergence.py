"""Writes PostgreSQL holds that MySQL lacks: what a rollback of a table's readers would lose.

MySQL stays the system of record and ``mysql_to_postgres_sync`` carries its changes to PostgreSQL;
nothing carries changes back. Once a table's readers (and writers that followed them) use PostgreSQL,
rows written there are not on MySQL. :func:`target_divergence` (the life cycle's ``target_divergence``
hook) compares the table row by row through the consistency engine, with the pair verify uses
(:func:`cutover.mysql_to_postgres.verify.pair_spec`), and names what differs:

* ``inserted``: keys only PostgreSQL has;
* ``updated``: keys on both sides with other values;
* ``deleted``: keys only MySQL has, rows that went to dead letters at copy excepted.

A difference can also be a MySQL change the sync has not applied yet (it then shows as updated or
deleted): run ``mysql_to_postgres_sync`` first, and what is left is PostgreSQL's own.
"""

from __future__ import annotations

from typing import Any

from cutover.lifecycle.model import UnitKey
from cutover.mysql_to_postgres.config import MysqlToPostgresConfig

#: sample keys listed per kind (the counts are exact)
SAMPLE_KEYS = 20


def target_divergence(cfg: MysqlToPostgresConfig, key: UnitKey) -> dict[str, Any] | None:
    """What the table's PostgreSQL copy holds that MySQL lacks (None: nothing).

    Returns ``{"table": "<schema>.<table>", "source": "<db>.<table>", "inserted", "updated", "deleted",
    "sample_keys": {"inserted": […], "updated": […], "deleted": […]}, "source_rows", "target_rows"}``
    (row counts; keys as the values of the key columns, one value for a one-column key). Raises
    ``LookupError`` for a table never planned.
    """
    from cutover.consistency.diff import diff_pair
    from cutover.mysql_to_postgres.build import latest_plans
    from cutover.mysql_to_postgres.load import key_text
    from cutover.mysql_to_postgres.verify import dead_letter_keys, pair_spec

    tm = latest_plans(cfg, [str(key)]).get(str(key))
    if tm is None:
        raise LookupError(f"mysql_to_postgres table {key.label}: no plan recorded, cannot compare it with MySQL")
    res = diff_pair(pair_spec(cfg, tm))
    letters = dead_letter_keys(cfg, str(key)) if res.missing else set()
    deleted = [k for k in res.missing if key_text(k) not in letters] if tm.key else list(res.missing)
    if not (res.extra or res.changed or deleted):
        return None
    d = res.details(max_keys=SAMPLE_KEYS)
    return {"table": f"{cfg.target_schema}.{tm.target}", "source": f"{cfg.source_database}.{tm.source}",
            "inserted": len(res.extra), "updated": len(res.changed), "deleted": len(deleted),
            "sample_keys": {"inserted": d["extra_keys"], "updated": d["changed_keys"],
                            "deleted": [k[0] if len(k) == 1 else list(k) for k in deleted[:SAMPLE_KEYS]]},
            "source_rows": res.source_rows, "target_rows": res.target_rows,
            **({"dead_letters_not_counted": len(res.missing) - len(deleted)} if letters else {})}
