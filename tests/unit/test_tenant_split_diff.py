"""The tenant split's schema diff report, from hand-built schemas: actions, column / index / FK / trigger /
view findings, merges, MySQL version noise, figures, HTML escaping, the workbook's formula guard, files
and the UI routes that serve them."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient

from cutover.mysql_schema import (
    Column,
    DatabaseSchema,
    ForeignKey,
    Index,
    Routine,
    TableSchema,
    Trigger,
)
from cutover.samples.hostile import HOSTILE_NAMES
from cutover.tenant_split import diff_report as dr
from cutover.tenant_split.mapping import TableRule, parse_mapping
from cutover.ui.docs_offline import external_references
from cutover.ui.pages import render_run_html

EVIL = "<script>alert(1)</script>"
FORMULAS = ("=HYPERLINK(\"http://x\",\"y\")", "+1+2", "-3", "@SUM(A1)", "=1+1")


def col(name: str, ctype: str = "int(11)", *, null: bool = False, default: str | None = None, extra: str = "",
        collation: str | None = None) -> Column:
    return Column(name, ctype, ctype.split("(")[0].split()[0], null, default, extra, None, collation)


def table(name: str, *cols: Column, pk: tuple[str, ...] = ("id",), fks: tuple[ForeignKey, ...] = (),
          triggers: tuple[Trigger, ...] = (), indexes: tuple[Index, ...] = (), auto_increment: int | None = None,
          rows: int = 0) -> TableSchema:
    idx = [Index("PRIMARY", pk, "primary")] if pk else []
    return TableSchema(name, list(cols), idx + list(indexes), list(fks), list(triggers),
                       f"CREATE TABLE `{name}` (...) ENGINE=InnoDB", auto_increment, rows)


def trigger(name: str, on: str, body: str, db: str = "src") -> Trigger:
    return Trigger(name, on, "BEFORE", "INSERT", body,
                   f"CREATE DEFINER=`root`@`localhost` TRIGGER `{name}` BEFORE INSERT ON `{db}`.`{on}` FOR EACH ROW {body}")


def shop() -> DatabaseSchema:
    """A source with every kind of rule: copy, rename, drop, shared, merge (with a mismatching shape)."""
    db = DatabaseSchema("src")
    db.tables["plans"] = table("plans", col("id"), col("name", "varchar(40)"))
    db.tables["customers"] = table(
        "customers", col("id", "bigint(20)", extra="auto_increment"), col("tenant_id"), col("email", "varchar(190)"),
        col("plan_id"), indexes=(Index("customers_email", ("tenant_id", "email"), "unique"),),
        fks=(ForeignKey("customers_plan_fk", ("plan_id",), "plans", ("id",)),),
        triggers=(trigger("customers_email_lower", "customers", "SET NEW.email = LOWER(NEW.email)"),),
        auto_increment=4711)
    db.tables["customer_notes"] = table("customer_notes", col("id", "bigint(20)"), col("tenant_id"),
                                        col("customer_id", "bigint(20)"), col("body", "text"))
    db.tables["note_links"] = table("note_links", col("id"), col("tenant_id"), col("note_id", "bigint(20)"),
                                    fks=(ForeignKey("note_links_note_fk", ("note_id",), "customer_notes", ("id",)),))
    db.tables["legacy_sessions"] = table("legacy_sessions", col("id"), col("tenant_id"), col("token", "char(32)"),
                                         rows=1234, triggers=(trigger("legacy_touch", "legacy_sessions", "SET NEW.token = 'x'"),))
    db.tables["audit"] = table("audit", col("id"), col("tenant_id"), col("session_id"),
                               fks=(ForeignKey("audit_session_fk", ("session_id",), "legacy_sessions", ("id",)),))
    db.tables["invoices"] = table("invoices", col("id", "bigint(20)"), col("tenant_id"), col("amount", "decimal(12,2)"),
                                  col("paid", "tinyint(1)", default="0"))
    db.tables["invoices_2019"] = table("invoices_2019", col("id", "bigint(20)"), col("tenant_id"),
                                       col("amount", "decimal(10,2)"), col("legacy_ref", "varchar(20)", null=True))
    db.views.append(Routine("notes_view", "view", "CREATE ALGORITHM=UNDEFINED DEFINER=`root`@`%` SQL SECURITY DEFINER "
                            "VIEW `src`.`notes_view` AS select `src`.`customer_notes`.`id` AS `id` from `src`.`customer_notes`"))
    db.views.append(Routine("session_view", "view", "CREATE VIEW `session_view` AS select `id` from `legacy_sessions`"))
    db.events.append(Routine("purge_plans", "event", "CREATE DEFINER=`root`@`%` EVENT `purge_plans` ON SCHEDULE EVERY 1 DAY "
                             "DO DELETE FROM `plans` WHERE 0", "ENABLED"))
    return db


MAPPING = """
tables:
  plans: {action: shared}
  customers: {}
  customer_notes: {rename: notes}
  note_links: {}
  legacy_sessions: {action: drop}
  audit: {}
  invoices: {}
  invoices_2019: {merge_into: invoices}
"""


def rules_for(db: DatabaseSchema, text: str = MAPPING) -> dict[str, TableRule]:
    return parse_mapping(text, path="mapping.yaml").resolve(db.tables)


def by(diff: dr.SchemaDiff, table: str, **match: str) -> list[dr.Finding]:
    return [f for f in diff.table(table).findings if all(getattr(f, k) == v for k, v in match.items())]


def test_actions_per_target_table_and_dropped_table() -> None:
    db = shop()
    diff = dr.build_diff(db, rules_for(db))
    assert diff.compared_with == "mapping" and diff.target_database is None
    actions = {t.table: (t.action, t.sources) for t in diff.tables}
    assert actions["notes"] == ("rename", ["customer_notes"])
    assert actions["customers"] == ("copy", ["customers"])
    assert actions["plans"] == ("shared copy", ["plans"])
    assert actions["invoices"] == ("merge into", ["invoices", "invoices_2019"])
    assert actions["legacy_sessions"] == ("drop", ["legacy_sessions"])
    assert [t.table for t in diff.tables][-1] == "legacy_sessions"  # drops after the target tables
    assert "customer_notes" not in actions and "invoices_2019" not in actions
    drop = by(diff, "legacy_sessions", kind="table")[0]
    assert drop.change == "dropped" and drop.severity == "warning" and "1,234" in drop.source
    assert by(diff, "legacy_sessions", kind="trigger")[0].change == "dropped with its table"
    assert diff.table("plans").tenant_column is None and diff.table("notes").tenant_column == "tenant_id"
    ai = by(diff, "customers", name="AUTO_INCREMENT")[0]
    assert ai.change == "table option stripped" and ai.source == "AUTO_INCREMENT=4711"
    # the dry run compares with the implied DDL: no column, index or type change anywhere
    assert not [f for f in diff.findings if f.kind in ("column", "index")]


def test_foreign_keys_kept_repointed_and_dangling() -> None:
    db = shop()
    diff = dr.build_diff(db, rules_for(db))
    dangling = by(diff, "audit", kind="foreign_key")[0]
    assert (dangling.name, dangling.change, dangling.severity) == ("audit_session_fk", "references dropped table", "error")
    assert "legacy_sessions" in dangling.action
    moved = by(diff, "note_links", kind="foreign_key")[0]
    assert (moved.change, moved.severity) == ("re-pointed", "info")
    assert "customer_notes" in moved.source and "notes (id)" in moved.target and "`notes`" in moved.action
    kept = by(diff, "customers", kind="foreign_key")[0]
    assert kept.change == "kept" and "shared" in kept.action


def test_merge_shape_mismatches_are_errors() -> None:
    db = shop()
    diff = dr.build_diff(db, rules_for(db))
    merge = {(f.name, f.change): f for f in by(diff, "invoices", kind="merge")}
    assert merge[("amount", "column type differs")].severity == "error"
    assert merge[("paid", "column missing in merged table")].severity == "error"
    assert merge[("legacy_ref", "column only in merged table")].severity == "error"
    assert merge[("PRIMARY", "primary keys may collide")].severity == "warning"
    assert by(diff, "invoices", kind="table", change="merged")[0].name == "invoices_2019"
    equal = DatabaseSchema("src", {"a": table("a", col("id"), col("tenant_id")), "b": table("b", col("id"), col("tenant_id"),
                                                                                               pk=())})
    clean = dr.build_diff(equal, rules_for(equal, "tables:\n  a: {}\n  b: {merge_into: a}\n"))
    assert [f.severity for f in clean.table("a").findings if f.kind == "merge"] == []


def test_tenant_column_missing_is_an_error() -> None:
    db = DatabaseSchema("src", {"t": table("t", col("id"), col("shop_id"))})
    diff = dr.build_diff(db, rules_for(db, "tables:\n  t: {}\n"))
    f = by(diff, "t", change="tenant column missing")[0]
    assert f.severity == "error" and f.name == "tenant_id" and "line 2" in f.action


def test_triggers_views_events_set_aside_and_references_flagged() -> None:
    db = shop()
    diff = dr.build_diff(db, rules_for(db))
    trg = by(diff, "customers", kind="trigger")[0]
    assert (trg.name, trg.change, trg.action) == ("customers_email_lower", "set aside", dr.SET_ASIDE)
    views = {(f.name, f.change): f for f in diff.database_findings}
    assert views[("notes_view", "references renamed table")].severity == "warning"
    assert views[("notes_view", "references renamed table")].target == "notes"
    assert views[("session_view", "references dropped table")].severity == "error"
    assert views[("purge_plans", "set aside")].kind == "event" and views[("purge_plans", "set aside")].action == dr.SET_ASIDE
    assert views[("notes_view", "set aside")].action == dr.SET_ASIDE


def target_of(db: DatabaseSchema, rules: dict[str, TableRule], name: str = "tenant_acme") -> DatabaseSchema:
    """A tenant database as the split would create it: mapped tables under their new names, int display widths
    gone (MySQL 8), FKs re-pointed, triggers and views restored with the target's DEFINER and qualifiers."""
    out = DatabaseSchema(name)
    for src, rule in rules.items():
        if rule.action == "drop" or rule.merged:
            continue
        t = db.tables[src]
        cols = [Column(c.name, c.column_type.replace("(11)", "").replace("(20)", ""), c.data_type, c.nullable,
                       c.default, c.extra + (" DEFAULT_GENERATED" if c.default == "current_timestamp()" else ""))
                for c in t.columns]
        fks = [ForeignKey(f.name, f.columns, rules[f.ref_table].target, f.ref_columns, f.on_delete, f.on_update)
               for f in t.foreign_keys if rules[f.ref_table].action != "drop"]
        trgs = [Trigger(x.name, rule.target, x.timing, x.event, x.statement,
                        x.definition.replace("`root`@`localhost`", "`admin`@`%`").replace("`src`.", f"`{name}`.")
                        .replace(f"`{src}`", f"`{rule.target}`")) for x in t.triggers]
        out.tables[rule.target] = TableSchema(rule.target, cols, list(t.indexes), fks, trgs)
    out.views = [Routine(v.name, "view", v.definition.replace("`src`.", f"`{name}`.").replace("customer_notes", "notes"))
                 for v in db.views if "legacy" not in v.definition]
    out.events = list(db.events)
    return out


def test_against_a_target_display_widths_are_not_changes_real_changes_are() -> None:
    db = shop()
    rules = rules_for(db)
    target = target_of(db, rules)
    diff = dr.build_diff(db, rules, target)
    assert diff.compared_with == "target" and diff.target_database == "tenant_acme"
    assert not [f for f in diff.findings if f.kind in ("column", "index")]  # int(11) → int is no change
    trg = by(diff, "customers", kind="trigger")[0]
    assert (trg.change, trg.severity, trg.action) == ("restored, equal", "info", dr.SET_ASIDE)
    restored = {(f.name, f.change) for f in diff.database_findings}
    assert ("notes_view", "restored, equal") in restored and ("purge_plans", "restored, equal") in restored
    assert ("session_view", "missing in target") in restored
    assert by(diff, "audit", kind="foreign_key")[0].severity == "warning"  # not created: said, not an error
    assert by(diff, "note_links", kind="foreign_key")[0].change == "re-pointed"

    t = target.tables["customers"]
    t.columns[1] = col("tenant_id", "bigint")  # int(11) → bigint: a real change (widened)
    t.columns[2] = col("email", "varchar(100)")  # narrowed
    t.columns[3] = col("plan_id", "int", null=True)  # NOT NULL → NULL
    t.columns.append(col("added_req", "int"))  # NOT NULL without a default: the copy would fail
    t.columns.append(col("added_opt", "int", null=True))
    t.indexes = [i for i in t.indexes if i.kind != "unique"] + [Index("customers_new", ("email",), "index")]
    target.tables["notes"].columns[3] = col("body", "mediumtext")
    target.tables["invoices"].columns[3] = col("paid", "tinyint(1)", default="1")
    target.tables["customers"].triggers[0] = Trigger("customers_email_lower", "customers", "BEFORE", "INSERT", "SET NEW.email = NEW.email",
                                                     "CREATE TRIGGER customers_email_lower BEFORE INSERT ON customers FOR EACH ROW "
                                                     "SET NEW.email = NEW.email")
    diff = dr.build_diff(db, rules, target)
    got = {(f.name, f.change): f.severity for f in diff.table("customers").findings}
    assert got[("tenant_id", "type widened")] == "warning"
    assert got[("email", "type narrowed: values may not fit")] == "error"
    assert got[("plan_id", "nullability changed")] == "warning"
    assert got[("added_req", "added")] == "error" and got[("added_opt", "added")] == "info"
    assert got[("customers_email", "removed")] == "error" and got[("customers_new", "added")] == "info"
    assert got[("customers_email_lower", "definition differs")] == "error"
    assert by(diff, "notes", name="body")[0].change == "type widened"
    assert by(diff, "invoices", kind="column", name="paid")[0].change == "default changed"
    del target.tables["note_links"]
    assert by(dr.build_diff(db, rules, target), "note_links", change="missing in target")[0].severity == "error"


@pytest.mark.parametrize(("old", "new", "severity"), [
    ("int(11)", "int", None), ("int(10) unsigned", "int unsigned", None), ("tinyint(1)", "tinyint", None),
    ("INTEGER", "int", None), ("int", "bigint", "warning"), ("bigint(20)", "int(11)", "error"),
    ("int unsigned", "int", "error"), ("int unsigned", "bigint", "warning"), ("varchar(10)", "varchar(20)", "warning"),
    ("decimal(10,2)", "decimal(12,2)", "warning"), ("decimal(12,4)", "decimal(12,2)", "error"),
    ("text", "mediumtext", "warning"), ("longtext", "text", "error"), ("datetime", "date", "warning"),
])
def test_type_normalisation_and_severity(old: str, new: str, severity: str | None) -> None:
    a = DatabaseSchema("s", {"t": table("t", col("id"), col("tenant_id"), col("v", old))})
    b = DatabaseSchema("d", {"t": table("t", col("id"), col("tenant_id"), col("v", new))})
    found = [f for f in dr.build_diff(a, rules_for(a, "tables:\n  t: {}\n"), b).findings if f.kind == "column"]
    assert [f.severity for f in found] == ([severity] if severity else [])


def test_defaults_extras_and_collations_across_versions() -> None:
    assert dr.normalise_default("'0'") == dr.normalise_default("0") == "0"
    assert dr.normalise_default("NULL") is None and dr.normalise_default(None) is None
    assert dr.normalise_default("current_timestamp()") == dr.normalise_default("CURRENT_TIMESTAMP") == "current_timestamp"
    assert dr.normalise_extra("DEFAULT_GENERATED on update CURRENT_TIMESTAMP") == dr.normalise_extra(
        "on update current_timestamp()")
    a = DatabaseSchema("s", {"t": table("t", col("id"), col("tenant_id"), col("v", "varchar(5)", collation="utf8_general_ci"),
                                        col("at", "timestamp", default="current_timestamp()",
                                            extra="on update current_timestamp()"))})
    b = DatabaseSchema("d", {"t": table("t", col("id"), col("tenant_id"), col("v", "varchar(5)", collation="utf8mb3_general_ci"),
                                        col("at", "timestamp", default="CURRENT_TIMESTAMP",
                                            extra="DEFAULT_GENERATED on update CURRENT_TIMESTAMP"))})
    rules = rules_for(a, "tables:\n  t: {}\n")
    assert [f for f in dr.build_diff(a, rules, b).findings if f.kind == "column"] == []
    b.tables["t"].columns[2] = col("v", "varchar(5)", collation="utf8mb4_0900_ai_ci")
    b.tables["t"].columns[0] = col("id")  # auto_increment kept? the source had none: no change
    f = [f for f in dr.build_diff(a, rules, b).findings if f.kind == "column"]
    assert [(x.change, x.severity) for x in f] == [("collation changed", "warning")]


def test_definition_normalisation() -> None:
    src = "CREATE DEFINER=`root`@`localhost` TRIGGER `t1` BEFORE INSERT ON `src`.`customer_notes` FOR EACH ROW SET NEW.a = 1;"
    tgt = "CREATE DEFINER=`app`@`%` TRIGGER `t1`  BEFORE INSERT ON `tenant_1`.`notes`\nFOR EACH ROW SET NEW.a = 1"
    assert dr.normalise_definition(src, database="src", renames={"customer_notes": "notes"}) == \
        dr.normalise_definition(tgt, database="tenant_1")
    assert dr.references("select * from `orders` o", "orders") and dr.references("select * from orders", "orders")
    assert not dr.references("select orders_total from x", "orders")


def test_summary_json_and_figures() -> None:
    db = shop()
    diff = dr.build_diff(db, rules_for(db))
    s = diff.summary()
    assert s["tables"] == 6 and s["dropped"] == 1 and s["ok"] is False
    assert s["actions"] == {"copy": 3, "rename": 1, "shared copy": 1, "merge into": 1, "drop": 1}
    assert s["severity"]["error"] == sum(1 for f in diff.findings if f.severity == "error") >= 4
    assert s["kinds"]["foreign_key"]["error"] == 1 and s["findings"] == len(diff.findings)
    data = json.loads(json.dumps(diff.to_dict()))
    again = dr.SchemaDiff.from_dict(data)
    assert again.to_dict() == diff.to_dict()
    with pytest.raises(ValueError):
        dr.SchemaDiff.from_dict({"tables": [{}]})

    fig = diff.with_figures({
        "notes": {"rows_source": 10, "rows_target": 10, "checksums_match": True,
                  "per_tenant": {"acme": {"rows_source": 6, "rows_target": 6, "checksums_match": True}}},
        "customers": {"rows_source": 10, "rows_target": 9, "checksums_match": False,
                      "per_tenant": {"acme": {"rows_source": 5, "rows_target": 4}}},
    })
    assert diff.table("notes").figures == {}  # the original is untouched
    assert by(fig, "notes", kind="rows") == []
    rows = by(fig, "customers", kind="rows")
    assert [(f.name, f.severity) for f in rows] == [("all tenants", "error"), ("tenant acme", "error")]
    s = fig.summary()
    assert (s["verified_tables"], s["rows_source"], s["rows_target"], s["tables_mismatched"]) == (2, 20, 19, 1)
    fixed = fig.with_figures({"customers": {"rows_source": 10, "rows_target": 10, "checksums_match": True}})
    assert by(fixed, "customers", kind="rows") == []  # figures given again replace the earlier ones
    assert dr.SchemaDiff.from_dict(json.loads(json.dumps(fig.to_dict()))).table("customers").figures["rows_target"] == 9
    with pytest.raises(KeyError, match="legacy_sessions"):
        diff.with_figures({"legacy_sessions": {"rows_source": 1}})


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.text: list[str] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def hostile_db() -> tuple[DatabaseSchema, dict[str, TableRule]]:
    """Every hostile name (and markup, and formula-like text) as a table with a column of the same name."""
    names = (*HOSTILE_NAMES, EVIL, *FORMULAS)
    db = DatabaseSchema(f"src {EVIL}")
    for n in names:
        db.tables[n] = table(n, col("id"), col("tenant_id"), col(n, "varchar(10)"),
                             triggers=(trigger(f"trg {n}", n, "SET NEW.id = 1"),))
    rules = {n: TableRule(n, "copy", n, "tenant_id", 0) for n in names}
    rules[EVIL] = TableRule(EVIL, "copy", f"{EVIL} new", "tenant_id", 3)
    rules["=1+1"] = TableRule("=1+1", "drop", "=1+1", None, 4)
    return db, rules


def test_html_is_offline_and_escapes_every_name() -> None:
    db, rules = hostile_db()
    diff = dr.build_diff(db, rules)
    page = dr.render_html(diff, title=f"Split {EVIL}", run_id=f"run {EVIL}")
    assert page.startswith("<!doctype html>") and page.rstrip().endswith("</html>")
    assert "<script" not in page.lower() and external_references(page) == []
    assert "@import" not in page and "url(" not in page and "<link rel=\"stylesheet\"" not in page
    parser = _Text()
    parser.feed(page)
    text = "".join(parser.text)
    assert "script" not in parser.tags
    for n in (*HOSTILE_NAMES, EVIL, f"{EVIL} new"):
        assert n in text, n
    assert text.index("Summary") < text.index(f"{EVIL} new · rename")  # summary first, then the sections
    assert "fix before the copy" not in text  # nothing here is an error


def test_xlsx_sheets_and_formula_injection_guard(tmp_path: Path) -> None:
    from openpyxl import load_workbook

    db, rules = hostile_db()
    diff = dr.build_diff(db, rules).with_figures({"select": {"rows_source": 3, "rows_target": 3, "checksums_match": True}})
    path = dr.write_xlsx(diff, tmp_path / "deep" / "r.xlsx", title="=cmd|' /C calc'!A0", run_id="-run")
    assert path.is_file()
    wb = load_workbook(path)
    assert wb.sheetnames == ["Summary", "Findings", "Tables"]
    for ws in wb.worksheets:
        assert ws.freeze_panes == "A2" and ws.auto_filter.ref and ws["A1"].font.b
        for row in ws.iter_rows():
            for cell in row:
                assert cell.data_type != "f", (ws.title, cell.coordinate, cell.value)
    summary = {r[0]: r[1] for r in wb["Summary"].iter_rows(min_row=2, values_only=True)}
    assert summary["title"] == "=cmd|' /C calc'!A0" and summary["run id"] == "-run"
    findings = wb["Findings"]
    assert [c.value for c in findings[1]] == ["table", "object kind", "object name", "change", "source", "target",
                                              "severity", "action taken"]
    assert findings.max_row - 1 == len(diff.findings)
    names = {r[2] for r in findings.iter_rows(min_row=2, values_only=True)}
    for n in (*HOSTILE_NAMES, *FORMULAS, EVIL):
        assert n in names or f"trg {n}" in names
    cells = [c for row in findings.iter_rows(min_row=2) for c in row if isinstance(c.value, str) and c.value[:1] in "=+-@"]
    assert cells and all(c.data_type == "s" and c.quotePrefix for c in cells)
    tables = {r[1] or r[0]: r for r in wb["Tables"].iter_rows(min_row=2, values_only=True)}
    assert tables["select"][7:10] == (3, 3, "yes") and tables["=1+1"][2] == "drop"
    assert wb["Findings"].column_dimensions["H"].width > wb["Findings"].column_dimensions["B"].width


def test_save_report_files_evidence_and_routes(tmp_path: Path) -> None:
    from cutover.ui.app import create_app

    db = shop()
    diff = dr.build_diff(db, rules_for(db))
    run_id = "manual__2024-01-01T00:00:00+00:00"
    root = tmp_path / "reports"
    paths = dr.save_report(diff, run_id, root=root, title=f"Split {EVIL}")
    folder = Path(paths["dir"])
    assert folder.parent == root and folder.name == dr.safe_run_dir(run_id) and ":" not in folder.name
    assert dr.safe_run_dir("a:b") != dr.safe_run_dir("a_b") and dr.safe_run_dir("../x").isidentifier()
    assert sorted(p.name for p in folder.iterdir()) == ["schema_diff.html", "schema_diff.json", "schema_diff.xlsx"]
    assert paths["html_url"] == f"/cutover/reports/{quote(run_id, safe='')}/schema_diff.html"
    assert dr.load_report(run_id, root=root).to_dict() == diff.to_dict()
    ev = dr.evidence_entry(paths, diff)
    assert set(ev) == {"html", "xlsx", "json", "summary"} and ev["summary"] == diff.summary()
    json.dumps(ev)
    assert dr.list_reports(root) == [{"run_id": run_id, "title": f"Split {EVIL}", "summary": diff.summary()}]
    with pytest.raises(ValueError):
        dr.save_report(diff, "", root=root)

    site = tmp_path / "gx" / "uncommitted" / "data_docs" / "local_site"
    client = TestClient(create_app(docs_dir=site, reports_dir=root))
    r = client.get(f"/reports/{quote(run_id, safe='')}/schema_diff.html")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html") and "customer_notes" in r.text
    r = client.get(f"/reports/{quote(run_id, safe='')}/schema_diff.xlsx")
    assert r.status_code == 200 and r.headers["content-type"] == dr.XLSX_MEDIA_TYPE
    assert "attachment" in r.headers["content-disposition"] and ".xlsx" in r.headers["content-disposition"]
    assert r.content[:2] == b"PK"
    assert client.get(f"/reports/{quote(run_id, safe='')}/schema_diff.json").json()["run_id"] == run_id
    assert client.get(f"/reports/{quote(run_id, safe='')}/other.txt").status_code == 404
    assert client.get("/reports/..%2F..%2Fetc/schema_diff.html").status_code == 404
    missing = client.get(f"/reports/{quote(EVIL, safe='')}/schema_diff.html")
    assert missing.status_code == 404 and EVIL not in missing.text
    site.mkdir(parents=True)
    (site / "index.html").write_text("<html></html>")
    index = client.get("/docs/index.html").text
    assert "Schema diff reports (1)" in index and quote(run_id, safe="") in index and EVIL not in index
    # beside the docs by default: the same folder save_report picks from the docs dir
    assert dr.reports_root(site) == tmp_path / "gx" / "uncommitted" / "data_docs" / "reports"

    page = render_run_html({"pipeline": "tenant_split", "kind": "build", "state": "success",
                            "evidence": {"schema_diff": ev}}, run_id=run_id, prefix="/cutover")
    assert f'href="/cutover/reports/{quote(run_id, safe="")}/schema_diff.html"' in page
    assert "schema_diff.xlsx" in page and "Schema diff report" in page
    plain = render_run_html({"pipeline": "x", "evidence": {}}, run_id="r", prefix="/cutover")
    assert "Schema diff report" not in plain


# --- the report says what the run says (issue #19) ----------------------------------------------------


def unit_row(tenant: str, table: str, *, state: str = "verified", read: int, written: int, source: int, target: int,
             dead: int = 0, checksum: tuple[str, str] = ("7", "7"), error: str | None = None) -> dict[str, object]:
    """A ``cutover.units`` row as the life cycle leaves it: copy counters (``rows_read`` / ``rows_written``)
    and the latest verify detail (the verified counts)."""
    from cutover.lifecycle.model import UnitKey

    return {"unit_key": str(UnitKey("src", (tenant, table))), "state": state, "rows_read": read,
            "rows_written": written, "checksum_source": checksum[0], "checksum_target": checksum[1], "error": error,
            "detail": {"verify": {"sources": {table: {"rows": source}}, "target_rows": target, "dead_letters": dead}}}


def test_report_figures_come_from_the_verified_records_not_the_copy_counters() -> None:
    """The copy read 100,051 rows, the catch-up brought 19 more, verify counted 100,070 on both sides: the
    report says 100,070 / 100,070 and no "verification failed" (before: copy counters against verified
    counts, an error for a run whose units had all verified)."""
    from cutover.tenant_split.build import report_figures

    db = shop()
    rules = rules_for(db)
    units = [unit_row("acme", "customers", read=100_051, written=100_070, source=100_070, target=100_070),
             unit_row("beta", "customers", read=5, written=5, source=5, target=5)]
    figures = report_figures(units, rules, {})
    fig = figures["customers"]
    assert (fig["rows_source"], fig["rows_target"], fig["verified"], fig["checksums_match"]) == (100_075, 100_075, True, True)
    diff = dr.build_diff(db, rules).with_phase("copied").with_figures(figures)
    assert by(diff, "customers", kind="rows") == []
    s = diff.summary()
    assert (s["rows_source"], s["rows_target"], s["tables_mismatched"], s["phase"]) == (100_075, 100_075, 0, "copied")


def test_a_table_with_dead_letters_or_an_unverified_unit_is_never_green() -> None:
    from cutover.tenant_split.build import report_figures

    db = shop()
    rules = rules_for(db)
    units = [unit_row("acme", "customers", read=10, written=9, source=10, target=9, dead=1, checksum=("7", "8")),
             unit_row("acme", "audit", read=4, written=4, source=4, target=4),
             unit_row("beta", "audit", state="failed", read=4, written=3, source=4, target=3, checksum=("7", "8"),
                      error="ts: 3 rows, the source has 4")]
    figures = report_figures(units, rules, {}, {})
    diff = dr.build_diff(db, rules).with_phase("copied").with_figures(figures)
    dead = by(diff, "customers", kind="rows")
    assert [(f.change, f.severity) for f in dead] == [("rows in dead letters", "error")] * 2  # all tenants, acme
    audit = {(f.name, f.change) for f in by(diff, "audit", kind="rows")}
    assert ("all tenants", "not verified") in audit and ("tenant beta", "row count differs") in audit
    s = diff.summary()
    assert s["tables_mismatched"] == 2 and s["dead_letters"] == 1 and s["verified_tables"] == 1
    page = dr.render_html(diff, title="t", run_id="r")
    assert "DEAD LETTERS" in page and "NOT VERIFIED" in page
    assert page.count('class="state ok"') == 1  # only acme's audit, the one unit that is whole
    # a unit the run's close fails (a broken foreign key) is not verified either
    closed = report_figures(units[1:2], rules, {}, {units[1]["unit_key"]: "foreign key broken"})  # type: ignore[dict-item]
    assert closed["audit"]["verified"] is False and closed["audit"]["per_tenant"]["acme"]["error"] == "foreign key broken"


def test_labels_follow_the_phase_of_the_run() -> None:
    db = shop()
    diff = dr.build_diff(db, rules_for(db))
    assert diff.summary()["ok"] is False  # it has errors
    dry = dr.render_html(diff.with_phase("dry_run"), title="t", run_id="r")
    assert "dry run: nothing was written" in dry and "fix before the copy" in dry
    after = dr.render_html(diff.with_phase("copied"), title="t", run_id="r")
    assert "dry run" not in after and "fix before the copy" not in after and "fix before the cutover" in after
    assert "after the copy" in after
    again = dr.SchemaDiff.from_dict(json.loads(json.dumps(diff.with_phase("copied").to_dict())))
    assert again.phase == "copied"
    with pytest.raises(ValueError, match="phase"):
        diff.with_phase("done")


def test_orphan_figures_add_up_to_the_source() -> None:
    """Rows outside every tenant, reported or refused, and rows of tenants a run left out are source rows:
    the table's ``rows_source`` counts them, the accounting holds, and refused ones are an error."""
    from cutover.tenant_split.build import report_figures
    from cutover.tenant_split.mapping import OrphanPolicy
    from cutover.tenant_split.plan import TableOrphans

    db = shop()
    rules = rules_for(db)
    units = [unit_row("acme", "customers", read=33, written=33, source=33, target=33)]
    found = {"customers": TableOrphans("customers", "tenant_id", 50, null=2, unknown=2, excluded=13,
                                       policy=OrphanPolicy("report"))}
    fig = report_figures(units, rules, found)["customers"]
    assert (fig["rows_source"], fig["rows_target"], fig["orphans_reported"], fig["excluded"]) == (50, 33, 4, 13)
    assert dr.unaccounted(fig) == 0
    diff = dr.build_diff(db, rules).with_phase("copied").with_figures({"customers": fig})
    assert [(f.change, f.severity) for f in by(diff, "customers", kind="rows")] == [
        ("not copied (orphans: report)", "warning"), ("not copied by this run", "info")]
    found["customers"] = TableOrphans("customers", "tenant_id", 50, null=4, excluded=13, policy=OrphanPolicy())
    fig = report_figures(units, rules, found)["customers"]
    assert fig["orphans_refused"] == 4 and dr.unaccounted(fig) == 0
    diff = dr.build_diff(db, rules).with_phase("copied").with_figures({"customers": fig})
    assert ("not copied (orphans: error)", "error") in [(f.change, f.severity) for f in by(diff, "customers", kind="rows")]
