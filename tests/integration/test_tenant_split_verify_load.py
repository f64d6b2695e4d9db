"""tenant_split's build verify converges under a steady writer: one pass over the log serves every tenant (#20).

On the real MariaDB: five tenants with hostile ids (a quote, a percent sign, unicode, an injection
attempt, a dot), three shared tables (a keyed one, a keyless one, the tenant directory), and a writer
thread that writes all of them at a steady rate across every tenant through the whole build. The
build runs stage by stage over one-unit batches, as the DAG's mapped tasks do, so every unit's verify
is its own fence (a consistent snapshot at binlog position P, the tenant caught up to P, both sides
checksummed):

* every unit reaches ``verified`` in one round, its evidence naming its fence;
* the fences' catch-ups read the log **once**: each pass starts where the one before it ended (every
  other built tenant, its lock free, was advanced in the same pass), so no stretch of the log is decoded
  twice — what, before, made each tenant's first fence decode the whole log since the copy again and
  fall further behind the writer with each tenant;
* after the first unit's verify the other tenants' positions stand at its fence; at the end every
  table of every tenant stands at the last fence;
* nothing was lost or applied twice: after the writer stops and a last catch-up, every tenant's rows
  (keyed and keyless) equal the source's.

And a tenant whose catch-up lock is held elsewhere (the sync DAG, another verify, a cutover) is
skipped, not waited for; a tenant routed to its database is not written by the forward pass; a tenant
behind the fence's own start is not read back for; a tenant whose change cannot be applied does not
fail another tenant's proof (it is caught up alone, the error in its evidence).

Own names: source ``hrb_vload_src``, prefix ``hrbv_``, state ``hrb_vload_state``.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cutover import control
from cutover.connections import MYSQL_SOURCE, MYSQL_TARGET, mysql_connect
from cutover.identifiers import quote_mysql
from cutover.lifecycle import stages
from cutover.lifecycle.model import UnitKey
from cutover.samples.hostile import HOSTILE_NAMES
from cutover.tenant_split import sync
from cutover.tenant_split.config import PIPELINE, TenantSplitConfig
from cutover.tenant_split.spec import SPEC

from .test_tenant_split import clean_control

pytestmark = pytest.mark.integration

SRC = "hrb_vload_src"
PREFIX = "hrbv_"
STATE = "hrb_vload_state"
#: five hostile tenant ids
TENANTS = ('quo"te', "100%", "Ünïcødé ✓ °C", 'x"; DROP TABLE y; --', "a.b")
assert set(TENANTS) <= set(HOSTILE_NAMES)
TABLES = ("accounts", "orders", "activity")
MAPPING = """\
tenant_column: tenant
tables:
  accounts: {}
  orders: {}
  activity: {}
unlisted: error
"""
ORDERS_PER_TENANT = 150


def _seed() -> None:
    with mysql_connect(MYSQL_SOURCE, database="") as conn:
        cur = conn.cursor()
        cur.execute(f"DROP DATABASE IF EXISTS {SRC}")
        cur.execute(f"CREATE DATABASE {SRC} CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
        cur.execute(f"USE {SRC}")
        cur.execute("CREATE TABLE accounts (tenant VARCHAR(100) NOT NULL PRIMARY KEY, plan VARCHAR(20) NOT NULL, "
                    "writes INT NOT NULL DEFAULT 0)")
        cur.execute("""CREATE TABLE orders (tenant VARCHAR(100) NOT NULL, order_no INT NOT NULL, total DECIMAL(12,2) NULL,
                       note VARCHAR(100) NULL, PRIMARY KEY (tenant, order_no))""")
        cur.execute("CREATE TABLE activity (tenant VARCHAR(100) NOT NULL, msg VARCHAR(200) NULL, KEY activity_tenant (tenant))")
        for tenant in TENANTS:
            cur.execute("INSERT INTO accounts (tenant, plan) VALUES (%s, 'team')", (tenant,))
            cur.executemany("INSERT INTO orders VALUES (%s, %s, %s, %s)",
                            [(tenant, o, f"{o}.{o % 100:02d}", f"ö {o}") for o in range(1, ORDERS_PER_TENANT + 1)])
            cur.executemany("INSERT INTO activity VALUES (%s, %s)", [(tenant, f"seed {i % 7}") for i in range(40)])
        conn.commit()


def _drop_targets() -> None:
    with mysql_connect(MYSQL_TARGET, database="") as conn:
        cur = conn.cursor()
        cur.execute("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE %s OR SCHEMA_NAME = %s",
                    (PREFIX.replace("_", "\\_") + "%", STATE))
        for (name,) in cur.fetchall():
            cur.execute(f"DROP DATABASE {quote_mysql(name.decode() if isinstance(name, bytes) else name)}")


@pytest.fixture
def params(tmp_path: Path, pg: Any) -> Iterator[dict[str, Any]]:
    """A freshly seeded source, no target databases, no control rows; the build's Params."""
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text(MAPPING, encoding="utf-8")
    _seed()
    _drop_targets()
    clean_control(pg, SRC)
    yield {"source_database": SRC, "mapping": str(mapping), "tenant_directory": "accounts", "database_prefix": PREFIX,
           "state_database": STATE, "chunk_rows": 100, "parallelism": 2, "gx_gate": False, "tenants": list(TENANTS)}
    _drop_targets()
    with mysql_connect(MYSQL_SOURCE, database="") as conn:
        conn.cursor().execute(f"DROP DATABASE IF EXISTS {SRC}")
    clean_control(pg, SRC)


class Writer(threading.Thread):
    """Writes every tenant in turn at a steady pace (a transaction each ``interval_s``): an order updated,
    one inserted, now and then one deleted, an activity row inserted and one updated (keyless), the
    tenant's account counter bumped. Counts transactions; the first error stops it and is kept."""

    def __init__(self, interval_s: float = 0.01) -> None:
        super().__init__(name="hrb-writer", daemon=True)
        self.interval_s = interval_s
        self.halt = threading.Event()
        self.started_writing = threading.Event()
        self.transactions = 0
        self.rows = 0
        self.failure: BaseException | None = None

    def run(self) -> None:  # noqa: D102
        rnd = random.Random(20)
        next_no = {t: ORDERS_PER_TENANT + 1 for t in TENANTS}
        try:
            with mysql_connect(MYSQL_SOURCE, database=SRC) as conn:
                cur = conn.cursor()
                i = 0
                while not self.halt.is_set():
                    t0 = time.monotonic()
                    tenant = TENANTS[i % len(TENANTS)]
                    i += 1
                    cur.execute("UPDATE orders SET total = total + 1, note = %s WHERE tenant = %s AND order_no = %s",
                                (f"w{i}", tenant, rnd.randint(1, next_no[tenant] - 1)))
                    cur.execute("INSERT INTO orders VALUES (%s, %s, %s, %s)", (tenant, next_no[tenant], "1.50", f"new {i}"))
                    next_no[tenant] += 1
                    if i % 5 == 0:
                        cur.execute("DELETE FROM orders WHERE tenant = %s AND order_no = %s",
                                    (tenant, rnd.randint(1, next_no[tenant] - 1)))
                    cur.execute("INSERT INTO activity VALUES (%s, %s)", (tenant, f"event {i}"))
                    cur.execute("UPDATE activity SET msg = %s WHERE tenant = %s AND msg = %s LIMIT 1",
                                (f"seen {i}", tenant, f"seed {i % 7}"))
                    cur.execute("UPDATE accounts SET writes = writes + 1 WHERE tenant = %s", (tenant,))
                    conn.commit()
                    self.transactions += 1
                    self.rows += 5
                    self.started_writing.set()
                    self.halt.wait(max(0.0, self.interval_s - (time.monotonic() - t0)))
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.failure = exc
            self.started_writing.set()

    def stop(self) -> None:
        self.halt.set()
        self.join(60)
        assert self.failure is None, repr(self.failure)


def _build_stage_by_stage(params: dict[str, Any], run_id: str, before_verify: Any = None) -> Any:
    """The DAG's shape: every stage over every (one-unit) batch before the next stage."""
    batches = stages.plan(SPEC, params, run_id, max_batches=64)
    assert len(batches) == len(TENANTS) * len(TABLES)
    for stage in stages.UNIT_STAGES:
        if stage == "verify" and before_verify is not None:
            before_verify()
        for batch in batches:
            try:
                stages.run_unit_stage(SPEC, stage, params, batch, run_id)
            except stages.UnitsFailed:
                pass  # judged by the report
    return stages.report(SPEC, params, run_id)


def _units(pg: Any, run_id: str) -> list[dict[str, Any]]:
    rows = pg.execute("SELECT unit_key, state, detail, updated_at FROM cutover.units WHERE pipeline = %s AND run_id = %s "
                      "ORDER BY updated_at", (PIPELINE, run_id)).fetchall()
    pg.commit()
    return [{"key": r[0], "state": r[1], "detail": r[2]} for r in rows]


def _positions() -> dict[tuple[str, str], Any]:
    from cutover.binlog import BinlogPosition
    from cutover.mysql_schema import text_of

    with mysql_connect(MYSQL_TARGET, database="") as conn:
        cur = conn.cursor()
        cur.execute(f"SELECT target_database, target_table, file, pos FROM {STATE}.binlog_positions")
        return {(text_of(d), text_of(t)): BinlogPosition(text_of(f), int(p)) for d, t, f, p in cur.fetchall()}


def _databases(pg: Any) -> dict[str, str]:
    names = control.load_name_map(pg, PIPELINE, SRC)
    pg.commit()
    return names


def _rows(cur: Any, db: str, table: str, tenant: str | None) -> Counter[tuple[Any, ...]]:
    where = " WHERE tenant = %s" if tenant is not None else ""
    cur.execute(f"SELECT * FROM {quote_mysql(db)}.{quote_mysql(table)}{where}", (tenant,) if tenant is not None else ())
    return Counter(tuple(r) for r in cur.fetchall())


def test_build_verify_reads_the_log_once_for_every_tenant_under_a_steady_writer(
        params: dict[str, Any], pg: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import cutover.binlog as binlog

    passes: list[tuple[Any, Any]] = []  # (start, stop_at) of every binlog read of the verify stage
    recording = threading.Event()
    real = binlog.read_changes

    def counted(conn_id: str, start: Any, **kw: Any) -> Any:
        if recording.is_set():
            passes.append((start, kw.get("stop_at")))
        return real(conn_id, start, **kw)

    monkeypatch.setattr(binlog, "read_changes", counted)
    monkeypatch.setattr(sync, "RIDE_ALONG_MIN_BYTES", 0)  # every pass shared, however short (the mechanism)
    w = Writer(0.01)
    w.start()
    assert w.started_writing.wait(10)
    try:
        rep = _build_stage_by_stage(params, "hrb_vload_build", before_verify=recording.set)
        recording.clear()
        time.sleep(0.2)
    finally:
        w.stop()
    assert rep.green, rep.summary()
    assert w.transactions > 20, w.transactions  # the writer wrote during the whole build
    units = _units(pg, "hrb_vload_build")
    assert len(units) == len(TENANTS) * len(TABLES) and {u["state"] for u in units} == {"verified"}, \
        [(u["key"], u["state"]) for u in units]
    fences = [u["detail"]["verify"]["fence"] for u in units]  # in the order they were verified
    for u, f in zip(units, fences, strict=True):
        assert f["rounds"] == 1 and f["position"] and f["reached"], (u["key"], f)
    # one pass per unit's fence, each starting where the one before it ended: nothing decoded twice
    assert len(passes) == len(units), passes
    assert [str(stop) for _, stop in passes] == [f["position"] for f in fences]
    for i in range(1, len(passes)):
        assert str(passes[i][0]) == fences[i - 1]["reached"], (i, passes[i - 1], passes[i])
    applied_all = sum(f["applied"] for f in fences)
    assert all(f["applied"] == f["tenant_applied"] + f["others"]["applied"] for f in fences), fences
    assert sum(f["tenant_applied"] for f in fences) > 0 and sum(f["others"]["applied"] for f in fences) > 0
    # after the first unit's verify, every other tenant was advanced to its fence
    first_tenant = UnitKey.parse(units[0]["key"], 2).parts[0]
    assert fences[0]["others"]["advanced"] == sorted(t for t in TENANTS if t != first_tenant), fences[0]["others"]
    assert fences[0]["others"]["busy"] == []
    positions = _positions()
    dbs = _databases(pg)
    assert len(positions) == len(TENANTS) * len(TABLES)
    assert {str(p) for p in positions.values()} == {fences[-1]["reached"]}, positions
    # the end state: caught up once more, every tenant's rows equal the source's (keyed and keyless)
    cfg = TenantSplitConfig.from_params(params)
    sync.catch_up(cfg, {t: dbs[t] for t in TENANTS})
    with mysql_connect(MYSQL_TARGET, database="") as conn:
        cur = conn.cursor()
        for tenant in TENANTS:
            for table in TABLES:
                src, tgt = _rows(cur, SRC, table, tenant), _rows(cur, dbs[tenant], table, None)
                assert src == tgt, (tenant, table, len(src - tgt), len(tgt - src))
    print(f"\nwriter: {w.transactions} transactions, {w.rows} rows; {len(passes)} fence passes, "
          f"rows applied {applied_all}; fence catch-up s: {[f['catch_up_s'] for f in fences]}")


def test_a_busy_routed_or_lagging_tenant_is_left_alone_by_another_tenants_fence(params: dict[str, Any], pg: Any,
                                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from cutover.tenant_split.cutover import _plan_details
    from cutover.tenant_split.verify import verify_at_fence

    monkeypatch.setattr(sync, "RIDE_ALONG_MIN_BYTES", 0)  # every pass shared, however short (the mechanism)
    rep = _build_stage_by_stage(params, "hrb_vload_busy")
    assert rep.green, rep.summary()
    cfg = TenantSplitConfig.from_params(params)
    dbs = _databases(pg)
    mine, busy, routed, broken, free = TENANTS

    def write() -> None:
        with mysql_connect(MYSQL_SOURCE, database=SRC) as conn:
            cur = conn.cursor()
            for t in TENANTS:
                cur.execute("UPDATE orders SET note = %s WHERE tenant = %s AND order_no = 1", (f"w{time.time()}", t))

    def detail(tenant: str) -> tuple[str, dict[str, Any]]:
        key = str(UnitKey(SRC, (tenant, "orders")))
        return key, _plan_details([UnitKey.parse(key, 2)], cfg)[key]

    write()
    control.set_route(pg, PIPELINE, SRC, routed, {"backend": "tenant_db", "database": dbs[routed]}, reason="test")
    pg.commit()
    before = _positions()
    key, d = detail(mine)
    with sync.catch_up_lock(cfg, [dbs[busy]]):  # another catch-up holds it: skipped, not waited for
        v = verify_at_fence(cfg, d, key, run_id="hrb_vload_busy_verify")
    assert v.passed, v.failures
    fence = v.detail["fence"]
    assert fence["tenant_applied"] >= 1 and fence["others"]["busy"] == [busy], fence
    assert fence["others"]["advanced"] == sorted([broken, free]) and "error" not in fence["others"], fence
    after = _positions()
    for (db, table), pos in after.items():
        if db in (dbs[busy], dbs[routed]):
            assert pos == before[(db, table)], (db, table)  # not moved: held elsewhere, or live on its database
        else:
            assert str(pos) == fence["reached"] and pos > before[(db, table)], (db, table)
    with mysql_connect(MYSQL_TARGET, database="") as conn:
        cur = conn.cursor()
        cur.execute(f"SELECT note FROM {quote_mysql(dbs[routed])}.orders WHERE order_no = 1")
        assert not str(cur.fetchone()[0]).startswith("w")  # the routed tenant's database was not written
    write()
    # its lock free again but its tables behind this tenant's: the next fence does not read back for it
    v2 = verify_at_fence(cfg, d, key, run_id="hrb_vload_busy_verify")
    f2 = v2.detail["fence"]
    assert v2.passed and f2["others"]["behind"] == [busy] and f2["others"]["advanced"] == sorted([broken, free]), f2
    assert _positions()[(dbs[busy], "orders")] == before[(dbs[busy], "orders")]
    # the lagging tenant's own fence reads from its position and takes the ones ahead of it along
    write()
    bkey, bd = detail(busy)
    v3 = verify_at_fence(cfg, bd, bkey, run_id="hrb_vload_busy_verify")
    f3 = v3.detail["fence"]
    assert v3.passed and f3["others"]["advanced"] == sorted([mine, broken, free]) and f3["tenant_applied"] >= 2, f3
    assert {str(p) for (db, _), p in _positions().items() if db != dbs[routed]} == {f3["reached"]}
    # a tenant whose change cannot be applied (its target table gone) does not fail another one's proof
    with mysql_connect(MYSQL_TARGET, database="") as conn:
        conn.cursor().execute(f"DROP TABLE {quote_mysql(dbs[broken])}.activity")
    with mysql_connect(MYSQL_SOURCE, database=SRC) as conn:
        conn.cursor().execute("INSERT INTO activity VALUES (%s, 'cannot land')", (broken,))
    write()
    v4 = verify_at_fence(cfg, d, key, run_id="hrb_vload_busy_verify")
    f4 = v4.detail["fence"]
    assert v4.passed and f4["tenant_applied"] >= 1, (v4.failures, f4)
    assert "activity" in f4["others"]["error"] and f4["others"]["advanced"] == [], f4  # caught up alone
    assert str(_positions()[(dbs[mine], "orders")]) == f4["reached"]
    # the default: a short pass (a few changes since the last fence) takes no one along
    monkeypatch.setattr(sync, "RIDE_ALONG_MIN_BYTES", 16 << 20)
    write()
    fkey, fd = detail(free)
    v5 = verify_at_fence(cfg, fd, fkey, run_id="hrb_vload_busy_verify")
    f5 = v5.detail["fence"]
    assert v5.passed and f5["others"]["advanced"] == [] and f5["others"]["short"] == sorted([mine, busy, broken]), f5
