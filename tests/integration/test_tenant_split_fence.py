"""tenant_split proves at a fence and cuts over with a write pause that does not grow with the tenant.

On the real MariaDB, the shop sample (:mod:`cutover.samples.tenants`, default mapping: ``customer_notes``
renamed ``notes``, ``legacy_sessions`` dropped) with a route-aware writer
(:mod:`cutover.samples.live_writer`) on a tenant every 10 ms:

* the build verifies while the writer writes and every unit reaches ``verified`` in one round, its
  evidence naming the fence's binlog position (the source's snapshot and the target caught up to it);
* the cutover (default ``pause_locks: none``) proves in full at P0 before the pause, re-proves only what
  changed at P1 inside it, and moves the route while the writer writes: no writer transaction fails,
  the writer ends writing to the tenant's database, nothing is lost (the tenant's database holds every
  source row and the state the writer left each of its rows in), and another tenant's writer on the
  shared tables keeps committing during the pause (its latencies printed, not asserted).

Own names: source ``h1_fence_src``, prefix ``h1f_``, state ``cutover_state_h1``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from cutover import control
from cutover.connections import MYSQL_TARGET, mysql_connect
from cutover.identifiers import quote_mysql
from cutover.lifecycle import stages
from cutover.lifecycle.switch import split_ready, switch
from cutover.samples import tenants as sample
from cutover.samples.live_writer import LiveWriter, WriterStats, sample_tables
from cutover.tenant_split.config import PIPELINE, TenantSplitConfig
from cutover.tenant_split.spec import SPEC

from .test_tenant_split import clean_control

pytestmark = pytest.mark.integration

SRC = "h1_fence_src"
PREFIX = "h1f_"
STATE = "cutover_state_h1"
#: tenant ids of the sample: 1 is the whale (cut over), 2 writes on the shared tables meanwhile
WHALE, OTHER = 1, 2


def _drop(cur: Any) -> None:
    cur.execute("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE %s OR SCHEMA_NAME IN (%s, %s)",
                (PREFIX.replace("_", "\\_") + "%", STATE, SRC))
    for (name,) in cur.fetchall():
        cur.execute(f"DROP DATABASE {quote_mysql(name.decode() if isinstance(name, bytes) else name)}")


@pytest.fixture
def params(pg: Any, mysql: Any) -> Iterator[dict[str, Any]]:
    """A freshly seeded shop sample (4 tenants, 4000 orders), no target databases, no control rows."""
    cur = mysql.cursor()
    _drop(cur)
    sample.seed_tenants(mysql, database=SRC, tenants=4, rows=4000)
    clean_control(pg, SRC)
    yield {"source_database": SRC, "mapping": "mappings/tenant_split.yaml", "tenant_directory": "tenants",
           "database_prefix": PREFIX, "state_database": STATE, "chunk_rows": 500, "parallelism": 2, "gx_gate": False}
    _drop(mysql.cursor())
    clean_control(pg, SRC)


def _writer(tenant_id: int, seed: int = 0) -> LiveWriter:
    with mysql_connect(database=SRC) as conn:
        tables = sample_tables(conn, SRC, tenant_id)
    return LiveWriter(tenant=str(tenant_id), tenant_value=tenant_id, tables=tables, scope=SRC, source_database=SRC,
                      interval_s=0.01, rows_per_tx=3, seed=seed)


def _units(pg: Any, run_id: str) -> list[dict[str, Any]]:
    with pg.cursor() as cur:
        rows = cur.execute("SELECT unit_key, state, detail FROM cutover.units WHERE pipeline = %s AND run_id = %s",
                           (PIPELINE, run_id)).fetchall()
    pg.commit()
    return [{"key": r[0], "state": r[1], "detail": r[2]} for r in rows]


def _stop(w: LiveWriter) -> WriterStats:
    stats = w.stop()
    assert w.failure is None, f"writer {w.tenant}: {w.failure!r}"
    return stats


def test_build_verifies_at_a_fence_while_a_writer_writes(params: dict[str, Any], pg: Any) -> None:
    w = _writer(WHALE)
    w.start()
    assert w.started_writing.wait(10)
    try:
        rep = stages.run_build(SPEC, {**params, "tenants": [str(WHALE)]}, "h1_fence_build")
    finally:
        stats = _stop(w)
    print("\nwriter during the build:", stats.summary())
    assert rep.green, rep.summary()
    units = _units(pg, "h1_fence_build")
    assert len(units) == 6 and {u["state"] for u in units} == {"verified"}, [(u["key"], u["state"]) for u in units]
    assert stats.errors == {} and stats.transactions > 10
    for u in units:
        fence = u["detail"]["verify"]["fence"]
        file, _, pos = fence["position"].rpartition(":")
        assert file and int(pos) >= 4 and fence["rounds"] == 1, (u["key"], fence)
    # what the writer wrote after the copies' start positions was caught up to the fences, not chased
    assert sum(u["detail"]["verify"]["fence"]["applied"] for u in units) > 0


def _rows(cur: Any, db: str, table: str, where: str = "", params: tuple[Any, ...] = ()) -> dict[int, tuple[Any, ...]]:
    cur.execute(f"SELECT * FROM {quote_mysql(db)}.{quote_mysql(table)}{where}", params)
    return {int(r[0]): tuple(r) for r in cur.fetchall()}


def test_cutover_under_a_writer_every_10_ms_loses_nothing(params: dict[str, Any], pg: Any,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUTOVER_REQUIRE_APPROVAL", "off")  # this test switches without a human: policy off
    assert stages.run_build(SPEC, {**params, "tenants": [str(WHALE)]}, "h1_fence_cut_build").green
    cfg = TenantSplitConfig.from_params(params)
    whale, other = _writer(WHALE, 1), _writer(OTHER, 2)
    whale.start()
    other.start()
    assert whale.started_writing.wait(10) and other.started_writing.wait(10)
    time.sleep(0.5)
    ready, blocked = split_ready(SPEC, cfg, [str(WHALE)])
    assert len(ready) == 6 and not blocked
    try:
        out = switch(SPEC, cfg, ready, "h1_fence_cut_switch", approval=None)
        time.sleep(0.5)  # the writer goes on, on the tenant's database now
    finally:
        ws, os_ = _stop(whale), _stop(other)
    info = out["groups"][str(WHALE)]
    print("\ncutover evidence:", {k: info.get(k) for k in ("p0", "p1", "paused_s", "pause_to_route_s", "drain",
                                                          "reproved_rows", "phases", "catch_up", "fence")})
    print("writer of the cut-over tenant:", ws.summary())
    print("writer of another tenant:", os_.summary())
    # the proof and the pause's evidence
    assert info["pause_locks"] == "none" and info["locked_rows"] == 0
    assert info["p0"] and info["p1"] and info["reverse_start"]["target"] and info["reverse_start"]["source"] == info["p1"]
    assert set(info["checks"]) == {"tenants", "customers", "orders", "order_items", "invoices", "notes"}
    assert all(c["match"] for c in info["checks"].values())
    assert info["reproved"]["orders"]["mode"] == "keys" and info["reproved_rows"] >= 0
    assert {"proof_p0_s", "catch_up_s", "pause_catch_up_s", "pause_reprove_s"} <= set(info["phases"])
    assert info["fence"]["applied"] == 0 and info["fence"]["after_switch"] == 0  # a cooperative writer: no stray
    route = control.get_route(pg, PIPELINE, SRC, str(WHALE))
    pg.commit()
    assert route["location"]["backend"] == "tenant_db" and route["state"] == "active"
    db = route["location"]["database"]
    # the writers: no error, the whale's writer moved to its database, the other kept writing during the pause
    assert ws.errors == {} and os_.errors == {}, (ws.error_messages[:3], os_.error_messages[:3])
    sides = [side for _, _, side in ws.commits]
    assert sides[0] == "shared" and sides[-1] == "tenant_db" and "shared" not in sides[sides.index("tenant_db"):]
    assert ws.paused_waits > 0 or ws.retries_on_route_change >= 0
    start, end = info["paused_at"], info["paused_at"] + info["paused_s"]
    during = [c for c in os_.commits if c[1] >= start and c[0] <= end]
    assert during and {c[2] for c in os_.commits} == {"shared"}, (start, end, os_.commits[-3:])
    print(f"other tenant: {len(during)} commit(s) during the {info['paused_s']:.3f} s pause, max latency "
          f"{os_.summary()['max_s']:.4f} s")
    # nothing lost: every row of the tenant that the writer did not write after the switch is in its
    # database as in the source; every row the writer wrote is in the state it left it
    after = {t: keys for t, keys in ws.written.get("tenant_db", {}).items()}
    with mysql_connect(MYSQL_TARGET, database="") as conn:
        cur = conn.cursor()
        for table in ("orders", "customers"):
            src = _rows(cur, SRC, table, " WHERE tenant_id = %s", (WHALE,))
            tgt = _rows(cur, db, table)
            skip = after.get(table, set())
            want = {k: v for k, v in src.items() if k not in skip}
            got = {k: v for k, v in tgt.items() if k not in skip}
            assert got == want, f"{table}: {len(set(got) ^ set(want))} key(s) differ"
            cols = sample.COLUMNS[table]
            for key, state in ws.expected.get(table, {}).items():
                if state is None:
                    assert key not in tgt, f"{table} {key}: deleted by the writer, in the tenant database"
                    continue
                assert key in tgt, f"{table} {key}: written by the writer, missing in the tenant database"
                row = dict(zip(cols, tgt[key], strict=True))
                assert all(row[c] == v for c, v in state.items()), (table, key, state, row)


def test_reproving_changed_rows_finds_a_difference_by_key(params: dict[str, Any], pg: Any) -> None:
    """What the pause re-proves: the named rows, each compared on both sides at the fence (a row
    changed behind Cutover's back is named); unnamed rows (None) get the whole table checksummed."""
    from cutover.binlog import consistent_snapshot
    from cutover.tenant_split.cutover import _plan_details
    from cutover.tenant_split.verify import reprove_rows

    assert stages.run_build(SPEC, {**params, "tenants": [str(WHALE)]}, "h1_fence_reprove").green
    cfg = TenantSplitConfig.from_params(params)
    units = {u["key"]: u for u in _units(pg, "h1_fence_reprove")}
    key = next(k for k in units if k.endswith("/orders"))
    from cutover.lifecycle.model import UnitKey

    detail = _plan_details([UnitKey.parse(key, 2)], cfg)[key]
    db = detail["database"]
    with mysql_connect(MYSQL_TARGET, database="") as conn:
        cur = conn.cursor()
        cur.execute(f"SELECT id FROM {quote_mysql(db)}.orders ORDER BY id LIMIT 3")
        ids = [int(r[0]) for r in cur.fetchall()]
        cur.execute(f"UPDATE {quote_mysql(db)}.orders SET note = 'changed behind our back' WHERE id = %s", (ids[1],))
        cur.execute("SET SESSION foreign_key_checks = 0")
        cur.execute(f"DELETE FROM {quote_mysql(db)}.orders WHERE id = %s", (ids[2],))
    with mysql_connect(database="") as s:
        scur = s.cursor()
        consistent_snapshot(scur)
        same = reprove_rows(cfg, detail, key, [(ids[0],)], scur)
        differ = reprove_rows(cfg, detail, key, [(i,) for i in ids], scur)
        whole = reprove_rows(cfg, detail, key, None, scur)
        s.rollback()
    assert same == {"mode": "keys", "rows": 1, "failures": []}
    assert differ["mode"] == "keys" and differ["rows"] == 3 and differ["differing"] == [[ids[1]], [ids[2]]]
    assert len(differ["failures"]) == 1 and "2 of the 3 changed row(s) differ" in differ["failures"][0]
    assert whole["mode"] == "full" and whole["failures"] and "cannot be named by key" in whole["note"]
