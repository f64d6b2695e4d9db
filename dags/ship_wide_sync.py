"""
### ship_wide_sync — keep every built wide table up to date while narrow data keeps arriving

Every minute (change `schedule` in this file or trigger by hand), for every ship that
`ship_wide_build` has built in the schema: read the narrow rows whose ingest sequence (`id`) is past
the ship's watermark (minus an overlap of `sync_overlap` rows, so rows whose transaction committed
late are not missed), pivot them, and upsert them into the wide table. The watermark is the ingest
sequence, not the clock, so **late rows** (older `created_time`) are moved like new ones, and a
duplicate reading still ends with the latest row. A **new channel** gets its column
(`ALTER TABLE … ADD COLUMN`, catalog only) and the reader view is recreated, in the same
transaction; nothing stops. Bad rows go to `cutover.dead_letters`.

**Params**: `schema` (of the narrow table), `chunk_rows`, `sync_overlap`.

**Cut over / roll back**: this DAG never switches readers; see `ship_wide_build` and
`ship_wide_rollback`. Pausing it is safe: the next run catches up from the watermark.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from airflow.sdk import Param, dag, task

from cutover.dag_defaults import default_args


@dag(
    dag_id="ship_wide_sync",
    schedule="* * * * *",
    start_date=datetime(2024, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    default_args=default_args(retry_delay=timedelta(seconds=5), max_retry_delay=timedelta(minutes=1)),
    doc_md=__doc__,
    tags=["cutover", "ship_wide", "sync"],
    params={
        "schema": Param("tenant", type="string", minLength=1, title="Schema", description="Schema of the narrow table."),
        "chunk_rows": Param(200_000, type="integer", minimum=1000, title="Chunk rows", description="Narrow rows per upsert chunk."),
        "sync_overlap": Param(10_000, type="integer", minimum=0, title="Sync overlap", description="Ingest ids re-read each run."),
    },
)
def ship_wide_sync() -> None:
    @task
    def sync(params: dict | None = None, run_id: str | None = None) -> list[dict]:
        """Sync every built ship of the schema; a ship that fails fails the task after the others ran."""
        from cutover.ship_wide import ShipWideConfig, built_ships, sync_ship

        cfg = ShipWideConfig.from_params(dict(params or {}))
        results, errors = [], []
        for ship in built_ships(cfg):
            try:
                results.append(sync_ship(cfg, ship, run_id=run_id))
            except Exception as exc:  # keep the other ships flowing; fail the task at the end
                errors.append(f"{ship}: {exc}")
        if errors:
            raise RuntimeError("sync failed for " + "; ".join(errors))
        return results

    sync()


ship_wide_sync()
