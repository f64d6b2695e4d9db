"""What a reviewer reads before approving a cutover, in a real browser with no network: the migration
status page, the data docs index and a failed validation's page — content present, nothing requested
from any host but localhost, no broken request."""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from psycopg import sql

from cutover import connections, control
from cutover.identifiers import pg_ident
from cutover.lifecycle import state
from cutover.lifecycle.model import PlannedUnit, UnitKey, UnitState
from cutover.quality import gate
from tests.ui.conftest import SHOTS, off_machine, requested_urls

pytestmark = [pytest.mark.ui, pytest.mark.integration]

SCHEMA = "cutover_ui_review"
TABLE = "vessel-7 readings"
RUN = f"ui_review_{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def seeded() -> Iterator[dict[str, Any]]:
    """A build run with a verified and a failed unit, dead letters, and two gates (one passing, one failing)."""
    with connections.pg_connect() as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(pg_ident(SCHEMA)))
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(pg_ident(SCHEMA)))
        conn.execute(sql.SQL("CREATE TABLE {} (created_time int PRIMARY KEY, v int)").format(pg_ident(SCHEMA, TABLE)))
        conn.execute(sql.SQL("INSERT INTO {} SELECT g, g FROM generate_series(1, 4) g").format(pg_ident(SCHEMA, TABLE)))
        state.start(conn, RUN, "ui_review", dag_id="ship_wide_build")
        good, bad = UnitKey(SCHEMA, ("ship-ok",)), UnitKey(SCHEMA, ("ship-bad",))
        state.record_plan(conn, RUN, "ui_review", [PlannedUnit(good, 120), PlannedUnit(bad, 80)])
        state.advance(conn, RUN, str(good), UnitState.PREPARED)
        for i in range(1, 5):  # four committed chunks, a moment apart: the rows/s chart has points
            state.chunk_done(conn, RUN, str(good), rows_read=30 * i, rows_written=i)
            conn.commit()
            time.sleep(0.3)
        state.advance(conn, RUN, str(good), UnitState.COPIED, rows_read=120, rows_written=4)
        readers = {  # what ship_wide's verify records (cutover.ship_wide.readers.time_reader_queries)
            "range": {"narrow_ms": 28.4, "wide_ms": 2.1, "speedup": 13.52, "faster_pct": 92.6, "target_met": True,
                      "rows": 240},
            "overall": {"narrow_ms": 29.8, "wide_ms": 2.3, "speedup": 12.96, "faster_pct": 92.3, "target_met": True,
                        "target_faster_pct": 50}}
        state.advance(conn, RUN, str(good), UnitState.VERIFIED, checksum_source="42", checksum_target="42",
                      detail={"verify": {"readers": readers}})
        state.advance(conn, RUN, str(bad), UnitState.FAILED, error="ChannelLimitExceeded: 1017 channels",
                      failed_stage="prepare")
        control.add_dead_letters(conn, "ui_review", RUN, str(good), [
            control.DeadLetter("tenant.tbl_data_timeseries", "ship=ship-ok id=7", "unknown value_format 'Float'",
                               {"id": 7, "value_format": "Float", "note": "<script>alert(1)</script>"})])
        state.finish(conn, RUN, state.judge(conn, RUN))
        control.set_route(conn, "ui_review", "shop", "O'Brien <&> Sons", {"backend": "tenant_db", "database": "tenant_o_brien_1f2e"},
                          state="paused", run_id=RUN, reason="cutover: write pause")
    ok = gate.run_gate("ui_review_ok", schema=SCHEMA, table=TABLE, run_id=RUN, raise_on_failure=False,
                       expectations=[{"type": "expect_table_row_count_to_equal", "kwargs": {"value": 4}}])
    bad_gate = gate.run_gate("ui_review_bad", schema=SCHEMA, table=TABLE, run_id=RUN, raise_on_failure=False,
                             expectations=[{"type": "expect_table_row_count_to_equal", "kwargs": {"value": 5}},
                                           {"type": "expect_column_values_to_not_be_null",
                                            "kwargs": {"column": "created_time"}}])
    assert ok.success and not bad_gate.success
    yield {"run_id": RUN}
    with connections.pg_connect() as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(pg_ident(SCHEMA)))
        conn.execute("DELETE FROM cutover.routes WHERE pipeline = 'ui_review'")
        conn.execute("DELETE FROM cutover.route_history WHERE pipeline = 'ui_review'")


def _text(browser: Any) -> str:
    return str(browser.find_element("tag name", "body").text)


def _broken(browser: Any) -> list[str]:
    """Responses with an error status since the last check (404 favicon and the like)."""
    bad = []
    for entry in browser.get_log("performance"):
        msg = json.loads(entry["message"])["message"]
        if msg.get("method") == "Network.responseReceived" and msg["params"]["response"]["status"] >= 400:
            bad.append(f'{msg["params"]["response"]["status"]} {msg["params"]["response"]["url"]}')
    return bad


def _keep(browser: Any, name: str) -> None:
    if os.environ.get("CUTOVER_UI_SCREENSHOTS"):
        SHOTS.mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(str(SHOTS / f"{name}.png"))


def test_status_page_shows_the_run_its_units_and_dead_letters(seeded: dict[str, Any], browser: Any,
                                                              open_page: Any) -> None:
    urls = open_page("/cutover/status?pipeline=ui_review")
    text = _text(browser)
    _keep(browser, "status")
    assert off_machine(urls) == [], urls
    assert seeded["run_id"] in text and "failed" in text
    assert "source rows read" in text and "target rows written" in text
    assert "ship-bad" in text and "ChannelLimitExceeded" in text and "prepare" in text
    assert "UTC" in text and "auto-refresh" in text
    link = browser.find_element("link text", "Airflow run ↗").get_attribute("href")
    assert link.endswith(f"/dags/ship_wide_build/runs/{seeded['run_id']}")
    assert "Dead letters" in text
    # a tenant's route, its hostile name shown as text, paused while a cutover holds its writes
    assert "Routes (where each tenant" in text and "O'Brien <&> Sons" in text and "tenant_o_brien_1f2e" in text
    assert "paused" in text


def test_data_docs_index_lists_validations_and_marks_failures(seeded: dict[str, Any], browser: Any,
                                                              open_page: Any) -> None:
    urls = open_page("/cutover/docs/index.html")
    _keep(browser, "docs_index")
    assert off_machine(urls) == [], urls
    assert _broken(browser) == []
    text = _text(browser)
    assert "ui_review_ok" in text and "ui_review_bad" in text and "✘ FAILED" in text and "✔ passed" in text
    failed_row = browser.find_element("css selector", "tr.failed td")
    assert failed_row.value_of_css_property("background-color") == "rgba(255, 240, 240, 1)"  # visibly red
    mark = browser.find_element("css selector", "tr.failed .cutover-fail")
    assert mark.is_displayed() and mark.value_of_css_property("color") == "rgba(97, 4, 4, 1)"


def test_a_failed_validation_page_reads_offline(seeded: dict[str, Any], browser: Any, open_page: Any) -> None:
    open_page("/cutover/docs/index.html")
    href = next(a.get_attribute("href") for a in browser.find_elements("css selector", "tr.failed a")
                if a.text == "open")
    urls = open_page("/" + href.split("/", 3)[3])
    _keep(browser, "validation_failed")
    assert off_machine(urls) == [], urls
    assert _broken(browser) == []
    text = _text(browser)
    assert "✘ FAILED" in text and "✔ passed" in text  # per expectation, without the CDN icon font
    assert "expect_table_row_count_to_equal" in text or "Must have exactly" in text
    assert browser.find_element("css selector", ".cutover-fail").is_displayed()
    assert "Subscribe" not in text and "newsletter" not in text  # GX's footer links off the machine: gone
    assert browser.find_elements("tag name", "footer") == []
    errors = [e for e in browser.get_log("browser") if e.get("level") == "SEVERE"]
    assert errors == []


def test_run_evidence_and_dead_letters_pages(seeded: dict[str, Any], browser: Any, open_page: Any) -> None:
    open_page("/cutover/status?pipeline=ui_review")
    href = next(a.get_attribute("href") for a in browser.find_elements("link text", "evidence bundle")
                if seeded["run_id"] in a.get_attribute("href"))
    urls = open_page("/" + href.split("/", 3)[3])
    _keep(browser, "run_evidence")
    assert off_machine(urls) == [], urls
    text = _text(browser)
    assert "Evidence bundle" in text and "planned_units" in text and "reason" in text  # the report, in full
    assert "ship-bad" in text and "ChannelLimitExceeded" in text and "prepare" in text
    assert "ui_review_bad" in text and "Switches" in text
    # the readers' speed-up recorded at verify, in its own table
    assert "Readers: narrow → wide" in text and "13.52×" in text and "92.6 % faster" in text
    chart = browser.find_element("css selector", "svg.rate")
    assert chart.is_displayed() and len(browser.find_elements("css selector", "svg.rate circle")) >= 2
    bars = [b.get_attribute("style") for b in browser.find_elements("css selector", ".bar i")]
    assert sorted(bars) == ["width: 0%;", "width: 100%;"], bars  # ship-bad 0 of 80, ship-ok 120 of 120 rows read
    browser.find_element("partial link text", "record(s) of this run").click()
    _keep(browser, "dead_letters")
    text = _text(browser)
    assert "unknown value_format 'Float'" in text and "ship=ship-ok id=7" in text
    browser.find_element("css selector", "details summary").click()
    assert "<script>alert(1)</script>" in _text(browser)  # the payload, shown as text, never run
    assert off_machine(requested_urls(browser)) == []


def test_the_request_check_catches_a_request_to_another_host() -> None:
    """The check the other tests rely on: a CDN URL counts, the browser's internal pages do not."""
    urls = ["http://127.0.0.1:8080/cutover/status", "data:,", "chrome://resources/js/util.js",
            "https://cdn.jsdelivr.net/npm/vega@5", "//code.jquery.com/x.js", "http://localhost/x"]
    assert off_machine(urls) == ["https://cdn.jsdelivr.net/npm/vega@5"]
