"""
### ship_wide_sync — the minute safety net of the wide tables, and the builds of ships that appear

Every minute (change `schedule` in this file or trigger by hand), for every ship that
`ship_wide_build` has built in the schema: read the narrow rows whose ingest sequence (`id`) is past
the ship's watermark (minus an overlap of `sync_overlap` rows, so rows whose transaction committed
late are not missed), pivot them, and upsert them into the wide table. The watermark is the ingest
sequence, not the clock, so **late rows** (older `created_time`) are moved like new ones, and a
duplicate reading still ends with the latest row. A **new channel** gets its column
(`ALTER TABLE … ADD COLUMN`, catalog only) and the reader view is recreated, in the same
transaction; nothing stops. Bad rows go to `cutover.dead_letters`.

With `ship_wide_live` running (the follower that keeps wide tables under a second behind), this run
mostly finds nothing new: it re-reads its overlap and catches what the follower could not (a
transaction open longer than the follower's gap timeout, a ship the follower had to leave). The two
never interleave on a ship: both take the ship's advisory lock.

**New ships**: a ship that appears in the narrow table after the build (no checkpoint, no reader
switch, in no build run) gets a `ship_wide_build` run triggered for it (`build_new_ships`), with the
settings of the table's last build; the run is recorded in the control schema as soon as it is asked
for, its ships as planned units, so the next minute does not ask again. Once built, this sync and
the follower pick it up. A ship whose build failed waits for a person (its error is on *Migration
status*). Nothing is built before a first build of the table: that one is a person's decision.

**Params**: `schema` (of the narrow table), `chunk_rows`, `sync_overlap`, `auto_build` (trigger builds
of new ships).

**Cut over / roll back**: this DAG never switches readers; see `ship_wide_cutover` and
`ship_wide_rollback`. Pausing it is safe: the next run catches up from the watermark.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
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
        "auto_build": Param(True, type="boolean", title="Build new ships",
                            description="Trigger ship_wide_build for ships that appear in the narrow table after the build."),
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

    @task
    def new_ships(params: dict | None = None, run_id: str | None = None) -> list[dict]:
        """Ships that appeared after the build: [] or one build request (recorded, then triggered)."""
        from cutover.ship_wide import ShipWideConfig
        from cutover.ship_wide.live import build_requests

        p = dict(params or {})
        if not p.get("auto_build", True):
            return []
        return build_requests(ShipWideConfig.from_params(p), f"new_ships__{run_id}")

    build = TriggerDagRunOperator.partial(
        task_id="build_new_ships", trigger_dag_id="ship_wide_build", skip_when_already_exists=True,
    ).expand_kwargs(new_ships())
    sync() >> build


ship_wide_sync()
