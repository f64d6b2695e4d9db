"""The type-mapping report of a run: per table and column, MySQL's type → PostgreSQL's, the rule, the
default, notes and warnings, with the run's figures (rows, dead letters, verification) — one offline
HTML page (no script, no external asset) and its JSON, saved beside the data docs under
``reports/<run>/type_mapping.html`` and served by the UI at ``/cutover/reports/<run id>/type_mapping.html``,
linked from the run's evidence page.

**Figures come from the verified records the verdict uses** (the run's ``cutover.units``, :func:`figures`):
rows on each side as the verification counted them (never the copy's counters), the rows explained by
dead letters, the values each rule changed (the copy's per-column counts), the state and its error. A
table is shown green only when it was verified (or cut over) **and lost no row to a dead letter**; a
verified table with dead letters is shown as such, in the warning colour.
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


def _changes_text(changes: dict[str, int], order: list[str] | None = None) -> str:
    labels = [x for x in order or [] if x in changes] + [x for x in changes if x not in (order or [])]
    return ", ".join(f"{label}: {changes[label]:,}" for label in labels if changes[label])


def state_class(f: dict[str, Any]) -> str:
    """The CSS class of a table's state: ``ok`` only when verified (or cut over) with no dead letter,
    ``warn`` when verified but rows went to dead letters, ``bad`` when failed, else none."""
    if f.get("state") == "failed":
        return "bad"
    if f.get("state") in ("verified", "cut_over"):
        return "warn" if f.get("dead_letters") else "ok"
    return ""


def _figure_cells(f: dict[str, Any], dry_run: bool) -> str:
    changed = f.get("rule_changes") or {}
    total = sum(n for by in changed.values() for n in by.values())
    state = str(f.get("state") or ("planned (dry run)" if dry_run else "not reached"))
    if f.get("state") in ("verified", "cut_over") and f.get("dead_letters"):
        state += f" — {f['dead_letters']:,} row(s) in dead letters: not every row was copied"
    if f.get("error"):
        state += f" ({f.get('failed_stage') or ''}: {f['error']})"
    dead = f.get("dead_letters")
    return (f"<td>{_e(f.get('rows_source', ''))}</td><td>{_e(f.get('rows_target', ''))}</td>"
            f"<td class='{'warn' if dead else ''}'>{_e('' if dead is None else dead)}</td>"
            f"<td>{_e(f'{total:,}' if total else ('0' if 'rule_changes' in f else ''))}</td>"
            f"<td class='{state_class(f)}'>{_e(state)}</td>")


def figures(units: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """table → the figures of its unit, from the run's unit records (what the verdict judges): ``state``,
    ``error``, ``failed_stage``, ``rows_source`` / ``rows_target`` (as the verification counted them;
    absent when it did not run), ``dead_letters`` (rows explained by dead letters at verification, else
    the copy's), ``rule_changes`` (``{column: {rule: values}}`` of the copy)."""
    from cutover.lifecycle.model import UnitKey

    out: dict[str, dict[str, Any]] = {}
    for u in units:
        table = UnitKey.parse(u["unit_key"]).parts[0]
        d = u.get("detail") or {}
        ver, cp = d.get("verify") or {}, d.get("copy") or {}
        cons = ver.get("consistency") or {}
        f: dict[str, Any] = {"state": u.get("state"), "error": u.get("error"), "failed_stage": u.get("failed_stage")}
        if "source_rows" in cons:
            f["rows_source"], f["rows_target"] = cons["source_rows"], cons["target_rows"]
        if "dead_letters" in ver:
            f["dead_letters"] = int(ver["dead_letters"] or 0)
        elif "dead_letters" in cp:
            f["dead_letters"] = int(cp["dead_letters"] or 0)
        if "rule_changes" in cp:
            f["rule_changes"] = cp["rule_changes"]
        out[table] = f
    return out


def render_html(cfg: MysqlToPostgresConfig, run_id: str, maps: list[TableMap], figures: dict[str, dict[str, Any]],
                found: dict[str, Any], *, dry_run: bool = False) -> str:
    """The report page (plain HTML + inline CSS); ``figures`` from :func:`figures`."""
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
    out.append("<h2>Tables</h2><table><tr><th>MySQL table</th><th>PostgreSQL table</th><th>key</th>"
               "<th>source rows (verified)</th><th>target rows (verified)</th><th>dead letters</th>"
               "<th>values changed by rule</th><th>state</th><th>notes</th></tr>")
    mapped = {tm.source for tm in maps}
    for tm in maps:
        f = figures.get(tm.source, {})
        out.append(f"<tr><td><a href='#t-{_e(tm.source)}'>{_e(tm.source)}</a></td><td>{_e(tm.target)}</td>"
                   f"<td>{_e(', '.join(tm.key) or '(none)')}</td>" + _figure_cells(f, dry_run)
                   + f"<td>{'<br>'.join(_e(n) for n in tm.notes)}</td></tr>")
    for table, f in figures.items():  # units with no mapping (the plan could not map the table)
        if table not in mapped:
            out.append(f"<tr><td>{_e(table)}</td><td></td><td></td>" + _figure_cells(f, dry_run) + "<td></td></tr>")
    out.append("</table>")
    for tm in maps:
        out.append(f"<h2 id='t-{_e(tm.source)}'>{_e(tm.source)} → {_e(tm.target)}</h2>")
        out.append("<table><tr><th>column</th><th>MySQL type</th><th>PostgreSQL type</th><th>null</th><th>default</th>"
                   "<th>rule</th><th>values changed by rule</th><th>compared as</th><th>notes</th></tr>")
        changed = (figures.get(tm.source, {}).get("rule_changes") or {})
        for c in tm.columns:
            notes = [_e(n) for n in c.notes] + [f"<span class='warn'>{_e(w)}</span>" for w in c.warnings]
            if c.on_update:
                notes.append(f"on update → {_e(c.on_update)}")
            name = _e(c.source) + (f" → {_e(c.target)}" if c.target != c.source else "")
            out.append(f"<tr><td><code>{name}</code></td><td><code>{_e(c.mysql_type)}</code></td>"
                       f"<td><code>{_e(c.pg_type)}</code>{_auto(c.identity, c.pg_type)}</td>"
                       f"<td>{'yes' if c.nullable else 'NOT NULL'}</td><td><code>{_e(c.default or '')}</code></td>"
                       f"<td>{_e(c.rule)}</td><td>{_e(_changes_text(changed.get(c.source) or {}, [label for label, _ in c.changes]))}</td>"
                       f"<td>{_e(c.kind or 'inferred')}</td><td>{'<br>'.join(notes)}</td></tr>")
        out.append("</table>")
        if tm.indexes or tm.primary_key or tm.foreign_keys:
            built = ((["PRIMARY KEY (" + ", ".join(tm.primary_key) + ")"] if tm.primary_key else [])
                     + [("UNIQUE " if i["unique"] else "") + f"INDEX {i['name']} ({', '.join(i['parts'])})" for i in tm.indexes]
                     + [f"FOREIGN KEY {fk['name']} ({', '.join(fk['columns'])}) → {fk['ref_table']}" for fk in tm.foreign_keys])
            out.append("<p>Built after the load: " + "; ".join(_e(b) for b in built) + "</p>")
    out.append("</body></html>")
    return "\n".join(out)


def save(cfg: MysqlToPostgresConfig, run_id: str, maps: list[TableMap], units: list[dict[str, Any]],
         found: dict[str, Any], *, dry_run: bool = False) -> dict[str, Any]:
    """Write the HTML and JSON into the run's report folder; add ``evidence["type_mapping"]`` to the run;
    return that entry (``{"html": url, "json": url, "tables", "columns", "warnings", "rule_changes",
    "dead_letters"}``: ``rule_changes`` = ``{table: {column: {rule: values}}}``, ``dead_letters`` =
    ``{table: rows}``). ``units``: the run's unit records (the figures); ``dry_run``: nothing was copied."""
    from cutover import control
    from cutover.connections import pg_connect
    from cutover.reports import URL_PREFIX, report_dir, write_text
    from cutover.ui.pages import report_url

    figs = figures(units)
    for table, error in (found.get("unmapped") or {}).items():  # a dry run: the plan's per-table refusals
        figs.setdefault(table, {"state": "failed", "error": error, "failed_stage": "plan"})
    folder = report_dir(run_id)
    folder.mkdir(parents=True, exist_ok=True)
    write_text(folder / "type_mapping.html", render_html(cfg, run_id, maps, figs, found, dry_run=dry_run))
    write_text(folder / "type_mapping.json", json.dumps(
        {"run_id": run_id, "source_database": cfg.source_database, "target_schema": cfg.target_schema,
         "dry_run": dry_run, "tables": [t.to_dict() for t in maps], "figures": figs}, indent=1, default=str))
    entry = {"html": report_url(URL_PREFIX, run_id, "type_mapping.html"),
             "json": report_url(URL_PREFIX, run_id, "type_mapping.json"), "tables": len(maps),
             "columns": sum(len(t.columns) for t in maps),
             "warnings": sum(len(c.warnings) for t in maps for c in t.columns),
             "rule_changes": {t: f["rule_changes"] for t, f in figs.items() if f.get("rule_changes")},
             "dead_letters": {t: f["dead_letters"] for t, f in figs.items() if f.get("dead_letters")}}
    with pg_connect(cfg.control_conn_id) as conn:
        control.add_evidence(conn, run_id, {"type_mapping": entry})
    return entry
