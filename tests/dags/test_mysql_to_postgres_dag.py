"""mysql_to_postgres as DAGs: dry run (plan + type-mapping report only, nothing written), build with the GX
gate, sync from the binary log, cutover (approval off) and rollback with drop — dag.test() on the sample
database of every MySQL type, read through the read-only user."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.dags.conftest import load_dag as _dag
from tests.dags.conftest import mapped_states as _states

pytestmark = [pytest.mark.dags, pytest.mark.integration]

SRC = "m2p_dagtest_src"
SCHEMA = "m2p_dagtest"
CONF = {"source_database": SRC, "target_schema": SCHEMA}




@pytest.fixture
def sample(mysql: Any, pg: Any) -> Iterator[None]:
    from cutover.mysql_to_postgres.config import MysqlToPostgresConfig
    from cutover.mysql_to_postgres.load import STATE_SCHEMA, ensure_state
    from cutover.mysql_to_postgres.readonly import ensure_read_only_user
    from cutover.samples.mysql_types import seed

    scope = MysqlToPostgresConfig(source_database=SRC, target_schema=SCHEMA).scope + ":"

    def drop() -> None:
        pg.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
        ensure_state(pg)
        for t in ("m2p_checkpoints", "m2p_positions"):
            pg.execute(f"DELETE FROM {STATE_SCHEMA}.{t} WHERE starts_with(unit_key, %s)", (scope,))
        for table in ("units", "switches", "switch_history"):
            pg.execute(f"DELETE FROM cutover.{table} WHERE pipeline = 'mysql_to_postgres' AND starts_with(unit_key, %s)",
                       (scope,))
        pg.execute("DELETE FROM cutover.routes WHERE pipeline = 'mysql_to_postgres' AND scope = %s", (scope[:-1],))
        pg.commit()

    drop()
    seed("mysql_source", SRC, rows=150)
    ensure_read_only_user("mysql_source", "cutover_ro", [SRC])
    yield
    drop()
    mysql.cursor().execute(f"DROP DATABASE IF EXISTS {SRC}")


def test_dags_are_wired_as_documented(airflow_db: None) -> None:
    build = _dag("mysql_to_postgres_build")
    chain = {f"unit_batch.{t}" for t in ("prepare", "copy", "finalize", "verify")}
    assert {t.task_id for t in build.tasks} == {"plan", "report"} | chain
    assert {"tables", "table_pattern", "units", "overrides", "zero_date", "enum_empty", "chunk_rows", "sync_mode",
            "gx_gate", "allow_writable_source", "dry_run"} <= set(build.params)
    assert _dag("mysql_to_postgres_sync").max_active_runs == 1
    assert {"approve", "switch"} <= {t.task_id for t in _dag("mysql_to_postgres_cutover").tasks}
    assert "drop" in _dag("mysql_to_postgres_rollback").params
    assert _dag("mysql_to_postgres_rollback").params["discard_target_writes"] is False  # losing writes is opt-in
    assert "require_approval" not in _dag("mysql_to_postgres_cutover").params  # approval is policy, not a form field


def test_dry_run_then_build_sync_cutover_rollback(airflow_db: None, sample: None, pg: Any, mysql: Any,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from cutover import control

    dry = _dag("mysql_to_postgres_build").test(run_conf={**CONF, "dry_run": True})
    assert str(dry.state) == "success", _states(dry)
    run = control.get_run(pg, dry.run_id)
    assert run["evidence"]["plan"]["dry_run"] is True and run["evidence"]["plan"]["units"] == 4
    assert run["evidence"]["type_mapping"]["tables"] == 4
    assert pg.execute("SELECT to_regnamespace(%s)", (SCHEMA,)).fetchone()[0] is None  # nothing written
    pg.commit()

    dr = _dag("mysql_to_postgres_build").test(run_conf={**CONF, "chunk_rows": 100, "gx_gate": True})
    assert str(dr.state) == "success", _states(dr)
    units = {u["unit_key"].split(":", 1)[1]: u for u in control.list_units(pg, dr.run_id)}
    assert set(units) == {"customers", "orders", "events_log", 'x"; DROP TABLE y; --'}
    assert {u["state"] for u in units.values()} == {"verified"}
    assert all((u["detail"]["verify"].get("gate") or {}).get("success") for u in units.values())
    pg.commit()

    cur = mysql.cursor()
    cur.execute(f"UPDATE {SRC}.orders SET amount = amount + 1 ORDER BY customer_id LIMIT 3")
    cur.execute(f"DELETE FROM {SRC}.orders ORDER BY customer_id DESC LIMIT 2")
    mysql.commit()
    sync = _dag("mysql_to_postgres_sync").test(run_conf=CONF)
    assert str(sync.state) == "success", _states(sync)
    cur.execute(f"SELECT COUNT(*), SUM(amount) FROM {SRC}.orders")
    n, total = cur.fetchone()
    assert pg.execute(f"SELECT count(*), sum(amount) FROM {SCHEMA}.orders").fetchone() == (n, total)
    pg.commit()

    monkeypatch.setenv("CUTOVER_REQUIRE_APPROVAL_MYSQL_TO_POSTGRES", "off")  # the operator's policy: no human here
    cut = _dag("mysql_to_postgres_cutover").test(run_conf={**CONF, "units": ["orders"]})
    assert str(cut.state) == "success", _states(cut)
    scope = f"{SRC}>{SCHEMA}"
    assert control.get_route(pg, "mysql_to_postgres", scope, "orders")["location"]["backend"] == "postgres"
    pg.commit()

    # with the reverse stream stopped (by hand), a write that reached PostgreSQL after the switch is not
    # brought back: the rollback refuses, nothing moves (tests/integration/test_mysql_to_postgres_reverse.py
    # has the stream bringing such writes back and the rollback draining it)
    from cutover.mysql_to_postgres import reverse
    from cutover.mysql_to_postgres.config import MysqlToPostgresConfig
    from cutover.mysql_to_postgres.spec import SPEC

    cfg = MysqlToPostgresConfig.from_params(CONF)
    reverse.stop(cfg, SPEC.unit_key(cfg, "orders"))
    pg.execute(f"UPDATE {SCHEMA}.orders SET amount = amount + 1 WHERE ctid = (SELECT min(ctid) FROM {SCHEMA}.orders)")
    pg.commit()
    refused = _dag("mysql_to_postgres_rollback").test(run_conf={**CONF, "units": ["orders"], "drop": True})
    assert str(refused.state) == "failed" and _states(refused)["roll_back[-1]"] == "failed"
    assert control.get_route(pg, "mysql_to_postgres", scope, "orders")["location"]["backend"] == "postgres"
    assert control.get_run(pg, refused.run_id)["evidence"]["target_writes"]["found"]["orders"]["updated"] == 1
    pg.commit()

    rb = _dag("mysql_to_postgres_rollback").test(
        run_conf={**CONF, "units": ["orders"], "drop": True, "discard_target_writes": True})
    assert str(rb.state) == "success", _states(rb)
    assert control.get_route(pg, "mysql_to_postgres", scope, "orders")["location"]["backend"] == "mysql"
    assert pg.execute(f"SELECT to_regclass('{SCHEMA}.orders')").fetchone()[0] is None
