"""Benchmark ship_wide_build against the pivot a user would write in SQL, on data shapes it was not tuned for.

    .venv/bin/python benchmarks/bench_ship_wide.py            # every shape and the growth tables (~5 min, 2 cores)
    .venv/bin/python benchmarks/bench_ship_wide.py --quick    # the same at a tenth of the size (development)

The anchor (issue #13), per ship, with ``SET jit = off``::

    CREATE TABLE anchor_<ship> AS
      SELECT created_time, max(CASE WHEN data_channel_id = 'ch_0000' THEN double_v END) AS "ch_0000", …
      FROM tbl_data_timeseries WHERE ship_id = '<ship>' GROUP BY created_time;
    ALTER TABLE anchor_<ship> ADD PRIMARY KEY (created_time);

Each channel's aggregate takes its *typed* value column (``value_format`` says which: Decimal →
``double_v``, Integer → ``long_v``, String → ``str_v``, Boolean → ``bool_v``; booleans have no
``max`` in PostgreSQL, so ``bool_or``), so the anchor's columns have the pipeline's types. In text
mode (the ``text`` shape; the pipeline with ``text_columns=True``) every aggregate takes the value
text, ``coalesce(double_v::text, long_v::text, str_v, bool_v::text)``.

The pipeline: ``plan_run`` and ``prepare_ship`` for every ship (untimed), then — timed from the first
copy — ``copy_history`` + ``finalize_ship`` per ship, default settings, in a child process whose
max RSS is the peak memory reported.

Shapes (same server, same run, anchor and pipeline on the same narrow table):

* **steady** — ships × channels × times, each time's rows in one steady order;
* **random** — the same rows inserted in random order (ids and heap order ≠ arrival pattern);
* **fleet** — ≥ 200 ships × 20 channels, steady;
* **wide** — 1,000 channels, fewer times;
* **text** — steady data, text columns (anchor casts to text).

Then how time grows with ships (total rows fixed), rows (ships and channels fixed) and channels
(total rows fixed): 3 sizes each. Both sides are checked to hold the same data: per ship the row
count and a checksum (sum of a 64-bit md5 prefix of each row's text, columns in one order).
ratio = anchor seconds / pipeline seconds (> 1: the pipeline is faster).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from typing import Any

SCHEMA = "bench_ship_wide"
NARROW = "tbl_data_timeseries"
TYPED = {"Decimal": "double_v", "Integer": "long_v", "String": "str_v", "Boolean": "bool_v"}
VALUE_TEXT = "coalesce(double_v::text, long_v::text, str_v, bool_v::text)"
ROW_HASH = "coalesce(sum(('x' || substr(md5(({row})::text), 1, 16))::bit(64)::bigint::numeric), 0)::text"


# --- data -------------------------------------------------------------------------------------

def _clean_control(conn: Any, schema: str = SCHEMA) -> None:
    """Remove every control-schema row of a benchmark's schema (a fresh start for the pipeline)."""
    cols = conn.execute(
        """SELECT table_name, column_name FROM information_schema.columns
           WHERE table_schema = 'cutover' AND data_type = 'text'
             AND column_name IN ('unit_key', 'scope', 'name', 'source_table', 'target_table')""").fetchall()
    for table, col in cols:
        conn.execute(f'DELETE FROM cutover."{table}" WHERE "{col}" LIKE %s', (f"%{schema}%",))


def generate(ships: int, channels: int, times: int, order: str) -> dict[str, Any]:
    """(Re)create the narrow table with ships × channels × times rows in ``order`` (steady | random)."""
    from cutover import connections, control
    from cutover.connections import pg_connect
    from cutover.samples import ship

    connections.apply_default_env()
    t0 = time.perf_counter()
    with pg_connect() as conn:
        control.ensure_schema(conn)
        conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
        _clean_control(conn)
        sample = ship.generate(conn, SCHEMA, ships=ships, channels=channels, timestamps=times, seed=1)
        if order == "random":
            # the same rows, inserted again in a random order: ids and heap order no longer follow
            # the (time, channel) pattern the data arrives in
            cols = ", ".join(ship.NARROW_COLUMNS)
            conn.execute(f"CREATE TEMP TABLE bench_rows AS SELECT {cols} FROM {SCHEMA}.{NARROW}")
            conn.execute(f"TRUNCATE {SCHEMA}.{NARROW} RESTART IDENTITY")
            conn.execute("SELECT setseed(0.42)")
            conn.execute(f"INSERT INTO {SCHEMA}.{NARROW} ({cols}) SELECT {cols} FROM bench_rows ORDER BY random()")
            conn.execute("DROP TABLE bench_rows")
    with pg_connect(autocommit=True) as conn:
        conn.execute(f"VACUUM ANALYZE {SCHEMA}.{NARROW}")
    return {"rows": sample.rows, "ships": sample.ships, "channels": sample.channels,
            "seconds": time.perf_counter() - t0}


# --- the anchor ---------------------------------------------------------------------------------

def run_anchor(ships: list[str], text: bool) -> dict[str, Any]:
    """Per ship: typed (or text) CTAS … max(CASE …) … GROUP BY created_time, then ADD PRIMARY KEY; jit off."""
    from psycopg import sql

    from cutover.connections import pg_connect
    from cutover.identifiers import pg_ident

    narrow = pg_ident(SCHEMA, NARROW)
    with pg_connect() as conn:
        conn.execute("SET jit = off")
        # what a user knows before writing the query: each ship's channels and their format (untimed)
        fmts: dict[str, list[tuple[str, str]]] = {}
        for s, ch, fmt in conn.execute(sql.SQL(
                "SELECT ship_id, data_channel_id, min(value_format) FROM {} GROUP BY 1, 2 ORDER BY 1, 2").format(narrow)):
            fmts.setdefault(s, []).append((ch, fmt))
        for s in ships:
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(pg_ident(SCHEMA, f"anchor_{s}")))
        conn.commit()
        t0 = time.perf_counter()
        for s in ships:
            aggs = []
            for ch, fmt in fmts[s]:
                if text:
                    agg = sql.SQL("max(CASE WHEN data_channel_id = {} THEN {} END)").format(sql.Literal(ch), sql.SQL(VALUE_TEXT))
                else:
                    fn = "bool_or" if fmt == "Boolean" else "max"
                    agg = sql.SQL("{}(CASE WHEN data_channel_id = {} THEN {} END)").format(
                        sql.SQL(fn), sql.Literal(ch), sql.Identifier(TYPED[fmt]))
                aggs.append(sql.SQL("{} AS {}").format(agg, pg_ident(ch)))
            tbl = pg_ident(SCHEMA, f"anchor_{s}")
            conn.execute(sql.SQL("CREATE TABLE {} AS SELECT created_time, {} FROM {} WHERE ship_id = {} GROUP BY created_time")
                         .format(tbl, sql.SQL(", ").join(aggs), narrow, sql.Literal(s)))
            conn.execute(sql.SQL("ALTER TABLE {} ADD PRIMARY KEY (created_time)").format(tbl))
            conn.commit()
        secs = time.perf_counter() - t0
    return {"seconds": secs, "channels": {s: [c for c, _ in v] for s, v in fmts.items()}}


# --- the pipeline -------------------------------------------------------------------------------

def _worker_init() -> None:
    """A worker process = one Airflow task slot: imports and connection settings before the clock starts."""
    from cutover import connections
    from cutover.lifecycle import stages  # noqa: F401 - imported before the clock starts
    from cutover.ship_wide import spec  # noqa: F401

    connections.apply_default_env()


def _run_batch(args: tuple[dict[str, Any], dict[str, Any], str]) -> dict[str, Any]:
    """copy then finalize over one batch, as its two mapped task instances would (in one worker)."""
    params, batch, run_id = args
    from cutover.lifecycle import stages
    from cutover.ship_wide.spec import SPEC

    t0 = time.perf_counter()
    copy = stages.run_unit_stage(SPEC, "copy", params, batch, run_id)
    t1 = time.perf_counter()
    fin = stages.run_unit_stage(SPEC, "finalize", params, batch, run_id)
    return {"copy_s": t1 - t0, "finalize_s": time.perf_counter() - t1, "done": len(fin["done"]),
            "failed": {**copy["failed"], **fin["failed"]},
            "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def _run_whole_batch(args: tuple[dict[str, Any], dict[str, Any], str]) -> dict[str, float]:
    """Every unit stage over one batch (prepare, copy, finalize, verify), as its four mapped task instances."""
    params, batch, run_id = args
    from cutover.lifecycle import stages
    from cutover.ship_wide.spec import SPEC

    out: dict[str, float] = {}
    for stage in stages.UNIT_STAGES:
        t0 = time.perf_counter()
        try:
            stages.run_unit_stage(SPEC, stage, params, batch, run_id)
        except stages.UnitsFailed:
            pass  # recorded on the units: the report judges the run
        out[stage] = time.perf_counter() - t0
    return out


def fleet_run(ships: int, channels: int, times: int) -> dict[str, Any]:
    """A whole ship_wide_build run (plan → every batch through prepare, copy, finalize, verify with the GX
    gate → report) over ``ships`` small ships, ``parallelism`` workers as Airflow's mapped tasks."""
    import multiprocessing as mp

    from cutover.lifecycle import stages
    from cutover.ship_wide.config import ShipWideConfig
    from cutover.ship_wide.spec import SPEC

    gen = generate(ships, channels, times, "steady")
    _reset_pipeline()
    params = {"schema": SCHEMA}
    cfg = ShipWideConfig.from_params(params)
    run_id = f"bench_ship_wide_fleet__{time.time_ns()}"
    with mp.get_context("spawn").Pool(cfg.parallelism, initializer=_worker_init) as pool:
        pool.map(_noop, range(cfg.parallelism * 4), chunksize=1)
        t0 = time.perf_counter()
        batches = stages.plan(SPEC, params, run_id, max_batches=1024)
        t_plan = time.perf_counter() - t0
        outs = pool.map(_run_whole_batch, [(params, b, run_id) for b in batches], chunksize=1)
        t1 = time.perf_counter()
        try:
            rep = stages.report(SPEC, params, run_id)
        except stages.RunFailed as exc:
            rep = exc.report
        t_end = time.perf_counter()
    per_stage = {st: sum(o[st] for o in outs) for st in stages.UNIT_STAGES}
    return {"ships": ships, "rows": gen["rows"], "batches": len(batches), "tasks": 4 * len(batches) + 2,
            "seconds": t_end - t0, "plan_s": t_plan, "batches_s": t1 - t0 - t_plan, "report_s": t_end - t1,
            "stage_s": per_stage, "green": rep.green, "states": dict(rep.states)}


def _noop(_: int) -> int:
    return os.getpid()


def run_pipeline(text: bool) -> dict[str, Any]:
    """The pipeline as Airflow runs it, minus Airflow: the life cycle plans the run and packs the ships
    into mapped batches (``ship_wide``'s batch policy), prepare runs for every batch (untimed), then —
    timed — each batch's copy and finalize stages in a worker process, ``parallelism`` workers at once
    (Airflow's mapped task instances). Default settings."""
    import multiprocessing as mp

    from cutover import connections, control
    from cutover.connections import pg_connect
    from cutover.lifecycle import stages
    from cutover.ship_wide.config import ShipWideConfig
    from cutover.ship_wide.spec import SPEC

    connections.apply_default_env()
    params = {"schema": SCHEMA, "text_columns": text}
    cfg = ShipWideConfig.from_params(params)
    run_id = f"bench_ship_wide__{time.time_ns()}"
    batches = stages.plan(SPEC, params, run_id, max_batches=1024)
    for b in batches:
        stages.run_unit_stage(SPEC, "prepare", params, b, run_id)
    workers = min(cfg.parallelism, len(batches))
    with mp.get_context("spawn").Pool(workers, initializer=_worker_init) as pool:
        pool.map(_noop, range(workers * 4), chunksize=1)  # every worker started and imported
        t0 = time.perf_counter()
        outs = pool.map(_run_batch, [(params, b, run_id) for b in batches], chunksize=1)
        secs = time.perf_counter() - t0
    with pg_connect() as conn:
        rows = conn.execute(f"SELECT coalesce(sum(rows_read), 0), count(*) FILTER (WHERE state <> 'copied') "
                            f"FROM {control.SCHEMA}.units WHERE run_id = %s", (run_id,)).fetchone()
    failed = {k: v for o in outs for k, v in o["failed"].items()}
    return {"rows": int(rows[0]), "seconds": secs, "maxrss_mb": max(o["maxrss_mb"] for o in outs),
            "pivot": "server" if cfg.pivot != "client" else "client", "batches": len(batches), "workers": workers,
            "tasks": 4 * len(batches), "not_copied": int(rows[1]), "failed": failed,
            "copy_s": max(o["copy_s"] for o in outs), "finalize_s": max(o["finalize_s"] for o in outs)}


def _child(text: bool) -> dict[str, Any]:
    """run_pipeline in a fresh process (its workers' memory is reported, nothing left from the anchor)."""
    out = subprocess.run([sys.executable, __file__, "--child", "text" if text else "typed"],
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _reset_pipeline() -> None:
    """Drop the pipeline's wide tables and control rows (the narrow table and anchors stay)."""
    from psycopg import sql

    from cutover.connections import pg_connect
    from cutover.identifiers import pg_ident

    with pg_connect() as conn:
        views = conn.execute("SELECT viewname FROM pg_views WHERE schemaname = %s", (SCHEMA,)).fetchall()
        for (v,) in views:
            conn.execute(sql.SQL("DROP VIEW IF EXISTS {} CASCADE").format(pg_ident(SCHEMA, v)))
        tables = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = %s AND tablename <> %s "
                              "AND tablename NOT LIKE 'anchor\\_%%'", (SCHEMA, NARROW)).fetchall()
        for (t,) in tables:
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {} CASCADE").format(pg_ident(SCHEMA, t)))
        _clean_control(conn)


# --- verification -------------------------------------------------------------------------------

def verify(ships: list[str], channels: dict[str, list[str]]) -> dict[str, Any]:
    """Per ship: the anchor's and the pipeline's wide table hold the same rows (count + row checksum)."""
    from psycopg import sql

    from cutover import ship_wide as sw
    from cutover.connections import pg_connect
    from cutover.identifiers import pg_ident
    from cutover.ship_wide.ddl import load_wide
    from cutover.ship_wide.plan import session_setup

    cfg = sw.ShipWideConfig(schema=SCHEMA)
    bad = []
    total = 0
    with pg_connect() as conn:
        session_setup(conn)
        for s in ships:
            wide = load_wide(conn, cfg, s)
            if wide is None:
                bad.append(f"{s}: no wide table")
                continue
            chs = channels[s]
            a_cols = sql.SQL(", ").join([pg_ident("created_time"), *(pg_ident(c) for c in chs)])
            w_cols = sql.SQL(", ").join([pg_ident("created_time"), *(pg_ident(wide.columns[c]) for c in chs)])
            q = "SELECT count(*), " + ROW_HASH + " FROM {tbl} t"
            a = conn.execute(sql.SQL(q.replace("{row}", "ROW({cols})")).format(
                cols=a_cols, tbl=pg_ident(SCHEMA, f"anchor_{s}"))).fetchone()
            w = conn.execute(sql.SQL(q.replace("{row}", "ROW({cols})")).format(cols=w_cols, tbl=wide.ident)).fetchone()
            total += int(a[0])
            if tuple(a) != tuple(w):
                bad.append(f"{s}: anchor {a[0]} rows / {a[1]}, pipeline {w[0]} rows / {w[1]}")
    return {"ok": not bad, "wide_rows": total, "failures": bad}


# --- one measurement ----------------------------------------------------------------------------

_CACHE: dict[tuple[Any, ...], dict[str, Any]] = {}


def measure(ships: int, channels: int, times: int, order: str = "steady", text: bool = False,
            repeat: int = 1) -> dict[str, Any]:
    key = (ships, channels, times, order, text)
    if key in _CACHE:
        return _CACHE[key]
    gen = generate(ships, channels, times, order)
    anchors, pipes = [], []
    for _ in range(max(repeat, 1)):
        _reset_pipeline()
        anchors.append(run_anchor(gen["ships"], text))
        pipes.append(_child(text))
    anchor = sorted(anchors, key=lambda r: r["seconds"])[len(anchors) // 2]
    pipe = sorted(pipes, key=lambda r: r["seconds"])[len(pipes) // 2]
    check = verify(gen["ships"], anchor["channels"])
    if pipe["rows"] != gen["rows"]:
        check["ok"] = False
        check["failures"].append(f"pipeline read {pipe['rows']:,} narrow rows of {gen['rows']:,}")
    if pipe["failed"] or pipe["not_copied"]:
        check["ok"] = False
        check["failures"].append(f"ships failed: {list(pipe['failed'].items())[:3]}; {pipe['not_copied']} not copied")
    res = {"ships": ships, "channels": channels, "times": times, "rows": gen["rows"], "order": order, "text": text,
           "gen_s": gen["seconds"], "anchor_s": anchor["seconds"], "pipe_s": pipe["seconds"],
           "ratio": anchor["seconds"] / pipe["seconds"], "pipe_rate": gen["rows"] / pipe["seconds"],
           "anchor_rate": gen["rows"] / anchor["seconds"], "maxrss_mb": pipe["maxrss_mb"], "pivot": pipe["pivot"],
           "batches": pipe["batches"], "tasks": pipe["tasks"], "workers": pipe["workers"],
           "ok": check["ok"], "failures": check["failures"], "wide_rows": check["wide_rows"]}
    print(f"  {ships} ships × {channels} ch × {times} times ({order}{', text' if text else ''}): "
          f"anchor {res['anchor_s']:.2f} s, pipeline {res['pipe_s']:.2f} s ({res['batches']} batches, "
          f"{res['workers']} workers), ratio {res['ratio']:.2f}, "
          f"same data: {'yes' if res['ok'] else 'NO ' + '; '.join(res['failures'][:3])}  (generated in {res['gen_s']:.1f} s)",
          flush=True)
    _CACHE[key] = res
    return res


def _times(rows: int, ships: int, channels: int) -> int:
    return max(1, rows // (ships * channels))


def _print_fleet_run(r: dict[str, Any]) -> None:
    print()
    print(f"whole build run over {r['ships']:,} ships × 20 channels × 50 times ({r['rows']:,} narrow rows): "
          f"{r['seconds']:.1f} s, {'green' if r['green'] else 'RED ' + str(r['states'])}; {r['batches']} mapped batches "
          f"= {r['tasks']} task instances (not {4 * r['ships'] + 2:,}); plan {r['plan_s']:.1f} s, batches "
          f"{r['batches_s']:.1f} s, report (data docs built once) {r['report_s']:.1f} s; worker seconds per stage: "
          + ", ".join(f"{k} {v:.1f}" for k, v in r["stage_s"].items()), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="a tenth of the sizes (development)")
    ap.add_argument("--rows", type=int, default=1_000_000, help="narrow rows of the steady/random/text shapes")
    ap.add_argument("--ships", type=int, default=5, help="ships of the steady/random/text shapes")
    ap.add_argument("--channels", type=int, default=50, help="channels of the steady/random/text shapes")
    ap.add_argument("--fleet-ships", type=int, default=200)
    ap.add_argument("--fleet-rows", type=int, default=1_000_000, help="narrow rows of the fleet shape (20 channels)")
    ap.add_argument("--wide-channels", type=int, default=1000)
    ap.add_argument("--wide-ships", type=int, default=2)
    ap.add_argument("--wide-rows", type=int, default=500_000)
    ap.add_argument("--repeat", type=int, default=1, help="rounds of anchor and pipeline per point; the median counts")
    ap.add_argument("--no-growth", action="store_true", help="skip the growth tables")
    ap.add_argument("--fleet-run", type=int, default=1000, metavar="SHIPS",
                    help="a whole build run (verify and GX gate included) over this many small ships; 0 = skip")
    ap.add_argument("--only-fleet-run", action="store_true", help="only the whole fleet run")
    ap.add_argument("--child", choices=("typed", "text"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(run_pipeline(args.child == "text")))
        return
    if args.quick:
        args.rows //= 10
        args.fleet_rows //= 10
        args.wide_rows //= 10
    t_all = time.perf_counter()
    if args.only_fleet_run:
        _print_fleet_run(fleet_run(args.fleet_run, 20, 50))
        return
    R = args.repeat
    print("shapes", flush=True)
    shapes = [
        ("steady", measure(args.ships, args.channels, _times(args.rows, args.ships, args.channels), "steady", repeat=R)),
        ("random order", measure(args.ships, args.channels, _times(args.rows, args.ships, args.channels), "random", repeat=R)),
        ("fleet", measure(args.fleet_ships, 20, _times(args.fleet_rows, args.fleet_ships, 20), repeat=R)),
        ("wide", measure(args.wide_ships, args.wide_channels,
                         _times(args.wide_rows, args.wide_ships, args.wide_channels), repeat=R)),
        ("text (steady)", measure(args.ships, args.channels, _times(args.rows, args.ships, args.channels), "steady",
                                  text=True, repeat=R)),
    ]
    growth: list[tuple[str, list[dict[str, Any]]]] = []
    if not args.no_growth:
        print("growth", flush=True)
        fs = args.fleet_ships
        growth.append(("ships (total rows fixed, 20 channels)", [
            measure(n, 20, _times(args.fleet_rows, n, 20), repeat=R) for n in (max(1, fs // 10), max(1, fs // 3), fs)]))
        growth.append((f"rows ({args.ships} ships × {args.channels} channels)", [
            measure(args.ships, args.channels, _times(n, args.ships, args.channels), repeat=R)
            for n in (args.rows // 4, args.rows // 2, args.rows)]))
        wc = args.wide_channels
        growth.append((f"channels (total rows fixed, {args.wide_ships} ships)", [
            measure(args.wide_ships, n, _times(args.wide_rows, args.wide_ships, n), repeat=R)
            for n in (max(1, wc // 20), max(1, wc // 4), wc)]))

    print()
    print(f"ship_wide_build vs the anchor (typed CTAS + primary key, jit off); same server, same run; "
          f"median of {R} round(s); ratio = anchor s / pipeline s (> 1: pipeline faster)")
    hdr = (f"{'shape':<15} {'ships×ch×times':>18} {'narrow rows':>12} {'anchor s':>9} {'pipe s':>8} "
           f"{'anchor rows/s':>14} {'pipe rows/s':>12} {'ratio':>6} {'peak MB':>8} {'tasks':>6} {'same data':>9}")
    print(hdr)
    print("-" * len(hdr))
    for name, r in shapes:
        dims = f"{r['ships']}×{r['channels']}×{r['times']}"
        print(f"{name:<15} {dims:>18} {r['rows']:>12,} {r['anchor_s']:>9.2f} {r['pipe_s']:>8.2f} "
              f"{r['anchor_rate']:>14,.0f} {r['pipe_rate']:>12,.0f} {r['ratio']:>6.2f} {r['maxrss_mb']:>8.0f} "
              f"{r['tasks']:>6} {'yes' if r['ok'] else 'NO':>9}")
    for title, pts in growth:
        print()
        print(f"growth with {title}")
        print(f"{'ships×ch×times':>18} {'narrow rows':>12} {'anchor s':>9} {'pipe s':>8} {'ratio':>6} "
              f"{'pipe ms/ship':>12} {'pipe µs/row':>11} {'same data':>9}")
        for r in pts:
            dims = f"{r['ships']}×{r['channels']}×{r['times']}"
            print(f"{dims:>18} {r['rows']:>12,} {r['anchor_s']:>9.2f} {r['pipe_s']:>8.2f} {r['ratio']:>6.2f} "
                  f"{1000 * r['pipe_s'] / r['ships']:>12.1f} {1e6 * r['pipe_s'] / r['rows']:>11.2f} "
                  f"{'yes' if r['ok'] else 'NO':>9}")
    run = fleet_run(args.fleet_run, 20, 50) if args.fleet_run else None
    if run is not None:
        _print_fleet_run(run)
    failed = [r for _, r in shapes if not r["ok"]] + [r for _, pts in growth for r in pts if not r["ok"]]
    print()
    print(f"pipeline pivot: {', '.join(sorted({r['pivot'] for _, r in shapes}))}; total {time.perf_counter() - t_all:.0f} s")
    if failed:
        print("DATA MISMATCH:", "; ".join(f for r in failed for f in r["failures"][:3]))
        sys.exit(1)


if __name__ == "__main__":
    main()
