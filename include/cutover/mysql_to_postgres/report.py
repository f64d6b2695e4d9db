"""The type-mapping report of a run: per table and column, MySQL's type → PostgreSQL's, the rule, the
default, notes and warnings, with the run's figures (rows, dead letters, verification) — one offline
HTML page (no script, no external asset) and its JSON, saved beside the data docs under
``reports/<run>/type_mapping.html`` and served by the UI at ``/cutover/reports/<run id>/type_mapping.html``,
linked from the run's evidence page.
"""

from __future__ import annotations

import html
import json
from typing import Any

from cutover.mysql_to_postgres.config import MysqlToPostgresConfig
from cutover.mysql_to_postgres.typemap import TableMap

REPORT_FILES = ("type_mapping.html", "type_mapping.json")

_CSS = """body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}table{border-collapse:collapse;margin:.5em 0 1.5em}
td,th{border:1px solid #ccc;padding:3px 6px;vertical-align:top;text-align:left}th{background:#f3f3f3}
code{font-size:13px}.warn{color:#a15c00}.bad{color:#b00020}.ok{color:#1b6e20}h2{margin-top:1.5em}"""


def _e(v: Any) -> str:
    return html.escape(str(v), quote=True)


def _auto(identity: bool, pg_type: str) -> str:
    if not identity:
        return ""
    return " auto-increment sequence" if pg_type.startswith("numeric") else " identity"


def render_html(cfg: MysqlToPostgresConfig, run_id: str, maps: list[TableMap], figures: dict[str, dict[str, Any]],
                found: dict[str, Any]) -> str:
    """The report page (plain HTML + inline CSS)."""
    warn_n = sum(len(c.warnings) for tm in maps for c in tm.columns)
    out = [f"<!doctype html><html><head><meta charset='utf-8'><link rel='icon' href='data:,'>"
           f"<title>Type mapping — {_e(cfg.source_database)} → {_e(cfg.target_schema)}</title><style>{_CSS}</style></head><body>",
           f"<h1>Type mapping: MySQL <code>{_e(cfg.source_database)}</code> → PostgreSQL <code>{_e(cfg.target_schema)}</code></h1>",
           f"<p>Run <code>{_e(run_id)}</code> · {len(maps)} table(s) · {sum(len(t.columns) for t in maps)} column(s) · "
           f"<span class='{'warn' if warn_n else 'ok'}'>{warn_n} warning(s)</span> · rules: zero dates → "
           f"<b>{_e(cfg.zero_date)}</b>, empty invalid ENUM value → <b>{_e(cfg.enum_empty)}</b> · sync mode "
           f"<b>{_e(cfg.sync_mode)}</b>" + (" (deletes are not seen in watermark mode)" if cfg.sync_mode == "watermark" else "") + "</p>"]
    ro = found.get("read_only") or {}
    if ro:
        out.append(f"<p>Source user: <code>{_e(ro.get('user', ''))}</code> — write attempt: {_e(ro.get('attempt', ro.get('writable', '')))}</p>")
    out.append("<h2>Tables</h2><table><tr><th>MySQL table</th><th>PostgreSQL table</th><th>key</th><th>rows read</th>"
               "<th>rows written</th><th>dead letters</th><th>state</th><th>notes</th></tr>")
    for tm in maps:
        f = figures.get(tm.source, {})
        out.append(f"<tr><td><a href='#t-{_e(tm.source)}'>{_e(tm.source)}</a></td><td>{_e(tm.target)}</td>"
                   f"<td>{_e(', '.join(tm.key) or '(none)')}</td><td>{_e(f.get('rows_read', ''))}</td>"
                   f"<td>{_e(f.get('rows_written', ''))}</td><td>{_e(f.get('dead_letters', ''))}</td>"
                   f"<td class='{'ok' if f.get('state') in ('verified', 'cut_over') else 'bad' if f.get('state') == 'failed' else ''}'>"
                   f"{_e(f.get('state', 'planned (dry run)' if not figures else ''))}</td>"
                   f"<td>{'<br>'.join(_e(n) for n in tm.notes)}</td></tr>")
    out.append("</table>")
    for tm in maps:
        out.append(f"<h2 id='t-{_e(tm.source)}'>{_e(tm.source)} → {_e(tm.target)}</h2>")
        out.append("<table><tr><th>column</th><th>MySQL type</th><th>PostgreSQL type</th><th>null</th><th>default</th>"
                   "<th>rule</th><th>compared as</th><th>notes</th></tr>")
        for c in tm.columns:
            notes = [_e(n) for n in c.notes] + [f"<span class='warn'>{_e(w)}</span>" for w in c.warnings]
            if c.on_update:
                notes.append(f"on update → {_e(c.on_update)}")
            name = _e(c.source) + (f" → {_e(c.target)}" if c.target != c.source else "")
            out.append(f"<tr><td><code>{name}</code></td><td><code>{_e(c.mysql_type)}</code></td>"
                       f"<td><code>{_e(c.pg_type)}</code>{_auto(c.identity, c.pg_type)}</td>"
                       f"<td>{'yes' if c.nullable else 'NOT NULL'}</td><td><code>{_e(c.default or '')}</code></td>"
                       f"<td>{_e(c.rule)}</td><td>{_e(c.kind or 'inferred')}</td><td>{'<br>'.join(notes)}</td></tr>")
        out.append("</table>")
        if tm.indexes or tm.primary_key or tm.foreign_keys:
            built = ((["PRIMARY KEY (" + ", ".join(tm.primary_key) + ")"] if tm.primary_key else [])
                     + [("UNIQUE " if i["unique"] else "") + f"INDEX {i['name']} ({', '.join(i['parts'])})" for i in tm.indexes]
                     + [f"FOREIGN KEY {fk['name']} ({', '.join(fk['columns'])}) → {fk['ref_table']}" for fk in tm.foreign_keys])
            out.append("<p>Built after the load: " + "; ".join(_e(b) for b in built) + "</p>")
    out.append("</body></html>")
    return "\n".join(out)


def save(cfg: MysqlToPostgresConfig, run_id: str, maps: list[TableMap], units: list[dict[str, Any]],
         found: dict[str, Any]) -> dict[str, Any]:
    """Write the HTML and JSON into the run's report folder; add ``evidence["type_mapping"]`` to the run;
    return that entry (``{"html": url, "json": url, "tables", "columns", "warnings"}``)."""
    from cutover import control
    from cutover.connections import pg_connect
    from cutover.lifecycle.model import UnitKey
    from cutover.reports import URL_PREFIX, report_dir, write_text
    from cutover.ui.pages import report_url

    figures: dict[str, dict[str, Any]] = {}
    for u in units:
        table = UnitKey.parse(u["unit_key"]).parts[0]
        figures[table] = {"rows_read": u.get("rows_read"), "rows_written": u.get("rows_written"), "state": u.get("state"),
                          "dead_letters": ((u.get("detail") or {}).get("verify") or {}).get("dead_letters", "")}
    folder = report_dir(run_id)
    folder.mkdir(parents=True, exist_ok=True)
    write_text(folder / "type_mapping.html", render_html(cfg, run_id, maps, figures, found))
    write_text(folder / "type_mapping.json", json.dumps(
        {"run_id": run_id, "source_database": cfg.source_database, "target_schema": cfg.target_schema,
         "tables": [t.to_dict() for t in maps], "figures": figures}, indent=1, default=str))
    entry = {"html": report_url(URL_PREFIX, run_id, "type_mapping.html"),
             "json": report_url(URL_PREFIX, run_id, "type_mapping.json"), "tables": len(maps),
             "columns": sum(len(t.columns) for t in maps),
             "warnings": sum(len(c.warnings) for t in maps for c in t.columns)}
    with pg_connect(cfg.control_conn_id) as conn:
        control.add_evidence(conn, run_id, {"type_mapping": entry})
    return entry
