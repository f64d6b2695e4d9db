"""Seeding the samples into the real MariaDB / PostgreSQL: row counts, schema objects, repeatability."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from cutover.identifiers import pg_ident, quote_mysql
from cutover.samples import complaints, tenants

pytestmark = pytest.mark.integration


@pytest.fixture
def test_db(mysql: Any) -> Iterator[str]:
    """A MySQL database unique to this test, dropped afterwards."""
    name = f"cutover_samples_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    yield name
    with mysql.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {quote_mysql(name)}")


def _counts(mysql: Any, database: str, tables: tuple[str, ...]) -> dict[str, int]:
    out = {}
    with mysql.cursor() as cur:
        for t in tables:
            cur.execute(f"SELECT COUNT(*) FROM {quote_mysql(database)}.{quote_mysql(t)}")
            out[t] = int(cur.fetchone()[0])
    return out


def test_seed_tenants_into_mysql(mysql: Any, test_db: str) -> None:
    counts = tenants.seed_tenants(mysql, database=test_db, tenants=5, rows=2000, seed=11, batch_rows=500)
    assert counts == tenants.expected_counts(tenants=5, rows=2000, seed=11)
    assert counts["tenants"] == 5 and counts["orders"] == 2000
    assert _counts(mysql, test_db, tenants.TABLES) == counts
    with mysql.cursor() as cur:
        cur.execute(
            f"SELECT tenant_id, COUNT(*) FROM {quote_mysql(test_db)}.orders GROUP BY tenant_id ORDER BY tenant_id"
        )
        per_tenant = [int(n) for _, n in cur.fetchall()]
        assert per_tenant == tenants.tenant_sizes(5, 2000)
        cur.execute(
            "SELECT TRIGGER_NAME FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = %s ORDER BY 1",
            (test_db,),
        )
        assert [r[0] for r in cur.fetchall()] == sorted(tenants.TRIGGERS)
        cur.execute(
            """SELECT COUNT(*) FROM information_schema.REFERENTIAL_CONSTRAINTS WHERE CONSTRAINT_SCHEMA = %s""",
            (test_db,),
        )
        assert cur.fetchone()[0] >= 5
        cur.execute(f"SELECT COUNT(*) FROM {quote_mysql(test_db)}.customers WHERE email <> LOWER(email)")
        assert cur.fetchone()[0] == 0  # the trigger ran on load
        # foreign keys hold although they were not checked during the load
        cur.execute(
            f"""SELECT COUNT(*) FROM {quote_mysql(test_db)}.orders o
                LEFT JOIN {quote_mysql(test_db)}.customers c ON c.id = o.customer_id AND c.tenant_id = o.tenant_id
                WHERE c.id IS NULL"""
        )
        assert cur.fetchone()[0] == 0
        cur.execute("SELECT @@FOREIGN_KEY_CHECKS")
        assert cur.fetchone()[0] == 1
    # seeding again replaces the sample with an identical one
    assert tenants.seed_tenants(mysql, database=test_db, tenants=5, rows=2000, seed=11) == counts
    assert _counts(mysql, test_db, tenants.TABLES) == counts


def test_seed_complaints_into_mysql(mysql: Any, test_db: str) -> None:
    assert complaints.seed_complaints(mysql, rows=1234, seed=2, schema=test_db, batch_rows=500) == 1234
    assert _counts(mysql, test_db, ("complaints",)) == {"complaints": 1234}
    with mysql.cursor() as cur:
        cur.execute(
            f"SELECT id, title, body, department, type FROM {quote_mysql(test_db)}.complaints WHERE id = 7"
        )
        row = cur.fetchone()
    expected = list(complaints.generate_complaints(rows=7, seed=2))[-1]
    assert tuple(row) == expected[:5]


def test_seed_complaints_into_postgres(pg: Any) -> None:
    schema = f"cutover_samples_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    try:
        assert complaints.seed_complaints(pg, rows=1500, seed=3, schema=schema) == 1500
        rows = pg.execute(f"SELECT department, count(*) FROM {schema}.complaints GROUP BY 1").fetchall()
        assert sum(n for _, n in rows) == 1500 and len(rows) >= 4
        first = pg.execute(
            f"SELECT id, title, body, department, type, created_at FROM {schema}.complaints WHERE id = 1"
        ).fetchone()
        assert first == next(complaints.generate_complaints(rows=1, seed=3))
    finally:
        from psycopg import sql

        pg.rollback()
        pg.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(pg_ident(schema)))
        pg.commit()
