"""The tenant split's schema diff report: what the mapping does to every table, for a reviewer to read
before the copy starts and to re-read, with the verification figures, before approving the cutover.

:func:`build_diff` compares the source database (:class:`~cutover.mysql_schema.DatabaseSchema`)
under the resolved mapping (:meth:`cutover.tenant_split.mapping.Mapping.resolve`) with either a real
tenant database as created (``target``) or, in a dry run, with the DDL the mapping implies (each
target table has its source table's shape under the new name). Per target table (and per dropped
source table) it lists :class:`Finding` rows, each with a severity and the action taken:

* the table: copy / rename / merge into / shared copy / drop; the AUTO_INCREMENT option stripped;
* columns added / removed / type changed (display widths such as ``int(11)`` vs ``int`` are
  normalised away, so a MySQL 5.7 → 8.0 move shows only real changes), nullability, default, extra,
  collation changed;
* indexes added / removed / changed;
* foreign keys: kept, re-pointed to a renamed or merged table, or referencing a dropped table (error);
* triggers, views and events: set aside during the copy, restored after, definition proven equal
  (with a target: compared, after removing DEFINER and database qualifiers);
* merges: column-shape mismatches between the merged tables (error), primary keys that may collide.

A :class:`SchemaDiff` is JSON-able (:meth:`SchemaDiff.to_dict`, :meth:`SchemaDiff.from_dict`),
summarised (:meth:`SchemaDiff.summary`), and takes verification figures per target table afterwards
(:meth:`SchemaDiff.with_figures`). Its ``phase`` (:data:`PHASES`) says where the run stands, and every
label follows it: ``dry_run`` (nothing written), ``planned`` (before the copy), ``copied`` (after it).
The figures come from the verified records (``cutover.units`` of the run, each unit's latest verify
detail), never from copy counters, and account for every source row: ``rows_source`` = rows in the
target + dead letters + rows outside every tenant that were reported (``orphans: report``) + rows of
tenants the run left out; a table with dead letters, unverified units or unaccounted rows is never
green. :func:`render_html` writes one self-contained offline page (no
script, no remote asset), :func:`write_xlsx` a workbook (Summary, Findings, Tables; cells from data
never become formulas), and :func:`save_report` both plus the JSON into ``reports/<safe run id>/``
beside the data docs, where the Airflow UI plugin serves them at
``/cutover/reports/<run id>/schema_diff.html`` (and ``.xlsx``). :func:`evidence_entry` is what the run
keeps in ``evidence["schema_diff"]``.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import quote

from cutover.identifiers import quote_mysql
from cutover.mysql_schema import (
    Column,
    DatabaseSchema,
    ForeignKey,
    Index,
    Routine,
    TableSchema,
    Trigger,
)
from cutover.reports import URL_PREFIX, report_dir, write_text
from cutover.reports import reports_root as reports_root  # re-exported: where the UI and tests look
from cutover.reports import safe_run_dir as safe_run_dir
from cutover.tenant_split.mapping import TableRule
from cutover.ui.pages import PAGE_CSS, report_url
from cutover.ui.status import _e, _num, _table

SEVERITIES = ("error", "warning", "info")
#: what becomes of a table, as the report says it
ACTIONS = ("copy", "rename", "merge into", "shared copy", "drop")
KINDS = ("table", "column", "index", "foreign_key", "trigger", "view", "event", "merge", "rows")
#: where the run stands when the report is written: nothing written / before the copy / after it
PHASES = ("dry_run", "planned", "copied")
PHASE_LABELS = {"dry_run": "dry run: nothing was written", "planned": "planned, before the copy",
                "copied": "after the copy"}
#: figure keys counted as source rows that are, by decision, not in the target
NOT_COPIED = ("dead_letters", "orphans_reported", "orphans_refused", "excluded")
#: the action taken for every trigger, view and event
SET_ASIDE = "set aside during copy, restored after, definition proven equal"
REPORT_FILES = ("schema_diff.html", "schema_diff.xlsx", "schema_diff.json")
XLSX_MEDIA_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


@dataclass(frozen=True)
class Finding:
    """One line of the report: ``table`` (the target table; a dropped table's source name; ``""`` for a
    database-level view or event), the object's ``kind`` (one of :data:`KINDS`) and ``name``, the
    ``change``, the source and target side as text, a ``severity`` (:data:`SEVERITIES`) and the
    ``action`` taken."""

    table: str
    kind: str
    name: str
    change: str
    source: str
    target: str
    severity: str
    action: str

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(f"finding {self.table}.{self.name}: severity {self.severity!r} not in {SEVERITIES}")
        if self.kind not in KINDS:
            raise ValueError(f"finding {self.table}.{self.name}: kind {self.kind!r} not in {KINDS}")


@dataclass
class TableDiff:
    """One target table (or one dropped source table): where its rows come from and what changed.

    ``figures`` holds the verification figures once attached (:meth:`SchemaDiff.with_figures`):
    ``rows_source``, ``rows_target`` (ints), ``checksums_match`` (bool) and optionally ``per_tenant``
    (tenant → the same three keys), ``dead_letters``, ``orphans_reported``, ``orphans_copied``,
    ``excluded`` (rows), ``units`` / ``units_verified`` and ``verified`` (every unit verified)."""

    table: str
    action: str
    sources: list[str]
    tenant_column: str | None = None
    columns: list[str] = field(default_factory=list)
    primary_key: list[str] = field(default_factory=list)
    mapping_lines: list[int] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)

    def count(self, severity: str) -> int:
        """How many of this table's findings have ``severity``."""
        return sum(1 for f in self.findings if f.severity == severity)


@dataclass
class SchemaDiff:
    """The whole report: every target table (sorted by name), then every dropped table, then the
    database-level objects (views, events). ``target_database`` is None for a dry run (compared with
    the DDL the mapping implies)."""

    source_database: str
    target_database: str | None
    tables: list[TableDiff] = field(default_factory=list)
    database_findings: list[Finding] = field(default_factory=list)
    #: one of :data:`PHASES`
    phase: str = "planned"

    def __post_init__(self) -> None:
        if self.phase not in PHASES:
            raise ValueError(f"schema diff phase {self.phase!r} not in {PHASES}")

    @property
    def copied(self) -> bool:
        """Whether the copy has run (labels say "after the copy", errors are not "fix before the copy")."""
        return self.phase == "copied"

    @property
    def compared_with(self) -> str:
        """``"mapping"`` (dry run) or ``"target"``."""
        return "mapping" if self.target_database is None else "target"

    @property
    def findings(self) -> list[Finding]:
        """Every finding: the tables' in table order, then the database-level ones."""
        return [f for t in self.tables for f in t.findings] + list(self.database_findings)

    def table(self, name: str) -> TableDiff:
        """The entry of a target (or dropped) table; raises ``KeyError``."""
        for t in self.tables:
            if t.table == name:
                return t
        raise KeyError(f"no table {name!r} in the schema diff of {self.source_database!r}")

    def summary(self) -> dict[str, Any]:
        """Counts for the run's evidence and the report's head: ``tables`` (target tables), ``dropped``,
        ``actions`` (action → tables), ``findings`` (total), ``severity`` (severity → n), ``kinds``
        (kind → severity → n), ``ok`` (no error); with figures also ``verified_tables``,
        ``rows_source``, ``rows_target`` and ``tables_mismatched``."""
        findings = self.findings
        kinds: dict[str, dict[str, int]] = {}
        for f in findings:
            by = kinds.setdefault(f.kind, dict.fromkeys(SEVERITIES, 0))
            by[f.severity] += 1
        actions: dict[str, int] = {}
        for t in self.tables:
            actions[t.action] = actions.get(t.action, 0) + 1
        severity = {s: sum(1 for f in findings if f.severity == s) for s in SEVERITIES}
        out: dict[str, Any] = {
            "compared_with": self.compared_with,
            "source_database": self.source_database,
            "target_database": self.target_database,
            "tables": sum(1 for t in self.tables if t.action != "drop"),
            "dropped": sum(1 for t in self.tables if t.action == "drop"),
            "actions": actions,
            "findings": len(findings),
            "severity": severity,
            "kinds": {k: kinds[k] for k in KINDS if k in kinds},
            "ok": severity["error"] == 0,
            "phase": self.phase,
        }
        verified = [t for t in self.tables if t.figures]
        if verified:
            out["verified_tables"] = sum(1 for t in verified if t.figures.get("verified", True))
            out["figure_tables"] = len(verified)
            for key in ("rows_source", "rows_target", "orphans_copied", *NOT_COPIED):
                out[key] = sum(int(t.figures.get(key) or 0) for t in verified)
            out["tables_mismatched"] = sum(1 for t in verified if _mismatch(t.figures))
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-able: ``source_database``, ``target_database``, ``compared_with``, ``tables`` (each a
        :class:`TableDiff` as a dict with its findings), ``database_findings`` and ``summary``."""
        return {
            "version": 1,
            "source_database": self.source_database,
            "target_database": self.target_database,
            "phase": self.phase,
            "compared_with": self.compared_with,
            "tables": [asdict(t) for t in self.tables],
            "database_findings": [asdict(f) for f in self.database_findings],
            "summary": self.summary(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SchemaDiff:
        """The inverse of :meth:`to_dict` (extra keys ignored); raises ``ValueError`` on a malformed dict."""
        try:
            tables = [TableDiff(
                table=str(t["table"]), action=str(t["action"]), sources=[str(s) for s in t["sources"]],
                tenant_column=t.get("tenant_column"), columns=list(t.get("columns") or []),
                primary_key=list(t.get("primary_key") or []), mapping_lines=[int(x) for x in t.get("mapping_lines") or []],
                findings=[Finding(**f) for f in t.get("findings") or []], figures=dict(t.get("figures") or {}),
            ) for t in data["tables"]]
            return cls(str(data["source_database"]), data.get("target_database"), tables,
                       [Finding(**f) for f in data.get("database_findings") or []], str(data.get("phase") or "planned"))
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not a schema diff dict: {exc!r}") from exc

    def with_figures(self, figures: Mapping[str, Mapping[str, Any]]) -> SchemaDiff:
        """A copy with verification figures attached per target table (``rows_source``, ``rows_target``,
        ``checksums_match``, optional ``per_tenant``: tenant → the same keys). A table whose rows differ
        or whose checksums do not match gets an error finding (kind ``rows``); figures given again
        replace the earlier ones. Raises ``KeyError`` for a table the report does not have (or a drop)."""
        by_name = {t.table: t for t in self.tables if t.action != "drop"}
        unknown = sorted(set(figures) - set(by_name))
        if unknown:
            raise KeyError(f"figures for tables the schema diff has no target table for: {unknown[:10]}")
        tables = []
        for t in self.tables:
            if t.table not in figures:
                tables.append(replace(t, findings=list(t.findings), figures=dict(t.figures)))
                continue
            fig = dict(figures[t.table])
            kept = [f for f in t.findings if f.kind != "rows"]
            tables.append(replace(t, findings=kept + _figure_findings(t.table, fig), figures=fig))
        return SchemaDiff(self.source_database, self.target_database, tables, list(self.database_findings), self.phase)

    def with_phase(self, phase: str) -> SchemaDiff:
        """A copy in another :data:`PHASES` phase (raises ``ValueError`` for an unknown one)."""
        return replace(self, tables=list(self.tables), database_findings=list(self.database_findings), phase=phase)


def unaccounted(fig: Mapping[str, Any]) -> int:
    """Source rows of a figure that are neither in the target nor counted as not copied (dead letters,
    reported orphans, excluded tenants): 0 when every row is accounted for; None-safe."""
    if fig.get("rows_source") is None:
        return 0
    return int(fig["rows_source"]) - int(fig.get("rows_target") or 0) - sum(int(fig.get(k) or 0) for k in NOT_COPIED)


def _mismatch(fig: Mapping[str, Any]) -> bool:
    """Whether a table (or tenant) figure is not green: rows unaccounted for, a checksum that differs,
    dead letters (rows that are not in the target), or a unit that did not verify."""
    return bool(unaccounted(fig) or fig.get("checksums_match") is False or int(fig.get("dead_letters") or 0)
                or int(fig.get("orphans_refused") or 0) or fig.get("verified") is False)


def _figure_findings(table: str, fig: Mapping[str, Any]) -> list[Finding]:
    out = []
    parts: list[tuple[str, Mapping[str, Any]]] = [("all tenants", fig)]
    parts += [(f"tenant {k}", v) for k, v in sorted((fig.get("per_tenant") or {}).items(), key=lambda kv: str(kv[0]))]
    for who, f in parts:
        state = f.get("state")
        if f.get("verified") is False:
            out.append(Finding(table, "rows", who, "not verified", f"{_num(f.get('units_verified') or 0)} of "
                               f"{_num(f.get('units') or 0)} unit(s) verified" if f.get("units") else "",
                               str(state or f.get("error") or ""), "error",
                               "stopped before cutover: " + (str(f["error"])[:300] if f.get("error") else "not verified")))
        if unaccounted(f):
            not_copied = sum(int(f.get(k) or 0) for k in NOT_COPIED)
            out.append(Finding(table, "rows", who, "row count differs", _num(f.get("rows_source")),
                               _num(f.get("rows_target")) + (f" (+ {_num(not_copied)} not copied)" if not_copied else ""),
                               "error", "unit stopped before cutover: verification failed"))
        elif f.get("checksums_match") is False and not int(f.get("dead_letters") or 0):
            out.append(Finding(table, "rows", who, "checksum differs", "", "", "error",
                               "unit stopped before cutover: verification failed"))
        if int(f.get("dead_letters") or 0):
            out.append(Finding(table, "rows", who, "rows in dead letters", _num(f.get("dead_letters")), "not in the target",
                               "error", "fix the rows named in cutover.dead_letters and build the unit again"))
    if int(fig.get("orphans_reported") or 0):
        out.append(Finding(table, "rows", "outside every tenant", "not copied (orphans: report)",
                           _num(fig.get("orphans_reported")), "copied nowhere", "warning",
                           "reported: tenant column NULL or a tenant the directory does not list"))
    if int(fig.get("orphans_refused") or 0):
        out.append(Finding(table, "rows", "outside every tenant", "not copied (orphans: error)",
                           _num(fig.get("orphans_refused")), "copied nowhere", "error",
                           "the plan refuses them: fix the rows, or set orphans: report or {copy_to: <tenant>}"))
    if int(fig.get("orphans_copied") or 0):
        out.append(Finding(table, "rows", "outside every tenant", "copied to a tenant (orphans: copy_to)",
                           _num(fig.get("orphans_copied")), f"tenant {fig.get('copy_to')}", "info",
                           "copied with that tenant's rows, tenant column kept as it was"))
    if int(fig.get("excluded") or 0):
        out.append(Finding(table, "rows", "tenants not in this run", "not copied by this run", _num(fig.get("excluded")),
                           "", "info", "left out by the run's tenants / tables / units: another run copies them"))
    return out


# --- normalisation --------------------------------------------------------------------------------

_INT_WIDTH = re.compile(r"\b(tinyint|smallint|mediumint|int|integer|bigint|year)\s*\(\s*\d+\s*\)")
_DEFINER = re.compile(r"\s+DEFINER\s*=\s*(?:`(?:[^`]|``)*`|'(?:[^']|'')*'|[^\s@]+)@(?:`(?:[^`]|``)*`|'(?:[^']|'')*'|\S+)",
                      re.I)
_INT_RANK = {"tinyint": 1, "smallint": 2, "mediumint": 3, "int": 4, "bigint": 5}
_TEXT_RANK = {"tinytext": 1, "text": 2, "mediumtext": 3, "longtext": 4,
              "tinyblob": 1, "blob": 2, "mediumblob": 3, "longblob": 4}


def normalise_type(column_type: str) -> str:
    """A column type as compared across MySQL versions: lower case, single spaces, integer display
    widths dropped (``int(11)`` → ``int``, ``tinyint(1)`` → ``tinyint``), ``integer`` → ``int``,
    ``bool`` → ``tinyint``."""
    s = re.sub(r"\s+", " ", column_type.strip().lower())
    s = _INT_WIDTH.sub(lambda m: m.group(1), s)
    s = re.sub(r"^integer\b", "int", s)
    return re.sub(r"^bool(ean)?\b", "tinyint", s)


def normalise_default(default: str | None) -> str | None:
    """A column default as compared across MySQL and MariaDB: ``NULL`` → None, quotes around a literal
    removed, ``current_timestamp()`` / ``now()`` → ``current_timestamp``."""
    if default is None:
        return None
    s = default.strip()
    if s.upper() == "NULL":
        return None
    if len(s) >= 2 and s[0] == s[-1] == "'":
        s = s[1:-1].replace("''", "'")
    low = s.lower()
    m = re.fullmatch(r"(current_timestamp|now|localtimestamp|localtime)\s*(\(\s*(\d*)\s*\))?", low)
    if m:
        return "current_timestamp" + (f"({m.group(3)})" if m.group(3) else "")
    return s


def normalise_extra(extra: str) -> str:
    """A column's EXTRA without what only marks a version (``DEFAULT_GENERATED``), ``()`` after
    ``current_timestamp`` removed, lower case."""
    s = extra.lower().replace("default_generated", "")
    s = re.sub(r"current_timestamp\(\s*\)", "current_timestamp", s)
    return re.sub(r"\s+", " ", s).strip()


def _norm_charset(name: str | None) -> str | None:
    if name is None:
        return None
    low = name.lower()
    return "utf8mb3" + low[4:] if low == "utf8" or low.startswith("utf8_") else low


def normalise_definition(sql: str, *, database: str | None = None, renames: Mapping[str, str] | None = None) -> str:
    """A trigger / view / event statement as compared after a restore: DEFINER removed, the database's
    own qualifier (``db``. or db.) removed, renamed tables replaced by their new names, whitespace
    collapsed, a trailing ``;`` dropped."""
    s = _DEFINER.sub("", sql)
    if database:
        s = s.replace(quote_mysql(database) + ".", "")
        s = re.sub(rf"(?<![\w$`]){re.escape(database)}\.", "", s)
    for old, new in (renames or {}).items():
        if old != new:
            s = s.replace(quote_mysql(old), quote_mysql(new))
            s = re.sub(rf"(?<![\w$`.]){re.escape(old)}(?![\w$`])", new, s)
    return re.sub(r"\s+", " ", s).strip().rstrip(";").strip()


def references(sql: str, table: str) -> bool:
    """Whether a statement names ``table`` (quoted, or as a bare word)."""
    return quote_mysql(table) in sql or re.search(rf"(?<![\w$`]){re.escape(table)}(?![\w$`])", sql) is not None


def _split_type(t: str) -> tuple[str, list[str], str]:
    m = re.match(r"([a-z]+)\s*(?:\(([^)]*)\))?\s*(.*)$", t)
    if not m:
        return t, [], ""
    args = [a.strip() for a in (m.group(2) or "").split(",") if a.strip()]
    return m.group(1).strip(), args, m.group(3).strip()


def _type_severity(old: str, new: str) -> tuple[str, str]:
    """``(severity, change)`` of a type change ``old`` → ``new`` (both normalised): widening is a
    warning, narrowing (or a change no rule here proves safe for every value) an error or warning."""
    (ob, oa, ox), (nb, na, nx) = _split_type(old), _split_type(new)
    if ob in _INT_RANK and nb in _INT_RANK:
        if "unsigned" in ox and "unsigned" not in nx:
            ok = _INT_RANK[nb] > _INT_RANK[ob]
        elif "unsigned" in nx and "unsigned" not in ox:
            ok = False
        else:
            ok = _INT_RANK[nb] >= _INT_RANK[ob]
        return ("warning", "type widened") if ok else ("error", "type narrowed: values may not fit")
    if ob in ("char", "varchar", "binary", "varbinary") and nb in ("char", "varchar", "binary", "varbinary"):
        try:
            ok = int(na[0]) >= int(oa[0]) and (ob in ("binary", "varbinary")) == (nb in ("binary", "varbinary"))
        except (IndexError, ValueError):
            ok = False
        return ("warning", "type widened") if ok else ("error", "type narrowed: values may not fit")
    if ob in ("decimal", "numeric") and nb in ("decimal", "numeric"):
        try:
            op, os_ = int(oa[0]), int(oa[1]) if len(oa) > 1 else 0
            np_, ns = int(na[0]), int(na[1]) if len(na) > 1 else 0
            ok = np_ - ns >= op - os_ and ns >= os_
        except (IndexError, ValueError):
            ok = False
        return ("warning", "type widened") if ok else ("error", "type narrowed: values may not fit")
    if ob in _TEXT_RANK and nb in _TEXT_RANK and (ob.endswith("blob") == nb.endswith("blob")):
        ok = _TEXT_RANK[nb] >= _TEXT_RANK[ob]
        return ("warning", "type widened") if ok else ("error", "type narrowed: values may not fit")
    return "warning", "type changed"


# --- building the diff ----------------------------------------------------------------------------


def _cols(cols: tuple[str, ...] | list[str]) -> str:
    return ", ".join(cols)


def _col_text(c: Column) -> str:
    text = c.column_type + ("" if c.nullable else " NOT NULL")
    if c.default is not None:
        text += f" DEFAULT {c.default}"
    return text + (f" {c.extra}" if c.extra else "")


def _compare_columns(table: str, want: TableSchema, have: TableSchema) -> list[Finding]:
    out: list[Finding] = []
    for c in want.columns:
        t = have.column(c.name)
        if t is None:
            out.append(Finding(table, "column", c.name, "removed", _col_text(c), "", "error",
                               "none: the column is not in the target, its values would not be copied"))
            continue
        ot, nt = normalise_type(c.column_type), normalise_type(t.column_type)
        if ot != nt:
            sev, change = _type_severity(ot, nt)
            out.append(Finding(table, "column", c.name, change, c.column_type, t.column_type, sev,
                               "values copied into the new type; checksums prove them equal" if sev == "warning"
                               else "none: review the target type before the copy"))
        if c.nullable != t.nullable:
            if c.nullable:
                out.append(Finding(table, "column", c.name, "nullability changed", "NULL", "NOT NULL", "error",
                                   "none: a NULL in the source would fail the copy"))
            else:
                out.append(Finding(table, "column", c.name, "nullability changed", "NOT NULL", "NULL", "warning",
                                   "copied as is (the target accepts more)"))
        od, nd = normalise_default(c.default), normalise_default(t.default)
        if od != nd:
            out.append(Finding(table, "column", c.name, "default changed", "" if c.default is None else c.default,
                               "" if t.default is None else t.default, "warning",
                               "copied rows keep their values; only new rows get the new default"))
        oe, ne = normalise_extra(c.extra), normalise_extra(t.extra)
        if oe != ne:
            lost_ai = c.auto_increment and not t.auto_increment
            out.append(Finding(table, "column", c.name, "auto_increment removed" if lost_ai else "extra changed",
                               c.extra, t.extra, "error" if lost_ai else "warning",
                               "none: new rows would get no key" if lost_ai else "copied as is; review the new behaviour"))
        oc, nc = _norm_charset(c.collation), _norm_charset(t.collation)
        if oc and nc and oc != nc:
            out.append(Finding(table, "column", c.name, "collation changed", c.collation or "", t.collation or "",
                               "warning", "copied as is; comparison, sorting and unique keys follow the new collation"))
    want_names = {c.name.lower() for c in want.columns}
    for t in have.columns:
        if t.name.lower() not in want_names:
            blocking = not t.nullable and t.default is None and not t.auto_increment and "generated" not in t.extra.lower()
            out.append(Finding(table, "column", t.name, "added", "", _col_text(t), "error" if blocking else "info",
                               "none: NOT NULL without a default, the copy would fail" if blocking
                               else "copied rows get its default"))
    return out


def _compare_indexes(table: str, want: list[Index], have: list[Index]) -> list[Finding]:
    out: list[Finding] = []
    have_by = {i.name.lower(): i for i in have}
    want_by = {i.name.lower(): i for i in want}

    def text(i: Index) -> str:
        return f"{i.kind} ({_cols(i.columns)})"

    for key, i in want_by.items():
        t = have_by.get(key)
        if t is None:
            sev = "error" if i.kind in ("primary", "unique") else "warning"
            out.append(Finding(table, "index", i.name, "removed", text(i), "", sev,
                               "none: uniqueness would not be enforced" if sev == "error" else "none: queries using it get slower"))
        elif [c.lower() for c in i.columns] != [c.lower() for c in t.columns] or i.kind != t.kind:
            sev = "error" if i.kind in ("primary", "unique") and t.kind not in ("primary", "unique") else "warning"
            out.append(Finding(table, "index", i.name, "changed", text(i), text(t), sev, "created as the target has it"))
    for key, t in have_by.items():
        if key not in want_by:
            out.append(Finding(table, "index", t.name, "added", "", text(t), "info", "created in the target"))
    return out


def _fk_text(fk: ForeignKey, ref: str | None = None) -> str:
    return f"({_cols(fk.columns)}) → {ref or fk.ref_table} ({_cols(fk.ref_columns)})"


def _foreign_keys(table: str, src: TableSchema, rules: Mapping[str, TableRule],
                  have: TableSchema | None) -> list[Finding]:
    out: list[Finding] = []
    have_by = {f.name.lower(): f for f in have.foreign_keys} if have is not None else {}
    for fk in src.foreign_keys:
        rule = rules.get(fk.ref_table)
        t = have_by.pop(fk.name.lower(), None) if have is not None else None
        if rule is None:
            out.append(Finding(table, "foreign_key", fk.name, "references a table outside the source", _fk_text(fk), "",
                               "warning", "none: the tenant database has no such table; review the constraint"))
            continue
        if rule.action == "drop":
            if have is not None and t is None:
                out.append(Finding(table, "foreign_key", fk.name, "references dropped table", _fk_text(fk), "", "warning",
                                   f"not created in the target (`{fk.ref_table}` is dropped by the mapping)"))
            else:
                out.append(Finding(table, "foreign_key", fk.name, "references dropped table", _fk_text(fk),
                                   _fk_text(t) if t is not None else "", "error",
                                   f"none: `{fk.ref_table}` is dropped (mapping line {rule.line}), so the constraint "
                                   "cannot be created; keep that table or leave the constraint out"))
            continue
        want_ref = rule.target
        if want_ref != fk.ref_table:
            change, sev = "re-pointed", "info"
            action = f"FOREIGN KEY re-pointed to `{want_ref}` in the target DDL"
            if rule.merged:
                sev = "warning"
                action += f" (`{fk.ref_table}` merges into it: its keys must not collide with the other merged tables')"
        else:
            change, sev, action = "kept", "info", "kept as in the source"
            if rule.action == "shared":
                action = "kept (the referenced table is shared reference data, copied to every tenant database)"
        if have is not None:
            if t is None:
                out.append(Finding(table, "foreign_key", fk.name, "missing in target", _fk_text(fk, want_ref), "",
                                   "error", "none: the constraint was not created"))
                continue
            if (t.ref_table.lower() != want_ref.lower() or [c.lower() for c in t.columns] != [c.lower() for c in fk.columns]
                    or [c.lower() for c in t.ref_columns] != [c.lower() for c in fk.ref_columns]):
                out.append(Finding(table, "foreign_key", fk.name, "changed", _fk_text(fk, want_ref), _fk_text(t), "error",
                                   "none: the target constraint is not the one the mapping implies"))
                continue
            if (t.on_delete, t.on_update) != (fk.on_delete, fk.on_update):
                out.append(Finding(table, "foreign_key", fk.name, "rules changed",
                                   f"ON DELETE {fk.on_delete} ON UPDATE {fk.on_update}",
                                   f"ON DELETE {t.on_delete} ON UPDATE {t.on_update}", "warning", "created as the target has it"))
                continue
        out.append(Finding(table, "foreign_key", fk.name, change, _fk_text(fk), _fk_text(fk, want_ref), sev, action))
    for t in have_by.values():
        out.append(Finding(table, "foreign_key", t.name, "added", "", _fk_text(t), "info", "created in the target"))
    return out


def _body_references(text: str, own: str, rules: Mapping[str, TableRule]) -> list[tuple[str, TableRule]]:
    return [(name, r) for name, r in sorted(rules.items())
            if name != own and (r.action == "drop" or r.target != name) and references(text, name)]


def _routine_findings(table: str, kind: str, name: str, definition: str, body: str, timing: str,
                      rules: Mapping[str, TableRule], own: str, have: str | None, have_db: str | None,
                      database: str, compare: bool) -> list[Finding]:
    """One trigger / view / event: set aside and restored; what its definition names; proof of equality."""
    out: list[Finding] = []
    renames = {r.source: r.target for r in rules.values() if r.action != "drop"}
    for ref, rule in _body_references(body, own, rules):
        if rule.action == "drop":
            out.append(Finding(table, kind, name, "references dropped table", ref, "", "error",
                               f"none: `{ref}` is dropped (mapping line {rule.line}), the definition cannot be restored"))
        else:
            out.append(Finding(table, kind, name, "references renamed table", ref, rule.target, "warning",
                               f"{SET_ASIDE} (after `{ref}` → `{rule.target}` in its definition)"))
    if not compare:
        if not any(f.change == "references dropped table" for f in out):  # that one cannot be restored at all
            out.append(Finding(table, kind, name, "set aside", timing, timing, "info", SET_ASIDE))
        return out
    if have is None:
        out.append(Finding(table, kind, name, "missing in target", timing, "", "error", "none: not restored in the target"))
        return out
    want = normalise_definition(definition, database=database, renames=renames)
    got = normalise_definition(have, database=have_db)
    if want == got or normalise_definition(definition, database=database) == got:
        out.append(Finding(table, kind, name, "restored, equal", timing, timing, "info", SET_ASIDE))
    else:
        out.append(Finding(table, kind, name, "definition differs", want[:300], got[:300], "error",
                           "none: the restored definition is not the source's"))
    return out


def _merge_findings(target: str, base: TableSchema, merged: TableSchema) -> list[Finding]:
    out: list[Finding] = []
    label = f"{merged.name} → {target}"
    for c in base.columns:
        m = merged.column(c.name)
        if m is None:
            out.append(Finding(target, "merge", c.name, "column missing in merged table", _col_text(c), "", "error",
                               f"none: `{merged.name}` has no column `{c.name}`; make the shapes equal before merging"))
            continue
        if normalise_type(c.column_type) != normalise_type(m.column_type):
            out.append(Finding(target, "merge", c.name, "column type differs", f"{merged.name}: {m.column_type}",
                               f"{base.name}: {c.column_type}", "error",
                               f"none: rows of `{merged.name}` would be converted; make the shapes equal before merging"))
        if m.nullable and not c.nullable:
            out.append(Finding(target, "merge", c.name, "nullability differs", f"{merged.name}: NULL",
                               f"{base.name}: NOT NULL", "error", "none: a NULL from the merged table would fail the copy"))
    for m in merged.columns:
        if base.column(m.name) is None:
            out.append(Finding(target, "merge", m.name, "column only in merged table", _col_text(m), "", "error",
                               f"none: `{target}` has no column `{m.name}`; its values would be lost"))
    if base.primary_key and [c.lower() for c in base.primary_key] == [c.lower() for c in merged.primary_key]:
        out.append(Finding(target, "merge", "PRIMARY", "primary keys may collide", f"{merged.name} ({_cols(merged.primary_key)})",
                           f"{base.name} ({_cols(base.primary_key)})", "warning",
                           "a duplicate key fails the copy of that chunk; the ranges must not overlap"))
    out.insert(0, Finding(target, "table", merged.name, "merged", label, target, "info",
                          f"rows of `{merged.name}` copied into `{target}` per tenant"))
    return out


def build_diff(source: DatabaseSchema, rules: Mapping[str, TableRule], target: DatabaseSchema | None = None) -> SchemaDiff:
    """The schema diff of a tenant split: ``source`` under ``rules`` (the resolved mapping, one rule per
    source table) against ``target`` (one tenant database as created) or, when ``target`` is None, the
    DDL the mapping implies (a dry run). Raises ``ValueError`` when the rules and the source's tables
    do not match one to one or a rule merges into a table no rule creates."""
    missing = sorted(set(rules) - set(source.tables))
    unruled = sorted(set(source.tables) - set(rules))
    if missing or unruled:
        raise ValueError(f"rules and source {source.database!r} disagree: rules for missing tables {missing[:10]}, "
                         f"tables without a rule {unruled[:10]}")
    groups: dict[str, list[TableRule]] = {}
    for rule in rules.values():
        if rule.action != "drop":
            groups.setdefault(rule.target, []).append(rule)
    compare = target is not None
    diff = SchemaDiff(source.database, target.database if target is not None else None)
    for name in sorted(groups):
        group = sorted(groups[name], key=lambda r: (r.merged, r.source))
        base = group[0]
        if base.merged:
            raise ValueError(f"{name!r}: every rule merges into it, none creates it ({[r.source for r in group]})")
        src = source.tables[base.source]
        merged = [r for r in group[1:] if r.merged]
        if merged:
            action = "merge into"
        elif base.action == "shared":
            action = "shared copy"
        else:
            action = "rename" if base.target != base.source else "copy"
        have = target.tables.get(name) if target is not None else None
        shape = have if have is not None else src
        td = TableDiff(name, action, [r.source for r in group], base.tenant_column, shape.column_names,
                       list(shape.primary_key), sorted({r.line for r in group if r.line}))
        f = td.findings
        if base.target != base.source:
            f.append(Finding(name, "table", base.source, "renamed", base.source, name, "info",
                             f"created as `{name}` from the source's CREATE TABLE, rows copied per tenant"))
        if base.action == "shared":
            f.append(Finding(name, "table", name, "shared copy", base.source, name, "info",
                             "reference data without a tenant column: every row copied to every tenant database"))
        if compare and have is None:
            f.append(Finding(name, "table", name, "missing in target", base.source, "", "error",
                             "none: the table was not created in the target"))
        if src.auto_increment is not None and any(c.auto_increment for c in src.columns):
            f.append(Finding(name, "table", "AUTO_INCREMENT", "table option stripped", f"AUTO_INCREMENT={src.auto_increment}",
                             "", "info", "left out of CREATE TABLE: the counter follows the rows copied"))
        for r in group:
            t = source.tables[r.source]
            if r.tenant_column and t.column(r.tenant_column) is None:
                f.append(Finding(name, "column", r.tenant_column, "tenant column missing", r.source, "", "error",
                                 f"none: `{r.source}` has no column `{r.tenant_column}` to split by "
                                 f"(mapping line {r.line}: set tenant_column, or action: shared)"))
        for r in merged:
            f.extend(_merge_findings(name, src, source.tables[r.source]))
        if have is not None:
            f.extend(_compare_columns(name, src, have))
            f.extend(_compare_indexes(name, src.indexes, have.indexes))
        f.extend(_foreign_keys(name, src, rules, have if compare else None))
        have_trg = {t.name.lower(): t for t in have.triggers} if have is not None else {}
        for trg in src.triggers:
            got = have_trg.pop(trg.name.lower(), None)
            f.extend(_routine_findings(name, "trigger", trg.name, trg.definition, trg.statement, _trg_timing(trg),
                                       rules, base.source, got.definition if got else None,
                                       target.database if target is not None else None, source.database,
                                       compare and have is not None))
        for r in merged:
            for trg in source.tables[r.source].triggers:
                f.append(Finding(name, "trigger", trg.name, "trigger of merged table", _trg_timing(trg) + f" ON {r.source}",
                                 "", "warning", f"not recreated: rows of `{r.source}` go into `{name}`, whose own "
                                 "triggers apply; review whether it is still needed"))
        for trg in have_trg.values():
            f.append(Finding(name, "trigger", trg.name, "added", "", _trg_timing(trg), "warning",
                             "exists only in the target: it was not set aside during the copy"))
        diff.tables.append(td)
    for rule in sorted((r for r in rules.values() if r.action == "drop"), key=lambda r: r.source):
        src = source.tables[rule.source]
        td = TableDiff(rule.source, "drop", [rule.source], None, src.column_names, list(src.primary_key),
                       [rule.line] if rule.line else [])
        td.findings.append(Finding(rule.source, "table", rule.source, "dropped", f"~{src.rows_estimate:,} rows", "",
                                   "warning", f"not copied (mapping line {rule.line}): its rows stay in the source only"))
        for trg in src.triggers:
            td.findings.append(Finding(rule.source, "trigger", trg.name, "dropped with its table", _trg_timing(trg), "",
                                       "info", "not recreated"))
        if target is not None and rule.source in target.tables:
            td.findings.append(Finding(rule.source, "table", rule.source, "present in target", "", rule.source, "warning",
                                       "the mapping drops it, yet the target has a table of that name"))
        diff.tables.append(td)
    if target is not None:
        expected = set(groups) | {r.source for r in rules.values() if r.action == "drop"}
        for extra in sorted(set(target.tables) - expected):
            diff.database_findings.append(Finding("", "table", extra, "not in mapping", "", extra, "warning",
                                                  "exists only in the target: no source rows go into it"))
    diff.database_findings.extend(_database_objects(source, rules, target))
    return diff


def _trg_timing(trg: Trigger) -> str:
    return f"{trg.timing} {trg.event}".strip()


def _database_objects(source: DatabaseSchema, rules: Mapping[str, TableRule], target: DatabaseSchema | None) -> list[Finding]:
    out: list[Finding] = []
    for kind, mine, theirs in (("view", source.views, target.views if target else []),
                               ("event", source.events, target.events if target else [])):
        have: dict[str, Routine] = {r.name.lower(): r for r in theirs}
        for r in mine:
            got = have.pop(r.name.lower(), None)
            out.extend(_routine_findings("", kind, r.name, r.definition, r.definition, r.status or kind, rules, "",
                                         got.definition if got else None, target.database if target else None,
                                         source.database, target is not None))
        for r in have.values():
            out.append(Finding("", kind, r.name, "added", "", r.status or kind, "warning", "exists only in the target"))
    return out


# --- HTML -----------------------------------------------------------------------------------------

REPORT_CSS = """
.sev{padding:0 .35rem;border-radius:3px;white-space:nowrap}.sev.error{background:#ffd0d0;color:#610404;font-weight:600}
.sev.warning{background:#fff3c4;color:#513c06}.sev.info{background:#e4e7eb;color:#3e4c59}
tr.error td{background:#fff5f5}section{margin-bottom:1.2rem}td code,li code{word-break:break-all}
.verdict{font-size:1.05rem;padding:.4rem .6rem;border-radius:4px;display:inline-block}
.verdict.bad{background:#ffd0d0}.verdict.ok{background:#c6f7e2}
"""


def _sev(severity: str) -> str:
    return f'<span class="sev {_e(severity)}">{_e(severity)}</span>'


def _counts(t: TableDiff) -> str:
    parts = [f"{_sev(s)} {t.count(s)}" for s in SEVERITIES if t.count(s)]
    return " ".join(parts) or '<span class="muted">no change</span>'


def _not_copied(fig: Mapping[str, Any]) -> str:
    parts = [(k, int(fig.get(k) or 0)) for k in NOT_COPIED]
    labels = {"dead_letters": "dead letters", "orphans_reported": "outside every tenant (reported)",
              "orphans_refused": "outside every tenant (refused)", "excluded": "tenants not in this run"}
    shown = [f"{_num(n)} {labels[k]}" for k, n in parts if n]
    return "; ".join(shown) if shown else '<span class="muted">0</span>'


def _figures_cells(fig: Mapping[str, Any]) -> list[str]:
    if not fig:
        return ['<span class="muted">–</span>'] * 4
    match = fig.get("checksums_match")
    if fig.get("verified") is False:
        verdict = '<span class="state bad">NOT VERIFIED</span>'
    elif int(fig.get("dead_letters") or 0):
        verdict = '<span class="state bad">DEAD LETTERS</span>'
    elif unaccounted(fig):
        verdict = '<span class="state bad">ROWS UNACCOUNTED</span>'
    elif match is None:
        verdict = '<span class="muted">–</span>'
    else:
        verdict = '<span class="state ok">match</span>' if match else '<span class="state bad">MISMATCH</span>'
    return [_num(fig.get("rows_source")), _num(fig.get("rows_target")), _not_copied(fig), verdict]


def _findings_table(findings: list[Finding], *, with_table: bool = False) -> str:
    head = (["table"] if with_table else []) + ["severity", "kind", "object", "change", "source", "target", "action taken"]
    rows = "".join(
        f'<tr class="{_e(f.severity)}">' + "".join(f"<td>{c}</td>" for c in (
            ([f"<code>{_e(f.table) or '(database)'}</code>"] if with_table else [])
            + [_sev(f.severity), _e(f.kind), f"<code>{_e(f.name)}</code>", _e(f.change), _e(f.source), _e(f.target),
               _e(f.action)])) + "</tr>"
        for f in findings)
    if not findings:
        return '<p class="muted">No finding.</p>'
    return "<table><thead><tr>" + "".join(f"<th>{_e(h)}</th>" for h in head) + f"</tr></thead><tbody>{rows}</tbody></table>"


def render_html(diff: SchemaDiff, *, title: str, run_id: str, links: Mapping[str, str] | None = None) -> str:
    """The report as one self-contained HTML page (inline CSS; no script, font, image or stylesheet from
    anywhere): verdict, summary table, errors, then one section per table and the database objects.
    Every name from data is HTML-escaped. ``links`` (label → href) go into the navigation bar; by
    default the spreadsheet and JSON beside the page and the run's page, all relative."""
    s = diff.summary()
    sev = s["severity"]
    nav = links if links is not None else {
        "Spreadsheet (XLSX)": "schema_diff.xlsx", "JSON": "schema_diff.json",
        "Run evidence": "../../run/" + quote(run_id, safe=""), "Migration status": "../../status"}
    against = (f"target database <code>{_e(diff.target_database)}</code>" if diff.target_database is not None
               else "the DDL the mapping implies (each target table has its source's shape under its new name)")
    body = [
        "<nav>" + " ".join(f'<a href="{_e(href)}">{_e(label)}</a>' for label, href in nav.items()) + "</nav>",
        f"<h1>{_e(title)}</h1>",
        f"<p>Run <code>{_e(run_id)}</code> · source database <code>{_e(diff.source_database)}</code> · compared with "
        f"{against} · <strong>{_e(PHASE_LABELS[diff.phase])}</strong></p>",
        f'<p class="verdict {"bad" if sev["error"] else "ok"}">{sev["error"]:,} error(s), {sev["warning"]:,} warning(s), '
        f'{sev["info"]:,} info · {s["tables"]:,} target table(s), {s["dropped"]:,} dropped</p>',
    ]
    if "verified_tables" in s and diff.phase == "dry_run":
        body.append(f"<p>Dry run: {s['orphans_reported'] + s['orphans_refused']:,} row(s) outside every tenant "
                    f"({s['orphans_refused']:,} refused by orphans: error), {s['orphans_copied']:,} to be copied to a "
                    f"tenant (orphans: copy_to), {s['excluded']:,} of tenants not in this run.</p>")
    elif "verified_tables" in s:
        body.append(f"<p>Verified {s['verified_tables']:,} of {s['figure_tables']:,} table(s) (from the run's verified "
                    f"units): {s['rows_source']:,} source rows = {s['rows_target']:,} in the target + "
                    f"{s['dead_letters']:,} in dead letters + {s['orphans_reported']:,} outside every tenant (reported) + "
                    + (f"{s['orphans_refused']:,} outside every tenant (refused) + " if s["orphans_refused"] else "") +
                    f"{s['excluded']:,} of tenants not in this run"
                    + (f" ({s['orphans_copied']:,} outside every tenant copied to a tenant)" if s["orphans_copied"] else "")
                    + f"; {s['tables_mismatched']:,} table(s) not green.</p>")
    elif diff.copied:
        body.append('<p class="muted">No verified figures: no unit of this run reached verification.</p>')
    body.append("<h2>Summary</h2>")
    rows = []
    for i, t in enumerate(diff.tables):
        rows.append([f'<a href="#t{i}"><code>{_e(t.table)}</code></a>' if t.action != "drop" else
                     f'<a href="#t{i}"><s><code>{_e(t.table)}</code></s></a>',
                     ", ".join(f"<code>{_e(x)}</code>" for x in t.sources), _e(t.action), _num(len(t.columns)),
                     f"<code>{_e(t.tenant_column)}</code>" if t.tenant_column else '<span class="muted">–</span>',
                     _counts(t), *_figures_cells(t.figures)])
    if diff.database_findings:
        rows.append(['<a href="#db">(views, events)</a>', "", "", "", "",
                     " ".join(f"{_sev(v)} {sum(1 for f in diff.database_findings if f.severity == v)}" for v in SEVERITIES
                              if any(f.severity == v for f in diff.database_findings)), "", "", "", ""])
    body.append(_table(["target table", "source table(s)", "action", "columns", "tenant column", "findings",
                        "rows source", "rows target", "not copied", "verified"], rows, "The source has no table."))
    kind_rows = [[_e(k), *[_num(v[x]) if v[x] else "" for x in SEVERITIES]] for k, v in s["kinds"].items()]
    body.append("<h3>Findings by kind</h3>")
    body.append(_table(["kind", *SEVERITIES], kind_rows, "No finding."))
    errors = [f for f in diff.findings if f.severity == "error"]
    if errors:
        body.append(f"<h2>Errors ({len(errors):,}): fix before the cutover</h2>" if diff.copied
                    else f"<h2>Errors ({len(errors):,}): fix before the copy</h2>")
        body.append(_findings_table(errors, with_table=True))
    for i, t in enumerate(diff.tables):
        lines = ", ".join(str(x) for x in t.mapping_lines)
        body.append(f'<section id="t{i}"><h2><code>{_e(t.table)}</code> · {_e(t.action)}</h2>')
        body.append(f"<p>from {', '.join(f'<code>{_e(x)}</code>' for x in t.sources)}"
                    + (f" · tenant column <code>{_e(t.tenant_column)}</code>" if t.tenant_column else "")
                    + (f" · primary key ({', '.join(f'<code>{_e(c)}</code>' for c in t.primary_key)})" if t.primary_key else
                       " · <strong>no primary key</strong>")
                    + (f" · mapping line {_e(lines)}" if lines else "") + "</p>")
        if t.figures:
            per = t.figures.get("per_tenant") or {}
            body.append(_table(["tenant", "rows source", "rows target", "not copied", "verified"],
                               [["all", *_figures_cells(t.figures)]]
                               + [[_e(k), *_figures_cells(v)] for k, v in sorted(per.items(), key=lambda kv: str(kv[0]))],
                               ""))
        body.append(_findings_table(t.findings))
        body.append(f"<details><summary>{len(t.columns):,} column(s)</summary><p>"
                    + ", ".join(f"<code>{_e(c)}</code>" for c in t.columns) + "</p></details></section>")
    if diff.database_findings:
        body.append('<section id="db"><h2>Views, events and other database objects</h2>')
        body.append(_findings_table(diff.database_findings) + "</section>")
    return ('<!doctype html><html lang="en"><head><meta charset="utf-8"><link rel="icon" href="data:,">'
            f'<meta name="viewport" content="width=device-width"><title>{_e(title)}</title>'
            f"<style>{PAGE_CSS}{REPORT_CSS}</style></head><body>" + "\n".join(body) + "</body></html>")


# --- XLSX -----------------------------------------------------------------------------------------

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _put(ws: Any, row: int, col: int, value: Any) -> Any:
    """Write one cell; text is always text: a value starting with ``= + - @`` (or a tab / CR) is stored
    as a string with Excel's quote prefix, never as a formula; characters a workbook cannot hold are
    shown escaped."""
    from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

    cell = ws.cell(row=row, column=col)
    if isinstance(value, str):
        text = ILLEGAL_CHARACTERS_RE.sub(lambda m: repr(m.group(0))[1:-1], value)
        cell.value = text
        cell.data_type = "s"
        if text.startswith(_FORMULA_START):
            cell.quotePrefix = True
    else:
        cell.value = value
    return cell


def _sheet(wb: Any, title: str, header: list[str], rows: list[list[Any]], *, first: bool = False) -> Any:
    from openpyxl.styles import Font
    from openpyxl.utils import get_column_letter

    ws = wb.active if first else wb.create_sheet()
    ws.title = title
    for j, h in enumerate(header, 1):
        _put(ws, 1, j, h).font = Font(bold=True)
    for i, row in enumerate(rows, 2):
        for j, v in enumerate(row, 1):
            _put(ws, i, j, v)
    ws.freeze_panes = "A2"
    ws.auto_filter.ref = f"A1:{get_column_letter(len(header))}{max(1, len(rows) + 1)}"
    for j, h in enumerate(header, 1):
        width = max([len(str(h)) + 3] + [len(str(r[j - 1])) for r in rows[:2000] if r[j - 1] is not None])
        ws.column_dimensions[get_column_letter(j)].width = min(max(width + 2, 8), 70)
    return ws


def _yes_no(value: Any) -> str:
    return "" if value is None else ("yes" if value else "NO")


def write_xlsx(diff: SchemaDiff, path: str | Path, *, title: str = "Schema diff", run_id: str = "") -> Path:
    """Write the report as a workbook at ``path`` (parent folders created) and return the path: sheet
    *Summary* (metric, value), *Findings* (one row per finding: table, object kind, object name,
    change, source, target, severity, action taken) and *Tables* (source table(s), target table,
    action, column count, tenant column, errors, warnings, and rows / checksums when figures are
    attached). Header rows bold, frozen, with an autofilter. Text from data is never a formula."""
    from openpyxl import Workbook
    from openpyxl.styles import PatternFill

    s = diff.summary()
    summary: list[list[Any]] = [["title", title], ["run id", run_id], ["source database", diff.source_database],
                                ["compared with", "target database " + diff.target_database if diff.target_database
                                 else "the DDL the mapping implies"], ["run", PHASE_LABELS[diff.phase]],
                                ["target tables", s["tables"]], ["dropped tables", s["dropped"]],
                                ["findings", s["findings"]]]
    summary += [[f"findings: {sev}", s["severity"][sev]] for sev in SEVERITIES]
    summary += [[f"tables: {a}", n] for a, n in s["actions"].items()]
    summary += [[f"{k}: {sev}", n] for k, by in s["kinds"].items() for sev, n in by.items() if n]
    for key in ("verified_tables", "rows_source", "rows_target", "dead_letters", "orphans_reported", "orphans_copied",
                "excluded", "tables_mismatched"):
        if key in s:
            summary.append([key.replace("_", " "), s[key]])
    wb = Workbook()
    _sheet(wb, "Summary", ["metric", "value"], summary, first=True)
    findings = _sheet(wb, "Findings", ["table", "object kind", "object name", "change", "source", "target", "severity",
                                       "action taken"],
                      [[f.table or "(database)", f.kind, f.name, f.change, f.source, f.target, f.severity, f.action]
                       for f in diff.findings])
    fills = {"error": PatternFill("solid", fgColor="FFD0D0"), "warning": PatternFill("solid", fgColor="FFF3C4")}
    for row in findings.iter_rows(min_row=2, min_col=7, max_col=7):
        for cell in row:
            if cell.value in fills:
                cell.fill = fills[cell.value]
    _sheet(wb, "Tables", ["source table(s)", "target table", "action", "column count", "tenant column", "errors",
                          "warnings", "rows source", "rows target", "checksums match", "dead letters",
                          "outside tenants (reported)", "outside tenants (copied)", "tenants not in run", "verified"],
           [[", ".join(t.sources), "" if t.action == "drop" else t.table, t.action, len(t.columns), t.tenant_column or "",
             t.count("error"), t.count("warning"), t.figures.get("rows_source"), t.figures.get("rows_target"),
             _yes_no(t.figures.get("checksums_match")), t.figures.get("dead_letters"), t.figures.get("orphans_reported"),
             t.figures.get("orphans_copied"), t.figures.get("excluded"),
             _yes_no(None if not t.figures else not _mismatch(t.figures))] for t in diff.tables])
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    wb.save(tmp)
    os.replace(tmp, out)
    return out


# --- files and URLs -------------------------------------------------------------------------------


def save_report(diff: SchemaDiff, run_id: str, *, root: Path | None = None, title: str | None = None,
                prefix: str = URL_PREFIX) -> dict[str, str]:
    """Write ``schema_diff.html``, ``schema_diff.xlsx`` and ``schema_diff.json`` into
    :func:`report_dir` (replacing a previous version, each file atomically) and return
    ``{"dir", "html", "xlsx", "json"}`` (file paths) and ``{"html_url", "xlsx_url", "json_url"}``
    (where the UI plugin serves them, under ``prefix``). Raises ``ValueError`` for an empty run id,
    ``OSError`` when the folder cannot be written."""
    title = title or f"Schema diff — {diff.source_database}"
    folder = report_dir(run_id, root=root)
    folder.mkdir(parents=True, exist_ok=True)
    html_path, xlsx_path, json_path = (folder / n for n in REPORT_FILES)
    write_text(json_path, json.dumps({"run_id": run_id, "title": title, **diff.to_dict()}, indent=1, default=str))
    write_xlsx(diff, xlsx_path, title=title, run_id=run_id)
    write_text(html_path, render_html(diff, title=title, run_id=run_id))
    out = {"dir": str(folder), "html": str(html_path), "xlsx": str(xlsx_path), "json": str(json_path)}
    out.update({f"{n.rsplit('.', 1)[1]}_url": report_url(prefix, run_id, n) for n in REPORT_FILES})
    return out


def load_report(run_id: str, *, root: Path | None = None) -> SchemaDiff:
    """The diff saved for ``run_id`` (to attach figures after verify and save again); raises
    ``FileNotFoundError`` when none was saved, ``ValueError`` when the file is not a schema diff."""
    data = json.loads((report_dir(run_id, root=root) / "schema_diff.json").read_text(encoding="utf-8"))
    return SchemaDiff.from_dict(data)


def evidence_entry(paths: Mapping[str, str], diff: SchemaDiff) -> dict[str, Any]:
    """What a run keeps in ``evidence["schema_diff"]``: ``{"html": url, "xlsx": url, "json": url,
    "summary": diff.summary()}`` (URLs from :func:`save_report`'s result)."""
    return {"html": paths["html_url"], "xlsx": paths["xlsx_url"], "json": paths.get("json_url", ""),
            "summary": diff.summary()}


def list_reports(root: Path | None = None) -> list[dict[str, Any]]:
    """Every saved report under ``root`` (default :func:`reports_root`): ``run_id``, ``title`` and
    ``summary`` read from its JSON, sorted by run id; unreadable folders are skipped."""
    base = root if root is not None else reports_root()
    out = []
    for f in sorted(base.glob("*/schema_diff.json")) if base.is_dir() else []:
        try:
            data = json.loads(f.read_text(encoding="utf-8"))
            out.append({"run_id": str(data["run_id"]), "title": str(data.get("title") or ""),
                        "summary": dict(data.get("summary") or {})})
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return sorted(out, key=lambda r: r["run_id"])


__all__ = [
    "ACTIONS", "KINDS", "PHASES", "PHASE_LABELS", "REPORT_FILES", "SET_ASIDE", "SEVERITIES", "XLSX_MEDIA_TYPE", "Finding", "SchemaDiff",
    "TableDiff", "build_diff", "evidence_entry", "list_reports", "load_report", "normalise_definition",
    "normalise_default", "normalise_type", "references", "render_html", "report_dir", "reports_root", "safe_run_dir",
    "save_report", "unaccounted", "write_xlsx",
]
