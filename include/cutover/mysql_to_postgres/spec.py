"""``mysql_to_postgres`` on the shared life cycle: its hooks, one MySQL table per unit.

Unit key: ``<source db>><target schema>:<table>``. Backends: ``mysql`` (readers read the MySQL table)
and ``postgres`` (the copied table). Cutover and rollback per table; the sync DAG keeps built tables
fresh until then (and after: MySQL stays the system of record). The switch itself runs inside a short
write pause at a binlog fence (:mod:`cutover.mysql_to_postgres.cutover`).
"""

from __future__ import annotations

from typing import Any

from psycopg import Connection

from cutover.lifecycle.model import PlannedUnit, UnitKey
from cutover.lifecycle.spec import CopyResult, PipelineSpec, UnitContext, Verification
from cutover.mysql_to_postgres.config import PIPELINE, MysqlToPostgresConfig
from cutover.mysql_to_postgres.readonly import WritableSourceError
from cutover.mysql_to_postgres.typemap import TypeMapError


def _plan(cfg: MysqlToPostgresConfig, wanted: list[str] | None) -> list[PlannedUnit]:
    from cutover.mysql_to_postgres.build import plan

    return plan(cfg, wanted)


def _prepare(cfg: MysqlToPostgresConfig, unit: PlannedUnit, ctx: UnitContext) -> dict[str, Any]:
    from cutover.mysql_to_postgres.build import prepare_unit

    return prepare_unit(cfg, unit)


def _copy(cfg: MysqlToPostgresConfig, unit: PlannedUnit, ctx: UnitContext) -> CopyResult:
    from cutover.lifecycle.state import parallel_slot
    from cutover.mysql_to_postgres.build import copy_unit

    with parallel_slot(ctx.run_id, PIPELINE, cfg.parallelism, conn_id=cfg.control_conn_id):
        return copy_unit(cfg, unit, ctx)


def _finalize(cfg: MysqlToPostgresConfig, unit: PlannedUnit, ctx: UnitContext) -> dict[str, Any]:
    from cutover.mysql_to_postgres.build import finalize_unit

    return finalize_unit(cfg, unit)


def _verify(cfg: MysqlToPostgresConfig, unit: PlannedUnit, ctx: UnitContext) -> Verification:
    from cutover.mysql_to_postgres.build import verify_unit

    return verify_unit(cfg, unit, ctx.run_id)


def _close(cfg: MysqlToPostgresConfig, run_id: str, units: list[dict[str, Any]]) -> dict[str, Any]:
    from cutover.mysql_to_postgres.build import close_run

    return close_run(cfg, run_id, units)


def _route(conn: Connection[Any], cfg: MysqlToPostgresConfig, key: UnitKey, backend: str) -> dict[str, Any]:
    from cutover.mysql_to_postgres.build import route_unit

    return route_unit(conn, cfg, key, backend)


def _drop(conn: Connection[Any], cfg: MysqlToPostgresConfig, key: UnitKey) -> dict[str, Any]:
    from cutover.mysql_to_postgres.build import drop_unit

    return drop_unit(conn, cfg, key)


def _known(cfg: MysqlToPostgresConfig) -> list[UnitKey]:
    from cutover.mysql_to_postgres.build import known_units

    return known_units(cfg)


def _unit_key(cfg: MysqlToPostgresConfig, name: str) -> UnitKey:
    """A unit from its table name or its stored key text."""
    if name.startswith(cfg.scope + ":"):
        return UnitKey.parse(name)
    return UnitKey(cfg.scope, (name,))



def _divergence(cfg: MysqlToPostgresConfig, key: UnitKey) -> dict[str, Any] | None:
    from cutover.mysql_to_postgres.divergence import target_divergence

    return target_divergence(cfg, key)


def _switch(cfg: MysqlToPostgresConfig, keys: list[UnitKey], run_id: str) -> Any:
    from cutover.mysql_to_postgres.cutover import table_switch

    return table_switch(cfg, keys, run_id)


def _rollback(cfg: MysqlToPostgresConfig, keys: list[UnitKey], run_id: str) -> Any:
    from cutover.mysql_to_postgres.cutover import table_rollback

    return table_rollback(cfg, keys, run_id)


def _drain_reverse(cfg: MysqlToPostgresConfig, keys: list[UnitKey]) -> dict[str, Any]:
    from cutover.mysql_to_postgres.reverse import drain

    return drain(cfg, keys)


SPEC = PipelineSpec(
    name=PIPELINE,
    unit_noun="table",
    config=MysqlToPostgresConfig.from_params,
    plan=_plan,
    prepare=_prepare,
    copy=_copy,
    finalize=_finalize,
    verify=_verify,
    route=_route,
    drop=_drop,
    known_units=_known,
    scope=lambda cfg: cfg.scope,
    unit_key=_unit_key,
    control_conn_id=lambda cfg: cfg.control_conn_id,
    backends=("mysql", "postgres"),
    key_arity=1,
    permanent_errors=(TypeMapError, WritableSourceError),
    close=_close,
    target_divergence=_divergence,
    drain_reverse=_drain_reverse,
    around_rollback=_rollback,
    around_switch=_switch,
)
