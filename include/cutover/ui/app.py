"""The FastAPI sub-application behind the Cutover pages of the Airflow UI (mounted at ``/cutover``).

Routes (relative to the mount point):

* ``/status`` — migration status page (HTML; ``?pipeline=<name>`` narrows it, ``?refresh=<s>`` reloads);
* ``/api/status`` — the same data as JSON;
* ``/docs/<path>`` — the Great Expectations data docs site, readable with no network: the index
  rendered here from GX's validation store, every page rewritten to local assets
  (:mod:`cutover.ui.docs_offline`); a page that says how to build them when they do not exist yet;
* ``/assets/offline.css`` — the data docs' one stylesheet;
* ``/run/<run id>`` — one run's evidence bundle on one page; ``/dead-letters`` — the dead letters,
  filtered by ``pipeline``, ``unit`` and ``run`` (:mod:`cutover.ui.pages`);
* ``/reports/<run id>/schema_diff.html`` (``.xlsx`` as a download, ``.json``) — a run's schema diff
  report, saved by :func:`cutover.tenant_split.diff_report.save_report` in ``reports/`` beside the data docs;
  ``/reports/<run id>/type_mapping.html`` (``.json``) — mysql_to_postgres' type-mapping report
  (:func:`cutover.mysql_to_postgres.report.save`).

:func:`create_app` builds it; the docs folder and the control connection are parameters so tests can
point them elsewhere. With ``require_auth`` the routes need an Airflow login (the API server's JWT
cookie, or a bearer token), exactly like the Airflow UI itself.
"""

from __future__ import annotations

import mimetypes
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response

from cutover.ui import docs_offline, pages
from cutover.ui import status as status_mod

DocsDir = Path | str | Callable[[], Path] | None


def default_docs_dir() -> Path:
    """The GX data docs site of this project (``great_expectations/uncommitted/data_docs/local_site``)."""
    from cutover.quality.gate import docs_dir

    return docs_dir()


async def _airflow_user(request: Request) -> None:
    """Require an authenticated Airflow user (imported lazily: Airflow's API stack is heavy)."""
    from airflow.api_fastapi.core_api.security import get_user
    from fastapi.security import HTTPAuthorizationCredentials

    header = request.headers.get("authorization", "")
    creds = None
    if header.lower().startswith("bearer "):
        creds = HTTPAuthorizationCredentials(scheme="Bearer", credentials=header[7:].strip())
    await get_user(request, None, creds)


#: the DAGs whose runs keep the status page fresh: a paused one gets a first-steps note
FEEDING_DAGS = ("consistency_checks", "consistency_sweep", "ship_wide_sync")


def paused_feeding_dags() -> list[str]:
    """Which of :data:`FEEDING_DAGS` Airflow knows and has paused (empty outside Airflow or on any error:
    the note is a hint, never a reason for the page to fail)."""
    try:
        from airflow.models.dag import DagModel
        from airflow.utils.session import create_session
        from sqlalchemy import select

        with create_session() as session:
            rows = session.execute(select(DagModel.dag_id).where(
                DagModel.dag_id.in_(FEEDING_DAGS), DagModel.is_paused.is_(True))).scalars().all()
        return sorted(str(r) for r in rows)
    except Exception:  # noqa: BLE001 - no Airflow metadata here
        return []


def airflow_dagrun_state(dag_id: str, run_id: str) -> str | None:
    """Airflow's state of one DAG run, read from Airflow's metadata database (the API server's own
    session); None when Airflow does not know the run or no metadata database is reachable."""
    try:
        from airflow.models.dagrun import DagRun
        from airflow.utils.session import create_session
        from sqlalchemy import select

        with create_session() as session:
            value = session.execute(select(DagRun.state).where(
                DagRun.dag_id == dag_id, DagRun.run_id == run_id)).scalar_one_or_none()
        return str(value) if value is not None else None
    except Exception:  # noqa: BLE001 - no Airflow metadata here: nothing is closed
        return None


def close_ended_runs(conn_id: str | None) -> list[dict[str, Any]]:
    """Close the runs still ``running`` in the control schema whose Airflow run has ended (a task killed
    by ``kill -9``), before the status page or a run page is read; never fails the page."""
    from cutover.lifecycle.state import close_ended_runs as close

    try:
        return close(conn_id, airflow_dagrun_state, closed_by="status page")
    except Exception:  # noqa: BLE001 - a read-only control connection, a schema not there yet
        return []


def _prefix(request: Request) -> str:
    return str(request.scope.get("root_path") or "").rstrip("/")


def create_app(
    *,
    docs_dir: DocsDir = None,
    conn_id: str | None = None,
    require_auth: bool = False,
    reports_dir: DocsDir = None,
) -> FastAPI:
    """Build the Cutover UI app; ``docs_dir`` defaults to the project's data docs, ``conn_id`` to the control DB,
    ``reports_dir`` (the run reports) to ``reports/`` beside the docs folder."""

    def resolve_docs() -> Path:
        if docs_dir is None:
            return default_docs_dir()
        if callable(docs_dir):
            return Path(docs_dir())
        return Path(docs_dir)

    def resolve_reports() -> Path:
        if reports_dir is None:
            return resolve_docs().parent / "reports"
        if callable(reports_dir):
            return Path(reports_dir())
        return Path(reports_dir)

    deps = [Depends(_airflow_user)] if require_auth else []
    app = FastAPI(title="Cutover", docs_url=None, redoc_url=None, openapi_url=None, dependencies=deps)

    def with_control(read: Callable[[Any], Any]) -> tuple[Any, str | None]:
        """``(read(control connection), None)``, or ``(None, error text)`` when the control DB cannot be read."""
        from cutover.connections import CONTROL, pg_connect

        try:
            with pg_connect(conn_id or CONTROL, autocommit=True) as conn:
                return read(conn), None
        except Exception as exc:  # the page says what went wrong instead of a bare 500
            return None, f"{type(exc).__name__}: {exc}"

    def read_status(pipeline: str | None) -> tuple[dict[str, Any], str | None]:
        docs = resolve_docs()
        close_ended_runs(conn_id)
        data, error = with_control(lambda conn: status_mod.collect_status(conn, pipeline=pipeline or None, docs_dir=docs))
        return (data, None) if error is None else ({"pipeline": pipeline, "schema_exists": False}, error)


    @app.get("/", include_in_schema=False)
    def root(request: Request) -> RedirectResponse:
        return RedirectResponse(f"{_prefix(request)}/status")

    @app.get("/status", response_class=HTMLResponse)
    def status_page(
        request: Request, pipeline: str | None = None, refresh: int | None = None
    ) -> HTMLResponse:
        """Migration status: runs, units, quality gates, switches, consistency, dead letters."""
        data, error = read_status(pipeline)
        docs = resolve_docs()
        page = status_mod.render_status_html(
            data,
            prefix=_prefix(request),
            docs_available=(docs / "index.html").is_file(),
            error=error,
            refresh_s=max(5, refresh) if refresh else None,
            paused=paused_feeding_dags(),
        )
        return HTMLResponse(page, status_code=503 if error else 200)

    @app.get("/api/status")
    def status_json(pipeline: str | None = None) -> Response:
        """The status page's data as JSON."""
        data, error = read_status(pipeline)
        if error:
            return JSONResponse({"error": error}, status_code=503)
        return Response(status_mod.dumps(data), media_type="application/json")

    @app.get("/run/{run_id:path}", response_class=HTMLResponse)
    def run_page(request: Request, run_id: str) -> HTMLResponse:
        """One run's evidence bundle: plan, report, approvals, units, gates, switches, dead letters."""
        close_ended_runs(conn_id)
        run, error = with_control(lambda conn: pages.collect_run(conn, run_id, docs_dir=resolve_docs()))
        if error:
            return HTMLResponse(f"<p>Cannot read the control schema: {status_mod._e(error)}</p>", status_code=503)
        return HTMLResponse(pages.render_run_html(run, run_id=run_id, prefix=_prefix(request)),
                            status_code=200 if run is not None else 404)

    @app.get("/dead-letters", response_class=HTMLResponse)
    def dead_letters_page(request: Request, pipeline: str | None = None, unit: str | None = None,
                          run: str | None = None) -> HTMLResponse:
        """Every record that could not be loaded, filtered by pipeline, unit and run."""
        data, error = with_control(lambda conn: pages.collect_dead_letters(conn, pipeline=pipeline, unit=unit, run=run))
        if error:
            return HTMLResponse(f"<p>Cannot read the control schema: {status_mod._e(error)}</p>", status_code=503)
        return HTMLResponse(pages.render_dead_letters_html(data, prefix=_prefix(request)))

    @app.get("/reports/{run_id:path}/{name}", include_in_schema=False)
    def report_file(request: Request, run_id: str, name: str) -> Response:
        """A run's report: the schema diff (HTML page, workbook download, JSON) or the type mapping
        (HTML, JSON); nothing else."""
        from cutover.mysql_to_postgres import report as type_report
        from cutover.tenant_split import diff_report

        if name not in (*diff_report.REPORT_FILES, *type_report.REPORT_FILES) or not run_id:
            return HTMLResponse("not found", status_code=404)
        folder = diff_report.report_dir(run_id, root=resolve_reports())
        target = folder / name
        if not target.is_file():
            return HTMLResponse(
                f"<!doctype html><html><head><meta charset=\"utf-8\"><link rel=\"icon\" href=\"data:,\"><title>No report"
                f"</title><style>{pages.PAGE_CSS}</style></head><body><h1>No {status_mod._e(name)} for run "
                f"<code>{status_mod._e(run_id)}</code></h1><p>The run has not saved this report (yet). "
                f'<a href="{status_mod._e(status_mod.run_page_url(_prefix(request), run_id))}">The run\'s page</a></p>'
                "</body></html>", status_code=404)
        if name.endswith(".html"):
            return HTMLResponse(target.read_text(encoding="utf-8"))
        if name.endswith(".xlsx"):
            return FileResponse(target, media_type=diff_report.XLSX_MEDIA_TYPE,
                                filename=f"schema_diff_{folder.name}.xlsx")
        return FileResponse(target, media_type="application/json")

    @app.get("/assets/offline.css", include_in_schema=False)
    def offline_css() -> Response:
        """The one stylesheet of the offline data docs (ours: nothing is fetched from a CDN)."""
        return Response(docs_offline.OFFLINE_CSS, media_type="text/css",
                        headers={"Cache-Control": "max-age=3600"})

    @app.get("/docs", include_in_schema=False)
    def docs_root(request: Request) -> RedirectResponse:
        return RedirectResponse(f"{_prefix(request)}/docs/index.html")

    @app.get("/docs/{path:path}", include_in_schema=False)
    def docs_file(request: Request, path: str) -> Response:
        """A file of the data docs site; never anything outside it."""
        root = resolve_docs()
        if path in ("", "/"):
            path = "index.html"
        prefix = _prefix(request)
        if not (root / "index.html").is_file():
            return HTMLResponse(status_mod.no_docs_html(root, prefix=prefix), status_code=404)
        try:
            base = root.resolve()
            target = (base / path).resolve()
            target.relative_to(base)
        except (OSError, ValueError):
            return HTMLResponse("not found", status_code=404)
        if target.is_dir():
            target = target / "index.html"
        css, index = f"{prefix}/assets/offline.css", f"{prefix}/docs/index.html"
        if target == base / "index.html":  # GX's index is a JavaScript table fed from CDNs: ours instead
            from cutover.tenant_split.diff_report import list_reports

            reports = [(r["run_id"], pages.report_url(prefix, r["run_id"], "schema_diff.html"), r["title"])
                       for r in list_reports(resolve_reports())]
            return HTMLResponse(docs_offline.render_index(
                base.parents[2], base, docs_href=f"{prefix}/docs", css_href=css, status_href=f"{prefix}/status",
                reports=reports))
        if not target.is_file():
            return HTMLResponse(status_mod.no_docs_html(root, prefix=prefix, missing=path), status_code=404)
        if target.suffix == ".html":  # every page offline: no script, stylesheet, font or image from another host
            page = target.read_text(encoding="utf-8", errors="replace")
            return HTMLResponse(docs_offline.rewrite_page(page, css_href=css, index_href=index))
        media_type = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
        return FileResponse(target, media_type=media_type)

    return app
