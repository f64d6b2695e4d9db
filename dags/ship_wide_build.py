"""
### ship_wide_build — narrow time series → one wide table per ship, verified, then cut over

Moves `<schema>.tbl_data_timeseries(ship_id, data_channel_id, created_time, value_format, double_v,
long_v, str_v, bool_v)` into one table per ship, `<schema>.tbl_data_timeseries_<ship>`: primary key
`created_time`, one column per channel (Decimal → double precision, Integer → bigint, String → text,
Boolean → boolean; a channel with conflicting formats → text; or every column text). Live data keeps
arriving: `ship_wide_sync` (every minute) keeps built ships up to date.

**Life cycle**, one mapped task group `ship_chain` per ship (smallest first; a ship that fails stops
alone, the others go on): **plan** (rows, channels, time range per
ship, in the log and the run's evidence) → **prepare** (wide table, channel → column map in
`cutover.name_map`, key set aside, reader view `ts_reader_<ship>` on the narrow table) → **copy**
(chunks of `chunk_rows` narrow rows, each committed with its watermark: a killed task resumes with no
duplicate and no gap; bad rows → `cutover.dead_letters`. When the narrow and the wide tables share a
database, PostgreSQL pivots the chunks, `copy_connections` at a time: a time whose rows arrive in an
order already seen goes through arrays and subscripts, any other through the general statement;
otherwise rows are streamed out with COPY, pivoted with pyarrow and loaded with COPY) →
**finalize** (primary key restored, key ANALYZEd) → **verify** (catch-up sync, distinct times = wide rows,
checksum of every cell, GX suite; data docs rebuilt) → **cutover** (only when `cutover` is on).

**Params**

| param | meaning |
|---|---|
| `ships` | `all`, one ship id, or a comma-separated list |
| `schema` | schema of the narrow table (and of the wide tables) |
| `text_columns` | every column `text`, as the legacy readers expect (default: typed) |
| `chunk_rows` | narrow rows per chunk (memory is bounded by it) |
| `pivot` | `auto` (in the database when source and target are one database), `server`, or `client` |
| `parallelism` | ships copied at the same time |
| `copy_connections` | chunks of one ship worked on at the same time, a connection each (pivoted in the database, or read ahead for the client pivot) |
| `dry_run` | plan only: report and stop |
| `cutover` | switch readers of every verified ship to its wide table |

**Cut over later**: trigger again with `cutover` on (copy is idempotent; verify runs again), or
switch one ship with `cutover.ship_wide.cutover_ship`. Readers read `<schema>.ts_reader_<ship>`; the
switch is recorded in `cutover.switches` / `cutover.switch_history`.

**Roll back**: trigger `ship_wide_rollback` (readers back to the narrow table; optionally drop the
wide table and its state).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from airflow.sdk import Param, dag, task, task_group

from cutover.dag_defaults import default_args


def _cfg(params: dict) -> object:
    from cutover.ship_wide import ShipWideConfig

    return ShipWideConfig(schema=params["schema"], text_columns=bool(params["text_columns"]),
                          chunk_rows=int(params["chunk_rows"]), pivot=str(params.get("pivot", "auto")),
                          copy_connections=int(params.get("copy_connections", 2)))


@contextmanager
def _limits_fail_at_once() -> Iterator[None]:
    """A ship over PostgreSQL's column or row limits fails the same on every try: no retries."""
    from airflow.sdk.exceptions import AirflowFailException

    from cutover.ship_wide import ChannelLimitExceeded

    try:
        yield
    except ChannelLimitExceeded as exc:
        raise AirflowFailException(str(exc)) from exc


@dag(
    dag_id="ship_wide_build",
    schedule=None,
    catchup=False,
    max_active_runs=1,
    default_args=default_args(),
    doc_md=__doc__,
    tags=["cutover", "ship_wide", "plan", "copy", "verify", "cutover"],
    params={
        "ships": Param("all", type="string", minLength=1, title="Ships", description="all, one ship id, or a comma-separated list"),
        "schema": Param("tenant", type="string", minLength=1, title="Schema", description="Schema of the narrow table."),
        "text_columns": Param(False, type="boolean", title="Text columns", description="Every wide column text (legacy readers)."),
        "chunk_rows": Param(200_000, type="integer", minimum=1000, maximum=5_000_000, title="Chunk rows"),
        "pivot": Param("auto", type="string", enum=["auto", "server", "client"], title="Pivot",
                       description="Where chunks are pivoted: auto = inside PostgreSQL when narrow and wide share a database."),
        "parallelism": Param(4, type="integer", minimum=1, maximum=32, title="Parallelism", description="Ships copied at once."),
        "copy_connections": Param(2, type="integer", minimum=1, maximum=16, title="Connections per ship",
                                  description="Chunks of one ship worked on at once, a connection each."),
        "dry_run": Param(False, type="boolean", title="Dry run", description="Plan only."),
        "cutover": Param(False, type="boolean", title="Cut over", description="Switch readers of verified ships."),
    },
)
def ship_wide_build() -> None:
    @task
    def plan(params: dict | None = None, run_id: str | None = None) -> list[dict]:
        """Find the ships (all or the listed ones), smallest first; report rows, channels, time range."""
        from cutover.ship_wide import plan_run

        assert params is not None
        ships = None if params["ships"].strip().lower() == "all" else [s.strip() for s in params["ships"].split(",") if s.strip()]
        plans = plan_run(_cfg(params), ships, run_id=run_id, params=params)
        return [] if params["dry_run"] else plans

    @task(max_active_tis_per_dagrun=8)
    def prepare(ship: dict, params: dict | None = None, run_id: str | None = None) -> dict:
        """Create the ship's wide table and column map; set its key aside; readers on the narrow view."""
        from cutover.ship_wide import prepare_ship

        assert params is not None
        with _limits_fail_at_once():
            return prepare_ship(_cfg(params), ship, run_id=run_id)

    @task(max_active_tis_per_dagrun=32)
    def copy(ship: dict, params: dict | None = None, run_id: str | None = None) -> dict:
        """Copy the ship's history in committed chunks (resumes after the last one), then finalize."""
        from cutover.ship_wide import copy_history, finalize_ship
        from cutover.ship_wide.pipeline import parallel_slot

        assert params is not None
        cfg = _cfg(params)
        with parallel_slot(cfg, run_id or "", int(params["parallelism"])), _limits_fail_at_once():
            done = copy_history(cfg, ship["ship_id"], run_id=run_id, rows_total=ship["rows"])
        final = finalize_ship(cfg, ship["ship_id"], run_id=run_id)
        logging.getLogger("airflow.task").info("ship %s copied: %s; finalized: %s", ship["ship_id"], done, final)
        return {**ship, "copy": done, "finalize": final}

    @task
    def verify(ship: dict, params: dict | None = None, run_id: str | None = None) -> dict:
        """Counts, full checksum and GX suite; a failure stops this ship before its cutover."""
        from cutover.ship_wide import verify_ship

        assert params is not None
        res = verify_ship(_cfg(params), ship["ship_id"], run_id=run_id)
        return {"ship_id": ship["ship_id"], "narrow": res["narrow"], "wide": res["wide"], "gate": res.get("gate")}

    @task
    def cutover(ship: dict, params: dict | None = None, run_id: str | None = None) -> dict:
        """Switch the ship's readers to its wide table (only when the `cutover` param is on)."""
        from cutover.ship_wide import cutover_ship

        assert params is not None
        if not params["cutover"]:
            return {"ship_id": ship["ship_id"], "switched": False}
        return {**cutover_ship(_cfg(params), ship["ship_id"], run_id=run_id, actor="ship_wide_build"), "switched": True}

    @task(trigger_rule="all_done")
    def report(results: list[dict] | None = None, ships: list[dict] | None = None, run_id: str | None = None) -> None:
        """Close the run in the control schema with its evidence; fail the run when a ship did not make it."""
        from airflow.sdk.exceptions import AirflowFailException

        from cutover import control
        from cutover.connections import pg_connect

        # the group's outputs; with a single ship left Airflow may hand over the one dict itself
        results = [results] if isinstance(results, dict) else [r for r in (results or []) if isinstance(r, dict)]
        done = {r["ship_id"] for r in results}
        with pg_connect() as conn:
            control.ensure_schema(conn)
            units = control.list_units(conn, run_id or "")
            failed = sorted({u["unit_key"] for u in units if u["state"] == "failed"}
                            | {s["ship_id"] for s in (ships or []) if s["ship_id"] not in done})
            control.finish_run(conn, run_id or "", "failed" if failed else "success",
                               {"cutover": results, "failed_units": failed})
        if failed:  # the other ships went through; the run is not green
            raise AirflowFailException(f"{len(failed)} ship(s) did not finish: {', '.join(failed[:20])} "
                                       "(see each ship_chain's task log; rerun the run to resume them)")

    @task_group
    def ship_chain(ship: dict) -> object:
        """One ship's life cycle; a ship that fails stops alone, the other ships go on."""
        return cutover(verify(copy(prepare(ship))))

    ships = plan()
    report(ship_chain.expand(ship=ships), ships)


ship_wide_build()
