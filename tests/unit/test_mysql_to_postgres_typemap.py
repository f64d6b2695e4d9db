"""mysql_to_postgres' pure parts without a database: ENUM label parsing, the type table, defaults, grants and
role grants, override files checked key by key and value by value."""

from __future__ import annotations

from pathlib import Path

import pytest

from cutover.mysql_schema import Column
from cutover.mysql_to_postgres.readonly import granted_roles, write_grants
from cutover.mysql_to_postgres.typemap import (
    TypeMapError,
    collation_rules,
    count_flags,
    enum_labels,
    load_overrides,
    map_column,
    map_table,
    rule_flags_expr,
)


def _col(name: str, ctype: str, default: str | None = None, extra: str = "", charset: str | None = "utf8mb4") -> Column:
    return Column(name, ctype, ctype.split("(")[0].split(" ")[0], True, default, extra, charset)


def test_enum_labels_are_byte_exact() -> None:
    assert enum_labels("enum('a b','c,d','(e)','it''s','')") == ["a b", "c,d", "(e)", "it's", ""]
    assert enum_labels("set('x','y z')") == ["x", "y z"]


@pytest.mark.parametrize(("ctype", "pg"), [
    ("tinyint(4)", "smallint"), ("tinyint(3) unsigned", "smallint"), ("smallint(5) unsigned", "integer"),
    ("mediumint(8) unsigned", "integer"), ("int(10) unsigned", "bigint"), ("int(11)", "integer"),
    ("bigint(20) unsigned", "numeric(20,0)"), ("bigint(20)", "bigint"), ("decimal(28,13)", "numeric(28,13)"),
    ("float", "real"), ("double", "double precision"), ("bit(5)", "bit(5)"), ("year(4)", "smallint"),
    ("date", "date"), ("datetime(6)", "timestamp(6) without time zone"), ("timestamp(3)", "timestamp(3) with time zone"),
    ("time(6)", "interval"), ("varchar(20)", "varchar(20)"), ("char(36)", "varchar(36)"), ("longtext", "text"),
    ("blob", "bytea"), ("varbinary(16)", "bytea"), ("enum('a','b')", "text"), ("set('a','b')", "text"),
])
def test_type_table(ctype: str, pg: str) -> None:
    cm = map_column("t", _col("c", ctype), json_columns=set(), zero_date="null", enum_empty="dead_letter")
    assert cm is not None and cm.pg_type == pg


def test_json_columns_and_overrides() -> None:
    cm = map_column("t", _col("doc", "longtext"), json_columns={"doc"}, zero_date="null", enum_empty="dead_letter")
    assert cm is not None and cm.pg_type == "json"
    cm = map_column("t", _col("doc", "longtext"), json_columns={"doc"}, zero_date="null", enum_empty="dead_letter",
                    opts={"type": "jsonb"})
    assert cm is not None and cm.pg_type == "jsonb"
    assert map_column("t", _col("x", "int(11)"), json_columns=set(), zero_date="null", enum_empty="dead_letter",
                      opts={"skip": True}) is None
    with pytest.raises(TypeMapError, match=r"t\.spot"):
        map_column("t", _col("spot", "point"), json_columns=set(), zero_date="null", enum_empty="dead_letter")


def test_enum_escaping_only_when_a_label_needs_it() -> None:
    plain = map_column("t", _col("e", "enum('a b','c')"), json_columns=set(), zero_date="null", enum_empty="dead_letter")
    odd = map_column("t", _col("e", "enum('a\\\\b','c')"), json_columns=set(), zero_date="null", enum_empty="dead_letter")
    assert plain is not None and "REPLACE" not in plain.render
    assert odd is not None and "REPLACE" in odd.render


@pytest.mark.parametrize(("ctype", "default", "extra", "want"), [
    ("timestamp(6)", "current_timestamp(6)", "on update current_timestamp(6)", "CURRENT_TIMESTAMP(6)"),
    ("datetime(6)", "current_timestamp(6)", "", "LOCALTIMESTAMP(6)"),
    ("date", "curdate()", "", "CURRENT_DATE"),
    ("varchar(10)", "'it''s'", "", "'it''s'"),
    ("int(11)", "5", "", "5"),
    ("bit(3)", "b'101'", "", "B'101'"),
    ("date", "'0000-00-00'", "", None),
    ("varchar(10)", "NULL", "", None),
])
def test_defaults_stay_expressions(ctype: str, default: str, extra: str, want: str | None) -> None:
    cm = map_column("t", _col("c", ctype, default, extra), json_columns=set(), zero_date="null", enum_empty="dead_letter")
    assert cm is not None and cm.default == want
    if extra:
        assert cm.on_update == "CURRENT_TIMESTAMP(6)"


def test_write_grants() -> None:
    assert write_grants(["GRANT USAGE ON *.* TO `ro`@`%`", "GRANT SELECT, SHOW VIEW ON `db`.* TO `ro`@`%`",
                         "GRANT REPLICATION SLAVE, BINLOG MONITOR ON *.* TO `ro`@`%`"]) == []
    bad = ["GRANT SELECT, INSERT ON `db`.* TO `rw`@`%`", "GRANT ALL PRIVILEGES ON *.* TO `root`@`localhost` WITH GRANT OPTION",
           "GRANT SELECT (a), UPDATE (b) ON `db`.`t` TO `x`@`%`"]
    assert write_grants(bad) == bad


def test_granted_roles_are_read_from_show_grants_lines() -> None:
    assert granted_roles(["GRANT `writer` TO `u`@`%`", "GRANT `a``b`@`%`,`c` TO `u`@`%`",
                          "GRANT SELECT ON `db`.* TO `u`@`%`", "SET DEFAULT ROLE `writer` FOR `u`@`%`"]) == [
        ("writer", ""), ("a`b", "%"), ("c", "")]


@pytest.mark.parametrize(("body", "names"), [
    ("zero_date: nul", ["zero_date: 'nul' is not allowed", "null or dead_letter"]),
    ("enum_empty: drop", ["enum_empty: 'drop' is not allowed", "dead_letter, null or keep"]),
    ("skip: 'yes'", ["skip: 'yes' is not allowed", "true or false"]),
    ("kind: 'timestamp:9'", ["kind: 'timestamp:9' is not allowed", "out of range"]),
    ("kind: money", ["kind: 'money' is not allowed", "consistency kind"]),
    ("type: 'text; DROP TABLE x'", ["type: 'text; DROP TABLE x' is not allowed", "PostgreSQL type name"]),
    ("typ: text", ["unknown option 'typ'", "type, kind, skip, zero_date, enum_empty, default"]),
    ("{skip: true, type: text}", ["skip: true leaves the column out"]),
])
def test_override_values_are_checked_naming_file_table_column_and_allowed(tmp_path: Path, body: str,
                                                                          names: list[str]) -> None:
    f = tmp_path / "ov.yaml"
    opts = body if body.startswith("{") else "{" + body + "}"
    f.write_text(f"tables:\n  'x\"; DROP':\n    columns:\n      '100%': {opts}\n", encoding="utf-8")
    with pytest.raises(TypeMapError) as err:
        load_overrides(f)
    text = str(err.value)
    assert str(f) in text and 'tables.x"; DROP.columns.100%' in text, text
    for n in names:
        assert n in text, text


def test_override_file_shape_and_yaml_null_rules(tmp_path: Path) -> None:
    f = tmp_path / "ov.yaml"
    f.write_text("table: {}\n", encoding="utf-8")
    with pytest.raises(TypeMapError, match="one key, tables"):
        load_overrides(f)
    f.write_text("tables:\n  t:\n    colums: {}\n", encoding="utf-8")
    with pytest.raises(TypeMapError, match=r"tables\.t: a table holds one key, columns"):
        load_overrides(f)
    # YAML reads an unquoted null as None: for the two rules it means the rule "null" (as the file's comment reads)
    f.write_text("tables:\n  t:\n    columns:\n      d: {zero_date: null}\n      e: {enum_empty: null, default: 3}\n",
                 encoding="utf-8")
    assert load_overrides(f) == {"t": {"d": {"zero_date": "null"}, "e": {"enum_empty": "null", "default": "3"}}}


def test_a_rule_override_on_a_column_it_does_not_apply_to_is_refused() -> None:
    with pytest.raises(TypeMapError, match=r"t\.n: override zero_date applies to DATE, DATETIME and TIMESTAMP"):
        map_column("t", _col("n", "int(11)"), json_columns=set(), zero_date="null", enum_empty="dead_letter",
                   opts={"zero_date": "null"})
    with pytest.raises(TypeMapError, match=r"t\.d: override enum_empty applies to ENUM columns"):
        map_column("t", _col("d", "date"), json_columns=set(), zero_date="null", enum_empty="dead_letter",
                   opts={"enum_empty": "keep"})


@pytest.mark.parametrize(("collation", "rules"), [
    ("utf8mb4_general_ci", (True, True)), ("latin1_swedish_ci", (True, True)), ("utf8mb4_bin", (True, False)),
    ("utf8mb4_nopad_bin", (False, False)), ("utf8mb4_0900_ai_ci", (False, True)), ("utf8mb4_0900_as_cs", (False, False)),
    (None, (False, False)),
])
def test_collation_rules_say_how_mysql_compares_keys(collation: str | None, rules: tuple[bool, bool]) -> None:
    assert collation_rules(collation) == rules


def test_rule_flags_are_one_character_per_rule_column_and_count_back() -> None:
    from cutover.mysql_schema import Index, TableSchema

    cols = [Column("id", "int(11)", "int", False, None, ""), Column("d", "date", "date", True, None, ""),
            Column("n", "int(11)", "int", True, None, ""), Column("e", "enum('a')", "enum", True, None, "", "utf8mb4")]
    tm = map_table(TableSchema("t", cols, [Index("PRIMARY", ("id",), "primary")]), target="t", json_columns=set(),
                   zero_date="null", enum_empty="null")
    assert [c.source for c in tm.rule_columns()] == ["d", "e"]
    expr = rule_flags_expr(tm)
    assert expr is not None and expr.startswith("CONCAT(IF((MONTH(`d`) = 0") and "WHEN (`e` + 0 = 0) THEN '1'" in expr
    got = count_flags(tm, [b"10", b"00", b"21", b"31", b"10"], {})
    assert got == {"d": {"zero date → NULL": 2, "partial date → NULL": 1, "year 0 → NULL": 1},
                   "e": {"invalid ENUM '' → NULL": 2}}
    plain = map_table(TableSchema("p", cols[:1], [Index("PRIMARY", ("id",), "primary")]), target="p", json_columns=set(),
                      zero_date="null", enum_empty="dead_letter")
    assert rule_flags_expr(plain) is None  # nothing to count: the chunk read is unchanged
