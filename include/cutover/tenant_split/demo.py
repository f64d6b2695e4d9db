"""The tenant_split part of ``make demo``: the sample shop database (``cutover.samples.tenants``, 4
tenants with skewed sizes, triggers, foreign keys) split into one database per tenant by
``tenant_split_build`` with the repo's mapping (``mappings/tenant_split.yaml``: ``customer_notes`` →
``notes``, ``legacy_sessions`` dropped, ``tenants`` copied to every tenant), kept current by
``tenant_split_sync`` and cut over by ``tenant_split_cutover`` with its approval off for the demo.

Each demo run starts from a clean slate: earlier tenant databases are rolled back and dropped.
"""

from __future__ import annotations

from typing import Any

SOURCE = "cutover_source"


def demo_step(scale: float) -> dict[str, Any]:
    """Seed the shared tables (after dropping what an earlier demo built); the build's run conf."""
    from cutover.connections import MYSQL_SOURCE, mysql_connect
    from cutover.lifecycle.switch import rollback, trigger_record
    from cutover.samples.tenants import seed_tenants
    from cutover.tenant_split.config import TenantSplitConfig
    from cutover.tenant_split.cutover import known_units
    from cutover.tenant_split.spec import SPEC

    cfg = TenantSplitConfig(source_database=SOURCE)
    if known_units(cfg):
        rollback(SPEC, cfg, None, "make-demo-tenant-split-reset", drop=True, discard_target_writes=True,
                 triggered_by=trigger_record(None, via="make demo: reset"))
    with mysql_connect(MYSQL_SOURCE, database="") as conn:
        seed_tenants(conn, database=SOURCE, tenants=4, rows=max(2_000, int(10_000 * scale)))
    return {"tenants": [], "tables": [], "units": [], "source_database": SOURCE, "copy_mode": "auto",
            "chunk_rows": 5_000, "parallelism": 2, "gx_gate": True, "dry_run": False}


def demo_sync_step(scale: float) -> dict[str, Any]:
    """A few changes on the source after the build, for ``tenant_split_sync`` to catch up."""
    from cutover.connections import MYSQL_SOURCE, mysql_connect

    with mysql_connect(MYSQL_SOURCE, database="") as conn:
        cur = conn.cursor()
        cur.execute(f"UPDATE {SOURCE}.orders SET status = 'shipped' WHERE status = 'paid' ORDER BY id LIMIT 25")
        cur.execute(f"DELETE FROM {SOURCE}.order_items ORDER BY id DESC LIMIT 5")
    return {"source_database": SOURCE, "tenants": []}


def demo_cutover_step(scale: float) -> dict[str, Any]:
    """Cut over two tenants. No human answers in the demo, so it turns this pipeline's approval policy
    off for its own process (env, as an operator would); a real deployment keeps it on and approves
    under *Required Actions*."""
    import os

    from cutover.lifecycle.switch import policy_env
    from cutover.tenant_split.config import PIPELINE

    os.environ[policy_env(PIPELINE)] = "off"
    return {"units": ["1", "2"], "source_database": SOURCE}
