"""
### ship_wide_live — keep every built wide table less than a second behind the narrow table

A **continuously running sync** (`schedule="@continuous"`: Airflow starts the next run as soon as
one ends, one at a time). Its one task follows the narrow table for `run_for_s` seconds and
returns, so each run's log stays bounded: every `poll_s` it reads the rows committed since the last
poll for *all* built ships at once (one index range scan of the ingest sequence), pivots them per
ship with the sync's own code and rules, and upserts them, each ship's watermark moving in the same
transaction (`cutover.ship_wide.live`). Measured (`benchmarks/bench_ship_wide_lag.py`, 200 ships ×
20 channels, every ship a minute's batch, one 2-core machine): see the README for the figures.

**Why this design** (measured against the in-database dual-write trigger and the minute schedule):
the writers of the narrow table keep their insert rate (the follower reads by index, never in their
transaction), a fault in the wide tables (a lock, a channel limit, a full page) never fails an
insert at the source, and one implementation of the value rules (dead letters, latest row wins,
new channels) serves the build, the minute sync and the follower. What it costs: one worker slot
for as long as it runs, two database connections, and a few ms of database time per poll. Between
two runs the lag grows by the time Airflow takes to start the next one (seconds); a longer
`run_for_s` makes that rarer, a shorter one keeps the logs small.

**Safety nets**: `ship_wide_sync` still runs every minute (it re-reads an overlap and builds ships
that appear), and `consistency_checks` keeps comparing every ship's pair. A ship that a
verification or the minute sync holds is skipped (try-lock) and caught up at a later poll; a ship
that fails is retried with backoff while the others go on. A killed run loses nothing: the next one
starts from the ships' checkpoints.

**Params**: `schema` (of the narrow table), `run_for_s` (how long one run follows), `poll_s`
(seconds between polls), `gap_timeout_s` (how long a skipped ingest id is waited for),
`chunk_rows` (most narrow rows one poll reads).

**Turn it on**: unpause `ship_wide_live` after the first `ship_wide_build`; pause it to stop (the
minute sync keeps the tables current, a minute behind). It never switches readers: see
`ship_wide_cutover` and `ship_wide_rollback`.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from airflow.sdk import Param, dag, task

from cutover.dag_defaults import default_args


@dag(
    dag_id="ship_wide_live",
    schedule="@continuous",
    start_date=datetime(2024, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,  # @continuous requires it
    default_args=default_args(retry_delay=timedelta(seconds=2), max_retry_delay=timedelta(seconds=30)),
    doc_md=__doc__,
    tags=["cutover", "ship_wide", "sync"],
    params={
        "schema": Param("tenant", type="string", minLength=1, title="Schema", description="Schema of the narrow table."),
        "run_for_s": Param(600, type="integer", minimum=1, maximum=3600, title="Run for (s)",
                           description="How long one run follows before it ends and the next starts."),
        "poll_s": Param(0.2, type="number", minimum=0.01, maximum=10, title="Poll every (s)",
                        description="Seconds between two reads of the narrow table."),
        "gap_timeout_s": Param(120, type="number", minimum=0, maximum=3600, title="Gap timeout (s)",
                               description="How long an ingest id skipped over (its transaction not yet committed) is re-read."),
        "chunk_rows": Param(200_000, type="integer", minimum=1000, title="Chunk rows",
                            description="Most narrow rows one poll reads."),
    },
)
def ship_wide_live() -> None:
    @task(execution_timeout=timedelta(hours=2))
    def follow(params: dict | None = None, run_id: str | None = None) -> dict:
        """Follow the narrow table for run_for_s seconds, keeping every built wide table current."""
        from cutover.ship_wide import ShipWideConfig
        from cutover.ship_wide.live import follow as follow_narrow

        p = dict(params or {})
        return follow_narrow(ShipWideConfig.from_params(p), stop_after_s=float(p.get("run_for_s") or 600),
                             poll_s=float(p.get("poll_s") or 0.2), gap_timeout_s=float(p.get("gap_timeout_s") or 120),
                             run_id=run_id)

    follow()


ship_wide_live()
