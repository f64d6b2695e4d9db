"""The life cycle's vocabulary: states and their transitions, unit keys, batching under max_map_length."""

from __future__ import annotations

import pytest

from cutover import control
from cutover.lifecycle.batching import make_batches
from cutover.lifecycle.model import (
    TRANSITIONS,
    InvalidTransition,
    PlannedUnit,
    UnitKey,
    UnitState,
    check_transition,
)
from cutover.samples.hostile import HOSTILE_NAMES

S = UnitState


def test_the_control_schema_knows_exactly_the_enum_states() -> None:
    assert set(control.UNIT_STATES) == {s.value for s in UnitState}
    assert set(TRANSITIONS) == set(UnitState)


@pytest.mark.parametrize(("old", "new"), [
    (S.PLANNED, S.PREPARED), (S.PREPARED, S.COPYING), (S.COPYING, S.COPYING), (S.COPYING, S.COPIED),
    (S.COPIED, S.VERIFIED), (S.VERIFIED, S.CUT_OVER), (S.CUT_OVER, S.ROLLED_BACK), (S.COPYING, S.FAILED),
    (S.FAILED, S.COPYING), (None, S.PLANNED),
])
def test_life_cycle_steps_are_allowed(old: UnitState | None, new: UnitState) -> None:
    assert check_transition("u", old, new) == new


@pytest.mark.parametrize(("old", "new"), [
    (S.PLANNED, S.COPIED), (S.PLANNED, S.VERIFIED), (S.PREPARED, S.VERIFIED), (S.COPYING, S.VERIFIED),
    (S.COPIED, S.CUT_OVER), (S.VERIFIED, S.COPYING), (S.CUT_OVER, S.COPYING), (S.ROLLED_BACK, S.CUT_OVER),
    (S.FAILED, S.CUT_OVER),
])
def test_skipping_a_stage_is_refused_naming_the_unit(old: UnitState, new: UnitState) -> None:
    with pytest.raises(InvalidTransition, match=rf"unit ship-7: {old} → {new}"):
        check_transition("ship-7", old, new)


def test_unknown_state_is_an_error() -> None:
    with pytest.raises(ValueError):
        check_transition("u", "done", S.VERIFIED)


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_unit_keys_round_trip_any_name(name: str) -> None:
    one = UnitKey("tenant.tbl_data_timeseries", (name,))
    assert str(one) == f"tenant.tbl_data_timeseries:{name}"  # one-part keys stay as ship_wide stored them
    assert UnitKey.parse(str(one)) == one
    two = UnitKey("shop_db", (name, f"{name}/orders%"))
    assert UnitKey.parse(str(two), arity=2) == two
    assert PlannedUnit.from_dict(PlannedUnit(two, 5, {"x": name}).to_dict()) == PlannedUnit(two, 5, {"x": name})


def test_unit_key_rejects_what_it_cannot_round_trip() -> None:
    with pytest.raises(ValueError):
        UnitKey("a:b", ("x",))
    with pytest.raises(ValueError):
        UnitKey("s", ())
    with pytest.raises(ValueError, match="expected 2"):
        UnitKey.parse("s:a", arity=2)


@pytest.mark.parametrize(("n", "cap"), [(0, 1024), (3, 1024), (1100, 1024), (5000, 1024), (7, 2), (50 * 218, 1024)])
def test_batches_never_exceed_max_map_length_and_hold_every_unit_once(n: int, cap: int) -> None:
    units = [PlannedUnit(UnitKey("s", (f"u{i:05d}",)), rows=(i * 7919) % 1000) for i in range(n)]
    batches = make_batches(units, cap)
    assert len(batches) == min(n, cap)
    keys = [u["unit"] for b in batches for u in b["units"]]
    assert sorted(keys) == sorted(str(u.key) for u in units) and len(keys) == len(set(keys))
    if batches:
        sizes = [len(b["units"]) for b in batches]
        assert max(sizes) - min(sizes) <= max(2, n // cap)  # balanced
        assert all(b["label"] for b in batches)


def test_batches_are_balanced_by_rows_and_labelled_by_units() -> None:
    big = PlannedUnit(UnitKey("s", ("huge",)), rows=1_000_000)
    small = [PlannedUnit(UnitKey("s", (f"s{i}",)), rows=10) for i in range(9)]
    batches = make_batches([*small, big], 2)
    alone = [b for b in batches if any(u["unit"] == "s:huge" for u in b["units"])]
    assert len(alone) == 1 and len(alone[0]["units"]) == 1 and alone[0]["label"] == "huge"
    other = next(b for b in batches if b is not alone[0])
    assert other["label"].startswith("s0, s1") and len(other["units"]) == 9


def test_batches_refuse_zero() -> None:
    with pytest.raises(ValueError):
        make_batches([], 0)
