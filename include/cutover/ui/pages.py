"""Two review pages beside *Migration status*: a run's whole evidence bundle, and the dead letters.

* :func:`collect_run` / :func:`render_run_html` — ``/cutover/run/<run id>``: the run (kind, state,
  times in UTC, link to Airflow), its evidence bundle in full (plan, report, approval, switches …),
  every unit (progress bar, rows read / written, checksums, failed stage and error), the quality gates
  of the run with links into the data docs, the switches it made and its dead letters.
  When the run's evidence has a ``schema_diff`` entry (:func:`cutover.tenant_split.diff_report.evidence_entry`),
  the page links its schema diff report (HTML and XLSX, :func:`report_url`) with its counts.
* :func:`collect_dead_letters` / :func:`render_dead_letters_html` — ``/cutover/dead-letters``: every
  record that could not be loaded, filtered by pipeline, unit and run, with its reason, record key and
  payload.

Plain server-rendered HTML with one inline stylesheet: nothing is fetched from anywhere.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

from cutover.ui.status import (
    _CSS,
    GX_FIGURES,
    SCHEMA,
    _bool,
    _e,
    _jsonable,
    _num,
    _rows,
    _state,
    _table,
    _ts,
    airflow_root,
    dead_letters_url,
    docs_url,
    failure_html,
    find_docs_page,
    format_duration,
    gate_figures,
    progress_bar,
    run_link,
    run_page_url,
    run_title,
)

DEAD_LETTERS_LIMIT = 500
UNITS_LIMIT = 5000


PAGE_CSS = _CSS + """
pre{white-space:pre-wrap;word-break:break-all;margin:0;font-size:.85em}
dl.ev{display:grid;grid-template-columns:max-content 1fr;gap:.2rem .8rem;margin:.3rem 0}
dl.ev dt{font-weight:600}form.filter input{margin-right:.6rem}
"""


#: the mapped task (of ``unit_batch``) that last worked on a unit in each state
_STAGE_OF_STATE = {"planned": "prepare", "prepared": "copy", "copying": "copy", "copied": "finalize",
                   "verified": "verify"}


def task_log_link(prefix: str, run: Mapping[str, Any], unit: Mapping[str, Any]) -> str:
    """A link to the Airflow task instance (its log) that worked on ``unit`` in its current state."""
    batch = (unit.get("detail") or {}).get("batch")
    dag_id, run_id = run.get("dag_id"), run.get("run_id")
    stage = unit.get("failed_stage") if unit.get("state") == "failed" else _STAGE_OF_STATE.get(str(unit.get("state")))
    if batch is None or not dag_id or not run_id or stage not in ("prepare", "copy", "finalize", "verify"):
        return ""
    href = (f"{airflow_root(prefix)}/dags/{quote(str(dag_id), safe='')}/runs/{quote(str(run_id), safe='')}"
            f"/tasks/{quote('unit_batch.' + str(stage), safe='')}/mapped/{int(batch)}")
    return f'<a href="{_e(href)}" title="the {_e(stage)} task of this unit in Airflow">{_e(stage)} log ↗</a>'


def report_url(prefix: str, run_id: Any, name: str) -> str:
    """Where a run's report file (``schema_diff.html`` / ``.xlsx`` / ``.json``) is served under the app at ``prefix``."""
    return f"{prefix}/reports/{quote(str(run_id), safe='')}/{quote(name, safe='')}"


def schema_diff_links(prefix: str, run_id: str, entry: Any) -> str:
    """The run page's line for ``evidence["schema_diff"]``: links to the HTML report and the workbook
    (built from the run id, never from hrefs stored in the evidence) and its error / warning counts."""
    if not isinstance(entry, Mapping):
        return ""
    sev = (entry.get("summary") or {}).get("severity") or {}
    counts = " · ".join(f"{_num(sev.get(k))} {k}(s)" for k in ("error", "warning", "info") if k in sev)
    bad = bool(sev.get("error"))
    return (f'<p><a href="{_e(report_url(prefix, run_id, "schema_diff.html"))}">Schema diff report</a> · '
            f'<a href="{_e(report_url(prefix, run_id, "schema_diff.xlsx"))}">spreadsheet (XLSX)</a>'
            + (f' · <span class="state {"bad" if bad else "ok"}">{_e(counts)}</span>' if counts else "") + "</p>")


def type_mapping_links(prefix: str, run_id: str, entry: Any) -> str:
    """The run page's line for ``evidence["type_mapping"]`` (mysql_to_postgres): the report's link
    (built from the run id) and its table, column and warning counts."""
    if not isinstance(entry, Mapping):
        return ""
    warn = entry.get("warnings") or 0
    return (f'<p><a href="{_e(report_url(prefix, run_id, "type_mapping.html"))}">Type mapping report</a> · '
            f'<a href="{_e(report_url(prefix, run_id, "type_mapping.json"))}">JSON</a> · '
            f'{_num(entry.get("tables"))} table(s), {_num(entry.get("columns"))} column(s) · '
            f'<span class="state {"bad" if warn else "ok"}">{_num(warn)} warning(s)</span></p>')


def _ms(value: Any) -> str:
    try:
        return f"{float(value):,.2f}"
    except (TypeError, ValueError):
        return '<span class="muted">–</span>'


def reader_speedups(units: list[Mapping[str, Any]]) -> str:
    """The run page's table of the readers' queries timed at verify (``detail.verify.readers`` of each
    unit, :func:`cutover.ship_wide.readers.time_reader_queries`): per unit and query the narrow and wide
    milliseconds, the speed-up and whether the field's target is met; empty when no unit has one."""
    rows: list[list[str]] = []
    target: Any = None
    for u in units:
        fig = ((u.get("detail") or {}).get("verify") or {}).get("readers")
        if not isinstance(fig, Mapping):
            continue
        if "skipped" in fig:
            rows.append([_e(u.get("unit_key")), "", "", "", "", "", f'<span class="muted">{_e(fig["skipped"])}</span>'])
            continue
        target = (fig.get("overall") or {}).get("target_faster_pct", target)
        for name in (*[k for k in fig if k != "overall"], "overall"):
            q = fig.get(name)
            if not isinstance(q, Mapping):
                continue
            if "narrow_ms" not in q:
                rows.append([_e(u.get("unit_key")), _e(name), "", "", "", "", f'<span class="muted">{_e(q.get("skipped"))}</span>'])
                continue
            window = q.get("window") if isinstance(q.get("window"), Mapping) else None
            note = (f"{_num(window.get('times'))} times, {_e(window.get('first'))} → {_e(window.get('last'))}"
                    if window else (f"{_num(q.get('rows'))} rows" if q.get("rows") is not None else ""))
            speed = f"{float(q['speedup']):,.2f}×" if q.get("speedup") is not None else "∞"
            rows.append([_e(u.get("unit_key")), f"<b>{_e(name)}</b>" if name == "overall" else _e(name),
                         _ms(q.get("narrow_ms")), _ms(q.get("wide_ms")), _e(speed),
                         _bool(bool(q.get("target_met")), f"{_e(q.get('faster_pct'))} % faster",
                               f"{_e(q.get('faster_pct'))} % faster"), note])
    if not rows:
        return ""
    head = ("<h2>Readers: narrow → wide</h2><p>The readers' typical queries timed at verify, on the narrow table "
            "(through the reader view) and on the wide table, same answers checked; medians of warm runs"
            + (f"; the field's target: at least {_e(target)} % faster" if target is not None else "") + ".</p>")
    return head + _table(["unit", "query", "narrow ms", "wide ms", "speed-up", "faster", "rows / window"], rows, "")


def _page(title: str, body: list[str]) -> str:
    return ('<!doctype html><html><head><meta charset="utf-8"><link rel="icon" href="data:,">'
            f"<title>{_e(title)}</title><style>{PAGE_CSS}</style></head><body>" + "\n".join(body) + "</body></html>")


def collect_run(conn: Any, run_id: str, *, docs_dir: Path | None = None) -> dict[str, Any] | None:
    """Everything recorded for one run, or None when the control schema has no such run."""
    runs = _rows(conn, f"""SELECT *, extract(epoch FROM coalesce(finished_at, now()) - started_at) AS duration_s
                           FROM {SCHEMA}.runs WHERE run_id = %s""", (run_id,))
    if not runs:
        return None
    run = runs[0]
    run["units"] = _rows(conn, f"""SELECT *, checksum_source IS NOT NULL AND checksum_source = checksum_target
                                          AS checksums_match
                                   FROM {SCHEMA}.units WHERE run_id = %s
                                   ORDER BY (state = 'failed') DESC, unit_key LIMIT {UNITS_LIMIT}""", (run_id,))
    run["quality"] = _rows(conn, f"""SELECT id, suite, asset, success, evaluated, failed, docs_path, checked_at, {GX_FIGURES},
                                            statistics -> 'failures' AS failures
                                     FROM {SCHEMA}.quality_results WHERE run_id = %s ORDER BY checked_at""", (run_id,))
    for q in run["quality"]:
        q["docs_page"] = find_docs_page(docs_dir, q["suite"], q["asset"], run_id, q["docs_path"])
    run["switches"] = _rows(conn, f"""SELECT unit_key, from_backend, to_backend, canary_pct, actor, reason, at
                                      FROM {SCHEMA}.switch_history WHERE run_id = %s ORDER BY id""", (run_id,))
    run["dead_letters"] = _rows(conn, f"""SELECT count(*) AS count FROM {SCHEMA}.dead_letters WHERE run_id = %s""",
                                (run_id,))[0]["count"]
    run["rate"] = rate_series(conn, run_id)
    return dict(_jsonable(run))


def rate_series(conn: Any, run_id: str, *, points: int = 60) -> list[dict[str, Any]]:
    """Source rows read per second over the run, in at most ``points`` equal time buckets (from the
    per-chunk rows in ``cutover.progress``); empty when the run copied nothing."""
    has = _rows(conn, "SELECT to_regclass(%s) IS NOT NULL AS ok", (f"{SCHEMA}.progress",))
    if not has or not has[0]["ok"]:
        return []
    return _rows(conn, f"""
        WITH p AS (SELECT at, rows_read FROM {SCHEMA}.progress WHERE run_id = %(run)s),
             b AS (SELECT min(at) AS t0,
                          greatest(extract(epoch FROM max(at) - min(at)) / %(points)s, 0.25) AS width FROM p)
        SELECT floor(extract(epoch FROM p.at - b.t0) / b.width)::int AS bucket,
               min(extract(epoch FROM p.at - b.t0))::float AS at_s,
               (sum(p.rows_read) / max(b.width))::float AS rows_per_s
        FROM p CROSS JOIN b GROUP BY 1 ORDER BY 1""", {"run": run_id, "points": points})


def rate_chart(series: list[dict[str, Any]], *, width: int = 640, height: int = 140) -> str:
    """An inline SVG of rows/s over the run (drawn here: no chart library, nothing fetched)."""
    if not series:
        return '<p class="muted">No chunk was copied in this run (nothing to chart).</p>'
    top = max(float(p["rows_per_s"] or 0) for p in series) or 1.0
    end = max(float(p["at_s"] or 0) for p in series) or 1.0
    pad = 36

    def x(t: float) -> float:
        return pad + (width - pad - 8) * (t / end if end else 0)

    def y(v: float) -> float:
        return height - 18 - (height - 30) * (v / top)

    pts = " ".join(f"{x(float(p['at_s'] or 0)):.1f},{y(float(p['rows_per_s'] or 0)):.1f}" for p in series)
    return (f'<svg class="rate" width="{width}" height="{height}" role="img" '
            f'aria-label="source rows read per second over the run">'
            f'<line x1="{pad}" y1="{height - 18}" x2="{width - 8}" y2="{height - 18}" stroke="#9fb3c8"/>'
            f'<line x1="{pad}" y1="8" x2="{pad}" y2="{height - 18}" stroke="#9fb3c8"/>'
            f'<polyline fill="none" stroke="#2f80ed" stroke-width="2" points="{pts}"/>'
            + "".join(f'<circle cx="{x(float(p["at_s"] or 0)):.1f}" cy="{y(float(p["rows_per_s"] or 0)):.1f}" r="2.5" '
                      f'fill="#2f80ed"/>' for p in series)
            + f'<text x="2" y="14" font-size="10">{top:,.0f}/s</text>'
            f'<text x="{pad}" y="{height - 4}" font-size="10">0 s</text>'
            f'<text x="{width - 60}" y="{height - 4}" font-size="10">{end:,.0f} s</text></svg>')


def _evidence(value: Any, depth: int = 0) -> str:
    """The evidence bundle as nested definition lists (lists of records as tables), all escaped."""
    if isinstance(value, Mapping):
        if not value:
            return '<span class="muted">–</span>'
        items = "".join(f"<dt>{_e(k)}</dt><dd>{_evidence(v, depth + 1)}</dd>" for k, v in value.items())
        return f'<dl class="ev">{items}</dl>'
    if isinstance(value, list):
        if value and all(isinstance(v, Mapping) for v in value):
            keys = list(dict.fromkeys(k for v in value for k in v))[:12]
            rows = [[_e(json.dumps(v.get(k), default=str) if isinstance(v.get(k), (dict, list)) else v.get(k))
                     for k in keys] for v in value[:200]]
            return _table(keys, rows, "none")
        return ", ".join(_e(v) for v in value) or '<span class="muted">none</span>'
    if isinstance(value, bool):
        return _bool(value)
    return _e(value)


def render_run_html(run: Mapping[str, Any] | None, *, run_id: str, prefix: str = "") -> str:
    """One run's evidence bundle on one page (what a reviewer reads before approving)."""
    if run is None:
        return _page("Cutover — run not found", [
            f"<h1>Run <code>{_e(run_id)}</code> is not in the control schema</h1>",
            f'<p><a href="{_e(prefix)}/status">Migration status</a></p>'])
    diff_links = schema_diff_links(prefix, run_id, (run.get("evidence") or {}).get("schema_diff"))
    type_links = type_mapping_links(prefix, run_id, (run.get("evidence") or {}).get("type_mapping"))
    body = [
        f'<nav><a href="{_e(prefix)}/status">Migration status</a> <a href="{_e(prefix)}/docs/index.html">data docs</a>'
        f'{run_link(prefix, run.get("dag_id"), run_id)}</nav>',
        f"<h1>{run_title(run)} · <code>{_e(run_id)}</code> {_state(run.get('state'))}</h1>",
        failure_html(run),
        f"<p>pipeline {_e(run.get('pipeline'))} · started {_ts(run.get('started_at'))} · finished {_ts(run.get('finished_at')) or '—'} · "
        f"took {_e(format_duration(run.get('duration_s')))} · planned units {_num(run.get('planned_units'))}</p>",
        *([f"<h2>Schema diff</h2>{diff_links}"] if diff_links else []),
        *([f"<h2>Type mapping</h2>{type_links}"] if type_links else []),
        "<h2>Evidence bundle</h2>", _evidence(run.get("evidence") or {}),
        "<h2>Source rows read per second</h2>", rate_chart(list(run.get("rate") or [])),
    ]
    units = run.get("units") or []
    body.append(f"<h2>Units ({len(units)})</h2>")
    body.append(_table(
        ["unit", "state", "source rows read", "target rows written", "rows total", "checksums", "failed in", "error",
         "updated", "task log"],
        [[_e(u.get("unit_key")), _state(u.get("state")),
          f'<span class="n">{_num(u.get("rows_read"))}</span>{progress_bar(u.get("rows_read"), u.get("rows_total"))}',
          _num(u.get("rows_written")), _num(u.get("rows_total")),
          _bool(u.get("checksums_match"), "match", "MISMATCH") if u.get("checksum_source") else '<span class="muted">–</span>',
          _e(u.get("failed_stage")), _e(u.get("error")), _ts(u.get("updated_at")),
          task_log_link(prefix, {**run, "run_id": run_id}, u)] for u in units],
        "No units."))
    speedups = reader_speedups(list(units))
    if speedups:
        body.append(speedups)
    quality = run.get("quality") or []
    body.append(f"<h2>Quality gates ({len(quality)})</h2>")
    body.append(_table(
        ["suite", "asset", "result", "passed / evaluated", "failures", "docs"],
        [[_e(q.get("suite")), _e(q.get("asset")), _state("passed" if q.get("success") else "failed"),
          gate_figures(q),
          "<br>".join(_e(f) for f in (q.get("failures") or [])[:5]),
          f'<a href="{_e(docs_url(prefix, q["docs_page"]))}">data docs</a>' if q.get("docs_page") else ""]
         for q in quality], "No quality gate ran in this run."))
    switches = run.get("switches") or []
    body.append(f"<h2>Switches ({len(switches)})</h2>")
    body.append(_table(["unit", "from", "to", "canary %", "by", "reason", "at"],
                       [[_e(s.get("unit_key")), _e(s.get("from_backend")), _e(s.get("to_backend")),
                         _num(s.get("canary_pct")), _e(s.get("actor")), _e(s.get("reason")), _ts(s.get("at"))]
                        for s in switches], "This run switched no readers."))
    n_dead = int(run.get("dead_letters") or 0)
    body.append("<h2>Dead letters</h2>")
    body.append(f'<p><a href="{_e(dead_letters_url(prefix, run=run_id))}">{n_dead:,} record(s) of this run</a></p>'
                if n_dead else '<p class="muted">No dead letters in this run.</p>')
    return _page(f"Cutover — run {run_id}", body)


def collect_dead_letters(conn: Any, *, pipeline: str | None = None, unit: str | None = None,
                         run: str | None = None, limit: int = DEAD_LETTERS_LIMIT) -> dict[str, Any]:
    """The dead letters matching the filters (newest first, at most ``limit``), and how many match."""
    where = ("(%(pipeline)s::text IS NULL OR pipeline = %(pipeline)s) AND (%(unit)s::text IS NULL OR unit_key = %(unit)s)"
             " AND (%(run)s::text IS NULL OR run_id = %(run)s)")
    p = {"pipeline": pipeline or None, "unit": unit or None, "run": run or None}
    total = _rows(conn, f"SELECT count(*) AS n FROM {SCHEMA}.dead_letters WHERE {where}", p)[0]["n"]
    rows = _rows(conn, f"""SELECT id, pipeline, run_id, unit_key, source, record_key, reason, payload, created_at
                           FROM {SCHEMA}.dead_letters WHERE {where} ORDER BY id DESC LIMIT {int(limit)}""", p)
    return dict(_jsonable({"filters": p, "total": int(total), "rows": rows}))


def render_dead_letters_html(data: Mapping[str, Any], *, prefix: str = "") -> str:
    """The dead-letters page: a filter form and every matching record with its reason and payload."""
    f = data.get("filters") or {}
    rows = data.get("rows") or []
    form = (f'<form class="filter" method="get" action="{_e(prefix)}/dead-letters">'
            + "".join(f'<label>{label} <input name="{name}" value="{_e(f.get(name) or "")}"></label>'
                      for name, label in (("pipeline", "pipeline"), ("unit", "unit"), ("run", "run")))
            + '<button type="submit">filter</button></form>')
    body = [
        f'<nav><a href="{_e(prefix)}/status">Migration status</a></nav>',
        "<h1>Dead letters</h1>",
        "<p>Records that could not be loaded, each with the reason; the good rows around them loaded.</p>",
        form,
        f"<p>{int(data.get('total') or 0):,} record(s) match" + (f"; the newest {len(rows):,} are shown" if
                                                                  len(rows) < int(data.get("total") or 0) else "") + ".</p>",
        _table(["at", "pipeline", "run", "unit", "source", "record key", "reason", "payload"],
               [[_ts(r.get("created_at")), _e(r.get("pipeline")),
                 f'<a href="{_e(run_page_url(prefix, r["run_id"]))}">{_e(r["run_id"])}</a>' if r.get("run_id") else "",
                 _e(r.get("unit_key")), _e(r.get("source")), f"<code>{_e(r.get('record_key'))}</code>", _e(r.get("reason")),
                 f"<details><summary>payload</summary><pre>{_e(json.dumps(r.get('payload'), indent=1, default=str))}</pre>"
                 "</details>" if r.get("payload") is not None else '<span class="muted">–</span>']
                for r in rows], "No dead letters match."),
    ]
    return _page("Cutover — dead letters", body)
