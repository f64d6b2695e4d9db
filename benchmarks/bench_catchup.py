"""Benchmark the tenant_split binary-log catch-up: where the time goes (decode / conversion / apply) and
the forward lag under a steady write load.

    .venv/bin/python benchmarks/bench_catchup.py                      # 200k changed rows (a few minutes)
    .venv/bin/python benchmarks/bench_catchup.py --rows 50000         # quick
    .venv/bin/python benchmarks/bench_catchup.py --baseline OLD.py    # also time another sync module
                                                                      # (e.g. `git show REV:include/cutover/tenant_split/sync.py`)

Source ``h2b_src`` with ``--tenants`` tenants (ids ``t00``…), two tables: ``narrow`` (6 columns, BIGINT
key) and ``wide`` (30 columns: DECIMAL, DATETIME(6), TIMESTAMP(6), DATE, TIME, JSON, TEXT, utf8mb4
VARCHAR, BLOB, VARBINARY, ENUM, SET, integers, DOUBLE, FLOAT, YEAR), split by the pipeline's build
(a few seed rows per tenant). Then ``--rows`` changed rows are generated in the server (``seq_1_to_N``),
tenants in random order, 500 rows per transaction, in four log segments, each timed on its own:

* narrow inserts, narrow updates (+ deletes of 1 row in 10), wide inserts, wide updates (+ deletes).

Per segment: the decode rate of ``pymysqlreplication`` alone (rows/s; ``BinLogStreamReader`` over the
segment, every row's values built, the ceiling of one reader process), then :func:`cutover.binlog.read_changes`
(decode + this project's conversion of values + batches), then the catch-up over all four segments
(:func:`cutover.tenant_split.sync.catch_up`, read + route + net + apply + positions; rows/s = row
changes read from the log / seconds). ``--profile`` prints the catch-up's cProfile top 25.

Finally the lag: a writer thread writes ``--load`` rows/s (transactions of 10 rows, tenants at random)
for ``--lag-seconds`` while the catch-up runs in a loop (each call reads to the log's end, as the sync
DAG's task does); a probe writes a marker row every 100 ms and waits for it in its tenant's database:
lag = seen − committed (p50 / p95 / max printed). Nothing is asserted: figures only.
"""

from __future__ import annotations

import argparse
import cProfile
import importlib.util
import io
import pstats
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from cutover import connections
from cutover.identifiers import quote_mysql

SRC, PREFIX, STATE = "h2b_src", "h2bt_", "h2b_state"
CHUNK = 500
MAPPING = """tenant_column: tenant
tables:
  tenants: {}
  narrow: {}
  wide: {}
unlisted: error
"""
DDL = [
    "CREATE TABLE tenants (tenant VARCHAR(20) NOT NULL PRIMARY KEY, name VARCHAR(100) NOT NULL)",
    """CREATE TABLE narrow (id BIGINT NOT NULL PRIMARY KEY, tenant VARCHAR(20) NOT NULL, amount DECIMAL(12,2) NOT NULL,
        status VARCHAR(10) NOT NULL, updated DATETIME(6) NOT NULL, note VARCHAR(100) NULL, KEY k_tenant (tenant))""",
    """CREATE TABLE wide (id BIGINT NOT NULL PRIMARY KEY, tenant VARCHAR(20) NOT NULL,
        d1 DECIMAL(18,4) NOT NULL, d2 DECIMAL(10,2) NULL, d3 DECIMAL(30,10) NOT NULL,
        dt1 DATETIME(6) NOT NULL, dt2 DATETIME(6) NULL, dd DATE NOT NULL, ts TIMESTAMP(6) NULL, tm TIME NOT NULL,
        j JSON NULL, lt TEXT NOT NULL, v1 VARCHAR(100) NOT NULL, v2 VARCHAR(255) CHARACTER SET latin1 NOT NULL,
        v3 VARCHAR(40) NULL, ch CHAR(10) NOT NULL, b1 BLOB NOT NULL, b2 VARBINARY(16) NOT NULL,
        e ENUM('red','green','blue') NOT NULL, st SET('a','b','c','d') NOT NULL,
        i1 INT NOT NULL, i2 BIGINT NOT NULL, i3 SMALLINT NOT NULL, i4 TINYINT(1) NOT NULL, u1 INT UNSIGNED NOT NULL,
        f1 DOUBLE NOT NULL, f2 FLOAT NOT NULL, y YEAR NOT NULL, txt TEXT NULL, flag BOOLEAN NULL,
        KEY k_tenant (tenant))""",
]


def say(msg: str) -> None:
    print(msg, flush=True)


def conn() -> Any:
    import MySQLdb

    c = MySQLdb.connect(**connections.resolve(connections.MYSQL_SOURCE).mysql_kwargs(""))
    c.cursor().execute("SET SESSION time_zone = '+00:00'")
    return c


def position(cur: Any) -> Any:
    from cutover.binlog import current_position

    return current_position(cur)


def tenant_expr(n: int, salt: str) -> str:
    return f"CONCAT('t', LPAD(CRC32(CONCAT('{salt}', seq)) % {n}, 2, '0'))"


def setup(tenants: int) -> dict[str, Any]:
    """Seed the source (a few rows per tenant), clean the targets and control rows, build; the Params."""
    from cutover.lifecycle import stages
    from cutover.tenant_split.config import PIPELINE
    from cutover.tenant_split.spec import SPEC

    c = conn()
    cur = c.cursor()
    cur.execute(f"DROP DATABASE IF EXISTS {SRC}")
    cur.execute("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE %s OR SCHEMA_NAME = %s",
                (PREFIX.replace("_", "\\_") + "%", STATE))
    for (name,) in cur.fetchall():
        cur.execute(f"DROP DATABASE {quote_mysql(name.decode() if isinstance(name, bytes) else name)}")
    cur.execute(f"CREATE DATABASE {SRC} CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
    cur.execute(f"USE {SRC}")
    for stmt in DDL:
        cur.execute(stmt)
    for t in range(tenants):
        cur.execute("INSERT INTO tenants VALUES (%s, %s)", (f"t{t:02d}", f"tenant {t}"))
    c.commit()
    with connections.pg_connect(connections.CONTROL) as pg:
        for table in ("units", "switches", "switch_history", "object_backups", "dead_letters"):
            pg.execute(f"DELETE FROM cutover.{table} WHERE pipeline = %s AND starts_with(unit_key, %s)", (PIPELINE, SRC + ":"))
        for table in ("name_map", "routes", "route_history", "streams"):
            pg.execute(f"DELETE FROM cutover.{table} WHERE pipeline = %s AND scope = %s", (PIPELINE, SRC))
        pg.commit()
    mapping = Path(tempfile.mkdtemp(prefix="h2b_")) / "mapping.yaml"
    mapping.write_text(MAPPING, encoding="utf-8")
    params = {"source_database": SRC, "mapping": str(mapping), "tenant_directory": "tenants", "database_prefix": PREFIX,
              "state_database": STATE, "parallelism": 2, "gx_gate": False}
    rep = stages.run_build(SPEC, params, "h2b_build", raise_on_red=False)
    if not rep.green:
        raise SystemExit(f"build not green: {rep.summary()}")
    c.close()
    return params


def narrow_inserts(a: int, b: int, n: int) -> str:
    return f"""INSERT INTO narrow SELECT seq, {tenant_expr(n, 'n')}, (CRC32(CONCAT('a', seq)) % 1000000) / 100,
        ELT(1 + seq % 3, 'new', 'paid', 'void'), TIMESTAMP'2024-01-01 00:00:00' + INTERVAL seq SECOND,
        IF(seq % 4 = 0, NULL, CONCAT('note ', seq, ' é')) FROM seq_{a}_to_{b}"""


def wide_inserts(a: int, b: int, n: int) -> str:
    return f"""INSERT INTO wide SELECT seq, {tenant_expr(n, 'w')}, seq / 7, IF(seq % 5 = 0, NULL, seq % 1000 / 3),
        seq * 1.0000000001, TIMESTAMP'2024-01-01 00:00:00.123456' + INTERVAL seq SECOND,
        IF(seq % 3 = 0, NULL, TIMESTAMP'2023-05-05 05:05:05'), DATE'2020-01-01' + INTERVAL seq % 3000 DAY,
        FROM_UNIXTIME(1600000000 + seq), SEC_TO_TIME(seq % 86400), JSON_OBJECT('k', seq, 's', 'é'),
        REPEAT('long text ', 1 + seq % 20), CONCAT('ü😀 ', seq), CONCAT('latin ', seq), IF(seq % 2, NULL, 'v3'),
        'char', UNHEX(MD5(seq)), UNHEX(LEFT(MD5(seq), 16)), ELT(1 + seq % 3, 'red', 'green', 'blue'),
        ELT(1 + seq % 4, 'a', 'a,b', 'c', ''), seq, seq * 1000, seq % 30000, seq % 2, seq,
        seq / 3, seq / 7, 1990 + seq % 50, IF(seq % 7 = 0, NULL, 'text'), IF(seq % 9 = 0, NULL, seq % 2)
        FROM seq_{a}_to_{b}"""


def generate(rows: int, tenants: int) -> list[tuple[str, Any, Any, int]]:
    """The four segments: (label, start, end, row changes logged)."""
    c = conn()
    cur = c.cursor()
    cur.execute(f"USE {SRC}")
    base = 1_000_000  # above the seed rows
    n_narrow, n_wide = int(rows * 0.4), int(rows * 0.1)
    out = []
    for label, table, maker, count in (("narrow inserts", "narrow", narrow_inserts, n_narrow),
                                       ("narrow updates", "narrow", None, n_narrow),
                                       ("wide inserts", "wide", wide_inserts, n_wide),
                                       ("wide updates", "wide", None, n_wide)):
        p0 = position(cur)
        logged = 0
        order = list(range(0, count, CHUNK))
        random.Random(7).shuffle(order)
        for a in order:
            b = min(count, a + CHUNK)
            if maker is not None:
                cur.execute(maker(base + a + 1, base + b, tenants))
            else:  # 9 in 10 rows updated, 1 in 10 deleted
                sets = "amount = amount + 1, note = CONCAT(note, '+')" if table == "narrow" else \
                    "d1 = d1 + 1, txt = CONCAT(txt, '+')"
                cur.execute(f"UPDATE {table} SET {sets} WHERE id BETWEEN %s AND %s AND id %% 10 <> 0",
                            (base + a + 1, base + b))
                cur.execute(f"DELETE FROM {table} WHERE id BETWEEN %s AND %s AND id %% 10 = 0", (base + a + 1, base + b))
            logged += b - a
            c.commit()
        out.append((label, p0, position(cur), logged))
    c.close()
    return out


def decode_only(start: Any, stop: Any) -> tuple[int, float]:
    """pymysqlreplication alone over [start, stop): rows decoded and seconds (every row's values built)."""
    from pymysqlreplication import BinLogStreamReader
    from pymysqlreplication import row_event as rev

    from cutover.binlog import _patch_library

    _patch_library()
    info = connections.resolve(connections.MYSQL_SOURCE)
    t0 = time.perf_counter()
    stream = BinLogStreamReader(
        connection_settings={"host": info.host or "127.0.0.1", "port": int(info.port or 3306), "user": info.login or "root",
                             "password": info.password, "charset": "utf8mb4"},
        server_id=4_100_000 + random.randrange(10_000), resume_stream=True, blocking=False, log_file=start.file,
        log_pos=start.pos, only_schemas=[SRC], only_events=[rev.WriteRowsEvent, rev.UpdateRowsEvent, rev.DeleteRowsEvent],
        is_mariadb=False)
    n = 0
    try:
        for event in stream:
            end = int(getattr(event.packet, "log_pos", 0) or 0)
            if stream.log_file == stop.file and end > stop.pos:
                break
            n += len(event.rows)
    finally:
        stream.close()
    return n, time.perf_counter() - t0


def read_only(start: Any, stop: Any) -> tuple[int, float]:
    """cutover.binlog.read_changes over [start, stop]: row changes and seconds."""
    from cutover.binlog import read_changes

    t0 = time.perf_counter()
    n = sum(len(b) for b in read_changes(connections.MYSQL_SOURCE, start, schemas={SRC}, stop_at=stop))
    return n, time.perf_counter() - t0


def load_sync(path: str | None) -> Any:
    if path is None:
        from cutover.tenant_split import sync

        return sync
    spec = importlib.util.spec_from_file_location("bench_sync_baseline", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def reset_positions(params: dict[str, Any], pos: Any) -> None:
    """Move every tenant table's catch-up position back to ``pos`` (and empty the targets' bench rows)."""
    c = conn()
    cur = c.cursor()
    cur.execute(f"SELECT target_database FROM {quote_mysql(STATE)}.binlog_positions GROUP BY target_database")
    for (db,) in cur.fetchall():
        name = db.decode() if isinstance(db, bytes) else db
        for t in ("narrow", "wide"):
            cur.execute(f"DELETE FROM {quote_mysql(name)}.{t} WHERE id >= 1000000")
    cur.execute(f"UPDATE {quote_mysql(STATE)}.binlog_positions SET file = %s, pos = %s", (pos.file, pos.pos))
    c.commit()
    c.close()


def databases() -> dict[str, str]:
    """tenant → its database (the build's name map)."""
    from cutover import control
    from cutover.tenant_split.config import PIPELINE

    with connections.pg_connect(connections.CONTROL) as pg:
        return control.load_name_map(pg, PIPELINE, SRC)


def equal(tenants: int) -> bool:
    """Each tenant database holds exactly its rows of the source (row count and a CRC32 sum)."""
    dbs = databases()
    c = conn()
    cur = c.cursor()
    ok = True
    for t in range(tenants):
        tenant = f"t{t:02d}"
        for table in ("narrow", "wide"):
            cur.execute(f"SELECT COUNT(*), SUM(CRC32(CONCAT_WS('|', id, {'amount, note' if table == 'narrow' else 'd1, txt'}))) "
                        f"FROM {SRC}.{table} WHERE tenant = %s", (tenant,))
            want = cur.fetchone()
            cur.execute(f"SELECT COUNT(*), SUM(CRC32(CONCAT_WS('|', id, {'amount, note' if table == 'narrow' else 'd1, txt'}))) "
                        f"FROM {quote_mysql(dbs[tenant])}.{table}")
            got = cur.fetchone()
            if want != got:
                say(f"  MISMATCH {tenant}.{table}: source {want} target {got}")
                ok = False
    c.close()
    return ok


def timed_catch_up(mod: Any, params: dict[str, Any], profile: bool) -> tuple[dict[str, Any], float, str]:
    from cutover.tenant_split.config import TenantSplitConfig

    cfg = TenantSplitConfig.from_params(params)
    prof = cProfile.Profile() if profile else None
    t0 = time.perf_counter()
    if prof:
        prof.enable()
    out = mod.catch_up(cfg)
    if prof:
        prof.disable()
    secs = time.perf_counter() - t0
    text = ""
    if prof:
        s = io.StringIO()
        pstats.Stats(prof, stream=s).sort_stats("cumulative").print_stats(25)
        text = s.getvalue()
    return out, secs, text


def lag_run(params: dict[str, Any], tenants: int, load: float, seconds: float) -> dict[str, Any]:
    """A writer at ``load`` rows/s and a probe every 100 ms while the catch-up loops; the probe's lags."""
    from cutover.tenant_split import sync
    from cutover.tenant_split.config import TenantSplitConfig

    cfg = TenantSplitConfig.from_params(params)
    stop = threading.Event()
    written = [0]
    lags: list[float] = []

    def writer() -> None:
        c = conn()
        cur = c.cursor()
        cur.execute(f"USE {SRC}")
        rnd = random.Random(1)
        next_id = 50_000_000
        t0 = time.monotonic()
        while not stop.is_set():
            due = int((time.monotonic() - t0) * load)
            while written[0] + 10 <= due:
                rows = [(next_id + i, f"t{rnd.randrange(tenants):02d}") for i in range(10)]
                next_id += 10
                cur.executemany("INSERT INTO narrow VALUES (%s, %s, 1.00, 'new', NOW(6), 'load')", rows)
                c.commit()
                written[0] += 10
            time.sleep(0.005)
        c.close()

    dbs = databases()

    def probe() -> None:
        c = conn()
        cur = c.cursor()
        k = 90_000_000
        while not stop.is_set():
            k += 1
            tenant = f"t{k % tenants:02d}"
            cur.execute(f"INSERT INTO {SRC}.narrow VALUES (%s, %s, 0, 'probe', NOW(6), NULL)", (k, tenant))
            c.commit()
            t0 = time.monotonic()
            while not stop.is_set():
                cur.execute(f"SELECT 1 FROM {quote_mysql(dbs[tenant])}.narrow WHERE id = %s", (k,))
                found = cur.fetchone()
                c.commit()
                if found:
                    lags.append(time.monotonic() - t0)
                    break
                time.sleep(0.01)
            time.sleep(0.1)
        c.close()

    threads = [threading.Thread(target=writer, daemon=True), threading.Thread(target=probe, daemon=True)]
    for th in threads:
        th.start()
    t0 = time.monotonic()
    calls = 0
    applied = 0
    while time.monotonic() - t0 < seconds:
        out = sync.catch_up(cfg)
        applied += out["applied"]
        calls += 1
    stop.set()
    for th in threads:
        th.join(timeout=10)
    secs = time.monotonic() - t0
    sync.catch_up(cfg)
    lags.sort()
    return {"written_rows_per_s": written[0] / secs, "calls": calls, "applied": applied, "probes": len(lags),
            "p50": statistics.median(lags) if lags else None,
            "p95": lags[int(0.95 * (len(lags) - 1))] if lags else None, "max": lags[-1] if lags else None}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--tenants", type=int, default=8)
    ap.add_argument("--baseline", help="a sync.py to time beside the current one (same changes)")
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--load", type=float, default=2000.0, help="rows/s written during the lag run")
    ap.add_argument("--lag-seconds", type=float, default=30.0)
    args = ap.parse_args()
    import logging

    logging.basicConfig(level=logging.WARNING)
    say(f"bench_catchup: {args.rows} changed rows over {args.tenants} tenants")
    params = setup(args.tenants)
    t0 = time.perf_counter()
    segments = generate(args.rows, args.tenants)
    total = sum(s[3] for s in segments)
    say(f"generated {total} row changes in {time.perf_counter() - t0:.1f} s")
    say(f"{'segment':<16} {'rows':>8} {'decode only':>14} {'read_changes':>14} {'conversion share':>17}")
    for label, a, b, n in segments:
        d_n, d_s = decode_only(a, b)
        r_n, r_s = read_only(a, b)
        say(f"{label:<16} {n:>8} {d_n / d_s:>10,.0f} r/s {r_n / r_s:>10,.0f} r/s {max(0.0, 1 - d_s / r_s):>16.0%}")
    start, stop = segments[0][1], segments[-1][2]
    d_n, d_s = decode_only(start, stop)
    r_n, r_s = read_only(start, stop)
    say(f"{'all':<16} {total:>8} {d_n / d_s:>10,.0f} r/s {r_n / r_s:>10,.0f} r/s")
    results = []
    for label, path in (("baseline", args.baseline), ("current", None)):
        if label == "baseline" and path is None:
            continue
        reset_positions(params, start)
        mod = load_sync(path)
        out, secs, prof = timed_catch_up(mod, params, args.profile and label == "current")
        ok = equal(args.tenants)
        results.append((label, secs))
        say(f"catch-up [{label}]: {total} row changes in {secs:.1f} s = {total / secs:,.0f} rows/s "
            f"(applied {out['applied']}, equal to the source: {ok}); decode-only ceiling {d_n / d_s:,.0f} rows/s")
        if prof:
            say(prof)
    if len(results) == 2:
        say(f"speed-up current / baseline: {results[0][1] / results[1][1]:.1f}x")
    lag = lag_run(params, args.tenants, args.load, args.lag_seconds)
    say(f"lag at {lag['written_rows_per_s']:,.0f} rows/s written for {args.lag_seconds:.0f} s: "
        f"{lag['probes']} probes, p50 {lag['p50']:.3f} s, p95 {lag['p95']:.3f} s, max {lag['max']:.3f} s "
        f"({lag['calls']} catch-up calls, {lag['applied']} rows applied)" if lag["probes"] else f"lag: no probe came back {lag}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
