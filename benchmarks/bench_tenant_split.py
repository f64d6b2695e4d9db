"""Benchmark ``tenant_split``: the pipeline vs ``INSERT … SELECT`` in one server vs a 500-row client, in one run.

    .venv/bin/python benchmarks/bench_tenant_split.py                  # 1M rows, 20 tenants (~9-10 min on 2 cores)
    .venv/bin/python benchmarks/bench_tenant_split.py --rows 200000    # quick

Data (generated inside MariaDB from ``seq_1_to_N``, deterministic): ``bench_ts_source`` with 20 tenants
of Zipf-skewed sizes (the largest ~28 %, the smallest ~1.4 %), rows in random arrival order (ids are
not clustered by tenant):

* ``orders`` (40 %) — BIGINT AUTO_INCREMENT key, DECIMAL, ENUM, DATETIME(6), Korean text;
* ``order_items`` (30 %) — composite key ``(tenant_id, id)``;
* ``events`` (20 %) — a VARCHAR(36) uuid-text key, the tenant column named ``shop``, JSON, TIMESTAMP(3);
* ``wide`` (10 %) — 31 columns: DECIMAL ×3, DATETIME(6) ×2, DATE, TIMESTAMP(6), TIME, JSON, LONGTEXT,
  utf8mb4 VARCHAR with emoji, a latin1 VARCHAR, CHAR, BLOB, VARBINARY, ENUM, SET, integers, DOUBLE,
  FLOAT, YEAR, TEXT, NULLs;
* ``tenants`` (the tenant directory) and ``plans`` (a shared reference table, copied to every tenant).

Every tenant-scoped table has an index on its tenant column. A second shape, ``bench_ts_small``
(``--small-tenants`` tenants with VARCHAR ids like ``Shop-0042``, ``--small-rows`` rows), shows the
per-unit cost of many small tenants.

Contenders, each from a clean target (databases ``bts_%`` / ``btm_%`` / ``bta_%`` and the state
database dropped; the bench scopes' routes and switches deleted):

* the pipeline (``cutover.lifecycle.stages`` plan → prepare → copy → finalize → verify → close,
  exactly what ``run_build`` runs, with each stage timed), ``copy_mode=server`` and ``client``;
* anchor 1, in-server: per tenant per table ``CREATE TABLE … LIKE`` + ``INSERT … SELECT * … WHERE
  tenant = ?`` in one transaction per table (READ COMMITTED, its strongest form here);
* anchor 2, a 500-row client: keyset ``SELECT … WHERE tenant = ? AND key > ? ORDER BY key LIMIT 500``
  + ``executemany`` INSERT (one multi-row INSERT), commit per batch.

Then, on the ``server`` build: the binary-log catch-up under a steady write load
(``cutover.tenant_split.sync.catch_up``), and the write pause of a cutover of the smallest and the
largest tenant while a writer writes to that tenant every 100 ms (``cutover.lifecycle.switch.switch``).

Source and target are the same server here, so everything the pipeline writes (the copy, the
catch-up's rows and positions) lands in the binary log the catch-up reads too; the figures say how
much of the verify stage and of the cutover's pause is that reading. ``wide.f2`` is a FLOAT: the client
copy reads it as 6-digit text and fails verification on it (the run is reported RED, the timing stands).
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from cutover import connections

SRC = "bench_ts_source"
SMALL = "bench_ts_small"
PREFIX, SMALL_PREFIX, ANCHOR_PREFIX = "bts_", "btm_", "bta_"
STATE, SMALL_STATE = "bts_state", "btm_state"
TENANTS = 20
GEN_CHUNK = 100_000
# share of --rows per table
SHARES = {"orders": 0.40, "order_items": 0.30, "events": 0.20, "wide": 0.10}
#: the tables of the split and their tenant column (None: shared, copied whole into every tenant)
TABLES = {"tenants": "tenant_id", "plans": None, "orders": "tenant_id", "order_items": "tenant_id",
          "events": "shop", "wide": "tenant_id"}
MAPPING = """tenant_column: tenant_id
tables:
  tenants: {}
  plans: {action: shared}
  orders: {}
  order_items: {}
  events: {tenant_column: shop}
  wide: {}
unlisted: error
"""

log = logging.getLogger("bench_tenant_split")


def say(msg: str) -> None:
    print(msg, flush=True)


def raw(database: str = "") -> Any:
    """A MySQLdb connection with the pipeline's text converters (UTC, utf8mb4, autocommit off)."""
    import MySQLdb

    from cutover.tenant_split.copy import text_conv

    conn = MySQLdb.connect(**connections.resolve(connections.MYSQL_SOURCE).mysql_kwargs(database), conv=text_conv())
    cur = conn.cursor()
    cur.execute("SET SESSION time_zone = '+00:00'")
    cur.close()
    return conn


# --- data -----------------------------------------------------------------------------------------


def zipf_thresholds(n: int) -> list[float]:
    w = [1 / k for k in range(1, n + 1)]
    s = sum(w)
    out, acc = [], 0.0
    for x in w[:-1]:
        acc += x / s
        out.append(round(acc, 9))
    return out


def ddl(tenant_type: str) -> list[str]:
    t = tenant_type
    return [
        f"""CREATE TABLE tenants (tenant_id {t} NOT NULL PRIMARY KEY, name VARCHAR(100) NOT NULL,
            created DATETIME(6) NOT NULL) ENGINE=InnoDB""",
        """CREATE TABLE plans (code VARCHAR(16) NOT NULL PRIMARY KEY, label VARCHAR(64) NOT NULL,
            price DECIMAL(10,2) NOT NULL) ENGINE=InnoDB""",
        f"""CREATE TABLE orders (id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY, tenant_id {t} NOT NULL,
            customer VARCHAR(64) NOT NULL, amount DECIMAL(12,2) NOT NULL,
            status ENUM('new','paid','shipped','void') NOT NULL, created_at DATETIME(6) NOT NULL,
            note VARCHAR(255) NULL, KEY k_tenant (tenant_id)) ENGINE=InnoDB""",
        f"""CREATE TABLE order_items (tenant_id {t} NOT NULL, id BIGINT NOT NULL, order_id BIGINT NOT NULL,
            sku VARCHAR(32) NOT NULL, qty INT NOT NULL, price DECIMAL(10,2) NOT NULL, added DATETIME NOT NULL,
            PRIMARY KEY (tenant_id, id)) ENGINE=InnoDB""",
        f"""CREATE TABLE events (uuid VARCHAR(36) NOT NULL PRIMARY KEY, shop {t} NOT NULL, kind VARCHAR(32) NOT NULL,
            payload JSON NULL, at TIMESTAMP(3) NULL, KEY k_shop (shop)) ENGINE=InnoDB""",
        f"""CREATE TABLE wide (id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY, tenant_id {t} NOT NULL,
            d1 DECIMAL(18,4) NOT NULL, d2 DECIMAL(10,2) NULL, d3 DECIMAL(30,10) NOT NULL,
            dt1 DATETIME(6) NOT NULL, dt2 DATETIME(6) NULL, dd DATE NOT NULL, ts TIMESTAMP(6) NULL, tm TIME NOT NULL,
            j JSON NULL, lt LONGTEXT NOT NULL, v1 VARCHAR(100) NOT NULL, v2 VARCHAR(255) CHARACTER SET latin1 NOT NULL,
            v3 VARCHAR(40) NULL, ch CHAR(10) NOT NULL, b1 BLOB NOT NULL, b2 VARBINARY(16) NOT NULL,
            e ENUM('red','green','blue','ünïcode') NOT NULL, st SET('a','b','c','d') NOT NULL,
            i1 INT NOT NULL, i2 BIGINT NOT NULL, i3 SMALLINT NOT NULL, i4 TINYINT(1) NOT NULL, u1 INT UNSIGNED NOT NULL,
            f1 DOUBLE NOT NULL, f2 FLOAT NOT NULL, y YEAR NOT NULL, txt TEXT NULL, flag BOOLEAN NULL,
            KEY k_tenant (tenant_id)) ENGINE=InnoDB""",
    ]


def _fills(tenant_of: Any) -> dict[str, str]:
    """INSERT … SELECT per table over ``seq_{a}_to_{b}`` (``seq``); ``r`` is a hash of the row number."""
    r = "CRC32(CONCAT('{tag}', seq))"
    return {
        "orders": f"""INSERT INTO orders (tenant_id, customer, amount, status, created_at, note)
            SELECT {tenant_of('o')}, CONCAT('고객 ', seq % 5000, ' ', ELT(1 + seq % 3, 'Zoë', 'Ōsaka', 'Łódź')),
              ({r.format(tag='oa')} % 10000000) / 100, ELT(1 + seq % 4, 'new','paid','shipped','void'),
              TIMESTAMP'2021-01-01 00:00:00' + INTERVAL ({r.format(tag='ot')} % 90000000) SECOND
                + INTERVAL (seq % 1000000) MICROSECOND,
              IF(seq % 9 = 0, NULL, CONCAT('note ', seq, IF(seq % 11 = 0, ' 🚚📦', '')))
            FROM seq_{{a}}_to_{{b}}""",
        "order_items": f"""INSERT INTO order_items (tenant_id, id, order_id, sku, qty, price, added)
            SELECT {tenant_of('i')}, seq, 1 + {r.format(tag='io')} % 400000, CONCAT('SKU-', HEX({r.format(tag='is')} % 65536)),
              1 + seq % 7, ({r.format(tag='ip')} % 100000) / 100,
              TIMESTAMP'2022-01-01 00:00:00' + INTERVAL ({r.format(tag='id')} % 30000000) SECOND
            FROM seq_{{a}}_to_{{b}}""",
        "events": f"""INSERT INTO events (uuid, shop, kind, payload, at)
            SELECT INSERT(INSERT(INSERT(INSERT(MD5(CONCAT('e', seq)), 21, 0, '-'), 17, 0, '-'), 13, 0, '-'), 9, 0, '-'),
              {tenant_of('e')}, ELT(1 + seq % 5, 'click', 'view', 'buy', 'refund', 'login'),
              IF(seq % 13 = 0, NULL, JSON_OBJECT('seq', seq, 'v', {r.format(tag='ev')} % 1000, 'msg', CONCAT('ev ', seq, ' ✓'),
                 'nested', JSON_ARRAY(1, 2.5, 'x', NULL))),
              IF(seq % 17 = 0, NULL, FROM_UNIXTIME(1600000000 + {r.format(tag='et')} % 50000000) + INTERVAL (seq % 1000) * 1000 MICROSECOND)
            FROM seq_{{a}}_to_{{b}}""",
        "wide": f"""INSERT INTO wide (tenant_id, d1, d2, d3, dt1, dt2, dd, ts, tm, j, lt, v1, v2, v3, ch, b1, b2, e, st,
              i1, i2, i3, i4, u1, f1, f2, y, txt, flag)
            SELECT {tenant_of('w')}, ({r.format(tag='w1')} % 100000000) / 10000,
              IF(seq % 7 = 0, NULL, ({r.format(tag='w2')} % 1000000) / 100),
              CAST({r.format(tag='w3')} / 7 AS DECIMAL(30,10)),
              TIMESTAMP'2020-01-01 00:00:00' + INTERVAL ({r.format(tag='w4')} % 100000000) SECOND + INTERVAL (seq % 1000000) MICROSECOND,
              IF(seq % 5 = 0, NULL, TIMESTAMP'1999-12-31 23:59:59.999999' + INTERVAL seq SECOND),
              DATE'2000-01-01' + INTERVAL ({r.format(tag='w5')} % 10000) DAY,
              IF(seq % 19 = 0, NULL, FROM_UNIXTIME(1500000000 + {r.format(tag='w6')} % 100000000) + INTERVAL (seq % 999983) MICROSECOND),
              SEC_TO_TIME({r.format(tag='w7')} % 86400),
              IF(seq % 23 = 0, NULL, JSON_OBJECT('k', seq, 'tags', JSON_ARRAY('a', seq % 10), 'name', 'Ünïcode 한글 🚀', 'f', 1.5)),
              REPEAT(CONCAT('lorem ', seq, ' 한국어 텍스트 '), 1 + {r.format(tag='w8')} % 20),
              CONCAT('이름-', seq, ' 😀🎉 ', ELT(1 + seq % 3, 'ä', 'ß', 'ñ')),
              CONCAT('café crème ', seq),
              IF(seq % 5 = 0, NULL, MD5(seq)), LEFT(MD5(CONCAT('c', seq)), 10),
              UNHEX(SHA2(CONCAT('b', seq), 256)), UNHEX(MD5(CONCAT('v', seq))),
              ELT(1 + seq % 4, 'red', 'green', 'blue', 'ünïcode'), MAKE_SET({r.format(tag='w9')} % 16, 'a', 'b', 'c', 'd'),
              CAST({r.format(tag='wa')} % 2000000 AS SIGNED) - 1000000, {r.format(tag='wb')} * 1000003, {r.format(tag='wc')} % 30000,
              seq % 2, {r.format(tag='wd')}, {r.format(tag='we')} / 3e0, ({r.format(tag='wf')} % 10000) / 7e0,
              1990 + seq % 50, IF(seq % 3 = 0, NULL, CONCAT('노트 ', seq)), IF(seq % 4 = 0, NULL, seq % 2)
            FROM seq_{{a}}_to_{{b}}""",
    }


def generate(db: str, rows: int, tenant_ids: list[Any], tenant_type: str, tenant_of: Any) -> dict[str, int]:
    """(Re)create ``db`` with the tables and ``rows`` rows; returns rows per table."""
    conn = raw()
    cur = conn.cursor()
    cur.execute(f"DROP DATABASE IF EXISTS `{db}`")
    cur.execute(f"CREATE DATABASE `{db}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
    cur.execute(f"USE `{db}`")
    for stmt in ddl(tenant_type):
        cur.execute(stmt)
    cur.executemany("INSERT INTO tenants VALUES (%s, %s, %s)",
                    [(t, f"Tenant {t} — ünïcode 🏢", f"2020-01-{1 + i % 28:02d} 00:00:00.{i:06d}") for i, t in enumerate(tenant_ids)])
    cur.executemany("INSERT INTO plans VALUES (%s, %s, %s)",
                    [(f"P{i}", f"Plan {i} ✨", f"{i * 9.99:.2f}") for i in range(10)])
    conn.commit()
    fills = _fills(tenant_of)
    counts = {}
    for table, share in SHARES.items():
        n = max(1, int(rows * share))
        for a in range(1, n + 1, GEN_CHUNK):
            b = min(n, a + GEN_CHUNK - 1)
            cur.execute(fills[table].format(a=a, b=b))
            conn.commit()
        counts[table] = n
    for table in SHARES:
        cur.execute(f"ANALYZE TABLE `{table}`")
        cur.fetchall()
    conn.close()
    return counts


def setup_big(rows: int) -> list[str]:
    th = ", ".join(str(x) for x in zipf_thresholds(TENANTS))
    ids = list(range(1, TENANTS + 1))
    generate(SRC, rows, ids, "INT", lambda tag: f"INTERVAL(CRC32(CONCAT('{tag}t', seq)) / 4294967296, {th}) + 1")
    return [str(i) for i in ids]


def setup_small(rows: int, n: int) -> list[str]:
    ids = [f"Shop-{i:04d}" for i in range(1, n + 1)]
    generate(SMALL, rows, ids, "VARCHAR(32)",
             lambda tag: f"CONCAT('Shop-', LPAD(1 + CRC32(CONCAT('{tag}t', seq)) % {n}, 4, '0'))")
    return ids


def tenant_rows(db: str) -> dict[str, int]:
    """Rows per tenant over the tenant-scoped tables."""
    conn = raw(db)
    cur = conn.cursor()
    out: dict[str, int] = {}
    for table, col in TABLES.items():
        if col:
            cur.execute(f"SELECT `{col}`, COUNT(*) FROM `{table}` GROUP BY `{col}`")
            for k, c in cur.fetchall():
                out[str(k)] = out.get(str(k), 0) + int(c)
    conn.close()
    return out


# --- cleaning -------------------------------------------------------------------------------------


def reset_targets() -> None:
    """Drop every database this benchmark writes into, and its routes / switches in the control schema."""
    from cutover import control
    from cutover.connections import pg_connect

    conn = raw()
    cur = conn.cursor()
    cur.execute("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE 'bts\\_%' "
                "OR SCHEMA_NAME LIKE 'btm\\_%' OR SCHEMA_NAME LIKE 'bta\\_%'")
    for (name,) in cur.fetchall():
        cur.execute(f"DROP DATABASE `{name.decode() if isinstance(name, bytes) else name}`")
    conn.close()
    with pg_connect(connections.CONTROL) as pg:
        control.ensure_schema(pg)
        for scope in (SRC, SMALL):
            pg.execute(f"DELETE FROM {control.SCHEMA}.routes WHERE pipeline = 'tenant_split' AND scope = %s", (scope,))
            pg.execute(f"DELETE FROM {control.SCHEMA}.switches WHERE pipeline = 'tenant_split' AND starts_with(unit_key, %s)",
                       (scope + ":",))


# --- the pipeline ---------------------------------------------------------------------------------


def params_for(source: str, mapping: str, mode: str, chunk_rows: int, small: bool = False) -> dict[str, Any]:
    return {"source_database": source, "mapping": mapping, "tenant_directory": "tenants",
            "database_prefix": SMALL_PREFIX if small else PREFIX, "state_database": SMALL_STATE if small else STATE,
            "chunk_rows": chunk_rows, "parallelism": 1, "gx_gate": False, "copy_mode": mode}


def run_pipeline(params: dict[str, Any], label: str) -> dict[str, Any]:
    """What ``run_build`` runs (plan, every batch through every stage, the report with the close hook),
    each stage timed; the units' own figures from the control schema."""
    from cutover.connections import pg_connect
    from cutover.lifecycle import stages
    from cutover.tenant_split import sync, verify
    from cutover.tenant_split.spec import SPEC

    reset_targets()
    run_id = f"bench_ts_{label}_{int(time.time() * 1000)}"
    secs: dict[str, float] = {}
    inner = {"catch_up": 0.0, "verify_unit": 0.0}
    # time (only) what the verify stage spends in the binlog catch-up and in the checksums
    originals = {"catch_up": (sync, sync.catch_up), "verify_unit": (verify, verify.verify_unit)}

    def timed(name: str, fn: Any) -> Any:
        def wrapper(*a: Any, **kw: Any) -> Any:
            s0 = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                inner[name] += time.perf_counter() - s0
        return wrapper

    for name, (mod, fn) in originals.items():
        setattr(mod, name, timed(name, fn))
    try:
        t0 = time.perf_counter()
        batches = stages.plan(SPEC, params, run_id, max_batches=1024)
        secs["plan"] = time.perf_counter() - t0
        for batch in batches:
            for stage in stages.UNIT_STAGES:
                s0 = time.perf_counter()
                try:
                    stages.run_unit_stage(SPEC, stage, params, batch, run_id)
                except stages.UnitsFailed as exc:
                    log.error("%s", exc)
                secs[stage] = secs.get(stage, 0.0) + time.perf_counter() - s0
        s0 = time.perf_counter()
        verdict = "green"
        try:
            stages.report(SPEC, params, run_id)
        except stages.RunFailed as exc:
            verdict = f"RED: {str(exc)[:300]}"
        secs["close+report"] = time.perf_counter() - s0
        total = time.perf_counter() - t0
    finally:
        for name, (mod, fn) in originals.items():
            setattr(mod, name, fn)
    with pg_connect(connections.CONTROL) as pg:
        n, rows, copy_s, states = pg.execute(
            """SELECT count(*), coalesce(sum(rows_written), 0), sum((detail->'seconds'->>'copy')::float),
                      string_agg(DISTINCT state, ',') FROM cutover.units WHERE run_id = %s""", (run_id,)).fetchone()
    return {"run_id": run_id, "units": int(n), "rows": int(rows), "seconds": total, "stages": secs,
            "copy_s": secs.get("copy", 0.0), "copy_s_recorded": copy_s, "verdict": verdict, "states": states,
            "batches": len(batches), "verify_catch_up_s": inner["catch_up"], "verify_checksum_s": inner["verify_unit"]}


# --- anchors --------------------------------------------------------------------------------------


def _keys(cur: Any, db: str) -> dict[str, list[str]]:
    cur.execute("SELECT TABLE_NAME, COLUMN_NAME FROM information_schema.KEY_COLUMN_USAGE WHERE TABLE_SCHEMA = %s "
                "AND CONSTRAINT_NAME = 'PRIMARY' ORDER BY TABLE_NAME, ORDINAL_POSITION", (db,))
    out: dict[str, list[str]] = {}
    for t, c in cur.fetchall():
        out.setdefault(str(t), []).append(str(c))
    return out


def anchor_in_server(db: str, tenants: list[str]) -> dict[str, Any]:
    """Per tenant per table: CREATE TABLE … LIKE, INSERT … SELECT * … WHERE tenant = ? (one transaction per table)."""
    reset_targets()
    conn = raw()
    cur = conn.cursor()
    cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
    rows = 0
    t0 = time.perf_counter()
    for i, tenant in enumerate(tenants):
        tdb = f"{ANCHOR_PREFIX}{i}"
        cur.execute(f"CREATE DATABASE `{tdb}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
        for table, col in TABLES.items():
            cur.execute(f"CREATE TABLE `{tdb}`.`{table}` LIKE `{db}`.`{table}`")
            if col:
                cur.execute(f"INSERT INTO `{tdb}`.`{table}` SELECT * FROM `{db}`.`{table}` WHERE `{col}` = %s", (tenant,))
            else:
                cur.execute(f"INSERT INTO `{tdb}`.`{table}` SELECT * FROM `{db}`.`{table}`")
            rows += cur.rowcount
            conn.commit()
    secs = time.perf_counter() - t0
    conn.close()
    return {"rows": rows, "seconds": secs}


def anchor_client(db: str, tenants: list[str], batch: int = 500) -> dict[str, Any]:
    """Per tenant per table: keyset SELECT … LIMIT 500 on one connection, executemany INSERT on another,
    commit per batch."""
    reset_targets()
    src, tgt = raw(), raw()
    scur, tcur = src.cursor(), tgt.cursor()
    scur.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
    keys = _keys(scur, db)
    cols: dict[str, list[str]] = {}
    for table in TABLES:
        scur.execute("SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s "
                     "ORDER BY ORDINAL_POSITION", (db, table))
        cols[table] = [str(r[0]) for r in scur.fetchall()]
    rows = 0
    t0 = time.perf_counter()
    for i, tenant in enumerate(tenants):
        tdb = f"{ANCHOR_PREFIX}{i}"
        tcur.execute(f"CREATE DATABASE `{tdb}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
        for table, col in TABLES.items():
            tcur.execute(f"CREATE TABLE `{tdb}`.`{table}` LIKE `{db}`.`{table}`")
            key = [k for k in keys[table] if k != col]
            names = cols[table]
            sel = ", ".join(f"`{c}`" for c in names)
            ins = f"INSERT INTO `{tdb}`.`{table}` ({sel}) VALUES ({', '.join(['%s'] * len(names))})"
            idx = [names.index(k) for k in key]
            last: tuple[Any, ...] | None = None
            while True:
                terms, params = ([f"`{col}` = %s"], [tenant]) if col else ([], [])
                if last is not None:  # the key after the tenant column: one column here
                    terms.append(f"({', '.join(f'`{k}`' for k in key)}) > ({', '.join(['%s'] * len(key))})")
                    params += list(last)
                where = (" WHERE " + " AND ".join(terms)) if terms else ""
                order = f" ORDER BY {', '.join(f'`{k}`' for k in key)}" if key else ""
                scur.execute(f"SELECT {sel} FROM `{db}`.`{table}`{where}{order} LIMIT {batch}", params)
                got = scur.fetchall()
                src.commit()
                if got:
                    tcur.executemany(ins, got)
                    tgt.commit()
                    rows += len(got)
                if len(got) < batch or not key:
                    break
                last = tuple(got[-1][j] for j in idx)
    secs = time.perf_counter() - t0
    src.close()
    tgt.close()
    return {"rows": rows, "seconds": secs}


# --- catch-up under load --------------------------------------------------------------------------


def write_load(db: str, tenants: list[str], seconds: float, tps: float, seed: int = 7) -> dict[str, Any]:
    """One writer: ``tps`` transactions a second (0: as fast as it goes) of 4 order inserts, an order update,
    an event insert, an item delete and a wide-row update, on random tenants, for ``seconds``. Returns the
    source rows changed."""
    rnd = random.Random(seed)
    conn = raw(db)
    cur = conn.cursor()
    cur.execute("SELECT MAX(id) FROM orders")
    max_order = int(cur.fetchone()[0])
    cur.execute("SELECT MAX(id) FROM wide")
    max_wide = int(cur.fetchone()[0])
    cur.execute("SELECT tenant_id, id FROM order_items WHERE id % 50 = 7")
    items = list(cur.fetchall())
    rnd.shuffle(items)
    conn.commit()
    changed = txns = 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        vals = [(rnd.choice(tenants), f"load {txns} 🙂", f"{rnd.randint(1, 99999) / 100:.2f}", "new",
                 "2024-05-01 12:00:00.123456", None) for _ in range(4)]
        cur.executemany("INSERT INTO orders (tenant_id, customer, amount, status, created_at, note) "
                        "VALUES (%s, %s, %s, %s, %s, %s)", vals)
        changed += cur.rowcount
        cur.execute("UPDATE orders SET amount = amount + 1, status = 'paid' WHERE id = %s", (rnd.randint(1, max_order),))
        changed += cur.rowcount
        cur.execute("INSERT INTO events (uuid, shop, kind, payload, at) VALUES (%s, %s, 'load', %s, NOW(3))",
                    (str(uuid.uuid4()), rnd.choice(tenants), '{"load": true, "t": "✓"}'))
        changed += cur.rowcount
        if items:
            cur.execute("DELETE FROM order_items WHERE tenant_id = %s AND id = %s", items.pop())
            changed += cur.rowcount
        cur.execute("UPDATE wide SET i1 = i1 + 1, v1 = CONCAT('upd ', %s, ' 🔁'), dt1 = dt1 + INTERVAL 1 SECOND WHERE id = %s",
                    (txns, rnd.randint(1, max_wide)))
        changed += cur.rowcount
        conn.commit()
        txns += 1
        if tps:
            time.sleep(max(0.0, t0 + txns / tps - time.perf_counter()))
    secs = time.perf_counter() - t0
    conn.close()
    return {"changed": changed, "transactions": txns, "seconds": secs}


def compare_counts(cfg: Any, tenants: list[str]) -> list[str]:
    """Rows per tenant per table, source vs the tenant's database; the differences."""
    from cutover.connections import pg_connect
    from cutover.control import load_name_map

    with pg_connect(connections.CONTROL) as pg:
        dbs = load_name_map(pg, "tenant_split", cfg.scope)
    conn = raw()
    cur = conn.cursor()
    bad = []
    for table, col in TABLES.items():
        if not col:
            continue
        cur.execute(f"SELECT `{col}`, COUNT(*) FROM `{cfg.source_database}`.`{table}` GROUP BY `{col}`")
        src = {str(k): int(n) for k, n in cur.fetchall()}
        for t in tenants:
            cur.execute(f"SELECT COUNT(*) FROM `{dbs[t]}`.`{table}`")
            n = int(cur.fetchone()[0])
            if n != src.get(t, 0):
                bad.append(f"{t}/{table}: source {src.get(t, 0)}, target {n}")
    conn.close()
    return bad


# --- the cutover's write pause --------------------------------------------------------------------


class Writer(threading.Thread):
    """Writes to one tenant every 100 ms (an order insert + an update of one of its orders, one transaction)."""

    def __init__(self, db: str, tenant: str, every_s: float = 0.1) -> None:
        super().__init__(daemon=True)
        self.db, self.tenant, self.every_s = db, tenant, every_s
        self.stop = threading.Event()
        self.samples: list[tuple[float, float]] = []  # (start, latency)
        self.errors: list[str] = []

    def run(self) -> None:
        conn = raw(self.db)
        cur = conn.cursor()
        cur.execute("SELECT MIN(id) FROM orders WHERE tenant_id = %s", (self.tenant,))
        oid = cur.fetchone()[0]
        conn.commit()
        k = 0
        start = time.perf_counter()
        while not self.stop.is_set():
            t = time.perf_counter()
            try:
                cur.execute("INSERT INTO orders (tenant_id, customer, amount, status, created_at) "
                            "VALUES (%s, 'pause probe ⏱', 1.00, 'new', NOW(6))", (self.tenant,))
                cur.execute("UPDATE orders SET amount = amount + 0.01 WHERE id = %s", (oid,))
                conn.commit()
            except Exception as exc:  # noqa: BLE001 - recorded and reported
                conn.rollback()
                self.errors.append(str(exc))
            self.samples.append((t, time.perf_counter() - t))
            k += 1
            time.sleep(max(0.0, start + k * self.every_s - time.perf_counter()))
        conn.close()


def cutover_tenant(params: dict[str, Any], tenant: str) -> dict[str, Any]:
    from cutover.lifecycle.switch import split_ready, switch
    from cutover.tenant_split.config import TenantSplitConfig
    from cutover.tenant_split.spec import SPEC

    cfg = TenantSplitConfig.from_params(params)
    units, blocked = split_ready(SPEC, cfg, [f"{tenant} / {t}" for t in TABLES])
    if blocked:
        return {"error": f"not ready: {blocked}"}
    w = Writer(cfg.source_database, tenant)
    w.start()
    time.sleep(1.0)
    t0 = time.perf_counter()
    try:
        os.environ["CUTOVER_REQUIRE_APPROVAL_TENANT_SPLIT"] = "off"  # no human in a benchmark: policy off here
        out = switch(SPEC, cfg, units, f"bench_ts_cutover_{tenant}_{int(time.time() * 1000)}", approval=None)
        err = None
    except Exception as exc:  # noqa: BLE001 - reported
        out, err = {}, f"{type(exc).__name__}: {exc}"
    t1 = time.perf_counter()
    time.sleep(1.0)
    w.stop.set()
    w.join()
    during = [lat for s, lat in w.samples if s + lat >= t0 and s <= t1]
    before = [lat for s, lat in w.samples if s + lat < t0]
    g = (out.get("groups") or {}).get(tenant) or {}
    return {"paused_s": g.get("paused_s"), "lock_s": g.get("lock_s"), "locked_rows": g.get("locked_rows"),
            "switch_s": t1 - t0, "max_write_s": max(during) if during else None,
            "normal_write_s": statistics.median(before) if before else None, "writes": len(w.samples),
            "writer_errors": w.errors[:3], "error": err,
            "catch_up_applied": (g.get("catch_up") or {}).get("applied"), "catch_up_s": (g.get("catch_up") or {}).get("seconds"),
            "checks": g.get("checks")}


# --- main -----------------------------------------------------------------------------------------


def rate(r: dict[str, Any], secs_key: str = "seconds") -> float:
    s = r.get(secs_key) or 0.0
    return r["rows"] / s if s else 0.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000, help="rows over the 4 big tables (default 1M)")
    ap.add_argument("--chunk-rows", type=int, default=5_000)
    ap.add_argument("--small-tenants", type=int, default=50, help="tenants of the many-small-tenants shape (0: skip)")
    ap.add_argument("--small-rows", type=int, default=25_000)
    ap.add_argument("--load-seconds", type=float, default=10.0, help="write load before each catch-up")
    ap.add_argument("--load-tps", type=float, default=100.0, help="write load: transactions/s (~7 rows each; 0: unpaced)")
    ap.add_argument("--catch-up-max-s", type=float, default=150.0, help="stop a catch-up after this long")
    ap.add_argument("--skip-generate", action="store_true", help="reuse the source databases of an earlier run")
    ap.add_argument("-v", "--verbose", action="store_true", help="the pipeline's INFO log on stderr")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    connections.apply_default_env()
    from cutover.tenant_split.config import TenantSplitConfig
    from cutover.tenant_split.sync import catch_up

    began = time.perf_counter()
    mapping = Path(tempfile.mkdtemp(prefix="bench_ts_")) / "mapping.yaml"
    mapping.write_text(MAPPING)
    t = time.perf_counter()
    if args.skip_generate:
        tenants = [str(i) for i in range(1, TENANTS + 1)]
    else:
        tenants = setup_big(args.rows)
    per_tenant = tenant_rows(SRC)
    say(f"{SRC}: {sum(per_tenant.values()):,} tenant rows over {len(tenants)} tenants (largest {max(per_tenant.values()):,}, "
        f"smallest {min(per_tenant.values()):,}), generated in {time.perf_counter() - t:.1f} s")
    small_ids: list[str] = []
    if args.small_tenants:
        t = time.perf_counter()
        small_ids = ([f"Shop-{i:04d}" for i in range(1, args.small_tenants + 1)] if args.skip_generate
                     else setup_small(args.small_rows, args.small_tenants))
        say(f"{SMALL}: {sum(tenant_rows(SMALL).values()):,} tenant rows over {len(small_ids)} tenants, "
            f"generated in {time.perf_counter() - t:.1f} s")

    res: dict[str, dict[str, Any]] = {}
    say("\n-- copy (each from a clean target)")
    res["in_server"] = anchor_in_server(SRC, tenants)
    say(f"in-server anchor        {res['in_server']['rows']:>10,} rows {res['in_server']['seconds']:7.1f} s")
    res["client_500"] = anchor_client(SRC, tenants)
    say(f"500-row client anchor   {res['client_500']['rows']:>10,} rows {res['client_500']['seconds']:7.1f} s")
    client_params = params_for(SRC, str(mapping), "client", args.chunk_rows)
    res["pipe_client"] = run_pipeline(client_params, "client")
    say(f"pipeline client         {res['pipe_client']['rows']:>10,} rows {res['pipe_client']['seconds']:7.1f} s "
        f"({res['pipe_client']['units']} units, {res['pipe_client']['verdict']})")
    if args.small_tenants:
        sp = params_for(SMALL, str(mapping), "server", args.chunk_rows, small=True)
        res["small_in_server"] = anchor_in_server(SMALL, small_ids)
        say(f"small: in-server anchor {res['small_in_server']['rows']:>10,} rows {res['small_in_server']['seconds']:7.1f} s")
        res["small_pipe"] = run_pipeline(sp, "small")
        say(f"small: pipeline server  {res['small_pipe']['rows']:>10,} rows {res['small_pipe']['seconds']:7.1f} s "
            f"({res['small_pipe']['units']} units, {res['small_pipe']['verdict']})")
    server_params = params_for(SRC, str(mapping), "server", args.chunk_rows)
    res["pipe_server"] = run_pipeline(server_params, "server")  # kept: the catch-up and the cutover use it
    say(f"pipeline server         {res['pipe_server']['rows']:>10,} rows {res['pipe_server']['seconds']:7.1f} s "
        f"({res['pipe_server']['units']} units, {res['pipe_server']['verdict']})")

    say("\n-- binary-log catch-up (on the server build)")
    cfg = TenantSplitConfig.from_params(server_params)
    catch: list[dict[str, Any]] = []
    for label in ("first after the build (reads past the build's own binlog)", "steady (only the load)"):
        load = write_load(SRC, tenants, args.load_seconds, args.load_tps, seed=len(catch) + 7)
        out = catch_up(cfg, max_seconds=args.catch_up_max_s)
        catch.append({"label": label, "load": load, **out})
        say(f"{label}: load {load['changed']:,} source rows changed in {load['transactions']:,} txns "
            f"({load['changed'] / load['seconds']:,.0f} rows/s); catch-up applied {out['applied']:,} in "
            f"{out['seconds']:.1f} s = {out.get('rows_per_s') or 0:,.0f} rows/s")
    bad = compare_counts(cfg, tenants)
    say(f"counts per tenant per table after the catch-up: {'all equal' if not bad else 'DIFFER: ' + '; '.join(bad[:10])}")

    say("\n-- cutover write pause (writer every 100 ms on the tenant)")
    by_size = sorted(tenants, key=lambda x: per_tenant.get(x, 0))
    pauses = {}
    for tenant in (by_size[0], by_size[-1]):
        p = cutover_tenant(server_params, tenant)
        pauses[tenant] = p
        say(f"tenant {tenant} ({per_tenant.get(tenant, 0):,} rows): " + (
            f"paused {p['paused_s']} s (lock {p['lock_s']} s, {p['locked_rows']:,} rows locked), switch {p['switch_s']:.2f} s, "
            f"writer max latency {p['max_write_s'] or 0:.2f} s (normal {p['normal_write_s'] or 0:.3f} s), "
            f"catch-up in pause {p['catch_up_applied']} rows in {p['catch_up_s']} s" if not p.get("error") else f"FAILED: {p['error']}")
            + (f"; writer errors: {p['writer_errors']}" if p.get("writer_errors") else ""))

    # --- summary
    r = {k: rate(v) for k, v in res.items()}
    ps, pc = res["pipe_server"], res["pipe_client"]
    r["pipe_server_copy"] = ps["rows"] / ps["copy_s"] if ps["copy_s"] else 0.0
    r["pipe_client_copy"] = pc["rows"] / pc["copy_s"] if pc["copy_s"] else 0.0
    say("\n" + "=" * 100)
    say(f"tenant_split benchmark: {sum(per_tenant.values()):,} rows, {len(tenants)} tenants, chunk {args.chunk_rows:,}, "
        "parallelism 1 (units one after another)")
    say(f"{'contender':<58} {'rows':>10} {'seconds':>8} {'rows/s':>10}")
    lines = [
        ("pipeline, copy_mode=server, whole run", ps["rows"], ps["seconds"], r["pipe_server"]),
        ("  its copy stage only", ps["rows"], ps["copy_s"], r["pipe_server_copy"]),
        ("pipeline, copy_mode=client, whole run", pc["rows"], pc["seconds"], r["pipe_client"]),
        ("  its copy stage only", pc["rows"], pc["copy_s"], r["pipe_client_copy"]),
        ("anchor: INSERT … SELECT per tenant per table (in server)", res["in_server"]["rows"], res["in_server"]["seconds"],
         r["in_server"]),
        ("anchor: 500-row keyset client", res["client_500"]["rows"], res["client_500"]["seconds"], r["client_500"]),
    ]
    if args.small_tenants:
        sm = res["small_pipe"]
        lines += [(f"small tenants ({len(small_ids)}): pipeline server, whole run", sm["rows"], sm["seconds"], r["small_pipe"]),
                  ("  its copy stage only", sm["rows"], sm["copy_s"], sm["rows"] / sm["copy_s"] if sm["copy_s"] else 0),
                  ("small tenants: in-server anchor", res["small_in_server"]["rows"], res["small_in_server"]["seconds"],
                   r["small_in_server"])]
    for label, n, s, x in lines:
        say(f"{label:<58} {n:>10,} {s:>8.1f} {x:>10,.0f}")
    say("")
    for k in ("pipe_server", "pipe_client") + (("small_pipe",) if args.small_tenants else ()):
        st = res[k]["stages"]
        say(f"stages of {k:<12}: " + ", ".join(f"{s} {v:.1f} s" for s, v in st.items())
            + f"; {res[k]['units']} units, {res[k]['seconds'] / max(res[k]['units'], 1) * 1000:.0f} ms/unit; "
            f"detail->seconds->copy recorded: {res[k]['copy_s_recorded']}")
        say(f"  verify = binlog catch-up {res[k]['verify_catch_up_s']:.1f} s + counts/checksums "
            f"{res[k]['verify_checksum_s']:.1f} s + the rest")
    say("")

    def ratio(label: str, a: float, b: float, target: float) -> None:
        x = a / b if b else 0.0
        say(f"{label:<64} {x:6.2f}x  (target >= {target}x) {'ok' if x >= target else 'MISSED'}")

    ratio("pipeline(server) whole run / in-server anchor", r["pipe_server"], r["in_server"], 0.77)
    ratio("pipeline(server) copy stage / in-server anchor", r["pipe_server_copy"], r["in_server"], 0.77)
    ratio("pipeline(client) whole run / 500-row client", r["pipe_client"], r["client_500"], 5)
    ratio("pipeline(client) copy stage / 500-row client", r["pipe_client_copy"], r["client_500"], 5)
    ratio("pipeline(server) whole run / 500-row client", r["pipe_server"], r["client_500"], 5)
    if args.small_tenants:
        ratio("small tenants: pipeline(server) whole run / in-server anchor", r["small_pipe"], r["small_in_server"], 0.77)
    for c in catch:
        say(f"catch-up, {c['label']:<58}: {c.get('rows_per_s') or 0:>8,.0f} rows/s ({c['applied']:,} in {c['seconds']:.1f} s)")
    for tenant, p in pauses.items():
        if p.get("error"):
            say(f"cutover tenant {tenant}: FAILED {p['error']}")
        else:
            worst = max(p["paused_s"] or 0, p["max_write_s"] or 0)
            say(f"cutover tenant {tenant:>3} ({per_tenant.get(tenant, 0):>7,} rows): paused {p['paused_s']:.2f} s (catch-up in it "
                f"{p['catch_up_s'] or 0:.1f} s), writer's longest write {p['max_write_s'] or 0:.2f} s  (target < 5 s) "
                f"{'ok' if worst < 5 else 'MISSED'}" + (f"; writer errors {len(p['writer_errors'])}" if p.get("writer_errors") else ""))
    say(f"total benchmark time {time.perf_counter() - began:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
