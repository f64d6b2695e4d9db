"""ship_wide_build with every hostile name as a ship id (and as a channel id): build, verify, cut over, roll back.

Ship ids come from data. Each name of :data:`cutover.samples.hostile.HOSTILE_NAMES` (``vessel-7``,
``M/V Ocean.1``, quotes, ``100%``, ``x:y``, unicode, 63-byte names, reserved words …) is a ship of one
narrow table, so it ends up in table and view names (``tbl_data_timeseries_<ship>`` and
``ts_reader_<ship>``, mapped when over 63 bytes), in unit keys, in ``WHERE ship_id = …`` parameters
next to quoted names, in literals of the reader view and in GX suites. Each ship also carries another
hostile name as a typed channel id, so every name is a column too. One build run takes them all; it
must be green with every ship verified (checksums equal), the wide tables must hold exactly the
expected rows, and the nastiest ids are cut over and rolled back (with drop) with the reader view
following.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
from psycopg import sql

from cutover import control
from cutover import ship_wide as sw
from cutover.identifiers import PG_MAX_IDENT_BYTES, pg_ident, with_params
from cutover.samples import ship
from cutover.samples.hostile import HOSTILE_NAMES, MAX_BYTES_NAME
from cutover.ship_wide.ddl import WideTable, load_wide

pytestmark = pytest.mark.integration

SCHEMA = "sw_it_hostile"
RUN = "sw_it_hostile_build"
TIMES = 3
INJECTION = 'x"; DROP TABLE y; --'
#: the ids cut over and rolled back: a placeholder marker, an injection, and one whose table name is mapped
SWITCHED = ("100%", INJECTION, MAX_BYTES_NAME)
#: the ids kept in sync after the build: a new time arrives, with a new channel whose name holds a %
SYNCED = ("M/V Ocean.1", "x:y")
NEW_CHANNEL = "load 100%"
#: a schema (the build's ``schema`` Param) that is hostile too: a placeholder marker, a quote, a space
HOSTILE_SCHEMA = 'sw_it_hostile 100%"s'


def _clean(pg: Any, schema: str) -> None:
    """Drop the schema and every control row of its ships (prefix match: the schema may hold ``%``)."""
    pg.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(pg_ident(schema)))
    prefix = f"{schema}."
    for table in ("units", "checkpoints", "switches", "switch_history", "object_backups", "dead_letters"):
        pg.execute(f"DELETE FROM cutover.{table} WHERE pipeline = 'ship_wide_build' AND starts_with(unit_key, %s)",
                   (prefix,))
    pg.execute("DELETE FROM cutover.name_map WHERE pipeline = 'ship_wide_build'"
               " AND (starts_with(scope, %s) OR starts_with(scope, %s))", (f"columns:{prefix}", f"tables:{prefix}"))
    if pg.execute("SELECT to_regclass('cutover.sync_pairs')").fetchone()[0] is not None:
        pg.execute("DELETE FROM cutover.sync_pairs WHERE starts_with(name, %s)", (f"ship_wide_build:{prefix}",))
    pg.commit()


@pytest.fixture
def schema(pg: Any) -> Iterator[str]:
    _clean(pg, SCHEMA)
    yield SCHEMA
    pg.rollback()
    _clean(pg, SCHEMA)


@pytest.fixture
def hostile_schema(pg: Any) -> Iterator[str]:
    _clean(pg, HOSTILE_SCHEMA)
    yield HOSTILE_SCHEMA
    pg.rollback()
    _clean(pg, HOSTILE_SCHEMA)


def odd_channel(i: int) -> str:
    """Ship ``i``'s hostile channel id: the next hostile name, so every name is a column of some ship."""
    return HOSTILE_NAMES[(i + 1) % len(HOSTILE_NAMES)]


def expected_rows(i: int, ship_id: str, times: int = TIMES) -> list[tuple[Any, ...]]:
    """(created_time, speed, odd channel, state) of ship ``i`` as readers must see them."""
    return [
        (ship.time_at(k), 99.5 if k == 0 else i + k / 4, 1000 * i + k, f"{ship_id} @{k}")
        for k in range(times)
    ]


def reading(i: int, ship_id: str, k: int, odd: str) -> list[dict[str, Any]]:
    """The narrow rows of ship ``i`` at time ``k``: speed, its odd channel, state."""
    t = ship.time_at(k)
    return [
        {"ship_id": ship_id, "data_channel_id": "speed", "created_time": t, "value_format": "Decimal", "double_v": i + k / 4},
        {"ship_id": ship_id, "data_channel_id": odd, "created_time": t, "value_format": "Integer", "long_v": 1000 * i + k},
        {"ship_id": ship_id, "data_channel_id": "state", "created_time": t, "value_format": "String", "str_v": f"{ship_id} @{k}"},
    ]


def insert_rows(pg: Any, schema: str, rows: list[dict[str, Any]]) -> int:
    """Insert narrow rows (not ``ship.insert_rows``: its INSERT runs with parameters next to the quoted
    schema name, which here may hold a ``%``)."""
    cols = list(ship.NARROW_COLUMNS)
    q = sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
        pg_ident(schema, "tbl_data_timeseries"), sql.SQL(", ").join(pg_ident(c) for c in cols),
        sql.SQL(", ").join(sql.Placeholder() * len(cols)))
    with pg.cursor() as cur:
        cur.executemany(with_params(q), [[r.get(c) for c in cols] for r in rows])
    pg.commit()
    return len(rows)


def load_narrow(pg: Any, schema: str, ships: tuple[str, ...] = HOSTILE_NAMES) -> int:
    """Per ship: 3 channels × 3 times, a later duplicate (it wins) and an invalid row (a dead letter)."""
    ship.create_narrow(pg, schema)
    rows: list[dict[str, Any]] = []
    for s in ships:
        i = HOSTILE_NAMES.index(s)
        for k in range(TIMES):
            rows += reading(i, s, k, odd_channel(i))
        rows += [
            # a later row of the same (channel, time): it wins (its time goes through the client pivot)
            {"ship_id": s, "data_channel_id": "speed", "created_time": ship.time_at(0), "value_format": "Decimal",
             "double_v": 99.5},
            # an invalid row: a dead letter naming the ship
            {"ship_id": s, "data_channel_id": "speed", "created_time": ship.time_at(1), "value_format": "Decimal",
             "long_v": 7},
        ]
    return insert_rows(pg, schema, rows)


def build_run(cfg: sw.ShipWideConfig, run_id: str) -> Any:
    from cutover.lifecycle.stages import run_build
    from cutover.ship_wide.spec import SPEC

    params = {**{k: v for k, v in cfg.to_dict().items() if k in ("schema", "chunk_rows", "pivot", "copy_connections",
                                                                 "text_columns")}, "units": []}
    return run_build(SPEC, params, run_id)


def read(pg: Any, schema: str, relation: str, wide: WideTable, i: int) -> list[tuple[Any, ...]]:
    """(created_time, speed, odd channel, state) of a table or view, by time."""
    cols = [wide.columns[ch] for ch in ("speed", odd_channel(i), "state")]
    q = sql.SQL("SELECT {} FROM {} ORDER BY created_time").format(
        sql.SQL(", ").join(pg_ident(c) for c in ["created_time", *cols]), pg_ident(schema, relation))
    rows = pg.execute(q).fetchall()
    pg.commit()
    return [tuple(r) for r in rows]


def backend(pg: Any, cfg: sw.ShipWideConfig, ship_id: str) -> str | None:
    """Where the ship's readers are, as recorded in the control schema."""
    found = control.get_switch(pg, "ship_wide_build", cfg.unit(ship_id))
    return found.backend if found else None


def relation_exists(pg: Any, schema: str, name: str) -> bool:
    return pg.execute(
        "SELECT EXISTS (SELECT FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = %s AND c.relname = %s)", (schema, name)).fetchone()[0]


def view_reads(pg: Any, schema: str, view: str, table: str) -> bool:
    """Whether the view's definition reads ``schema.table`` (from the catalog, not from rendered SQL)."""
    return pg.execute(
        """SELECT EXISTS (
             SELECT FROM pg_rewrite r
             JOIN pg_class v ON v.oid = r.ev_class JOIN pg_namespace vn ON vn.oid = v.relnamespace
             JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid
             JOIN pg_class t ON t.oid = d.refobjid JOIN pg_namespace tn ON tn.oid = t.relnamespace
             WHERE vn.nspname = %s AND v.relname = %s AND tn.nspname = %s AND t.relname = %s)""",
        (schema, view, schema, table)).fetchone()[0]


def test_every_hostile_ship_id_builds_verifies_cuts_over_and_rolls_back(pg: Any, schema: str,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUTOVER_REQUIRE_APPROVAL", "off")  # this test switches without a human: policy off
    assert {"vessel-7", "M/V Ocean.1", "100%", "x:y", INJECTION, MAX_BYTES_NAME, "select", "Order"} <= set(HOSTILE_NAMES)
    load_narrow(pg, schema)
    cfg = sw.ShipWideConfig(schema=schema)
    n = len(HOSTILE_NAMES)

    report = build_run(cfg, RUN)
    assert report.green, report.reason
    assert report.states == {"verified": n}

    units = {u["unit_key"]: u for u in control.list_units(pg, RUN)}
    pg.commit()
    assert set(units) == {cfg.unit(s) for s in HOSTILE_NAMES}  # unit key = <schema>.<table>:<ship>, verbatim
    for key, u in units.items():
        assert u["state"] == "verified" and u["error"] is None, (key, u["error"])
        assert u["checksum_source"] is not None and u["checksum_source"] == u["checksum_target"], key
        assert u["rows_written"] == TIMES, key
        assert u["detail"]["verify"]["cells"] == 3 * TIMES, key

    walls = {}
    for i, s in enumerate(HOSTILE_NAMES):
        wide = load_wide(pg, cfg, s)
        pg.commit()
        assert wide is not None, s
        walls[s] = wide
        natural = f"{cfg.narrow_table}_{s}"
        if len(natural.encode()) <= PG_MAX_IDENT_BYTES:
            assert wide.table == natural  # kept verbatim, only quoted
        else:  # mapped (never truncated silently): the name map says so
            assert len(wide.table.encode()) <= PG_MAX_IDENT_BYTES and wide.table != natural
            stored = control.load_name_map(pg, "ship_wide_build", f"tables:{cfg.scope}")
            pg.commit()
            assert stored[natural] == wide.table
        assert set(wide.columns) == {"speed", odd_channel(i), "state"}, s
        assert read(pg, schema, wide.table, wide, i) == expected_rows(i, s), s
        assert read(pg, schema, wide.view, wide, i) == expected_rows(i, s), s  # readers: still the narrow table
        assert view_reads(pg, schema, wide.view, cfg.narrow_table)
        dead = control.list_dead_letters(pg, "ship_wide_build", cfg.unit(s))
        pg.commit()
        assert len(dead) == 1 and dead[0]["payload"]["ship_id"] == s, s
    assert len(walls[MAX_BYTES_NAME].table.encode()) <= PG_MAX_IDENT_BYTES  # the 63-byte id: a mapped table name

    # each built ship is watched by consistency_checks: its pair's queries quote the id and the channels
    from cutover.consistency.runner import run_check
    from cutover.ship_wide.pair import pair_name

    for s in SWITCHED:
        outcome = run_check(pair_name(cfg, s), as_of=dt.datetime.now(dt.UTC), full=True)
        assert outcome.status == "equal" and outcome.rows_checked == 3 * TIMES, (s, outcome)

    # sync: a new time, with a new channel (a column added, the reader view recreated), then verified again
    for s in SYNCED:
        i = HOSTILE_NAMES.index(s)
        insert_rows(pg, schema, [*reading(i, s, TIMES, odd_channel(i)), {
            "ship_id": s, "data_channel_id": NEW_CHANNEL, "created_time": ship.time_at(TIMES), "value_format": "Decimal",
            "double_v": 0.5}])
        out = sw.sync_ship(cfg, s)
        assert out["skipped"] is False and out["new_columns"] == [NEW_CHANNEL], (s, out)  # (it re-reads an overlap)
        wide = load_wide(pg, cfg, s)
        pg.commit()
        assert wide is not None
        walls[s] = wide
        assert read(pg, schema, wide.table, wide, i) == expected_rows(i, s, TIMES + 1)
        assert read(pg, schema, wide.view, wide, i) == expected_rows(i, s, TIMES + 1)
        got = pg.execute(with_params(sql.SQL("SELECT {} FROM {} WHERE created_time = %s").format(
            pg_ident(NEW_CHANNEL), pg_ident(schema, wide.view))), (ship.time_at(TIMES),)).fetchone()
        pg.commit()
        assert got == (0.5,)
        res = sw.verify_ship(cfg, s)
        assert res["narrow"]["checksum"] == res["wide"]["checksum"] and res["wide"]["rows"] == TIMES + 1
        assert res["gate"]["success"] is True

    for s in SWITCHED:
        i, wide = HOSTILE_NAMES.index(s), walls[s]
        before = read(pg, schema, wide.view, wide, i)
        sw.cutover_ship(cfg, s)
        assert backend(pg, cfg, s) == "wide"
        pg.commit()
        assert view_reads(pg, schema, wide.view, wide.table) and not view_reads(pg, schema, wide.view, cfg.narrow_table)
        assert read(pg, schema, wide.view, wide, i) == before == expected_rows(i, s)

        sw.rollback_ship(cfg, s, drop=True)
        assert backend(pg, cfg, s) == "narrow"
        pg.commit()
        assert not relation_exists(pg, schema, wide.table)  # dropped
        assert control.get_checkpoint(pg, "ship_wide_build", cfg.unit(s)) is None
        pg.commit()
        assert view_reads(pg, schema, wide.view, cfg.narrow_table)
        assert read(pg, schema, wide.view, wide, i) == before  # readers still served, from the narrow table
        hist = [(h["from_backend"], h["to_backend"]) for h in control.switch_history(pg, "ship_wide_build", cfg.unit(s))]
        pg.commit()
        assert hist == [(None, "narrow"), ("narrow", "wide"), ("wide", "narrow")], s

    # the other ships are untouched: their tables, readers and states are still there
    for i, s in enumerate(HOSTILE_NAMES):
        if s in SWITCHED:
            continue
        wide = walls[s]
        assert relation_exists(pg, schema, wide.table), s
        assert read(pg, schema, wide.view, wide, i) == expected_rows(i, s, TIMES + (s in SYNCED)), s
        assert backend(pg, cfg, s) == "narrow", s
        pg.commit()


def test_hostile_schema_and_ship_ids_build_green(pg: Any, hostile_schema: str) -> None:
    """The narrow table's schema is a name too (a trigger Param): every statement that reads the narrow
    table with parameters (plan, chunk bounds, arrival probe, COPY out of problem times) quotes it."""
    ships = ("100%", "x:y")
    load_narrow(pg, hostile_schema, ships)
    cfg = sw.ShipWideConfig(schema=hostile_schema)
    report = build_run(cfg, "sw_it_hostile_schema")
    assert report.green, report.reason
    assert report.states == {"verified": len(ships)}
    for s in ships:
        i = HOSTILE_NAMES.index(s)
        wide = load_wide(pg, cfg, s)
        pg.commit()
        assert wide is not None
        assert read(pg, hostile_schema, wide.table, wide, i) == expected_rows(i, s)
        assert read(pg, hostile_schema, wide.view, wide, i) == expected_rows(i, s)


@pytest.mark.parametrize("name", [*HOSTILE_NAMES, "x%sy", "%%", "%(a)s", "%b%t"])
def test_with_params_keeps_names_and_placeholders(pg: Any, name: str) -> None:
    """psycopg reads each % of a statement run with parameters, in quoted names and literals too (psycopg
    3.3 does not escape them); :func:`with_params` doubles exactly those, so names stay verbatim."""
    from psycopg import ClientCursor

    tbl = pg_ident(name)
    pg.execute(sql.SQL("CREATE TEMP TABLE {} ({} text, n int)").format(tbl, pg_ident(name)))  # no parameters: as is
    insert = sql.SQL("INSERT INTO {} ({}, n) VALUES ({}, %s), (%s, {})").format(
        tbl, pg_ident(name), sql.Literal(name), sql.Placeholder())
    pg.execute(with_params(insert), [1, name, 2])
    select = sql.SQL("SELECT {}, n, {} FROM {} WHERE n >= %s AND {} = {} ORDER BY n").format(
        pg_ident(name), sql.Literal(name), tbl, pg_ident(name), sql.Literal(name))
    assert pg.execute(with_params(select), [0]).fetchall() == [(name, 1, name), (name, 2, name)]
    with ClientCursor(pg) as cc:
        assert cc.execute(with_params(select), [2]).fetchall() == [(name, 2, name)]
    with pg.cursor() as cur:
        with cur.copy(with_params(sql.SQL("COPY ({}) TO STDOUT").format(select)), [2]) as cp:
            assert b"".join(cp).decode() == f"{name}\t2\t{name}\n"
    assert with_params(with_params(select)).as_string(pg) == with_params(select).as_string(pg)  # idempotent
    pg.rollback()
