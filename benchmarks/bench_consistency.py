"""Benchmark: the Cutover diff engine vs reladiff vs the naive diff, on the same pairs, in one run.

    .venv/bin/python benchmarks/bench_consistency.py                 # 500k rows (a few minutes on 2 cores)
    .venv/bin/python benchmarks/bench_consistency.py --rows 5000000  # the issue's figure

It loads the copies itself (generated inside each database from the same formulas, so the copies are
equal value for value): MySQL ``cutover_cc_bench.bench`` (DATETIME(6), tinyint(1), decimal(12,2),
varchar), PostgreSQL 16 (embedded, ``postgres_target``) ``cc_bench.bench_same`` / ``bench_diff``
(timestamptz, boolean, numeric(12,2), text) and, for PostgreSQL vs PostgreSQL, the second server
(``--pg2``, default the local PostgreSQL 15) ``cc_bench.bench``. ``bench_diff`` gets 10 injected
differences: 3 missing, 3 extra, 4 changed (a NULL, a decimal's last digit, a timestamp's
microseconds, a trailing space).

For each pair (MySQL vs PostgreSQL, PostgreSQL vs PostgreSQL) × (10 diffs, 0 diffs) it prints time,
rows/s, bytes of result rows fetched, and whether exactly the injected differences were found, for
this engine, reladiff (``reladiff.diff_tables``, hashdiff, threaded) and the naive diff (both sides
fetched ordered by key through server-side cursors and compared in Python), then the ratios.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

from cutover import connections
from cutover.consistency.diff import DiffOptions, diff_pair, row_bytes
from cutover.consistency.normalize import python_canonical
from cutover.consistency.spec import Endpoint, Kind, PairSpec

MYSQL_DB = "cutover_cc_bench"
PG_SCHEMA = "cc_bench"
PG2 = "cc_bench_pg2"  # connection id of the second PostgreSQL
COLUMNS = ["account_id", "amount", "status", "note", "created_at", "flag"]
KINDS = {"id": "int", "account_id": "int", "amount": "decimal:2", "status": "text", "note": "text",
         "created_at": "timestamp", "flag": "bool"}
MISSING = (11, 2_000_003, 4_999_001)  # deleted from the target (scaled to --rows)
CHANGED = (101, 1_234_567, 3_333_333, 4_444_444)
EXTRA_BASE = 10_000_000

# The same row, per engine, from the id alone.
PG_GEN = """
INSERT INTO {t} SELECT i, i %% 1000, ((i * 37) %% 100000) / 100.0,
  (ARRAY['new','paid','shipped','void'])[1 + i %% 4],
  CASE WHEN i %% 10 = 0 THEN NULL ELSE 'note ' || i END,
  timestamptz '2024-01-01 00:00:00+00' + i * interval '1 second' + (i %% 1000000) * interval '1 microsecond',
  i %% 3 = 0
FROM generate_series(%s::bigint, %s::bigint) AS i"""
PG_DDL = """CREATE TABLE {t} (id bigint PRIMARY KEY, account_id integer, amount numeric(12,2), status text,
  note text, created_at timestamptz, flag boolean)"""
MY_GEN = """
INSERT INTO {t} SELECT seq, seq %% 1000, ((seq * 37) %% 100000) / 100,
  ELT(1 + seq %% 4, 'new','paid','shipped','void'),
  IF(seq %% 10 = 0, NULL, CONCAT('note ', seq)),
  TIMESTAMP'2024-01-01 00:00:00' + INTERVAL seq SECOND + INTERVAL (seq %% 1000000) MICROSECOND,
  seq %% 3 = 0
FROM {db}.seq_{a}_to_{b}"""
MY_DDL = """CREATE TABLE {t} (id bigint PRIMARY KEY, account_id int, amount decimal(12,2), status varchar(16),
  note varchar(64), created_at datetime(6), flag tinyint(1)) ENGINE=InnoDB"""


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def scaled(ids: tuple[int, ...], rows: int) -> list[int]:
    return [max(1, min(rows, i * rows // 5_000_000)) if rows < 5_000_000 else i for i in ids]


def load(rows: int, pg2_conn: str) -> None:
    """Create and fill the copies (skipped when they already hold ``rows`` rows)."""
    t0 = time.perf_counter()
    with connections.mysql_connect(connections.MYSQL_TARGET) as m:
        cur = m.cursor()
        cur.execute(f"CREATE DATABASE IF NOT EXISTS {MYSQL_DB}")
        cur.execute("SELECT count(*) FROM information_schema.tables WHERE table_schema=%s AND table_name='bench'", (MYSQL_DB,))
        have = cur.fetchone()[0] and _count_mysql(cur) == rows
        if not have:
            log(f"loading {rows} rows into MySQL {MYSQL_DB}.bench …")
            cur.execute(f"DROP TABLE IF EXISTS {MYSQL_DB}.bench")
            cur.execute(MY_DDL.format(t=f"{MYSQL_DB}.bench"))
            step = 500_000
            for a in range(1, rows + 1, step):
                cur.execute(MY_GEN.format(t=f"{MYSQL_DB}.bench", db=MYSQL_DB, a=a, b=min(rows, a + step - 1)), ())
                m.commit()
    for conn_id, tables in ((connections.POSTGRES_TARGET, ("bench_same", "bench_diff")), (pg2_conn, ("bench",))):
        with connections.pg_connect(conn_id) as p:
            p.execute(f"CREATE SCHEMA IF NOT EXISTS {PG_SCHEMA}")
            for name in tables:
                t = f"{PG_SCHEMA}.{name}"
                exists = p.execute("SELECT to_regclass(%s)", (t,)).fetchone()[0]
                if exists and p.execute(f"SELECT count(*) FROM {t} WHERE id <= %s", (rows,)).fetchone()[0] == rows \
                        and p.execute(f"SELECT max(id) FROM {t} WHERE id < %s", (EXTRA_BASE,)).fetchone()[0] == rows:
                    continue
                log(f"loading {rows} rows into {conn_id} {t} …")
                p.execute(f"DROP TABLE IF EXISTS {t}")
                p.execute(PG_DDL.format(t=t))
                p.execute(PG_GEN.format(t=t), (1, rows))
                p.commit()
    with connections.pg_connect(connections.POSTGRES_TARGET, autocommit=True) as p:
        p.execute(f"VACUUM ANALYZE {PG_SCHEMA}.bench_same")
        p.execute(f"VACUUM ANALYZE {PG_SCHEMA}.bench_diff")
    with connections.pg_connect(pg2_conn, autocommit=True) as p:
        p.execute(f"VACUUM ANALYZE {PG_SCHEMA}.bench")
    log(f"copies ready in {time.perf_counter() - t0:.1f} s")


def _count_mysql(cur: Any) -> int:
    cur.execute(f"SELECT count(*) FROM {MYSQL_DB}.bench")
    return int(cur.fetchone()[0])


def inject(rows: int) -> dict[str, set[int]]:
    """Reset ``bench_diff`` to the clean data for the touched ids, then inject the 10 differences."""
    missing, changed = scaled(MISSING, rows), scaled(CHANGED, rows)
    extra = [EXTRA_BASE + i for i in range(3)]
    touched = sorted(set(missing) | set(changed))
    t = f"{PG_SCHEMA}.bench_diff"
    with connections.pg_connect() as p:
        p.execute(f"DELETE FROM {t} WHERE id = ANY(%s) OR id >= %s", (touched, EXTRA_BASE))
        for i in touched:
            p.execute(PG_GEN.format(t=t), (i, i))
        p.execute(f"DELETE FROM {t} WHERE id = ANY(%s)", (missing,))
        p.execute(PG_GEN.format(t=t), (EXTRA_BASE, EXTRA_BASE + 2))
        c0, c1, c2, c3 = changed
        p.execute(f"UPDATE {t} SET note = CASE WHEN note IS NULL THEN 'was null' ELSE NULL END WHERE id = %s", (c0,))
        p.execute(f"UPDATE {t} SET amount = amount + 0.01 WHERE id = %s", (c1,))
        p.execute(f"UPDATE {t} SET created_at = created_at + interval '1 microsecond' WHERE id = %s", (c2,))
        p.execute(f"UPDATE {t} SET status = status || ' ' WHERE id = %s", (c3,))
    return {"missing": set(missing), "extra": set(extra), "changed": set(changed)}


# --- the three contenders ---------------------------------------------------------------------------


def run_cutover(src: Endpoint, tgt: Endpoint) -> tuple[dict[str, set[int]], int, int]:
    spec = PairSpec(name="bench", source=src, target=tgt, key=("id",), columns=tuple(COLUMNS), kinds=KINDS)
    r = diff_pair(spec, options=DiffOptions())
    found = {"missing": {k[0] for k in r.missing}, "extra": {k[0] for k in r.extra}, "changed": {k[0] for k in r.changed}}
    return found, r.bytes_transferred, r.rows_checked


_RELADIFF_BYTES = [0]


def _patch_reladiff() -> None:
    from sqeleton.databases import base

    if getattr(base.Database, "_cutover_counted", False):
        return
    orig = base.Database._query_cursor

    def counted(self: Any, c: Any, sql_code: Any) -> Any:
        res = orig(self, c, sql_code)
        if res is not None:
            try:
                _RELADIFF_BYTES[0] += row_bytes(list(res))
            except TypeError:
                pass
        return res

    base.Database._query_cursor = counted
    base.Database._cutover_counted = True


def _reladiff_conf(info: connections.ConnInfo) -> dict[str, Any]:
    if info.is_postgres:
        conf: dict[str, Any] = {"driver": "postgresql", "host": info.host or "127.0.0.1", "user": info.login or "postgres",
                                "dbname": info.schema or "postgres"}
        if info.port:
            conf["port"] = info.port
        return conf
    return {"driver": "mysql", "host": info.host or "127.0.0.1", "port": info.port or 3306, "user": info.login or "root",
            "password": info.password, "database": MYSQL_DB}


def run_reladiff(src: Endpoint, tgt: Endpoint, threads: int) -> tuple[dict[str, set[int]], int, int]:
    import reladiff

    _patch_reladiff()
    _RELADIFF_BYTES[0] = 0
    tables = []
    for ep in (src, tgt):
        info = connections.resolve(ep.conn_id)
        assert ep.table is not None
        schema, table = ep.table.split(".")
        db = reladiff.connect(_reladiff_conf(info), thread_count=threads)
        tables.append(reladiff.connect_to_table(db, (schema, table), "id", extra_columns=tuple(COLUMNS)))
    minus: set[int] = set()
    plus: set[int] = set()
    for sign, row in reladiff.diff_tables(tables[0], tables[1], threaded=True, max_threadpool_size=threads,
                                            skip_sort_results=True):
        (minus if sign == "-" else plus).add(int(row[0]))
    found = {"missing": minus - plus, "extra": plus - minus, "changed": minus & plus}
    return found, _RELADIFF_BYTES[0], -1


def _stream(ep: Endpoint) -> Iterator[tuple[Any, ...]]:
    info = connections.resolve(ep.conn_id)
    cols = ", ".join(["id", *COLUMNS])
    if info.is_postgres:
        with connections.pg_connect(ep.conn_id) as p:
            p.execute("SET TimeZone = 'UTC'")
            with p.cursor(name="naive") as cur:
                cur.itersize = 20_000
                cur.execute(f"SELECT {cols} FROM {ep.table} ORDER BY id")
                yield from cur
    else:
        import MySQLdb.cursors

        with connections.mysql_connect(ep.conn_id) as m:
            cur = m.cursor(MySQLdb.cursors.SSCursor)
            cur.execute("SET time_zone = '+00:00'")
            cur.execute(f"SELECT {cols} FROM {ep.table} ORDER BY id")
            while True:
                chunk = cur.fetchmany(20_000)
                if not chunk:
                    break
                yield from chunk
            cur.close()


def run_naive(src: Endpoint, tgt: Endpoint) -> tuple[dict[str, set[int]], int, int]:
    kinds = [Kind.parse(KINDS[c]) for c in ["id", *COLUMNS]]

    def canon(row: tuple[Any, ...]) -> tuple[str, ...]:
        return tuple(python_canonical(v, k) for v, k in zip(row, kinds, strict=True))

    found: dict[str, set[int]] = {"missing": set(), "extra": set(), "changed": set()}
    nbytes = 0
    rows = 0
    a, b = _stream(src), _stream(tgt)
    ra, rb = next(a, None), next(b, None)
    while ra is not None or rb is not None:
        if rb is None or (ra is not None and ra[0] < rb[0]):
            found["missing"].add(ra[0])  # type: ignore[index]
            nbytes += row_bytes([ra])  # type: ignore[list-item]
            ra = next(a, None)
        elif ra is None or rb[0] < ra[0]:
            found["extra"].add(rb[0])
            nbytes += row_bytes([rb])
            rb = next(b, None)
        else:
            nbytes += row_bytes([ra, rb])
            if canon(ra) != canon(rb):
                found["changed"].add(ra[0])
            ra, rb = next(a, None), next(b, None)
        rows += 1
    return found, nbytes, rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=500_000)
    ap.add_argument("--pg2", default="postgresql://postgres@127.0.0.1:5432/test",
                    help="URI of the second PostgreSQL (PostgreSQL vs PostgreSQL pair)")
    ap.add_argument("--threads", type=int, default=2, help="reladiff threads per database")
    ap.add_argument("--skip", default="", help="comma list of contenders to skip: cutover,reladiff,naive")
    args = ap.parse_args()
    connections.apply_default_env()
    os.environ[f"AIRFLOW_CONN_{PG2.upper()}"] = args.pg2
    load(args.rows, PG2)
    injected = inject(args.rows)
    none: dict[str, set[int]] = {"missing": set(), "extra": set(), "changed": set()}
    my = Endpoint(connections.MYSQL_TARGET, table=f"{MYSQL_DB}.bench")
    pg_same = Endpoint(connections.POSTGRES_TARGET, table=f"{PG_SCHEMA}.bench_same")
    pg_diff = Endpoint(connections.POSTGRES_TARGET, table=f"{PG_SCHEMA}.bench_diff")
    pg2 = Endpoint(PG2, table=f"{PG_SCHEMA}.bench")
    cases = [
        ("MySQL vs PostgreSQL", "10 diffs", my, pg_diff, injected),
        ("MySQL vs PostgreSQL", "0 diffs", my, pg_same, none),
        ("PostgreSQL vs PostgreSQL", "10 diffs", pg2, pg_diff, injected),
        ("PostgreSQL vs PostgreSQL", "0 diffs", pg2, pg_same, none),
    ]
    contenders: dict[str, Callable[[Endpoint, Endpoint], tuple[dict[str, set[int]], int, int]]] = {
        "cutover": run_cutover,
        "reladiff": lambda s, t: run_reladiff(s, t, args.threads),
        "naive": run_naive,
    }
    skip = {s for s in args.skip.split(",") if s}
    print(f"\n{args.rows:,} rows per side; {os.cpu_count()} CPUs; {dt.datetime.now():%Y-%m-%d %H:%M}\n")
    print(f"{'pair':26} {'case':9} {'engine':9} {'time s':>8} {'rows/s':>12} {'bytes':>13} {'found':>6}  ratios")
    for pair, case, src, tgt, expect in cases:
        times: dict[str, float] = {}
        for name, fn in contenders.items():
            if name in skip:
                continue
            t0 = time.perf_counter()
            try:
                found, nbytes, _ = fn(src, tgt)
            except Exception as exc:  # a contender failing is a result too
                print(f"{pair:26} {case:9} {name:9} failed: {type(exc).__name__}: {str(exc)[:120]}")
                continue
            took = time.perf_counter() - t0
            times[name] = took
            ok = found == expect
            extra = "" if ok else f"  (found {sum(map(len, found.values()))}: {_short(found, expect)})"
            ratio = ""
            if name != "cutover" and "cutover" in times:
                ratio = f"cutover {took / times['cutover']:.1f}x faster"
            print(f"{pair:26} {case:9} {name:9} {took:8.2f} {args.rows / took:12,.0f} {nbytes:13,} "
                  f"{'yes' if ok else 'NO':>6}  {ratio}{extra}", flush=True)


def _short(found: dict[str, set[int]], expect: dict[str, set[int]]) -> str:
    parts = []
    for k in ("missing", "extra", "changed"):
        miss, wrong = expect[k] - found[k], found[k] - expect[k]
        if miss or wrong:
            parts.append(f"{k}: not found {sorted(miss)[:5]}, false {sorted(wrong)[:5]}")
    return "; ".join(parts)


if __name__ == "__main__":
    main()
