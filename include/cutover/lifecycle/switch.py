"""Cutover and rollback for every pipeline: readiness, the switch with its history, approvals, rollback.

Write → audit → publish: a unit is **ready** when its latest recorded state is ``verified`` with
equal checksums and its readers are not on the target yet. The **switch** points readers at the
target (the pipeline's ``route`` hook and ``cutover.switches`` / ``switch_history``, one
transaction per unit), for ``canary_pct`` % of them, and records the run (kind ``cutover``) with its
units (``cut_over``) and the approval in its evidence.

**Approval is deployment policy** (:func:`approval_policy`: the env var ``CUTOVER_REQUIRE_APPROVAL``
or the Airflow Variable ``cutover_require_approval``, per pipeline or for all; default on), read by
:func:`switch` itself on every call, so no route (a cleared task, a task marked success, a library
call) switches without an approval where the policy asks for one. A trigger form can ask for more
care (``require_approval: true``), never less: ``require_approval: false`` is ignored, with a warning
and a note in the evidence. Who triggered (Airflow's ``triggering_user_name``; None where Airflow
knows no user) and who approved (the answer's ``responded_by_user``) are recorded with every switch
(``switch_history``) and in the run's evidence.

**Rollback** points readers back at the source per unit (or all), optionally drops what was built,
and records a run (kind ``rollback``) with its units (``rolled_back``). Before anything moves it makes
sure the target holds no writes the source lacks: with the pipeline's ``around_rollback`` (a write
pause on the target around routing each group back: drain, fence, reverse stream drained, re-proof of
what it touched), else by its ``drain_reverse`` and ``target_divergence``; if any, it refuses
(:class:`TargetWritesFound`, the report in the run's evidence) unless ``discard_target_writes`` says to
lose them, which is recorded.
"""

from __future__ import annotations

import logging
import os
import re
from contextlib import nullcontext
from dataclasses import dataclass
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


class PolicyInvalid(ValueError):
    """The approval policy setting holds a value that is neither on nor off (nothing is switched)."""


class TargetWritesFound(RuntimeError):
    """A rollback found writes on the target that the source lacks: nothing was rolled back.

    ``found`` maps each unit label to what would be lost (the pipeline's ``target_divergence`` report,
    or ``{"error": …}`` when the check itself failed)."""

    def __init__(self, message: str, found: dict[str, dict[str, Any]]) -> None:
        super().__init__(message)
        self.found = found


#: the operator's approval setting: an env var and an Airflow Variable, each for all pipelines or, with
#: the pipeline's name as a suffix (``CUTOVER_REQUIRE_APPROVAL_TENANT_SPLIT``,
#: ``cutover_require_approval_tenant_split``), for one
POLICY_ENV = "CUTOVER_REQUIRE_APPROVAL"
POLICY_VARIABLE = "cutover_require_approval"
_ON = {"1", "true", "on", "yes", "required"}
_OFF = {"0", "false", "off", "no", "not_required"}
#: what Airflow reports as a triggering user when there is no person behind it
_NOT_A_PERSON = {"": "no user", "dag_test": "dag.test(): Airflow records 'dag_test', not a user",
                 "anonymous": "no authenticated user (the auth manager says 'Anonymous')"}


@dataclass(frozen=True)
class ApprovalPolicy:
    """Whether a pipeline's switches need an approval, and which setting said so (``default``: none set)."""

    pipeline: str
    required: bool
    source: str

    def to_dict(self) -> dict[str, Any]:
        """The evidence form."""
        return {"required": self.required, "source": self.source}


def _variable(key: str) -> str | None:
    """An Airflow Variable's value (None: not set, or Airflow not installed)."""
    try:
        from airflow.sdk import Variable
    except ImportError:
        return None
    value = Variable.get(key, default=None)
    return None if value is None else str(value)


def policy_env(pipeline: str) -> str:
    """The env var that sets ``pipeline``'s approval policy alone (e.g. ``CUTOVER_REQUIRE_APPROVAL_TENANT_SPLIT``)."""
    return f"{POLICY_ENV}_{re.sub(r'[^A-Za-z0-9]+', '_', pipeline).upper()}"


def approval_policy(pipeline: str) -> ApprovalPolicy:
    """The deployment's approval policy for ``pipeline``, read now (never at parse time).

    The first setting found wins, most specific first: env ``CUTOVER_REQUIRE_APPROVAL_<PIPELINE>``,
    Variable ``cutover_require_approval_<pipeline>``, env ``CUTOVER_REQUIRE_APPROVAL``, Variable
    ``cutover_require_approval``; none set: required. Values: on / off (also true / false, 1 / 0,
    yes / no). Raises :class:`PolicyInvalid` for any other value; a Variable that cannot be read
    counts as *required* (logged).
    """
    suffix = re.sub(r"[^A-Za-z0-9]+", "_", pipeline)
    settings = [("env", policy_env(pipeline)), ("variable", f"{POLICY_VARIABLE}_{suffix.lower()}"),
                ("env", POLICY_ENV), ("variable", POLICY_VARIABLE)]
    for where, name in settings:
        try:
            raw = os.environ.get(name) if where == "env" else _variable(name)
        except Exception as exc:  # noqa: BLE001 - fail closed: an unreadable policy requires approval
            log.warning("%s: approval policy Variable %s unreadable (%s): approval required", pipeline, name, exc)
            return ApprovalPolicy(pipeline, True, f"variable {name} unreadable")
        if raw is None or not raw.strip():
            continue
        value = raw.strip().lower()
        if value in _ON or value in _OFF:
            return ApprovalPolicy(pipeline, value in _ON, f"{where} {name}")
        raise PolicyInvalid(f"{where} {name} = {raw!r}: the approval policy is on or off (true / false); nothing switched")
    return ApprovalPolicy(pipeline, True, "default")


def approval_decision(pipeline: str, params: dict[str, Any] | None = None,
                      require_approval: bool | None = None) -> dict[str, Any]:
    """Whether this switch needs an approval: the policy, or more care asked by the form / the caller.

    ``require_approval: true`` (in ``params`` or the argument) adds an approval where the policy has
    none; ``false`` never removes one: it is ignored, logged as a warning and noted (``ignored``).
    Returns ``{"required": bool, "policy": {...}, "asked": bool | None, "ignored": str | None}``.
    """
    policy = approval_policy(pipeline)
    asked = (params or {}).get("require_approval")
    asks = [v for v in (asked, require_approval) if v is not None]
    ignored = None
    if policy.required and any(not bool(v) for v in asks):
        ignored = (f"require_approval={next(v for v in asks if not bool(v))!r} asked to skip the approval: ignored, "
                   f"the deployment's policy ({policy.source}) requires one")
        log.warning("%s: %s", pipeline, ignored)
    return {"required": policy.required or any(bool(v) for v in asks), "policy": policy.to_dict(),
            "asked": None if asked is None else bool(asked), "ignored": ignored}


def trigger_record(user: str | None, run_type: str | None = None, *, via: str | None = None) -> dict[str, Any]:
    """Who triggered a run, as recorded: ``{"user": name | None, "run_type": …, "via": …, "note": …}``.

    ``user`` is Airflow's ``DagRun.triggering_user_name`` (or a library caller's name). Values that
    name no person (None, ``dag_test`` from ``dag.test()``, ``Anonymous``) are recorded as
    ``user: None`` with a ``note`` saying what Airflow reported."""
    out: dict[str, Any] = {"user": user or None, "run_type": run_type, "via": via}
    note = _NOT_A_PERSON.get((user or "").strip().lower())
    if note is not None:
        out["user"], out["note"] = None, note + ("" if not user else f" ({user!r})")
    return {k: v for k, v in out.items() if v is not None or k == "user"}


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


def approver(approval: dict[str, Any] | None) -> str | None:
    """The user who answered the approval (None: no answer, or a timeout's default answered)."""
    who = (approval or {}).get("responded_by_user")
    if isinstance(who, dict):
        who = who.get("name") or who.get("id")
    return str(who) if who else None


def switch(
    spec: PipelineSpec, cfg: Any, units: list[dict[str, Any]], run_id: str, *, approval: dict[str, Any] | None,
    require_approval: bool | None = None, canary_pct: int = 100, triggered_by: dict[str, Any] | None = None,
    params: dict[str, Any] | None = None, dag_id: str | None = None,
) -> dict[str, Any]:
    """Point each unit's readers at the target (``canary_pct`` %), record the run, its units and the approval.

    Whether an approval is needed is the deployment's policy (:func:`approval_decision`, read here on
    every call); ``require_approval`` / ``params["require_approval"]`` can only add one.
    ``triggered_by`` is :func:`trigger_record` of whoever started the run (None: unknown, recorded so).
    Readiness is checked again first (the approval may have waited while a rebuild failed its
    verification): :class:`NotReady` when a unit is no longer ready. Raises :class:`ApprovalMissing`
    when an approval is required and ``approval`` is not an approval, :class:`PolicyInvalid` for an
    unreadable policy value, and :class:`CanaryUnsupported` for ``canary_pct`` under 100 where the
    pipeline's readers cannot take a share (nothing switched in each case); a rejection is recorded
    (run state ``rejected``, nothing switched) and returned, not raised.
    """
    if not 1 <= canary_pct <= 100:
        raise ValueError(f"canary_pct must be between 1 and 100, got {canary_pct}")
    if canary_pct < 100 and not spec.canary:
        raise CanaryUnsupported(
            f"{spec.name}: readers switch all at once (route moves them together), so a canary of {canary_pct} % "
            "cannot be honoured; cut over with 100 % (or canary some units first, listing them)")
    decision = approval_decision(spec.name, params, require_approval)
    require = bool(decision["required"])
    trigger = triggered_by or trigger_record(None, via="unknown caller")
    approved, who = approval_verdict(approval)
    conn_id = spec.control_conn_id(cfg)
    # readiness is checked again now: the approval may have waited while a rebuild failed verification
    names = [u["name"] for u in units]
    still, blocked = split_ready(spec, cfg, names) if names else ([], {})
    if blocked and not (require and not approved):
        with pg_connect(conn_id) as conn:
            state.start(conn, run_id, spec.name, kind="cutover", params=params, dag_id=dag_id)
            control.finish_run(conn, run_id, "failed", {"not_ready_any_more": blocked, "switched": [],
                                                        "triggered_by": trigger})
        raise NotReady("no longer ready for cutover, nothing switched: "
                       + "; ".join(f"{k}: {v}" for k, v in blocked.items()))
    fresh = {u["unit"]: u for u in still}
    units = [{**u, **fresh.get(u["unit"], {})} for u in units]
    approved_by = approver(approval) if require and approved else None
    record = {"required": require, "approved": approved if require else "not required",
              "by": who or None, "approved_by": approved_by, "chosen": (approval or {}).get("chosen_options"),
              "at": str((approval or {}).get("responded_at") or "") or None, "policy": decision["policy"],
              **({"ignored": decision["ignored"]} if decision["ignored"] else {})}
    with pg_connect(conn_id) as conn:
        state.start(conn, run_id, spec.name, kind="cutover", params=params, dag_id=dag_id)
        # the cutover run's plan: the ready units, as verified (a rerun of the run id starts over)
        state.record_plan(conn, run_id, spec.name, [
            PlannedUnit(UnitKey.parse(u["unit"], spec.key_arity), int(u.get("rows_read") or 0), {"verified_in": u.get("run_id")})
            for u in units], state=UnitState.VERIFIED)
        if require and not approved:
            if rejected(approval):
                control.finish_run(conn, run_id, "rejected", {"approval": record, "switched": [], "triggered_by": trigger,
                                                              "not_switched": [u["name"] for u in units]})
                log.warning("cutover rejected by %s: nothing switched", who)
                return {"approval": record, "switched": []}
            control.finish_run(conn, run_id, "failed", {"approval": record, "switched": [], "triggered_by": trigger})
            conn.commit()
            raise ApprovalMissing(f"this cutover requires an approval ({decision['policy']['source']}) and none "
                                  "was given: nothing switched")
    done: list[dict[str, Any]] = []
    groups_out: dict[str, Any] = {}
    failed: dict[str, str] = {}
    # the person answerable for the switch: the approver, else whoever triggered it (None: nobody known)
    actor = approved_by or trigger.get("user")
    history = {"policy": decision["policy"], "triggered_by": trigger, **({"ignored": decision["ignored"]} if decision["ignored"] else {})}
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
                                               actor=actor, reason=f"cutover: verified in run {u.get('run_id')}",
                                               triggered_by=trigger.get("user"), approved_by=approved_by, detail=history)
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
                           {"approval": record, "triggered_by": trigger, "switched": done,
                            **({"groups": groups_out} if groups_out else {}), **({"failed": failed} if failed else {})})
    if failed:
        raise SwitchFailed("not switched: " + "; ".join(f"{k}: {v}" for k, v in list(failed.items())[:10]))
    return {"approval": record, "triggered_by": trigger, "switched": done, **({"groups": groups_out} if groups_out else {})}


def _lost_rows(found: dict[str, Any]) -> int:
    """Rows a divergence report says would be lost (inserted + updated + deleted on the target)."""
    return sum(int(found.get(k) or 0) for k in ("inserted", "updated", "deleted"))


def target_writes(spec: PipelineSpec, cfg: Any, keys: list[UnitKey]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(found, checked) for the units whose readers are on the target: ``found`` maps unit label → the
    pipeline's divergence report (or ``{"error": …}`` when the check failed: nothing is proven then);
    ``checked`` says what was looked at (units on the target, or why nothing was checked)."""
    target = spec.backends[1]
    with pg_connect(spec.control_conn_id(cfg)) as conn:
        on_target = [k for k in keys if (sw := control.get_switch(conn, spec.name, str(k))) is not None and sw.backend == target]
    if not on_target:
        return {}, {"units_on_target": [], "checked": False, "why": f"no unit's readers are on {target}"}
    if spec.target_divergence is None:
        return {}, {"units_on_target": [k.label for k in on_target], "checked": False,
                    "why": f"{spec.name}'s readers never write to {target}: nothing to lose"}
    found: dict[str, Any] = {}
    for key in on_target:
        try:
            d = spec.target_divergence(cfg, key)
        except Exception as exc:  # noqa: BLE001 - an unproven unit counts as diverged (refused, named)
            log.exception("%s %s: could not compare the target with the source", spec.unit_noun, key.label)
            d = {"error": state.format_error(exc)}
        if d:
            found[key.label] = d
    return found, {"units_on_target": [k.label for k in on_target], "checked": True}


def _refusal_lines(found: dict[str, Any]) -> dict[str, str]:
    """Unit label → one line saying what the target holds that the source lacks (or why nothing is proven)."""
    return {label: ("the check failed, nothing is proven: " + d["error"]) if "error" in d else
            (f"{d.get('table')}: {d.get('inserted', 0)} inserted, {d.get('updated', 0)} updated, "
             f"{d.get('deleted', 0)} deleted on the target; keys {d.get('sample_keys')}")
            for label, d in found.items()}


def _refusal_message(lines: dict[str, str], why: str, rolled_back: list[str]) -> str:
    return ("rollback refused, " + (f"only {rolled_back} rolled back" if rolled_back else "nothing rolled back")
            + ": the target holds writes the source lacks, which a rollback would lose (the reverse stream did not "
            f"bring them back: {why}): " + "; ".join(f"{k}: {v}" for k, v in list(lines.items())[:10])
            + ". Copy them to the source first, or trigger again with discard_target_writes to lose them")


def _route_back(spec: PipelineSpec, cfg: Any, conn_id: str, key: UnitKey, run_id: str, *, drop: bool,
                discard_target_writes: bool, trigger: dict[str, Any], lost: dict[str, Any] | None,
                extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Point one unit's readers back at the source (recorded as a switch), optionally drop what was built,
    and mark the unit ``rolled_back`` in the run; returns what was done (raises what the hooks raise)."""
    source = spec.backends[0]
    with pg_connect(conn_id) as conn:
        before = control.get_switch(conn, spec.name, str(key))
        out: dict[str, Any] = {"unit": key.label, "from": before.backend if before else None, "to": source}
        out.update(spec.route(conn, cfg, key, source))
        if lost:
            out["discarded_target_writes"] = lost
        if before is not None or out.get("routed"):
            control.switch_backend(
                conn, spec.name, str(key), source, run_id=run_id, actor=trigger.get("user"),
                reason="rollback" + (f", discarding {_lost_rows(lost)} target row(s)" if lost else ""),
                triggered_by=trigger.get("user"),
                detail={"triggered_by": trigger, "discard_target_writes": discard_target_writes,
                        **({"discarded_target_writes": lost} if lost else {}), **(extra or {})})
        if drop:
            out.update(spec.drop(conn, cfg, key))
            out["dropped"] = True
        state.advance(conn, run_id, str(key), UnitState.ROLLED_BACK, pipeline=spec.name, detail={"rollback": out})
    return out


def _writes_record(found: dict[str, Any], checked: dict[str, Any], discard: bool, drained: dict[str, Any]) -> dict[str, Any]:
    """The rollback evidence's ``target_writes``: what was checked and found, the rows, the reverse drain."""
    return {"checked": checked, "found": found, "discarded": bool(found) and discard,
            "rows": sum(_lost_rows(d) for d in found.values()), "reverse_drained": drained}


def _mark_refused(conn: Any, spec: PipelineSpec, run_id: str, keys: list[UnitKey], refused: dict[str, str]) -> None:
    """Record the refused units of a rollback run as failed (why: ``refused[label]``) and its planned units."""
    for key in keys:
        if key.label in refused:
            state.advance(conn, run_id, str(key), UnitState.FAILED, pipeline=spec.name,
                          error=f"target writes would be lost: {refused[key.label]}", failed_stage="rollback")
    conn.execute(f"UPDATE {control.SCHEMA}.runs SET planned_units = %s WHERE run_id = %s", (len(keys), run_id))


def rollback(
    spec: PipelineSpec, cfg: Any, wanted: list[str] | None, run_id: str, *, drop: bool = False,
    discard_target_writes: bool = False, triggered_by: dict[str, Any] | None = None,
    params: dict[str, Any] | None = None, dag_id: str | None = None,
) -> dict[str, Any]:
    """Readers of each unit (``wanted`` labels; None: every known unit) back on the source; with ``drop``
    also remove what was built. Records a ``rollback`` run with its units; a unit that fails is
    recorded failed and the others go on; raises ``RuntimeError`` at the end if any failed.

    With the pipeline's ``around_rollback`` (see :func:`_rollback_paused`), each group of units whose
    readers are on the target is routed back inside that context: writers paused on the target, the
    reverse stream drained to a fence, what it touched re-proved, then the route; the group's evidence
    (``paused_s``, drained, re-proved rows) is in the run's ``groups``.

    Without it: first, for the units whose readers are on the target, the pipeline's ``drain_reverse`` (when it has
    reverse replication) applies the target's writes to the source up to the target's position now;
    then its ``target_divergence`` says whether the target still holds writes the source lacks. If any unit has
    some (or cannot be checked), nothing is rolled back: the run is recorded failed with the report
    (``evidence.target_writes``: per unit, table, rows inserted / updated / deleted, sample keys) and
    :class:`TargetWritesFound` is raised — unless ``discard_target_writes``, which goes on and records
    the discarded writes in the evidence and in each unit's ``switch_history`` detail.
    """
    if wanted and spec.expand_units is not None:
        wanted = spec.expand_units(cfg, wanted)
    keys = spec.known_units(cfg) if wanted is None else [spec.unit_key(cfg, w) for w in wanted]
    conn_id = spec.control_conn_id(cfg)
    trigger = triggered_by or trigger_record(None, via="unknown caller")
    with pg_connect(conn_id) as conn:
        state.start(conn, run_id, spec.name, kind="rollback", params=params, dag_id=dag_id)
        state.record_plan(conn, run_id, spec.name, [])
    if spec.around_rollback is not None:
        return _rollback_paused(spec, cfg, keys, run_id, drop=drop, discard_target_writes=discard_target_writes,
                                trigger=trigger)
    drained: dict[str, Any] = {}
    if spec.drain_reverse is not None:
        target = spec.backends[1]
        with pg_connect(conn_id) as conn:
            on_target = [k for k in keys if (sw := control.get_switch(conn, spec.name, str(k))) is not None
                         and sw.backend == target]
        if on_target:
            try:  # the target's writes flow back first: the divergence check below then finds nothing to lose
                drained = spec.drain_reverse(cfg, on_target)
            except Exception as exc:  # noqa: BLE001 - not drained: the divergence check decides and names the rows
                drained = {"error": state.format_error(exc)}
                log.exception("%s: could not drain the reverse stream before the rollback", spec.name)
    found, checked = target_writes(spec, cfg, keys)
    writes = _writes_record(found, checked, discard_target_writes, drained)
    if found and not discard_target_writes:
        lines = _refusal_lines(found)
        message = _refusal_message(lines, str(drained.get("error")) if drained.get("error") else "no reverse stream", [])
        with pg_connect(conn_id) as conn:
            _mark_refused(conn, spec, run_id, keys, lines)
            control.finish_run(conn, run_id, "failed", {"refused": "target writes would be lost", "target_writes": writes,
                                                        "rolled_back": [], "drop": drop, "triggered_by": trigger})
        log.error("%s: %s", spec.name, message)
        raise TargetWritesFound(message, found)
    if found:
        log.warning("%s: discarding the target's writes of %d unit(s) (%d rows) as asked (discard_target_writes)",
                    spec.name, len(found), writes["rows"])
    results: list[dict[str, Any]] = []
    failed: dict[str, str] = {}
    for key in keys:
        try:
            results.append(_route_back(spec, cfg, conn_id, key, run_id, drop=drop, discard_target_writes=discard_target_writes,
                                       trigger=trigger, lost=found.get(key.label)))
        except Exception as exc:  # recorded, the other units go on
            failed[key.label] = state.format_error(exc)
            state.fail(run_id, str(key), "rollback", failed[key.label], conn_id=conn_id, pipeline=spec.name)
            log.exception("%s %s: rollback failed", spec.unit_noun, key.label)
    with pg_connect(conn_id) as conn:
        conn.execute(f"UPDATE {control.SCHEMA}.runs SET planned_units = %s WHERE run_id = %s", (len(keys), run_id))
        control.finish_run(conn, run_id, "failed" if failed else "success",
                           {"rolled_back": results, "failed": failed, "drop": drop, "target_writes": writes,
                            "triggered_by": trigger})
    if failed:
        raise RuntimeError(f"rollback failed for {len(failed)} unit(s): "
                           + "; ".join(f"{k}: {v}" for k, v in list(failed.items())[:10]))
    return {"rolled_back": results, "target_writes": writes}


def _rollback_paused(spec: PipelineSpec, cfg: Any, keys: list[UnitKey], run_id: str, *, drop: bool,
                     discard_target_writes: bool, trigger: dict[str, Any]) -> dict[str, Any]:
    """:func:`rollback` through the pipeline's ``around_rollback``: the units whose readers are on the target
    go back group by group (``switch_group``), each inside the context — writers paused on the target, the
    reverse stream drained to a fence, the rows it touched re-proved — and are routed back there unless the
    context reports target writes the source lacks (``target_writes``), which refuses that group (its writers
    resume on the target) unless ``discard_target_writes``. Units not on the target are routed back plainly.

    Returns ``{"rolled_back", "target_writes", "groups"}``: ``target_writes`` has the shape of the
    divergence path (``checked``, ``found``, ``discarded``, ``rows``, ``reverse_drained``); ``groups`` maps a
    group to its context's evidence (``paused_s``, ``drain``, ``drained``, ``reproved``, ``reproved_rows``,
    …). Raises :class:`TargetWritesFound` when a group was refused (the others went on) and ``RuntimeError``
    when a unit failed."""
    assert spec.around_rollback is not None
    conn_id = spec.control_conn_id(cfg)
    target = spec.backends[1]
    with pg_connect(conn_id) as conn:
        on_target = [k for k in keys if (sw := control.get_switch(conn, spec.name, str(k))) is not None and sw.backend == target]
    groups: dict[str, list[UnitKey]] = {}
    for k in on_target:
        groups.setdefault(spec.switch_group(k) if spec.switch_group else str(k), []).append(k)
    results: list[dict[str, Any]] = []
    failed: dict[str, str] = {}
    found: dict[str, Any] = {}
    refused: dict[str, str] = {}
    drained: dict[str, Any] = {}
    groups_out: dict[str, Any] = {}

    def back(key: UnitKey, lost: dict[str, Any] | None, extra: dict[str, Any] | None = None) -> None:
        try:
            results.append(_route_back(spec, cfg, conn_id, key, run_id, drop=drop, discard_target_writes=discard_target_writes,
                                       trigger=trigger, lost=lost, extra=extra))
        except Exception as exc:  # recorded, the other units go on
            failed[key.label] = state.format_error(exc)
            state.fail(run_id, str(key), "rollback", failed[key.label], conn_id=conn_id, pipeline=spec.name)
            log.exception("%s %s: rollback failed", spec.unit_noun, key.label)

    for group, members in groups.items():
        info: dict[str, Any] = {}
        try:
            with spec.around_rollback(cfg, members, run_id) as info:
                mine = {k: v for k, v in (info.get("target_writes") or {}).items() if v}
                drained.update(info.get("drained") or {})
                found.update(mine)
                if mine and not discard_target_writes:  # not routed: the context resumes the writers on the target
                    refused.update(_refusal_lines(mine))
                else:
                    for key in members:
                        back(key, mine.get(key.label), {"rollback_group": group})
        except Exception as exc:  # this group stays on the target (its context resumed its writers there)
            for key in members:
                failed[key.label] = state.format_error(exc)
                state.fail(run_id, str(key), "rollback", f"{group}: {failed[key.label]}", conn_id=conn_id, pipeline=spec.name)
            log.exception("%s: rolling back %s failed; its units stay on %s", spec.name, group, target)
        groups_out[group] = info
        log.info("%s %s: rollback paused writers %.3f s", spec.name, group, float(info.get("paused_s") or 0.0))
    for key in keys:
        if key not in on_target:
            back(key, None)
    checked = {"units_on_target": [k.label for k in on_target], "checked": bool(on_target),
               **({} if on_target else {"why": f"no unit's readers are on {target}"}),
               "how": "around_rollback: the reverse stream drained to a fence under a write pause, what it touched re-proved"}
    writes = _writes_record(found, checked, discard_target_writes, drained)
    evidence = {"rolled_back": results, "failed": failed, "drop": drop, "target_writes": writes, "triggered_by": trigger,
                "groups": groups_out}
    with pg_connect(conn_id) as conn:
        _mark_refused(conn, spec, run_id, keys, refused)
        control.finish_run(conn, run_id, "failed" if (failed or refused) else "success",
                           {**evidence, **({"refused": "target writes would be lost"} if refused else {})})
    if refused:
        errors = [str(d.get("error")) for d in found.values() if d.get("error")]
        message = _refusal_message(refused, "; ".join(errors[:3]) or "they differ after the drain",
                                   [r["unit"] for r in results])
        log.error("%s: %s", spec.name, message)
        raise TargetWritesFound(message, {k: v for k, v in found.items() if k in refused})
    if found:
        log.warning("%s: discarded the target's writes of %d unit(s) (%d rows) as asked (discard_target_writes)",
                    spec.name, len(found), writes["rows"])
    if failed:
        raise RuntimeError(f"rollback failed for {len(failed)} unit(s): "
                           + "; ".join(f"{k}: {v}" for k, v in list(failed.items())[:10]))
    return {"rolled_back": results, "target_writes": writes, "groups": groups_out}
