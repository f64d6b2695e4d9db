"""Migration status: read the control schema into plain data, and render it as one HTML page.

:func:`collect_status` runs a handful of read-only queries against the ``cutover`` control schema and
returns JSON-ready dicts: recent runs (with their kind: build / cutover / rollback) and their units
(source rows read, target rows written, the stage a failed unit failed in), the latest quality-gate
result per suite and asset (with a link into the data docs when a page exists), the current backend
switch of every unit and the switch history, the latest consistency result per pair with its lag,
the change streams (forward catch-up before a switch, reverse replication after it: position, lag,
rows applied; control schema v8) with the stray writes that reached the old side after a switch, and
dead-letter counts.
:func:`render_status_html` turns that into a self-contained page. Every value that reaches the page
is HTML-escaped: names (tenants, tables, ships, pairs) come from data.

Columns added by later control-schema versions (``runs.kind``, ``units.rows_read`` / ``rows_written`` /
``failed_stage``, version 3) are read when they exist and come back as None otherwise, so the page
also shows a schema that has not been migrated yet.

Nothing here touches a database at import time; psycopg is imported by the caller's connection.
"""

from __future__ import annotations

import datetime as dt
import glob
import html
import json
import os
from collections.abc import Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

SCHEMA = "cutover"  # same as cutover.control.SCHEMA, kept here so importing this module stays cheap
RUNS_LIMIT = 20
UNITS_PER_RUN = 200
HISTORY_LIMIT = 50
QUALITY_LIMIT = 50
CONSISTENCY_LIMIT = 200
STALE_AFTER_S = 3600  # a consistency result older than this is flagged as stale on the page
STREAMS_LIMIT = 500  # change streams shown (one per pipeline, scope, name and direction)
STRAY_LIMIT = 200  # stray writes shown, newest first
STREAM_LAG_WARN_S = 5.0  # a stream further behind than this many seconds is flagged
STREAM_STALE_AFTER_S = 180  # a live stream that has not reported for this many seconds is flagged as stale
#: stream states that are not expected to report again: never flagged as stale
STREAM_ENDED_STATES = frozenset({"stopped", "drained", "failed", "done"})


# --- reading the control schema ------------------------------------------------------------------


def _rows(conn: Any, query: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> list[dict[str, Any]]:
    with conn.cursor() as cur:
        cur.execute(query, params)
        names = [d.name for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def schema_exists(conn: Any) -> bool:
    """True when the control schema has been created (no run has ever started otherwise)."""
    row = conn.execute("SELECT to_regclass(%s)", (f"{SCHEMA}.runs",)).fetchone()
    return bool(row and row[0])


#: columns of later schema versions the page reads when present: table → {column: SQL type}
OPTIONAL_COLUMNS: dict[str, dict[str, str]] = {
    "runs": {"kind": "text", "dag_id": "text", "error": "text", "closed_by": "text"},
    "units": {"rows_read": "bigint", "rows_written": "bigint", "failed_stage": "text"},
}


def _optional_columns(conn: Any, table: str) -> str:
    """``, col, …`` for the optional columns of ``table``; one that does not exist yet reads as NULL."""
    present = {
        r["column_name"]
        for r in _rows(
            conn,
            "SELECT column_name FROM information_schema.columns WHERE table_schema = %s AND table_name = %s",
            (SCHEMA, table),
        )
    }
    return "".join(
        f", {col}" if col in present else f", NULL::{typ} AS {col}"
        for col, typ in OPTIONAL_COLUMNS[table].items()
    )


def _int_or_none(value: Any) -> int | None:
    return int(value) if value is not None else None


def _jsonable(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def checksums_match(source: str | None, target: str | None) -> bool | None:
    """True / False when both checksums are known, None while one is missing."""
    if source is None or target is None:
        return None
    return source == target


def summarize_evidence(evidence: Mapping[str, Any] | None, *, max_items: int = 8) -> list[str]:
    """A few short ``key: value`` lines from a run's evidence bundle (nested values are counted)."""
    lines: list[str] = []
    for key, value in (evidence or {}).items():
        if len(lines) >= max_items:
            lines.append(f"… {len(evidence or {}) - max_items} more")
            break
        if isinstance(value, dict):
            text = f"{len(value)} entries"
            if isinstance(value.get("success"), bool):  # a gate or check result: say how it went
                text = ("passed" if value["success"] else "FAILED") + f" ({text})"
        elif isinstance(value, list):
            text = f"{len(value)} items"
        else:
            text = str(value)
            if len(text) > 80:
                text = text[:77] + "…"
        lines.append(f"{key}: {text}")
    return lines


def find_docs_page(
    docs_dir: Path | None, suite: str, asset: str, run_id: str | None, docs_path: str | None
) -> str | None:
    """The data-docs page of one quality result, as a path relative to ``docs_dir`` (or None).

    GX writes validation pages to ``validations/<suite>/<run name>/<time>/<datasource>-<asset>.html``;
    the newest one of the run (matching the asset when it can) wins, then the suite's page, then the
    recorded ``docs_path`` if it lies inside ``docs_dir``.
    """
    if docs_dir is None or not docs_dir.is_dir():
        return None
    root = docs_dir.resolve()
    asset_name = asset.split(":", 1)[-1]
    run_part = glob.escape(run_id) if run_id else "*"
    pattern = os.path.join(glob.escape(str(root)), "validations", glob.escape(suite), run_part, "*", "*.html")
    pages = sorted(glob.glob(pattern), key=lambda p: os.path.getmtime(p), reverse=True)
    preferred = [p for p in pages if os.path.basename(p).endswith(f"-{asset_name}.html")]
    candidates = [Path(p) for p in preferred + pages]
    candidates.append(root / "expectations" / f"{suite}.html")
    if docs_path:
        candidates.append(Path(docs_path))
    for page in candidates:
        try:
            resolved = page.resolve()
            rel = resolved.relative_to(root)
        except (OSError, ValueError):
            continue
        if resolved.is_file():
            return rel.as_posix()
    return None


def collect_status(
    conn: Any,
    *,
    pipeline: str | None = None,
    runs_limit: int = RUNS_LIMIT,
    docs_dir: Path | None = None,
) -> dict[str, Any]:
    """Read everything the status page shows (read-only); ``pipeline`` narrows it to one pipeline."""
    status: dict[str, Any] = {
        "pipeline": pipeline,
        "schema_exists": False,
        "runs": [],
        "quality": [],
        "switches": [],
        "switch_history": [],
        "consistency": [],
        "dead_letters": [],
        "streams": [],
        "stray_writes": [],
        "stray_writes_total": 0,
    }
    status["generated_at"] = conn.execute("SELECT now()").fetchone()[0]
    if not schema_exists(conn):
        return _jsonable(status)
    status["schema_exists"] = True
    p = {"pipeline": pipeline, "limit": runs_limit, "units_per_run": UNITS_PER_RUN}
    by_pipeline = "(%(pipeline)s::text IS NULL OR pipeline = %(pipeline)s)"
    run_cols = _optional_columns(conn, "runs")
    unit_cols = _optional_columns(conn, "units")
    runs = _rows(
        conn,
        f"""SELECT run_id, pipeline, state, params, evidence, started_at, finished_at{run_cols},
                   extract(epoch FROM coalesce(finished_at, now()) - started_at) AS duration_s
            FROM {SCHEMA}.runs WHERE {by_pipeline}
            ORDER BY started_at DESC, run_id LIMIT %(limit)s""",
        p,
    )
    units = _rows(
        conn,
        f"""SELECT * FROM (
                SELECT run_id, unit_key, state, rows_total{unit_cols}, checksum_source, checksum_target,
                       error, started_at, finished_at, updated_at,
                       row_number() OVER (PARTITION BY run_id ORDER BY unit_key) AS n
                FROM {SCHEMA}.units WHERE run_id = ANY(%(run_ids)s)) u
            WHERE n <= %(units_per_run)s ORDER BY run_id, unit_key""",
        {**p, "run_ids": [r["run_id"] for r in runs]},
    )
    totals = _rows(
        conn,
        f"""SELECT run_id, count(*) AS units, sum(rows_read) AS rows_read, sum(rows_written) AS rows_written,
                   sum(rows_total) AS rows_total,
                   count(*) FILTER (WHERE checksum_source IS NOT NULL AND checksum_target IS NOT NULL
                                    AND checksum_source <> checksum_target) AS checksum_mismatches,
                   jsonb_object_agg(state, n) AS states
            FROM (SELECT run_id, state, rows_total, checksum_source, checksum_target{unit_cols},
                         count(*) OVER (PARTITION BY run_id, state) AS n
                  FROM {SCHEMA}.units WHERE run_id = ANY(%(run_ids)s)) s
            GROUP BY run_id""",
        {"run_ids": [r["run_id"] for r in runs]},
    )
    totals_by_run = {t["run_id"]: t for t in totals}
    units_by_run: dict[str, list[dict[str, Any]]] = {}
    for u in units:
        u.pop("n", None)
        u["checksums_match"] = checksums_match(u["checksum_source"], u["checksum_target"])
        units_by_run.setdefault(u["run_id"], []).append(u)
    for r in runs:
        t = totals_by_run.get(r["run_id"], {})
        r["units"] = units_by_run.get(r["run_id"], [])
        r["unit_totals"] = {
            "units": int(t.get("units") or 0),
            "rows_read": _int_or_none(t.get("rows_read")),
            "rows_written": _int_or_none(t.get("rows_written")),
            "rows_total": _int_or_none(t.get("rows_total")),
            "checksum_mismatches": int(t.get("checksum_mismatches") or 0),
            "states": t.get("states") or {},
        }
        r["evidence_summary"] = summarize_evidence(r["evidence"])
    status["runs"] = runs

    pipeline_runs = f"(%(pipeline)s::text IS NULL OR run_id IN (SELECT run_id FROM {SCHEMA}.runs WHERE pipeline = %(pipeline)s))"
    quality = _rows(
        conn,
        f"""SELECT * FROM (
                SELECT DISTINCT ON (suite, asset) id, suite, asset, success, evaluated, failed, docs_path,
                       {GX_FIGURES},
                       run_id, checked_at, statistics -> 'failures' AS failures
                FROM {SCHEMA}.quality_results WHERE {pipeline_runs}
                ORDER BY suite, asset, checked_at DESC, id DESC) q
            ORDER BY checked_at DESC, id DESC LIMIT {QUALITY_LIMIT}""",
        p,
    )
    for q in quality:
        q["docs_page"] = find_docs_page(docs_dir, q["suite"], q["asset"], q["run_id"], q["docs_path"])
        failures = q.get("failures")
        q["failures"] = [str(f) for f in failures[:5]] if isinstance(failures, list) else []
    status["quality"] = quality

    status["switches"] = _rows(
        conn,
        f"""SELECT pipeline, unit_key, backend, canary_pct, run_id, actor, updated_at
            FROM {SCHEMA}.switches WHERE {by_pipeline} ORDER BY pipeline, unit_key""",
        p,
    )
    has_routes = conn.execute("SELECT to_regclass(%s)", (f"{SCHEMA}.routes",)).fetchone()[0] is not None
    status["routes"] = _rows(  # routing entries (a tenant → its database), what applications read
        conn,
        f"""SELECT pipeline, scope, name, location, state, updated_at FROM {SCHEMA}.routes
            WHERE {by_pipeline} ORDER BY pipeline, scope, name LIMIT {HISTORY_LIMIT}""",
        p,
    ) if has_routes else []
    status["switch_history"] = _rows(
        conn,
        f"""SELECT id, pipeline, unit_key, from_backend, to_backend, canary_pct, run_id, actor, reason, at
            FROM {SCHEMA}.switch_history WHERE {by_pipeline} ORDER BY id DESC LIMIT {HISTORY_LIMIT}""",
        p,
    )
    # Registered pairs come from the view cutover.consistency_status (data lag measured at the check);
    # results of pairs that were never registered (ad hoc checks) are listed after them.
    status["consistency"] = _rows(
        conn,
        f"""(SELECT pair_name, last_checked_at AS checked_at, last_status AS status, rows_checked, missing, extra,
                    changed, window_start, window_end, duration_s, run_id, lag_s, check_age_s, last_difference_at,
                    enabled
             FROM {SCHEMA}.consistency_status
             WHERE %(pipeline)s::text IS NULL OR pipeline = %(pipeline)s
             ORDER BY (last_status = 'different') DESC, pair_name)
            UNION ALL
            (SELECT DISTINCT ON (pair_name) pair_name, checked_at, status, rows_checked, missing, extra, changed,
                    window_start, window_end, duration_s, run_id, (details ->> 'lag_s')::double precision,
                    extract(epoch FROM now() - checked_at)::double precision, NULL::timestamptz, NULL::boolean
             FROM {SCHEMA}.consistency_results r
             WHERE NOT EXISTS (SELECT 1 FROM {SCHEMA}.sync_pairs p WHERE p.name = r.pair_name)
               AND (%(pipeline)s::text IS NULL OR starts_with(pair_name, %(pipeline)s)
                    OR run_id IN (SELECT run_id FROM {SCHEMA}.runs WHERE pipeline = %(pipeline)s))
             ORDER BY pair_name, checked_at DESC, id DESC)
            LIMIT {CONSISTENCY_LIMIT}""",
        p,
    )
    for c in status["consistency"]:
        for key in ("lag_s", "check_age_s"):
            c[key] = float(c[key]) if c[key] is not None else None
        c["stale"] = c["check_age_s"] is None or c["check_age_s"] > STALE_AFTER_S
    status.update(collect_streams(conn, pipeline=pipeline))
    status["dead_letters"] = _rows(
        conn,
        f"""SELECT pipeline, unit_key, count(*) AS count, max(created_at) AS last_at
            FROM {SCHEMA}.dead_letters WHERE {by_pipeline}
            GROUP BY pipeline, unit_key ORDER BY pipeline, unit_key NULLS FIRST""",
        p,
    )
    return _jsonable(status)


def stream_flags(stream: Mapping[str, Any]) -> dict[str, bool]:
    """``{"lagging": bool, "stale": bool}`` for one stream row: lagging when its ``lag_s`` (seconds) is above
    :data:`STREAM_LAG_WARN_S`; stale when it is live (its state not in :data:`STREAM_ENDED_STATES`) and its
    last report (``age_s``, seconds since ``updated_at``) is older than :data:`STREAM_STALE_AFTER_S`."""
    lag, age = stream.get("lag_s"), stream.get("age_s")
    live = str(stream.get("state") or "").lower() not in STREAM_ENDED_STATES
    return {"lagging": lag is not None and float(lag) > STREAM_LAG_WARN_S,
            "stale": live and age is not None and float(age) > STREAM_STALE_AFTER_S}


def collect_streams(conn: Any, *, pipeline: str | None = None) -> dict[str, Any]:
    """The change streams and stray writes of the control schema (v8), read-only.

    Returns ``{"streams": [...], "stray_writes": [...], "stray_writes_total": int}``: streams ordered by
    pipeline, scope, name and direction (at most :data:`STREAMS_LIMIT`), each with ``age_s`` (seconds
    since its last report) and the flags of :func:`stream_flags`; stray writes newest first (at most
    :data:`STRAY_LIMIT`), the total of all of them beside. A schema older than v8 reads as none.
    """
    out: dict[str, Any] = {"streams": [], "stray_writes": [], "stray_writes_total": 0}
    if conn.execute("SELECT to_regclass(%s)", (f"{SCHEMA}.streams",)).fetchone()[0] is None:
        return out
    p = {"pipeline": pipeline}
    by_pipeline = "(%(pipeline)s::text IS NULL OR pipeline = %(pipeline)s)"
    streams = _rows(
        conn,
        f"""SELECT pipeline, scope, name, direction, state, position, lag_s, applied, detail, started_at,
                   updated_at, extract(epoch FROM now() - updated_at)::double precision AS age_s
            FROM {SCHEMA}.streams WHERE {by_pipeline}
            ORDER BY pipeline, scope, name, direction LIMIT {STREAMS_LIMIT}""",
        p,
    )
    for s in streams:
        s["lag_s"] = float(s["lag_s"]) if s["lag_s"] is not None else None
        s.update(stream_flags(s))
    out["streams"] = streams
    out["stray_writes"] = _rows(
        conn,
        f"""SELECT id, pipeline, scope, name, table_name, kind, record_key, position, run_id, forwarded, seen_at
            FROM {SCHEMA}.stray_writes WHERE {by_pipeline} ORDER BY id DESC LIMIT {STRAY_LIMIT}""",
        p,
    )
    out["stray_writes_total"] = int(
        conn.execute(f"SELECT count(*) FROM {SCHEMA}.stray_writes WHERE {by_pipeline}", p).fetchone()[0])
    return out


# --- rendering ------------------------------------------------------------------------------------


def _e(value: Any) -> str:
    """HTML-escape any value (None shows as an empty cell)."""
    if value is None:
        return ""
    return html.escape(str(value), quote=True)


def format_duration(seconds: float | None) -> str:
    """``95`` → ``1m 35s``; ``None`` → empty."""
    if seconds is None:
        return ""
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    m, s = divmod(s, 60)
    if m < 60:
        return f"{m}m {s:02d}s"
    h, m = divmod(m, 60)
    if h < 48:
        return f"{h}h {m:02d}m"
    d, h = divmod(h, 24)
    return f"{d}d {h:02d}h"


def _ts(value: Any) -> str:
    """A time as ``YYYY-MM-DD HH:MM:SS UTC`` (every time on the page in one zone, said); a time
    without a zone is shown as it is, marked ``(no zone)``."""
    if not value:
        return ""
    when = value
    if isinstance(value, str):
        try:
            when = dt.datetime.fromisoformat(value)
        except ValueError:
            return _e(value)
    if isinstance(when, dt.datetime):
        if when.tzinfo is None:
            return _e(when.strftime("%Y-%m-%d %H:%M:%S")) + ' <span class="muted">(no zone)</span>'
        return _e(when.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC"))
    return _e(value)


def airflow_root(prefix: str) -> str:
    """The Airflow UI's root path for an app mounted at ``prefix`` (``/cutover`` → ````, ``/af/cutover`` → ``/af``)."""
    return prefix[: -len("/cutover")] if prefix.endswith("/cutover") else ""


def run_link(prefix: str, dag_id: Any, run_id: Any) -> str:
    """A link to the DAG run's page in the Airflow UI (grid, task logs), or '' without a DAG id."""
    if not dag_id or not run_id:
        return ""
    href = f"{airflow_root(prefix)}/dags/{quote(str(dag_id), safe='')}/runs/{quote(str(run_id), safe='')}"
    return f' <a href="{_e(href)}" title="the run in Airflow: its grid and task logs">Airflow run ↗</a>'


#: GX's own figures of a gate, beside the gate's totals (which add Cutover's exact-type checks)
GX_FIGURES = ("(statistics ->> 'evaluated_expectations')::int AS gx_evaluated, "
              "(statistics ->> 'unsuccessful_expectations')::int AS gx_failed")


def gate_figures(q: Mapping[str, Any]) -> str:
    """A gate's "passed / evaluated", with the figure the data docs show first: GX's expectations
    (``23 / 23``), then the checks Cutover adds outside GX (exact column types where names differ only
    in case: ``+ 2 / 2 checked by Cutover``), so the status page and the data docs never disagree."""
    evaluated, failed = int(q.get("evaluated") or 0), int(q.get("failed") or 0)
    gx_evaluated, gx_failed = q.get("gx_evaluated"), q.get("gx_failed")
    if gx_evaluated is None or int(gx_evaluated) == evaluated:
        return f"{_num(evaluated - failed)} / {_num(evaluated)}"
    gx_e, gx_f = int(gx_evaluated), int(gx_failed or 0)
    own_e, own_f = evaluated - gx_e, failed - gx_f
    return (f"{_num(gx_e - gx_f)} / {_num(gx_e)} in GX (as in the data docs)"
            f" + {_num(own_e - own_f)} / {_num(own_e)} checked by Cutover")


def run_title(run: Mapping[str, Any]) -> str:
    """A run's title, escaped: its own DAG id (``ship_wide_cutover``; the pipeline's name where the run has
    none) and its kind (``cutover``) — never the build pipeline's name for a cutover or rollback run."""
    kind = run.get("kind")
    return _e(run.get("dag_id") or run.get("pipeline")) + (f' <span class="kind">{_e(kind)}</span>' if kind else "")


def run_failure(run: Mapping[str, Any]) -> str:
    """Why a failed run failed, in one line: its own error (a plan that raised, a run closed after its
    Airflow run ended), else its report's reason; '' for a run that did not fail."""
    if run.get("state") != "failed":
        return ""
    report = (run.get("evidence") or {}).get("report") or {}
    return str(run.get("error") or (report.get("reason") if isinstance(report, Mapping) else "") or "")


def failure_html(run: Mapping[str, Any]) -> str:
    """The ``<p class="reason">`` line of :func:`run_failure`, or ''."""
    why = run_failure(run)
    return f'<p class="state bad reason">why it failed: {_e(why)}</p>' if why else ""


def run_page_url(prefix: str, run_id: Any) -> str:
    """Where a run's evidence page is."""
    return f"{prefix}/run/{quote(str(run_id), safe='')}"


def dead_letters_url(prefix: str, **filters: Any) -> str:
    """The dead-letters page, filtered."""
    q = {k: v for k, v in filters.items() if v}
    return f"{prefix}/dead-letters" + (("?" + urlencode(q)) if q else "")


REFRESH_CHOICES = (0, 10, 30, 60)


def progress_bar(done: Any, total: Any) -> str:
    """A small bar of ``done / total`` (nothing when the total is unknown)."""
    try:
        d, t = float(done or 0), float(total or 0)
    except (TypeError, ValueError):
        return ""
    if t <= 0:
        return ""
    pct = max(0.0, min(100.0, 100.0 * d / t))
    return (f'<div class="bar" title="{pct:.0f} % of {int(t):,} source rows"><i style="width:{pct:.1f}%"></i></div>')




def _state(value: Any) -> str:
    cls = {
        "success": "ok",
        "done": "ok",
        "verified": "ok",
        "cut_over": "ok",
        "passed": "ok",
        "ok": "ok",
        "consistent": "ok",
        "failed": "bad",
        "error": "bad",
        "inconsistent": "bad",
        "mismatch": "bad",
        "running": "run",
        "copying": "run",
        "prepared": "run",
        "copied": "run",
        "rolled_back": "warn",
        "planned": "muted",
        "skipped": "muted",
    }.get(str(value).lower(), "")
    return f'<span class="state {cls}">{_e(value)}</span>'


def _bool(value: bool | None, yes: str = "yes", no: str = "NO") -> str:
    if value is None:
        return '<span class="muted">–</span>'
    return f'<span class="state ok">{yes}</span>' if value else f'<span class="state bad">{no}</span>'


def _num(value: Any) -> str:
    if value is None:
        return ""
    try:
        return f"{int(value):,}"
    except (TypeError, ValueError):
        return _e(value)


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], empty: str) -> str:
    if not rows:
        return f'<p class="muted">{_e(empty)}</p>'
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def docs_url(prefix: str, page: str) -> str:
    """URL of a data-docs page under the app mounted at ``prefix`` (each path segment quoted)."""
    return f"{prefix}/docs/" + "/".join(quote(part, safe="") for part in page.split("/"))


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:1.2rem;color:#1f2933;font-size:14px}
h1{font-size:1.4rem;margin:0 0 .3rem}h2{font-size:1.1rem;margin:1.6rem 0 .4rem;border-bottom:1px solid #d9e2ec}
h3{font-size:.95rem;margin:.8rem 0 .3rem}
table{border-collapse:collapse;margin:.3rem 0 .8rem;width:100%}
th,td{border:1px solid #d9e2ec;padding:.25rem .45rem;text-align:left;vertical-align:top}
th{background:#f0f4f8;font-weight:600}td.n{text-align:right}
.state{padding:0 .35rem;border-radius:3px;background:#e4e7eb}.ok{background:#c6f7e2;color:#05400a}
.bad{background:#ffd0d0;color:#610404;font-weight:600}.run{background:#d1eefc;color:#0b4f71}
.muted{color:#7b8794}.warn{background:#fff3c4;color:#513c06}
ul.ev{margin:0;padding-left:1rem}details{margin:.2rem 0}
code{font-size:.85em}nav a{margin-right:1rem}
.kind{font-size:.8em;font-weight:normal;padding:0 .35rem;border:1px solid #9fb3c8;border-radius:3px}
.bar{width:8rem;height:.5rem;background:#e4e7eb;border-radius:3px;overflow:hidden;margin-top:.2rem}
.bar i{display:block;height:100%;background:#2f80ed}
tr.lagging td,tr.stale td{background:#fffbea}.dir.reverse{font-weight:600;color:#7c5e10}
"""


def render_status_html(
    status: Mapping[str, Any],
    *,
    prefix: str = "",
    docs_available: bool = False,
    error: str | None = None,
    refresh_s: int | None = None,
    paused: Sequence[str] = (),
) -> str:
    """The status page as one HTML document; ``prefix`` is where the app is mounted (``/cutover``);
    ``paused`` names the DAGs feeding the page that are paused (a first-steps note says so)."""
    parts: list[str] = []
    pipeline = status.get("pipeline")
    title = "Cutover — migration status" + (f" — {pipeline}" if pipeline else "")
    parts.append(f"<h1>{_e(title)}</h1>")
    api_q = ("?" + urlencode({"pipeline": pipeline})) if pipeline else ""
    nav = [
        f'<a href="{_e(prefix)}/status">all pipelines</a>',
        f'<a href="{_e(prefix)}/api/status{_e(api_q)}">JSON</a>',
        f'<a href="{_e(prefix)}/docs/index.html">data docs</a>'
        if docs_available
        else '<span class="muted">data docs not built yet</span>',
    ]
    def refresh_link(secs: int) -> str:
        q = {k: v for k, v in (("pipeline", pipeline), ("refresh", secs or None)) if v}
        label = f"{secs} s" if secs else "off"
        if (refresh_s or 0) == secs:
            return f"<b>{_e(label)}</b>"
        return f'<a href="{_e(prefix)}/status{"?" + _e(urlencode(q)) if q else ""}">{_e(label)}</a>'

    parts.append(
        f'<nav>{"".join(nav)} <span class="muted">as of {_ts(status.get("generated_at"))}</span> · '
        f'<span class="refresh">auto-refresh: {" · ".join(refresh_link(x) for x in REFRESH_CHOICES)}</span></nav>'
    )
    if paused:
        root = airflow_root(prefix)
        links = ", ".join(f'<a href="{_e(root)}/dags/{_e(quote(d, safe=""))}"><code>{_e(d)}</code></a>' for d in paused)
        parts.append(
            f'<p class="state warn">First steps: {links} {"is" if len(paused) == 1 else "are"} paused. New DAGs '
            "start paused in Airflow; unpause them (the toggle in the DAG list) so the consistency results and "
            "the sync below stay fresh.</p>")
    if error:
        parts.append(f'<p class="state bad">Cannot read the control schema: {_e(error)}</p>')
    elif not status.get("schema_exists"):
        parts.append(
            '<p class="muted">The control schema <code>cutover</code> does not exist yet: '
            "no Cutover run has started. Trigger a pipeline DAG and come back.</p>"
        )

    def plink(name: Any) -> str:
        return f'<a href="{_e(prefix)}/status?{_e(urlencode({"pipeline": str(name)}))}">{_e(name)}</a>'

    # runs and their units
    parts.append("<h2>Recent runs</h2>")
    runs = status.get("runs") or []
    if not runs:
        parts.append('<p class="muted">No runs recorded.</p>')
    for run in runs:
        t = run.get("unit_totals") or {}
        states = ", ".join(f"{_e(k)} {_num(v)}" for k, v in sorted((t.get("states") or {}).items()))
        rows_total = t.get("rows_total")
        rows = (
            f"source rows read {_num(t.get('rows_read')) or '–'}"
            + (f" / {_num(rows_total)}" if rows_total is not None else "")
            + f" · target rows written {_num(t.get('rows_written')) or '–'}"
        )
        mism = t.get("checksum_mismatches") or 0
        ev = "".join(f"<li>{_e(line)}</li>" for line in run.get("evidence_summary") or [])
        parts.append(
            f"<h3>{run_title(run)}"
            + f" · <code>{_e(run.get('run_id'))}</code> {_state(run.get('state'))}"
            + f' <a href="{_e(run_page_url(prefix, run.get("run_id")))}">evidence bundle</a>'
            + run_link(prefix, run.get("dag_id"), run.get("run_id")) + "</h3>"
            f"<p>pipeline {plink(run.get('pipeline'))} · "
            f"started {_ts(run.get('started_at'))} · finished {_ts(run.get('finished_at')) or '—'} · "
            f"took {_e(format_duration(run.get('duration_s')))} · "
            + (
                f"{_num(t.get('units'))} units ({states}) · {rows} · "
                if t.get("units")
                else "no units · "
            )
            + (
                f'<span class="state bad">{_num(mism)} checksum mismatches</span>'
                if mism
                else ("checksums: no mismatch" if t.get("units") else "")
            )
            + "</p>"
        )
        parts.append(failure_html(run))
        if ev:
            parts.append(f'<details open><summary>Evidence</summary><ul class="ev">{ev}</ul></details>')
        unit_rows = [
            [
                _e(u.get("unit_key")),
                _state(u.get("state")),
                f'<span class="n">{_num(u.get("rows_read"))}</span>'
                + progress_bar(u.get("rows_read"), u.get("rows_total")),
                f'<span class="n">{_num(u.get("rows_written"))}</span>',
                _num(u.get("rows_total")),
                _bool(u.get("checksums_match"), "match", "MISMATCH"),
                _ts(u.get("updated_at")),
                _e(u.get("failed_stage")),
                _e(u.get("error")),
            ]
            for u in run.get("units") or []
        ]
        if unit_rows:
            shown = len(unit_rows)
            more = f" (first {shown} of {_num(t.get('units'))})" if t.get("units", 0) > shown else ""
            parts.append(
                f"<details {'open' if shown <= 20 else ''}><summary>Units{more}</summary>"
                + _table(
                    ["unit", "state", "source rows read", "target rows written", "rows total", "checksums",
                     "updated", "failed in", "error"],
                    unit_rows,
                    "",
                )
                + "</details>"
            )

    # quality gates
    parts.append("<h2>Quality gates (latest per suite and asset)</h2>")
    q_rows = []
    for q in status.get("quality") or []:
        page = q.get("docs_page")
        link = (
            f'<a href="{_e(docs_url(prefix, page))}">data docs</a>'
            if page
            else '<span class="muted">no page</span>'
        )
        fails = "".join(f"<li>{_e(f)}</li>" for f in q.get("failures") or [])
        q_rows.append(
            [
                _e(q.get("suite")),
                _e(q.get("asset")),
                _bool(q.get("success"), "passed", "FAILED"),
                gate_figures(q) + (f'<ul class="ev">{fails}</ul>' if fails else ""),
                f"<code>{_e(q.get('run_id'))}</code>",
                _ts(q.get("checked_at")),
                link,
            ]
        )
    parts.append(
        _table(
            ["suite", "asset", "result", "passed / evaluated", "run", "checked", "docs"],
            q_rows,
            "No quality gate has run yet.",
        )
    )

    # switches
    parts.append("<h2>Current switches</h2>")
    s_rows = [
        [
            plink(s.get("pipeline")),
            _e(s.get("unit_key")),
            f"<b>{_e(s.get('backend'))}</b>",
            f"{_e(s.get('canary_pct'))} %",
            _e(s.get("actor")),
            f"<code>{_e(s.get('run_id'))}</code>",
            _ts(s.get("updated_at")),
        ]
        for s in status.get("switches") or []
    ]
    parts.append(
        _table(
            ["pipeline", "unit", "backend", "canary", "by", "run", "since"],
            s_rows,
            "No unit has been switched.",
        )
    )
    r_rows = [
        [
            plink(r.get("pipeline")),
            _e(r.get("scope")),
            f"<b>{_e(r.get('name'))}</b>",
            _e((r.get("location") or {}).get("backend")),
            f"<code>{_e((r.get('location') or {}).get('database'))}</code>",
            f"<b>{_e(r.get('state'))}</b>" if r.get("state") != "active" else _e(r.get("state")),
            _ts(r.get("updated_at")),
        ]
        for r in status.get("routes") or []
    ]
    if r_rows:
        parts.append("<h3>Routes (where each tenant's application connections go)</h3>")
        parts.append(_table(["pipeline", "scope", "name", "backend", "database", "state", "since"], r_rows, ""))
    parts.append("<h3>Switch history (newest first)</h3>")
    h_rows = [
        [
            _ts(h.get("at")),
            plink(h.get("pipeline")),
            _e(h.get("unit_key")),
            f"{_e(h.get('from_backend')) or '<span class=muted>—</span>'} → <b>{_e(h.get('to_backend'))}</b>",
            f"{_e(h.get('canary_pct'))} %",
            _e(h.get("actor")),
            _e(h.get("reason")),
            f"<code>{_e(h.get('run_id'))}</code>",
        ]
        for h in status.get("switch_history") or []
    ]
    parts.append(
        _table(
            ["at", "pipeline", "unit", "switch", "canary", "by", "reason", "run"],
            h_rows,
            "No switch recorded.",
        )
    )

    # consistency
    parts.append("<h2>Consistency (latest per pair)</h2>")
    c_rows = []
    for c in status.get("consistency") or []:
        age = format_duration(c.get("check_age_s")) if c.get("checked_at") else "never checked"
        stale_hint = " — is consistency_checks paused?" if "consistency_checks" in paused else ""
        age_html = (f'<span class="state warn">{_e(age)} (stale{_e(stale_hint)})</span>' if c.get("stale")
                    else _e(age))
        c_rows.append(
            [
                _e(c.get("pair_name")),
                _ts(c.get("checked_at")),
                _state(c.get("status") or "unchecked"),
                _num(c.get("rows_checked")),
                _num(c.get("missing")),
                _num(c.get("extra")),
                _num(c.get("changed")),
                _e(format_duration(c.get("lag_s"))),
                age_html,
                _ts(c.get("last_difference_at")),
            ]
        )
    parts.append(
        _table(
            ["pair", "last checked", "status", "rows checked", "missing", "extra", "changed", "sync lag",
             "checked ago", "last difference"],
            c_rows,
            "No consistency check has run yet.",
        )
    )

    parts.append(streams_html(status, plink))

    # dead letters
    parts.append("<h2>Dead letters</h2>")
    def dl_link(d: Mapping[str, Any]) -> str:
        href = dead_letters_url(prefix, pipeline=d.get("pipeline"), unit=d.get("unit_key"))
        return f'<a href="{_e(href)}">{_num(d.get("count"))} — reasons, keys, payloads</a>'

    d_rows = [
        [
            plink(d.get("pipeline")),
            _e(d.get("unit_key")) or '<span class="muted">(run level)</span>',
            dl_link(d),
            _ts(d.get("last_at")),
        ]
        for d in status.get("dead_letters") or []
    ]
    parts.append(_table(["pipeline", "unit", "records", "last"], d_rows, "No dead letters."))
    if d_rows:
        parts.append(f'<p><a href="{_e(dead_letters_url(prefix))}">All dead letters</a> (filter by pipeline, unit, run)</p>')
    refresh = f'<meta http-equiv="refresh" content="{int(refresh_s)}">' if refresh_s else ""
    return (
        '<!doctype html><html><head><meta charset="utf-8">'
        f"<title>{_e(title)}</title>{refresh}<style>{_CSS}</style></head><body>"
        + "\n".join(parts)
        + "</body></html>"
    )


def format_lag(seconds: Any) -> str:
    """A stream's lag: ``0.42`` → ``0.4 s``, ``95`` → ``1m 35s``; unknown → ``–``."""
    if seconds is None:
        return "–"
    value = float(seconds)
    return f"{value:.1f} s" if value < 60 else format_duration(value)


def short_json(value: Any, *, limit: int = 120) -> str:
    """A record key (any JSON value) as compact JSON text, cut at ``limit`` characters (not escaped)."""
    text = json.dumps(_jsonable(value), ensure_ascii=False, separators=(",", ":"), default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def streams_html(status: Mapping[str, Any], plink: Any = _e) -> str:
    """The "Change streams" and "Stray writes" sections of the status page (escaped HTML).

    A stream whose lag is above :data:`STREAM_LAG_WARN_S` or whose last report is stale (see
    :func:`stream_flags`) is shown in the warning style (its row has class ``lagging`` / ``stale``);
    ``plink`` renders a pipeline's name (a link to the page narrowed to it).
    """
    parts = ["<h2>Change streams</h2>",
             '<p class="muted">Forward: source → target until the switch (catch-up); reverse: target → source '
             f"after it, so a rollback loses nothing. Lag above {STREAM_LAG_WARN_S:g} s, or no report for "
             f"{format_duration(STREAM_STALE_AFTER_S)} from a live stream, is flagged.</p>"]
    rows = []
    for st in status.get("streams") or []:
        flags = {k: bool(st.get(k)) if k in st else v for k, v in stream_flags(st).items()}
        classes = " ".join(k for k in ("lagging", "stale") if flags[k])
        lag = _e(format_lag(st.get("lag_s")))
        if flags["lagging"]:
            lag = f'<span class="state warn">{lag} behind</span>'
        updated = _ts(st.get("updated_at"))
        if flags["stale"]:
            updated += f' <span class="state warn">stale: no report for {_e(format_duration(st.get("age_s")))}</span>'
        direction = str(st.get("direction") or "")
        rows.append((classes, [
            plink(st.get("pipeline")),
            _e(st.get("scope")),
            f"<b>{_e(st.get('name'))}</b>",
            f'<span class="dir {_e(direction)}">{_e(direction)}</span>',
            _state(st.get("state")),
            f"<code>{_e(st.get('position'))}</code>",
            lag,
            f'<span class="n">{_num(st.get("applied"))}</span>',
            updated,
        ]))
    if rows:
        head = "".join(f"<th>{_e(h)}</th>" for h in ("pipeline", "scope", "name", "direction", "state", "position",
                                                     "lag", "rows applied", "updated"))
        body = "".join(f'<tr class="stream {c}">' + "".join(f"<td>{x}</td>" for x in cells) + "</tr>"
                       for c, cells in rows)
        parts.append(f'<table class="streams"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>')
    else:
        parts.append('<p class="muted">No change stream has reported yet.</p>')

    strays = status.get("stray_writes") or []
    total = int(status.get("stray_writes_total") or len(strays))
    more = f" (newest {len(strays):,} of {total:,})" if total > len(strays) else ""
    parts.append(f"<h2>Stray writes (to the old side after a switch, newest first){_e(more)}</h2>")
    s_rows = [
        [
            plink(w.get("pipeline")),
            f"<b>{_e(w.get('name'))}</b>",
            _e(w.get("table_name")),
            _e(w.get("kind")),
            f"<code>{_e(short_json(w.get('record_key')))}</code>",
            f"<code>{_e(w.get('position'))}</code>",
            _ts(w.get("seen_at")),
            _bool(w.get("forwarded"), "forwarded", "not forwarded"),
        ]
        for w in strays
    ]
    parts.append(_table(["pipeline", "name", "table", "kind", "key", "position", "seen at", "forwarded"], s_rows,
                        "No stray write seen."))
    return "\n".join(parts)


def no_docs_html(docs_dir: Path, *, prefix: str = "", missing: str | None = None) -> str:
    """The page shown when the data docs (or one page of them) do not exist yet: how to build them."""
    if missing:  # the site exists; one page of it does not
        return (
            '<!doctype html><html><head><meta charset="utf-8"><title>Cutover — page not in the data docs</title>'
            f'<link rel="icon" href="data:,"><style>{_CSS}</style></head><body><h1>Great Expectations data docs</h1>'
            f"<p>The page <code>{_e(missing)}</code> is not in the data docs (it may belong to a validation "
            "whose results were removed, or to a suite renamed since).</p>"
            f'<p><a href="{_e(prefix)}/docs/index.html">All validations and suites</a> · '
            f'<a href="{_e(prefix)}/status">Migration status</a></p></body></html>'
        )
    return (
        '<!doctype html><html><head><meta charset="utf-8"><title>Cutover — data docs not built yet</title>'
        f'<link rel="icon" href="data:,"><style>{_CSS}</style></head><body><h1>Great Expectations data docs</h1>'
        "<p>The data docs have not been built yet.</p>"
        "<p>They are built by every quality gate: run a pipeline DAG (its <i>verify</i> step) or the "
        "<code>cutover_validate</code> DAG, or rebuild them from the stored validation results with "
        "<code>.venv/bin/python -m cutover docs</code> (as the README says).</p>"
        f'<p><a href="{_e(prefix)}/status">Migration status</a></p></body></html>'
    )


def dumps(status: Mapping[str, Any]) -> str:
    """The status as JSON text (what ``/cutover/api/status`` returns)."""
    return json.dumps(_jsonable(status), indent=1, default=str)
