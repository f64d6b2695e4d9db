"""
### ship_wide_rollback — put readers of one ship, a list, or all back on the narrow table

For every chosen ship of `ship_wide_build`: the reader view `<schema>.ts_reader_<ship>` is
recreated over the narrow table and the routing entry goes back to `narrow` (recorded in
`cutover.switch_history`), in one transaction per ship. With `drop_wide` on, the wide table, its
channel → column map, its set-aside key backup and its watermark are removed too, so a later
`ship_wide_build` starts from scratch. Pause `ship_wide_sync` first if you drop.

**Params**: `ships` (`all`, one id, or a comma-separated list), `schema`, `drop_wide`.

Running it twice changes nothing the second time (the switch is recorded again).
"""

from __future__ import annotations

from airflow.sdk import Param, dag, task

from cutover.dag_defaults import default_args


@dag(
    dag_id="ship_wide_rollback",
    schedule=None,
    catchup=False,
    max_active_runs=1,
    default_args=default_args(),
    doc_md=__doc__,
    tags=["cutover", "ship_wide", "rollback"],
    params={
        "ships": Param("all", type="string", minLength=1, description="all, one ship id, or a comma-separated list"),
        "schema": Param("tenant", type="string", minLength=1, description="Schema of the narrow table."),
        "drop_wide": Param(False, type="boolean", description="Also drop the wide table and its state."),
    },
)
def ship_wide_rollback() -> None:
    @task
    def ships_to_roll_back(params: dict | None = None) -> list[str]:
        """The chosen ships that have a wide table or state (all: every known ship of the schema)."""
        from cutover.ship_wide import ShipWideConfig
        from cutover.ship_wide.cutover import known_ships

        assert params is not None
        cfg = ShipWideConfig(schema=params["schema"])
        if params["ships"].strip().lower() == "all":
            return known_ships(cfg)
        return [s.strip() for s in params["ships"].split(",") if s.strip()]

    @task
    def roll_back(ship: str, params: dict | None = None, run_id: str | None = None) -> dict:
        """Readers of one ship back to narrow; optionally drop its wide table and state."""
        from cutover.ship_wide import ShipWideConfig, rollback_ship

        assert params is not None
        return rollback_ship(ShipWideConfig(schema=params["schema"]), ship, drop=bool(params["drop_wide"]),
                             run_id=run_id, actor="ship_wide_rollback")

    roll_back.expand(ship=ships_to_roll_back())


ship_wide_rollback()
