"""Benchmark the narrow → wide pivot: this pipeline vs the in-database pivot vs a row-at-a-time client.

    python benchmarks/bench_ship_wide.py --rows 2000000           # 5 ships × 50 channels × 8000 times

Same data, same run, same server (``postgres_target``; set ``AIRFLOW_CONN_POSTGRES_TARGET`` for
another one). Prints narrow rows/s for each contender, the ratios, and the peak memory of the
pipeline's copy (the max RSS of a child process that does only the copy, at two chunk sizes: it
follows the chunk, not the table). The row-at-a-time client is measured on one ship's first
``--slow-rows`` narrow rows (it would take minutes on all of them); its rate is per narrow row too.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from typing import Any

SCHEMA = "bench_ship_wide"


def _setup(rows: int, ships: int, channels: int) -> Any:
    from cutover import connections, control
    from cutover.connections import pg_connect
    from cutover.samples import ship

    connections.apply_default_env()
    timestamps = max(1, rows // (ships * channels))
    with pg_connect() as conn:
        control.ensure_schema(conn)
        conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
        conn.execute("DELETE FROM cutover.checkpoints WHERE unit_key LIKE %s", (f"{SCHEMA}.%",))
        conn.execute("DELETE FROM cutover.name_map WHERE scope LIKE %s OR scope LIKE %s",
                     (f"columns:{SCHEMA}.%", f"tables:{SCHEMA}.%"))
        sample = ship.generate(conn, SCHEMA, ships=ships, channels=channels, timestamps=timestamps, seed=1)
    with pg_connect(autocommit=True) as conn:
        conn.execute(f"VACUUM ANALYZE {SCHEMA}.tbl_data_timeseries")
    return sample


def _reset_ships(cfg: Any, ships: list[str]) -> None:
    from cutover import ship_wide as sw

    for s in ships:
        sw.rollback_ship(cfg, s, drop=True)


def run_pipeline(chunk_rows: int, pivot: str = "auto", connections_per_ship: int | None = None) -> dict[str, Any]:
    """Plan, prepare, copy and finalize every ship with the pipeline (in this process)."""
    from cutover import connections
    from cutover import ship_wide as sw

    connections.apply_default_env()
    extra = {} if connections_per_ship is None else {"copy_connections": connections_per_ship}
    cfg = sw.ShipWideConfig(schema=SCHEMA, chunk_rows=chunk_rows, pivot=pivot, **extra)
    plans = sw.plan_run(cfg)
    _reset_ships(cfg, [p["ship_id"] for p in plans])
    for p in plans:
        sw.prepare_ship(cfg, p)
    t0 = time.perf_counter()
    rows = 0
    used = set()
    for p in plans:
        out = sw.copy_history(cfg, p["ship_id"], rows_total=p["rows"])
        rows += out["narrow_rows"]
        used.add(out["pivot"])
        sw.finalize_ship(cfg, p["ship_id"])
    secs = time.perf_counter() - t0
    return {"rows": rows, "seconds": secs, "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "pivot": ",".join(sorted(used)), "connections": cfg.copy_connections}


def _warm(_: int = 0) -> int:
    """Import the pipeline in a pool worker before the clock starts (an Airflow worker has it loaded)."""
    import os

    from cutover import (
        connections,
        ship_wide,  # noqa: F401
    )

    connections.apply_default_env()
    return os.getpid()


def _copy_ships(chunk_rows: int, ships: list[dict[str, Any]]) -> int:
    """Copy and finalize some ships in one worker process (what one mapped copy task does per ship)."""
    from cutover import ship_wide as sw

    cfg = sw.ShipWideConfig(schema=SCHEMA, chunk_rows=chunk_rows)
    rows = 0
    for p in ships:
        rows += sw.copy_history(cfg, p["ship_id"], rows_total=p["rows"])["narrow_rows"]
        sw.finalize_ship(cfg, p["ship_id"])
    return rows


def run_pipeline_parallel(chunk_rows: int, workers: int) -> dict[str, Any]:
    """The copy as the DAG runs it: ships spread over ``workers`` processes (mapped tasks in parallel)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from cutover import connections
    from cutover import ship_wide as sw

    connections.apply_default_env()
    cfg = sw.ShipWideConfig(schema=SCHEMA, chunk_rows=chunk_rows)
    plans = sw.plan_run(cfg)
    _reset_ships(cfg, [p["ship_id"] for p in plans])
    for p in plans:
        sw.prepare_ship(cfg, p)
    # biggest first, each to the least loaded worker
    lanes: list[list[dict[str, Any]]] = [[] for _ in range(workers)]
    load = [0] * workers
    for p in sorted(plans, key=lambda p: -p["rows"]):
        i = load.index(min(load))
        lanes[i].append(p)
        load[i] += p["rows"]
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        pids = set(pool.map(_warm, range(workers)))
        t0 = time.perf_counter()
        rows = sum(pool.map(_copy_ships, [chunk_rows] * workers, lanes))
        secs = time.perf_counter() - t0
    return {"rows": rows, "seconds": secs, "workers": len(pids)}


def _child(chunk_rows: int, pivot: str = "auto", connections_per_ship: int = 0) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", str(chunk_rows), "--pivot", pivot, "--conn", str(connections_per_ship)],
        check=True, capture_output=True, text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_in_database(ships: list[str], channels: list[str]) -> dict[str, Any]:
    """INSERT … SELECT … GROUP BY created_time with one max(CASE …) per channel, per ship."""
    from psycopg import sql

    from cutover.connections import pg_connect
    from cutover.identifiers import pg_ident

    rows = 0
    t0 = time.perf_counter()
    with pg_connect() as conn:
        for s in ships:
            tbl = pg_ident(SCHEMA, f"indb_{s}")
            cols = sql.SQL(", ").join(sql.SQL("{} text").format(pg_ident(c)) for c in channels)
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(tbl))
            conn.execute(sql.SQL("CREATE TABLE {} (created_time timestamptz PRIMARY KEY, {})").format(tbl, cols))
            aggs = sql.SQL(", ").join(
                sql.SQL("max(CASE WHEN data_channel_id = {} THEN coalesce(double_v::text, long_v::text, str_v, bool_v::text) END)")
                .format(sql.Literal(c)) for c in channels
            )
            conn.execute(sql.SQL(
                "INSERT INTO {} SELECT created_time, {} FROM {} WHERE ship_id = %s GROUP BY created_time"
            ).format(tbl, aggs, pg_ident(SCHEMA, "tbl_data_timeseries")), (s,))
            n = conn.execute(sql.SQL("SELECT count(*) FROM {} WHERE ship_id = %s").format(
                pg_ident(SCHEMA, "tbl_data_timeseries")), (s,)).fetchone()
            rows += int(n[0]) if n else 0
        conn.commit()
    return {"rows": rows, "seconds": time.perf_counter() - t0}


def run_row_at_a_time(ship_id: str, channels: list[str], limit: int) -> dict[str, Any]:
    """Fetch narrow rows, build a dict per wide row, INSERT one wide row at a time."""
    from psycopg import sql

    from cutover.connections import pg_connect
    from cutover.identifiers import pg_ident

    tbl = pg_ident(SCHEMA, f"slow_{ship_id}")
    t0 = time.perf_counter()
    with pg_connect() as conn:
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(tbl))
        conn.execute(sql.SQL("CREATE TABLE {} (created_time timestamptz PRIMARY KEY, {})").format(
            tbl, sql.SQL(", ").join(sql.SQL("{} text").format(pg_ident(c)) for c in channels)))
        rows = conn.execute(sql.SQL(
            "SELECT created_time, data_channel_id, double_v, long_v, str_v, bool_v FROM {} WHERE ship_id = %s "
            "ORDER BY created_time LIMIT %s").format(pg_ident(SCHEMA, "tbl_data_timeseries")), (ship_id, limit)).fetchall()
        wide: dict[Any, dict[str, Any]] = {}
        for t, ch, d, lv, sv, bv in rows:
            v = next((x for x in (d, lv, sv, bv) if x is not None), None)
            wide.setdefault(t, {})[ch] = None if v is None else str(v)
        for t, values in wide.items():
            names = list(values)
            conn.execute(sql.SQL("INSERT INTO {} (created_time, {}) VALUES (%s, {})").format(
                tbl, sql.SQL(", ").join(pg_ident(n) for n in names), sql.SQL(", ").join(sql.Placeholder() * len(names))),
                [t, *values.values()])
        conn.commit()
    return {"rows": len(rows), "seconds": time.perf_counter() - t0}


def _median(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The round with the median rate."""
    return sorted(results, key=lambda r: r["rows"] / r["seconds"])[len(results) // 2]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=2_000_000)
    ap.add_argument("--ships", type=int, default=5)
    ap.add_argument("--channels", type=int, default=50)
    ap.add_argument("--chunk-rows", type=int, default=200_000)
    ap.add_argument("--slow-rows", type=int, default=50_000)
    ap.add_argument("--workers", type=int, default=2, help="parallel copy processes (default 2: one per core here)")
    ap.add_argument("--repeat", type=int, default=3, help="rounds of every contender; the median round counts")
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--pivot", default="auto", help=argparse.SUPPRESS)
    ap.add_argument("--conn", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(run_pipeline(args.child, args.pivot, args.conn or None)))
        return
    t = time.perf_counter()
    sample = _setup(args.rows, args.ships, args.channels)
    print(f"generated {sample.rows:,} narrow rows ({len(sample.ships)} ships × {len(sample.channels)} channels × "
          f"{sample.timestamps} times) in {time.perf_counter() - t:.1f} s")
    small_chunk = max(args.chunk_rows // 4, 1000)
    # Every contender runs once per round, rounds interleaved, and the median round of each is
    # reported: a shared machine's noise then hits all of them alike.
    rounds: dict[str, list[dict[str, Any]]] = {k: [] for k in ("pipe", "pipe1", "par", "client", "indb", "slow")}
    for r in range(max(args.repeat, 1)):
        rounds["pipe"].append(_child(args.chunk_rows))
        rounds["pipe1"].append(_child(args.chunk_rows, connections_per_ship=1))
        rounds["par"].append(run_pipeline_parallel(args.chunk_rows, args.workers))
        rounds["client"].append(_child(args.chunk_rows, "client"))
        rounds["indb"].append(run_in_database(sample.ships, sample.channels))
        rounds["slow"].append(run_row_at_a_time(sample.ships[0], sample.channels, args.slow_rows))
        print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]['rows'] / v[-1]['seconds']:,.0f}" for k, v in rounds.items())
              + " rows/s", flush=True)
    pipe, pipe1, par, client, indb, slow = (_median(rounds[k]) for k in ("pipe", "pipe1", "par", "client", "indb", "slow"))
    client_small = _child(small_chunk, "client")
    rate = {k: v["rows"] / v["seconds"] for k, v in
            (("pipeline", pipe), ("one_conn", pipe1), ("parallel", par), ("client", client), ("in_db", indb),
             ("row_at_a_time", slow))}
    print()
    print(f"median of {max(args.repeat, 1)} rounds")
    print(f"{'contender':<64} {'narrow rows':>12} {'seconds':>9} {'rows/s':>12}")
    for key, label, res in (
        ("pipeline", f"ship_wide_build copy ({pipe['pivot']} pivot, chunk {args.chunk_rows:,}, "
                     f"{pipe['connections']} conn/ship)", pipe),
        ("one_conn", "  same, 1 connection per ship (chunks one after another)", pipe1),
        ("parallel", f"  same, {par['workers']} ships at a time (DAG parallelism)", par),
        ("client", "  client pivot (source in another database)", client),
        ("in_db", "in-database pivot (INSERT … GROUP BY)", indb),
        ("row_at_a_time", "row-at-a-time client", slow),
    ):
        print(f"{label:<64} {res['rows']:>12,} {res['seconds']:>9.2f} {rate[key]:>12,.0f}")
    print()
    for anchor, name, fmt, target in (("in_db", "in-database pivot", ".2f", "1.0"), ("row_at_a_time", "row-at-a-time", ".1f", "20")):
        print(f"pipeline / {name:<18}: {rate['pipeline'] / rate[anchor]:{fmt}}x one ship at a time "
              f"({rate['one_conn'] / rate[anchor]:{fmt}}x with 1 connection), "
              f"{rate['parallel'] / rate[anchor]:{fmt}}x with {par['workers']} ships at a time; "
              f"client pivot {rate['client'] / rate[anchor]:{fmt}}x  (target >= {target}x)")
    print(f"peak memory (max RSS of the copy process): {pipe['pivot']} pivot {pipe['maxrss_mb']:.0f} MB; client pivot "
          f"{client['maxrss_mb']:.0f} MB at chunk {args.chunk_rows:,}, {client_small['maxrss_mb']:.0f} MB at chunk "
          f"{small_chunk:,} (that run: {client_small['rows'] / client_small['seconds']:,.0f} rows/s)")

if __name__ == "__main__":
    main()
