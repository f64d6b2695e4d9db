"""The status page's change streams and stray writes, in a real headless browser: streams (forward and
reverse) and stray writes seeded through the control schema's own functions with hostile names, the
page loaded from the Airflow API server, every row and the warning style asserted on what renders."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from cutover import connections, control
from cutover.samples.hostile import HOSTILE_NAMES
from cutover.ui import status as status_mod
from tests.ui.conftest import off_machine

pytestmark = [pytest.mark.ui, pytest.mark.integration]

PIPELINE = f"h6_ui_streams_{uuid.uuid4().hex[:6]}"
INJECTION = next(n for n in HOSTILE_NAMES if "DROP TABLE" in n)
SCRIPT = "<script>document.title='pwned'</script> & co"  # markup that must show as text
PERCENT = "100%"
CJK = "船速"
#: (tenant, direction) → (state, lag_s, rows applied, minutes since the last report)
STREAMS: dict[tuple[str, str], tuple[str, float | None, int, int]] = {
    (INJECTION, "forward"): ("running", 0.4, 1200, 0),  # healthy
    (SCRIPT, "forward"): ("running", 12.5, 3400, 0),  # lagging: 12.5 s behind
    (PERCENT, "reverse"): ("running", 0.2, 7, 10),  # stale: live, no report for 10 minutes
    (CJK, "reverse"): ("drained", 0.0, 42, 30),  # ended long ago: not stale
}
STRAYS = [
    {"table": INJECTION, "kind": "insert", "key": {"id": 7, "tenant": SCRIPT}, "position": "mysql-bin.000003:4711",
     "forwarded": False},
    {"table": "a.b", "kind": "delete", "key": [CJK, 2], "position": "mysql-bin.000003:4800", "forwarded": True},
]


@pytest.fixture(scope="module")
def seeded() -> Iterator[None]:
    """The streams of :data:`STREAMS` and the stray writes of :data:`STRAYS`, for :data:`PIPELINE` only."""
    with connections.pg_connect() as conn:
        control.ensure_schema(conn)
        for (name, direction), (state, lag, applied, minutes) in STREAMS.items():
            control.report_stream(conn, PIPELINE, "shop", name, direction, position=f"mysql-bin.000003:{applied}",
                                  lag_s=lag, applied=applied, state=state)
            conn.execute("UPDATE cutover.streams SET updated_at = now() - make_interval(mins => %s) "
                         "WHERE pipeline = %s AND name = %s AND direction = %s", (minutes, PIPELINE, name, direction))
        control.record_stray_writes(conn, PIPELINE, "shop", SCRIPT, STRAYS[:1], run_id="h6_run")
        control.record_stray_writes(conn, PIPELINE, "shop", CJK, STRAYS[1:], run_id="h6_run")
        conn.commit()
    yield
    with connections.pg_connect() as conn:
        conn.execute("DELETE FROM cutover.streams WHERE pipeline = %s", (PIPELINE,))
        conn.execute("DELETE FROM cutover.stray_writes WHERE pipeline = %s", (PIPELINE,))
        conn.commit()


def _stream_row(browser: Any, name: str, direction: str) -> Any:
    for row in browser.find_elements("css selector", "table.streams tbody tr"):
        cells = row.find_elements("tag name", "td")
        if cells[2].text == name and cells[3].text == direction:
            return row
    raise AssertionError(f"no stream row for {name!r} {direction}")


def test_the_status_page_lists_streams_with_lag_warnings(seeded: None, browser: Any, open_page: Any) -> None:
    urls = open_page(f"/cutover/status?pipeline={PIPELINE}")
    assert off_machine(urls) == [], urls
    assert browser.title != "pwned"  # the script in a tenant's name stayed text
    rows = browser.find_elements("css selector", "table.streams tbody tr")
    assert len(rows) == len(STREAMS)
    for (name, direction), (state, lag, applied, _minutes) in STREAMS.items():
        cells = [c.text for c in _stream_row(browser, name, direction).find_elements("tag name", "td")]
        assert cells[0] == PIPELINE and cells[1] == "shop" and cells[4] == state
        assert cells[5] == f"mysql-bin.000003:{applied}" and cells[7] == f"{applied:,}"
        assert cells[6].startswith(f"{lag:.1f} s"), cells
        assert "UTC" in cells[8]
    healthy = _stream_row(browser, INJECTION, "forward")
    lagging = _stream_row(browser, SCRIPT, "forward")
    stale = _stream_row(browser, PERCENT, "reverse")
    ended = _stream_row(browser, CJK, "reverse")
    assert "lagging" in lagging.get_attribute("class") and "12.5 s behind" in lagging.text
    assert "stale" in stale.get_attribute("class") and "stale: no report for 10m" in stale.text
    for quiet in (healthy, ended):
        assert not (set(quiet.get_attribute("class").split()) & {"lagging", "stale"}), quiet.text
        assert quiet.find_elements("css selector", "span.warn") == []
    for row in (lagging, stale):  # the warning is visible: a yellow badge
        badge = row.find_element("css selector", "span.warn")
        assert badge.is_displayed() and badge.value_of_css_property("background-color") == "rgba(255, 243, 196, 1)"


def test_the_status_page_lists_stray_writes_newest_first(seeded: None, browser: Any, open_page: Any) -> None:
    open_page(f"/cutover/status?pipeline={PIPELINE}")
    heading = browser.find_element("xpath", "//h2[starts-with(., 'Stray writes')]")
    table = heading.find_element("xpath", "following-sibling::table[1]")
    rows = [[c.text for c in r.find_elements("tag name", "td")] for r in table.find_elements("css selector", "tbody tr")]
    assert len(rows) == 2
    newest, older = rows  # the delete was recorded last
    assert newest[:4] == [PIPELINE, CJK, "a.b", "delete"]
    assert json.loads(newest[4]) == [CJK, 2] and newest[5] == "mysql-bin.000003:4800"
    assert "UTC" in newest[6] and newest[7] == "forwarded"
    assert older[:4] == [PIPELINE, SCRIPT, INJECTION, "insert"]
    assert json.loads(older[4]) == {"id": 7, "tenant": SCRIPT} and older[7] == "not forwarded"


def test_streams_are_in_the_json_and_bounded(seeded: None, pg: Any) -> None:
    data = status_mod.collect_status(pg, pipeline=PIPELINE)
    flags = {(s["name"], s["direction"]): (s["lagging"], s["stale"]) for s in data["streams"]}
    assert flags == {(INJECTION, "forward"): (False, False), (SCRIPT, "forward"): (True, False),
                     (PERCENT, "reverse"): (False, True), (CJK, "reverse"): (False, False)}
    assert data["stray_writes_total"] == 2 and [w["kind"] for w in data["stray_writes"]] == ["delete", "insert"]
    many = {**data, "stray_writes": data["stray_writes"][:1], "stray_writes_total": 5000}
    assert "newest 1 of 5,000" in status_mod.streams_html(many)
    assert "No change stream has reported yet." in status_mod.streams_html({})
