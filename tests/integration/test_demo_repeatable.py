"""``make demo`` twice on the same servers: no demo part leaves a table in another part's source.

The consistency part put ``demo_accounts`` into ``cutover_source``, tenant_split's source, whose mapping
says ``unlisted: error``: the second demo failed at tenant_split's plan. Here on databases of their own
(unique names, hostile tenant data from the sample), the real seeds and the real plan.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from cutover import connections
from cutover.consistency import demo as cc_demo
from cutover.consistency import registry
from cutover.identifiers import quote_mysql
from cutover.lifecycle.stages import PlanFailed, plan
from cutover.mysql_to_postgres import demo as m2p_demo
from cutover.samples.tenants import seed_tenants
from cutover.tenant_split import demo as ts_demo

pytestmark = pytest.mark.integration


def test_each_demo_part_keeps_its_mysql_tables_in_its_own_database() -> None:
    assert len({cc_demo.MYSQL_DB, ts_demo.SOURCE, m2p_demo.SOURCE}) == 3
    assert cc_demo.LEGACY_MYSQL_DB == ts_demo.SOURCE  # the older demo's leftover is looked for there


@pytest.fixture
def databases(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    tag = uuid.uuid4().hex[:6]
    names = {"source": f"demo_rep_src_{tag}", "consistency": f"demo_rep_cc_{tag}"}
    monkeypatch.setattr(cc_demo, "MYSQL_DB", names["consistency"])
    monkeypatch.setattr(cc_demo, "LEGACY_MYSQL_DB", names["source"])
    monkeypatch.setattr(cc_demo, "PAIR", f"demo_rep_pair_{tag}")
    monkeypatch.setattr(cc_demo, "PG_SCHEMA", f"demo_rep_{tag}")
    yield names
    with connections.mysql_connect(connections.MYSQL_SOURCE, database="") as my:
        for db in names.values():
            my.cursor().execute(f"DROP DATABASE IF EXISTS {quote_mysql(db)}")
    with connections.pg_connect() as pg:
        registry.unregister_pair(pg, cc_demo.PAIR)
        pg.execute(f'DROP SCHEMA IF EXISTS "{cc_demo.PG_SCHEMA}" CASCADE')


def _plan(source: str) -> list[dict[str, Any]]:
    from cutover.tenant_split.spec import SPEC

    params = {"source_database": source, "database_prefix": "demorep_", "dry_run": True, "tenants": [], "tables": []}
    return plan(SPEC, params, f"demo_rep_{uuid.uuid4().hex[:8]}", max_batches=4)


def test_tenant_split_plans_after_the_consistency_part_again_and_again(databases: dict[str, str]) -> None:
    with connections.mysql_connect(connections.MYSQL_SOURCE, database="") as conn:
        seed_tenants(conn, database=databases["source"], tenants=3, rows=200)
    for _ in range(2):  # the demo's order, twice: tenant_split's plan, then the consistency part's seed
        _plan(databases["source"])
        cc_demo.demo_step(0.01)
    with connections.mysql_connect(connections.MYSQL_SOURCE, database="") as my:
        cur = my.cursor()
        cur.execute("SELECT TABLE_SCHEMA FROM information_schema.TABLES WHERE TABLE_NAME = 'demo_accounts' "
                    "AND TABLE_SCHEMA IN (%s, %s)", (databases["source"], databases["consistency"]))
        assert [r[0] for r in cur.fetchall()] == [databases["consistency"]]


def test_an_older_demos_leftover_in_the_source_is_removed(databases: dict[str, str]) -> None:
    with connections.mysql_connect(connections.MYSQL_SOURCE, database="") as conn:
        seed_tenants(conn, database=databases["source"], tenants=3, rows=200)
        conn.cursor().execute(f"CREATE TABLE {quote_mysql(databases['source'])}.demo_accounts (id bigint PRIMARY KEY)")
    with pytest.raises(PlanFailed, match="demo_accounts") as err:  # what the second `make demo` met
        _plan(databases["source"])
    assert err.value.permanent  # unlisted: error is a mapping error: no retries
    assert cc_demo.remove_legacy_table() is True
    assert cc_demo.remove_legacy_table() is False
    _plan(databases["source"])
