"""
### Consistency sweep — the nightly full comparison of every pair kept in sync (02:30 UTC)

The same check as `consistency_checks`, over **whole pairs** instead of their recent window: it
catches what a window cannot see (old rows changed or deleted on one side, rows whose window column
never moved). It is a separate DAG so that its long runs never delay the 10-minute checks.
Everything below applies unchanged, except that `full_sweep` defaults to true.

---


While both sides of a migration live (dual-write, incremental sync, per-tenant routing), this DAG
compares every pair registered in `cutover.sync_pairs` — source vs target, MySQL or PostgreSQL on
either side, tables or queries (e.g. a narrow table vs its wide pivot) — over its **recent window**:
`[run time − settle − recent_window, run time − settle)` on the pair's window column. Segment
checksums are computed inside each database and only differing segments are bisected, down to the
keys: every **missing** (source only), **extra** (target only) and **changed** key is reported.

Each check is recorded in `cutover.consistency_results`; *Cutover → Migration status* shows each
pair's last check, lag and differences (view `cutover.consistency_status`), and the GX suite
`consistency_results` validates the run's results into the data docs (*Cutover → Data docs*).

**A difference fails the pair's task** (after recording it), which fires the alert: a loud log line
and, when the Airflow connection `cutover_alerts` exists, a JSON POST to its webhook.

**Params** (the trigger form):

| param | meaning |
|---|---|
| `pairs` | pair names to check; empty = every enabled pair |
| `full_sweep` | compare whole pairs instead of their recent window (the nightly `consistency_sweep` does this) |
| `repair` | re-sync the differing keys of pairs registered with `repair` ≠ `none`, then re-check |

**Register a pair** (from the pipeline that keeps it in sync):
`cutover.consistency.registry.register_pair(conn, PairSpec(name=…, source=Endpoint(conn_id, table=…),
target=Endpoint(…), key=("id",), window_column="updated_at", mapping={…}, repair="upsert"))`.

Read-only unless `repair` is set; rerunning is always safe.
"""

from __future__ import annotations

from cutover.consistency.dag import consistency_dag

consistency_sweep = consistency_dag("consistency_sweep", "30 2 * * *", full_sweep=True, doc_md=__doc__, extra_tags=("sweep",))
