"""Benchmark ``mysql_to_postgres`` live: writers at fixed rates during build → verify → cutover → writes on
PostgreSQL → rollback, on the real MariaDB and PostgreSQL.

    .venv/bin/python benchmarks/bench_live_mysql_to_postgres.py                                # 500,2000,5000 rows/s, 60 s
    .venv/bin/python benchmarks/bench_live_mysql_to_postgres.py --rates 500,2000,5000 --seconds 20   # short mode

Per rate, from fresh tables (``--tables`` tables of ``--rows`` rows: BIGINT key, Korean VARCHAR, DECIMAL,
TEXT): one cooperative writer per table (:class:`cutover.samples.live_writer.TableWriter` in a
:class:`~cutover.samples.live_writer.WriterPool`: one OS process per table, ``--writer-procs`` for more;
the protocol of :mod:`cutover.mysql_to_postgres.cutover`: it reads the table's routing entry, writes MySQL
or PostgreSQL as it says, waits while ``paused``, and reads it again after its transaction's first
statement; inserts, updates, deletes, key changes, ``rows_per_tx`` changed rows per transaction), sharing
the rate; a forward sync loop (``sync.sync_units``, as ``mysql_to_postgres_sync`` runs it) and, after the
switch, a reverse loop (``reverse.run``). Phases and figures as in ``bench_live_tenant_split.py`` (whose
helpers this imports): the build timed per stage (*copy end → verified* = finalize + verify), steady
forward lag, a backlog catch-up (*catch-up rows/s*), the cutover of the first table (write pause, writer
latency of the paused table and the others), ``--seconds`` on PostgreSQL (reverse lag), ``--strays``
writes to MySQL by a client that ignores the route, rollback (the life cycle's write pause), and the end
state: every table compared MySQL ↔ PostgreSQL (rows that differ, must be 0) and the writers' record of
each row against MySQL (writes lost on the old side, must be 0). Results:
``benchmarks/results/live_mysql_to_postgres.json``. Names: database ``h6_live_m2p``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_live_tenant_split import (  # noqa: E402 - the shared helpers, beside this file
    END_ROWS,
    WRITER_ROWS,
    SyncLoop,
    latency_figures,
    pct,
    print_table,
    say,
    write_results,
)

DB = "h6_live_m2p"
SCHEMA = "h6_live_m2p"
PIPELINE = "mysql_to_postgres"
KEY_BASE = 10**9


def _root(database: str = "") -> Any:
    import MySQLdb

    from cutover.connections import MYSQL_SOURCE, resolve

    conn = MySQLdb.connect(**resolve(MYSQL_SOURCE).mysql_kwargs(database))
    cur = conn.cursor()
    cur.execute("SET SESSION time_zone = '+00:00', binlog_format = 'ROW'")
    cur.close()
    return conn


def _drop(cfg: Any, tables: list[str]) -> None:
    from cutover import control
    from cutover.connections import CONTROL, MYSQL_SOURCE, POSTGRES_TARGET, mysql_connect, pg_connect
    from cutover.identifiers import quote_mysql, quote_pg
    from cutover.mysql_to_postgres import build, load

    try:
        from cutover.mysql_to_postgres import reverse

        for t in tables:
            try:
                reverse.stop(cfg, build.unit_key(cfg, t))
            except Exception:  # noqa: BLE001 - none started
                pass
    except ImportError:
        pass
    with mysql_connect(MYSQL_SOURCE, database="") as conn:
        conn.cursor().execute(f"DROP DATABASE IF EXISTS {quote_mysql(DB)}")
    with pg_connect(POSTGRES_TARGET) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {quote_pg(SCHEMA)} CASCADE")
        load.ensure_state(conn)
        for t in ("m2p_checkpoints", "m2p_positions"):
            conn.execute(f"DELETE FROM {load.STATE_SCHEMA}.{t} WHERE starts_with(unit_key, %s)", (cfg.scope + ":",))
    with pg_connect(CONTROL) as conn:
        control.ensure_schema(conn)
        for t in ("routes", "route_history", "streams", "stray_writes"):
            conn.execute(f"DELETE FROM {control.SCHEMA}.{t} WHERE pipeline = %s AND scope = %s", (PIPELINE, cfg.scope))
        for t in ("units", "switches", "switch_history", "dead_letters"):
            conn.execute(f"DELETE FROM {control.SCHEMA}.{t} WHERE pipeline = %s AND starts_with(unit_key, %s)",
                         (PIPELINE, cfg.scope + ":"))


def _seed(tables: list[str], rows: int) -> None:
    from cutover.connections import MYSQL_SOURCE
    from cutover.identifiers import quote_mysql
    from cutover.mysql_to_postgres.readonly import ensure_read_only_user

    conn = _root()
    cur = conn.cursor()
    cur.execute(f"CREATE DATABASE {quote_mysql(DB)} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
    for t in tables:
        q = f"{quote_mysql(DB)}.{quote_mysql(t)}"
        cur.execute(f"CREATE TABLE {q} (id BIGINT NOT NULL PRIMARY KEY, name VARCHAR(40) NOT NULL, "
                    "amount DECIMAL(12,2) NOT NULL, note TEXT NULL) ENGINE=InnoDB")
        cur.execute(f"INSERT INTO {q} SELECT seq, CONCAT('주문 ', seq), seq / 100, IF(seq % 3 = 0, NULL, 'n ✓') "
                    f"FROM {quote_mysql(DB)}.seq_1_to_{rows}")
    conn.commit()
    conn.close()
    ensure_read_only_user(MYSQL_SOURCE, "cutover_ro", [DB])


def _table_rows(tables: list[str]) -> tuple[dict[str, dict[int, tuple[Any, ...]]], dict[str, dict[int, tuple[Any, ...]]]]:
    """Every table's rows (id → name, amount, note) on MySQL and on PostgreSQL."""
    from cutover.connections import POSTGRES_TARGET, pg_connect
    from cutover.identifiers import quote_mysql, quote_pg

    my: dict[str, dict[int, tuple[Any, ...]]] = {}
    pgr: dict[str, dict[int, tuple[Any, ...]]] = {}
    conn = _root()
    cur = conn.cursor()
    for t in tables:
        cur.execute(f"SELECT id, name, amount, note FROM {quote_mysql(DB)}.{quote_mysql(t)}")
        my[t] = {int(r[0]): (str(r[1]), Decimal(r[2]), r[3]) for r in cur.fetchall()}
    conn.close()
    with pg_connect(POSTGRES_TARGET) as c:
        for t in tables:
            pgr[t] = {int(r[0]): (str(r[1]), Decimal(r[2]), r[3]) for r in c.execute(
                f"SELECT id, name, amount, note FROM {quote_pg(SCHEMA)}.{quote_pg(t)}").fetchall()}
    return my, pgr


def one_rate(rate: int, a: argparse.Namespace) -> dict[str, Any]:
    """Every phase at one write rate (changed rows/s over all tables); the figures."""
    from cutover import control
    from cutover.connections import CONTROL, pg_connect
    from cutover.identifiers import quote_mysql
    from cutover.lifecycle import stages
    from cutover.lifecycle.switch import rollback, split_ready, switch
    from cutover.mysql_to_postgres import build, reverse, sync
    from cutover.mysql_to_postgres.config import MysqlToPostgresConfig
    from cutover.mysql_to_postgres.spec import SPEC
    from cutover.samples.live_writer import WriterPool, WriterSpec

    tables = [f"orders_{i}" for i in range(1, a.tables + 1)]
    params = {"source_database": DB, "target_schema": SCHEMA, "tables": tables, "gx_gate": False, "chunk_rows": 5000}
    cfg = MysqlToPostgresConfig.from_params(params)
    res: dict[str, Any] = {"rate": rate, "pipeline": PIPELINE}
    _drop(cfg, tables)
    _seed(tables, a.rows)
    pool = WriterPool([WriterSpec("table", {"database": DB, "schema": SCHEMA, "table": t, "scope": cfg.scope,
                                            "seed_rows": a.rows, "key_base": KEY_BASE + i * 10**8, "seed": i})
                       for i, t in enumerate(tables, 1)], rate, procs_per_unit=a.writer_procs, rows_per_tx=a.rows_per_tx)
    fwd = SyncLoop("forward", lambda: sync.sync_units(cfg))
    rev = SyncLoop("reverse", lambda: reverse.run(cfg))
    first = tables[0]
    pool.start()
    try:
        run_id = f"h6_live_m2p_build_{rate}"
        timings: dict[str, float] = {}
        t0 = time.monotonic()
        batches = stages.plan(SPEC, params, run_id, max_batches=64)
        timings["plan"] = round(time.monotonic() - t0, 3)
        for stage in stages.UNIT_STAGES:
            t0 = time.monotonic()
            for batch in batches:
                try:
                    stages.run_unit_stage(SPEC, stage, params, batch, run_id)
                except stages.UnitsFailed as exc:
                    say(f"  {stage}: {exc}")
            timings[stage] = round(time.monotonic() - t0, 3)
        try:
            rep = stages.report(SPEC, params, run_id)
        except stages.RunFailed as exc:
            rep = exc.report
        res["build"] = {"green": rep.green, "stages_s": timings, "states": rep.states, "reason": rep.reason}
        res["copy_end_to_verified_s"] = round(timings.get("finalize", 0) + timings.get("verify", 0), 3)
        fwd.start()
        s0 = time.time()
        time.sleep(a.steady)
        steady = (s0 + 1, time.time() - 1)
        fwd.held.set()
        time.sleep(0.5 + a.backlog)  # a round in flight ends, then the backlog piles up
        t0 = time.monotonic()
        out = sync.sync_units(cfg)
        secs = time.monotonic() - t0
        fwd.rounds.append((time.time() - secs, time.time(), out))  # the backlog round resolves the steady lags
        fwd.held.clear()
        lags = fwd.lags(*steady)
        res["forward_lag"] = {"p50_s": pct(lags, 0.5), "p95_s": pct(lags, 0.95), "samples": len(lags)}
        n = int(((out or {}).get("binlog") or {}).get("changes") or 0)
        res["catch_up"] = {"rows": n, "seconds": round(secs, 3), "rows_per_s": round(n / secs, 1) if secs else None}
        os.environ["CUTOVER_REQUIRE_APPROVAL"] = "off"
        ready, blocked = split_ready(SPEC, cfg, [first])
        res["cutover"] = {"ready_units": len(ready), "blocked": blocked}
        info: dict[str, Any] = {}
        if ready and not blocked:
            try:
                cut = switch(SPEC, cfg, ready, f"h6_live_m2p_cut_{rate}", approval=None)
                info = (cut.get("groups") or {}).get(str(build.unit_key(cfg, first))) or {}
            except Exception as exc:  # noqa: BLE001 - reported, the rest goes on
                res["cutover"]["error"] = f"{type(exc).__name__}: {exc}"[:500]
        res["cutover"].update({k: info.get(k) for k in ("paused_s", "rows_reproved", "fence", "pre_fence")})
        t_cut = time.time()
        window = (t_cut - float(info["paused_s"]), t_cut) if info.get("paused_s") is not None else None
        rev.start()
        n0 = time.time()
        for i in range(a.strays):
            time.sleep(a.seconds / (a.strays + 1))
            conn = _root(DB)
            conn.cursor().execute(f"UPDATE {quote_mysql(first)} SET note = %s WHERE id = %s", (f"stray {i}", a.rows - i))
            conn.commit()
            conn.close()
        time.sleep(max(0.0, a.seconds - (time.time() - n0)))
        lags = rev.lags(n0 + 1, time.time() - 1)
        res["reverse_lag"] = {"p50_s": pct(lags, 0.5), "p95_s": pct(lags, 0.95)}
        rev.stop()
        t0 = time.monotonic()
        try:  # the life cycle pauses the table's writers on PostgreSQL itself (around_rollback)
            rb = rollback(SPEC, cfg, [first], f"h6_live_m2p_rollback_{rate}")
            group = next(iter((rb.get("groups") or {}).values()), {})
            res["rollback"] = {"seconds": round(time.monotonic() - t0, 3), "paused_s": group.get("paused_s"),
                               "reproved_rows": group.get("reproved_rows"), "phases": group.get("phases"),
                               "drained": rb["target_writes"].get("reverse_drained")}
        except Exception as exc:  # noqa: BLE001 - reported
            res["rollback"] = {"error": f"{type(exc).__name__}: {exc}"[:500]}
        time.sleep(2)
    finally:
        stats = pool.stop()
        fwd.stop()
        rev.stop()
    say("  " + pool.describe())
    sync.sync_units(cfg)
    summ = pool.summary()
    commits = {t: [(c[0], c[1]) for c in s.commits] for t, s in stats.items()}
    res["writer"] = {**{k: v for k, v in summ.items() if k != "per_unit"},
                     "messages": [m for s in stats.values() for m in s.error_messages[:2]],
                     "per_table": {t: {"role": "paused" if t == first else "other", "sides": summ["per_unit"][t]["per_side"],
                                       "rows": s.rows, "aborted": s.aborted, "behind": s.behind,
                                       **latency_figures(s.latencies, commits[t], window)} for t, s in stats.items()},
                     "by_role": {"paused": latency_figures(stats[first].latencies, commits[first], window),
                                 "other": latency_figures([x for t, s in stats.items() if t != first for x in s.latencies],
                                                          [c for t in stats if t != first for c in commits[t]], window)}}
    my, pgr = _table_rows(tables)
    diff = {"missing_on_target": 0, "extra_on_target": 0, "different": 0, "lost_on_source": 0}
    for t in tables:
        diff["missing_on_target"] += len(set(my[t]) - set(pgr[t]))
        diff["extra_on_target"] += len(set(pgr[t]) - set(my[t]))
        diff["different"] += sum(1 for k in set(my[t]) & set(pgr[t]) if my[t][k] != pgr[t][k])
        for k, want in stats[t].expected.get(t, {}).items():
            got = my[t].get(k)
            diff["lost_on_source"] += (got[:2] if got else None) != (None if want is None else (want["name"], want["amount"]))
    res["rows_differ"] = diff
    with pg_connect(CONTROL) as c:
        res["stray_writes_seen"] = len(control.list_stray_writes(c, PIPELINE, cfg.scope))
        res["streams"] = [{k: s[k] for k in ("name", "direction", "state", "lag_s", "applied")}
                          for s in control.list_streams(c, PIPELINE) if s["scope"] == cfg.scope]
    res["sync_errors"] = {"forward": fwd.errors[:3], "reverse": rev.errors[:3]}
    _drop(cfg, tables)
    return res


TABLE_ROWS = [
    *WRITER_ROWS,
    ("build green", "build.green", "", 0),
    ("copy end → verified (s)", "copy_end_to_verified_s", "", 2),
    ("catch-up rows/s (backlog)", "catch_up.rows_per_s", "", 0),
    ("forward lag p50 (s)", "forward_lag.p50_s", "", 3),
    ("forward lag p95 (s)", "forward_lag.p95_s", "", 3),
    ("write pause (s)", "cutover.paused_s", "", 3),
    ("paused table latency p50 (s)", "writer.by_role.paused.p50_s", "", 4),
    ("paused table latency p99 (s)", "writer.by_role.paused.p99_s", "", 4),
    ("paused table latency max (s)", "writer.by_role.paused.max_s", "", 4),
    ("other tables latency p50 (s)", "writer.by_role.other.p50_s", "", 4),
    ("other tables latency p99 (s)", "writer.by_role.other.p99_s", "", 4),
    ("other tables latency max (s)", "writer.by_role.other.max_s", "", 4),
    ("other tables commits during the pause", "writer.by_role.other.commits_during_pause", "", 0),
    *END_ROWS,
]


def main(argv: list[str] | None = None) -> int:
    """Run every rate; print the table; write the JSON."""
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    p.add_argument("--rates", default="500,2000,5000", help="changed rows/s, comma-separated")
    p.add_argument("--seconds", type=float, default=60, help="seconds of writes on PostgreSQL after the switch")
    p.add_argument("--steady", type=float, default=10, help="seconds of steady forward sync before the backlog")
    p.add_argument("--backlog", type=float, default=5, help="seconds the sync is held to build a backlog")
    p.add_argument("--tables", type=int, default=3)
    p.add_argument("--rows", type=int, default=20000, help="rows per table")
    p.add_argument("--strays", type=int, default=3, help="writes to MySQL after the switch")
    p.add_argument("--writer-procs", type=int, default=1, help="writer processes per table")
    p.add_argument("--rows-per-tx", type=int, default=None, help="changed rows per writer transaction (default: "
                   "enough for 50 transactions/s per process)")
    p.add_argument("--json", default=None)
    a = p.parse_args(argv)
    results = []
    for rate in [int(x) for x in a.rates.split(",") if x.strip()]:
        say(f"=== mysql_to_postgres live, {rate} rows/s")
        try:
            results.append(one_rate(rate, a))
        except Exception as exc:  # noqa: BLE001 - one rate failing still reports the others
            import traceback

            traceback.print_exc()
            results.append({"rate": rate, "error": f"{type(exc).__name__}: {exc}"[:1000]})
        say(json.dumps(results[-1], default=str)[:3000])
    print_table(results, TABLE_ROWS)
    say(f"results: {write_results('live_mysql_to_postgres', results, a.json)}")
    return 0 if all("error" not in r for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
