"""How far behind the narrow table the wide tables are (issue #13: p95 under 1 s), and what each way costs the writers.

    .venv/bin/python benchmarks/bench_ship_wide_lag.py            # 200 ships × 20 channels (~4 min, 2 cores)
    .venv/bin/python benchmarks/bench_ship_wide_lag.py --quick    # 40 ships, shorter phases (development)

Setup (untimed): ``--ships`` × ``--channels`` narrow rows with ``--history`` readings each, built
through the pipeline's life cycle (plan → prepare → copy → finalize of
:func:`cutover.lifecycle.stages.run_unit_stage`; the verify stage — a GX suite per ship, about a
second each here — is skipped unless ``--verify``).

**Writers.** Each ship sends its minute as one transaction: 4 readings (15 s apart) of every
channel, one ``INSERT … SELECT FROM unnest(…)`` statement, then COMMIT. Time is compressed: a
"minute" lasts ``--minute-s`` seconds (15 by default, 4× real time), each ship at its own random
second of it, so 200 ships commit ~13 batches/s (~1,070 rows/s; the field sends a quarter of that).
Writers are ``--writers`` processes.

**Lag.** Per batch: from the writer's clock right after its COMMIT to the first time a checker
process (polling every 5 ms) reads the batch's last value in the ship's wide table. p50 / p95 / max
over every batch of ``--minutes`` compressed minutes.

**Writer cost.** The writers flat out (no pause, every ship in turn) for ``--rate-s`` seconds:
narrow rows/s and the COMMIT latency of a batch, with no sync, with the follower running, and with
an in-database dual-write trigger (statement-level, transition table, one upsert per ship per
statement; and row-level, one upsert per row). At the paced rate: the COMMIT latency of a batch
with no sync (one compressed minute), with the follower and with the trigger, and the CPU the
follower process used (of one core).

**Options compared.**

* *follower* — :func:`cutover.ship_wide.live.follow` (the ``ship_wide_live`` DAG's task) in its own
  process, ``--poll-s`` between reads; during its lag phase the minute sync (its safety net) walks
  every ship once, taking each ship's lock as it does every minute;
* *trigger* — implemented here only, as the measured alternative: ``AFTER INSERT … REFERENCING NEW
  TABLE … FOR EACH STATEMENT`` running a per-ship ``INSERT … SELECT … GROUP BY created_time ON
  CONFLICT DO UPDATE`` (latest valid row per cell; no dead letters, no new columns: those would need
  the pipeline's rules a second time, in PL/pgSQL, inside the writers' transaction);
* *minute schedule* — ``ship_wide_sync`` as it ran before: a reading waits for the next run
  (0–60 s) and then for the walk over the ships, timed here once for every built ship.

At the end, every ship's wide table is compared with the narrow table (the verification's counts and
checksum) after one pass of the minute sync, to show nothing was lost on the way.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import random
import signal
import statistics
import sys
import time
from typing import Any

SCHEMA = "bench_ship_wide_lag"
NARROW = "tbl_data_timeseries"
FORMATS = ("Decimal", "Integer", "String", "Boolean")


# --- data ---------------------------------------------------------------------------------------

def fmt_of(j: int) -> int:
    """The format of channel ``j``, as :mod:`cutover.samples.ship` assigns them (50/20/20/10 %)."""
    k = j % 10
    return 0 if k < 5 else 1 if k < 7 else 2 if k < 9 else 3


def batch(ship: str, channels: list[str], first: int, rng: random.Random) -> list[list[Any]]:
    """A ship's minute: 4 readings of every channel from time index ``first``, as unnest arrays."""
    from cutover.samples.ship import time_at

    cols: list[list[Any]] = [[] for _ in range(8)]
    for k in range(4):
        t = time_at(first + k)
        for j, ch in enumerate(channels):
            f = fmt_of(j)
            row = [ship, ch, t, FORMATS[f], None, None, None, None]
            row[4 + f] = (round(rng.gauss(50, 20), 6), rng.randint(-10**6, 10**6), f"s{rng.randint(0, 996)}",
                          rng.random() < 0.5)[f]
            for c, v in zip(cols, row, strict=True):
                c.append(v)
    return cols


def insert_sql() -> Any:
    from psycopg import sql

    from cutover.identifiers import pg_ident

    return sql.SQL(
        "INSERT INTO {} (ship_id, data_channel_id, created_time, value_format, double_v, long_v, str_v, bool_v) "
        "SELECT * FROM unnest(%s::text[], %s::text[], %s::timestamptz[], %s::text[], %s::float8[], %s::int8[], "
        "%s::text[], %s::bool[])").format(pg_ident(SCHEMA, NARROW))


def _clean_control(conn: Any) -> None:
    """Remove every control-schema row of this benchmark's schema (bench_ship_wide's cleanup) and its runs."""
    from bench_ship_wide import _clean_control as clean_schema

    clean_schema(conn, SCHEMA)
    conn.execute("DELETE FROM cutover.runs WHERE run_id LIKE 'bench_ship_wide_lag%%'")


def setup(ships: int, channels: int, history: int, verify: bool) -> dict[str, Any]:
    """Seed the narrow table and build every ship through the life cycle; returns ships, channels, timings."""
    from cutover import control
    from cutover.connections import pg_connect
    from cutover.lifecycle import stages
    from cutover.samples import ship
    from cutover.ship_wide.spec import SPEC

    t0 = time.perf_counter()
    with pg_connect() as conn:
        control.ensure_schema(conn)
        conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
        _clean_control(conn)
        sample = ship.generate(conn, SCHEMA, ships=ships, channels=channels, timestamps=history, seed=3)
    with pg_connect(autocommit=True) as conn:
        conn.execute(f"VACUUM ANALYZE {SCHEMA}.{NARROW}")
    seeded = time.perf_counter() - t0
    t0 = time.perf_counter()
    run_id = f"bench_ship_wide_lag_{int(time.time())}"
    params = {"schema": SCHEMA, "units": []}
    for b in stages.plan(SPEC, params, run_id, max_batches=1024):
        for stage in stages.UNIT_STAGES if verify else ("prepare", "copy", "finalize"):
            stages.run_unit_stage(SPEC, stage, params, b, run_id)
    built = time.perf_counter() - t0
    return {"ships": sample.ships, "channels": sample.channels, "rows": sample.rows, "seed_s": seeded, "build_s": built}


def wide_targets(ships: list[str], channel: str) -> dict[str, str]:
    """ship → ``SELECT 1 FROM <wide> WHERE created_time = %s AND <channel's column> IS NOT NULL`` (rendered)."""
    from psycopg import sql

    from cutover import ship_wide as sw
    from cutover.connections import pg_connect
    from cutover.identifiers import pg_ident
    from cutover.ship_wide.ddl import load_wide

    cfg = sw.ShipWideConfig(schema=SCHEMA)
    out = {}
    with pg_connect() as conn:
        for s in ships:
            wide = load_wide(conn, cfg, s)
            assert wide is not None, s
            out[s] = sql.SQL("SELECT 1 FROM {} WHERE created_time = %s AND {} IS NOT NULL").format(
                wide.ident, pg_ident(wide.columns[channel])).as_string(conn).replace("%%", "%")
    return out


# --- processes ----------------------------------------------------------------------------------

def _paced_writer(ships: list[str], channels: list[str], plan: list[tuple[float, str, int]], out: Any) -> None:
    """Insert each planned batch at its wall-clock time; report (ship, last time index, commit time)."""
    from cutover.connections import pg_connect
    from cutover.identifiers import with_params

    q = with_params(insert_sql())
    rng = random.Random(hash(tuple(ships)))
    with pg_connect() as conn:
        for due, ship, first in plan:
            data = batch(ship, channels, first, rng)
            pause = due - time.time()
            if pause > 0:
                time.sleep(pause)
            t0 = time.perf_counter()
            conn.execute(q, data)
            conn.commit()
            out.put((ship, first + 3, time.time(), time.perf_counter() - t0))
    out.put(None)


def _flat_writer(ships: list[str], channels: list[str], base: int, seconds: float, out: Any) -> None:
    """Insert batches flat out for ``seconds``; report rows, batches, commit latencies and the last batch per ship."""
    from cutover.connections import pg_connect
    from cutover.identifiers import with_params

    q = with_params(insert_sql())
    rng = random.Random(base + len(ships))
    rows = n = 0
    lat: list[float] = []
    last: dict[str, int] = {}
    with pg_connect() as conn:
        t_end = time.time() + seconds
        while time.time() < t_end:
            ship = ships[n % len(ships)]
            first = base + 4 * (n // len(ships))
            data = batch(ship, channels, first, rng)
            t0 = time.perf_counter()
            conn.execute(q, data)
            conn.commit()
            lat.append(time.perf_counter() - t0)
            rows += len(data[0])
            n += 1
            last[ship] = first + 3
    out.put({"rows": rows, "batches": n, "lat": lat, "last": last})


def _checker(targets: dict[str, str], inbox: Any, writers: int, out: Any, timeout_s: float) -> None:
    """Poll the wide tables for every reported batch; report the lags (s) and the batches never seen."""
    import psycopg

    from cutover.connections import resolve
    from cutover.samples.ship import time_at

    done = 0
    waiting: list[tuple[str, int, float]] = []
    lags: list[float] = []
    commits: list[float] = []
    last_news = time.time()
    with psycopg.connect(resolve("postgres_target").pg_conninfo(), autocommit=True) as conn:
        conn.execute("SET TimeZone = 'UTC'")
        while True:
            while not inbox.empty():
                item = inbox.get()
                if item is None:
                    done += 1
                else:
                    waiting.append(item[:3])
                    commits.append(item[3])
                last_news = time.time()
            if not targets:
                waiting = []
            still = []
            for ship, t, committed in waiting:
                if conn.execute(targets[ship], (time_at(t),)).fetchone():
                    lags.append(time.time() - committed)
                else:
                    still.append((ship, t, committed))
            waiting = still
            if done == writers and (not waiting or time.time() - last_news > timeout_s):
                break
            time.sleep(0.005)
    out.put({"lags": lags, "unseen": len(waiting), "commits": commits})


def _walker(at: float, out: Any) -> None:
    """At wall time ``at``, one pass of the minute sync over every built ship; report it."""
    time.sleep(max(at - time.time(), 0))
    out.put(minute_walk())


def _follower(poll_s: float, ready: Any, out: Any) -> None:
    """Run the live follower until SIGTERM; report its totals."""
    import logging
    import threading

    from cutover import ship_wide as sw
    from cutover.ship_wide.live import follow

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    ready.set()
    totals = follow(sw.ShipWideConfig(schema=SCHEMA), stop_after_s=3600, poll_s=poll_s, stop=stop, log_every_s=1e9)
    out.put(totals)


# --- phases -------------------------------------------------------------------------------------

class Bench:
    """The shared setup of the phases."""

    def __init__(self, args: argparse.Namespace, ships: list[str], channels: list[str], history: int) -> None:
        self.args, self.ships, self.channels = args, ships, channels
        self.ctx = mp.get_context("spawn")
        self.targets = wide_targets(ships, channels[-1])
        self.next_index = history + 4  # time indexes not used yet (each phase takes its own)
        self.follower: Any = None
        self.follower_out: Any = None

    def _groups(self) -> list[list[str]]:
        n = self.args.writers
        return [self.ships[i::n] for i in range(n) if self.ships[i::n]]

    def paced(self, minutes: int, *, check: bool = True, walk: bool = False) -> dict[str, Any]:
        """Every ship sends its minute at its own second of each compressed minute; the lag of each batch
        (``check``), the writers' COMMIT latency, and the follower's CPU while it ran (when one runs). With
        ``walk`` the minute sync walks every ship once, from the second minute on, as it would every minute."""
        rnd = random.Random(11)
        offsets = {s: rnd.random() * self.args.minute_s for s in self.ships}
        start = time.time() + 1.0
        base = self.next_index
        self.next_index += 4 * minutes + 4
        inbox, out = self.ctx.Queue(), self.ctx.Queue()
        procs = []
        for group in self._groups():
            plan = sorted((start + m * self.args.minute_s + offsets[s], s, base + 4 * m) for m in range(minutes) for s in group)
            procs.append(self.ctx.Process(target=_paced_writer, args=(group, self.channels, plan, inbox)))
        checker = self.ctx.Process(target=_checker, args=(self.targets if check else {}, inbox, len(procs), out,
                                                          30.0 if check else 0.0))
        walker, walked = None, self.ctx.Queue()
        if walk:
            walker = self.ctx.Process(target=_walker, args=(start + self.args.minute_s, walked))
        cpu0, t0 = self.follower_cpu(), time.time()
        checker.start()
        for p in [*procs, *([walker] if walker else [])]:
            p.start()
        res = out.get()
        for p in [*procs, checker, *([walker] if walker else [])]:
            p.join()
        cpu = (self.follower_cpu() - cpu0) / (time.time() - t0) if self.follower is not None else None
        lags = res["lags"]
        return {"batches": len(res["commits"]), "unseen": res["unseen"], **_stats(lags),
                "commit_p50_ms": 1000 * _pct(res["commits"], 0.5), "commit_p95_ms": 1000 * _pct(res["commits"], 0.95),
                "follower_cpu": cpu, "walk": walked.get() if walker else None}

    def follower_cpu(self) -> float:
        """CPU seconds the follower process used so far (0 without one)."""
        if self.follower is None or not self.follower.is_alive():
            return 0.0
        with open(f"/proc/{self.follower.pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def flat(self, seconds: float) -> dict[str, Any]:
        """Writers flat out for ``seconds``: rows/s and COMMIT latency of a batch; then how long until all is readable."""
        base = self.next_index
        self.next_index += 100_000
        out = self.ctx.Queue()
        procs = [self.ctx.Process(target=_flat_writer, args=(g, self.channels, base, seconds, out)) for g in self._groups()]
        for p in procs:
            p.start()
        parts = [out.get() for _ in procs]
        for p in procs:
            p.join()
        rows = sum(p["rows"] for p in parts)
        lat = [x for p in parts for x in p["lat"]]
        last = {s: t for p in parts for s, t in p["last"].items()}
        return {"rows": rows, "rows_per_s": rows / seconds, "batches": sum(p["batches"] for p in parts),
                "commit_p50_ms": 1000 * _pct(lat, 0.5), "commit_p95_ms": 1000 * _pct(lat, 0.95), "last": last,
                "stopped_at": time.time()}

    def wait_visible(self, last: dict[str, int], since: float, timeout_s: float = 120.0) -> float | None:
        """Seconds from ``since`` until every ship's last batch is readable (None: not within the timeout)."""
        from cutover.connections import pg_connect
        from cutover.samples.ship import time_at

        left = dict(last)
        with pg_connect(autocommit=True) as conn:
            while left and time.time() - since < timeout_s:
                for s, t in list(left.items()):
                    if conn.execute(self.targets[s], (time_at(t),)).fetchone():
                        del left[s]
                if left:
                    time.sleep(0.02)
        return None if left else time.time() - since

    def start_follower(self) -> None:
        ready = self.ctx.Event()
        self.follower_out = self.ctx.Queue()
        self.follower = self.ctx.Process(target=_follower, args=(self.args.poll_s, ready, self.follower_out))
        self.follower.start()
        ready.wait(60)

    def stop_follower(self) -> dict[str, Any]:
        self.follower.terminate()  # SIGTERM: the follower finishes its poll and returns
        totals = self.follower_out.get(timeout=60)
        self.follower.join()
        self.follower = None
        return dict(totals)


def _pct(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    s = sorted(values)
    return s[min(len(s) - 1, max(0, math.ceil(q * len(s)) - 1))]


def _stats(lags: list[float]) -> dict[str, Any]:
    return {"p50_s": _pct(lags, 0.5), "p95_s": _pct(lags, 0.95), "max_s": max(lags) if lags else math.nan,
            "mean_s": statistics.fmean(lags) if lags else math.nan, "n": len(lags)}


# --- the trigger (the measured alternative) ------------------------------------------------------

def install_trigger(ships: list[str], mode: str) -> None:
    """A dual-write trigger on the narrow table that upserts into the wide tables (``statement`` or ``row``)."""
    from psycopg import sql

    from cutover import ship_wide as sw
    from cutover.connections import pg_connect
    from cutover.identifiers import pg_ident
    from cutover.ship_wide.config import FORMAT_COLUMN, VALID_SQL, VALUE_TEXT_SQL, accepted_format
    from cutover.ship_wide.ddl import load_wide

    cfg = sw.ShipWideConfig(schema=SCHEMA)
    narrow = pg_ident(SCHEMA, NARROW)
    with pg_connect() as conn:
        drop_trigger(conn)
        conn.execute(f"CREATE TABLE {SCHEMA}.bench_trigger_map (ship_id text PRIMARY KEY, stmt text NOT NULL)")
        conn.execute(f"""CREATE TABLE {SCHEMA}.bench_trigger_cols (ship_id text, channel text, tbl text, col text,
                         typ text, fmt text, PRIMARY KEY (ship_id, channel))""")
        for s in ships:
            wide = load_wide(conn, cfg, s)
            assert wide is not None
            cols, aggs, sets = [pg_ident("created_time")], [pg_ident("created_time")], []
            for ch in wide.ordered_channels():
                col = wide.columns[ch]
                fmt = accepted_format(wide.types[col])
                value = sql.SQL(FORMAT_COLUMN[fmt] if fmt else VALUE_TEXT_SQL)
                cond = sql.SQL("data_channel_id = {} AND {}").format(sql.Literal(ch), sql.SQL(VALID_SQL))
                if fmt:
                    cond += sql.SQL(" AND value_format = {}").format(sql.Literal(fmt))
                cols.append(pg_ident(col))
                aggs.append(sql.SQL("(array_agg({} ORDER BY id DESC) FILTER (WHERE {}))[1]").format(value, cond))
                sets.append(sql.SQL("{c} = coalesce(EXCLUDED.{c}, w.{c})").format(c=pg_ident(col)))
                conn.execute(f"INSERT INTO {SCHEMA}.bench_trigger_cols VALUES (%s, %s, %s, %s, %s, %s)",
                             (s, ch, wide.ident.as_string(conn), pg_ident(col).as_string(conn), wide.types[col], fmt))
            stmt = sql.SQL("INSERT INTO {t} AS w ({cols}) SELECT {aggs} FROM new_rows WHERE ship_id = $1 "
                           "GROUP BY created_time ON CONFLICT (created_time) DO UPDATE SET {sets}").format(
                t=wide.ident, cols=sql.SQL(", ").join(cols), aggs=sql.SQL(", ").join(aggs), sets=sql.SQL(", ").join(sets))
            conn.execute(f"INSERT INTO {SCHEMA}.bench_trigger_map VALUES (%s, %s)", (s, stmt.as_string(conn)))
        if mode == "statement":
            conn.execute(f"""CREATE FUNCTION {SCHEMA}.bench_dual_write() RETURNS trigger LANGUAGE plpgsql AS $$
                DECLARE r record;
                BEGIN
                  FOR r IN SELECT m.ship_id, m.stmt FROM {SCHEMA}.bench_trigger_map m
                           WHERE m.ship_id IN (SELECT DISTINCT ship_id FROM new_rows) LOOP
                    EXECUTE r.stmt USING r.ship_id;
                  END LOOP;
                  RETURN NULL;
                END $$""")
            conn.execute(sql.SQL("CREATE TRIGGER bench_dual_write AFTER INSERT ON {} REFERENCING NEW TABLE AS new_rows "
                                 "FOR EACH STATEMENT EXECUTE FUNCTION {}.bench_dual_write()").format(narrow, pg_ident(SCHEMA)))
        else:
            conn.execute(f"""CREATE FUNCTION {SCHEMA}.bench_dual_write() RETURNS trigger LANGUAGE plpgsql AS $$
                DECLARE m record;
                BEGIN
                  SELECT * INTO m FROM {SCHEMA}.bench_trigger_cols c
                   WHERE c.ship_id = NEW.ship_id AND c.channel = NEW.data_channel_id;
                  IF FOUND AND (m.fmt IS NULL OR NEW.value_format = m.fmt)
                     AND num_nonnulls(NEW.double_v, NEW.long_v, NEW.str_v, NEW.bool_v) = 1 THEN
                    EXECUTE format('INSERT INTO %s AS w (created_time, %s) VALUES ($1, $2::%s) '
                                   'ON CONFLICT (created_time) DO UPDATE SET %s = EXCLUDED.%s',
                                   m.tbl, m.col, m.typ, m.col, m.col)
                      USING NEW.created_time, coalesce(NEW.double_v::text, NEW.long_v::text, NEW.str_v, NEW.bool_v::text);
                  END IF;
                  RETURN NULL;
                END $$""")
            conn.execute(sql.SQL("CREATE TRIGGER bench_dual_write AFTER INSERT ON {} FOR EACH ROW "
                                 "EXECUTE FUNCTION {}.bench_dual_write()").format(narrow, pg_ident(SCHEMA)))


def drop_trigger(conn: Any) -> None:
    conn.execute(f"DROP TRIGGER IF EXISTS bench_dual_write ON {SCHEMA}.{NARROW}")
    conn.execute(f"DROP FUNCTION IF EXISTS {SCHEMA}.bench_dual_write()")
    conn.execute(f"DROP TABLE IF EXISTS {SCHEMA}.bench_trigger_map, {SCHEMA}.bench_trigger_cols")


# --- the minute schedule and the final check -----------------------------------------------------

def minute_walk() -> dict[str, Any]:
    """One pass of the minute sync over every built ship (what ``ship_wide_sync`` does each minute)."""
    from cutover import ship_wide as sw

    cfg = sw.ShipWideConfig(schema=SCHEMA)
    t0 = time.perf_counter()
    ships = sw.built_ships(cfg)
    rows = sum(int(sw.sync_ship(cfg, s).get("narrow_rows", 0)) for s in ships)
    return {"ships": len(ships), "seconds": time.perf_counter() - t0, "narrow_rows": rows}


def check_all(ships: list[str]) -> dict[str, Any]:
    """Every ship: narrow (loadable rows) and wide agree on distinct times, cells and checksum."""
    from cutover import ship_wide as sw
    from cutover.connections import pg_connect
    from cutover.ship_wide.ddl import load_wide
    from cutover.ship_wide.plan import session_setup
    from cutover.ship_wide.verify import narrow_stats, wide_stats

    cfg = sw.ShipWideConfig(schema=SCHEMA)
    bad = []
    with pg_connect() as conn:
        session_setup(conn)
        for s in ships:
            wide = load_wide(conn, cfg, s)
            assert wide is not None
            n, w = narrow_stats(conn, cfg, wide, 2**62), wide_stats(conn, wide)
            if (n["times"], n["cells"], n["checksum"]) != (w["rows"], w["cells"], w["checksum"]):
                bad.append(s)
    return {"ok": not bad, "failures": bad[:10]}


# --- main ---------------------------------------------------------------------------------------

def _lag_line(name: str, r: dict[str, Any]) -> str:
    miss = f", {r['unseen']} never seen" if r.get("unseen") else ""
    cpu = f"; follower CPU {100 * r['follower_cpu']:.0f} % of a core" if r.get("follower_cpu") is not None else ""
    return (f"  {name:<36} p50 {r['p50_s'] * 1000:6.0f} ms  p95 {r['p95_s'] * 1000:6.0f} ms  "
            f"max {r['max_s'] * 1000:6.0f} ms  ({r['n']} batches{miss}); writers' COMMIT p50 "
            f"{r['commit_p50_ms']:.1f} ms p95 {r['commit_p95_ms']:.1f} ms{cpu}")


def _rate_line(name: str, r: dict[str, Any], base: float | None) -> str:
    rel = f"  ({100 * r['rows_per_s'] / base:.0f} % of no sync)" if base else ""
    return (f"  {name:<36} {r['rows_per_s']:9,.0f} rows/s   COMMIT of a batch p50 {r['commit_p50_ms']:6.1f} ms "
            f"p95 {r['commit_p95_ms']:6.1f} ms{rel}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="40 ships, shorter phases (development)")
    ap.add_argument("--ships", type=int, default=200)
    ap.add_argument("--channels", type=int, default=20)
    ap.add_argument("--history", type=int, default=40, help="readings per channel before the build")
    ap.add_argument("--minute-s", type=float, default=15.0, help="length of a compressed minute (s)")
    ap.add_argument("--minutes", type=int, default=4, help="compressed minutes of the follower's lag phase")
    ap.add_argument("--trigger-minutes", type=int, default=2, help="compressed minutes of the trigger's lag phase")
    ap.add_argument("--rate-s", type=float, default=10.0, help="seconds of each flat-out writer phase")
    ap.add_argument("--writers", type=int, default=4, help="writer processes")
    ap.add_argument("--poll-s", type=float, default=0.2, help="the follower's poll interval (the DAG's default)")
    ap.add_argument("--verify", action="store_true", help="run the build's verify stage too (GX, ~1 s per ship)")
    ap.add_argument("--json", help="also write the results to this file")
    args = ap.parse_args()
    if args.quick:
        args.ships, args.minutes, args.trigger_minutes, args.rate_s, args.minute_s = 40, 2, 1, 5.0, 10.0

    from cutover import connections

    connections.apply_default_env()  # the children inherit the resolved connections
    print(f"bench_ship_wide_lag: {args.ships} ships × {args.channels} channels, a minute = {args.minute_s:g} s "
          f"({60 / args.minute_s:g}× real time), {args.writers} writer processes, follower poll {args.poll_s:g} s, "
          f"{os.cpu_count()} CPUs", flush=True)
    t_all = time.perf_counter()
    s = setup(args.ships, args.channels, args.history, args.verify)
    print(f"setup: {s['rows']:,} narrow rows seeded in {s['seed_s']:.1f} s; {len(s['ships'])} ships built through the "
          f"life cycle ({'plan → prepare → copy → finalize → verify' if args.verify else 'plan → prepare → copy → finalize'})"
          f" in {s['build_s']:.1f} s", flush=True)
    b = Bench(args, s["ships"], s["channels"], args.history)
    res: dict[str, Any] = {"args": vars(args), "setup": {k: v for k, v in s.items() if k not in ("ships", "channels")}}

    res["paced_none"] = r0 = b.paced(1, check=False)
    print(f"  {'paced minute, no sync':<36} writers' COMMIT p50 {r0['commit_p50_ms']:.1f} ms "
          f"p95 {r0['commit_p95_ms']:.1f} ms ({r0['batches']} batches)", flush=True)
    res["rate_none"] = b.flat(args.rate_s)
    print(_rate_line("writers flat out, no sync", res["rate_none"], None), flush=True)

    b.start_follower()
    t0 = time.time()
    caught = b.wait_visible(res["rate_none"]["last"], t0)
    print(f"  follower started: caught up with the {res['rate_none']['rows']:,} rows written without it in "
          f"{caught if caught is not None else math.nan:.1f} s", flush=True)
    res["rate_follower"] = b.flat(args.rate_s)
    behind = b.wait_visible(res["rate_follower"]["last"], res["rate_follower"]["stopped_at"])
    res["rate_follower"]["behind_s"] = behind
    print(_rate_line("writers flat out, follower running", res["rate_follower"], res["rate_none"]["rows_per_s"])
          + f"; all readable {behind if behind is not None else math.nan:.2f} s after the writers stopped", flush=True)

    res["lag_follower"] = lf = b.paced(args.minutes, walk=True)
    res["follower_totals"] = ft = b.stop_follower()
    print(_lag_line(f"lag, follower (poll {args.poll_s:g} s)", lf), flush=True)
    print(f"  (the minute sync walked the {lf['walk']['ships']} ships once meanwhile, in {lf['walk']['seconds']:.1f} s; "
          f"follower totals: {ft['polls']:,} polls, {ft['narrow_rows']:,} narrow rows, {ft['late_rows']:,} late, "
          f"{ft['locked_skips']} ships skipped while locked, {ft['errors']} errors)", flush=True)

    from cutover.connections import pg_connect

    for mode in ("row", "statement"):
        install_trigger(s["ships"], mode)
        res[f"rate_trigger_{mode}"] = r = b.flat(args.rate_s)
        print(_rate_line(f"writers flat out, {mode}-level trigger", r, res["rate_none"]["rows_per_s"]), flush=True)
    res["lag_trigger"] = b.paced(args.trigger_minutes)
    print(_lag_line("lag, statement-level trigger", res["lag_trigger"]), flush=True)
    with pg_connect() as conn:
        drop_trigger(conn)

    res["minute_walk"] = w = minute_walk()
    print(f"  minute schedule: one walk of the minute sync over {w['ships']} ships took {w['seconds']:.1f} s; a reading "
          f"waits for the next run (0–60 s) and then its ship's turn: lag ≈ 30 s + {w['seconds'] / 2:.1f} s median, "
          f"up to 60 s + {w['seconds']:.1f} s", flush=True)
    res["check"] = c = check_all(s["ships"])
    print(f"same data (narrow vs wide, every ship, counts + checksum): {'yes' if c['ok'] else 'NO ' + str(c['failures'])}")
    print(f"total {time.perf_counter() - t_all:.0f} s")
    if args.json:
        for k in list(res):
            if isinstance(res[k], dict):
                res[k].pop("last", None)
        with open(args.json, "w") as fh:
            json.dump(res, fh, indent=2, default=str)


if __name__ == "__main__":
    main()
