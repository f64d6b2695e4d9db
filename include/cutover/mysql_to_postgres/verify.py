"""Verify a copied table: every row compared MySQL ↔ PostgreSQL after type mapping, then the GX gate.

The comparison is the consistency engine's (:func:`cutover.consistency.diff.diff_pair`): both sides
render each value in one canonical text inside their own database (kinds inferred from both column
types — e.g. MySQL TIME ↔ interval, CHAR(36) ↔ uuid with an override, DATETIME(6) ↔ timestamp(3) at
the coarser precision), hash rows, compare segment checksums and list the keys that differ. Rows in
dead letters are expected to be missing on the target and nothing else.

**At a fence** (binlog mode, :func:`verify_at_fence`): both sides are compared at one binlog position
P, so a table verifies while its source is written (the idea of Vitess VDiff). The unit's advisory lock
is taken first (every sync of the table takes it per transaction: from then on no sync moves the target);
then a source session opens a consistent snapshot (:func:`cutover.binlog.consistent_snapshot`) whose
position is P; the table is caught up to exactly P with the changed rows read again **in that snapshot**
(:func:`cutover.mysql_to_postgres.sync.sync_units` with ``stop_at=P, source=<snapshot>``); the consistency
engine then reads the source side in the same snapshot and the target while the lock still holds it.
``Verification.detail["fence"]`` records P (``position``), the catch-up and how long the lock was held.

**Watermark mode** (no binary log) has no position to stand on: it keeps the earlier behaviour — catch
up by watermark, then compare with the source read now (``detail["fence"]`` is None and says why); under
a steady writer such a table verifies only once writes stop.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from cutover import control
from cutover.connections import pg_connect
from cutover.identifiers import slugify
from cutover.lifecycle.spec import Verification
from cutover.mysql_to_postgres.config import PIPELINE, MysqlToPostgresConfig
from cutover.mysql_to_postgres.typemap import TableMap

log = logging.getLogger(__name__)


def pair_spec(cfg: MysqlToPostgresConfig, tm: TableMap) -> Any:
    """The consistency pair of a copied table: key, compared columns, target names, overridden kinds.
    A table without a key is compared with every column as its key (duplicate rows count once)."""
    from cutover.consistency.spec import Endpoint, PairSpec
    from cutover.mysql_to_postgres.build import pair_name

    key = tuple(tm.key) or tuple(c.source for c in tm.columns)
    return PairSpec(
        name=pair_name(cfg, tm.source),
        source=Endpoint(cfg.source_conn_id, table=f"{cfg.source_database}.{tm.source}"),
        target=Endpoint(cfg.target_conn_id, table=f"{cfg.target_schema}.{tm.target}"),
        key=key,
        columns=tuple(c.source for c in tm.columns if c.source not in key),
        mapping={c.source: c.target for c in tm.columns if c.source != c.target},
        kinds={c.source: c.kind for c in tm.columns if c.kind},
        description=f"mysql_to_postgres {cfg.source_database}.{tm.source} → {cfg.target_schema}.{tm.target}",
    )


def dead_letter_keys(cfg: MysqlToPostgresConfig, unit_key: str) -> set[str]:
    """The record keys (:func:`cutover.mysql_to_postgres.load.key_text`) of the unit's dead letters."""
    with pg_connect(cfg.control_conn_id) as conn:
        return {str(r[0]) for r in conn.execute(
            f"SELECT DISTINCT record_key FROM {control.SCHEMA}.dead_letters WHERE pipeline = %s AND unit_key = %s",
            (PIPELINE, unit_key)).fetchall()}


def compare_table(cfg: MysqlToPostgresConfig, tm: TableMap, unit_key: str, run_id: str, *,
                  source_session: Any | None = None) -> Verification:
    """Counts and checksums of both sides through the consistency engine, then (when ``gx_gate``) the
    GX checkpoint. Fails on an extra or changed row, and on missing rows beyond the dead letters.
    ``source_session``: read the source side through this open snapshot session (a fence)."""
    from cutover.consistency.diff import diff_pair
    from cutover.mysql_to_postgres.load import key_text

    res = diff_pair(pair_spec(cfg, tm), source_session=source_session)
    letters = dead_letter_keys(cfg, unit_key) if res.missing else set()
    unexplained = [k for k in res.missing if key_text(k) not in letters] if tm.key else list(res.missing)
    dead = len(res.missing) - len(unexplained)
    failures: list[str] = []
    if res.target_rows != res.source_rows - dead and not (res.extra or res.changed or unexplained):
        failures.append(f"{tm.source}: {res.source_rows} source rows, {res.target_rows} target rows"
                        f"{f' ({dead} in dead letters)' if dead else ''} — duplicate rows in a table without a key?")
    if res.extra or res.changed or unexplained:
        d = res.details(max_keys=20)
        failures.append(
            f"{tm.source}: {res.source_rows} source rows, {res.target_rows} target rows; "
            f"{len(res.missing)} missing ({dead} of them in dead letters), {len(res.extra)} extra, {len(res.changed)} changed; "
            f"first keys: {(d['changed_keys'] or d['missing_keys'] or d['extra_keys'])[:5]}")
    detail: dict[str, Any] = {"consistency": res.details(max_keys=100), "dead_letters": dead, "summary": res.summary()}
    if cfg.gx_gate and not failures:
        detail["gate"] = _gate(cfg, tm, res.source_rows - dead, run_id, failures)
    # the engine compares segment checksums of both sides; equal sides share one checksum text
    same = "equal" if res.equal else None
    return Verification(res.source_rows, res.target_rows, f"{res.mode}:{res.source_rows}",
                        f"{res.mode}:{res.source_rows}" if same else f"{res.mode}:{res.differences} differences",
                        failures, detail)


def _gate(cfg: MysqlToPostgresConfig, tm: TableMap, rows: int, run_id: str, failures: list[str]) -> dict[str, Any]:
    from cutover.quality import run_gate

    exps: list[dict[str, Any]] = [{"type": "expect_table_row_count_to_equal", "kwargs": {"value": rows}}]
    keys = [tm.column(k).target for k in tm.key]
    for c in keys:
        exps.append({"type": "expect_column_values_to_not_be_null", "kwargs": {"column": c}})
    if len(keys) == 1:
        exps.append({"type": "expect_column_values_to_be_unique", "kwargs": {"column": keys[0]}})
    elif keys:
        exps.append({"type": "expect_compound_columns_to_be_unique", "kwargs": {"column_list": keys}})
    for col in tm.columns:
        if not col.nullable and col.target not in keys:
            exps.append({"type": "expect_column_values_to_not_be_null", "kwargs": {"column": col.target}})
    res = run_gate(f"generated__mysql_to_postgres__{slugify(cfg.target_schema)}__{slugify(tm.target)}",
                   conn_id=cfg.target_conn_id, schema=cfg.target_schema, table=tm.target, expectations=exps,
                   run_id=run_id, raise_on_failure=False)
    if not res.success:
        failures.append(f"GX gate failed on {cfg.target_schema}.{tm.target}: " + "; ".join(res.failures[:5]))
    return {"success": res.success, "evaluated": res.evaluated, "failed": res.failed, "docs": res.docs_index}


def verify_at_fence(cfg: MysqlToPostgresConfig, tm: TableMap, unit_key: str, run_id: str) -> Verification:
    """Prove a binlog-synced table at one position P (see the module docstring): lock the unit, open the
    fence snapshot, catch up to exactly P from it, compare both sides with the source read in it.

    Returns the :class:`Verification` with ``detail["fence"] = {"position": "file:pos", "lock_wait_s",
    "held_s"}`` and ``detail["caught_up"]`` (the catch-up's figures). Raises what the sync raises
    (:class:`cutover.binlog.BinlogUnavailable`, ``BinlogPositionPurged``).
    """
    from cutover import binlog
    from cutover.mysql_to_postgres import load, sync

    t0 = time.monotonic()
    with pg_connect(cfg.target_conn_id, autocommit=True) as lock:
        sync.lock_units(lock, [unit_key], session=True)
        locked = time.monotonic()
        try:
            with load.source_session(cfg.source_conn_id) as src:
                cur = src.cursor()
                fence = binlog.consistent_snapshot(cur)
                cur.close()
                try:
                    caught = sync.sync_units(cfg, [unit_key], {unit_key: tm}, stop_at=fence, source=src, target=lock)
                    res = compare_table(cfg, tm, unit_key, run_id, source_session=src)
                finally:
                    src.rollback()
        finally:
            sync.unlock_units(lock, [unit_key])
    held = time.monotonic() - locked
    res.detail["caught_up"] = caught
    res.detail["fence"] = {"position": str(fence), "mode": "binlog snapshot", "lock_wait_s": round(locked - t0, 3),
                           "held_s": round(held, 3)}
    log.info("%s verified at fence %s: %s (lock held %.2f s)", tm.source, fence,
             "equal" if res.passed else "; ".join(res.failures[:3]), held)
    return res
