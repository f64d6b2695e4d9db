"""tenant_split tells the truth on the real MariaDB: every source row accounted for, a plan that refuses
what it cannot copy safely before anything is written, and a schema diff report whose figures are the
verified records of the run.

The source (``ts_truth_src``) has a tenant directory ``tenants`` of hostile tenant ids and a shared table
``items`` of 37 rows: 11 per tenant of three, 2 whose tenant is NULL and 2 of a tenant (``ghost``) the
directory does not list — the shape of issue #19's report, where the run was green and said "35 / 35".
``items`` also has a STORED and a VIRTUAL generated column (copied by recomputing them, in both copy
modes), and ``notes`` is a plain table with no row outside the tenants.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cutover import control
from cutover.identifiers import quote_mysql
from cutover.lifecycle import stages
from cutover.reports import report_dir
from cutover.samples.hostile import HOSTILE_NAMES
from cutover.tenant_split.config import PIPELINE
from cutover.tenant_split.plan import PlanError
from cutover.tenant_split.spec import SPEC

from .test_tenant_split import clean_control

pytestmark = pytest.mark.integration

SRC = "ts_truth_src"
PREFIX = "tstruth_"
STATE = "cutover_state_truth"
TENANTS = ('quo"te', "semi;colon -- drop", "船速")
assert set(TENANTS) <= set(HOSTILE_NAMES)
PER_TENANT, NULLS, GHOSTS = 11, 2, 2
TOTAL = PER_TENANT * len(TENANTS) + NULLS + GHOSTS  # 37
MAPPING = """\
tenant_column: tenant
tables:
  tenants: {action: shared}
  items: {}
  notes: {}
unlisted: error
"""


def seed(conn: Any) -> None:
    """(Re)create the source: the directory, ``items`` with orphans and generated columns, ``notes``."""
    cur = conn.cursor()
    cur.execute(f"DROP DATABASE IF EXISTS {SRC}")
    cur.execute(f"CREATE DATABASE {SRC} CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
    cur.execute(f"USE {SRC}")
    cur.execute("CREATE TABLE tenants (tenant VARCHAR(100) NOT NULL PRIMARY KEY, plan VARCHAR(20) NOT NULL)")
    cur.execute("""CREATE TABLE items (id INT NOT NULL PRIMARY KEY, tenant VARCHAR(100) NULL, name VARCHAR(40) NOT NULL,
        qty INT NOT NULL, total INT AS (qty * 2) STORED, label VARCHAR(60) AS (CONCAT('#', id, ' ', name)) VIRTUAL,
        KEY items_tenant (tenant))""")
    cur.execute("""CREATE TABLE notes (id INT NOT NULL PRIMARY KEY, tenant VARCHAR(100) NOT NULL, body TEXT NULL,
        KEY notes_tenant (tenant))""")
    n = 0
    for t in TENANTS:
        cur.execute("INSERT INTO tenants VALUES (%s, 'team')", (t,))
        for i in range(PER_TENANT):
            n += 1
            cur.execute("INSERT INTO items (id, tenant, name, qty) VALUES (%s, %s, %s, %s)", (n, t, f"item {i} é", i))
            cur.execute("INSERT INTO notes VALUES (%s, %s, %s)", (n, t, None if i % 3 else f"note {i}"))
    for i in range(NULLS):
        n += 1
        cur.execute("INSERT INTO items (id, tenant, name, qty) VALUES (%s, NULL, %s, 1)", (n, f"nobody {i}"))
    for i in range(GHOSTS):
        n += 1
        cur.execute("INSERT INTO items (id, tenant, name, qty) VALUES (%s, 'ghost', %s, 2)", (n, f"ghost {i}"))
    conn.commit()


def _drop_targets(cur: Any) -> None:
    cur.execute("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE %s OR SCHEMA_NAME = %s",
                (PREFIX.replace("_", "\\_") + "%", STATE))
    for (name,) in cur.fetchall():
        cur.execute(f"DROP DATABASE {quote_mysql(name.decode() if isinstance(name, bytes) else name)}")


def _targets(cur: Any) -> list[str]:
    cur.execute("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE %s",
                (PREFIX.replace("_", "\\_") + "%",))
    return sorted(r[0].decode() if isinstance(r[0], bytes) else r[0] for r in cur.fetchall())


@pytest.fixture
def params(tmp_path: Path, pg: Any, mysql: Any) -> Iterator[dict[str, Any]]:
    """A freshly seeded source, no target databases, no control rows; the build's Params."""
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text(MAPPING, encoding="utf-8")
    seed(mysql)
    cur = mysql.cursor()
    _drop_targets(cur)
    clean_control(pg, SRC)
    yield {"source_database": SRC, "mapping": str(mapping), "tenant_directory": "tenants", "database_prefix": PREFIX,
           "state_database": STATE, "chunk_rows": 4, "parallelism": 2, "gx_gate": False,
           # copy + verify: other suites on this server write to the shared binary log meanwhile
           "binlog": "off"}
    _drop_targets(cur)
    cur.execute(f"DROP DATABASE IF EXISTS {SRC}")
    clean_control(pg, SRC)


def _mapping(params: dict[str, Any], text: str) -> None:
    Path(params["mapping"]).write_text(text, encoding="utf-8")


def _saved_report(run_id: str) -> dict[str, Any]:
    return json.loads((report_dir(run_id) / "schema_diff.json").read_text(encoding="utf-8"))


def _html(run_id: str) -> str:
    return (report_dir(run_id) / "schema_diff.html").read_text(encoding="utf-8")


def _figures(report: dict[str, Any], table: str) -> dict[str, Any]:
    return next(t for t in report["tables"] if t["table"] == table)["figures"]


# --- orphans ----------------------------------------------------------------------------------------


def test_orphans_stop_the_plan_by_default_naming_table_counts_and_keys(params: dict[str, Any], pg: Any,
                                                                       mysql: Any) -> None:
    """Default ``orphans: error``: the plan fails with the counts and sample keys, nothing is written."""
    with pytest.raises(PlanError) as err:
        SPEC.plan(SPEC.config(params), None)
    msg = str(err.value)
    assert "table 'items'" in msg and f"{NULLS + GHOSTS} of {TOTAL} row(s) outside every tenant" in msg, msg
    assert f"{NULLS} with tenant NULL" in msg and "'ghost'" in msg, msg
    assert "{'id': 34}" in msg and "{'id': 36}" in msg, msg  # sample keys: a NULL one and a ghost one
    assert "orphans: report" in msg and "table 'notes'" not in msg
    rep = stages.run_build(SPEC, params, "ts_truth_refused", raise_on_red=False)
    assert not rep.green and rep.planned is None
    assert _targets(mysql.cursor()) == []  # nothing written: no tenant database
    assert control.load_name_map(pg, PIPELINE, SRC) == {}  # not even a name


@pytest.mark.parametrize("mode", ["server", "client"])
def test_orphans_report_keeps_the_run_honest_and_generated_columns_are_recomputed(
        params: dict[str, Any], pg: Any, mysql: Any, mode: str) -> None:
    """``orphans: report``: green, the orphans in the run's evidence and the report, whose totals are the
    source's; the STORED and VIRTUAL columns are copied in both copy modes (MariaDB 1906 before)."""
    _mapping(params, MAPPING + "orphans: report\n")
    run_id = f"ts_truth_report_{mode}"
    rep = stages.run_build(SPEC, {**params, "copy_mode": mode}, run_id, raise_on_red=False)
    assert rep.green, rep.summary()
    ev = control.get_run(pg, run_id)["evidence"]
    items = ev["orphans"]["items"]
    assert (items["null"], items["unknown"], items["unknown_ids"], items["rows"]) == (NULLS, GHOSTS, ["ghost"], TOTAL)
    assert items["policy"] == "report" and {s["kind"] for s in items["samples"]} == {"NULL tenant", "unknown tenant"}
    assert "notes" not in ev["orphans"]
    report = _saved_report(run_id)
    assert report["phase"] == "copied"
    fig = _figures(report, "items")
    # every source row: 33 in the target + 4 outside every tenant, reported
    assert (fig["rows_source"], fig["rows_target"], fig["orphans_reported"]) == (TOTAL, TOTAL - NULLS - GHOSTS,
                                                                                   NULLS + GHOSTS)
    assert fig["verified"] is True and fig["units_verified"] == len(TENANTS)
    s = report["summary"]
    # items, notes, and the shared directory copied whole into each tenant's database
    assert s["rows_source"] == TOTAL + PER_TENANT * len(TENANTS) + len(TENANTS) ** 2
    assert s["orphans_reported"] == NULLS + GHOSTS and s["rows_target"] == s["rows_source"] - NULLS - GHOSTS
    finding = next(f for f in next(t for t in report["tables"] if t["table"] == "items")["findings"]
                   if f["kind"] == "rows")
    assert (finding["severity"], finding["change"]) == ("warning", "not copied (orphans: report)")
    page = _html(run_id)
    assert "dry run" not in page and "fix before the copy" not in page and "after the copy" in page
    cur = mysql.cursor()
    dbs = control.load_name_map(pg, PIPELINE, SRC)
    for t in TENANTS:
        cur.execute(f"SELECT id, qty, total, label FROM {quote_mysql(dbs[t])}.items ORDER BY id")
        got = cur.fetchall()
        cur.execute(f"SELECT id, qty, total, label FROM {SRC}.items WHERE tenant = %s ORDER BY id", (t,))
        assert got == cur.fetchall() and len(got) == PER_TENANT


@pytest.mark.parametrize("mode", ["server", "client"])
def test_generated_columns_are_recomputed_in_both_copy_modes(params: dict[str, Any], pg: Any, mysql: Any,
                                                             mode: str) -> None:
    """A STORED and a VIRTUAL generated column: left out of the insert list (INSERT … SELECT, LOAD DATA
    and INSERT alike), recomputed by the target, verified equal (before: MariaDB 1906 at copy)."""
    cur = mysql.cursor()
    cur.execute(f"DELETE FROM {SRC}.items WHERE tenant IS NULL OR tenant = 'ghost'")
    mysql.commit()
    rep = stages.run_build(SPEC, {**params, "copy_mode": mode}, f"ts_truth_gen_{mode}", raise_on_red=False)
    assert rep.green, rep.summary()
    dbs = control.load_name_map(pg, PIPELINE, SRC)
    for t in TENANTS:
        cur.execute(f"SELECT id, qty, total, label FROM {quote_mysql(dbs[t])}.items ORDER BY id")
        got = cur.fetchall()
        cur.execute(f"SELECT id, qty, total, label FROM {SRC}.items WHERE tenant = %s ORDER BY id", (t,))
        assert got == cur.fetchall() and len(got) == PER_TENANT
        cur.execute("SELECT COLUMN_NAME, EXTRA FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = %s AND "
                    "TABLE_NAME = 'items' AND COLUMN_NAME IN ('total', 'label') ORDER BY COLUMN_NAME", (dbs[t],))
        assert [(c, e.upper()) for c, e in cur.fetchall()] == [("label", "VIRTUAL GENERATED"),
                                                              ("total", "STORED GENERATED")]


def test_orphans_copy_to_a_tenant(params: dict[str, Any], pg: Any, mysql: Any) -> None:
    """``orphans: {copy_to: <tenant>}``: the NULL and unknown tenants' rows land in that tenant's database,
    verified with its rows; the report counts them copied and the totals are the source's."""
    to = TENANTS[0]
    _mapping(params, MAPPING + f"orphans: {{copy_to: {json.dumps(to)}}}\n")
    rep = stages.run_build(SPEC, params, "ts_truth_copy_to", raise_on_red=False)
    assert rep.green, rep.summary()
    dbs = control.load_name_map(pg, PIPELINE, SRC)
    cur = mysql.cursor()
    cur.execute(f"SELECT id, tenant, total, label FROM {quote_mysql(dbs[to])}.items ORDER BY id")
    got = cur.fetchall()
    cur.execute(f"SELECT id, tenant, total, label FROM {SRC}.items WHERE tenant = %s OR tenant IS NULL "
                "OR tenant = 'ghost' ORDER BY id", (to,))
    assert got == cur.fetchall() and len(got) == PER_TENANT + NULLS + GHOSTS
    cur.execute(f"SELECT COUNT(*) FROM {quote_mysql(dbs[TENANTS[1]])}.items")
    assert cur.fetchone()[0] == PER_TENANT  # only the copy_to tenant takes them
    fig = _figures(_saved_report("ts_truth_copy_to"), "items")
    assert (fig["rows_source"], fig["rows_target"], fig["orphans_copied"]) == (TOTAL, TOTAL, NULLS + GHOSTS)
    assert fig.get("orphans_reported", 0) == 0 and fig["verified"] is True


def test_orphans_of_one_table_per_table_policy_and_excluded_tenants(params: dict[str, Any], pg: Any) -> None:
    """A per-table ``orphans`` overrides the mapping's; a run narrowed to one tenant counts the other
    tenants' rows as excluded, and its report still adds up to the source."""
    _mapping(params, MAPPING.replace("  items: {}", "  items: {orphans: report}"))
    run_id = "ts_truth_excluded"
    rep = stages.run_build(SPEC, {**params, "tenants": [TENANTS[2]]}, run_id, raise_on_red=False)
    assert rep.green, rep.summary()
    fig = _figures(_saved_report(run_id), "items")
    assert fig["excluded"] == PER_TENANT * 2 and fig["orphans_reported"] == NULLS + GHOSTS
    assert fig["rows_source"] == TOTAL and fig["rows_target"] == PER_TENANT
    notes = _figures(_saved_report(run_id), "notes")
    assert (notes["rows_source"], notes["rows_target"], notes["excluded"]) == (PER_TENANT * 3, PER_TENANT, PER_TENANT * 2)


# --- refusals before anything is written --------------------------------------------------------------


def test_a_myisam_table_is_refused_unless_the_mapping_opts_in(params: dict[str, Any], pg: Any, mysql: Any) -> None:
    cur = mysql.cursor()
    cur.execute(f"CREATE TABLE {SRC}.`cache m` (id INT NOT NULL PRIMARY KEY, tenant VARCHAR(100) NOT NULL) ENGINE=MyISAM")
    cur.execute(f"INSERT INTO {SRC}.`cache m` VALUES (1, %s)", (TENANTS[0],))
    mysql.commit()
    _mapping(params, MAPPING.replace("unlisted: error", "  cache m: {}\nunlisted: error") + "orphans: report\n")
    with pytest.raises(PlanError, match=r"table 'cache m' uses the MyISAM engine, which is not transactional"):
        SPEC.plan(SPEC.config(params), None)
    rep = stages.run_build(SPEC, params, "ts_truth_myisam", raise_on_red=False)
    assert not rep.green and _targets(cur) == []
    _mapping(params, MAPPING.replace("unlisted: error", "  cache m: {non_transactional: copy}\nunlisted: error")
             + "orphans: report\n")
    units = SPEC.plan(SPEC.config(params), None)
    assert any(u.key.parts[1] == "cache m" for u in units)


def test_an_empty_tenant_id_is_refused(params: dict[str, Any], pg: Any, mysql: Any) -> None:
    cur = mysql.cursor()
    cur.execute(f"INSERT INTO {SRC}.tenants VALUES ('', 'team')")
    mysql.commit()
    _mapping(params, MAPPING + "orphans: report\n")
    with pytest.raises(PlanError, match=r"the tenant directory 'tenants', column 'tenant' holds 1 empty or blank"):
        SPEC.plan(SPEC.config(params), None)
    rep = stages.run_build(SPEC, params, "ts_truth_empty", raise_on_red=False)
    assert not rep.green
    cur.execute("SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s", (PREFIX,))
    assert cur.fetchone()[0] == 0 and _targets(cur) == []


# --- the report says what the run says ---------------------------------------------------------------


def test_a_dry_run_report_says_dry_run_and_a_refusal_is_the_runs_reason(params: dict[str, Any], pg: Any,
                                                                         mysql: Any) -> None:
    """A dry run's report is labelled one and shows the rows outside every tenant; a dry run the orphans
    refuse is red with the counts as its reason (its plan failed: nothing to report on)."""
    _mapping(params, MAPPING.replace("  items: {}", "  items: {orphans: report}"))
    rep = stages.run_build(SPEC, {**params, "dry_run": True}, "ts_truth_dry", raise_on_red=False)
    assert rep.green, rep.summary()
    report = _saved_report("ts_truth_dry")
    assert report["phase"] == "dry_run" and _figures(report, "items")["orphans_reported"] == NULLS + GHOSTS
    page = _html("ts_truth_dry")
    assert "dry run: nothing was written" in page and "not copied (orphans: report)" in page
    assert "after the copy" not in page and _targets(mysql.cursor()) == []
    _mapping(params, MAPPING)
    rep = stages.run_build(SPEC, {**params, "dry_run": True}, "ts_truth_dry_refused", raise_on_red=False)
    assert not rep.green
    error = control.get_run(pg, "ts_truth_dry_refused")["error"] or ""
    assert "table 'items': 4 of 37 row(s) outside every tenant" in error, error


def test_a_table_that_lost_rows_to_dead_letters_is_never_green(params: dict[str, Any], pg: Any, mysql: Any) -> None:
    """The run is green (dead letters are expected to be missing), but the report shows the table red,
    with figures from the verified records: source = target + dead letters."""
    cur = mysql.cursor()
    cur.execute(f"CREATE TABLE {SRC}.old_items (id INT NOT NULL PRIMARY KEY, tenant VARCHAR(100) NULL, "
                "name VARCHAR(300) NOT NULL, qty INT NOT NULL, KEY old_items_tenant (tenant))")
    cur.execute(f"INSERT INTO {SRC}.old_items VALUES (901, %s, 'fits', 1), (902, %s, %s, 1)",
                (TENANTS[1], TENANTS[1], "x" * 150))
    mysql.commit()
    _mapping(params, MAPPING.replace("unlisted: error", "  old_items: {merge_into: items}\nunlisted: error")
             + "orphans: report\n")
    run_id = "ts_truth_dead"
    rep = stages.run_build(SPEC, {**params, "tenants": [TENANTS[1]]}, run_id, raise_on_red=False)
    assert rep.green, rep.summary()
    report = _saved_report(run_id)
    fig = _figures(report, "items")
    assert fig["dead_letters"] == 1 and fig["rows_source"] == fig["rows_target"] + 1 + fig["orphans_reported"] + \
        fig["excluded"]
    findings = next(t for t in report["tables"] if t["table"] == "items")["findings"]
    assert any(f["change"] == "rows in dead letters" and f["severity"] == "error" for f in findings)
    assert report["summary"]["tables_mismatched"] >= 1 and report["summary"]["ok"] is False
    assert "DEAD LETTERS" in _html(run_id)


def test_orphans_of_a_hostile_table_and_tenant_column(params: dict[str, Any], pg: Any, mysql: Any) -> None:
    """Table and tenant column names from the hostile list (``:``, a reserved word in mixed case):
    counted, named in the refusal, copied to a tenant. (A ``%`` in a table name is planned and counted —
    every plan statement with parameters doubles it — but the copy's statements do not yet.)"""
    table, column = "x:y", "Order"
    assert {table, column} <= set(HOSTILE_NAMES)
    cur = mysql.cursor()
    cur.execute(f"CREATE TABLE {SRC}.`x:y` (id INT NOT NULL PRIMARY KEY, `Order` VARCHAR(100) NULL, "
                "KEY t (`Order`))")
    cur.execute(f"INSERT INTO {SRC}.`x:y` VALUES (1, %s), (2, NULL), (3, 'ghost'), (4, %s)", (TENANTS[0], TENANTS[1]))
    mysql.commit()
    text = MAPPING.replace("unlisted: error", f"  {json.dumps(table)}: {{tenant_column: {column}}}\nunlisted: error")
    _mapping(params, text.replace("  items: {}", "  items: {orphans: report}"))
    with pytest.raises(PlanError, match=r"table 'x:y': 2 of 4 row\(s\) outside every tenant: 1 with Order NULL"):
        SPEC.plan(SPEC.config(params), None)
    _mapping(params, text.replace("  items: {}", "  items: {orphans: report}")
             + f"orphans: {{copy_to: {json.dumps(TENANTS[2])}}}\n")
    rep = stages.run_build(SPEC, params, "ts_truth_hostile", raise_on_red=False)
    assert rep.green, rep.summary()
    dbs = control.load_name_map(pg, PIPELINE, SRC)
    cur.execute(f"SELECT id FROM {quote_mysql(dbs[TENANTS[2]])}.`x:y` ORDER BY id")
    assert [r[0] for r in cur.fetchall()] == [2, 3]
    fig = _figures(_saved_report("ts_truth_hostile"), table)
    assert (fig["rows_source"], fig["rows_target"], fig["orphans_copied"]) == (4, 4, 2)
