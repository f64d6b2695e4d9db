"""Verify a copied table: every row compared MySQL ↔ PostgreSQL after type mapping, then the GX gate.

The comparison is the consistency engine's (:func:`cutover.consistency.diff.diff_pair`): both sides
render each value in one canonical text inside their own database (kinds inferred from both column
types — e.g. MySQL TIME ↔ interval, CHAR(36) ↔ uuid with an override, DATETIME(6) ↔ timestamp(3) at
the coarser precision), hash rows, compare segment checksums and list the keys that differ. Rows in
dead letters are expected to be missing on the target and nothing else.
"""

from __future__ import annotations

import logging
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


def compare_table(cfg: MysqlToPostgresConfig, tm: TableMap, unit_key: str, run_id: str) -> Verification:
    """Counts and checksums of both sides through the consistency engine, then (when ``gx_gate``) the
    GX checkpoint. Fails on an extra or changed row, and on missing rows beyond the dead letters."""
    from cutover.consistency.diff import diff_pair
    from cutover.mysql_to_postgres.load import key_text

    res = diff_pair(pair_spec(cfg, tm))
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
