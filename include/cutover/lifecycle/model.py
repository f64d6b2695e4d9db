"""The shared vocabulary of every migration: unit states with checked transitions, typed unit keys.

A **unit** is one piece of work a pipeline plans (a ship, a tenant × table, a table, a file). Its
state moves along the life cycle of ``DESIGN.md``::

    planned → prepared → copying → copied → verified → cut_over
                 ↘          ↘          ↘         ↘          ↘
                                   failed          rolled_back

Every stage advances the state inside its own transaction (:mod:`cutover.lifecycle.state`), so the
state stored in ``cutover.units`` is what really happened; :data:`TRANSITIONS` says which moves are
allowed and :func:`check_transition` refuses the others with :class:`InvalidTransition`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote


class UnitState(enum.StrEnum):
    """Where one unit of one run stands (stored as its value in ``cutover.units.state``)."""

    PLANNED = "planned"
    PREPARED = "prepared"
    COPYING = "copying"
    COPIED = "copied"
    VERIFIED = "verified"
    CUT_OVER = "cut_over"
    FAILED = "failed"
    ROLLED_BACK = "rolled_back"


S = UnitState
#: state → the states it may move to. A stage may repeat itself (retries, idempotent reruns); a
#: failed unit may be taken up again by the stage that failed (a retry or a rerun resumes it).
TRANSITIONS: dict[UnitState, frozenset[UnitState]] = {
    S.PLANNED: frozenset({S.PLANNED, S.PREPARED, S.FAILED}),
    S.PREPARED: frozenset({S.PREPARED, S.COPYING, S.FAILED}),
    S.COPYING: frozenset({S.COPYING, S.COPIED, S.FAILED}),
    S.COPIED: frozenset({S.COPIED, S.COPYING, S.VERIFIED, S.FAILED}),
    S.VERIFIED: frozenset({S.VERIFIED, S.CUT_OVER, S.ROLLED_BACK, S.FAILED}),
    S.CUT_OVER: frozenset({S.CUT_OVER, S.ROLLED_BACK, S.FAILED}),
    S.FAILED: frozenset({S.FAILED, S.PLANNED, S.PREPARED, S.COPYING, S.COPIED, S.VERIFIED, S.ROLLED_BACK}),
    S.ROLLED_BACK: frozenset({S.ROLLED_BACK, S.PLANNED}),
}
#: the states a build run's unit may end in for the run to be green
BUILD_END_STATES = frozenset({S.VERIFIED, S.CUT_OVER})


class InvalidTransition(RuntimeError):
    """A stage tried to move a unit along a transition the life cycle does not have."""


def check_transition(unit: str, current: UnitState | str | None, new: UnitState | str) -> UnitState:
    """Return ``new`` as a :class:`UnitState` if ``current → new`` is allowed (``None``: a new unit).

    Raises :class:`InvalidTransition` naming the unit and both states, or ``ValueError`` for a state
    that does not exist.
    """
    target = UnitState(new)
    if current is None:
        return target
    now = UnitState(current)
    if target not in TRANSITIONS[now]:
        allowed = ", ".join(sorted(TRANSITIONS[now]))
        raise InvalidTransition(f"unit {unit}: {now} → {target} is not a step of the life cycle (from {now}: {allowed})")
    return target


@dataclass(frozen=True, order=True)
class UnitKey:
    """A unit's identity: a ``scope`` (what the pipeline reads, e.g. ``tenant.tbl_data_timeseries``)
    and one or more ``parts`` (a ship id; a tenant and a table).

    ``str(key)`` is the text stored in ``cutover.units.unit_key``: ``scope:part`` for one part (kept
    verbatim, so existing one-part keys stay as they were), ``scope:p1/p2`` for several, each part
    percent-escaped (``%``, ``/``) so any name from data round-trips through :meth:`parse`.
    """

    scope: str
    parts: tuple[str, ...]

    def __post_init__(self) -> None:
        if not self.parts or any(not isinstance(p, str) for p in self.parts):
            raise ValueError(f"a unit key needs one or more text parts, got {self.parts!r}")
        if ":" in self.scope:
            raise ValueError(f"a unit key's scope may not contain ':' ({self.scope!r})")

    def __str__(self) -> str:
        if len(self.parts) == 1:
            return f"{self.scope}:{self.parts[0]}"
        return f"{self.scope}:" + "/".join(quote(p, safe="") for p in self.parts)

    @property
    def label(self) -> str:
        """The parts, human-readable (grid labels, logs)."""
        return " / ".join(self.parts)

    @classmethod
    def parse(cls, text: str, arity: int = 1) -> UnitKey:
        """The inverse of ``str()``, for keys of ``arity`` parts; ``ValueError`` when it does not fit."""
        scope, sep, rest = text.partition(":")
        if not sep:
            raise ValueError(f"not a unit key (no scope): {text!r}")
        if arity == 1:
            return cls(scope, (rest,))
        parts = tuple(unquote(p) for p in rest.split("/"))
        if len(parts) != arity:
            raise ValueError(f"unit key {text!r} has {len(parts)} parts, expected {arity}")
        return cls(scope, parts)


@dataclass(frozen=True)
class PlannedUnit:
    """What a pipeline's plan returns per unit: its key, its size (rows, for batching and progress)
    and a JSON-able ``detail`` the later stages receive back (the plan's findings)."""

    key: UnitKey
    rows: int = 0
    detail: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The XCom form handed to mapped tasks."""
        return {"unit": str(self.key), "scope": self.key.scope, "parts": list(self.key.parts), "rows": self.rows,
                "detail": self.detail}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PlannedUnit:
        """The inverse of :meth:`to_dict`."""
        return cls(UnitKey(data["scope"], tuple(data["parts"])), int(data.get("rows") or 0), dict(data.get("detail") or {}))
