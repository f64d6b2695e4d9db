"""A failed plan says why, in a real browser: the status page and the run's evidence page show the
plan's error (a missing schema, hostile-named), not a bare "failed · no units"; and a cutover run is
titled by its own DAG id, not by the build pipeline's name."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from cutover import connections
from cutover.lifecycle import state
from cutover.lifecycle.stages import PlanFailed, RunFailed, plan, report
from cutover.samples.hostile import HOSTILE_NAMES
from tests.ui.conftest import off_machine

pytestmark = [pytest.mark.ui, pytest.mark.integration]

#: a narrow-table schema that does not exist: a quote, a semicolon and a comment in its name
INJECTION = next(n for n in HOSTILE_NAMES if "DROP TABLE" in n)
MISSING = f"ui_failed {INJECTION}"


@pytest.fixture(scope="module")
def failed_plan() -> Iterator[dict[str, Any]]:
    """A ship_wide_build run whose plan failed on a missing schema (the real plan and report), and a
    cutover run of the same pipeline."""
    from cutover.ship_wide.spec import SPEC

    run_id = f"ui_failed_plan_{uuid.uuid4().hex[:8]}"
    params = {"schema": MISSING, "units": []}
    with pytest.raises(PlanFailed) as err:
        plan(SPEC, params, run_id, max_batches=4, dag_id="ship_wide_build")
    with pytest.raises(RunFailed):
        report(SPEC, params, run_id)
    cut = f"ui_failed_cut_{uuid.uuid4().hex[:8]}"
    with connections.pg_connect() as conn:
        state.start(conn, cut, SPEC.name, kind="cutover", dag_id="ship_wide_cutover")
    yield {"run_id": run_id, "error": str(err.value), "cutover": cut}
    with connections.pg_connect() as conn:
        conn.execute("DELETE FROM cutover.runs WHERE run_id = ANY(%s)", ([run_id, cut],))


def _reason_of(browser: Any, run_id: str) -> str:
    """The failure line right after the run's heading."""
    heading = browser.find_element("xpath", f"//h3[code[text()='{run_id}']]")
    return str(heading.find_element("xpath", "following-sibling::p[contains(@class, 'reason')][1]").text)


def test_the_status_page_shows_a_failed_plans_reason(failed_plan: dict[str, Any], browser: Any,
                                                    open_page: Any) -> None:
    urls = open_page("/cutover/status?pipeline=ship_wide_build")
    assert off_machine(urls) == [], urls
    reason = _reason_of(browser, failed_plan["run_id"])
    assert reason.startswith("why it failed: plan failed: NarrowTableError")
    assert "does not exist" in reason and MISSING in reason  # the hostile name shown as text
    heading = browser.find_element("xpath", f"//h3[code[text()='{failed_plan['run_id']}']]").text
    assert heading.startswith("ship_wide_build") and "failed" in heading
    cut = browser.find_element("xpath", f"//h3[code[text()='{failed_plan['cutover']}']]").text
    assert cut.startswith("ship_wide_cutover cutover"), cut  # its own DAG id, not "ship_wide_build cutover"


def test_the_run_page_shows_a_failed_plans_reason(failed_plan: dict[str, Any], browser: Any, open_page: Any) -> None:
    urls = open_page(f"/cutover/run/{failed_plan['run_id']}")
    assert off_machine(urls) == [], urls
    reason = browser.find_element("css selector", "p.reason").text
    assert "does not exist" in reason and MISSING in reason
    assert browser.find_element("tag name", "h1").text.startswith("ship_wide_build")
