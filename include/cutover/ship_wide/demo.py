"""The ship_wide part of ``make demo``: generated narrow time series, built and verified by
``ship_wide_build``, then cut over by ``ship_wide_cutover`` with its approval turned off for the demo.

Each demo run starts from a clean slate (earlier wide tables, maps and checkpoints are rolled back
and dropped), so it can be repeated. The sample has channel names that need mapping and a few rows
whose value does not match their format, so the demo also shows the name map and dead letters.
"""

from __future__ import annotations

from typing import Any

SCHEMA = "tenant"


def demo_step(scale: float) -> dict[str, Any]:
    """Seed the narrow table and return the run conf of ``ship_wide_build``."""
    from cutover.connections import pg_connect
    from cutover.samples import ship as samples
    from cutover.ship_wide import ShipWideConfig, rollback_ship
    from cutover.ship_wide.cutover import known_ships

    cfg = ShipWideConfig(schema=SCHEMA)
    with pg_connect(cfg.source_conn_id) as conn:
        conn.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
    for ship in known_ships(cfg):
        rollback_ship(cfg, ship, drop=True, actor="make demo")
    with pg_connect(cfg.source_conn_id) as conn:
        samples.generate(
            conn, SCHEMA, ships=3, channels=20, timestamps=max(200, int(2000 * scale)), seed=42,
            odd_names=True, conflict_channels=1, mismatches=2, duplicates=2,
        )
    # units [] = every ship; the build never switches readers (that is ship_wide_cutover's job)
    return {"units": [], "schema": SCHEMA, "text_columns": False, "chunk_rows": 50_000, "parallelism": 2,
            "dry_run": False}


def demo_cutover_step(scale: float) -> dict[str, Any]:
    """The run conf of ``ship_wide_cutover``: every verified ship. No human answers in the demo, so it
    turns this pipeline's approval policy off for its own process (env, as an operator would); a real
    deployment keeps it on and approves under *Required Actions*."""
    import os

    from cutover.lifecycle.switch import policy_env
    from cutover.ship_wide.config import PIPELINE

    os.environ[policy_env(PIPELINE)] = "off"
    return {"units": [], "schema": SCHEMA}
