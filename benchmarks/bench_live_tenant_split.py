"""Benchmark ``tenant_split`` live: a writer at fixed rates during build → verify → cutover → writes on the
new side → rollback, on the real MariaDB and PostgreSQL.

    .venv/bin/python benchmarks/bench_live_tenant_split.py                                # 500,2000,5000 rows/s, 60 s
    .venv/bin/python benchmarks/bench_live_tenant_split.py --rates 500,2000,5000 --seconds 20   # short mode

Per rate, from a fresh shop sample (:mod:`cutover.samples.tenants`, ``--tenants`` tenants, ``--rows``
orders): route-aware writers (:class:`cutover.samples.live_writer.WriterPool`: one OS process per tenant,
``--writer-procs`` for more, each paced at its share of the rate; inserts, updates, deletes, key changes,
``rows_per_tx`` changed rows per transaction, printed) sharing the rate; a forward sync loop (``sync.catch_up``, as
``tenant_split_sync`` runs it) and, after the switch, a reverse loop (``reverse.run``). Phases:

1. build (``lifecycle.stages``: plan → prepare → copy → finalize → verify, each timed): *copy end →
   verified* is the finalize + verify time (the proof at a fence while the writers write);
2. steady sync ``--steady`` seconds (forward lag), then a backlog: the loop held ``--backlog`` seconds, one
   ``catch_up`` over what piled up (*catch-up rows/s*: the apply rate, not the write rate);
3. cutover of tenant 1 (``lifecycle.switch.switch``): the write pause (``paused_s``) and every writer's
   latency p50 / p99 / max, the paused tenant's and the others' (commits during the pause counted);
4. ``--seconds`` of writes on the new side (reverse lag); ``--strays`` writes to the shared tables for the
   cut-over tenant by a client that ignores the route (reported as stray writes, forwarded);
5. rollback (``lifecycle.switch.rollback``, whose ``around_rollback`` pauses the tenant's writers on its
   database, drains the reverse stream to a fence, re-proves what it touched and routes back: the pause
   is the life cycle's), a few seconds of writes on the old side, writers stopped, a last catch-up;
6. the end state: every row of ``orders`` / ``customers`` of every tenant compared source ↔ tenant
   database (*rows that differ*, must be 0), the writers' own record of each row they wrote compared
   with the source (*writes lost on the old side*, must be 0), transactions aborted (1213 / 1205).

Lag is sampled, not taken from the pipeline: for every instant t (every 50 ms) of a phase, lag(t) = the
end of the first sync round that started after t, minus t (a change committed at t is applied by then);
the control schema's stream lags (``cutover.streams``) are printed beside. Figures go to a table and to
``benchmarks/results/live_tenant_split.json``. Names: source ``h6_live_ts``, prefix ``h6lt_``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

SRC = "h6_live_ts"
PREFIX = "h6lt_"
STATE = "h6lt_state"
PIPELINE = "tenant_split"
RESULTS = Path(__file__).resolve().parent / "results"


def say(msg: str) -> None:
    print(msg, flush=True)


# --- shared helpers (the mysql_to_postgres benchmark imports these) -------------------------------


def pct(xs: list[float], q: float) -> float | None:
    """The ``q`` quantile (0..1) of ``xs``; None when empty."""
    if not xs:
        return None
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))]


def fmt(v: Any, unit: str = "", digits: int = 3) -> str:
    """A figure for the table: ``n/a`` for None."""
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.{digits}f}{unit}"
    return f"{v}{unit}"


class SyncLoop(threading.Thread):
    """Calls ``step()`` in a loop (a sync round), recording each round's (start, end, result); ``hold``
    pauses it (a backlog builds up), ``stop`` ends it. A round's exception is recorded, the loop goes on."""

    def __init__(self, name: str, step: Any, idle_s: float = 0.05) -> None:
        super().__init__(name=name, daemon=True)
        self.step, self.idle_s = step, idle_s
        self.rounds: list[tuple[float, float, Any]] = []
        self.errors: list[str] = []
        self.halt, self.held = threading.Event(), threading.Event()

    def run(self) -> None:  # noqa: D102
        while not self.halt.is_set():
            if self.held.is_set():
                time.sleep(0.02)
                continue
            t0 = time.time()
            try:
                out = self.step()
            except Exception as exc:  # noqa: BLE001 - recorded and printed
                self.errors.append(f"{type(exc).__name__}: {exc}"[:300])
                out = None
            self.rounds.append((t0, time.time(), out))
            self.halt.wait(self.idle_s)

    def stop(self) -> None:
        self.halt.set()
        if self.ident is not None:
            self.join(120)

    def lags(self, start: float, end: float, every: float = 0.05) -> list[float]:
        """lag(t) for t in [start, end) every ``every`` s: the end of the first round started after t, − t."""
        out, rounds, i = [], sorted(self.rounds), 0
        t = start
        while t < end:
            while i < len(rounds) and rounds[i][0] < t:
                i += 1
            if i >= len(rounds):
                break
            out.append(rounds[i][1] - t)
            t += every
        return out


def latency_figures(latencies: list[float], commits: list[tuple[float, float]], window: tuple[float, float] | None) -> dict[str, Any]:
    """p50 / p99 / max latency (s) over all transactions and the commits that overlapped ``window``."""
    during = [c for c in commits if window and c[1] >= window[0] and c[0] <= window[1]]
    return {"transactions": len(latencies), "p50_s": pct(latencies, 0.5), "p99_s": pct(latencies, 0.99),
            "max_s": max(latencies) if latencies else None, "commits_during_pause": len(during)}


def write_results(name: str, results: list[dict[str, Any]], path: str | None) -> Path:
    """The results as JSON (``benchmarks/results/<name>.json`` unless ``path``)."""
    out = Path(path) if path else RESULTS / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1, default=str), encoding="utf-8")
    return out


def print_table(results: list[dict[str, Any]], rows: list[tuple[str, str, str, int]]) -> None:
    """One column per rate: ``rows`` = (label, key path a.b.c, unit, digits)."""
    def get(r: dict[str, Any], path: str) -> Any:
        v: Any = r
        for p in path.split("."):
            v = v.get(p) if isinstance(v, dict) else None
        return v
    head = f"{'figure':44s}" + "".join(f"{str(r['rate']) + ' rows/s':>16s}" for r in results)
    say(head)
    say("-" * len(head))
    for label, path, unit, digits in rows:
        say(f"{label:44s}" + "".join(f"{fmt(get(r, path), unit, digits):>16s}" for r in results))


# --- tenant_split ---------------------------------------------------------------------------------


def _drop(cur: Any) -> None:
    from cutover.identifiers import quote_mysql

    cur.execute("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE %s OR SCHEMA_NAME IN (%s, %s)",
                (PREFIX.replace("_", "\\_") + "%", STATE, SRC))
    for (name,) in cur.fetchall():
        cur.execute(f"DROP DATABASE {quote_mysql(name.decode() if isinstance(name, bytes) else name)}")


def _clean_control() -> None:
    from cutover import connections, control

    with connections.pg_connect() as pg:
        control.ensure_schema(pg)
        for table in ("units", "switches", "switch_history", "object_backups", "dead_letters"):
            pg.execute(f"DELETE FROM cutover.{table} WHERE pipeline = %s AND starts_with(unit_key, %s)", (PIPELINE, SRC + ":"))
        for table in ("name_map", "routes", "route_history", "streams", "stray_writes"):
            pg.execute(f"DELETE FROM cutover.{table} WHERE pipeline = %s AND scope = %s", (PIPELINE, SRC))


def _rows(cur: Any, db: str, table: str, where: str = "", params: tuple[Any, ...] = ()) -> dict[int, tuple[Any, ...]]:
    from cutover.identifiers import quote_mysql

    cur.execute(f"SELECT * FROM {quote_mysql(db)}.{quote_mysql(table)}{where}", params)
    return {int(r[0]): tuple(r) for r in cur.fetchall()}


def one_rate(rate: int, a: argparse.Namespace) -> dict[str, Any]:
    """Every phase at one write rate (changed rows/s over all tenants); the figures."""
    from cutover import connections, control
    from cutover.identifiers import quote_mysql
    from cutover.lifecycle import stages
    from cutover.lifecycle.switch import rollback, split_ready, switch
    from cutover.samples import tenants as sample
    from cutover.samples.live_writer import WriterPool, sample_tenant_spec
    from cutover.tenant_split import reverse, sync
    from cutover.tenant_split.config import TenantSplitConfig
    from cutover.tenant_split.spec import SPEC

    res: dict[str, Any] = {"rate": rate, "pipeline": PIPELINE}
    with connections.mysql_connect(database="") as conn:
        _drop(conn.cursor())
        sample.seed_tenants(conn, database=SRC, tenants=a.tenants, rows=a.rows)
    _clean_control()
    params = {"source_database": SRC, "mapping": "mappings/tenant_split.yaml", "tenant_directory": "tenants",
              "database_prefix": PREFIX, "state_database": STATE, "chunk_rows": 5000, "parallelism": 2, "gx_gate": False}
    cfg = TenantSplitConfig.from_params(params)
    tenant_ids = list(range(1, a.tenants + 1))
    pool = WriterPool([sample_tenant_spec(t, scope=SRC, source_database=SRC, seed=t) for t in tenant_ids], rate,
                      procs_per_unit=a.writer_procs, rows_per_tx=a.rows_per_tx)
    fwd = SyncLoop("forward", lambda: sync.catch_up(cfg, sync.built_tenants(cfg)))
    rev = SyncLoop("reverse", lambda: reverse.run(cfg, forward_stray_writes=True))
    whale = str(tenant_ids[0])
    pool.start()
    try:
        # 1. build, stage by stage
        run_id = f"h6_live_ts_build_{rate}"
        timings: dict[str, float] = {}
        t0 = time.monotonic()
        batches = stages.plan(SPEC, params, run_id, max_batches=64)
        timings["plan"] = time.monotonic() - t0
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
        res["build"] = {"green": rep.green, "stages_s": timings, "states": rep.states}
        res["copy_end_to_verified_s"] = round(sum(v for k, v in timings.items() if k in ("finalize", "verify")), 3)
        # 2. steady forward sync, then a backlog
        fwd.start()
        s0 = time.time()
        time.sleep(a.steady)
        steady = (s0 + 1, time.time() - 1)
        fwd.held.set()
        time.sleep(a.backlog)
        t0 = time.monotonic()
        out = sync.catch_up(cfg, sync.built_tenants(cfg))
        secs = time.monotonic() - t0
        fwd.rounds.append((time.time() - secs, time.time(), out))  # the backlog round resolves the steady lags
        fwd.held.clear()
        lags = fwd.lags(*steady)
        res["forward_lag"] = {"p50_s": pct(lags, 0.5), "p95_s": pct(lags, 0.95), "samples": len(lags)}
        res["catch_up"] = {"rows": out["applied"], "seconds": round(secs, 3),
                           "rows_per_s": round(out["applied"] / secs, 1) if secs else None}
        # 3. cutover of the first tenant
        os.environ["CUTOVER_REQUIRE_APPROVAL"] = "off"
        ready, blocked = split_ready(SPEC, cfg, [whale])
        res["cutover"] = {"ready_units": len(ready), "blocked": blocked}
        info: dict[str, Any] = {}
        if ready and not blocked:
            try:
                cut = switch(SPEC, cfg, ready, f"h6_live_ts_cut_{rate}", approval=None)
                info = (cut.get("groups") or {}).get(whale) or {}
            except Exception as exc:  # noqa: BLE001 - reported, the rest goes on
                res["cutover"]["error"] = f"{type(exc).__name__}: {exc}"[:500]
        res["cutover"].update({k: info.get(k) for k in ("paused_s", "pause_to_route_s", "reproved_rows", "phases")})
        window = (info["paused_at"], info["paused_at"] + info["paused_s"]) if info.get("paused_at") else None
        # 4. writes on the new side, reverse stream, strays
        rev.start()
        n0 = time.time()
        strays: list[int] = []
        with connections.mysql_connect(database=SRC) as conn:
            cur = conn.cursor()
            cur.execute("SELECT id FROM customers WHERE tenant_id = %s AND id < %s ORDER BY id DESC LIMIT %s",
                        (tenant_ids[0], 10**12, a.strays))  # a seed row: the writers' own keys start at 10**12
            strays = [int(r[0]) for r in cur.fetchall()]
        for i, key in enumerate(strays):
            time.sleep(a.seconds / max(1, len(strays) + 1))
            with connections.mysql_connect(database=SRC) as conn:
                conn.cursor().execute(f"UPDATE {quote_mysql('customers')} SET full_name = %s WHERE id = %s",
                                      (f"stray {i}", key))
                conn.commit()
        time.sleep(max(0.0, a.seconds - (time.time() - n0)))
        res["reverse_lag"] = {"p50_s": pct(rev.lags(n0 + 1, time.time() - 1), 0.5),
                              "p95_s": pct(rev.lags(n0 + 1, time.time() - 1), 0.95)}
        # 5. rollback: the life cycle pauses the tenant's writers itself (around_rollback)
        rev.stop()
        t0 = time.monotonic()
        try:
            rb = rollback(SPEC, cfg, [whale], f"h6_live_ts_rollback_{rate}")
            group = (rb.get("groups") or {}).get(whale) or {}
            res["rollback"] = {"seconds": round(time.monotonic() - t0, 3), "paused_s": group.get("paused_s"),
                               "reproved_rows": group.get("reproved_rows"), "phases": group.get("phases"),
                               "drained": rb["target_writes"].get("reverse_drained")}
        except Exception as exc:  # noqa: BLE001 - reported
            res["rollback"] = {"error": f"{type(exc).__name__}: {exc}"[:500]}
        time.sleep(2)
    finally:
        by_unit = pool.stop()
        fwd.stop()
        rev.stop()
    say("  " + pool.describe())
    sync.catch_up(cfg, sync.built_tenants(cfg))
    # 6. the end state
    stats = {t: by_unit[str(t)] for t in tenant_ids}
    summ = pool.summary()
    res["writer"] = {**{k: v for k, v in summ.items() if k != "per_unit"},
                     "error_messages": [m for s in stats.values() for m in s.error_messages[:2]],
                     "per_tenant": {str(t): {"role": "paused" if str(t) == whale else "other",
                                             **latency_figures(s.latencies, [(c[0], c[1]) for c in s.commits], window),
                                             "rows": s.rows, "aborted": s.aborted, "behind": s.behind}
                                    for t, s in stats.items()}}
    diff = {"missing_on_target": 0, "extra_on_target": 0, "different": 0, "lost_on_source": 0}
    with connections.pg_connect() as pg:
        names = control.load_name_map(pg, PIPELINE, SRC)
        res["stray_writes_seen"] = len(control.list_stray_writes(pg, PIPELINE, SRC))
        res["streams"] = [{k: s[k] for k in ("name", "direction", "state", "lag_s", "applied")}
                          for s in control.list_streams(pg, PIPELINE)
                          if s["scope"] == SRC]
    with connections.mysql_connect(database="") as conn:
        cur = conn.cursor()
        for t in tenant_ids:
            db = names.get(str(t))
            for table in ("orders", "customers"):
                src = _rows(cur, SRC, table, " WHERE tenant_id = %s", (t,))
                tgt = _rows(cur, db, table) if db else {}
                diff["missing_on_target"] += len(set(src) - set(tgt))
                diff["extra_on_target"] += len(set(tgt) - set(src))
                diff["different"] += sum(1 for k in set(src) & set(tgt) if src[k] != tgt[k])
                cols = sample.COLUMNS[table]
                for key, want in stats[t].expected.get(table, {}).items():
                    row = src.get(key)
                    if want is None:
                        diff["lost_on_source"] += row is not None
                    elif row is None or any(dict(zip(cols, row, strict=True))[c] != v for c, v in want.items()):
                        diff["lost_on_source"] += 1
    res["rows_differ"] = diff
    res["sync_errors"] = {"forward": fwd.errors[:3], "reverse": rev.errors[:3]}
    return res


#: the writer rows both live benchmarks print first
WRITER_ROWS = [
    ("writer rows/s asked", "writer.asked_rows_per_s", "", 0),
    ("writer rows/s achieved", "writer.achieved_rows_per_s", "", 0),
    ("writer rows per transaction", "writer.rows_per_tx", "", 0),
    ("writer processes", "writer.processes", "", 0),
]
TABLE_ROWS = [
    *WRITER_ROWS,
    ("build green", "build.green", "", 0),
    ("copy end → verified (s)", "copy_end_to_verified_s", "", 2),
    ("catch-up rows/s (backlog)", "catch_up.rows_per_s", "", 0),
    ("forward lag p50 (s)", "forward_lag.p50_s", "", 3),
    ("forward lag p95 (s)", "forward_lag.p95_s", "", 3),
    ("write pause (s)", "cutover.paused_s", "", 3),
    ("paused tenant latency p50 (s)", "writer.per_tenant.1.p50_s", "", 4),
    ("paused tenant latency p99 (s)", "writer.per_tenant.1.p99_s", "", 4),
    ("paused tenant latency max (s)", "writer.per_tenant.1.max_s", "", 4),
    ("other tenant (2) latency p50 (s)", "writer.per_tenant.2.p50_s", "", 4),
    ("other tenant (2) latency p99 (s)", "writer.per_tenant.2.p99_s", "", 4),
    ("other tenant (2) latency max (s)", "writer.per_tenant.2.max_s", "", 4),
    ("other tenant commits during the pause", "writer.per_tenant.2.commits_during_pause", "", 0),
]
#: the rows both live benchmarks print after their own: the reverse stream, the rollback and the end state
END_ROWS = [
    ("reverse lag p50 (s)", "reverse_lag.p50_s", "", 3),
    ("reverse lag p95 (s)", "reverse_lag.p95_s", "", 3),
    ("rollback, writes paused (s)", "rollback.paused_s", "", 3),
    ("writer transactions aborted (any error)", "writer.aborted", "", 0),
    ("  of which deadlock / lock wait (1213/1205)", "writer.aborted_1213_1205", "", 0),
    ("rows differ: missing on target", "rows_differ.missing_on_target", "", 0),
    ("rows differ: extra on target", "rows_differ.extra_on_target", "", 0),
    ("rows differ: different", "rows_differ.different", "", 0),
    ("writes lost on the old side", "rows_differ.lost_on_source", "", 0),
    ("stray writes seen", "stray_writes_seen", "", 0),
]
TABLE_ROWS += END_ROWS


def main(argv: list[str] | None = None) -> int:
    """Run every rate; print the table; write the JSON."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rates", default="500,2000,5000", help="changed rows/s, comma-separated")
    p.add_argument("--seconds", type=float, default=60, help="seconds of writes on the new side")
    p.add_argument("--steady", type=float, default=10, help="seconds of steady forward sync before the backlog")
    p.add_argument("--backlog", type=float, default=5, help="seconds the sync is held to build a backlog")
    p.add_argument("--tenants", type=int, default=4)
    p.add_argument("--rows", type=int, default=20000, help="orders in the sample")
    p.add_argument("--strays", type=int, default=3, help="writes to the old side after the switch")
    p.add_argument("--writer-procs", type=int, default=1, help="writer processes per tenant")
    p.add_argument("--rows-per-tx", type=int, default=None, help="changed rows per writer transaction (default: "
                   "enough for 50 transactions/s per process)")
    p.add_argument("--json", default=None)
    a = p.parse_args(argv)
    import logging

    logging.basicConfig(level=logging.WARNING)
    results = []
    for rate in [int(x) for x in a.rates.split(",") if x.strip()]:
        say(f"=== tenant_split live, {rate} rows/s")
        try:
            results.append(one_rate(rate, a))
        except Exception as exc:  # noqa: BLE001 - one rate failing still reports the others
            import traceback

            traceback.print_exc()
            say(f"  failed: {type(exc).__name__}: {exc}")
            results.append({"rate": rate, "error": f"{type(exc).__name__}: {exc}"[:1000]})
        say(json.dumps(results[-1], default=str)[:3000])
    print_table(results, TABLE_ROWS)
    say(f"results: {write_results('live_tenant_split', results, a.json)}")
    return 0 if all("error" not in r for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
