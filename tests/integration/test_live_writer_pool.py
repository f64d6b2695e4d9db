"""The benchmarks' writer (:class:`cutover.samples.live_writer.WriterPool`) on the real MariaDB and
PostgreSQL: processes at a fixed rate of changed rows/s, several rows per transaction, the route
followed exactly (paused → wait → the new side), the rows as the writer says it left them.

Own names: MySQL database ``hrc_<uuid>``, PostgreSQL schema ``x"; DROP TABLE y; -- hrc…``, hostile
tables ``100%`` (a ``%`` inside a query with parameters) and ``Order``; routes under scope
``hrc_<uuid>``, removed afterwards.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from decimal import Decimal

import pytest

from cutover import control
from cutover.connections import CONTROL, MYSQL_SOURCE, POSTGRES_TARGET, mysql_connect, pg_connect
from cutover.identifiers import quote_mysql, quote_pg
from cutover.samples.hostile import HOSTILE_NAMES
from cutover.samples.live_writer import WriterPool, WriterSpec, WriterStats

pytestmark = pytest.mark.integration

PIPELINE = "mysql_to_postgres"
PAUSED, OTHER = "100%", "Order"
SEED_ROWS = 2000
assert {PAUSED, OTHER} <= set(HOSTILE_NAMES)


@pytest.fixture
def names() -> Iterator[dict[str, str]]:
    """A MySQL database and a PostgreSQL schema, each with both tables of :data:`SEED_ROWS` rows."""
    db = f"hrc_{uuid.uuid4().hex[:10]}"
    schema = f'x"; DROP TABLE y; -- {db[-6:]}'
    with mysql_connect(MYSQL_SOURCE, database="") as conn:
        cur = conn.cursor()
        cur.execute(f"CREATE DATABASE {quote_mysql(db)} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
        for t in (PAUSED, OTHER):
            q = f"{quote_mysql(db)}.{quote_mysql(t)}"  # no parameters: no %% escaping
            cur.execute(f"CREATE TABLE {q} (id BIGINT NOT NULL PRIMARY KEY, name VARCHAR(40) NOT NULL, "
                        "amount DECIMAL(12,2) NOT NULL, note TEXT NULL) ENGINE=InnoDB")
            cur.execute(f"INSERT INTO {q} SELECT seq, CONCAT('주문 ', seq), seq / 100, NULL "
                        f"FROM {quote_mysql(db)}.seq_1_to_{SEED_ROWS}")
    with pg_connect(POSTGRES_TARGET) as conn:
        conn.execute(f"CREATE SCHEMA {quote_pg(schema)}")
        for t in (PAUSED, OTHER):
            q = f"{quote_pg(schema)}.{quote_pg(t)}"
            conn.execute(f"CREATE TABLE {q} (id BIGINT PRIMARY KEY, name VARCHAR(40) NOT NULL, "
                         "amount NUMERIC(12,2) NOT NULL, note TEXT)")
            conn.execute(f"INSERT INTO {q.replace('%', '%%')} SELECT g, '주문 ' || g, g / 100.0, NULL "
                         "FROM generate_series(1, %s) g",
                         (SEED_ROWS,))
    yield {"db": db, "schema": schema, "scope": db}
    with mysql_connect(MYSQL_SOURCE, database="") as conn:
        conn.cursor().execute(f"DROP DATABASE IF EXISTS {quote_mysql(db)}")
    with pg_connect(POSTGRES_TARGET) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {quote_pg(schema)} CASCADE")
    with pg_connect(CONTROL) as conn:
        for t in ("routes", "route_history"):
            conn.execute(f"DELETE FROM {control.SCHEMA}.{t} WHERE pipeline = %s AND scope = %s", (PIPELINE, db))


def _rows(names: dict[str, str], side: str, table: str) -> dict[int, tuple[str, Decimal]]:
    if side == "mysql":
        with mysql_connect(MYSQL_SOURCE, database="") as conn:
            cur = conn.cursor()
            cur.execute(f"SELECT id, name, amount FROM {quote_mysql(names['db'])}.{quote_mysql(table)}".replace("%", "%%"), ())
            return {int(r[0]): (str(r[1]), Decimal(r[2])) for r in cur.fetchall()}
    with pg_connect(POSTGRES_TARGET) as conn:
        return {int(r[0]): (str(r[1]), Decimal(r[2])) for r in conn.execute(
            f"SELECT id, name, amount FROM {quote_pg(names['schema'])}.{quote_pg(table)}").fetchall()}


def _copy_to_postgres(names: dict[str, str], table: str) -> None:
    """PostgreSQL's copy of ``table`` made equal to MySQL's (what the cutover does under the pause)."""
    rows = _rows(names, "mysql", table)
    q = f"{quote_pg(names['schema'])}.{quote_pg(table)}"
    with pg_connect(POSTGRES_TARGET) as conn:
        conn.execute(f"DELETE FROM {q}")
        with conn.cursor() as cur:
            cur.executemany(f"INSERT INTO {q.replace('%', '%%')} (id, name, amount) VALUES (%s, %s, %s)",
                            [(k, *v) for k, v in rows.items()])


def _check_side(names: dict[str, str], stats: WriterStats, table: str, side: str, other_side: str | None) -> int:
    """Every key the writer wrote on ``side`` (and not on ``other_side``: None for every key) is there as it
    left it (or gone); the count checked."""
    rows = _rows(names, side, table)
    only = (set(stats.expected.get(table, {})) if other_side is None else
            stats.written.get(side, {}).get(table, set()) - stats.written.get(other_side, {}).get(table, set()))
    for key in only:
        want = stats.expected[table][key]
        got = rows.get(key)
        assert got == (None if want is None else (want["name"], want["amount"])), (table, side, key, want, got)
    return len(only)


def test_pool_writes_at_the_rate_and_follows_a_paused_then_moved_route(names: dict[str, str]) -> None:
    """Two table writers (a process each) at 1,000 changed rows/s in 10-row transactions: the rate is
    reached (≥ 80 % on this shared machine); the table whose route is paused for 0.6 s waits (its max
    latency covers the pause) and then writes PostgreSQL only (its rows copied there during the pause, as
    a cutover does), while the other keeps committing on MySQL during the pause; no transaction fails;
    every row is as the writer says it left it, on each side."""
    specs = [WriterSpec("table", {"database": names["db"], "schema": names["schema"], "table": t,
                                  "scope": names["scope"], "seed_rows": SEED_ROWS, "seed": i})
             for i, t in enumerate((PAUSED, OTHER))]
    pool = WriterPool(specs, 1000, rows_per_tx=10)
    assert pool.rows_per_tx == 10 and abs(pool.tx_interval_s - 0.02) < 1e-9
    pool.start()
    try:
        time.sleep(1.5)
        with pg_connect(CONTROL) as c:
            control.set_route(c, PIPELINE, names["scope"], PAUSED, {"backend": "mysql"}, state="paused", reason="hrc test")
        paused_at = time.time()
        time.sleep(0.15)  # a transaction begun before the pause ends (ms); then the cutover's catch-up, by hand
        _copy_to_postgres(names, PAUSED)
        time.sleep(max(0.0, paused_at + 0.6 - time.time()))
        with pg_connect(CONTROL) as c:
            control.set_route(c, PIPELINE, names["scope"], PAUSED, {"backend": "postgres"}, reason="hrc test")
        moved_at = time.time()
        time.sleep(1.5)
    finally:
        stats = pool.stop()
    summary = pool.summary()
    print("\n" + pool.describe(), summary["per_unit"])
    assert summary["aborted"] == 0 and summary["errors"] == {}, [s.error_messages[:3] for s in stats.values()]
    assert summary["processes"] == 2 and summary["rows"] == 10 * summary["transactions"]
    assert summary["achieved_rows_per_s"] >= 800, summary
    p, o = stats[PAUSED], stats[OTHER]
    sides = [c[2] for c in sorted(p.commits)]
    assert sides[0] == "mysql" and sides[-1] == "postgres" and "mysql" not in sides[sides.index("postgres"):], sides
    # nothing committed on MySQL after the pause began (a transaction begun before it may end just after)
    assert all(c[1] < paused_at + 0.1 for c in p.commits if c[2] == "mysql"), (paused_at, p.commits[-5:])
    assert all(c[0] >= moved_at - 0.05 for c in p.commits if c[2] == "postgres"), (moved_at, p.commits[:3])
    assert p.paused_waits > 0 and max(p.latencies) >= 0.4, (p.paused_waits, max(p.latencies))
    assert len([c for c in o.commits if paused_at + 0.1 <= c[0] and c[1] <= moved_at]) >= 10, "the other table waited"
    assert {c[2] for c in o.commits} == {"mysql"}
    assert _check_side(names, p, PAUSED, "mysql", "postgres") > 50
    assert _check_side(names, p, PAUSED, "postgres", None) > 100  # copied at the pause, then written there
    assert _check_side(names, o, OTHER, "mysql", "postgres") > 100
