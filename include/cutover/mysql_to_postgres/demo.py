"""The mysql_to_postgres part of ``make demo``: the sample database of every MySQL type
(:mod:`cutover.samples.mysql_types`, with two rows PostgreSQL cannot hold — they land in dead letters)
copied through the read-only user ``cutover_ro`` by ``mysql_to_postgres_build``, kept fresh from the
binary log by ``mysql_to_postgres_sync``, cut over by ``mysql_to_postgres_cutover`` (approval off for
the demo), and the platform's own tables with row-level security applied by ``platform_schema``.

Each demo run starts clean: what an earlier demo built is rolled back and dropped.
"""

from __future__ import annotations

from typing import Any

SOURCE = "cutover_m2p"
SCHEMA = "mysql_mirror"


def demo_step(scale: float) -> dict[str, Any]:
    """Seed the sample database and the read-only user (after dropping an earlier demo's copies)."""
    from cutover.connections import MYSQL_SOURCE
    from cutover.lifecycle.switch import rollback, trigger_record
    from cutover.mysql_to_postgres.build import known_units
    from cutover.mysql_to_postgres.config import MysqlToPostgresConfig
    from cutover.mysql_to_postgres.readonly import ensure_read_only_user
    from cutover.mysql_to_postgres.spec import SPEC
    from cutover.samples.mysql_types import seed

    cfg = MysqlToPostgresConfig(source_database=SOURCE, target_schema=SCHEMA)
    if known_units(cfg):
        rollback(SPEC, cfg, None, "make-demo-mysql-to-postgres-reset", drop=True, discard_target_writes=True,
                 triggered_by=trigger_record(None, via="make demo: reset"))
    seed(MYSQL_SOURCE, SOURCE, rows=max(500, int(5_000 * scale)))
    ensure_read_only_user(MYSQL_SOURCE, "cutover_ro", [SOURCE])
    return {"source_database": SOURCE, "target_schema": SCHEMA, "tables": [], "units": [], "gx_gate": True,
            "chunk_rows": 10_000, "dry_run": False}


def demo_sync_step(scale: float) -> dict[str, Any]:
    """Changes on the source after the build (an insert, updates, a delete), for the sync to apply."""
    from cutover.connections import MYSQL_SOURCE, mysql_connect

    with mysql_connect(MYSQL_SOURCE, database=SOURCE) as conn:
        cur = conn.cursor()
        cur.execute("UPDATE customers SET balance = balance + 1, name = CONCAT(name, ' ✓') WHERE id BETWEEN 4 AND 13")
        cur.execute("DELETE FROM orders ORDER BY customer_id DESC, order_no DESC LIMIT 5")
        cur.execute("INSERT INTO customers (`user`, name, status) VALUES ('new-after-build', '새 고객', 'active')")
    return {"source_database": SOURCE, "target_schema": SCHEMA}


def demo_cutover_step(scale: float) -> dict[str, Any]:
    """Cut over ``orders`` and ``events_log`` (approval off: no human in the demo). ``customers`` stays on
    MySQL: two of its rows are dead letters, so its checksums differ and the cutover refuses it. The demo
    turns this pipeline's approval policy off for its own process (env, as an operator would)."""
    import os

    from cutover.lifecycle.switch import policy_env
    from cutover.mysql_to_postgres.config import PIPELINE

    os.environ[policy_env(PIPELINE)] = "off"
    return {"units": ["orders", "events_log"], "source_database": SOURCE, "target_schema": SCHEMA}


def demo_platform_step(scale: float) -> dict[str, Any]:
    """The platform schema's migrations (idempotent: a second demo applies nothing)."""
    return {"schema": "platform", "dry_run": False}
