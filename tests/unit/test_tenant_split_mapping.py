"""tenant_split's mapping file: what becomes of each table, and errors that name the line."""

from __future__ import annotations

from pathlib import Path

import pytest

from cutover.samples import tenants
from cutover.samples.hostile import HOSTILE_NAMES
from cutover.tenant_split.mapping import MappingError, load_mapping, parse_mapping

ROOT = Path(__file__).resolve().parents[2]


def test_the_repo_mapping_covers_the_sample_database() -> None:
    m = load_mapping(ROOT / "mappings" / "tenant_split.yaml")
    rules = m.resolve(tenants.TABLES)
    assert rules["legacy_sessions"].action == "drop"
    assert rules["customer_notes"].target == "notes" and rules["customers"].tenant_column == "tenant_id"
    assert rules["tenants"].action == "shared" and rules["tenants"].tenant_column is None
    assert m.targets(tenants.TABLES)["notes"] == ["customer_notes"] and "legacy_sessions" not in m.targets(tenants.TABLES)


def test_merge_rename_unlisted_and_tenant_column() -> None:
    m = parse_mapping("""
tenant_column: shop_id
tables:
  invoices:
  invoices_2019: {merge_into: invoices}
  orders: {tenant_column: tenant}
""")
    rules = m.resolve(["invoices", "invoices_2019", "orders", "extra"])
    assert rules["invoices_2019"].merged and rules["invoices_2019"].target == "invoices"
    assert rules["orders"].tenant_column == "tenant" and rules["invoices"].tenant_column == "shop_id"
    assert rules["extra"].action == "copy" and rules["extra"].line == 0  # unlisted: copy
    assert m.targets(["invoices", "invoices_2019", "orders", "extra"])["invoices"] == ["invoices", "invoices_2019"]


@pytest.mark.parametrize(("text", "message"), [
    ("tables:\n  a: {renam: b}\n", "line 2: table 'a': unknown key 'renam'"),
    ("tables:\n  a: {action: delete}\n", "line 2: table 'a': unknown action 'delete'"),
    ("tables:\n  a: {}\n  b: {}\n  a: {action: drop}\n", "line 4: 'a' appears twice in tables (first on line 2)"),
    ("tables:\n  a: {rename: c}\n  b: {rename: c}\n", "line 3: 'b' becomes 'c', as does 'a' (line 2)"),
    ("tables:\n  a: {action: drop}\n  b: {merge_into: a}\n", "line 3: 'b' merges into 'a', which is dropped (line 2)"),
    ("tables:\n  a: {merge_into: b}\n  b: {merge_into: c}\n  c: {}\n", "merge into the final table"),
    ("tables:\n  a: {rename: a}\n", "line 2: table 'a': rename to itself"),
    ("tables:\n  a: {action: drop, rename: b}\n", "line 2: table 'a' is dropped, so rename means nothing"),
    ("tables:\n  a: {rename: b, merge_into: c}\n", "rename and merge_into at once"),
    ("tables:\n  a: {action: shared, tenant_column: t}\n", "shared reference data: it has no tenant column"),
    ("tabels:\n  a: {}\n", "line 1: unknown key 'tabels'"),
    ("tenant_column: t\n", "`tables:` is missing"),
    ("tables:\n  a: {}\n unlisted: x\n", "not valid YAML"),
    ("tables:\n  a: {}\nunlisted: maybe\n", "line 3: unlisted must be copy or error"),
    ("", "the file is empty"),
    ("tables:\n  'ends with space ': {}\n", "line 2: table 'ends with space '"),
    ("tables: [a, b]\n", "line 1: tables must be a mapping"),
    ("tables:\n  a: {}\norphans: ignore\n", "line 3: orphans must be error, report or {copy_to: <tenant>}"),
    ("tables:\n  a: {}\norphans: 'copy_to: x'\n", "write it as {copy_to: <tenant>}"),
    ("tables:\n  a: {}\norphans: {copy_to: ' '}\n", "copy_to of orphans: the tenant id is blank"),
    ("tables:\n  a: {}\norphans: {copy: x}\n", "line 3: orphans must be error, report or {copy_to: <tenant>}"),
    ("tables:\n  a: {orphans: maybe}\n", "line 2: orphans of table 'a' must be error, report"),
    ("tables:\n  a: {action: shared, orphans: report}\n", "line 2: table 'a' is shared: it has no tenant column"),
    ("tables:\n  a: {non_transactional: yes}\n", "line 2: table 'a': non_transactional must be refuse or copy"),
    ("tables:\n  a: {action: drop, non_transactional: copy}\n", "non_transactional means nothing"),
])
def test_errors_name_the_line(text: str, message: str) -> None:
    with pytest.raises(MappingError, match=None) as err:
        parse_mapping(text, path="mapping.yaml")
    assert str(err.value).startswith("mapping.yaml") and message in str(err.value), str(err.value)


def test_orphans_policy_top_level_and_per_table() -> None:
    """Rows outside every tenant: ``error`` unless the mapping says otherwise, per table if it likes; a
    tenant id to copy them to is data (a hostile one stays as it is)."""
    assert parse_mapping("tables:\n  a: {}\n").orphans.mode == "error"  # the default
    tenant = HOSTILE_NAMES[0]
    import json

    m = parse_mapping("tables:\n  a: {}\n  b: {orphans: report}\n  c: {orphans: {copy_to: " + json.dumps(tenant) + "}}\n"
                      "  d: {non_transactional: copy}\norphans: {copy_to: acme}\n", path="m.yaml")
    rules = m.resolve(["a", "b", "c", "d", "e"])
    assert (m.orphans.mode, m.orphans.tenant, m.orphans.line) == ("copy_to", "acme", 6)
    assert m.orphan_policy(rules["a"]) == m.orphans and m.orphan_policy(rules["e"]) == m.orphans  # unlisted: default
    assert (m.orphan_policy(rules["b"]).mode, m.orphan_policy(rules["b"]).line) == ("report", 3)
    assert (m.orphan_policy(rules["c"]).mode, m.orphan_policy(rules["c"]).tenant) == ("copy_to", tenant)
    assert str(m.orphan_policy(rules["c"])) == f"copy_to: {tenant}"
    assert rules["d"].allow_non_transactional and not rules["a"].allow_non_transactional


def test_resolve_refuses_tables_the_source_does_not_have_and_unlisted_when_asked() -> None:
    m = parse_mapping("tables:\n  a: {}\n  gone: {action: drop}\nunlisted: error\n", path="m.yaml")
    with pytest.raises(MappingError, match="m.yaml line 3: table 'gone' is not in the source"):
        m.resolve(["a"])
    with pytest.raises(MappingError, match="table 'new' is in the source but not in the mapping"):
        m.resolve(["a", "gone", "new"])
    with pytest.raises(MappingError, match="merges into 'nowhere'"):
        parse_mapping("tables:\n  a: {merge_into: nowhere}\n").resolve(["a"])


@pytest.mark.parametrize("name", [n for n in HOSTILE_NAMES if len(n) <= 64 and not n.endswith(" ")])
def test_hostile_table_names_are_names(name: str) -> None:
    import json

    m = parse_mapping("tables:\n  " + json.dumps(name) + ": {rename: " + json.dumps(name + "_v2") + "}\n")
    assert m.rules[name].target == name + "_v2"


def test_an_unreadable_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(MappingError, match="cannot read the mapping file"):
        load_mapping(tmp_path / "nope.yaml")
