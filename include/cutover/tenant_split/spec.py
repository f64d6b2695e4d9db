"""``tenant_split`` on the shared life cycle: its hooks, one (tenant, target table) per unit.

Unit key: ``<source database>:<tenant>/<target table>`` (two parts, each escaped). Backends: ``shared``
(the tenant's rows in the shared tables) and ``tenant_db`` (the tenant's own database). Cut over and
roll back per tenant: the units of one tenant switch together (:attr:`PipelineSpec.switch_group`),
inside the tenant's write pause (:func:`cutover.tenant_split.cutover.tenant_switch`).
"""

from __future__ import annotations

import logging
from typing import Any

from psycopg import Connection

from cutover.lifecycle.model import PlannedUnit, UnitKey
from cutover.lifecycle.spec import CopyResult, PipelineSpec, UnitContext, Verification
from cutover.tenant_split.config import PIPELINE, TenantSplitConfig
from cutover.tenant_split.copy import CheckpointMismatch
from cutover.tenant_split.mapping import MappingError
from cutover.tenant_split.plan import PlanError

log = logging.getLogger(__name__)


def _plan(cfg: TenantSplitConfig, wanted: list[str] | None) -> list[PlannedUnit]:
    from cutover.tenant_split.build import plan_and_report

    return plan_and_report(cfg, wanted)


def _prepare(cfg: TenantSplitConfig, unit: PlannedUnit, ctx: UnitContext) -> dict[str, Any]:
    from cutover.tenant_split.build import prepare_unit

    return prepare_unit(cfg, unit, run_id=ctx.run_id)


def _copy(cfg: TenantSplitConfig, unit: PlannedUnit, ctx: UnitContext) -> CopyResult:
    from cutover.lifecycle.state import parallel_slot
    from cutover.tenant_split.build import copy_unit

    with parallel_slot(ctx.run_id, PIPELINE, cfg.parallelism, conn_id=cfg.control_conn_id):
        return copy_unit(cfg, unit, ctx)


def _finalize(cfg: TenantSplitConfig, unit: PlannedUnit, ctx: UnitContext) -> dict[str, Any]:
    from cutover.tenant_split.build import finalize_unit

    return finalize_unit(cfg, unit, run_id=ctx.run_id)


def _verify(cfg: TenantSplitConfig, unit: PlannedUnit, ctx: UnitContext) -> Verification:
    from cutover.tenant_split.build import verify_caught_up

    return verify_caught_up(cfg, unit, run_id=ctx.run_id)


def _close(cfg: TenantSplitConfig, run_id: str, units: list[dict[str, Any]]) -> dict[str, Any]:
    from cutover.tenant_split.build import close_run

    return close_run(cfg, run_id, units)


def _route(conn: Connection[Any], cfg: TenantSplitConfig, key: UnitKey, backend: str) -> dict[str, Any]:
    from cutover.tenant_split.cutover import route_unit

    return route_unit(conn, cfg, key, backend)


def _drop(conn: Connection[Any], cfg: TenantSplitConfig, key: UnitKey) -> dict[str, Any]:
    from cutover.tenant_split.cutover import drop_unit

    return drop_unit(conn, cfg, key)


def _known(cfg: TenantSplitConfig) -> list[UnitKey]:
    from cutover.tenant_split.cutover import known_units

    return known_units(cfg)


def _unit_key(cfg: TenantSplitConfig, name: str) -> UnitKey:
    """A unit from its label ``tenant / table`` or its stored key text."""
    if name.startswith(cfg.scope + ":"):
        return UnitKey.parse(name, 2)
    tenant, sep, table = name.rpartition(" / ")
    if not sep:
        raise ValueError(f"a tenant_split unit is named 'tenant / table', got {name!r}")
    return UnitKey(cfg.scope, (tenant, table))


def _expand(cfg: TenantSplitConfig, names: list[str]) -> list[str]:
    """``tenant`` → every ``tenant / table`` unit it has; ``tenant / table`` stays."""
    from cutover.tenant_split.cutover import known_units

    known = known_units(cfg)
    out: list[str] = []
    for n in names:
        if " / " in n or n.startswith(cfg.scope + ":"):
            out.append(n)
            continue
        mine = [k.label for k in known if k.parts[0] == n]
        if not mine:
            raise ValueError(f"tenant {n!r} has no unit in {cfg.scope!r}: build it with tenant_split_build first")
        out.extend(mine)
    return out


def _switch(cfg: TenantSplitConfig, keys: list[UnitKey], run_id: str) -> Any:
    from cutover.tenant_split.cutover import tenant_switch

    return tenant_switch(cfg, keys, run_id)



def _divergence(cfg: TenantSplitConfig, key: UnitKey) -> dict[str, Any] | None:
    from cutover.tenant_split.divergence import target_divergence

    return target_divergence(cfg, key)


def _rollback(cfg: TenantSplitConfig, keys: list[UnitKey], run_id: str) -> Any:
    from cutover.tenant_split.cutover import tenant_rollback

    return tenant_rollback(cfg, keys, run_id)


def _drain_reverse(cfg: TenantSplitConfig, keys: list[UnitKey]) -> dict[str, Any]:
    from cutover.tenant_split.reverse import drain

    return drain(cfg, keys)


SPEC = PipelineSpec(
    name=PIPELINE,
    unit_noun="tenant table",
    config=TenantSplitConfig.from_params,
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
    backends=("shared", "tenant_db"),
    key_arity=2,
    permanent_errors=(MappingError, PlanError, CheckpointMismatch),  # a mismatch stays one until a rebuild
    close=_close,
    target_divergence=_divergence,
    drain_reverse=_drain_reverse,
    around_rollback=_rollback,
    switch_group=lambda key: key.parts[0],
    around_switch=_switch,
    expand_units=_expand,
)
