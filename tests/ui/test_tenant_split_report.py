"""The tenant split's schema diff report in a real browser with no network: reached from the run's page,
rendered from its own inline stylesheet, hostile names shown as text, the workbook served as a download."""

from __future__ import annotations

import json
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest

from cutover import connections, control
from cutover.mysql_schema import Column, DatabaseSchema, ForeignKey, Index, TableSchema
from cutover.tenant_split import diff_report as dr
from cutover.tenant_split.mapping import TableRule
from tests.ui.conftest import off_machine

pytestmark = [pytest.mark.ui, pytest.mark.integration]

EVIL = "<img src=x onerror=alert(1)>"
RUN = f"manual__2024-01-01T00:00:00+00:00 ui_diff_{uuid.uuid4().hex[:8]}"
RUN_COPIED = RUN + " copied"


def _col(name: str, ctype: str = "int(11)") -> Column:
    return Column(name, ctype, ctype.split("(")[0], False, None, "")


@pytest.fixture(scope="module")
def report() -> Iterator[dict[str, Any]]:
    """A dry-run diff with a rename, a drop referenced by a foreign key (an error) and a hostile table name,
    saved where the plugin serves reports, and a finished run whose evidence points at it; and the same
    diff after a copy, with verified figures: one table lost a row to dead letters, one has rows outside
    every tenant reported."""
    pk = [Index("PRIMARY", ("id",), "primary")]
    src = DatabaseSchema("shop", {
        "customer_notes": TableSchema("customer_notes", [_col("id"), _col("tenant_id")], list(pk)),
        "legacy_sessions": TableSchema("legacy_sessions", [_col("id"), _col("tenant_id")], list(pk)),
        EVIL: TableSchema(EVIL, [_col("id"), _col("tenant_id"), _col("sid")], list(pk),
                          [ForeignKey("evil_fk", ("sid",), "legacy_sessions", ("id",))]),
    })
    rules = {"customer_notes": TableRule("customer_notes", "copy", "notes", "tenant_id", 3),
             "legacy_sessions": TableRule("legacy_sessions", "drop", "legacy_sessions", None, 4),
             EVIL: TableRule(EVIL, "copy", EVIL, "tenant_id", 0)}
    diff = dr.build_diff(src, rules).with_phase("dry_run")
    paths = dr.save_report(diff, RUN, title="Tenant split — schema diff")
    copied = diff.with_phase("copied").with_figures({
        "notes": {"rows_source": 10, "rows_target": 9, "dead_letters": 1, "checksums_match": False, "verified": True,
                  "units": 1, "units_verified": 1},
        EVIL: {"rows_source": 12, "rows_target": 8, "orphans_reported": 4, "checksums_match": True, "verified": True,
               "units": 1, "units_verified": 1}})
    dr.save_report(copied, RUN_COPIED, title="Tenant split — schema diff")
    with connections.pg_connect() as conn:
        control.ensure_schema(conn)
        control.start_run(conn, RUN, "tenant_split", {}, kind="build", dag_id="tenant_split")
        control.finish_run(conn, RUN, "success", {"schema_diff": dr.evidence_entry(paths, diff)})
        conn.commit()
    yield paths


def test_report_is_linked_from_the_run_and_renders_offline(report: dict[str, Any], browser: Any, open_page: Any,
                                                           airflow_server: str) -> None:
    open_page(f"/cutover/run/{quote(RUN, safe='')}")
    link = browser.find_element("link text", "Schema diff report").get_attribute("href")
    assert link.endswith(f"/cutover/reports/{quote(RUN, safe='')}/schema_diff.html")
    urls = open_page("/" + link.split("/", 3)[3])
    assert off_machine(urls) == [], urls
    text = browser.find_element("tag name", "body").text
    assert "Tenant split — schema diff" in text and RUN in text
    assert "customer_notes" in text and "notes" in text and "rename" in text and "legacy_sessions" in text
    assert EVIL in text  # shown as text, not run as markup
    assert browser.find_elements("css selector", "img") == []
    assert "references dropped table" in text and "1 error(s)" in text
    assert "dry run: nothing was written" in text and "fix before the copy" in text
    err = browser.find_element("css selector", ".sev.error")
    assert err.value_of_css_property("background-color") == "rgba(255, 208, 208, 1)"  # the inline stylesheet applied
    assert [e for e in browser.get_log("browser") if e.get("level") == "SEVERE"] == []
    xlsx = browser.find_element("link text", "Spreadsheet (XLSX)").get_attribute("href")
    with urllib.request.urlopen(xlsx, timeout=30) as r:
        assert r.headers["Content-Type"] == dr.XLSX_MEDIA_TYPE
        assert "attachment" in r.headers["Content-Disposition"] and r.read(2) == b"PK"
    with urllib.request.urlopen(f"{airflow_server}{report['json_url']}", timeout=30) as r:
        assert json.loads(r.read())["run_id"] == RUN


def test_a_copied_run_report_tells_the_truth(report: dict[str, Any], browser: Any, open_page: Any) -> None:
    """After the copy: no "dry run", no "fix before the copy"; a table with a dead letter is red, and the
    rows outside every tenant are shown as source rows not copied."""
    urls = open_page(f"/cutover/reports/{quote(RUN_COPIED, safe='')}/schema_diff.html")
    assert off_machine(urls) == [], urls
    text = browser.find_element("tag name", "body").text
    assert "after the copy" in text and "dry run" not in text and "fix before the copy" not in text
    assert "DEAD LETTERS" in text and "rows in dead letters" in text
    assert "4 outside every tenant (reported)" in text and "not copied (orphans: report)" in text
    assert "22 source rows = 17 in the target + 1 in dead letters + 4 outside every tenant (reported)" in text
    bad = browser.find_elements("css selector", ".state.bad")
    assert bad and all(e.value_of_css_property("background-color") != "rgba(198, 247, 226, 1)" for e in bad)
