"""The live sync (ship_wide_live's follower) and the builds of new ships on the real PostgreSQL.

Ship and channel ids are hostile names (:data:`cutover.samples.hostile.HOSTILE_NAMES`). Equality is
checked with the verification's own counts and checksums (:func:`cutover.ship_wide.verify.narrow_stats`
/ ``wide_stats``) *without* its catch-up sync, so nothing but the follower moved the rows.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from cutover import control
from cutover import ship_wide as sw
from cutover.connections import pg_connect
from cutover.samples import ship
from cutover.samples.hostile import HOSTILE_NAMES
from cutover.ship_wide.copy import get_state
from cutover.ship_wide.ddl import load_wide
from cutover.ship_wide.live import Follower, Gaps, build_requests, follow, new_ships, requested
from cutover.ship_wide.sync import ship_lock
from cutover.ship_wide.verify import narrow_stats, wide_stats
from tests.integration.test_ship_wide import _clean, build, build_run

pytestmark = pytest.mark.integration

SCHEMA = "sw_it_live"
SHIPS = ["vessel-7", 'x"; DROP TABLE y; --', "100%"]
CHANNELS = ["select", 'quo"te', "Ünïcødé ✓ °C", "a.b"]
FORMATS = {0: ("Decimal", "double_v"), 1: ("Integer", "long_v"), 2: ("String", "str_v"), 3: ("Boolean", "bool_v")}


@pytest.fixture
def schema(pg: Any) -> Iterator[str]:
    _clean(pg, SCHEMA)
    _clean_runs(pg)
    yield SCHEMA
    pg.rollback()
    _clean(pg, SCHEMA)
    _clean_runs(pg)


def _clean_runs(pg: Any) -> None:
    prefix = f"{SCHEMA}."
    pg.execute("DELETE FROM cutover.units WHERE pipeline = 'ship_wide_build' AND starts_with(unit_key, %s)", (prefix,))
    pg.execute("DELETE FROM cutover.runs WHERE run_id LIKE 'sw_it_live%%' OR run_id LIKE 'new_ships__sw_it_live%%'")
    if pg.execute("SELECT to_regclass('cutover.sync_pairs')").fetchone()[0] is not None:
        pg.execute("DELETE FROM cutover.sync_pairs WHERE starts_with(name, %s)", (f"ship_wide_build:{prefix}",))
    pg.commit()


def reading(ship_id: str, channel: str, t: int, value: int) -> dict[str, Any]:
    """One valid narrow row; the channel's position in CHANNELS picks its format."""
    fmt, col = FORMATS[CHANNELS.index(channel) % 4] if channel in CHANNELS else FORMATS[0]
    v: Any = {"double_v": value + 0.25, "long_v": value, "str_v": f"v{value}", "bool_v": value % 2 == 0}[col]
    return {"ship_id": ship_id, "data_channel_id": channel, "created_time": ship.time_at(t), "value_format": fmt, col: v}


def minute(ships: list[str], channels: list[str], first: int, *, seed: int = 0) -> list[dict[str, Any]]:
    """Four readings (a minute) of every channel of every ship, from time index ``first``."""
    return [reading(s, ch, first + k, seed + 10 * k + j) for s in ships for j, ch in enumerate(channels) for k in range(4)]


def seed(pg: Any, ships: list[str] = SHIPS, times: int = 8) -> None:
    ship.create_narrow(pg, SCHEMA)
    for i in range(0, times, 4):
        ship.insert_rows(pg, SCHEMA, minute(ships, CHANNELS, i, seed=i))
    pg.commit()


def assert_equal(pg: Any, cfg: sw.ShipWideConfig, ship_id: str) -> dict[str, Any]:
    """Narrow (loadable rows, every sequence) and wide agree: distinct times = rows, cells, checksum."""
    pg.commit()
    wide = load_wide(pg, cfg, ship_id)
    assert wide is not None
    n = narrow_stats(pg, cfg, wide, 2**62)
    w = wide_stats(pg, wide)
    pg.commit()
    assert (n["times"], n["cells"], n["checksum"]) == (w["rows"], w["cells"], w["checksum"]), (ship_id, n, w)
    return w


def cell(pg: Any, cfg: sw.ShipWideConfig, ship_id: str, channel: str, t: int) -> Any:
    from psycopg import sql

    from cutover.identifiers import pg_ident, with_params

    wide = load_wide(pg, cfg, ship_id)
    assert wide is not None
    row = pg.execute(with_params(sql.SQL("SELECT {} FROM {} WHERE created_time = %s").format(
        pg_ident(wide.columns[channel]), wide.ident)), (ship.time_at(t),)).fetchone()
    pg.commit()
    return row[0] if row else None


def wide_count(pg: Any, cfg: sw.ShipWideConfig, ship_id: str) -> int:
    from psycopg import sql

    wide = load_wide(pg, cfg, ship_id)
    assert wide is not None
    n = pg.execute(sql.SQL("SELECT count(*) FROM {}").format(wide.ident)).fetchone()[0]
    pg.commit()
    return int(n)


@pytest.fixture
def built(pg: Any, schema: str) -> sw.ShipWideConfig:
    seed(pg)
    cfg = sw.ShipWideConfig(schema=schema)
    build(cfg)
    return cfg


@pytest.fixture
def follower(built: sw.ShipWideConfig) -> Iterator[Follower]:
    f = Follower(built, log_every_s=0, gap_timeout_s=30, run_id="sw_it_live_follow")
    f.open()
    f.poll()  # the start: re-reads the overlap below the checkpoints
    yield f
    f.close()


# --- gaps (pure) --------------------------------------------------------------------------------


def test_gaps_are_the_numbers_a_read_skipped_until_they_turn_up() -> None:
    g = Gaps()
    g.note_read(10, [11, 12, 15, 16, 20], now=0.0)
    assert [r[:2] for r in g.ranges] == [[13, 14], [17, 19]] and g.ids() == 5 and g.floor() == 13
    g.fill([18, 13])
    assert [r[:2] for r in g.ranges] == [[14, 14], [17, 17], [19, 19]]
    g.note_read(20, [25], now=5.0)
    assert g.floor() == 14 and [r[:2] for r in g.ranges][-1] == [21, 24]
    assert g.expire(now=10.0, timeout_s=7.0) == 3  # the three from t=0 are given up
    assert [r[:2] for r in g.ranges] == [[21, 24]] and g.given_up == 3
    g.fill([21, 22, 23, 24])
    assert not g.ranges and g.floor() is None


# --- the follower -------------------------------------------------------------------------------


def test_follower_moves_new_late_and_duplicate_rows(pg: Any, built: sw.ShipWideConfig, follower: Follower) -> None:
    cfg = built
    for s in SHIPS:
        assert_equal(pg, cfg, s)
    ship.insert_rows(pg, SCHEMA, [
        *minute(SHIPS, CHANNELS, 20, seed=100),  # a new minute
        reading(SHIPS[0], CHANNELS[0], 2, 999),  # a duplicate of a copied reading: the later row wins
        reading(SHIPS[1], CHANNELS[1], -30, 7),  # a late reading, older than anything copied
    ])
    pg.commit()
    follower.poll()
    assert cell(pg, cfg, SHIPS[0], CHANNELS[0], 2) == 999.25
    assert cell(pg, cfg, SHIPS[1], CHANNELS[1], -30) == 7
    for s in SHIPS:
        assert_equal(pg, cfg, s)
    state = get_state(pg, cfg, SHIPS[0])
    pg.commit()
    assert state is not None and state.sync_seq == follower.top  # the checkpoint moved with the rows
    assert follower.totals["errors"] == 0


def test_a_new_channel_mid_follow_gets_its_column(pg: Any, built: sw.ShipWideConfig, follower: Follower) -> None:
    cfg, new = built, "load 100%"
    ship.insert_rows(pg, SCHEMA, [reading(SHIPS[2], new, 30 + k, k) for k in range(3)])
    pg.commit()
    follower.poll()
    wide = load_wide(pg, cfg, SHIPS[2])
    pg.commit()
    assert wide is not None and new in wide.columns
    assert follower.totals["new_columns"] == [new]
    from psycopg import sql

    from cutover.identifiers import pg_ident

    got = pg.execute(sql.SQL("SELECT count({}) FROM {}").format(pg_ident(wide.columns[new]),
                                                                 pg_ident(wide.schema, wide.view))).fetchone()[0]
    assert got == 3  # the reader view shows the column with its readings
    pg.commit()
    assert_equal(pg, cfg, SHIPS[2])


def test_a_row_committed_late_with_a_lower_id_is_not_lost(pg: Any, built: sw.ShipWideConfig, follower: Follower) -> None:
    cfg = built
    with pg_connect() as slow, pg_connect() as fast, pg_connect() as aborted:
        # the slow writer takes its ids first and commits last
        ship.insert_rows(slow, SCHEMA, [reading(SHIPS[0], CHANNELS[1], 40, 1),  # same cell as the fast row below
                                        reading(SHIPS[0], CHANNELS[2], 41, 2)])  # a cell of its own
        ship.insert_rows(aborted, SCHEMA, [reading(SHIPS[1], CHANNELS[0], 42, 3)])  # rolled back: a gap that never fills
        ship.insert_rows(fast, SCHEMA, [reading(SHIPS[0], CHANNELS[1], 40, 5), reading(SHIPS[1], CHANNELS[0], 40, 6)])
        fast.commit()
        follower.poll()
        assert cell(pg, cfg, SHIPS[0], CHANNELS[1], 40) == 5
        assert len(follower.gaps) >= 1 and follower.gaps.ids() == 3
        slow.commit()
        aborted.rollback()
    follower.poll()
    assert follower.totals["late_rows"] == 2
    assert cell(pg, cfg, SHIPS[0], CHANNELS[1], 40) == 5  # the late row is older: the fast row still wins
    assert cell(pg, cfg, SHIPS[0], CHANNELS[2], 41) == "v2"
    for s in SHIPS:
        assert_equal(pg, cfg, s)
    assert follower.gaps.ids() == 1  # the rolled-back id is still waited for …
    follower.gap_timeout_s = 0.0
    time.sleep(0.01)
    follower.poll()
    assert follower.gaps.ids() == 0 and follower.gaps.given_up == 1  # … until its time is up


def test_a_ship_locked_by_a_verification_is_skipped_and_caught_up(pg: Any, built: sw.ShipWideConfig,
                                                                 follower: Follower) -> None:
    cfg = built
    before = {s: wide_count(pg, cfg, s) for s in SHIPS}
    with pg_connect(cfg.target_conn_id) as other:
        with ship_lock(other, cfg, SHIPS[0]):  # what verify_ship and the minute sync hold
            ship.insert_rows(pg, SCHEMA, minute(SHIPS, CHANNELS, 50, seed=300))
            pg.commit()
            follower.poll()
            assert wide_count(pg, cfg, SHIPS[0]) == before[SHIPS[0]]  # not touched
            assert wide_count(pg, cfg, SHIPS[1]) == before[SHIPS[1]] + 4  # the others went on
            assert follower.ships[SHIPS[0]].pending and follower.totals["locked_skips"] == 1
    follower.poll()
    assert wide_count(pg, cfg, SHIPS[0]) == before[SHIPS[0]] + 4
    assert not follower.ships[SHIPS[0]].pending
    for s in SHIPS:
        assert_equal(pg, cfg, s)


def test_dead_letters_are_stored_once(pg: Any, built: sw.ShipWideConfig, follower: Follower) -> None:
    cfg = built
    ship.insert_rows(pg, SCHEMA, [
        {"ship_id": SHIPS[1], "data_channel_id": CHANNELS[0], "created_time": ship.time_at(60), "value_format": "Decimal",
         "str_v": "12,5"},  # no double_v
        {**reading(SHIPS[1], CHANNELS[0], 61, 1), "value_format": "Integer", "double_v": None, "long_v": 1},  # wrong format
        reading(SHIPS[1], CHANNELS[1], 60, 9),
    ])
    pg.commit()
    follower.poll()
    unit = cfg.unit(SHIPS[1])

    def letters() -> int:
        n = len(control.list_dead_letters(pg, "ship_wide_build", unit))
        pg.commit()
        return n

    assert letters() == 2 and follower.totals["dead_letters"] == 2
    again = Follower(cfg, log_every_s=0)  # a new follower re-reads the overlap below the checkpoints
    again.open()
    try:
        again.poll()
    finally:
        again.close()
    sw.sync_ship(cfg, SHIPS[1])  # and so does the minute sync
    assert letters() == 2
    assert_equal(pg, cfg, SHIPS[1])


@pytest.mark.parametrize("stage", ["applied", "committed"])
def test_a_killed_follower_resumes_from_the_checkpoints(pg: Any, built: sw.ShipWideConfig, stage: str) -> None:
    cfg = built

    class Killed(Exception):
        pass

    def kill(at: str, _: dict[str, Any]) -> None:
        if at == stage:
            raise Killed

    first = Follower(cfg, log_every_s=0)
    first.open()
    first.poll()
    first.hook = kill
    ship.insert_rows(pg, SCHEMA, minute(SHIPS, CHANNELS, 70, seed=500))
    pg.commit()
    with pytest.raises(Killed):
        first.poll()
    first.close()
    ship.insert_rows(pg, SCHEMA, minute(SHIPS, CHANNELS, 74, seed=600))  # more arrives while nobody follows
    pg.commit()
    second = Follower(cfg, log_every_s=0)
    second.open()
    try:
        second.poll()
    finally:
        second.close()
    for s in SHIPS:
        assert assert_equal(pg, cfg, s)["rows"] == 16  # 8 copied + 2 minutes, each time once


def test_a_ship_built_while_following_joins(pg: Any, built: sw.ShipWideConfig, follower: Follower) -> None:
    cfg, late_ship = built, "M/V Ocean.1"
    ship.insert_rows(pg, SCHEMA, minute([late_ship], CHANNELS, 0, seed=1))
    pg.commit()
    follower.poll()  # not built yet: its rows are not the follower's
    assert late_ship not in follower.ships
    build(cfg, [late_ship])
    ship.insert_rows(pg, SCHEMA, minute([late_ship], CHANNELS, 4, seed=2))
    pg.commit()
    follower.refresh(time.monotonic())  # (every refresh_s in the loop)
    assert follower.ships[late_ship].joined and follower.totals["ships_joined"] == 1
    ship.insert_rows(pg, SCHEMA, minute([late_ship], CHANNELS, 8, seed=3))
    pg.commit()
    follower.poll()
    assert assert_equal(pg, cfg, late_ship)["rows"] == 12


def test_follow_loop_keeps_a_ship_under_a_second_behind(pg: Any, built: sw.ShipWideConfig) -> None:
    cfg = built
    stop = threading.Event()
    out: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: out.update(follow(cfg, stop_after_s=60, poll_s=0.05, stop=stop)))
    thread.start()
    try:
        time.sleep(0.5)
        ship.insert_rows(pg, SCHEMA, minute([SHIPS[0]], CHANNELS, 90, seed=7))
        pg.commit()
        t0 = time.monotonic()
        while cell(pg, cfg, SHIPS[0], CHANNELS[0], 93) is None and time.monotonic() - t0 < 10:
            time.sleep(0.01)
        lag = time.monotonic() - t0
    finally:
        stop.set()
        thread.join(30)
    assert lag < 1.0, f"the batch took {lag:.2f} s to be readable"
    assert out["errors"] == 0 and out["narrow_rows"] >= 16
    assert_equal(pg, cfg, SHIPS[0])


# --- new ships ----------------------------------------------------------------------------------


def test_new_ships_are_found_requested_once_and_built_like_any_other(pg: Any, schema: str) -> None:
    from cutover.lifecycle.stages import run_build
    from cutover.ship_wide.spec import SPEC

    seed(pg, SHIPS[:2], times=4)
    cfg = sw.ShipWideConfig(schema=schema, text_columns=True, chunk_rows=1000)
    assert new_ships(cfg) == []  # nothing built yet: the first build is a person's decision
    assert build_run(cfg, "sw_it_live_first", SHIPS[:2]).green
    assert new_ships(cfg) == []
    fresh = sorted(HOSTILE_NAMES[-3:-1])  # two ships that appear after the build
    ship.insert_rows(pg, SCHEMA, minute(fresh, CHANNELS, 8, seed=9))
    pg.commit()
    assert new_ships(cfg) == fresh
    run_id = "new_ships__sw_it_live_1"
    (req,) = build_requests(cfg, run_id)
    assert req["trigger_run_id"] == run_id
    conf = req["conf"]
    assert conf["units"] == fresh and conf["schema"] == schema
    assert conf["text_columns"] is True and conf["chunk_rows"] == 1000  # the settings of the table's last build
    units = {u["unit_key"]: u["state"] for u in control.list_units(pg, run_id)}
    pg.commit()
    assert units == {cfg.unit(s): "planned" for s in fresh}  # recorded as soon as asked for
    assert new_ships(cfg) == []  # … so the next minute does not ask again
    assert build_requests(cfg, "new_ships__sw_it_live_2") == []
    assert build_requests(cfg, run_id) == [req]  # a retried task asks for the same run
    assert requested(cfg, run_id) == fresh
    later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=2)
    assert new_ships(cfg, now=later) == fresh  # a request Airflow never started is not waited for forever

    report = run_build(SPEC, conf, run_id)  # what the triggered ship_wide_build run does
    assert report.green and report.states == {"verified": 2}
    assert requested(cfg, run_id) is None
    assert new_ships(cfg, now=later) == []
    for s in fresh:
        assert assert_equal(pg, cfg, s)["rows"] == 4

    # a ship rolled back with drop, or whose build failed, waits for a person
    sw.rollback_ship(cfg, fresh[0], drop=True)
    control.set_unit(pg, "sw_it_live_failed", "ship_wide_build", cfg.unit("never built"), "failed", error="x")
    pg.commit()
    ship.insert_rows(pg, SCHEMA, minute(["never built"], CHANNELS, 0))
    pg.commit()
    assert new_ships(cfg, now=later) == []
