"""Cutover and rollback for every pipeline: readiness, the switch with its history, approvals, rollback.

Write → audit → publish: a unit is **ready** when its latest recorded state is ``verified`` with
equal checksums and its readers are not on the target yet. The **switch** points readers at the
target (the pipeline's ``route`` hook and ``cutover.switches`` / ``switch_history``, one
transaction per unit), for ``canary_pct`` % of them, and records the run (kind ``cutover``) with its
units (``cut_over``) and the approval in its evidence. When approval is required, :func:`switch`
refuses to run without an approval that says *approved* — whatever route led to it. **Rollback**
points readers back at the source per unit (or all), optionally drops what was built, and records a
run (kind ``rollback``) with its units (``rolled_back``).
"""

from __future__ import annotations

import logging
from contextlib import nullcontext
from typing import Any

from cutover import control
from cutover.connections import pg_connect
from cutover.lifecycle import state
from cutover.lifecycle.model import PlannedUnit, UnitKey, UnitState
from cutover.lifecycle.spec import PipelineSpec

log = logging.getLogger(__name__)


class NotReady(RuntimeError):
    """A unit asked for cannot be cut over (the message says why, per unit)."""


class ApprovalMissing(RuntimeError):
    """A switch that requires approval was reached without one that says approved."""


class SwitchFailed(RuntimeError):
    """A group of units could not be switched (its ``around_switch`` or a route failed); the rest were."""


class CanaryUnsupported(ValueError):
    """A canary share was asked of a pipeline whose readers switch all at once."""


def latest_units(spec: PipelineSpec, cfg: Any, keys: list[UnitKey] | None = None) -> dict[str, dict[str, Any]]:
    """unit key → its most recent unit row in this pipeline's scope, with its current backend."""
    scope = spec.scope(cfg) + ":"
    with pg_connect(spec.control_conn_id(cfg)) as conn:
        control.ensure_schema(conn)
        rows = conn.execute(
            f"""SELECT DISTINCT ON (u.unit_key) u.unit_key, u.state, u.run_id, u.rows_read, u.rows_written,
                       u.checksum_source, u.checksum_target, u.updated_at, s.backend
                FROM {control.SCHEMA}.units u
                LEFT JOIN {control.SCHEMA}.runs r ON r.run_id = u.run_id
                LEFT JOIN {control.SCHEMA}.switches s ON s.pipeline = u.pipeline AND s.unit_key = u.unit_key
                WHERE u.pipeline = %s AND starts_with(u.unit_key, %s) AND (%s::text[] IS NULL OR u.unit_key = ANY(%s))
                  -- a cutover run plans its units as verified: that is not a verification
                  AND NOT (coalesce(r.kind, '') = 'cutover' AND u.state = 'verified')
                ORDER BY u.unit_key, u.updated_at DESC""",
            (spec.name, scope, None if keys is None else [str(k) for k in keys],
             None if keys is None else [str(k) for k in keys]),
        ).fetchall()
    return {
        r[0]: {"unit": r[0], "label": UnitKey.parse(r[0], spec.key_arity).label, "state": r[1],
               "run_id": r[2], "rows_read": r[3], "rows_written": r[4],
               "checksums_match": r[5] is not None and r[5] == r[6], "checksum_source": r[5], "checksum_target": r[6],
               "updated_at": str(r[7]),
               "backend": r[8] or spec.backends[0]}
        for r in rows
    }


def split_ready(spec: PipelineSpec, cfg: Any, wanted: list[str] | None) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """(ready units, {unit label: why not}) among ``wanted`` unit labels (None: every unit ever built)."""
    if wanted and spec.expand_units is not None:
        wanted = spec.expand_units(cfg, wanted)
    keys = None if wanted is None else [spec.unit_key(cfg, w) for w in wanted]
    latest = latest_units(spec, cfg, keys)
    ready: list[dict[str, Any]] = []
    blocked: dict[str, str] = {}
    target = spec.backends[1]
    for key in [str(k) for k in keys] if keys is not None else sorted(latest):
        u = latest.get(key)
        name = UnitKey.parse(key, spec.key_arity).label
        if u is None:
            blocked[name] = f"never built: run {spec.name} first"
        elif u["state"] != UnitState.VERIFIED:
            blocked[name] = f"latest state is {u['state']!r} (run {u['run_id']}), not 'verified'"
        elif not u["checksums_match"]:
            blocked[name] = "checksums of source and target differ"
        elif u["backend"] == target:
            blocked[name] = f"readers already on {target}"
        else:
            ready.append({**u, "name": name})
    return ready, blocked


def rejected(approval: dict[str, Any] | None) -> bool:
    """Whether an ``ApprovalOperator`` answer says *Reject* (a rejection is recorded, not an error)."""
    return bool(approval) and list((approval or {}).get("chosen_options") or []) == ["Reject"]


def approval_verdict(approval: dict[str, Any] | None) -> tuple[bool, str]:
    """(approved, by whom) from an ``ApprovalOperator`` result (its XCom: ``chosen_options``, ``responded_by_user``)."""
    if not approval:
        return False, ""
    chosen = approval.get("chosen_options") or []
    who = approval.get("responded_by_user") or "timeout default"
    who = who.get("name", str(who)) if isinstance(who, dict) else str(who)
    return chosen == ["Approve"], who


def switch(
    spec: PipelineSpec, cfg: Any, units: list[dict[str, Any]], run_id: str, *, require_approval: bool,
    approval: dict[str, Any] | None, canary_pct: int = 100, actor: str | None = None, params: dict[str, Any] | None = None,
    dag_id: str | None = None,
) -> dict[str, Any]:
    """Point each unit's readers at the target (``canary_pct`` %), record the run, its units and the approval.

    Readiness is checked again first (the approval may have waited while a rebuild failed its
    verification): :class:`NotReady` when a unit is no longer ready. Raises :class:`ApprovalMissing`
    when ``require_approval`` and ``approval`` is not an approval, and
    :class:`CanaryUnsupported` for ``canary_pct`` under 100 where the pipeline's readers cannot take a
    share (nothing switched either way); a rejection is recorded (run state ``rejected``, nothing
    switched) and returned, not raised.
    """
    if not 1 <= canary_pct <= 100:
        raise ValueError(f"canary_pct must be between 1 and 100, got {canary_pct}")
    if canary_pct < 100 and not spec.canary:
        raise CanaryUnsupported(
            f"{spec.name}: readers switch all at once (route moves them together), so a canary of {canary_pct} % "
            "cannot be honoured; cut over with 100 % (or canary some units first, listing them)")
    approved, who = approval_verdict(approval)
    conn_id = spec.control_conn_id(cfg)
    # readiness is checked again now: the approval may have waited while a rebuild failed verification
    names = [u["name"] for u in units]
    still, blocked = split_ready(spec, cfg, names) if names else ([], {})
    if blocked and not (require_approval and not approved):
        with pg_connect(conn_id) as conn:
            state.start(conn, run_id, spec.name, kind="cutover", params=params, dag_id=dag_id)
            control.finish_run(conn, run_id, "failed", {"not_ready_any_more": blocked, "switched": []})
        raise NotReady("no longer ready for cutover, nothing switched: "
                       + "; ".join(f"{k}: {v}" for k, v in blocked.items()))
    fresh = {u["unit"]: u for u in still}
    units = [{**u, **fresh.get(u["unit"], {})} for u in units]
    record = {"required": require_approval, "approved": approved if require_approval else "not required",
              "by": who or None, "chosen": (approval or {}).get("chosen_options"),
              "at": str((approval or {}).get("responded_at") or "") or None}
    with pg_connect(conn_id) as conn:
        state.start(conn, run_id, spec.name, kind="cutover", params=params, dag_id=dag_id)
        # the cutover run's plan: the ready units, as verified (a rerun of the run id starts over)
        state.record_plan(conn, run_id, spec.name, [
            PlannedUnit(UnitKey.parse(u["unit"], spec.key_arity), int(u.get("rows_read") or 0), {"verified_in": u.get("run_id")})
            for u in units], state=UnitState.VERIFIED)
        if require_approval and not approved:
            if rejected(approval):
                control.finish_run(conn, run_id, "rejected", {"approval": record, "switched": [],
                                                              "not_switched": [u["name"] for u in units]})
                log.warning("cutover rejected by %s: nothing switched", who)
                return {"approval": record, "switched": []}
            control.finish_run(conn, run_id, "failed", {"approval": record, "switched": []})
            conn.commit()
            raise ApprovalMissing("this cutover requires an approval and none was given: nothing switched")
    done: list[dict[str, Any]] = []
    groups_out: dict[str, Any] = {}
    failed: dict[str, str] = {}
    actor = who if require_approval else (actor or spec.name)
    target = spec.backends[1]
    groups: dict[str, list[dict[str, Any]]] = {}
    for u in units:  # units that switch together (a tenant's tables) go through one context
        key = UnitKey.parse(u["unit"], spec.key_arity)
        groups.setdefault(spec.switch_group(key) if spec.switch_group else str(key), []).append(u)
    for group, members in groups.items():
        keys = [UnitKey.parse(u["unit"], spec.key_arity) for u in members]
        around = spec.around_switch(cfg, keys, run_id) if spec.around_switch else nullcontext({})
        try:
            with around as info:
                for u, key in zip(members, keys, strict=True):
                    with pg_connect(conn_id) as conn:
                        before = control.get_switch(conn, spec.name, str(key))
                        out = spec.route(conn, cfg, key, target)
                        control.switch_backend(conn, spec.name, str(key), target, canary_pct=canary_pct, run_id=run_id,
                                               actor=actor, reason=f"cutover: verified in run {u.get('run_id')}")
                        state.advance(conn, run_id, str(key), UnitState.CUT_OVER, rows_read=u.get("rows_read"),
                                      rows_written=u.get("rows_written"), checksum_source=u.get("checksum_source"),
                                      checksum_target=u.get("checksum_target"),
                                      detail={"switch": {"canary_pct": canary_pct, **out}})
                    done.append({"unit": u["name"], "from": before.backend if before else spec.backends[0], "to": target,
                                 "canary_pct": canary_pct, **out})
                    log.info("%s %s: readers → %s (%d %%)", spec.unit_noun, u["name"], target, canary_pct)
            if spec.around_switch:
                groups_out[group] = info
        except Exception as exc:  # this group stays (or goes back) on the source; the others go on
            failed[group] = state.format_error(exc)
            for key in keys:
                state.fail(run_id, str(key), "switch", f"{group}: {failed[group]}", conn_id=conn_id, pipeline=spec.name)
            log.exception("%s: switching %s failed; its units stay on %s", spec.name, group, spec.backends[0])
    with pg_connect(conn_id) as conn:
        control.finish_run(conn, run_id, "failed" if failed else "success",
                           {"approval": record, "switched": done, **({"groups": groups_out} if groups_out else {}),
                            **({"failed": failed} if failed else {})})
    if failed:
        raise SwitchFailed("not switched: " + "; ".join(f"{k}: {v}" for k, v in list(failed.items())[:10]))
    return {"approval": record, "switched": done, **({"groups": groups_out} if groups_out else {})}


def rollback(
    spec: PipelineSpec, cfg: Any, wanted: list[str] | None, run_id: str, *, drop: bool = False, actor: str | None = None,
    params: dict[str, Any] | None = None, dag_id: str | None = None,
) -> dict[str, Any]:
    """Readers of each unit (``wanted`` labels; None: every known unit) back on the source; with ``drop``
    also remove what was built. Records a ``rollback`` run with its units; a unit that fails is
    recorded failed and the others go on; raises ``RuntimeError`` at the end if any failed."""
    if wanted and spec.expand_units is not None:
        wanted = spec.expand_units(cfg, wanted)
    keys = spec.known_units(cfg) if wanted is None else [spec.unit_key(cfg, w) for w in wanted]
    conn_id = spec.control_conn_id(cfg)
    source = spec.backends[0]
    with pg_connect(conn_id) as conn:
        state.start(conn, run_id, spec.name, kind="rollback", params=params, dag_id=dag_id)
        state.record_plan(conn, run_id, spec.name, [])
    results: list[dict[str, Any]] = []
    failed: dict[str, str] = {}
    for key in keys:
        try:
            with pg_connect(conn_id) as conn:
                before = control.get_switch(conn, spec.name, str(key))
                out: dict[str, Any] = {"unit": key.label, "from": before.backend if before else None, "to": source}
                out.update(spec.route(conn, cfg, key, source))
                if before is not None or out.get("routed"):
                    control.switch_backend(conn, spec.name, str(key), source, run_id=run_id,
                                           actor=actor or spec.name, reason="rollback")
                if drop:
                    out.update(spec.drop(conn, cfg, key))
                    out["dropped"] = True
                state.advance(conn, run_id, str(key), UnitState.ROLLED_BACK, pipeline=spec.name, detail={"rollback": out})
            results.append(out)
        except Exception as exc:  # recorded, the other units go on
            failed[key.label] = state.format_error(exc)
            state.fail(run_id, str(key), "rollback", failed[key.label], conn_id=conn_id, pipeline=spec.name)
            log.exception("%s %s: rollback failed", spec.unit_noun, key.label)
    with pg_connect(conn_id) as conn:
        conn.execute(f"UPDATE {control.SCHEMA}.runs SET planned_units = %s WHERE run_id = %s", (len(keys), run_id))
        control.finish_run(conn, run_id, "failed" if failed else "success",
                           {"rolled_back": results, "failed": failed, "drop": drop})
    if failed:
        raise RuntimeError(f"rollback failed for {len(failed)} unit(s): "
                           + "; ".join(f"{k}: {v}" for k, v in list(failed.items())[:10]))
    return {"rolled_back": results}
