"""ship_wide_build, unchanged, under the CeleryExecutor: its ship batches run on both workers, exactly.

Four ships named from :data:`cutover.samples.hostile.HOSTILE_NAMES` (a hyphen, a slash and dots, an
injection attempt, a 63-byte id whose table name is mapped), each with a later duplicate (it wins)
and an invalid row (a dead letter). The DAG is unpaused and triggered with the ``airflow`` CLI, as a
user would; the plan hands out one batch per ship, so its mapped task instances (prepare → copy →
finalize → verify per batch) are queued on Redis and taken by both Celery workers. The run must be
green, the task instances' ``hostname`` (and Celery's own record, ``celery_taskmeta.worker``) must
name both workers, and every ship's wide table must be exact: the control schema's checksums, the
values read back, the dead letters, and :func:`cutover.ship_wide.verify.verify_ship` recomputed.

A summary (which batch ran on which worker, each task's seconds, the run's) is printed (``-s``) and
written to ``.data/celery-ship-wide-summary.txt``.
"""

from __future__ import annotations

import json
import secrets
import time
from collections import defaultdict
from typing import Any

import pytest

from cutover import control
from cutover import ship_wide as sw
from cutover.samples.hostile import HOSTILE_NAMES, MAX_BYTES_NAME
from cutover.ship_wide.ddl import load_wide
from tests.celery.conftest import ROOT, WORKER_CONCURRENCY, WORKERS, CeleryCluster
from tests.integration import test_ship_wide_hostile as hostile

pytestmark = [pytest.mark.celery, pytest.mark.dags, pytest.mark.integration]

DAG_ID = "ship_wide_build"
SCHEMA = "sw_celery"
SHIPS = ("vessel-7", "M/V Ocean.1", hostile.INJECTION, MAX_BYTES_NAME)
RUN_TIMEOUT_S = 420
SUMMARY = ROOT / ".data" / "celery-ship-wide-summary.txt"
STAGES = ("prepare", "copy", "finalize", "verify")


def _wait_for_dag(cluster: CeleryCluster, timeout: float = 180) -> None:
    """The dag-processor has parsed and stored the DAG (the scheduler works from the stored one)."""
    cluster.wait_for(f"DAG {DAG_ID} (dag-processor)", lambda: bool(cluster.query(
        "SELECT 1 FROM serialized_dag WHERE dag_id = %s", (DAG_ID,))), timeout)


def _wait_for_run(cluster: CeleryCluster, run_id: str) -> str:
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while True:
        rows = cluster.query("SELECT state FROM dag_run WHERE dag_id = %s AND run_id = %s", (DAG_ID, run_id))
        state = rows[0][0] if rows else None
        if state in ("success", "failed"):
            return str(state)
        cluster.check_alive()
        if time.monotonic() > deadline:
            return f"still {state} after {RUN_TIMEOUT_S}s"
        time.sleep(2)


def _task_instances(cluster: CeleryCluster, run_id: str) -> list[dict[str, Any]]:
    cols = ("task_id", "map_index", "rendered_map_index", "state", "hostname", "try_number", "external_executor_id",
            "queue", "start_date", "end_date")
    rows = cluster.query(f"SELECT {', '.join(cols)} FROM task_instance WHERE dag_id = %s AND run_id = %s"
                         " ORDER BY map_index, start_date", (DAG_ID, run_id))
    return [dict(zip(cols, r, strict=True)) for r in rows]


def _celery_workers(cluster: CeleryCluster, task_ids: list[str]) -> dict[str, str]:
    """Celery task id → the worker that ran it (``celery_taskmeta.worker``, kept with result_extended)."""
    rows = cluster.query("SELECT task_id, worker FROM celery_taskmeta WHERE task_id = ANY(%s)", (task_ids,))
    return {str(t): str(w) for t, w in rows if w}


def _worker(hostname: str | None) -> str:
    return (hostname or "?").split("@")[0]


def _summary(cluster: CeleryCluster, run_id: str, state: str, tis: list[dict[str, Any]],
             celery_workers: dict[str, str], wall_s: float) -> str:
    run = cluster.query("SELECT queued_at, start_date, end_date FROM dag_run WHERE dag_id = %s AND run_id = %s",
                        (DAG_ID, run_id))[0]
    run_s = (run[2] - run[1]).total_seconds() if run[1] and run[2] else float("nan")
    lines = [
        f"{DAG_ID} under the CeleryExecutor: {len(SHIPS)} ships, {len(WORKERS)} workers ({', '.join(WORKERS)}, "
        f"concurrency {WORKER_CONCURRENCY} each), Redis broker {cluster.broker_url.rsplit('@', 1)[-1]}, metadata in the "
        f"embedded PostgreSQL",
        f"run {run_id}: {state}, {run_s:.1f} s from start to end ({wall_s:.1f} s from trigger to end, "
        f"{len(tis)} task instances)",
        "",
        f"{'batch':<6}{'ships':<28}" + "".join(f"{s:<18}" for s in STAGES),
    ]
    by_batch: dict[int, dict[str, dict[str, Any]]] = defaultdict(dict)
    for ti in tis:
        if ti["task_id"].startswith("unit_batch."):
            by_batch[ti["map_index"]][ti["task_id"].split(".", 1)[1]] = ti

    def cell(ti: dict[str, Any] | None) -> str:
        if ti is None:
            return "-"
        secs = (ti["end_date"] - ti["start_date"]).total_seconds() if ti["start_date"] and ti["end_date"] else 0.0
        return f"{_worker(ti['hostname'])} {secs:.1f}s"

    for b in sorted(by_batch):
        label = next((t["rendered_map_index"] for t in by_batch[b].values() if t["rendered_map_index"]), str(b))
        label = label if len(label) <= 26 else label[:25] + "…"
        lines.append(f"{b:<6}{label:<28}" + "".join(f"{cell(by_batch[b].get(s)):<18}" for s in STAGES))
    for ti in tis:
        if not ti["task_id"].startswith("unit_batch."):
            lines.append(f"{ti['task_id']:<34}{cell(ti)}")
    per_worker: dict[str, int] = defaultdict(int)
    for ti in tis:
        per_worker[_worker(ti["hostname"])] += 1
    lines += ["", "task instances per worker (task_instance.hostname): "
              + ", ".join(f"{w} {n}" for w, n in sorted(per_worker.items())),
              "Celery's own record (celery_taskmeta.worker): "
              + ", ".join(f"{w} {n}" for w, n in sorted(_count(celery_workers.values()).items()))]
    return "\n".join(lines) + "\n"


def _count(values: Any) -> dict[str, int]:
    out: dict[str, int] = defaultdict(int)
    for v in values:
        out[str(v)] += 1
    return out


def test_ship_wide_build_spreads_ship_batches_over_both_workers(celery_cluster: CeleryCluster, pg: Any) -> None:
    assert set(SHIPS) <= set(HOSTILE_NAMES)
    cluster = celery_cluster
    hostile._clean(pg, SCHEMA)
    try:
        hostile.load_narrow(pg, SCHEMA, SHIPS)
        _wait_for_dag(cluster)
        cluster.airflow("dags", "unpause", DAG_ID)
        run_id = f"celery_{secrets.token_hex(4)}"
        conf = {"units": [], "schema": SCHEMA, "text_columns": False, "chunk_rows": 1000, "pivot": "auto",
                "parallelism": len(SHIPS), "copy_connections": 1, "dry_run": False}
        started = time.monotonic()
        cluster.airflow("dags", "trigger", DAG_ID, "--run-id", run_id, "--conf", json.dumps(conf))
        state = _wait_for_run(cluster, run_id)
        wall_s = time.monotonic() - started

        tis = _task_instances(cluster, run_id)
        celery_workers = _celery_workers(cluster, [t["external_executor_id"] for t in tis if t["external_executor_id"]])
        summary = _summary(cluster, run_id, state, tis, celery_workers, wall_s)
        print("\n" + summary)
        SUMMARY.parent.mkdir(parents=True, exist_ok=True)
        SUMMARY.write_text(summary)

        states = {f"{t['task_id']}[{t['map_index']}]": t["state"] for t in tis}
        logs = "\n".join(f"--- {n}\n{cluster.tail(n, 2000)}" for n in ("scheduler", *WORKERS))
        assert state == "success", f"{states}\n{logs}"
        assert all(s == "success" for s in states.values()), states

        # one batch per ship: four mapped task groups, each stage a task instance of its own
        batches = {t["map_index"] for t in tis if t["task_id"] == "unit_batch.copy"}
        assert batches == set(range(len(SHIPS))), states
        # every task went through the session's own queue, and ran on one of the two workers
        assert {t["queue"] for t in tis} == {cluster.queue}
        hosts = {t["hostname"] for t in tis}
        assert {_worker(h) for h in hosts} == set(WORKERS), f"task instance hostnames: {hosts}"
        batch_hosts = {_worker(t["hostname"]) for t in tis if t["task_id"].startswith("unit_batch.")}
        assert batch_hosts == set(WORKERS), f"the ship batches ran on {batch_hosts} only"
        # Celery agrees: the worker that took each task's message is the one the task instance names
        for t in tis:
            assert celery_workers.get(t["external_executor_id"]) == t["hostname"], (t, celery_workers)

        # exact: every ship verified, checksums equal, the values read back, the dead letters
        cfg = sw.ShipWideConfig(schema=SCHEMA)
        units = {u["unit_key"]: u for u in control.list_units(pg, run_id)}
        pg.commit()
        assert set(units) == {cfg.unit(s) for s in SHIPS}
        for key, u in units.items():
            assert u["state"] == "verified" and u["error"] is None, (key, u["error"])
            assert u["checksum_source"] is not None and u["checksum_source"] == u["checksum_target"], key
            assert u["rows_written"] == hostile.TIMES, key
        run = control.get_run(pg, run_id)
        pg.commit()
        assert run is not None and run["state"] == "success" and run["evidence"]["report"]["green"] is True
        for s in SHIPS:
            i = HOSTILE_NAMES.index(s)
            wide = load_wide(pg, cfg, s)
            pg.commit()
            assert wide is not None, s
            assert hostile.read(pg, SCHEMA, wide.table, wide, i) == hostile.expected_rows(i, s), s
            dead = control.list_dead_letters(pg, "ship_wide_build", cfg.unit(s))
            pg.commit()
            assert len(dead) == 1 and dead[0]["payload"]["ship_id"] == s, s
            again = sw.verify_ship(cfg, s, gate=False)  # counted and checksummed again, outside Airflow
            assert again["failures"] == [], (s, again["failures"])
            assert again["wide"]["rows"] == hostile.TIMES and again["narrow"]["checksum"] == again["wide"]["checksum"], s
    finally:
        pg.rollback()
        hostile._clean(pg, SCHEMA)
