"""Status page rendering without a database: escaping, summaries, durations, docs links."""

from __future__ import annotations

from pathlib import Path

from cutover.ui import status

EVIL = '<img src=x onerror="alert(1)">'


def _status() -> dict:
    return {
        "pipeline": EVIL,
        "schema_exists": True,
        "generated_at": "2026-01-01T00:00:00+00:00",
        "runs": [
            {
                "run_id": EVIL,
                "pipeline": EVIL,
                "kind": EVIL,
                "state": "failed",
                "started_at": "2026-01-01T00:00:00+00:00",
                "finished_at": None,
                "duration_s": 3725.0,
                "evidence_summary": status.summarize_evidence({"note": EVIL}),
                "unit_totals": {
                    "units": 1,
                    "rows_read": 5,
                    "rows_written": 4,
                    "rows_total": 9,
                    "checksum_mismatches": 1,
                    "states": {EVIL: 1},
                },
                "units": [
                    {
                        "unit_key": EVIL,
                        "state": EVIL,
                        "rows_read": 5,
                        "rows_written": 4,
                        "rows_total": 9,
                        "checksums_match": False,
                        "updated_at": None,
                        "failed_stage": EVIL,
                        "error": EVIL,
                    }
                ],
            }
        ],
        "quality": [
            {
                "suite": EVIL,
                "asset": EVIL,
                "success": False,
                "evaluated": 2,
                "failed": 1,
                "failures": [EVIL],
                "run_id": EVIL,
                "checked_at": None,
                "docs_page": "validations/a b/<x>.html",
            }
        ],
        "switches": [
            {
                "pipeline": EVIL,
                "unit_key": EVIL,
                "backend": EVIL,
                "canary_pct": 5,
                "actor": EVIL,
                "run_id": EVIL,
                "updated_at": None,
            }
        ],
        "switch_history": [
            {
                "at": None,
                "pipeline": EVIL,
                "unit_key": EVIL,
                "from_backend": None,
                "to_backend": EVIL,
                "canary_pct": 5,
                "actor": EVIL,
                "reason": EVIL,
                "run_id": EVIL,
            }
        ],
        "consistency": [
            {
                "pair_name": EVIL,
                "checked_at": None,
                "status": EVIL,
                "rows_checked": 1,
                "missing": 0,
                "extra": 0,
                "changed": 0,
                "lag_s": 7200.0,
                "stale": True,
            }
        ],
        "dead_letters": [{"pipeline": EVIL, "unit_key": EVIL, "count": 3, "last_at": None}],
    }


def test_everything_from_data_is_escaped() -> None:
    page = status.render_status_html(_status(), prefix="/cutover", docs_available=True)
    assert "<img" not in page
    assert page.count("&lt;img src=x onerror=&quot;alert(1)&quot;&gt;") >= 17  # kind and failed_stage too
    assert 'href="/cutover/docs/validations/a%20b/%3Cx%3E.html"' in page
    assert "(stale)" in page and "1h 02m" in page  # lag and run duration
    assert "MISMATCH" in page and "1 checksum mismatches" in page


def test_rows_read_and_written_are_labelled_columns() -> None:
    st = _status()
    run = st["runs"][0]
    run["kind"] = "cutover"
    [unit] = run["units"]
    unit.update(rows_read=1234, rows_written=617, rows_total=2000, failed_stage="verify", error="checksum mismatch")
    run["unit_totals"].update(rows_read=1234, rows_written=617, rows_total=2000)
    page = status.render_status_html(st)
    assert "<th>source rows read</th><th>target rows written</th><th>rows total</th>" in page
    assert "<th>failed in</th><th>error</th>" in page
    assert ('<td><span class="n">1,234</span><div class="bar" title="62 % of 2,000 source rows">'
            '<i style="width:61.7%"></i></div></td><td><span class="n">617</span></td><td>2,000</td>') in page
    assert "<td>verify</td><td>checksum mismatch</td>" in page
    assert "source rows read 1,234 / 2,000 · target rows written 617" in page  # the run's totals
    assert '<span class="kind">cutover</span>' in page
    assert "rows done" not in page


def test_a_row_without_the_new_values_renders_blank() -> None:
    """A unit / run read from a control schema that has no rows read / written, stage or kind yet."""
    st = _status()
    run = st["runs"][0]
    del run["kind"]
    [unit] = run["units"]
    for key in ("rows_read", "rows_written", "failed_stage"):
        unit[key] = None
    run["unit_totals"].update(rows_read=None, rows_written=None)
    page = status.render_status_html(st)
    assert ('<td><span class="n"></span><div class="bar" title="0 % of 9 source rows"><i style="width:0.0%"></i>'
            '</div></td><td><span class="n"></span></td><td>9</td>') in page
    assert "source rows read – / 9 · target rows written –" in page
    assert 'class="kind"' not in page and "None" not in page


def test_error_and_missing_schema_pages() -> None:
    page = status.render_status_html({"schema_exists": False}, error=f"OperationalError: {EVIL}")
    assert "Cannot read the control schema" in page and "<img" not in page
    page = status.render_status_html({"schema_exists": False})
    assert "does not exist yet" in page and "No runs recorded" in page


def test_summaries_and_durations() -> None:
    ev = {"rows": 10, "gate": {"success": False, "failed": 1}, "tables": ["a", "b"], "long": "x" * 200}
    assert status.summarize_evidence(ev) == [
        "rows: 10",
        "gate: FAILED (2 entries)",
        "tables: 2 items",
        "long: " + "x" * 77 + "…",
    ]
    assert len(status.summarize_evidence({str(i): i for i in range(20)}, max_items=3)) == 4
    assert [status.format_duration(s) for s in (None, 5, 95, 3725, 200000)] == [
        "",
        "5s",
        "1m 35s",
        "1h 02m",
        "2d 07h",
    ]
    assert status.checksums_match(None, "a") is None and status.checksums_match("a", "a") is True


def test_docs_page_lookup_stays_inside_docs(tmp_path: Path) -> None:
    docs = tmp_path / "site"
    run_dir = docs / "validations" / "suite[1]" / "run*1" / "t1"
    run_dir.mkdir(parents=True)
    (run_dir / "ds-other.html").write_text("x")
    (run_dir / "ds-orders.html").write_text("x")
    (tmp_path / "outside.html").write_text("x")
    found = status.find_docs_page(docs, "suite[1]", "pg:orders", "run*1", None)
    assert found == "validations/suite[1]/run*1/t1/ds-orders.html"  # glob characters in names are literal
    assert (
        status.find_docs_page(docs, "suite[1]", "pg:orders", "other-run", str(tmp_path / "outside.html"))
        is None
    )
    assert status.find_docs_page(None, "s", "a", None, None) is None


def test_times_carry_their_zone_and_runs_link_to_airflow() -> None:
    import datetime as dt

    s = _status()
    s["runs"][0]["dag_id"] = "ship_wide_build"
    s["runs"][0]["run_id"] = "manual__2026-01-01T00:00:00+00:00"
    s["runs"][0]["started_at"] = dt.datetime(2026, 1, 1, 9, 30, tzinfo=dt.timezone(dt.timedelta(hours=9)))
    html = status.render_status_html(s, prefix="/cutover")
    assert "started 2026-01-01 00:30:00 UTC" in html  # 09:30 at +09:00, said in UTC
    assert "as of 2026-01-01 00:00:00 UTC" in html
    assert 'href="/dags/ship_wide_build/runs/manual__2026-01-01T00%3A00%3A00%2B00%3A00"' in html
    # mounted under a sub-path, the Airflow link keeps it
    assert 'href="/af/dags/ship_wide_build/runs/' in status.render_status_html(s, prefix="/af/cutover")
    assert status._ts(dt.datetime(2026, 1, 1, 0, 0)).endswith("(no zone)</span>")


def test_auto_refresh_control() -> None:
    html = status.render_status_html(_status(), prefix="/cutover", refresh_s=30)
    assert '<meta http-equiv="refresh" content="30">' in html
    assert "auto-refresh:" in html and "<b>30 s</b>" in html
    assert 'href="/cutover/status?pipeline=' in html and "refresh=10" in html
    off = status.render_status_html(_status(), prefix="/cutover")
    assert 'http-equiv="refresh"' not in off and "<b>off</b>" in off


def test_first_steps_note_names_paused_dags() -> None:
    s = _status()
    s["consistency"] = [{"pair_name": "p", "status": "consistent", "stale": True, "check_age_s": 7200.0}]
    html = status.render_status_html(s, prefix="/cutover", paused=["consistency_checks"])
    assert "First steps" in html and 'href="/dags/consistency_checks"' in html and "start paused" in html
    assert "is consistency_checks paused?" in html
    assert "First steps" not in status.render_status_html(s, prefix="/cutover")


def test_each_unit_links_to_the_task_log_that_worked_on_it() -> None:
    from cutover.ui import pages

    run = {"dag_id": "ship_wide_build", "run_id": "manual__1"}
    failed = {"state": "failed", "failed_stage": "copy", "detail": {"batch": 3}}
    link = pages.task_log_link("/cutover", run, failed)
    assert 'href="/dags/ship_wide_build/runs/manual__1/tasks/unit_batch.copy/mapped/3"' in link
    assert "unit_batch.verify/mapped/0" in pages.task_log_link("", run, {"state": "verified", "detail": {"batch": 0}})
    assert pages.task_log_link("", run, {"state": "verified", "detail": {}}) == ""  # planned before batches existed
    assert pages.task_log_link("", {"run_id": "x"}, failed) == ""  # no DAG: no link


def test_gx_newsletter_footer_is_removed_from_data_docs_pages() -> None:
    from cutover.ui import docs_offline

    # the footer GX 1.x puts on every data-docs page
    page = ('<html><head></head><body><div>tenant_id values must never be null.</div>\n<footer>\n  <p>Stay current '
            'on everything GX with our newsletter <a href="https://greatexpectations.io/newsletter?utm_source=datadocs'
            '&utm_medium=product">Subscribe</a></p>\n</footer>\n<footer><p>our own footer</p></footer></body></html>')
    out = docs_offline.rewrite_page(page, css_href="/c.css", index_href="/i.html")
    assert "Subscribe" not in out and "newsletter" not in out
    assert "tenant_id values must never be null." in out and "our own footer" in out  # only GX's footer goes


def test_a_gate_shows_the_figure_the_data_docs_show() -> None:
    """GX evaluated 23 expectations (what its data docs page shows); Cutover checked 2 more itself."""
    q = {"evaluated": 25, "failed": 1, "gx_evaluated": 23, "gx_failed": 0}
    assert status.gate_figures(q) == "23 / 23 in GX (as in the data docs) + 1 / 2 checked by Cutover"
    assert status.gate_figures({"evaluated": 23, "failed": 0, "gx_evaluated": 23, "gx_failed": 0}) == "23 / 23"
    assert status.gate_figures({"evaluated": 4, "failed": 1}) == "3 / 4"  # a result stored before


def test_runs_are_titled_by_their_own_dag_and_a_failure_says_why() -> None:
    run = {"pipeline": "ship_wide_build", "dag_id": "ship_wide_cutover", "kind": "cutover", "state": "failed",
           "error": None, "evidence": {"report": {"reason": f"planning did not finish: {EVIL}"}}}
    assert status.run_title(run) == 'ship_wide_cutover <span class="kind">cutover</span>'
    assert status.failure_html(run) == ('<p class="state bad reason">why it failed: planning did not finish: '
                                        '&lt;img src=x onerror=&quot;alert(1)&quot;&gt;</p>')
    run["error"] = "plan failed: NarrowTableError: narrow table x.y does not exist"
    assert "NarrowTableError" in status.failure_html(run)  # the run's own error comes first
    assert status.failure_html({**run, "state": "success"}) == ""
    assert status.run_title({"pipeline": "ship_wide_build", "kind": None}) == "ship_wide_build"
