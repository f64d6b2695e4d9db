"""The schema diff report on the real sample: the shop database seeded into MariaDB/MySQL, read from
``information_schema``, the repo's mapping applied; dry run, then against one tenant database built as
the split builds it (with one real change), figures attached, files saved and read back."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cutover.connections import PROJECT_ROOT
from cutover.identifiers import quote_mysql
from cutover.mysql_schema import read_database, strip_auto_increment
from cutover.samples.tenants import seed_tenants
from cutover.tenant_split import diff_report as dr
from cutover.tenant_split.mapping import load_mapping

pytestmark = pytest.mark.integration

TENANT = 1


@pytest.fixture
def dbs(mysql: Any) -> Iterator[tuple[str, str]]:
    """A source database seeded with the sample (plus a view and an event) and an empty tenant database name."""
    tag = f"{os.getpid()}_{uuid.uuid4().hex[:6]}"
    src, tgt = f"cutover_diff_src_{tag}", f"cutover_diff_tenant_{tag}"
    seed_tenants(mysql, tenants=3, rows=600, database=src)
    with mysql.cursor() as cur:
        cur.execute(f"CREATE VIEW {quote_mysql(src)}.`recent_notes` AS SELECT id, customer_id, body "
                    f"FROM {quote_mysql(src)}.`customer_notes` WHERE id > 0")
        cur.execute(f"CREATE EVENT {quote_mysql(src)}.`nightly_touch` ON SCHEDULE EVERY 1 DAY DISABLE "
                    f"DO UPDATE {quote_mysql(src)}.`orders` SET status = status WHERE 0")
    mysql.commit()
    try:
        yield src, tgt
    finally:
        with mysql.cursor() as cur:
            for name in (src, tgt):
                cur.execute(f"DROP DATABASE IF EXISTS {quote_mysql(name)}")


def _read(mysql: Any, database: str) -> Any:
    with mysql.cursor() as cur:
        return read_database(cur, database)


def _build_tenant(mysql: Any, src: str, tgt: str, rules: dict[str, Any], source: Any) -> None:
    """The tenant database as the split creates it: each mapped table from the source's CREATE TABLE under its
    new name (AUTO_INCREMENT stripped), one tenant's rows, triggers, the view and the event restored."""
    q = quote_mysql
    with mysql.cursor() as cur:
        cur.execute(f"CREATE DATABASE {q(tgt)}")
        cur.execute(f"USE {q(tgt)}")
        cur.execute("SET FOREIGN_KEY_CHECKS = 0")
        for name, rule in rules.items():
            if rule.action == "drop" or rule.merged:
                continue
            ddl = strip_auto_increment(source.tables[name].create_sql)
            cur.execute(ddl.replace(f"CREATE TABLE {q(name)}", f"CREATE TABLE {q(rule.target)}", 1))
            where = "" if rule.tenant_column is None else f" WHERE {q(rule.tenant_column)} = %s"
            cur.execute(f"INSERT INTO {q(tgt)}.{q(rule.target)} SELECT * FROM {q(src)}.{q(name)}{where}",
                        () if rule.tenant_column is None else (TENANT,))
            for trg in source.tables[name].triggers:
                cur.execute(trg.definition)
        cur.execute("SET FOREIGN_KEY_CHECKS = 1")
        for view in source.views:
            cur.execute(view.definition.replace(f"{q(src)}.", "").replace(q("customer_notes"), q("notes")))
        for event in source.events:
            cur.execute(event.definition.replace(f"{q(src)}.", ""))
        # a real change on the newer server: wider quantities
        cur.execute(f"ALTER TABLE {q(tgt)}.`order_items` MODIFY quantity BIGINT NOT NULL")
    mysql.commit()


def _figures(mysql: Any, src: str, tgt: str, rules: dict[str, Any]) -> dict[str, dict[str, Any]]:
    q = quote_mysql
    out: dict[str, dict[str, Any]] = {}
    with mysql.cursor() as cur:
        for name, rule in rules.items():
            if rule.action == "drop" or rule.merged:
                continue
            where = "" if rule.tenant_column is None else f" WHERE {q(rule.tenant_column)} = {TENANT}"
            cur.execute(f"SELECT COUNT(*) FROM {q(src)}.{q(name)}{where}")
            rows_source = int(cur.fetchone()[0])
            cur.execute(f"SELECT COUNT(*) FROM {q(tgt)}.{q(rule.target)}")
            rows_target = int(cur.fetchone()[0])
            out[rule.target] = {"rows_source": rows_source, "rows_target": rows_target,
                                "per_tenant": {str(TENANT): {"rows_source": rows_source, "rows_target": rows_target}}}
    return out


def test_schema_diff_of_the_sample_split(mysql: Any, dbs: tuple[str, str], tmp_path: Path) -> None:
    src, tgt = dbs
    source = _read(mysql, src)
    mapping = load_mapping(PROJECT_ROOT / "mappings" / "tenant_split.yaml")
    rules = mapping.resolve(source.tables)

    # dry run: against the DDL the mapping implies
    diff = dr.build_diff(source, rules)
    s = diff.summary()
    assert s["compared_with"] == "mapping" and s["severity"]["error"] == 0, [f for f in diff.findings if f.severity == "error"]
    assert s["tables"] == 6 and s["dropped"] == 1
    notes = diff.table("notes")
    assert (notes.action, notes.sources, notes.tenant_column) == ("rename", ["customer_notes"], "tenant_id")
    assert notes.columns == ["id", "tenant_id", "customer_id", "body", "created_at"]
    assert diff.table("legacy_sessions").action == "drop"
    assert diff.table("tenants").action == "shared copy" and diff.table("customers").action == "copy"
    triggers = {(f.table, f.name): f for f in diff.findings if f.kind == "trigger"}
    assert set(triggers) == {("customers", "customers_email_lower"), ("orders", "orders_total_nonnegative")}
    assert all(f.action == dr.SET_ASIDE for f in triggers.values())
    fks = {f.name: f for f in diff.findings if f.kind == "foreign_key"}
    assert fks["customer_notes_customer_fk"].change == "kept" and fks["customer_notes_customer_fk"].table == "notes"
    assert "shared" in fks["customers_tenant_fk"].action
    objects = {(f.kind, f.name, f.change): f.severity for f in diff.database_findings}
    assert objects[("view", "recent_notes", "references renamed table")] == "warning"
    assert ("event", "nightly_touch", "set aside") in objects
    assert any(f.name == "AUTO_INCREMENT" for f in diff.findings) is False  # the sample's keys are not AUTO_INCREMENT

    paths = dr.save_report(diff, f"manual__split {src}", root=tmp_path)
    for key in ("html", "xlsx", "json"):
        assert Path(paths[key]).is_file()
    page = Path(paths["html"]).read_text()
    assert "customer_notes" in page and "legacy_sessions" in page and "<script" not in page

    # against one tenant database as built (one real change: order_items.quantity int(11) → bigint)
    _build_tenant(mysql, src, tgt, rules, source)
    target = _read(mysql, tgt)
    real = dr.build_diff(source, rules, target)
    changes = [(f.table, f.name, f.change, f.severity) for f in real.findings if f.kind in ("column", "index")]
    assert changes == [("order_items", "quantity", "type widened", "warning")]
    restored = {(f.kind, f.name): f.change for f in real.findings if f.kind in ("trigger", "view", "event")
                and f.change not in ("references renamed table",)}
    assert restored == {("trigger", "customers_email_lower"): "restored, equal",
                        ("trigger", "orders_total_nonnegative"): "restored, equal",
                        ("view", "recent_notes"): "restored, equal", ("event", "nightly_touch"): "restored, equal"}
    assert not [f for f in real.findings if f.severity == "error"]

    figures = _figures(mysql, src, tgt, rules)
    assert figures["notes"]["rows_source"] == figures["notes"]["rows_target"] > 0
    verified = real.with_figures(figures)
    vs = verified.summary()
    assert vs["verified_tables"] == 6 and vs["tables_mismatched"] == 0 and vs["rows_source"] == vs["rows_target"] > 0
    run_id = f"manual__2024-01-01T00:00:00+00:00 {src}"
    paths = dr.save_report(verified, run_id, root=tmp_path)
    saved = json.loads(Path(paths["json"]).read_text())
    assert saved["run_id"] == run_id and saved["summary"]["verified_tables"] == 6
    assert dr.load_report(run_id, root=tmp_path).table("notes").figures["rows_target"] == figures["notes"]["rows_target"]
    ev = dr.evidence_entry(paths, verified)
    assert ev["html"].endswith("/schema_diff.html") and ev["summary"]["ok"] is True

    from openpyxl import load_workbook

    wb = load_workbook(paths["xlsx"])
    tables = {r[1]: r for r in wb["Tables"].iter_rows(min_row=2, values_only=True) if r[1]}
    assert tables["notes"][0] == "customer_notes" and tables["notes"][2] == "rename"
    assert tables["notes"][7] == figures["notes"]["rows_source"]
