"""The consistency DAGs: structure, and real runs with dag.test() — equal pair passes, a difference
fails the pair's task after recording it, fires the alert webhook, and the GX gate runs anyway."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from cutover import connections
from tests.dags.conftest import load_dag as _dag

pytestmark = [pytest.mark.dags]

PG_SCHEMA = "cc_dagtest"
PAIRS = ("cc_dagtest_equal", "cc_dagtest_diff")



@pytest.mark.parametrize("dag_id,schedule,full", [("consistency_checks", "*/10 * * * *", False),
                                                   ("consistency_sweep", "30 2 * * *", True)])
def test_structure(airflow_db: None, dag_id: str, schedule: str, full: bool) -> None:
    dag = _dag(dag_id)
    assert dag.dag_id == dag_id
    assert dag.max_active_runs == 1
    assert dag.default_args["retries"] >= 2 and dag.default_args["retry_exponential_backoff"]
    assert f"expression={schedule!r}" in repr(dag.timetable)
    assert dag.params["full_sweep"] is full
    assert set(dag.task_ids) == {"list_pairs", "check", "results_gate"}
    assert dag.get_task("check").on_failure_callback
    assert dag.doc_md and "Params" in dag.doc_md


@pytest.fixture
def webhook(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict[str, Any]]]:
    received: list[dict[str, Any]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("AIRFLOW_CONN_CUTOVER_ALERTS", f"http://127.0.0.1:{server.server_port}/alerts")
    yield received
    server.shutdown()


@pytest.fixture
def pairs(pg: Any) -> Iterator[None]:
    from cutover.consistency import registry
    from cutover.consistency.spec import Endpoint, PairSpec

    pg.execute(f"DROP SCHEMA IF EXISTS {PG_SCHEMA} CASCADE; CREATE SCHEMA {PG_SCHEMA}")
    for t in ("src", "same", "diff"):
        pg.execute(f"CREATE TABLE {PG_SCHEMA}.{t} (id int PRIMARY KEY, v text, ts timestamptz)")
        pg.execute(f"INSERT INTO {PG_SCHEMA}.{t} SELECT g, 'v' || g, now() - interval '1 hour' - g * interval '1 second' "
                   "FROM generate_series(1, 500) g")
    pg.execute(f"UPDATE {PG_SCHEMA}.diff SET v = 'changed' WHERE id = 42")
    registry.ensure_registry(pg)
    for name, tgt in zip(PAIRS, ("same", "diff"), strict=True):
        registry.register_pair(pg, PairSpec(
            name=name, source=Endpoint(connections.POSTGRES_TARGET, table=f"{PG_SCHEMA}.src"),
            target=Endpoint(connections.POSTGRES_TARGET, table=f"{PG_SCHEMA}.{tgt}"), key=("id",),
            window_column="ts", recent_window_s=86400, settle_s=0, repair="upsert",
        ), pipeline="cc_dagtest")
    pg.commit()
    yield
    for name in PAIRS:
        registry.unregister_pair(pg, name)
    pg.execute(f"DROP SCHEMA IF EXISTS {PG_SCHEMA} CASCADE")
    pg.commit()


def _states(dr: Any) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for ti in dr.get_task_instances():
        out.setdefault(ti.task_id, []).append(str(ti.state))
    return out


def test_difference_fails_the_check_records_it_and_alerts(airflow_db: None, pairs: None, webhook: list, pg: Any) -> None:
    dag = _dag("consistency_checks")
    dr = dag.test(run_conf={"pairs": list(PAIRS), "full_sweep": False, "repair": False})
    states = _states(dr)
    assert str(dr.state) == "failed", states
    assert sorted(states["check"]) == ["failed", "success"]
    assert states["results_gate"] == ["failed"]  # the gate ran (all_done) and saw the difference
    rows = dict(pg.execute(
        "SELECT pair_name, status FROM cutover.consistency_results WHERE run_id = %s", (dr.run_id,)
    ).fetchall())
    assert rows == {"cc_dagtest_equal": "equal", "cc_dagtest_diff": "different"}
    assert len(webhook) == 1 and webhook[0]["pair"] == "cc_dagtest_diff" and webhook[0]["dag_id"] == "consistency_checks"
    detail = pg.execute("SELECT details FROM cutover.consistency_results WHERE run_id = %s AND pair_name = %s",
                        (dr.run_id, "cc_dagtest_diff")).fetchone()[0]
    assert detail["changed_keys"] == [42]


def test_repair_run_fixes_the_pair_and_passes_the_gate(airflow_db: None, pairs: None, webhook: list, pg: Any) -> None:
    dag = _dag("consistency_checks")
    dr = dag.test(run_conf={"pairs": list(PAIRS), "full_sweep": True, "repair": True})
    states = _states(dr)
    assert str(dr.state) == "success", states
    assert states["results_gate"] == ["success"]
    assert webhook == []
    latest = dict(pg.execute(
        "SELECT DISTINCT ON (pair_name) pair_name, status FROM cutover.consistency_results WHERE run_id = %s "
        "ORDER BY pair_name, id DESC", (dr.run_id,)
    ).fetchall())
    assert latest == {"cc_dagtest_equal": "equal", "cc_dagtest_diff": "repaired"}
    assert pg.execute(f"SELECT v FROM {PG_SCHEMA}.diff WHERE id = 42").fetchone()[0] == "v42"
