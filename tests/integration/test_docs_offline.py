"""The data docs readable offline: real GX validations (one passing, one failing, a hostile table name)
served through the plugin app: our index lists them, every page is free of other hosts, pass/fail marks."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi.testclient import TestClient
from psycopg import sql

from cutover.identifiers import pg_ident
from cutover.quality import gate
from cutover.ui import docs_offline
from cutover.ui.app import create_app

pytestmark = pytest.mark.integration

SCHEMA = "cutover_it_docs_offline"
TABLE = 'vessel-7 "docs"'


@pytest.fixture(scope="module")
def validated() -> dict[str, Any]:
    from cutover import connections

    with connections.pg_connect() as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(pg_ident(SCHEMA)))
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(pg_ident(SCHEMA)))
        conn.execute(sql.SQL("CREATE TABLE {} (id int PRIMARY KEY, v int)").format(pg_ident(SCHEMA, TABLE)))
        conn.execute(sql.SQL("INSERT INTO {} SELECT g, g FROM generate_series(1, 5) g").format(pg_ident(SCHEMA, TABLE)))
    ok = gate.run_gate("it_docs_offline_ok", schema=SCHEMA, table=TABLE, run_id="it-docs-ok", raise_on_failure=False,
                       expectations=[{"type": "expect_table_row_count_to_equal", "kwargs": {"value": 5}},
                                     {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "id"}}])
    bad = gate.run_gate("it_docs_offline_bad", schema=SCHEMA, table=TABLE, run_id="it-docs-bad", raise_on_failure=False,
                        expectations=[{"type": "expect_table_row_count_to_equal", "kwargs": {"value": 6}},
                                      {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "id"}}])
    assert ok.success and not bad.success
    yield {"ok": ok, "bad": bad}
    with connections.pg_connect() as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(pg_ident(SCHEMA)))


@pytest.fixture
def client() -> TestClient:
    return TestClient(create_app())


def _hrefs(page: str) -> list[str]:
    return re.findall(r'href="([^"]+)"', page)


def test_index_lists_every_validation_and_suite_failed_first(validated: dict[str, Any], client: TestClient) -> None:
    r = client.get("/docs/index.html")
    assert r.status_code == 200
    page = r.text
    assert docs_offline.external_references(page) == []
    assert "it_docs_offline_ok" in page and "it_docs_offline_bad" in page
    failed_section = page.split("<h2>Failed validations")[1].split("<h2>All validations")[0]
    assert "it_docs_offline_bad" in failed_section and "it_docs_offline_ok" not in failed_section
    assert "✘ FAILED" in failed_section and '<tr class="failed">' in failed_section
    assert "✔ passed" in page and "it-docs-ok" in page and "1 / 2" in failed_section
    assert "<h2>Suites" in page and "expectations/it_docs_offline_ok.html" in page
    # every validation link opens a page served by the plugin
    for href in [h for h in _hrefs(page) if "/validations/" in h]:
        assert client.get(href).status_code == 200, href


def test_validation_pages_need_no_network_and_show_pass_fail(validated: dict[str, Any], client: TestClient) -> None:
    index = client.get("/docs/index.html").text
    pages = {name: next(h for h in _hrefs(index) if "/validations/" in h and name in h)
             for name in ("it_docs_offline_ok", "it_docs_offline_bad")}
    bad = client.get(pages["it_docs_offline_bad"]).text
    ok = client.get(pages["it_docs_offline_ok"]).text
    for page in (ok, bad):
        assert docs_offline.external_references(page) == []
        assert "<script" not in page.lower() and "fa-check-circle" not in page
        assert "/assets/offline.css" in page and 'rel="icon" href="data:,"' in page
    assert bad.count("✘ FAILED") >= 1 and bad.count("✔ passed") >= 1  # the failed and the passed expectation
    assert ok.count("✔ passed") >= 2 and "✘ FAILED" not in ok
    css = client.get("/assets/offline.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    # the suite pages too
    suite = client.get("/docs/expectations/it_docs_offline_bad.html").text
    assert docs_offline.external_references(suite) == [] and "<script" not in suite.lower()


def test_rewrite_is_idempotent_and_strips_every_host() -> None:
    page = ('<html><head><link rel="stylesheet" href="https://cdn.example/x.css"><link rel="shortcut icon" '
            'href="../static/images/favicon.ico"><script src="//cdn.example/j.js"></script>'
            '<script>$(function(){})</script></head><body><img src="https://s3.example/logo.png">'
            '<a href="https://greatexpectations.io/x">GX</a><i class="fas fa-times text-danger"></i>'
            '<i class="fas fa-check-circle text-success" aria-hidden="true"></i></body></html>')
    once = docs_offline.rewrite_page(page, css_href="/cutover/assets/offline.css", index_href="/cutover/docs/index.html")
    assert docs_offline.external_references(once) == []
    assert "<script" not in once and "favicon.ico" not in once and ">GX</a>" in once
    assert "✘ FAILED" in once and "✔ passed" in once
    assert docs_offline.rewrite_page(once, css_href="x", index_href="y") == once
