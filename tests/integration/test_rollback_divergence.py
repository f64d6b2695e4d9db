"""Rollback never loses the target's writes silently (issues #19, #20), on the real MariaDB and PostgreSQL.

After a cutover, rows written to the target (a tenant's database; the PostgreSQL copy) flow back to the
source through the reverse stream, which the rollback drains first (tests/integration/
test_tenant_split_reverse.py, test_mysql_to_postgres_reverse.py). Where that stream is not running
(stopped by hand: ``reverse.stop``), the target's writes are not on the source: a rollback must find
them row by row, refuse naming table, counts and keys (nothing rolled back, the refusal in the run's
evidence), and go on only with ``discard_target_writes``, recorded in ``switch_history`` and the evidence.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cutover import control
from cutover.connections import MYSQL_SOURCE, MYSQL_TARGET, mysql_connect, pg_connect
from cutover.identifiers import quote_mysql, quote_pg
from cutover.lifecycle import stages
from cutover.lifecycle.switch import TargetWritesFound, rollback, split_ready, switch, trigger_record
from cutover.samples.hostile import HOSTILE_NAMES

pytestmark = pytest.mark.integration

# --- tenant_split -----------------------------------------------------------------------------------

TS_SRC = "ts_rbdiv_src"
TS_PREFIX = "tsrbdiv_"
TS_STATE = "cutover_state_rbdiv"
#: two hostile tenant ids (a quote, a percent sign)
TENANT, OTHER = 'quo"te', "100%"
assert {TENANT, OTHER} <= set(HOSTILE_NAMES)
TS_MAPPING = """\
tenant_column: tenant
tables:
  accounts: {}
  orders: {}
  activity: {}
unlisted: error
"""


def _ts_seed() -> None:
    with mysql_connect(MYSQL_SOURCE, database="") as conn:
        cur = conn.cursor()
        cur.execute(f"DROP DATABASE IF EXISTS {TS_SRC}")
        cur.execute(f"CREATE DATABASE {TS_SRC} CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
        cur.execute(f"USE {TS_SRC}")
        cur.execute("CREATE TABLE accounts (tenant VARCHAR(100) NOT NULL PRIMARY KEY, plan VARCHAR(20) NOT NULL)")
        cur.execute("""CREATE TABLE orders (tenant VARCHAR(100) NOT NULL, order_no INT NOT NULL, total DECIMAL(12,2) NULL,
                       note VARCHAR(100) NULL, PRIMARY KEY (tenant, order_no))""")
        cur.execute("CREATE TABLE activity (tenant VARCHAR(100) NOT NULL, msg TEXT NULL, KEY activity_tenant (tenant))")
        for tenant in (TENANT, OTHER):
            cur.execute("INSERT INTO accounts VALUES (%s, 'team')", (tenant,))
            for o in range(1, 6):
                cur.execute("INSERT INTO orders VALUES (%s, %s, %s, %s)", (tenant, o, f"{o}0.5{o}", f"ö {o}"))
            cur.execute("INSERT INTO activity VALUES (%s, 'same'), (%s, 'same')", (tenant, tenant))
        conn.commit()


def _ts_drop_targets() -> None:
    with mysql_connect(MYSQL_TARGET, database="") as conn:
        cur = conn.cursor()
        cur.execute("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE %s OR SCHEMA_NAME = %s",
                    (TS_PREFIX.replace("_", "\\_") + "%", TS_STATE))
        for (name,) in cur.fetchall():
            cur.execute(f"DROP DATABASE {quote_mysql(name.decode() if isinstance(name, bytes) else name)}")


def _ts_clean_control(pipeline: str) -> None:
    with pg_connect() as pg:
        control.ensure_schema(pg)
        for table in ("units", "switches", "switch_history", "object_backups", "dead_letters"):
            pg.execute(f"DELETE FROM cutover.{table} WHERE pipeline = %s AND starts_with(unit_key, %s)",
                       (pipeline, TS_SRC + ":"))
        for table in ("name_map", "routes", "route_history"):
            pg.execute(f"DELETE FROM cutover.{table} WHERE pipeline = %s AND scope = %s", (pipeline, TS_SRC))


@pytest.fixture
def tenant_cut_over(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """``TENANT`` built, verified and cut over to its own database (approval policy off for this test)."""
    from cutover.tenant_split.config import PIPELINE, TenantSplitConfig
    from cutover.tenant_split.spec import SPEC

    mapping = tmp_path / "mapping.yaml"
    mapping.write_text(TS_MAPPING, encoding="utf-8")
    _ts_seed()
    _ts_drop_targets()
    _ts_clean_control(PIPELINE)
    params = {"source_database": TS_SRC, "mapping": str(mapping), "tenant_directory": "accounts",
              "database_prefix": TS_PREFIX, "state_database": TS_STATE, "chunk_rows": 3, "parallelism": 1,
              "gx_gate": False, "tenants": [TENANT, OTHER]}
    assert stages.run_build(SPEC, params, "ts_rbdiv_build").green
    cfg = TenantSplitConfig.from_params(params)
    monkeypatch.setenv("CUTOVER_REQUIRE_APPROVAL_TENANT_SPLIT", "off")
    ready, blocked = split_ready(SPEC, cfg, [TENANT])
    assert len(ready) == 3 and not blocked
    switch(SPEC, cfg, ready, "ts_rbdiv_cut", approval=None)
    with pg_connect() as pg:
        db = control.load_name_map(pg, PIPELINE, TS_SRC)[TENANT]
        assert control.get_route(pg, PIPELINE, TS_SRC, TENANT)["location"]["backend"] == "tenant_db"
    yield {"cfg": cfg, "spec": SPEC, "db": db, "pipeline": PIPELINE}
    _ts_drop_targets()
    with mysql_connect(MYSQL_SOURCE, database="") as conn:
        conn.cursor().execute(f"DROP DATABASE IF EXISTS {TS_SRC}")
    _ts_clean_control(PIPELINE)


def test_tenant_split_rollback_refuses_to_lose_post_cutover_writes(tenant_cut_over: dict[str, Any]) -> None:
    from cutover.tenant_split import reverse

    cfg, spec, db, pipeline = (tenant_cut_over[k] for k in ("cfg", "spec", "db", "pipeline"))
    assert reverse.stop(cfg, TENANT, reason="test: no reverse stream")  # the cutover started one
    # the tenant's application writes to its own database after the cutover; nothing brings them back
    with mysql_connect(MYSQL_TARGET, database="") as conn:
        cur = conn.cursor()
        cur.execute(f"INSERT INTO {quote_mysql(db)}.orders VALUES (%s, 99, 1.25, 'written after the cutover')", (TENANT,))
        cur.execute(f"UPDATE {quote_mysql(db)}.orders SET total = 0.01 WHERE order_no = 2")
        cur.execute(f"DELETE FROM {quote_mysql(db)}.orders WHERE order_no = 4")
        conn.commit()

    with pytest.raises(TargetWritesFound, match="rollback refused") as info:
        rollback(spec, cfg, [TENANT], "ts_rbdiv_refused", triggered_by=trigger_record("ops@example.com"))
    orders = info.value.found[f"{TENANT} / orders"]
    assert set(info.value.found) == {f"{TENANT} / orders"}  # accounts and the keyless activity are unchanged
    assert (orders["inserted"], orders["updated"], orders["deleted"]) == (1, 1, 1)
    assert orders["table"] == f"{db}.orders"
    assert orders["sample_keys"] == {"inserted": [[TENANT, 99]], "updated": [[TENANT, 2]], "deleted": [[TENANT, 4]]}
    assert "99" in str(info.value) and f"{db}.orders" in str(info.value)
    with pg_connect() as pg:
        # nothing rolled back: the tenant's readers stay on its database, no switch recorded
        assert control.get_route(pg, pipeline, TS_SRC, TENANT)["location"]["backend"] == "tenant_db"
        assert {h["run_id"] for h in control.switch_history(pg, pipeline)} == {"ts_rbdiv_cut"}
        run = control.get_run(pg, "ts_rbdiv_refused")
        assert run["state"] == "failed" and run["evidence"]["rolled_back"] == []
        assert run["evidence"]["target_writes"]["found"][f"{TENANT} / orders"]["inserted"] == 1
        assert run["evidence"]["triggered_by"]["user"] == "ops@example.com"
        failed = {u["unit_key"]: u for u in control.list_units(pg, "ts_rbdiv_refused")}
        assert [u["state"] for u in failed.values()] == ["failed"] and "99" in next(iter(failed.values()))["error"]

    out = rollback(spec, cfg, [TENANT], "ts_rbdiv_discard", discard_target_writes=True,
                   triggered_by=trigger_record("ops@example.com"))
    assert out["target_writes"]["discarded"] is True and out["target_writes"]["rows"] == 3
    with pg_connect() as pg:
        assert control.get_route(pg, pipeline, TS_SRC, TENANT)["location"]["backend"] == "shared"
        hist = [h for h in control.switch_history(pg, pipeline) if h["run_id"] == "ts_rbdiv_discard"]
        assert len(hist) == 3 and all(h["to_backend"] == "shared" for h in hist)
        assert all(h["triggered_by"] == h["actor"] == "ops@example.com" for h in hist)
        lost = [h for h in hist if h["unit_key"].endswith("/orders")]
        assert len(lost) == 1 and "discarding 3 target row(s)" in lost[0]["reason"]
        assert lost[0]["detail"]["discard_target_writes"] is True
        assert lost[0]["detail"]["discarded_target_writes"]["sample_keys"]["inserted"] == [[TENANT, 99]]
        run = control.get_run(pg, "ts_rbdiv_discard")
        assert run["state"] == "success" and run["evidence"]["target_writes"]["discarded"] is True


def test_tenant_split_rollback_without_target_writes_goes_ahead(tenant_cut_over: dict[str, Any]) -> None:
    cfg, spec, pipeline = tenant_cut_over["cfg"], tenant_cut_over["spec"], tenant_cut_over["pipeline"]
    out = rollback(spec, cfg, [TENANT], "ts_rbdiv_clean")
    assert out["target_writes"]["found"] == {} and out["target_writes"]["checked"]["checked"] is True
    with pg_connect() as pg:
        assert control.get_route(pg, pipeline, TS_SRC, TENANT)["location"]["backend"] == "shared"
        hist = control.switch_history(pg, pipeline)[-1]
        assert hist["triggered_by"] is None and hist["detail"]["triggered_by"]["user"] is None  # unknown, said so


# --- mysql_to_postgres ------------------------------------------------------------------------------

#: a hostile PostgreSQL schema unique to these tests (a quote, a space, unicode)
M2P_SCHEMA = f'rbdiv "Ünï" {uuid.uuid4().hex[:6]}'
M2P_TABLE = "semi;colon -- drop"
assert M2P_TABLE in HOSTILE_NAMES


@pytest.fixture
def table_cut_over(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """A MySQL table with a hostile name built into PostgreSQL and cut over (approval policy off here)."""
    from cutover.mysql_to_postgres.config import PIPELINE, MysqlToPostgresConfig
    from cutover.mysql_to_postgres.load import STATE_SCHEMA, ensure_state
    from cutover.mysql_to_postgres.readonly import ensure_read_only_user
    from cutover.mysql_to_postgres.spec import SPEC

    db = f"m2prbdiv_{uuid.uuid4().hex[:8]}"
    with mysql_connect(MYSQL_SOURCE, database="") as conn:
        cur = conn.cursor()
        cur.execute(f"CREATE DATABASE {db} CHARACTER SET utf8mb4")
        cur.execute(f"CREATE TABLE {db}.{quote_mysql(M2P_TABLE)} (id INT NOT NULL PRIMARY KEY, name VARCHAR(50) NOT NULL, "
                    "qty INT NULL)")
        cur.execute(f"INSERT INTO {db}.{quote_mysql(M2P_TABLE)} VALUES (1, 'één', 3), (2, 'two', NULL), (3, '삼', 9)")
        conn.commit()
    ensure_read_only_user(MYSQL_SOURCE, "cutover_ro", [db])
    params = {"source_database": db, "target_schema": M2P_SCHEMA, "gx_gate": False, "chunk_rows": 2}
    assert stages.run_build(SPEC, params, f"{db}-build").green
    cfg = MysqlToPostgresConfig.from_params(params)
    monkeypatch.setenv("CUTOVER_REQUIRE_APPROVAL_MYSQL_TO_POSTGRES", "off")
    ready, blocked = split_ready(SPEC, cfg, [M2P_TABLE])
    assert len(ready) == 1 and not blocked
    switch(SPEC, cfg, ready, f"{db}-cut", approval=None)
    yield {"cfg": cfg, "spec": SPEC, "db": db, "pipeline": PIPELINE}
    with mysql_connect(MYSQL_SOURCE, database="") as conn:
        conn.cursor().execute(f"DROP DATABASE IF EXISTS {db}")
    with pg_connect() as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {quote_pg(M2P_SCHEMA)} CASCADE")
        ensure_state(conn)
        for t in ("m2p_checkpoints", "m2p_positions"):
            conn.execute(f"DELETE FROM {STATE_SCHEMA}.{t} WHERE starts_with(unit_key, %s)", (cfg.scope + ":",))
        for t in ("units", "switches", "switch_history"):
            conn.execute(f"DELETE FROM cutover.{t} WHERE pipeline = %s AND starts_with(unit_key, %s)",
                         (PIPELINE, cfg.scope + ":"))
        conn.execute("DELETE FROM cutover.routes WHERE pipeline = %s AND scope = %s", (PIPELINE, cfg.scope))


def test_mysql_to_postgres_rollback_refuses_to_lose_postgres_writes(table_cut_over: dict[str, Any]) -> None:
    from cutover.mysql_to_postgres import reverse

    cfg, spec, pipeline = table_cut_over["cfg"], table_cut_over["spec"], table_cut_over["pipeline"]
    target = f"{quote_pg(M2P_SCHEMA)}.{quote_pg(M2P_TABLE)}"
    reverse.stop(cfg, spec.unit_key(cfg, M2P_TABLE))  # the cutover started a reverse stream: none now
    with pg_connect() as conn:  # writes that reached PostgreSQL after the switch; nothing brings them back
        conn.execute(f"INSERT INTO {target} (id, name, qty) VALUES (42, 'only in postgres', 1)")
        conn.execute(f"UPDATE {target} SET qty = 100 WHERE id = 3")

    with pytest.raises(TargetWritesFound) as info:
        rollback(spec, cfg, [M2P_TABLE], f"{table_cut_over['db']}-refused")
    found = info.value.found[M2P_TABLE]
    assert (found["inserted"], found["updated"], found["deleted"]) == (1, 1, 0)
    assert found["sample_keys"]["inserted"] == [42] and found["sample_keys"]["updated"] == [3]
    assert found["table"] == f"{M2P_SCHEMA}.{M2P_TABLE}"
    with pg_connect() as pg:
        route = control.get_route(pg, pipeline, cfg.scope, M2P_TABLE)
        assert route["location"]["backend"] == "postgres"  # nothing rolled back
        run = control.get_run(pg, f"{table_cut_over['db']}-refused")
        assert run["state"] == "failed" and run["evidence"]["target_writes"]["found"][M2P_TABLE]["inserted"] == 1

    out = rollback(spec, cfg, [M2P_TABLE], f"{table_cut_over['db']}-discard", discard_target_writes=True)
    assert out["rolled_back"][0]["discarded_target_writes"]["inserted"] == 1
    with pg_connect() as pg:
        assert control.get_route(pg, pipeline, cfg.scope, M2P_TABLE)["location"]["backend"] == "mysql"
        last = control.switch_history(pg, pipeline, str(spec.unit_key(cfg, M2P_TABLE)))[-1]
        assert last["to_backend"] == "mysql" and last["detail"]["discarded_target_writes"]["updated"] == 1
        assert "discarding 2 target row(s)" in last["reason"]
