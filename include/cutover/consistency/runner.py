"""One scheduled check of a registered pair: pick the window, diff, record, repair if allowed, report.

The window never comes from ``now()``: it ends at the run's ``as_of`` (the DAG run's data interval
end) minus the pair's ``settle_s`` (rows younger than that may still be in flight), and starts
``recent_window_s`` before. A full sweep compares the whole pair. Every check is recorded in
``cutover.consistency_results`` (status ``equal``, ``different``, ``repaired`` or ``error``) before
the caller decides to fail; :class:`ConsistencyMismatch` carries the outcome.

A CLI for use without Airflow: ``python -m cutover.consistency.runner PAIR [--full] [--repair]``.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from typing import Any

from cutover import control
from cutover.connections import pg_connect
from cutover.consistency import registry
from cutover.consistency.diff import DiffOptions, DiffResult, diff_pair
from cutover.consistency.repair import repair_pair
from cutover.consistency.spec import PairSpec, PairSpecError

log = logging.getLogger(__name__)
STATUSES = ("equal", "different", "repaired", "error")


class ConsistencyMismatch(RuntimeError):
    """A pair's source and target differ (the result is already recorded)."""

    def __init__(self, outcome: CheckOutcome):
        self.outcome = outcome
        o = outcome
        super().__init__(
            f"pair {o.pair!r} differs over {o.window_label}: {o.missing} missing, {o.extra} extra, {o.changed} changed "
            f"of {o.rows_checked} rows (e.g. missing {o.details.get('missing_keys', [])[:5]}, "
            f"extra {o.details.get('extra_keys', [])[:5]}, changed {o.details.get('changed_keys', [])[:5]}); "
            f"result #{o.result_id} in cutover.consistency_results"
        )


@dataclass
class CheckOutcome:
    """What one check found and recorded (JSON-able through :meth:`as_dict`)."""

    pair: str
    status: str
    window_start: dt.datetime | None
    window_end: dt.datetime | None
    rows_checked: int
    missing: int
    extra: int
    changed: int
    duration_s: float
    lag_s: float | None
    result_id: int | None
    repaired: bool = False
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def window_label(self) -> str:
        """``[start, end)`` or ``the whole pair``."""
        if self.window_start is None and self.window_end is None:
            return "the whole pair"
        return f"[{self.window_start}, {self.window_end})"

    def as_dict(self) -> dict[str, Any]:
        """A JSON-able dict (XCom)."""
        return {
            "pair": self.pair, "status": self.status, "window_start": _iso(self.window_start),
            "window_end": _iso(self.window_end), "rows_checked": self.rows_checked, "missing": self.missing,
            "extra": self.extra, "changed": self.changed, "duration_s": round(self.duration_s, 3),
            "lag_s": self.lag_s, "result_id": self.result_id, "repaired": self.repaired,
        }


def _iso(v: dt.datetime | None) -> str | None:
    return v.isoformat() if v else None


def check_window(spec: PairSpec, as_of: dt.datetime, *, full: bool = False) -> tuple[dt.datetime | None, dt.datetime | None]:
    """The window a scheduled check covers: ``[as_of - settle - recent, as_of - settle)`` in naive UTC."""
    if full or not spec.window_column:
        return None, None
    if as_of.tzinfo is not None:
        as_of = as_of.astimezone(dt.UTC).replace(tzinfo=None)
    end = as_of - dt.timedelta(seconds=spec.settle_s)
    return end - dt.timedelta(seconds=spec.recent_window_s), end


def _record(spec: PairSpec, status: str, result: DiffResult | None, window: tuple[Any, Any], run_id: str | None,
            extra_details: dict[str, Any] | None = None, duration_s: float | None = None) -> int:
    details = {**(result.details() if result else {}), **(extra_details or {})}
    with pg_connect() as conn:
        registry.ensure_registry(conn)
        return control.record_consistency(
            conn, spec.name, status,
            rows_checked=result.rows_checked if result else 0,
            missing=len(result.missing) if result else 0,
            extra=len(result.extra) if result else 0,
            changed=len(result.changed) if result else 0,
            window_start=_iso(window[0]), window_end=_iso(window[1]),
            duration_s=result.duration_s if result else duration_s,
            details=details, run_id=run_id,
        )


def run_check(
    pair: str | PairSpec,
    *,
    as_of: dt.datetime,
    full: bool = False,
    repair: bool = False,
    run_id: str | None = None,
    options: DiffOptions | None = None,
) -> CheckOutcome:
    """Check one pair over its recent window (or fully), record the result, repair when asked and allowed."""
    if isinstance(pair, PairSpec):
        spec = pair
    else:
        with pg_connect() as conn:
            registry.ensure_registry(conn)
            found = registry.get_pair(conn, pair)
        if found is None:
            raise PairSpecError(f"pair {pair!r} is not registered in cutover.sync_pairs")
        spec = found
    window = check_window(spec, as_of, full=full)
    try:
        result = diff_pair(spec, window_start=window[0], window_end=window[1], options=options)
    except Exception as exc:
        _record(spec, "error", None, window, run_id, {"error": f"{type(exc).__name__}: {exc}"})
        raise
    status = "equal" if result.equal else "different"
    rid = _record(spec, status, result, window, run_id, {"full_sweep": full})
    outcome = _outcome(spec, status, result, window, rid)
    log.info("pair %s over %s: %s", spec.name, outcome.window_label, result.summary())
    if result.equal or not repair:
        return outcome
    if spec.repair == "none":
        log.warning("pair %s differs but does not allow repair (repair = 'none')", spec.name)
        return outcome
    report = repair_pair(spec, result)
    recheck = diff_pair(spec, window_start=window[0], window_end=window[1], options=options)
    status = "repaired" if recheck.equal else "different"
    rid = _record(spec, status, recheck, window, run_id, {
        "full_sweep": full, "repair": {"deleted": report.deleted, "written": report.written, "before": result.details()},
    })
    outcome = _outcome(spec, status, recheck, window, rid)
    outcome.repaired = recheck.equal
    outcome.details["repair"] = {"deleted": report.deleted, "written": report.written}
    return outcome


def _outcome(spec: PairSpec, status: str, r: DiffResult, window: tuple[Any, Any], rid: int) -> CheckOutcome:
    return CheckOutcome(
        pair=spec.name, status=status, window_start=window[0], window_end=window[1], rows_checked=r.rows_checked,
        missing=len(r.missing), extra=len(r.extra), changed=len(r.changed), duration_s=r.duration_s,
        lag_s=r.lag_s, result_id=rid, details=r.details(max_keys=20),
    )


def raise_if_different(outcome: CheckOutcome) -> dict[str, Any]:
    """Return the outcome as a dict, or raise :class:`ConsistencyMismatch` when the pair still differs."""
    if outcome.status == "different":
        raise ConsistencyMismatch(outcome)
    return outcome.as_dict()


def results_gate_query(run_id: str | None = None) -> str:
    """SQL over ``cutover.consistency_results``: the latest result per pair (of one run when given)."""
    where = ""
    if run_id:
        where = "WHERE run_id = '" + run_id.replace("'", "''") + "'"
    return (
        "SELECT DISTINCT ON (pair_name) pair_name, status, rows_checked, missing, extra, changed, duration_s, "
        f"checked_at FROM {control.SCHEMA}.consistency_results {where} ORDER BY pair_name, checked_at DESC, id DESC"
    )


def main(argv: list[str] | None = None) -> int:
    """CLI: check one registered pair now (exit 1 when it differs)."""
    import argparse

    from cutover.connections import apply_default_env

    ap = argparse.ArgumentParser(prog="python -m cutover.consistency.runner", description=main.__doc__)
    ap.add_argument("pair")
    ap.add_argument("--full", action="store_true", help="compare the whole pair, not its recent window")
    ap.add_argument("--repair", action="store_true", help="re-sync differing keys when the pair allows it")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    apply_default_env()
    outcome = run_check(args.pair, as_of=dt.datetime.now(dt.UTC), full=args.full, repair=args.repair, run_id="cli")
    print(outcome.as_dict())
    return 1 if outcome.status == "different" else 0


if __name__ == "__main__":
    raise SystemExit(main())
