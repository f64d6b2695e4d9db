"""tenant_split checkpoints on the real MariaDB: a checkpoint belongs to one (source, target) pair and is
never trusted when the target table is not what it describes.

Issue #19, "A copy can claim rows it never wrote": the checkpoint key (``<source db>:<tenant>/<table>``)
did not name the target database, so a run with another ``database_prefix`` met an earlier run's
``done`` checkpoint and wrote nothing ("4 rows written, 0 chunks"). Each test below fails on that code.

Own names: source ``ts_ck_src``, target prefixes ``tsck_a_`` / ``tsck_b_``, state ``cutover_state_ck``.
Tenants are hostile names (quotes, case twins) from :data:`cutover.samples.hostile.HOSTILE_NAMES`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cutover import control
from cutover.connections import MYSQL_TARGET, mysql_connect
from cutover.identifiers import quote_mysql
from cutover.lifecycle import stages
from cutover.samples.hostile import HOSTILE_NAMES
from cutover.tenant_split.config import PIPELINE
from cutover.tenant_split.spec import SPEC

from .test_tenant_split import clean_control

pytestmark = pytest.mark.integration

SRC = "ts_ck_src"
PREFIX_A, PREFIX_B = "tsck_a_", "tsck_b_"
STATE = "cutover_state_ck"
TENANTS = ('quo"te', "Mixed Case", "mixed case")
assert set(TENANTS) <= set(HOSTILE_NAMES)
ITEMS, NOTES = 9, 3
MAPPING = """\
tenant_column: tenant
tables:
  accounts: {}
  items: {}
  notes: {}
unlisted: error
"""


def seed(conn: Any) -> None:
    """(Re)create ``ts_ck_src``: a tenant directory, a keyed table (chunked copy) and a keyless one."""
    cur = conn.cursor()
    cur.execute(f"DROP DATABASE IF EXISTS {SRC}")
    cur.execute(f"CREATE DATABASE {SRC} CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
    cur.execute(f"CREATE TABLE {SRC}.accounts (tenant VARCHAR(100) NOT NULL PRIMARY KEY)")
    cur.execute(f"CREATE TABLE {SRC}.items (id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY, tenant VARCHAR(100) NOT NULL, "
                "label VARCHAR(100) NOT NULL, KEY items_tenant (tenant))")
    cur.execute(f"CREATE TABLE {SRC}.notes (tenant VARCHAR(100) NOT NULL, msg TEXT NULL, KEY notes_tenant (tenant))")
    for tenant in TENANTS:
        cur.execute(f"INSERT INTO {SRC}.accounts VALUES (%s)", (tenant,))
        cur.executemany(f"INSERT INTO {SRC}.items (tenant, label) VALUES (%s, %s)",
                        [(tenant, f"item {i} of {tenant} ✓") for i in range(ITEMS)])
        cur.executemany(f"INSERT INTO {SRC}.notes VALUES (%s, %s)", [(tenant, f"note {i}") for i in range(NOTES)])
    conn.commit()


def _drop_targets(cur: Any) -> None:
    cur.execute("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE 'tsck\\_%%' OR SCHEMA_NAME = %s",
                (STATE,))
    for (name,) in cur.fetchall():
        cur.execute(f"DROP DATABASE {quote_mysql(name.decode() if isinstance(name, bytes) else name)}")


def _forget_names(pg: Any) -> None:
    """What another control schema (another deployment on the same target server) would know: no names."""
    pg.execute("DELETE FROM cutover.name_map WHERE pipeline = %s AND scope = %s", (PIPELINE, SRC))
    pg.commit()


@pytest.fixture
def params(tmp_path: Path, pg: Any, mysql: Any) -> Iterator[dict[str, Any]]:
    """A freshly seeded source, no target databases, no control rows; the build's Params (4-row chunks)."""
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text(MAPPING, encoding="utf-8")
    seed(mysql)
    cur = mysql.cursor()
    _drop_targets(cur)
    clean_control(pg, SRC)
    yield {"source_database": SRC, "mapping": str(mapping), "tenant_directory": "accounts", "database_prefix": PREFIX_A,
           "state_database": STATE, "chunk_rows": 4, "parallelism": 2, "gx_gate": False}
    _drop_targets(cur)
    clean_control(pg, SRC)


def _count(db: str, table: str) -> int:
    with mysql_connect(MYSQL_TARGET, database="") as conn:
        cur = conn.cursor()
        cur.execute(f"SELECT COUNT(*) FROM {quote_mysql(db)}.{quote_mysql(table)}")
        return int(cur.fetchone()[0])


def _databases(pg: Any) -> dict[str, str]:
    return control.load_name_map(pg, PIPELINE, SRC)


def _assert_complete(dbs: dict[str, str]) -> None:
    for tenant in TENANTS:
        assert (_count(dbs[tenant], "items"), _count(dbs[tenant], "notes")) == (ITEMS, NOTES), tenant


def _errors(pg: Any, run_id: str) -> list[str]:
    pg.commit()
    return [str(u.get("error") or "") for u in control.list_units(pg, run_id) if u["state"] == "failed"]


def test_a_checkpoint_of_another_prefix_is_never_reused(params: dict[str, Any], pg: Any) -> None:
    """Run A (prefix a) is planned and prepared; run B (prefix b, another deployment's control schema on the
    same target server) builds the same tenants; then A copies. A must write every row into its own
    databases (the old key made A find B's ``done`` checkpoints and write nothing)."""
    run_a = "ts_ck_prefix_a"
    batches = stages.plan(SPEC, params, run_a, max_batches=2)
    for b in batches:
        stages.run_unit_stage(SPEC, "prepare", params, b, run_a)
    dbs_a = _databases(pg)
    assert all(d.startswith(PREFIX_A) for d in dbs_a.values())
    _forget_names(pg)
    rep_b = stages.run_build(SPEC, {**params, "database_prefix": PREFIX_B}, "ts_ck_prefix_b")
    assert rep_b.green, rep_b.summary()
    dbs_b = _databases(pg)
    assert all(d.startswith(PREFIX_B) for d in dbs_b.values())
    _assert_complete(dbs_b)
    for stage in ("copy", "finalize", "verify"):
        for b in batches:
            stages.run_unit_stage(SPEC, stage, params, b, run_a)
    try:
        rep_a = stages.report(SPEC, params, run_a)
    except stages.RunFailed as exc:
        pytest.fail(f"run A is red: {exc.report.summary()}")
    assert rep_a.green
    _assert_complete(dbs_a)
    written = sum(int(u.get("rows_written") or 0) for u in control.list_units(pg, run_a))
    assert written == len(TENANTS) * (1 + ITEMS + NOTES)  # rows really written by A, not claimed from B
    with mysql_connect(MYSQL_TARGET, database="") as conn:  # each checkpoint names its own target database
        cur = conn.cursor()
        cur.execute(f"SELECT target_database, COUNT(*) FROM {STATE}.copy_checkpoints GROUP BY target_database")
        per_db = {r[0]: int(r[1]) for r in cur.fetchall()}
    assert per_db == {d: 3 for d in [*dbs_a.values(), *dbs_b.values()]}


def test_a_truncated_target_is_copied_again(params: dict[str, Any], pg: Any) -> None:
    """A ``done`` checkpoint whose target table was emptied (TRUNCATE: a new table identity) is not
    trusted: the rerun copies the table again from nothing."""
    assert stages.run_build(SPEC, params, "ts_ck_trunc").green
    dbs = _databases(pg)
    victim = dbs["Mixed Case"]
    with mysql_connect(MYSQL_TARGET, database="") as conn:
        conn.cursor().execute(f"TRUNCATE TABLE {quote_mysql(victim)}.items")
        conn.cursor().execute(f"TRUNCATE TABLE {quote_mysql(victim)}.notes")  # the keyless, one-snapshot path too
    rep = stages.run_build(SPEC, params, "ts_ck_trunc_again")
    assert rep.green, rep.summary()
    _assert_complete(dbs)


def test_a_target_the_checkpoints_do_not_describe_is_refused(params: dict[str, Any], pg: Any) -> None:
    """A target table recreated behind Cutover's back while it holds rows, or holding rows no checkpoint
    accounts for: the copy refuses (naming the table), writes nothing, and the run is red."""
    assert stages.run_build(SPEC, params, "ts_ck_refuse").green
    dbs = _databases(pg)
    recreated, unaccounted = dbs['quo"te'], dbs["mixed case"]
    with mysql_connect(MYSQL_TARGET, database="") as conn:
        cur = conn.cursor()
        # recreated and refilled with one stray row: a new identity, rows the checkpoints never wrote
        cur.execute(f"CREATE TABLE {quote_mysql(recreated)}.items_new LIKE {quote_mysql(recreated)}.items")
        cur.execute(f"DROP TABLE {quote_mysql(recreated)}.items")
        cur.execute(f"RENAME TABLE {quote_mysql(recreated)}.items_new TO {quote_mysql(recreated)}.items")
        cur.execute(f"INSERT INTO {quote_mysql(recreated)}.items (id, tenant, label) VALUES (1, 'x', 'stray')")
        # the checkpoints of a filled table lost
        cur.execute(f"DELETE FROM {STATE}.copy_checkpoints WHERE target_database = %s AND target_table = 'items'",
                    (unaccounted,))
        conn.commit()
    rep = stages.run_build(SPEC, params, "ts_ck_refuse_again", raise_on_red=False)
    assert not rep.green
    errors = _errors(pg, "ts_ck_refuse_again")
    assert len(errors) == 2, errors
    assert any(f"{recreated}.items is not the table the checkpoints" in e and "recreated" in e for e in errors), errors
    assert any(f"{unaccounted}.items holds rows but no checkpoint" in e for e in errors), errors
    assert _count(recreated, "items") == 1 and _count(unaccounted, "items") == ITEMS  # nothing written to either
