"""The Cutover UI app against the real control schema: status page, JSON, escaping, data docs."""

from __future__ import annotations

import importlib.util
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from cutover import control
from cutover.connections import PROJECT_ROOT
from cutover.ui import status as status_mod
from cutover.ui.app import create_app

pytestmark = pytest.mark.integration

EVIL = "<script>alert(1)</script>"


@pytest.fixture
def seeded(pg: Any) -> Iterator[dict[str, str]]:
    """One run of a pipeline named with markup, with units, a switch, gates, a consistency result, dead letters."""
    tag = uuid.uuid4().hex[:8]
    pipeline = f"uitest_{tag}_{EVIL}"
    run_id = f"uitest_run_{tag}"
    pair = f"{pipeline}:pair<b>"
    unit_ok, unit_bad = f"tenant_{EVIL}", "tenant_2"
    control.start_run(pg, run_id, pipeline, {"tenants": [1, 2]}, kind="build", dag_id="uitest_build")
    control.set_unit(pg, run_id, pipeline, unit_ok, "copying", rows_total=10, rows_read=4, rows_written=2)
    control.set_unit(
        pg,
        run_id,
        pipeline,
        unit_ok,
        "verified",
        rows_total=10,
        rows_read=10,
        rows_written=5,
        checksum_source="abc",
        checksum_target="abc",
    )
    control.set_unit(
        pg,
        run_id,
        pipeline,
        unit_bad,
        "failed",
        rows_total=5,
        rows_read=3,
        rows_written=2,
        checksum_source="abc",
        checksum_target="xyz",
        error="boom & <bang>",
        failed_stage="verify",
    )
    control.finish_run(pg, run_id, "failed", {"rows_copied": 13, "note": EVIL, "tables": {"a": 1, "b": 2}})
    control.switch_backend(pg, pipeline, unit_ok, "legacy", canary_pct=100, run_id=run_id, actor="tester")
    control.switch_backend(
        pg,
        pipeline,
        unit_ok,
        "postgres",
        canary_pct=10,
        run_id=run_id,
        actor="tester",
        reason=f"canary {EVIL}",
    )
    suite = f"uitest_suite_{tag}"
    control.record_quality(
        pg,
        suite,
        "postgres_target:items",
        True,
        evaluated=4,
        failed=0,
        statistics={},
        docs_path=None,
        run_id=run_id,
    )
    control.record_quality(
        pg,
        suite,
        "postgres_target:orders",
        False,
        evaluated=4,
        failed=1,
        statistics={"failures": [f"expect_x {EVIL}"]},
        docs_path=None,
        run_id=run_id,
    )
    control.record_consistency(
        pg, pair, "inconsistent", rows_checked=100, missing=2, extra=1, changed=3, run_id=run_id
    )
    control.add_dead_letters(
        pg,
        pipeline,
        run_id,
        unit_bad,
        [
            control.DeadLetter(source="f.jsonl", record_key="line 3", reason="malformed"),
            control.DeadLetter(source="f.jsonl", record_key="line 9", reason="missing id"),
        ],
    )
    control.set_route(pg, pipeline, "shop", EVIL, {"backend": "tenant_db", "database": "tenant_x_1a2b3c4d"},
                      state="paused", run_id=run_id, reason="cutover: write pause")
    pg.commit()
    yield {"pipeline": pipeline, "run_id": run_id, "pair": pair, "suite": suite, "unit": unit_ok}
    pg.execute("DELETE FROM cutover.routes WHERE pipeline = %s", (pipeline,))
    pg.execute("DELETE FROM cutover.route_history WHERE pipeline = %s", (pipeline,))
    for table, col in (
        ("units", "pipeline"),
        ("runs", "pipeline"),
        ("switches", "pipeline"),
        ("switch_history", "pipeline"),
        ("dead_letters", "pipeline"),
    ):
        pg.execute(f"DELETE FROM cutover.{table} WHERE {col} = %s", (pipeline,))
    pg.execute("DELETE FROM cutover.quality_results WHERE suite = %s", (suite,))
    pg.execute("DELETE FROM cutover.consistency_results WHERE pair_name = %s", (pair,))
    pg.commit()


@pytest.fixture
def v2_schema(pg: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A control schema at version 2 (no run kind, rows read / written or failed stage) that the page reads."""
    name = f"cutover_uitest_v2_{uuid.uuid4().hex[:8]}"
    pg.execute(control.BASELINE_DDL.replace("cutover.", f"{name}.").replace("EXISTS cutover;", f"EXISTS {name};"))
    pg.execute(f"INSERT INTO {name}.runs (run_id, pipeline, state) VALUES ('v2run', 'old_pipe', 'success')")
    pg.execute(
        f"""INSERT INTO {name}.units (run_id, pipeline, unit_key, state, rows_total, rows_done)
            VALUES ('v2run', 'old_pipe', 'unit <1>', 'done', 8, 8)"""
    )
    pg.commit()
    monkeypatch.setattr(status_mod, "SCHEMA", name)
    yield name
    pg.rollback()
    pg.execute(f"DROP SCHEMA {name} CASCADE")
    pg.commit()


def test_status_of_a_schema_without_the_new_columns(pg: Any, v2_schema: str) -> None:
    data = status_mod.collect_status(pg)
    [run] = data["runs"]
    assert run["kind"] is None
    [unit] = run["units"]
    assert (unit["unit_key"], unit["rows_read"], unit["rows_written"], unit["failed_stage"]) == (
        "unit <1>", None, None, None)
    assert (run["unit_totals"]["rows_read"], run["unit_totals"]["rows_written"]) == (None, None)
    page = status_mod.render_status_html(data)
    assert "unit &lt;1&gt;" in page and "source rows read – / 8 · target rows written –" in page
    assert "None" not in page and 'class="kind"' not in page


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    return tmp_path / "local_site"


@pytest.fixture
def client(docs: Path) -> TestClient:
    return TestClient(create_app(docs_dir=docs))


def test_status_page_shows_everything_escaped(client: TestClient, seeded: dict[str, str]) -> None:
    r = client.get("/status", params={"pipeline": seeded["pipeline"]})
    assert r.status_code == 200, r.text
    page = r.text
    assert "<script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert seeded["run_id"] in page
    assert "tenant_2" in page and "MISMATCH" in page and "match" in page
    assert "boom &amp; &lt;bang&gt;" in page
    # rows read and written are two labelled columns, the stage a unit failed in sits before its error
    assert "<th>source rows read</th><th>target rows written</th><th>rows total</th>" in page
    assert "<th>failed in</th><th>error</th>" in page
    assert ('<td><span class="n">3</span><div class="bar" title="60 % of 5 source rows"><i style="width:60.0%"></i>'
            '</div></td><td><span class="n">2</span></td><td>5</td>') in page
    assert "<td>verify</td><td>boom &amp; &lt;bang&gt;</td>" in page
    assert "source rows read 13 / 15 · target rows written 7" in page  # the run's totals
    assert '<span class="kind">build</span>' in page
    assert "rows done" not in page
    assert "rows_copied: 13" in page and "tables: 2 entries" in page
    assert "1 checksum mismatches" in page
    assert "legacy" in page and "postgres" in page and "10 %" in page  # switch and its history
    assert seeded["suite"] in page and "FAILED" in page and "passed" in page
    assert "pair&lt;b&gt;" in page and "inconsistent" in page
    assert ">2<" in page  # two dead letters for tenant_2
    # a tenant's route (its name from data, escaped), paused in bold while a cutover holds its writes
    assert "Routes (where each tenant" in page and "<code>tenant_x_1a2b3c4d</code>" in page
    assert "<b>paused</b>" in page


def test_status_json(client: TestClient, seeded: dict[str, str]) -> None:
    r = client.get("/api/status", params={"pipeline": seeded["pipeline"]})
    assert r.status_code == 200
    data = r.json()
    assert data["schema_exists"] is True
    [run] = data["runs"]
    assert run["run_id"] == seeded["run_id"] and run["state"] == "failed" and run["kind"] == "build"
    units = {u["unit_key"]: u for u in run["units"]}
    assert units[seeded["unit"]]["checksums_match"] is True
    assert units["tenant_2"]["checksums_match"] is False
    ok, bad = units[seeded["unit"]], units["tenant_2"]
    assert (ok["state"], ok["rows_read"], ok["rows_written"], ok["failed_stage"]) == ("verified", 10, 5, None)
    assert (bad["state"], bad["rows_read"], bad["rows_written"], bad["failed_stage"]) == ("failed", 3, 2, "verify")
    assert "rows_done" not in ok
    assert run["unit_totals"] == {
        "units": 2,
        "rows_read": 13,
        "rows_written": 7,
        "rows_total": 15,
        "checksum_mismatches": 1,
        "states": {"verified": 1, "failed": 1},
    }
    [switch] = data["switches"]
    assert switch["backend"] == "postgres" and switch["canary_pct"] == 10
    assert [h["to_backend"] for h in data["switch_history"]] == ["postgres", "legacy"]
    assert data["switch_history"][0]["from_backend"] == "legacy"
    assert {q["asset"]: q["success"] for q in data["quality"]} == {
        "postgres_target:items": True,
        "postgres_target:orders": False,
    }
    [pair] = data["consistency"]
    assert (pair["pair_name"], pair["missing"], pair["extra"], pair["changed"]) == (seeded["pair"], 2, 1, 3)
    assert 0 <= pair["check_age_s"] < 600 and pair["stale"] is False and pair["lag_s"] is None
    assert data["dead_letters"] == [
        {
            "pipeline": seeded["pipeline"],
            "unit_key": "tenant_2",
            "count": 2,
            "last_at": data["dead_letters"][0]["last_at"],
        }
    ]


def test_quality_links_into_data_docs(docs: Path, client: TestClient, seeded: dict[str, str]) -> None:
    page_dir = docs / "validations" / seeded["suite"] / seeded["run_id"] / "20260101T000000.000000Z"
    page_dir.mkdir(parents=True)
    (page_dir / "cutover_postgres_target-orders.html").write_text("<h1>orders validation</h1>")
    (docs / "index.html").write_text("<h1>docs index</h1>")
    data = client.get("/api/status", params={"pipeline": seeded["pipeline"]}).json()
    pages = {q["asset"]: q["docs_page"] for q in data["quality"]}
    rel = f"validations/{seeded['suite']}/{seeded['run_id']}/20260101T000000.000000Z/cutover_postgres_target-orders.html"
    assert pages["postgres_target:orders"] == rel
    html = client.get("/status", params={"pipeline": seeded["pipeline"]}).text
    assert f'href="/docs/{rel}"' in html
    served = client.get(f"/docs/{rel}").text  # rewritten for offline reading, content kept
    assert "<h1>orders validation</h1>" in served and "cutover-offline-note" in served


def test_docs_served_and_confined(docs: Path, client: TestClient) -> None:
    r = client.get("/docs/index.html")
    assert r.status_code == 404 and "not built yet" in r.text and "python -m cutover docs" in r.text
    assert str(docs) not in r.text  # no server path on the page
    (docs / "static").mkdir(parents=True)
    (docs / "index.html").write_text("<h1>GX docs</h1>")
    (docs / "static" / "style.css").write_text("body{}")
    (docs.parent / "secret.txt").write_text("secret")
    # the index is rendered by the plugin (GX's is a JavaScript table fed from CDNs)
    assert "Data docs — validations and suites" in client.get("/docs/index.html").text
    assert "Data docs — validations and suites" in client.get("/docs/").text
    css = client.get("/docs/static/style.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    assert client.get("/docs/../secret.txt").status_code == 404
    assert client.get("/docs/%2e%2e/secret.txt").status_code == 404
    missing = client.get("/docs/nope.html")
    assert missing.status_code == 404 and "nope.html" in missing.text and "not built yet" not in missing.text
    assert client.get("/docs", follow_redirects=False).headers["location"] == "/docs/index.html"


def test_links_use_the_mount_prefix(docs: Path, seeded: dict[str, str]) -> None:
    outer = FastAPI()
    outer.mount("/cutover", create_app(docs_dir=docs))
    c = TestClient(outer)
    page = c.get("/cutover/status", params={"pipeline": seeded["pipeline"]}).text
    assert 'href="/cutover/api/status?pipeline=' in page
    assert c.get("/cutover/", follow_redirects=False).headers["location"] == "/cutover/status"
    assert "/cutover/status" in c.get("/cutover/docs/index.html").text  # the no-docs page links back


def test_unreachable_control_db_gives_a_page_not_a_traceback(
    docs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_CUTOVER_UI_NOWHERE", "postgresql://nobody@127.0.0.1:1/none")
    c = TestClient(create_app(docs_dir=docs, conn_id="cutover_ui_nowhere"))
    r = c.get("/status")
    assert r.status_code == 503 and "Cannot read the control schema" in r.text
    assert c.get("/api/status").status_code == 503


def test_auth_required_when_asked(docs: Path) -> None:
    c = TestClient(create_app(docs_dir=docs, require_auth=True))
    assert c.get("/status").status_code == 401
    assert c.get("/docs/index.html").status_code == 401


def test_plugin_module_exposes_app_and_views(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = importlib.util.spec_from_file_location(
        "cutover_plugin_under_test", PROJECT_ROOT / "plugins" / "cutover_plugin.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    plugin = module.CutoverPlugin
    [fa] = plugin.fastapi_apps
    assert fa["url_prefix"] == "/cutover" and isinstance(fa["app"], FastAPI)
    views = {v["url_route"]: v for v in plugin.external_views}
    assert views["cutover-status"]["href"] == "/cutover/status"
    assert views["cutover-data-docs"]["href"] == "/cutover/docs/index.html"
    assert all(
        v["href"].startswith(fa["url_prefix"] + "/") and v["destination"] == "nav" for v in views.values()
    )
    paths = {getattr(r, "path", "") for r in fa["app"].routes}
    assert {"/status", "/api/status", "/docs/{path:path}"} <= paths
