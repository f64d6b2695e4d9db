"""mysql_to_postgres' type-mapping report in a real browser with no network: reached from the run's page,
rendered from its inline stylesheet, hostile table and column names shown as text, a verified table with
dead letters shown in the warning colour with the verification's figures (not the copy's counters)."""

from __future__ import annotations

import json
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest

from cutover import connections, control
from cutover.lifecycle.model import UnitKey
from cutover.mysql_schema import Column, Index, TableSchema
from cutover.mysql_to_postgres import report
from cutover.mysql_to_postgres.config import MysqlToPostgresConfig
from cutover.mysql_to_postgres.typemap import map_table
from tests.ui.conftest import off_machine

pytestmark = [pytest.mark.ui, pytest.mark.integration]

EVIL = "<img src=x onerror=alert(1)>"
RUN = f"manual__2024-01-01T00:00:00+00:00 ui_types_{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def saved() -> Iterator[dict[str, Any]]:
    cols = [Column("id", "bigint(20) unsigned", "bigint", False, None, "auto_increment"),
            Column(EVIL, "enum('a b','c,d','(e)')", "enum", False, "'a b'", ""),
            Column("seen", "datetime(6)", "datetime", True, "current_timestamp(6)", "on update current_timestamp(6)"),
            Column("odd", "varchar(10)", "varchar", True, "some_function()", "", "utf8mb4")]
    tm = map_table(TableSchema(EVIL, cols, [Index("PRIMARY", ("id",), "primary")]), target=EVIL, json_columns=set(),
                   zero_date="null", enum_empty="dead_letter")
    cfg = MysqlToPostgresConfig(source_database="shop", target_schema="mirror")
    with connections.pg_connect() as conn:
        control.ensure_schema(conn)
        control.start_run(conn, RUN, "mysql_to_postgres", {}, kind="build", dag_id="mysql_to_postgres_build")
        conn.commit()
    # the verified record of the table: 10 MySQL rows, 8 in PostgreSQL, 2 in dead letters, 3 '' ENUMs counted
    unit = {"unit_key": str(UnitKey(cfg.scope, (EVIL,))), "state": "verified", "error": None, "failed_stage": None,
            "rows_read": 999, "rows_written": 999,  # copy counters: never what the report shows
            "detail": {"verify": {"dead_letters": 2, "consistency": {"source_rows": 10, "target_rows": 8}},
                       "copy": {"rule_changes": {EVIL: {"invalid ENUM '' kept": 3}}}}}
    entry = report.save(cfg, RUN, [tm], [unit], {"read_only": {"user": "cutover_ro@%", "attempt": "refused (1142)"}})
    with connections.pg_connect() as conn:
        control.finish_run(conn, RUN, "success", {"type_mapping": entry})
        conn.commit()
    yield entry


def test_type_mapping_report_is_linked_from_the_run_and_renders_offline(saved: dict[str, Any], browser: Any,
                                                                         open_page: Any, airflow_server: str) -> None:
    open_page(f"/cutover/run/{quote(RUN, safe='')}")
    link = browser.find_element("link text", "Type mapping report").get_attribute("href")
    assert link.endswith(f"/cutover/reports/{quote(RUN, safe='')}/type_mapping.html")
    urls = open_page("/" + link.split("/", 3)[3])
    assert off_machine(urls) == [], urls
    text = browser.find_element("tag name", "body").text
    assert "Type mapping: MySQL shop → PostgreSQL mirror" in text
    assert EVIL in text and browser.find_elements("css selector", "img") == []  # text, not markup
    assert "numeric(20,0) auto-increment sequence" in text and "enum_empty: dead_letter" in text
    assert "LOCALTIMESTAMP(6)" in text and "on update → LOCALTIMESTAMP(6)" in text
    assert "some_function()" in text and "1 warning(s)" in text  # the untranslated default is reported
    assert "refused (1142)" in text
    warn = browser.find_element("css selector", "span.warn")
    assert warn.value_of_css_property("color") == "rgba(161, 92, 0, 1)"  # the inline stylesheet applied
    # a verified table that lost rows to dead letters is not green, and its figures are the verification's
    state = browser.find_element("xpath", "//td[starts-with(normalize-space(.), 'verified')]")
    assert "2 row(s) in dead letters" in state.text
    assert state.value_of_css_property("color") == "rgba(161, 92, 0, 1)", state.value_of_css_property("color")
    row = state.find_element("xpath", "./..").text
    assert "10 8 2 3" in row and "999" not in row, row
    assert "invalid ENUM '' kept: 3" in text
    assert [e for e in browser.get_log("browser") if e.get("level") == "SEVERE"] == []
    with urllib.request.urlopen(f"{airflow_server}{saved['json']}", timeout=30) as r:
        assert json.loads(r.read())["run_id"] == RUN
