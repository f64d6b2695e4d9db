"""Benchmark ``mysql_to_postgres``: the pipeline vs pgloader loading the same MySQL tables into the same PostgreSQL, in one run.

    .venv/bin/python benchmarks/bench_mysql_to_postgres.py            # 1M rows + the two other shapes (~8 min on 2 cores)
    .venv/bin/python benchmarks/bench_mysql_to_postgres.py --quick    # 100k rows, 20k-row wide table, 50 small tables (~2 min)

Both contenders write into the **same PostgreSQL**: the system PostgreSQL on ``127.0.0.1:5432``, database
``test`` (pgloader needs TCP; the embedded ``pgserver`` listens on a unix socket only), set for the
pipeline through ``AIRFLOW_CONN_POSTGRES_TARGET`` / ``AIRFLOW_CONN_CUTOVER_CONTROL`` (its control schema
goes into that database too). Both read the same MariaDB (``127.0.0.1:3306``): the pipeline through its
read-only user ``cutover_ro`` (connection ``mysql_readonly``; the bench databases are granted to the
existing ``cutover_ro@%``), pgloader as root. The binlog refresh needs MariaDB's binary log in ROW format
(``make services`` / ``scripts/ensure-services.sh``); without it that part is skipped.

Data (generated inside MariaDB from ``seq_0_to_N``, deterministic; rows arrive in **random key order**:
the keys are a permutation of the row numbers, each 100k-row slice inserted ``ORDER BY RAND(seed)``):

* ``bench_m2p_big.big`` — ``--rows`` rows (default 1M; ~104 MB as text, ~157 MB DATA_LENGTH with the
  page slack of random inserts): sparse BIGINT key, INT with a secondary index, DECIMAL(12,2), DOUBLE,
  ENUM, DATETIME(6), TIMESTAMP(3), DATE with ~1 % zero dates (``0000-00-00``; both contenders turn them
  into NULL), Korean VARCHAR, JSON, TEXT with Korean, tabs, newlines and backslashes, NULLs;
* ``bench_m2p_wide.wide`` — ``--wide-rows`` rows (100k) of 120 columns (integers, DECIMAL, DOUBLE,
  VARCHAR with Korean, DATETIME(6), DATE, ENUM, TINYINT, BIGINT, JSON, TEXT, NULLs);
* ``bench_m2p_many.t000 … t199`` — ``--many-tables`` tables (200) × ``--many-rows`` rows (500):
  AUTO_INCREMENT key, a secondary index, Korean VARCHAR, DECIMAL, ENUM, DATETIME(6), JSON and a
  ``TIMESTAMP(6) DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6)`` column.

Contenders, per shape, each run ``--runs`` times (2), alternating pgloader / pipeline so that drift on the
machine hits both alike, each one's fastest run counted; each run in its own **subprocess** (peak memory =
that process's max RSS, from ``os.wait4`` and ``/proc/self/status`` ``VmHWM`` per stage; the database
servers' memory is not in it; the largest over the runs is reported), into a dropped target schema after
a ``CHECKPOINT``, after the source tables' dirty pages were flushed and the tables scanned once
(MariaDB's buffer pool, 128 MB here, is smaller than the big table):

* the pipeline — exactly what ``cutover.lifecycle.stages.run_build`` runs (plan → every batch through
  prepare / copy / finalize / verify → report with the close hook), each stage timed, ``chunk_rows``
  10,000, ``gx_gate`` off, its best run = the one with the smallest copy + finalize; units one after
  another in the one process, as ``run_build`` runs them (in Airflow the batches are mapped tasks that
  run side by side);
* pgloader 3.6 (Debian package; ``scripts/ensure-bench.sh`` installs it when missing), each run counted
  as the smaller of its process's wall time and its own "Total import time": its default casts
  (``tinyint(1)`` → boolean, ENUM → a PostgreSQL enum type, DATETIME → timestamptz, …) plus the two
  rules its 3.6 needs for this data (``PGLOADER_CAST``: zero dates to NULL in every DATE column,
  TIMESTAMP defaults dropped — it copies MariaDB's ``current_timestamp(6)`` as a string and CREATE
  TABLE fails), its default build (create tables, load, then indexes / primary
  keys, sequences, foreign keys), and the fastest settings tried here on 2 cores (``PGLOADER_WITH``:
  8 workers, concurrency 4, several readers per table, 25k-row batches, 100k prefetch) with
  ``maintenance_work_mem`` 512MB for its index builds.

Compared with pgloader's figure (its whole job: catalog, load, indexes) is the pipeline's **copy +
finalize** (finalize: primary key, indexes, identities, triggers and ``ANALYZE``, which pgloader does not
do; pgloader + a timed ``ANALYZE`` of its tables is printed as well). The pipeline's whole run (plan,
prepare, and the verify stage's binlog catch-up + full row checksums of both sides) is printed beside.
**MB** = the bytes of the rows as text (``SUM(LENGTH(CONCAT_WS('', <every column>)))``: each value as
MySQL renders it, NULL as nothing); ``DATA_LENGTH`` is printed with the sources. After each contender the
target's row counts are compared with the source's (``COUNT(*)`` on both sides).

Then the **binlog refresh**: on the big table the benchmark writes ``--changes`` row changes in MySQL
(transactions of 10: 5 updates, 3 inserts — one with a zero date —, 2 deletes), and
``cutover.mysql_to_postgres.sync.sync_units`` applies them in a subprocess (changes/s, the part spent
applying vs reading the binary log, peak RSS); counts are compared and then every row
(``cutover.consistency.diff.diff_pair``).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from cutover import connections

ROOT = Path(__file__).resolve().parents[1]
PG_URI = "postgresql://postgres@127.0.0.1:5432/test"
SRC = {"big": "bench_m2p_big", "wide": "bench_m2p_wide", "many": "bench_m2p_many"}
OURS = {"big": "bm2p_big", "wide": "bm2p_wide", "many": "bm2p_many"}  # the pipeline's target schemas
PGL = {"big": "bpgl_big", "wide": "bpgl_wide", "many": "bpgl_many"}  # pgloader's target schemas
RO_USER = "cutover_ro"
GEN_CHUNK = 100_000
CHUNK_ROWS = 10_000
WIDE_COLS = 120
PGLOADER_WITH = ("workers = 8, concurrency = 4, multiple readers per thread, rows per range = 50000, "
                 "batch rows = 25000, prefetch rows = 100000")

#: on top of pgloader's default casts, the two rules its 3.6 needs for this data: its defaults turn zero dates
#: into NULL only in columns whose DEFAULT is a zero date (else a ``0000-00-00`` in a DATE column fails its
#: whole batch: 0 rows loaded), and it copies MariaDB's ``current_timestamp(6)`` default as a string
#: literal (CREATE TABLE fails); so: zero dates to NULL in every DATE, TIMESTAMP defaults dropped
PGLOADER_CAST = ("type date to date drop not null using zero-dates-to-null, "
                 "type timestamp to timestamptz drop default")

log = logging.getLogger("bench_mysql_to_postgres")


def say(msg: str = "") -> None:
    print(msg, flush=True)


def set_env() -> None:
    """Both PostgreSQL connection ids → the system PostgreSQL over TCP (pgloader reaches the same one)."""
    os.environ["AIRFLOW_CONN_POSTGRES_TARGET"] = PG_URI
    os.environ["AIRFLOW_CONN_CUTOVER_CONTROL"] = PG_URI
    connections.apply_default_env()


def mysql(database: str = "") -> Any:
    """A root MySQLdb connection (UTC, utf8mb4, permissive sql_mode: the zero dates are written on purpose)."""
    import MySQLdb

    conn = MySQLdb.connect(**connections.resolve(connections.MYSQL_SOURCE).mysql_kwargs(database))
    cur = conn.cursor()
    cur.execute("SET SESSION time_zone = '+00:00', SESSION sql_mode = 'NO_ENGINE_SUBSTITUTION'")
    cur.close()
    return conn


def pg() -> Any:
    import psycopg

    return psycopg.connect(PG_URI, autocommit=True)


# --- data -----------------------------------------------------------------------------------------


def scatter(n: int) -> int:
    """A multiplier coprime with ``n`` near ``0.618 n``: ``seq * p mod n`` spreads consecutive rows far apart."""
    p = max(1, int(n * 0.6180339887))
    while math.gcd(p, n) != 1:
        p += 1
    return p


def fill_random_order(cur: Any, conn: Any, table: str, cols: str, exprs: str, n: int, key_expr: str, seed: int) -> None:
    """``INSERT INTO table (cols) SELECT exprs FROM seq`` in slices of GEN_CHUNK, keys permuted, each
    slice in random order. ``exprs`` uses ``s`` (the row number 0…n-1), ``k`` (its permuted slot) and
    ``__KEY__`` (replaced by ``key_expr``, the key computed from ``k``)."""
    p = scatter(n)
    for a in range(0, n, GEN_CHUNK):
        b = min(n, a + GEN_CHUNK) - 1
        cur.execute(f"""INSERT INTO {table} ({cols})
            SELECT {exprs} FROM (SELECT seq AS s, (seq * {p}) % {n} AS k FROM seq_{a}_to_{b}) q
            ORDER BY RAND({seed + a})""".replace("__KEY__", key_expr))
        conn.commit()


def gen_big(rows: int) -> None:
    db = SRC["big"]
    conn = mysql()
    cur = conn.cursor()
    cur.execute(f"DROP DATABASE IF EXISTS `{db}`")
    cur.execute(f"CREATE DATABASE `{db}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
    cur.execute(f"USE `{db}`")
    cur.execute("""CREATE TABLE big (
        id BIGINT NOT NULL PRIMARY KEY,
        account_id INT NOT NULL,
        amount DECIMAL(12,2) NOT NULL,
        score DOUBLE NULL,
        status ENUM('new','paid','shipped','void','refunded') NOT NULL,
        created_at DATETIME(6) NOT NULL,
        seen_at TIMESTAMP(3) NULL DEFAULT NULL,
        birthday DATE NULL,
        title VARCHAR(60) NOT NULL,
        payload JSON NULL,
        note TEXT NULL,
        KEY k_account (account_id)) ENGINE=InnoDB""")
    r = "CRC32(CONCAT('{t}', s))"
    cols = "id, account_id, amount, score, status, created_at, seen_at, birthday, title, payload, note"
    exprs = f"""__KEY__, 1 + {r.format(t='a')} % 50000, ({r.format(t='m')} % 10000000) / 100,
        IF(s % 3 = 0, NULL, {r.format(t='s')} / 7e3),
        ELT(1 + s % 5, 'new','paid','shipped','void','refunded'),
        TIMESTAMP'2020-01-01 00:00:00' + INTERVAL ({r.format(t='c')} % 150000000) SECOND + INTERVAL (s % 1000000) MICROSECOND,
        IF(s % 2 = 0, NULL, FROM_UNIXTIME(1600000000 + {r.format(t='u')} % 60000000) + INTERVAL (s % 1000) * 1000 MICROSECOND),
        CASE WHEN s % 97 = 0 THEN '0000-00-00' WHEN s % 11 = 0 THEN NULL
             ELSE DATE'1950-01-01' + INTERVAL ({r.format(t='b')} % 20000) DAY END,
        CONCAT(ELT(1 + s % 4, '주문 ', '배송 ', '고객 ', 'Zoë '), s % 10000),
        IF(s % 4 = 1, JSON_OBJECT('k', s % 1000, 'ok', s % 3 = 0), NULL),
        CASE WHEN s % 4 <> 2 THEN NULL WHEN s % 50 = 2 THEN CONCAT('메모\\t', s, '\\n둘째 줄 \\\\ 끝')
             ELSE CONCAT('메모 ', s % 1000) END"""
    fill_random_order(cur, conn, "big", cols, exprs, rows, "1000000000 + k * 7", seed=1)
    conn.close()


def wide_columns() -> list[tuple[str, str, str]]:
    """(name, MySQL type, value expression over ``s``) for the wide table's 119 non-key columns."""
    kinds = [
        ("INT NOT NULL", "CAST(({h} % 2000000) AS SIGNED) - 1000000"),
        ("DECIMAL(10,2) NULL", "IF(s % {m} = 0, NULL, ({h} % 100000000) / 100)"),
        ("VARCHAR(32) NOT NULL", "CONCAT('값-', s % 1000, '-{i}')"),
        ("DATETIME(6) NULL", "IF(s % {m} = 0, NULL, TIMESTAMP'2021-01-01 00:00:00' + INTERVAL ({h} % 80000000) SECOND + INTERVAL (s % 997) MICROSECOND)"),
        ("DOUBLE NOT NULL", "{h} / 13e0"),
        ("DATE NOT NULL", "DATE'2000-01-01' + INTERVAL ({h} % 9000) DAY"),
        ("ENUM('a','b','c','데') NOT NULL", "ELT(1 + {h} % 4, 'a', 'b', 'c', '데')"),
        ("TINYINT NOT NULL", "{h} % 100"),
        ("BIGINT NULL", "IF(s % {m} = 0, NULL, {h} * 1000003)"),
        ("VARCHAR(64) NULL", "IF(s % {m} = 0, NULL, CONCAT('텍스트 ', {h} % 100000))"),
    ]
    out = []
    for i in range(1, WIDE_COLS):
        if i % 40 == 0:
            out.append((f"j{i}", "JSON NULL", f"IF(s % 5 = 0, NULL, JSON_OBJECT('i', {i}, 'v', s % 777))"))
            continue
        if i % 40 == 20:
            out.append((f"x{i}", "TEXT NULL", f"IF(s % 4 = 0, NULL, CONCAT('긴 글 ', s, ' \\\\ ', {i}))"))
            continue
        typ, expr = kinds[i % len(kinds)]
        out.append((f"c{i}", typ, expr.format(h=f"CRC32(CONCAT('w{i}', s))", m=3 + i % 11, i=i)))
    return out


def gen_wide(rows: int) -> None:
    db = SRC["wide"]
    conn = mysql()
    cur = conn.cursor()
    cur.execute(f"DROP DATABASE IF EXISTS `{db}`")
    cur.execute(f"CREATE DATABASE `{db}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
    cur.execute(f"USE `{db}`")
    cols = wide_columns()
    cur.execute("CREATE TABLE wide (id INT NOT NULL PRIMARY KEY, "
                + ", ".join(f"`{n}` {t}" for n, t, _ in cols) + ") ENGINE=InnoDB")
    fill_random_order(cur, conn, "wide", "id, " + ", ".join(f"`{n}`" for n, _, _ in cols),
                      "__KEY__, " + ", ".join(e for _, _, e in cols), rows, "1 + k", seed=2)
    conn.close()


def gen_many(tables: int, rows: int) -> None:
    db = SRC["many"]
    conn = mysql()
    cur = conn.cursor()
    cur.execute(f"DROP DATABASE IF EXISTS `{db}`")
    cur.execute(f"CREATE DATABASE `{db}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
    cur.execute(f"USE `{db}`")
    for i in range(tables):
        t = f"t{i:03d}"
        cur.execute(f"""CREATE TABLE {t} (
            id INT NOT NULL AUTO_INCREMENT PRIMARY KEY,
            name VARCHAR(64) NOT NULL, amount DECIMAL(10,2) NOT NULL,
            kind ENUM('small','medium','large') NOT NULL,
            created DATETIME(6) NOT NULL, doc JSON NULL,
            changed TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),
            KEY k_created (created)) ENGINE=InnoDB""")
        cur.execute(f"""INSERT INTO {t} (name, amount, kind, created, doc, changed)
            SELECT CONCAT('이름 {i}-', seq), (CRC32(CONCAT('{t}', seq)) % 1000000) / 100, ELT(1 + seq % 3, 'small','medium','large'),
              TIMESTAMP'2022-01-01 00:00:00' + INTERVAL (CRC32(CONCAT('d{t}', seq)) % 30000000) SECOND + INTERVAL seq MICROSECOND,
              IF(seq % 4 = 0, NULL, JSON_OBJECT('t', {i}, 'n', seq)),
              TIMESTAMP'2023-06-01 00:00:00' + INTERVAL seq SECOND
            FROM seq_1_to_{rows} ORDER BY RAND({i})""")
        conn.commit()
    conn.close()


def source_stats(shape: str) -> dict[str, Any]:
    """Tables, exact rows and DATA_LENGTH (after ANALYZE TABLE) of a shape's source database."""
    db = SRC[shape]
    conn = mysql(db)
    cur = conn.cursor()
    cur.execute("SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s AND TABLE_TYPE = 'BASE TABLE' "
                "ORDER BY TABLE_NAME", (db,))
    tables = [r[0].decode() if isinstance(r[0], bytes) else r[0] for r in cur.fetchall()]
    counts = {}
    for t in tables:
        cur.execute(f"ANALYZE TABLE `{t}`")
        cur.fetchall()
        cur.execute(f"SELECT COUNT(*) FROM `{t}`")
        counts[t] = int(cur.fetchone()[0])
    cur.execute("SELECT SUM(DATA_LENGTH), SUM(INDEX_LENGTH) FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s", (db,))
    data, index = cur.fetchone()
    text = 0
    for t in tables:  # the bytes of the rows: every value as MySQL's text, NULL as nothing
        cur.execute("SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s", (db, t))
        cols = ", ".join(f"`{r[0].decode() if isinstance(r[0], bytes) else r[0]}`" for r in cur.fetchall())
        cur.execute(f"SELECT SUM(LENGTH(CONCAT_WS('', {cols}))) FROM `{t}`")
        text += int(cur.fetchone()[0] or 0)
    conn.close()
    return {"tables": tables, "counts": counts, "rows": sum(counts.values()), "data_bytes": int(data), "index_bytes": int(index),
            "text_bytes": text}


def warm(shape: str, tables: list[str]) -> None:
    """Scan each source table once (its clustered index into MariaDB's buffer pool, for whichever contender runs)."""
    conn = mysql(SRC[shape])
    cur = conn.cursor()
    for t in tables:
        cur.execute(f"SELECT COUNT(*) FROM `{t}` FORCE INDEX (PRIMARY)")
        cur.fetchall()
    conn.close()


def settle(shape: str, tables: list[str], max_wait_s: float = 60.0) -> float:
    """Let MariaDB finish writing what generation (or the write load) left behind, so no contender runs
    against its background work: the tables' dirty pages flushed now (``FLUSH TABLES … FOR EXPORT``, which
    also merges their change buffer and purge), then wait for the purge backlog (history list). (MariaDB
    leaves a few hundred other dirty pages unflushed while idle: not waited for.) Returns the seconds."""
    t0 = time.perf_counter()
    conn = mysql(SRC[shape])
    cur = conn.cursor()
    for i in range(0, len(tables), 50):
        cur.execute("FLUSH TABLES " + ", ".join(f"`{t}`" for t in tables[i:i + 50]) + " FOR EXPORT")
        cur.execute("UNLOCK TABLES")
    while time.perf_counter() - t0 < max_wait_s:
        cur.execute("SHOW GLOBAL STATUS LIKE 'Innodb_history_list_length'")
        row = cur.fetchone()
        if row is None or int(row[1]) < 1000:
            break
        time.sleep(1.0)
    conn.close()
    return time.perf_counter() - t0


# --- target ---------------------------------------------------------------------------------------


def reset_target(schema: str) -> None:
    with pg() as c:
        c.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        c.execute("CHECKPOINT")


def target_counts(schema: str, tables: list[str]) -> dict[str, int]:
    out = {}
    with pg() as c:
        for t in tables:
            reg = c.execute("SELECT to_regclass(%s)", (f'"{schema}"."{t}"',)).fetchone()[0]
            out[t] = int(c.execute(f'SELECT count(*) FROM "{schema}"."{t}"').fetchone()[0]) if reg else -1
    return out


def check_counts(label: str, src: dict[str, int], tgt: dict[str, int]) -> str:
    bad = [f"{t}: source {n:,}, target {tgt.get(t, -1):,}" for t, n in src.items() if tgt.get(t, -1) != n]
    verdict = "equal" if not bad else f"DIFFER ({len(bad)} tables: {'; '.join(bad[:5])})"
    say(f"  {label}: target row counts vs source: {verdict}")
    return verdict


# --- subprocesses ---------------------------------------------------------------------------------


def run_measured(cmd: list[str], log_path: Path, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run ``cmd`` with stdout+stderr to ``log_path``; its wall seconds, exit code and max RSS (os.wait4)."""
    t0 = time.perf_counter()
    with open(log_path, "wb") as out:
        p = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env or os.environ.copy(), cwd=ROOT)
        _, status, ru = os.wait4(p.pid, 0)
    secs = time.perf_counter() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    return {"rc": p.returncode, "wall_s": secs, "max_rss_mb": ru.ru_maxrss / 1024, "log": str(log_path)}


def rss_mb(field: str = "VmRSS") -> float:
    """This process's resident memory (``VmHWM``: its peak since the last :func:`reset_peak`), MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def reset_peak() -> None:
    """Reset ``VmHWM`` to the current RSS (Linux ``clear_refs`` 5), so each stage's peak is its own."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def instrument() -> tuple[dict[str, float], Any]:
    """Time (only) what the stages spend inside the pipeline's main steps: MySQL reads (on the prefetch
    thread, overlapping the writes), PostgreSQL COPY writes, keys / indexes, ANALYZE-free finalize parts,
    the verify stage's binlog catch-up and its row comparison. Returns the totals and an undo function."""
    from cutover.mysql_to_postgres import load, sync, target, verify

    inner: dict[str, float] = {}
    targets = {"read_chunk (MySQL, prefetch thread)": (load, "read_chunk"), "write_lines (COPY)": (load, "write_lines"),
               "build_keys": (target, "build_keys"), "reset_identity": (target, "reset_identity"),
               "on_update_triggers": (target, "on_update_triggers"), "verify: sync_units": (sync, "sync_units"),
               "verify: compare_table": (verify, "compare_table")}
    originals = {name: (mod, attr, getattr(mod, attr)) for name, (mod, attr) in targets.items()}

    def timed(name: str, fn: Any) -> Any:
        def wrapper(*a: Any, **kw: Any) -> Any:
            s0 = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                inner[name] = inner.get(name, 0.0) + time.perf_counter() - s0
        return wrapper

    for name, (mod, attr, fn) in originals.items():
        setattr(mod, attr, timed(name, fn))

    def restore() -> None:
        for mod, attr, fn in originals.values():
            setattr(mod, attr, fn)

    return inner, restore


def child_pipeline(shape: str, tables: list[str] | None, chunk_rows: int, out: Path) -> int:
    """(In the subprocess.) What run_build runs, each stage timed; results as JSON into ``out``."""
    set_env()
    from cutover.connections import pg_connect
    from cutover.lifecycle import stages
    from cutover.mysql_to_postgres import build as m2p_build  # noqa: F401 - imported before the baseline RSS
    from cutover.mysql_to_postgres import sync as m2p_sync  # noqa: F401
    from cutover.mysql_to_postgres.spec import SPEC

    params: dict[str, Any] = {"source_database": SRC[shape], "target_schema": OURS[shape], "gx_gate": False,
                              "chunk_rows": chunk_rows}
    if tables:
        params["tables"] = tables
    else:
        params["table_pattern"] = "*"
    base_rss = rss_mb()
    run_id = f"bench-m2p-{shape}-{int(time.time() * 1000)}"
    secs: dict[str, float] = {}
    inner, restore = instrument()
    t0 = time.perf_counter()
    try:
        batches = stages.plan(SPEC, params, run_id, max_batches=1024)
        secs["plan"] = time.perf_counter() - t0
        errors = []
        peaks: dict[str, float] = {"plan": rss_mb("VmHWM")}
        for batch in batches:
            for stage in stages.UNIT_STAGES:
                s0 = time.perf_counter()
                reset_peak()  # (this also resets what os.wait4 reports: the overall peak is the max of these)
                try:
                    stages.run_unit_stage(SPEC, stage, params, batch, run_id)
                except stages.UnitsFailed as exc:
                    errors.append(str(exc)[:500])
                secs[stage] = secs.get(stage, 0.0) + time.perf_counter() - s0
                peaks[stage] = max(peaks.get(stage, 0.0), rss_mb("VmHWM"))
        s0 = time.perf_counter()
        verdict = "green"
        try:
            stages.report(SPEC, params, run_id)
        except stages.RunFailed as exc:
            verdict = f"RED: {str(exc)[:300]}"
        secs["close+report"] = time.perf_counter() - s0
        total = time.perf_counter() - t0
        peaks["close+report"] = rss_mb("VmHWM")
    finally:
        restore()
    with pg_connect(connections.CONTROL) as c:
        n, rows, recorded, states = c.execute(
            """SELECT count(*), coalesce(sum(rows_written), 0),
                      jsonb_build_object('copy', sum((detail->'seconds'->>'copy')::float),
                                         'finalize', sum((detail->'seconds'->>'finalize')::float),
                                         'verify', sum((detail->'seconds'->>'verify')::float)),
                      string_agg(DISTINCT state, ',')
               FROM cutover.units WHERE run_id = %s""", (run_id,)).fetchone()
        caught = c.execute("""SELECT sum(coalesce((detail->'verify'->'caught_up'->'binlog'->>'changes')::bigint, 0))
                              FROM cutover.units WHERE run_id = %s""", (run_id,)).fetchone()[0]
    out.write_text(json.dumps({"run_id": run_id, "units": int(n), "rows": int(rows), "seconds": total, "stages": secs,
                               "recorded": recorded, "verdict": verdict, "states": states, "errors": errors,
                               "batches": len(batches), "base_rss_mb": base_rss, "verify_caught_up": caught,
                               "inner": inner, "stage_peak_rss_mb": peaks}, default=str))
    return 0


def child_sync(out: Path, compare: bool) -> int:
    """(In the subprocess.) The binlog refresh of the big table, then (``compare``) a full row comparison."""
    set_env()
    from cutover.consistency.diff import diff_pair
    from cutover.mysql_to_postgres.build import unit_key
    from cutover.mysql_to_postgres.config import MysqlToPostgresConfig
    from cutover.mysql_to_postgres.sync import built_units, sync_units
    from cutover.mysql_to_postgres.verify import pair_spec

    cfg = MysqlToPostgresConfig.from_params({"source_database": SRC["big"], "target_schema": OURS["big"],
                                             "tables": ["big"], "gx_gate": False, "chunk_rows": CHUNK_ROWS})
    from cutover.mysql_to_postgres import load

    base_rss = rss_mb()
    applying = {"s": 0.0}
    refresh = load.refresh_keys

    def timed_refresh(*a: Any, **kw: Any) -> Any:  # the apply side: rows read again from MySQL, upserted
        s0 = time.perf_counter()
        try:
            return refresh(*a, **kw)
        finally:
            applying["s"] += time.perf_counter() - s0

    load.refresh_keys = timed_refresh
    t0 = time.perf_counter()
    try:
        stats = sync_units(cfg)
    finally:
        load.refresh_keys = refresh
    secs = time.perf_counter() - t0
    res: dict[str, Any] = {"stats": stats, "seconds": secs, "base_rss_mb": base_rss, "apply_s": applying["s"]}
    if compare:
        t1 = time.perf_counter()
        tm = built_units(cfg)[str(unit_key(cfg, "big"))]
        d = diff_pair(pair_spec(cfg, tm))
        res["compare"] = {"equal": bool(d.equal), "summary": d.summary(), "seconds": time.perf_counter() - t1}
    out.write_text(json.dumps(res, default=str))
    return 0


def pipeline(shape: str, tables: list[str] | None, chunk_rows: int, work: Path, attempt: int = 1) -> dict[str, Any]:
    reset_target(OURS[shape])
    out = work / f"pipeline_{shape}_{attempt}.json"
    cmd = [sys.executable, __file__, "--child", "pipeline", "--shape", shape, "--chunk-rows", str(chunk_rows),
           "--out", str(out)] + (["--tables", ",".join(tables)] if tables else [])
    m = run_measured(cmd, work / f"pipeline_{shape}_{attempt}.log")
    if m["rc"] != 0 or not out.exists():
        raise SystemExit(f"pipeline child failed (rc {m['rc']}); log: {m['log']}\n" + Path(m["log"]).read_text()[-3000:])
    r = {**json.loads(out.read_text()), **m}
    # the child resets its high-water mark per stage (to attribute it), which os.wait4 then reports from
    r["max_rss_mb"] = max([m["max_rss_mb"], *(r.get("stage_peak_rss_mb") or {}).values()])
    return r


def pgloader(shape: str, tables: list[str] | None, work: Path, attempt: int = 1) -> dict[str, Any]:
    """One pgloader run into a dropped schema; ``seconds`` = the smaller of its process's wall time and its own
    ``Total import time`` (the anchor's best light)."""
    reset_target(PGL[shape])
    db = SRC[shape]
    only = ("INCLUDING ONLY TABLE NAMES MATCHING " + ", ".join(f"'{t}'" for t in tables) + "\n") if tables else ""
    load = work / f"pgloader_{shape}.load"
    load.write_text(f"""LOAD DATABASE
  FROM mysql://root@127.0.0.1:3306/{db}
  INTO {PG_URI}
WITH include drop, create tables, create indexes, reset sequences, foreign keys,
     {PGLOADER_WITH}
SET PostgreSQL PARAMETERS maintenance_work_mem to '512MB', work_mem to '64MB'
SET MySQL PARAMETERS net_read_timeout = '600', net_write_timeout = '600'
CAST {PGLOADER_CAST}
{only}ALTER SCHEMA '{db}' RENAME TO '{PGL[shape]}';
""")
    m = run_measured(["pgloader", "--no-ssl-cert-verification", "--dynamic-space-size", "4096", str(load)],
                     work / f"pgloader_{shape}_{attempt}.log")
    text = Path(m["log"]).read_text(errors="replace")
    if m["rc"] != 0:
        say(f"  pgloader exit code {m['rc']}; log tail:\n" + text[-2000:])
    total: float | None = None
    errors = 0
    for line in text.splitlines():
        parts = line.split()
        if line.strip().startswith("Total import time") and len(parts) >= 5:
            try:
                total = float(parts[-1].rstrip("s"))
            except ValueError:
                pass
            try:
                errors = int(parts[3])
            except ValueError:
                pass
    secs = min(m["wall_s"], total) if total else m["wall_s"]
    return {**m, "reported_total": total, "errors": errors, "seconds": secs}


def analyze_seconds(schema: str, tables: list[str]) -> float:
    """How long ``ANALYZE`` of the tables takes (pgloader does not analyze; the pipeline's finalize does)."""
    t0 = time.perf_counter()
    with pg() as c:
        for t in tables:
            c.execute(f'ANALYZE "{schema}"."{t}"')
    return time.perf_counter() - t0


# --- binlog refresh -------------------------------------------------------------------------------


def write_changes(n_changes: int, rows: int, seed: int = 11) -> dict[str, Any]:
    """Transactions of 10 row changes on ``big``: 5 updates, 3 inserts (new keys), 2 deletes."""
    rnd = random.Random(seed)
    conn = mysql(SRC["big"])
    cur = conn.cursor()
    cur.execute("SELECT MAX(id) FROM big")
    next_id = int(cur.fetchone()[0]) + 1
    p = scatter(rows)
    pool = [1_000_000_000 + ((s * p) % rows) * 7 for s in rnd.sample(range(rows), min(rows, n_changes))]
    rnd.shuffle(pool)
    changed = txns = 0
    t0 = time.perf_counter()
    while changed < n_changes and len(pool) >= 7:
        upd = [pool.pop() for _ in range(5)]
        dele = [pool.pop() for _ in range(2)]
        cur.execute("UPDATE big SET amount = amount + 1, status = 'paid', note = CONCAT('갱신 ', %s, '\\t✓'), "
                    "seen_at = NOW(3) WHERE id IN (%s, %s, %s, %s, %s)", (txns, *upd))
        changed += cur.rowcount
        cur.executemany("INSERT INTO big (id, account_id, amount, score, status, created_at, seen_at, birthday, title, payload, note) "
                        "VALUES (%s, %s, %s, %s, 'new', %s, NULL, %s, %s, %s, %s)",
                        [(next_id + i, rnd.randint(1, 50000), f"{rnd.randint(1, 10**7) / 100:.2f}", rnd.random() * 1000,
                          f"2024-05-01 12:00:00.{rnd.randint(0, 999999):06d}", "0000-00-00" if i == 2 else "1999-09-09",
                          f"신규 {next_id + i}", '{"new": true, "이름": "값"}', None) for i in range(3)])
        next_id += 3
        changed += cur.rowcount
        cur.execute("DELETE FROM big WHERE id IN (%s, %s)", dele)
        changed += cur.rowcount
        conn.commit()
        txns += 1
    secs = time.perf_counter() - t0
    conn.close()
    return {"changed": changed, "transactions": txns, "seconds": secs}


# --- main -----------------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, help="rows of the big table (default 1M; --quick 100k)")
    ap.add_argument("--wide-rows", type=int, help="rows of the 120-column table (default 100k; --quick 20k; 0: skip)")
    ap.add_argument("--many-tables", type=int, help="tables of the many-small-tables shape (default 200; --quick 50; 0: skip)")
    ap.add_argument("--many-rows", type=int, default=500, help="rows per small table")
    ap.add_argument("--changes", type=int, help="row changes for the binlog refresh (default 30k; --quick 5k; 0: skip)")
    ap.add_argument("--chunk-rows", type=int, default=CHUNK_ROWS, help="the pipeline's chunk_rows")
    ap.add_argument("--runs", type=int, default=2,
                    help="runs of each contender per shape, alternating; each one's fastest counts (default 2)")
    ap.add_argument("--quick", action="store_true", help="100k rows, 20k wide rows, 50 small tables, 5k changes")
    ap.add_argument("--skip-generate", action="store_true", help="reuse the source databases of an earlier run")
    ap.add_argument("--no-compare", action="store_true", help="skip the row-by-row comparison after the refresh")
    ap.add_argument("--keep", action="store_true", help="keep the PostgreSQL target schemas at the end")
    ap.add_argument("-v", "--verbose", action="store_true")
    # internal: the measured subprocesses
    ap.add_argument("--child", choices=("pipeline", "sync"), help=argparse.SUPPRESS)
    ap.add_argument("--shape", help=argparse.SUPPRESS)
    ap.add_argument("--tables", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.child == "pipeline":
        return child_pipeline(args.shape, args.tables.split(",") if args.tables else None, args.chunk_rows, Path(args.out))
    if args.child == "sync":
        return child_sync(Path(args.out), compare=not args.no_compare)
    for name, full, quick in (("rows", 1_000_000, 100_000), ("wide_rows", 100_000, 20_000), ("many_tables", 200, 50),
                              ("changes", 30_000, 5_000)):
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)

    began = time.perf_counter()
    if shutil.which("pgloader") is None:
        subprocess.run(["bash", str(ROOT / "scripts" / "ensure-bench.sh")], check=True)
    set_env()
    conn = mysql()
    cur = conn.cursor()
    cur.execute("SELECT @@log_bin, @@binlog_format, @@binlog_row_image, @@binlog_row_metadata, @@innodb_buffer_pool_size, VERSION()")
    log_bin, fmt, image, meta, pool, version = cur.fetchone()
    conn.close()
    pgv = pg().execute("SHOW server_version").fetchone()[0]
    pglv = subprocess.run(["pgloader", "--version"], capture_output=True, text=True).stdout.split("\n")[0]
    say(f"MariaDB {version} (binlog {'on' if log_bin else 'OFF'} {fmt}/{image}/{meta}, buffer pool {int(pool) >> 20} MB); "
        f"PostgreSQL {pgv} at {PG_URI}; {pglv}; {os.cpu_count()} CPUs")
    if args.changes and not (log_bin and fmt == "ROW"):
        say("  the binary log is not on in ROW format (run scripts/ensure-services.sh): the binlog refresh is skipped")
        args.changes = 0

    shapes = ["big"] + (["wide"] if args.wide_rows else []) + (["many"] if args.many_tables else [])
    t = time.perf_counter()
    if not args.skip_generate:
        gen_big(args.rows)
        if args.wide_rows:
            gen_wide(args.wide_rows)
        if args.many_tables:
            gen_many(args.many_tables, args.many_rows)
    stats = {s: source_stats(s) for s in shapes}
    from cutover.mysql_to_postgres.readonly import ensure_read_only_user

    # grants on the bench databases added to the existing cutover_ro@% (demo, tests): never a narrower account,
    # which would shadow that one for 127.0.0.1
    ensure_read_only_user(connections.MYSQL_SOURCE, RO_USER, [SRC[s] for s in shapes])
    for s in shapes:
        st = stats[s]
        say(f"source {SRC[s]}: {len(st['tables'])} table(s), {st['rows']:,} rows, {st['text_bytes'] / 1e6:.1f} MB as text, "
            f"DATA_LENGTH {st['data_bytes'] / 1e6:.1f} MB (+ {st['index_bytes'] / 1e6:.1f} MB secondary indexes)")
    say(f"generated in {time.perf_counter() - t:.1f} s" if not args.skip_generate else "reused the generated sources")
    say(f"MariaDB settled (the tables' dirty pages flushed, purge done) in "
        f"{sum(settle(s, stats[s]['tables']) for s in shapes):.1f} s")

    work = Path(tempfile.mkdtemp(prefix="bench_m2p_"))
    res: dict[str, dict[str, Any]] = {}
    for s in shapes:
        st = stats[s]
        tables = ["big"] if s == "big" else (["wide"] if s == "wide" else None)
        say(f"\n-- {s}: {len(st['tables'])} table(s), {st['rows']:,} rows")
        gruns: list[dict[str, Any]] = []
        pruns: list[dict[str, Any]] = []
        for attempt in range(1, args.runs + 1):  # alternating, so drift on this machine hits both alike
            settle(s, st["tables"])
            warm(s, st["tables"])
            g = pgloader(s, tables, work, attempt)
            g["counts"] = check_counts(f"pgloader run {attempt}", st["counts"], target_counts(PGL[s], st["tables"]))
            say(f"  pgloader run {attempt}: {g['wall_s']:.1f} s wall, its own total {g['reported_total']} s, {g['errors']} errors, "
                f"peak RSS {g['max_rss_mb']:.0f} MB")
            if attempt == args.runs:
                g["analyze_s"] = analyze_seconds(PGL[s], st["tables"])
            gruns.append(g)
            settle(s, st["tables"])
            warm(s, st["tables"])
            p = pipeline(s, tables, args.chunk_rows, work, attempt)
            p["counts"] = check_counts(f"pipeline run {attempt}", st["counts"], target_counts(OURS[s], st["tables"]))
            p["copy_finalize_s"] = p["stages"]["copy"] + p["stages"]["finalize"]
            say(f"  pipeline run {attempt}: {p['seconds']:.1f} s in process ({p['wall_s']:.1f} s wall), "
                + ", ".join(f"{k} {v:.1f} s" for k, v in p["stages"].items())
                + f"; {p['units']} units, {p['verdict']}" + (f"; errors: {p['errors'][:2]}" if p["errors"] else ""))
            pruns.append(p)
        g = min(gruns, key=lambda r: (r["counts"] != "equal", r["seconds"]))
        g["analyze_s"] = gruns[-1]["analyze_s"]
        g["max_rss_mb"] = max(r["max_rss_mb"] for r in gruns)
        p = min(pruns, key=lambda r: (r["counts"] != "equal", r["copy_finalize_s"]))
        p["max_rss_mb"] = max(r["max_rss_mb"] for r in pruns)
        p["copy_peaks"] = [(r.get("stage_peak_rss_mb") or {}).get("copy", 0.0) for r in pruns]
        say(f"  pgloader best: {g['seconds']:.1f} s (ANALYZE of its tables afterwards {g['analyze_s']:.1f} s); "
            f"pipeline best copy + finalize: {p['copy_finalize_s']:.1f} s (its run below)")
        say(f"    peak RSS {p['max_rss_mb']:.0f} MB (after imports {p['base_rss_mb']:.0f} MB; per stage: "
            + ", ".join(f"{k} {v:.0f}" for k, v in (p.get("stage_peak_rss_mb") or {}).items()) + " MB)")
        inner = p.get("inner") or {}
        rest = p["stages"]["finalize"] - sum(inner.get(k, 0.0) for k in ("build_keys", "reset_identity", "on_update_triggers"))
        say("    inside: " + ", ".join(f"{k} {v:.1f} s" for k, v in inner.items())
            + f"; finalize's ANALYZE + the rest {rest:.1f} s")
        res[s] = {"pgloader": g, "pipeline": p}

    refresh: dict[str, Any] | None = None
    if args.changes:
        say("\n-- binlog refresh (big table)")
        w = write_changes(args.changes, args.rows)
        say(f"  wrote {w['changed']:,} row changes in {w['transactions']:,} transactions ({w['seconds']:.1f} s); "
            f"MariaDB settled in {settle('big', ['big']):.1f} s")
        out = work / "sync.json"
        m = run_measured([sys.executable, __file__, "--child", "sync", "--out", str(out)]
                         + (["--no-compare"] if args.no_compare else []), work / "sync.log")
        if m["rc"] != 0 or not out.exists():
            raise SystemExit(f"sync child failed (rc {m['rc']}): {Path(m['log']).read_text()[-3000:]}")
        refresh = {**json.loads(out.read_text()), **m, "load": w}
        b = refresh["stats"].get("binlog") or {}
        conn = mysql(SRC["big"])
        cur = conn.cursor()
        cur.execute("SELECT COUNT(*) FROM big")
        now = int(cur.fetchone()[0])
        conn.close()
        refresh["counts"] = check_counts("after the refresh", {"big": now}, target_counts(OURS["big"], ["big"]))
        cmp_ = refresh.get("compare") or {}
        say(f"  sync_units: {b.get('changes', 0):,} changes in {b.get('transactions', 0):,} transactions, "
            f"{b.get('upserted', 0):,} upserted, {b.get('deleted', 0):,} deleted in {refresh['seconds']:.1f} s "
            f"= {b.get('changes_per_s', 0):,.0f} changes/s (applying: {refresh['apply_s']:.1f} s, the rest is reading and "
            f"decoding the binary log); peak RSS {m['max_rss_mb']:.0f} MB"
            + (f"; then row by row: {'equal' if cmp_.get('equal') else 'DIFFER ' + str(cmp_.get('summary'))} "
               f"({cmp_.get('seconds', 0):.1f} s)" if cmp_ else ""))

    # --- summary
    say("\n" + "=" * 110)
    say(f"mysql_to_postgres vs pgloader: same MariaDB → same PostgreSQL {pgv.split()[0]} (127.0.0.1:5432/test), one run, "
        f"{os.cpu_count()} CPUs; pipeline chunk_rows {args.chunk_rows:,}; "
        f"each contender best of {args.runs} runs (alternating; peak RSS: the largest of them)")
    say("MB = the bytes of the rows as text (every value as MySQL renders it, NULL as 0 bytes); "
        "RSS = the contender process's peak (database servers not included)\n")
    say("| shape | contender | rows | MB | seconds | rows/s | MB/s | peak RSS MB | target rows = source |")
    say("|---|---|---:|---:|---:|---:|---:|---:|---|")
    ratios = []
    for s in shapes:
        st, g, p = stats[s], res[s]["pgloader"], res[s]["pipeline"]
        mb = st["text_bytes"] / 1e6
        n = st["rows"]
        cf = p["copy_finalize_s"]
        build = p["seconds"] - p["stages"]["verify"]
        label = {"big": "big (mixed, random order)", "wide": f"wide ({WIDE_COLS} cols)",
                 "many": f"{len(st['tables'])} small tables"}[s]
        lines = [
            ("pgloader (create, load, indexes)", g["seconds"], g["max_rss_mb"], g["counts"]),
            ("pgloader + ANALYZE (informative)", g["seconds"] + g["analyze_s"], g["max_rss_mb"], g["counts"]),
            ("pipeline copy + finalize", cf, p["max_rss_mb"], p["counts"]),
            ("pipeline copy stage", p["stages"]["copy"], p["max_rss_mb"], p["counts"]),
            ("pipeline build without verify", build, p["max_rss_mb"], p["counts"]),
            ("pipeline whole run (verify incl.)", p["seconds"], p["max_rss_mb"], f"{p['counts']}, run {p['verdict'][:40]}"),
        ]
        for name, secs, rss, counts in lines:
            say(f"| {label} | {name} | {n:,} | {mb:.1f} | {secs:.1f} | {n / secs:,.0f} | {mb / secs:.1f} | {rss:.0f} | {counts} |")
        ratios.append((label, g["seconds"] / cf, (g["seconds"] + g["analyze_s"]) / cf, g["seconds"] / build,
                       g["seconds"] / p["seconds"], p["max_rss_mb"] / g["max_rss_mb"]))
    say("")
    say("| shape | copy+finalize vs pgloader (target >= 1.2x) | copy+finalize vs pgloader+ANALYZE | build w/o verify vs pgloader "
        "| whole run vs pgloader | peak RSS pipeline / pgloader |")
    say("|---|---:|---:|---:|---:|---:|")
    for label, r1, r2, r3, r4, mem in ratios:
        say(f"| {label} | {r1:.2f}x {'ok' if r1 >= 1.2 else 'MISSED'} | {r2:.2f}x | {r3:.2f}x | {r4:.2f}x | {mem:.2f} |")
    if refresh:
        b = refresh["stats"].get("binlog") or {}
        cmp_ = refresh.get("compare") or {}
        say("")
        say("| binlog refresh | changes | transactions | seconds | changes/s | of which applying | peak RSS MB | counts | row by row |")
        say("|---|---:|---:|---:|---:|---:|---:|---|---|")
        say(f"| sync_units, big table | {b.get('changes', 0):,} | {b.get('transactions', 0):,} | {refresh['seconds']:.1f} | "
            f"{b.get('changes_per_s', 0):,.0f} | {refresh['apply_s']:.1f} s | {refresh['max_rss_mb']:.0f} | {refresh['counts']} | "
            f"{('equal' if cmp_.get('equal') else 'DIFFER') if cmp_ else 'not compared'} |")
    bp = res["big"]["pipeline"]
    est = args.chunk_rows * stats["big"]["text_bytes"] / max(stats["big"]["rows"], 1) / 1e6
    say("\nmemory: the pipeline's copy stage of the big table peaked at "
        + " / ".join(f"{x:.0f}" for x in bp["copy_peaks"])
        + f" MB RSS (runs 1..{args.runs}; {bp['base_rss_mb']:.0f} MB after imports) for {stats['big']['rows']:,} rows; "
        f"one chunk of {args.chunk_rows:,} rows is ≈ {est:.1f} MB of text, at most two are in flight")
    say(f"pgloader: WITH {PGLOADER_WITH}; maintenance_work_mem 512MB; default casts + CAST {PGLOADER_CAST}")
    say(f"logs and load files: {work}")
    if not args.keep:
        with pg() as c:
            for s in shapes:
                for schema in (OURS[s], PGL[s]):
                    c.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    say(f"total benchmark time {time.perf_counter() - began:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
