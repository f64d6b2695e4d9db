"""The GX data docs, readable with no network: pages served rewritten to local assets, and our own index.

GX's pages load jQuery, Bootstrap, bootstrap-table, Font Awesome and Vega from public CDNs and its logo
from S3; in an air-gapped Airflow the index (a table built by JavaScript) stays blank and the
per-expectation status icons (a CDN font) vanish. The plugin therefore serves every data-docs page
through :func:`rewrite_page`, which removes every reference to another host and every script, marks
each expectation's result with a text glyph (✔ passed / ✘ failed), and links one local stylesheet
(:data:`OFFLINE_CSS`); and it serves :func:`render_index` instead of GX's index: every validation
(suite, asset, run, time, result, link) from GX's validation store, and every suite. Nothing the pages
need leaves the machine: the stylesheet is ours, written here, so there is no third-party asset (or
license) to vendor.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from cutover.ui.status import _ts

_EXTERNAL = r"""(?:https?:)?//"""
_SCRIPT = re.compile(r"<script\b[^>]*>.*?</script\s*>", re.I | re.S)
_LINK_EXTERNAL = re.compile(rf"""<link\b[^>]*\bhref\s*=\s*["']{_EXTERNAL}[^>]*>""", re.I)
_LINK_ICON = re.compile(r"""<link\b[^>]*\brel\s*=\s*["'](?:shortcut )?icon["'][^>]*>""", re.I)
_IMG_EXTERNAL = re.compile(rf"""<img\b[^>]*\bsrc\s*=\s*["']{_EXTERNAL}[^>]*>""", re.I)
_A_EXTERNAL = re.compile(rf"""<a\b([^>]*)\bhref\s*=\s*["']{_EXTERNAL}[^"']*["']([^>]*)>""", re.I)
_ICON = re.compile(r"""<i\b[^>]*\bclass\s*=\s*["']([^"']*)["'][^>]*>\s*</i\s*>""", re.I)
_HEAD_END = re.compile(r"</head\s*>", re.I)
#: GX's newsletter footer ("Stay current on everything GX with our newsletter — Subscribe"): a link to
#: another host, dead offline, and nothing about the data
_GX_FOOTER = re.compile(r"<footer\b[^>]*>(?:(?!</footer).)*?newsletter(?:(?!</footer).)*</footer\s*>", re.I | re.S)
_EXTERNAL_URL = re.compile(rf"""(?:src|href)\s*=\s*["']{_EXTERNAL}""", re.I)

OFFLINE_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;color:#1f2933;margin:0;font-size:14px}
.container,.container-fluid{max-width:1200px;margin:0 auto;padding:0 1rem}
nav,.navbar{background:#f0f4f8;padding:.4rem 1rem;border-bottom:1px solid #d9e2ec}
table{border-collapse:collapse;margin:.4rem 0 1rem;width:100%}
th,td{border:1px solid #d9e2ec;padding:.3rem .5rem;text-align:left;vertical-align:top}
th{background:#f0f4f8}
.card{border:1px solid #d9e2ec;border-radius:4px;margin:.6rem 0;padding:.4rem .8rem}
.card-header{font-weight:600;border-bottom:1px solid #d9e2ec;margin-bottom:.4rem}
.row{display:flex;flex-wrap:wrap;gap:1rem}.col-md-2,.col-md-10{flex:1 1 auto}
.col-md-2{max-width:14rem}.d-none,.btn{display:none}.badge{background:#e4e7eb;border-radius:3px;padding:0 .3rem}
ul.list-group,.nav{list-style:none;padding-left:0}
.cutover-pass{color:#05400a;background:#c6f7e2;border-radius:3px;padding:0 .3rem;font-weight:600}
.cutover-fail{color:#610404;background:#ffd0d0;border-radius:3px;padding:0 .3rem;font-weight:700}
.text-danger{color:#b00020}.text-success{color:#05400a}
.cutover-offline-note{font-size:.85em;color:#52606d;padding:.3rem 1rem;background:#fffbea;border-bottom:1px solid #f0e0a0}
tr.failed td{background:#fff0f0}td.n{text-align:right}
h1{font-size:1.4rem}h2{font-size:1.1rem;border-bottom:1px solid #d9e2ec;margin-top:1.4rem}
"""


def _icon(match: re.Match[str]) -> str:
    classes = match.group(1).split()
    if "fa-check-circle" in classes or "fa-check" in classes:
        return '<span class="cutover-pass" title="passed">✔ passed</span>'
    if "fa-times" in classes or "fa-times-circle" in classes or "fa-exclamation-triangle" in classes:
        return '<span class="cutover-fail" title="failed">✘ FAILED</span>'
    return ""


def rewrite_page(page: str, *, css_href: str, index_href: str) -> str:
    """A GX data-docs page with nothing that would leave the machine.

    Removes every ``<script>`` (they only drive CDN widgets), GX's newsletter footer ("Subscribe"),
    every stylesheet, icon and image from another host, and turns links to other hosts into plain text; replaces Font Awesome status icons
    by text marks; links ``css_href`` and says at the top that the page is the offline rendering (with
    a link to ``index_href``). Idempotent.
    """
    if "cutover-offline-note" in page:
        return page
    out = _SCRIPT.sub("", page)
    out = _GX_FOOTER.sub("", out)
    out = _LINK_EXTERNAL.sub("", out)
    out = _LINK_ICON.sub("", out)
    out = _IMG_EXTERNAL.sub("", out)
    out = _A_EXTERNAL.sub(lambda m: f"<a{m.group(1)}{m.group(2)}>", out)
    out = _ICON.sub(_icon, out)
    head = (f'<link rel="icon" href="data:,"><link rel="stylesheet" href="{html.escape(css_href)}">')
    out, n = _HEAD_END.subn(head + "</head>", out, count=1)
    if not n:
        out = head + out
    note = (f'<div class="cutover-offline-note">Offline rendering of the Great Expectations data docs (no '
            f'network needed). <a href="{html.escape(index_href)}">All validations and suites</a></div>')
    out, n = re.subn(r"(<body\b[^>]*>)", lambda m: m.group(1) + note, out, count=1, flags=re.I)
    if not n:
        out = note + out
    return out


def external_references(page: str) -> list[str]:
    """The ``src`` / ``href`` attributes of a page that point at another host (for tests and checks)."""
    return [m.group(0) for m in _EXTERNAL_URL.finditer(page)]


@dataclass(frozen=True)
class Validation:
    """One stored GX validation result, as the index lists it."""

    suite: str
    asset: str
    datasource: str
    run_name: str
    run_time: str
    success: bool
    evaluated: int
    failed: int
    page: str | None  # path of its page inside the site, or None when the page was not built


def load_validations(gx_root: Path, site: Path) -> list[Validation]:
    """Every validation result in ``<gx_root>/uncommitted/validations`` (newest first), each with the
    path of its page in ``site`` when the page exists. Unreadable files are skipped."""
    store = gx_root / "uncommitted" / "validations"
    out: list[Validation] = []
    for f in store.rglob("*.json") if store.is_dir() else []:
        try:
            data = json.loads(f.read_text())
        except (OSError, ValueError):
            continue
        meta = data.get("meta") or {}
        batch = meta.get("active_batch_definition") or {}
        run = meta.get("run_id") or {}
        stats = data.get("statistics") or {}
        rel = f.relative_to(store).with_suffix(".html").as_posix()
        out.append(Validation(
            suite=str(data.get("suite_name") or f.relative_to(store).parts[0]),
            asset=str(batch.get("data_asset_name") or ""),
            datasource=str(batch.get("datasource_name") or ""),
            run_name=str(run.get("run_name") or ""),
            run_time=str(run.get("run_time") or meta.get("validation_time") or ""),
            success=bool(data.get("success")),
            evaluated=int(stats.get("evaluated_expectations") or 0),
            failed=int(stats.get("unsuccessful_expectations") or 0),
            page=f"validations/{rel}" if (site / "validations" / rel).is_file() else None,
        ))
    return sorted(out, key=lambda v: v.run_time, reverse=True)


def render_index(gx_root: Path, site: Path, *, docs_href: str, css_href: str, status_href: str,
                 reports: Sequence[tuple[str, str, str]] = ()) -> str:
    """The data-docs index, rendered on the server: every validation (suite, asset, run, time, result,
    link to its page; failed ones first in red), every suite (link to its page) and every run report
    in ``reports`` (run id, href, title). ``docs_href`` is the URL of the site's root (page links are
    made below it)."""
    vals = load_validations(gx_root, site)
    failed = [v for v in vals if not v.success]

    def link(path: str | None, text: str) -> str:
        if not path:
            return html.escape(text)
        href = docs_href.rstrip("/") + "/" + "/".join(quote(p, safe="") for p in path.split("/"))
        return f'<a href="{html.escape(href)}">{html.escape(text)}</a>'

    def rows(items: list[Validation]) -> str:
        return "".join(
            f'<tr class="{"passed" if v.success else "failed"}">'
            f'<td>{"<span class=cutover-pass>✔ passed</span>" if v.success else "<span class=cutover-fail>✘ FAILED</span>"}</td>'
            f"<td>{link(f'expectations/{v.suite}.html' if (site / 'expectations' / f'{v.suite}.html').is_file() else None, v.suite)}</td>"
            f"<td>{html.escape(v.datasource)}: {html.escape(v.asset)}</td>"
            f"<td>{html.escape(v.run_name)}</td><td>{_ts(v.run_time)}</td>"
            f'<td class="n">{v.evaluated - v.failed} / {v.evaluated}</td>'
            f"<td>{link(v.page, 'open') if v.page else '<span>page not built</span>'}</td></tr>"
            for v in items)

    head = ("<tr><th>result</th><th>suite</th><th>asset</th><th>run</th><th>validated at</th>"
            "<th>expectations passed</th><th>page</th></tr>")
    suites = sorted(p.stem for p in (site / "expectations").glob("*.html")) if (site / "expectations").is_dir() else []
    suite_rows = "".join(f"<li>{link(f'expectations/{s}.html', s)}</li>" for s in suites)
    body = [
        "<h1>Data docs — validations and suites</h1>",
        f'<p><a href="{html.escape(status_href)}">Migration status</a> · {len(vals)} validation(s), '
        f'<span class="{"cutover-fail" if failed else "cutover-pass"}">{len(failed)} failed</span> · {len(suites)} suite(s)</p>',
    ]
    if failed:
        body.append(f"<h2>Failed validations ({len(failed)})</h2><table><thead>{head}</thead><tbody>{rows(failed)}</tbody></table>")
    body.append(f"<h2>All validations ({len(vals)})</h2>")
    body.append(f"<table><thead>{head}</thead><tbody>{rows(vals)}</tbody></table>" if vals
                else "<p>No validation has run yet: every quality gate (e.g. a build's verify) adds one.</p>")
    body.append(f"<h2>Suites ({len(suites)})</h2><ul>{suite_rows or '<li>none yet</li>'}</ul>")
    if reports:
        items = "".join(f'<li><a href="{html.escape(href)}">{html.escape(title or "report")}</a> — run '
                        f"<code>{html.escape(run)}</code></li>" for run, href, title in reports)
        body.append(f"<h2>Schema diff reports ({len(reports)})</h2><ul>{items}</ul>")
    return ('<!doctype html><html><head><meta charset="utf-8"><title>Cutover — data docs</title>'
            f'<link rel="icon" href="data:,"><link rel="stylesheet" href="{html.escape(css_href)}"></head><body>'
            '<div class="container">' + "\n".join(body) + "</div></body></html>")


