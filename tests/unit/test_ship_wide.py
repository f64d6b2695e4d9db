"""ship_wide pure functions: value rules, column typing and naming, the vectorised pivot."""

from __future__ import annotations

import pytest

from cutover.ship_wide.arrival import Pattern, pattern_entry
from cutover.ship_wide.config import ShipWideConfig, column_type, invalid_reason
from cutover.ship_wide.ddl import ChannelLimitExceeded, WideTable, map_channels
from cutover.ship_wide.pivot import new_channels, pivot, read_chunk


def _csv(rows: list[tuple]) -> bytes:
    """Narrow chunk rows (seq, time, channel, format, double, long, str, bool) as COPY CSV writes them."""
    def cell(v: object) -> str:
        if v is None:
            return ""
        return '"' + str(v).replace('"', '""') + '"' if isinstance(v, str) else str(v)
    return "".join(",".join(cell(v) for v in r) + "\n" for r in rows).encode()


T1, T2 = "2024-01-01 00:00:00+00", "2024-01-01 00:00:15+00"


def test_column_type_from_formats() -> None:
    assert column_type({"Decimal"}, text_columns=False) == "double precision"
    assert column_type({"Integer"}, text_columns=False) == "bigint"
    assert column_type({"Boolean"}, text_columns=False) == "boolean"
    assert column_type({"Decimal", "String"}, text_columns=False) == "text"  # conflict
    assert column_type({"Decimal"}, text_columns=True) == "text"


def test_invalid_reasons() -> None:
    assert invalid_reason("c", "Decimal", {"double_v": True}) is None
    assert invalid_reason("c", "Decimal", {"str_v": True}) == "value_format Decimal but double_v is NULL (str_v set)"
    assert invalid_reason("c", "Decimal", {"double_v": True, "long_v": True}) == "value_format Decimal but long_v also set"
    assert invalid_reason("c", "Float", {"double_v": True}) == "unknown value_format 'Float'"
    assert invalid_reason("", "Decimal", {"double_v": True}) == "data_channel_id is empty"
    assert invalid_reason("c", "Decimal", {"double_v": True}, time_missing=True) == "created_time is NULL"


def test_map_channels_keeps_names_maps_long_ones_and_refuses_past_the_limit() -> None:
    long = "x" * 80
    got = map_channels({}, {"select": "text", 'a"b': "text", "created_time": "bigint", long: "text"},
                       max_channels=10, ship_id="s")
    assert got["select"] == "select" and got['a"b'] == 'a"b'
    assert got["created_time"] != "created_time"
    assert len(got[long].encode()) <= 63 and got[long] != long[:63]
    with pytest.raises(ChannelLimitExceeded, match="ship 's' has 3 channels"):
        map_channels({"a": "a", "b": "b"}, {"c": "text"}, max_channels=2, ship_id="s")
    assert ShipWideConfig().max_channels == 1599


def test_pivot_latest_valid_row_wins_and_bad_rows_are_dead_letters() -> None:
    chunk = read_chunk(_csv([
        (1, T1, "speed", "Decimal", 1.5, None, None, None),
        (5, T1, "speed", "Decimal", 2.5, None, None, None),  # later: wins
        (3, T1, "speed", "Decimal", 9.9, None, None, None),
        (2, T1, "on", "Boolean", None, None, None, "t"),
        (4, T2, "speed", "Decimal", None, None, "n/a", None),  # mismatch
        (6, T2, "name", "String", None, None, "", None),  # empty string is a value, not NULL
        (7, T2, "speed", "String", None, None, "x", None),  # does not fit a double column
        (8, T2, "on", "Decimal", 3.0, None, None, "t"),  # two value columns
    ]))
    columns = {"speed": "speed", "on": "on", "name": "name"}
    types = {"speed": "double precision", "on": "boolean", "name": "text"}
    res = pivot(chunk, columns, types, ship_id="s1", source="t")
    assert res.wide_rows == 2 and res.narrow_rows == 8 and res.loaded == 3 and res.superseded == 2
    assert res.max_seq == 8 and res.last_time == T2
    lines = sorted(res.csv.decode().splitlines())
    assert res.columns == ["created_time", "speed", "on", "name"]
    assert lines == [f'"{T1}","2.5","true",', f'"{T2}",,,""']
    reasons = sorted(d.reason for d in res.dead)
    assert reasons == [
        "value_format Decimal but bool_v also set",
        "value_format Decimal but double_v is NULL (str_v set)",
        "value_format String does not fit column 'speed' of type double precision",
    ]
    assert all(d.record_key.startswith("ship=s1 ") for d in res.dead)


def test_new_channels_lists_unmapped_valid_channels_with_formats() -> None:
    chunk = read_chunk(_csv([
        (1, T1, "a", "Decimal", 1.0, None, None, None),
        (2, T1, "b", "Integer", None, 4, None, None),
        (3, T2, "b", "String", None, None, "s", None),
        (4, T2, "c", "Decimal", None, None, "bad", None),  # invalid: not a reason for a column
    ]))
    assert new_channels(chunk, {"a": "a"}) == {"b": {"Integer", "String"}}
    assert new_channels(read_chunk(b""), {}) == {}


def _wide(types: dict[str, str]) -> WideTable:
    return WideTable("s1", "u", "sch", "t", "v", columns={f"ch {c}": c for c in types}, types=dict(types))


def test_arrival_pattern_entry_maps_positions_and_null_layout() -> None:
    wide = _wide({"a": "double precision", "b": "text", "c": "boolean", "d": "bigint"})
    # arrival order differs from the column order; column d is absent from this time
    entry = pattern_entry(wide, Pattern(("ch c", "ch a", "ch b"), ("Boolean", "Decimal", "Integer")))
    assert entry is not None
    assert entry["chs"] == "ch c\x1ech a\x1ech b" and entry["fs"] == "Boolean\x1eDecimal\x1eInteger" and entry["n"] == 3
    # per format's array, per column a, b, c, d: the position (1-based) of its row, when it has that format
    assert entry["dx"] == [2, None, None, None]
    assert entry["lx"] == [None, 3, None, None]  # b is a text column: it takes its Integer row
    assert entry["sx"] == [None, None, None, None]
    assert entry["bx"] == [None, None, 1, None]


@pytest.mark.parametrize("channels, formats", [
    (("ch a", "ch a"), ("Decimal", "Decimal")),  # a channel twice: a duplicate, the later row must win
    (("ch a", "new"), ("Decimal", "Integer")),  # a channel without a column yet
    (("ch a",), ("Integer",)),  # a format the typed column does not take
    (("ch a",), ("Float",)),  # not a format
])
def test_arrival_pattern_refuses_what_a_clean_time_cannot_be(channels: tuple[str, ...], formats: tuple[str, ...]) -> None:
    assert pattern_entry(_wide({"a": "double precision", "b": "text"}), Pattern(channels, formats)) is None
    # a text column takes every format
    assert pattern_entry(_wide({"a": "text"}), Pattern(("ch a",), ("Integer",))) is not None
    # the separator inside a channel id: a pattern with it is never learned, even for a mapped channel
    odd = WideTable("s1", "u", "sch", "t", "v", columns={"x\x1ey": "xy"}, types={"xy": "text"})
    assert pattern_entry(odd, Pattern(("x\x1ey",), ("String",))) is None
