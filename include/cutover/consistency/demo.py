"""The consistency part of ``make demo``: a MySQL table and its PostgreSQL copy, registered as a pair.

The copy maps types the way a migration would (``decimal(12,2)`` → ``numeric(14,2)``,
``datetime(6)`` → ``timestamptz``, ``tinyint(1)`` → ``boolean``), so the demo check shows that equal
data hashes equal across engines. ``consistency_checks`` then sweeps the pair and finds it equal.

Its MySQL table lives in a database of its own (``cutover_demo_consistency``), never in
``cutover_source``: that is tenant_split's source, whose mapping has ``unlisted: error``, so a
``demo_accounts`` left there made the second ``make demo`` fail at tenant_split's plan.
:func:`remove_legacy_table` drops the one an older demo left there.
"""

from __future__ import annotations

import datetime as dt
import random
from typing import Any

from cutover import connections
from cutover.consistency import registry
from cutover.consistency.spec import Endpoint, PairSpec
from cutover.identifiers import quote_mysql

PAIR = "demo_accounts_mysql_to_pg"
MYSQL_DB = "cutover_demo_consistency"
#: where demos before this one put ``demo_accounts`` (tenant_split's source database)
LEGACY_MYSQL_DB = "cutover_source"
PG_SCHEMA = "cutover_demo"


def _rows(n: int, seed: int = 7) -> list[tuple[Any, ...]]:
    rnd = random.Random(seed)
    base = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    return [
        (
            i,
            f"account {i} {'ü' if i % 7 == 0 else ''}".strip() + (" " if i % 11 == 0 else ""),
            round(rnd.uniform(-1000, 100000), 2),
            base + dt.timedelta(seconds=i * 37, microseconds=rnd.randrange(1_000_000)),
            i % 3 != 0,
            None if i % 13 == 0 else f"note {rnd.randrange(1000)}",
        )
        for i in range(1, n + 1)
    ]


def remove_legacy_table() -> bool:
    """Drop ``cutover_source.demo_accounts`` that an older demo left in tenant_split's source (run
    before tenant_split's part). Returns whether there was one."""
    with connections.mysql_connect(connections.MYSQL_SOURCE, database="") as my:
        cur = my.cursor()
        cur.execute("SELECT 1 FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s AND TABLE_NAME = 'demo_accounts'",
                    (LEGACY_MYSQL_DB,))
        if cur.fetchone() is None:
            return False
        cur.execute(f"DROP TABLE {quote_mysql(LEGACY_MYSQL_DB)}.demo_accounts")
        return True


def demo_step(scale: float) -> dict[str, Any]:
    """Create both sides with equal data, register the pair; return the DAG's run conf."""
    n = max(1000, int(20_000 * scale))
    data = _rows(n)
    with connections.mysql_connect(connections.MYSQL_SOURCE, database="") as my:
        cur = my.cursor()
        db = quote_mysql(MYSQL_DB)
        cur.execute(f"CREATE DATABASE IF NOT EXISTS {db} CHARACTER SET utf8mb4")
        cur.execute(f"DROP TABLE IF EXISTS {db}.demo_accounts")
        cur.execute(
            f"""CREATE TABLE {db}.demo_accounts (id bigint PRIMARY KEY, name varchar(100) NOT NULL,
                balance decimal(12,2) NOT NULL, updated_at datetime(6) NOT NULL, active tinyint(1) NOT NULL,
                note text NULL)"""
        )
        cur.executemany(
            f"INSERT INTO {db}.demo_accounts VALUES (%s, %s, %s, %s, %s, %s)",
            [(r[0], r[1], r[2], r[3].replace(tzinfo=None), int(r[4]), r[5]) for r in data],
        )
    with connections.pg_connect() as pg:
        registry.ensure_registry(pg)
        pg.execute(f"CREATE SCHEMA IF NOT EXISTS {PG_SCHEMA}")
        pg.execute(f"DROP TABLE IF EXISTS {PG_SCHEMA}.accounts")
        pg.execute(
            f"""CREATE TABLE {PG_SCHEMA}.accounts (id bigint PRIMARY KEY, name text NOT NULL,
                balance numeric(14,2) NOT NULL, updated_at timestamptz NOT NULL, active boolean NOT NULL, note text)"""
        )
        with pg.cursor().copy(f"COPY {PG_SCHEMA}.accounts FROM STDIN") as cp:
            for r in data:
                cp.write_row(r)
        registry.register_pair(
            pg,
            PairSpec(
                name=PAIR,
                source=Endpoint(connections.MYSQL_SOURCE, table=f"{MYSQL_DB}.demo_accounts"),
                target=Endpoint(connections.POSTGRES_TARGET, table=f"{PG_SCHEMA}.accounts"),
                key=("id",),
                kinds={"balance": "decimal:2"},
                window_column="updated_at",
                repair="upsert",
                description="make demo: MySQL accounts and their PostgreSQL copy with mapped types",
            ),
            pipeline="demo",
        )
    return {"pairs": [PAIR], "full_sweep": True, "repair": False}
