"""tenant_split as DAGs: dry run (plan + schema diff report only), build with the GX gate, sync, cutover
(approval off) and rollback with drop — dag.test() on the sample shop database."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.dags.conftest import load_dag as _dag
from tests.dags.conftest import mapped_states as _states

pytestmark = [pytest.mark.dags, pytest.mark.integration]

SRC = "ts_dagtest_src"
PREFIX = "tsdag_"
CONF = {"source_database": SRC, "mapping": "mappings/tenant_split.yaml", "database_prefix": PREFIX}




@pytest.fixture
def shop(mysql: Any, pg: Any) -> Iterator[None]:
    from cutover.samples.tenants import seed_tenants

    cur = mysql.cursor()

    def drop() -> None:
        cur.execute("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE 'tsdag\\_%%'")
        for (name,) in cur.fetchall():
            cur.execute(f"DROP DATABASE `{name}`")
        for table in ("units", "switches", "switch_history", "object_backups"):
            pg.execute(f"DELETE FROM cutover.{table} WHERE pipeline = 'tenant_split' AND starts_with(unit_key, %s)",
                       (SRC + ":",))
        for table in ("name_map",):
            pg.execute(f"DELETE FROM cutover.{table} WHERE pipeline = 'tenant_split' AND scope = %s", (SRC,))
        pg.execute("DELETE FROM cutover.routes WHERE pipeline = 'tenant_split' AND scope = %s", (SRC,))
        pg.commit()

    drop()
    seed_tenants(mysql, database=SRC, tenants=2, rows=120)
    mysql.commit()
    yield
    drop()
    cur.execute(f"DROP DATABASE IF EXISTS {SRC}")


def test_dags_are_wired_as_documented(airflow_db: None) -> None:
    build = _dag("tenant_split_build")
    chain = {f"unit_batch.{t}" for t in ("prepare", "copy", "finalize", "verify")}
    assert {t.task_id for t in build.tasks} == {"plan", "report"} | chain
    assert {"tenants", "tables", "units", "copy_mode", "chunk_rows", "parallelism", "dry_run", "gx_gate"} <= set(build.params)
    assert _dag("tenant_split_sync").max_active_runs == 1
    assert {"approve", "switch"} <= {t.task_id for t in _dag("tenant_split_cutover").tasks}
    assert "drop" in _dag("tenant_split_rollback").params
    assert _dag("tenant_split_rollback").params["discard_target_writes"] is False  # losing writes is opt-in
    assert "require_approval" not in _dag("tenant_split_cutover").params  # approval is policy, not a form field


def test_dry_run_then_build_sync_cutover_rollback(airflow_db: None, shop: None, pg: Any, mysql: Any,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from cutover import control

    dry = _dag("tenant_split_build").test(run_conf={**CONF, "dry_run": True})
    assert str(dry.state) == "success", _states(dry)
    run = control.get_run(pg, dry.run_id)
    assert run["evidence"]["plan"]["dry_run"] is True and run["evidence"]["plan"]["units"] == 12
    assert run["evidence"]["schema_diff"]["summary"]["dropped"] == 1  # legacy_sessions
    assert control.list_units(pg, dry.run_id) == []
    cur = mysql.cursor()
    cur.execute("SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE 'tsdag\\_%%'")
    assert cur.fetchone()[0] == 0  # a dry run writes nothing
    pg.commit()

    dr = _dag("tenant_split_build").test(run_conf={**CONF, "chunk_rows": 100, "parallelism": 2, "gx_gate": True})
    assert str(dr.state) == "success", _states(dr)
    units = control.list_units(pg, dr.run_id)
    assert len(units) == 12 and {u["state"] for u in units} == {"verified"}
    assert all(u["checksum_source"] == u["checksum_target"] for u in units)
    assert all((u["detail"]["verify"].get("gate") or {}).get("success") for u in units)
    pg.commit()

    cur.execute(f"UPDATE {SRC}.orders SET status = 'refunded' WHERE tenant_id = 1 ORDER BY id LIMIT 3")
    mysql.commit()
    sync = _dag("tenant_split_sync").test(run_conf={**CONF, "tenants": []})
    assert str(sync.state) == "success", _states(sync)
    cur.execute(f"SELECT COUNT(*) FROM {PREFIX}1.orders WHERE status = 'refunded'")
    got = cur.fetchone()[0]
    cur.execute(f"SELECT COUNT(*) FROM {SRC}.orders WHERE tenant_id = 1 AND status = 'refunded'")
    assert got == cur.fetchone()[0]
    mysql.commit()  # end the read: an open transaction holds metadata locks the cutover's DDL would wait for

    monkeypatch.setenv("CUTOVER_REQUIRE_APPROVAL_TENANT_SPLIT", "off")  # the operator's policy: no human here
    cut = _dag("tenant_split_cutover").test(run_conf={**CONF, "units": ["1"]})
    assert str(cut.state) == "success", _states(cut)
    assert control.get_route(pg, "tenant_split", SRC, "1")["location"]["database"] == f"{PREFIX}1"
    ev = control.get_run(pg, cut.run_id)["evidence"]
    assert ev["groups"]["1"]["paused_s"] < 5
    pg.commit()

    # writes in the tenant's database after the cutover flow back: the sync DAG's reverse stream brings
    # the first to the shared tables, the rollback drains the second before readers move back
    cur.execute(f"SELECT id FROM {PREFIX}1.orders WHERE status <> 'shipped' ORDER BY id LIMIT 2")
    first, second = (r[0] for r in cur.fetchall())
    cur.execute(f"UPDATE {PREFIX}1.orders SET status = 'shipped' WHERE id = %s", (first,))
    mysql.commit()
    back = _dag("tenant_split_sync").test(run_conf={**CONF, "tenants": []})
    assert str(back.state) == "success", _states(back)
    cur.execute(f"SELECT status FROM {SRC}.orders WHERE id = %s", (first,))
    assert cur.fetchone()[0] == "shipped"
    cur.execute(f"UPDATE {PREFIX}1.orders SET status = 'shipped' WHERE id = %s", (second,))
    mysql.commit()
    pg.commit()

    rb = _dag("tenant_split_rollback").test(run_conf={**CONF, "units": ["1"], "drop": True})
    assert str(rb.state) == "success", _states(rb)
    writes = control.get_run(pg, rb.run_id)["evidence"]["target_writes"]
    assert writes["found"] == {} and writes["discarded"] is False and writes["reverse_drained"]
    assert control.get_route(pg, "tenant_split", SRC, "1")["location"]["backend"] == "shared"
    cur.execute(f"SELECT status FROM {SRC}.orders WHERE id = %s", (second,))
    assert cur.fetchone()[0] == "shipped"
    mysql.commit()
    cur.execute("SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s", (f"{PREFIX}1",))
    assert cur.fetchone()[0] == 0
