"""ship_wide_build on the real PostgreSQL: build, kill and resume, sync, dead letters, names, gate, rollback."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest

from cutover import control
from cutover import ship_wide as sw
from cutover.identifiers import PG_MAX_IDENT_BYTES
from cutover.samples import ship
from cutover.ship_wide.arrival import GIVE_UP_AFTER
from cutover.ship_wide.copy import get_state

pytestmark = pytest.mark.integration

SCHEMA = "sw_it_ship_wide"


def _clean(pg: Any, schema: str) -> None:
    pg.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    like = f"{schema}.%"
    for table, col in (("checkpoints", "unit_key"), ("switches", "unit_key"), ("switch_history", "unit_key"),
                       ("object_backups", "unit_key"), ("dead_letters", "unit_key")):
        pg.execute(f"DELETE FROM cutover.{table} WHERE pipeline = 'ship_wide_build' AND {col} LIKE %s", (like,))
    pg.execute("DELETE FROM cutover.name_map WHERE pipeline = 'ship_wide_build' AND (scope LIKE %s OR scope LIKE %s)",
               (f"columns:{like}", f"tables:{like}"))
    pg.commit()


@pytest.fixture
def schema(pg: Any) -> Iterator[str]:
    _clean(pg, SCHEMA)
    yield SCHEMA
    _clean(pg, SCHEMA)


@pytest.fixture(params=["server", "client"])
def pivot(request: pytest.FixtureRequest) -> str:
    """Both history-copy paths: inside PostgreSQL (one database) and in the client (COPY out/in)."""
    return str(request.param)


def build(cfg: sw.ShipWideConfig, ships: list[str] | None = None, run_id: str | None = None) -> list[dict[str, Any]]:
    """prepare → copy → finalize of the pipeline's own functions (no run bookkeeping, no verify)."""
    plans = sw.plan_run(cfg, ships)
    for p in plans:
        sw.prepare_ship(cfg, p, run_id=run_id)
        sw.copy_history(cfg, p["ship_id"], run_id=run_id, rows_total=p["rows"])
        sw.finalize_ship(cfg, p["ship_id"], run_id=run_id)
    return plans


def build_run(cfg: sw.ShipWideConfig, run_id: str, ships: list[str] | None = None) -> Any:
    """A whole build run through the shared life cycle, as the DAG runs it (units recorded and verified)."""
    from cutover.lifecycle.stages import run_build
    from cutover.ship_wide.spec import SPEC

    params = {**{k: v for k, v in cfg.to_dict().items() if k in ("schema", "chunk_rows", "pivot", "copy_connections",
                                                                 "text_columns")}, "units": ships or []}
    return run_build(SPEC, params, run_id)


def wide_rows(pg: Any, table: str, schema: str = SCHEMA) -> int:
    return pg.execute(f'SELECT count(*) FROM "{schema}"."{table}"').fetchone()[0]


def test_full_build_matches_narrow_by_checksum(pg: Any, schema: str, pivot: str) -> None:
    sample = ship.generate(pg, schema, ships=3, channels=12, timestamps=30, odd_names=True, conflict_channels=1,
                           mismatches=2, duplicates=4)
    pg.commit()
    cfg = sw.ShipWideConfig(schema=schema, chunk_rows=100, pivot=pivot)
    report = build_run(cfg, "sw_it_full")
    assert report.green and report.states == {"verified": 3}
    units = {u["unit_key"]: u for u in control.list_units(pg, "sw_it_full")}
    pg.commit()
    plans = sorted(units.values(), key=lambda u: u["updated_at"])
    assert [u["rows_total"] for u in plans] == sorted(u["rows_total"] for u in plans)  # smallest first
    for u in units.values():  # labelled progress: narrow rows read, wide rows written (30 times)
        assert u["rows_read"] == u["rows_total"] and u["rows_written"] == 30
        assert u["detail"]["finalized"] is True and u["error"] is None
    for s in sample.ships:
        res = sw.verify_ship(cfg, s, run_id="sw_it_full")
        assert res["narrow"]["checksum"] == res["wide"]["checksum"]
        assert res["narrow"]["times"] == res["wide"]["rows"] == 30
        assert res["gate"]["success"] is True
    # running the copy again changes nothing
    again = sw.copy_history(cfg, sample.ships[0])
    assert again["skipped"] is True
    units = {u["unit_key"]: u for u in control.list_units(pg, "sw_it_full")}
    assert all(u["state"] == "verified" for u in units.values())


def test_later_duplicate_wins(pg: Any, schema: str, pivot: str) -> None:
    ship.generate(pg, schema, ships=1, channels=3, timestamps=5)
    t = ship.time_at(2)
    ship.insert_rows(pg, schema, [
        {"ship_id": "9100001", "data_channel_id": "ch_0000", "created_time": t, "value_format": "Decimal", "double_v": 1.5},
        {"ship_id": "9100001", "data_channel_id": "ch_0000", "created_time": t, "value_format": "Decimal", "double_v": 2.5},
    ])
    pg.commit()
    cfg = sw.ShipWideConfig(schema=schema, pivot=pivot)
    build(cfg)
    assert pg.execute(f'SELECT "ch_0000" FROM {schema}.tbl_data_timeseries_9100001 WHERE created_time = %s', (t,)).fetchone()[0] == 2.5
    sw.verify_ship(cfg, "9100001")


@pytest.mark.parametrize("connections", [1, 3])  # in-database pivot: chunks in flight behind the one killed
def test_killed_copy_resumes_without_duplicate_or_gap(pg: Any, schema: str, pivot: str, connections: int) -> None:
    ship.generate(pg, schema, ships=1, channels=10, timestamps=60, duplicates=5, mismatches=3)
    pg.commit()
    cfg = sw.ShipWideConfig(schema=schema, chunk_rows=50, pivot=pivot, copy_connections=connections)
    (p,) = sw.plan_run(cfg)
    sw.prepare_ship(cfg, p)

    class Killed(Exception):
        pass

    def kill_after_two(stage: str, n: int) -> None:
        if stage == "committed" and n == 2:
            raise Killed

    def kill_mid_chunk(stage: str, n: int) -> None:  # dies after the COPY, before the commit
        if stage == "loaded" and n == 3:
            raise Killed

    with pytest.raises(Killed):
        sw.copy_history(cfg, p["ship_id"], hook=kill_after_two)
    state = get_state(pg, cfg, p["ship_id"])
    assert state is not None and not state.history_complete and state.chunks == 2
    # every time up to the watermark is in, once (about 2 chunks × 5 times of 10 channels)
    upto = pg.execute(f"SELECT count(DISTINCT created_time) FROM {schema}.tbl_data_timeseries WHERE created_time <= %s",
                      (state.created_time,)).fetchone()[0]
    assert 8 <= upto <= 10
    assert wide_rows(pg, "tbl_data_timeseries_9100001") == upto
    with pytest.raises(Killed):
        sw.copy_history(cfg, p["ship_id"], hook=kill_mid_chunk)
    pg.rollback()
    assert get_state(pg, cfg, p["ship_id"]).chunks == 4  # the third chunk of that run rolled back
    done = sw.copy_history(cfg, p["ship_id"])
    assert done["skipped"] is False
    sw.finalize_ship(cfg, p["ship_id"])  # the primary key is created: no duplicate created_time
    res = sw.verify_ship(cfg, p["ship_id"])  # no gap: every narrow time and value is there
    assert res["wide"]["rows"] == 60
    dead = control.list_dead_letters(pg, "ship_wide_build", cfg.unit("9100001"))
    assert len(dead) == 3  # stored once, although chunks were retried


def test_new_channel_between_two_syncs(pg: Any, schema: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUTOVER_REQUIRE_APPROVAL", "off")  # this test switches without a human: policy off
    sample = ship.generate(pg, schema, ships=2, channels=4, timestamps=8)
    pg.commit()
    cfg = sw.ShipWideConfig(schema=schema)
    build_run(cfg, "sw_it_newchan")
    sw.cutover_ship(cfg, "9100001")
    ship.append_minute(pg, schema, sample.ships, sample.channels, minute=10)
    pg.commit()
    first = sw.sync_ship(cfg, "9100001")
    assert first["new_columns"] == []
    ship.append_minute(pg, schema, sample.ships, [*sample.channels, "Engine RPM (new)"], minute=11)
    pg.commit()
    second = sw.sync_ship(cfg, "9100001")
    assert second["new_columns"] == ["Engine RPM (new)"]
    got = pg.execute(
        f'SELECT count("Engine RPM (new)") FROM {schema}.ts_reader_9100001'
    ).fetchone()[0]
    assert got == 4  # readers (on the wide table) see the new column with its 4 readings
    for s in sample.ships:
        sw.sync_ship(cfg, s)
        assert sw.verify_ship(cfg, s)["wide"]["rows"] == 16


def test_late_rows_are_not_lost(pg: Any, schema: str) -> None:
    ship.generate(pg, schema, ships=1, channels=6, timestamps=10, start_index=100)
    pg.commit()
    cfg = sw.ShipWideConfig(schema=schema)
    build(cfg)
    sw.sync_ship(cfg, "9100001")
    ship.insert_rows(pg, schema, [
        # a new reading for a time already copied, and a reading older than anything copied
        {"ship_id": "9100001", "data_channel_id": "ch_0001", "created_time": ship.time_at(105), "value_format": "Decimal", "double_v": -7.25},
        {"ship_id": "9100001", "data_channel_id": "ch_0005", "created_time": ship.time_at(3), "value_format": "Integer", "long_v": 42},
    ])
    pg.commit()
    sw.sync_ship(cfg, "9100001")
    tbl = f"{schema}.tbl_data_timeseries_9100001"
    assert pg.execute(f'SELECT "ch_0001" FROM {tbl} WHERE created_time = %s', (ship.time_at(105),)).fetchone()[0] == -7.25
    assert pg.execute(f'SELECT "ch_0005", "ch_0000" FROM {tbl} WHERE created_time = %s', (ship.time_at(3),)).fetchone() == (42, None)
    assert sw.verify_ship(cfg, "9100001")["wide"]["rows"] == 11


def test_format_mismatch_goes_to_dead_letters_rest_loads(pg: Any, schema: str, pivot: str) -> None:
    ship.generate(pg, schema, ships=1, channels=4, timestamps=6)
    t = ship.time_at(2)
    ship.insert_rows(pg, schema, [
        {"ship_id": "9100001", "data_channel_id": "ch_0000", "created_time": ship.time_at(50), "value_format": "Decimal", "str_v": "12,5"},
        {"ship_id": "9100001", "data_channel_id": "ch_0001", "created_time": t, "value_format": "Float", "double_v": 1.0},
    ])
    pg.commit()
    cfg = sw.ShipWideConfig(schema=schema, pivot=pivot)
    build(cfg, run_id="sw_it_dead")
    dead = control.list_dead_letters(pg, "ship_wide_build", cfg.unit("9100001"))
    reasons = sorted(d["reason"] for d in dead)
    assert reasons == ["unknown value_format 'Float'", "value_format Decimal but double_v is NULL (str_v set)"]
    assert all("ship=9100001" in d["record_key"] for d in dead)
    assert wide_rows(pg, "tbl_data_timeseries_9100001") == 6  # time 50 had only the bad row
    # in sync too, and a typed column refuses another format (the row is a dead letter, the column stays)
    ship.insert_rows(pg, schema, [
        {"ship_id": "9100001", "data_channel_id": "ch_0000", "created_time": t, "value_format": "String", "str_v": "oops"},
    ])
    pg.commit()
    sw.sync_ship(cfg, "9100001")
    dead = control.list_dead_letters(pg, "ship_wide_build", cfg.unit("9100001"))
    assert len(dead) == 3 and "does not fit column 'ch_0000' of type double precision" in dead[-1]["reason"]
    sw.verify_ship(cfg, "9100001")


def test_odd_channel_names(pg: Any, schema: str, pivot: str) -> None:
    sample = ship.generate(pg, schema, ships=1, channels=len(ship.ODD_CHANNEL_NAMES) + 1, timestamps=4, odd_names=True)
    pg.commit()
    cfg = sw.ShipWideConfig(schema=schema, pivot=pivot)
    build(cfg)
    mapping = control.load_name_map(pg, "ship_wide_build", f"columns:{cfg.unit('9100001')}")
    assert set(mapping) == set(sample.channels)
    assert len(set(mapping.values())) == len(mapping)
    for ch, col in mapping.items():
        assert len(col.encode()) <= PG_MAX_IDENT_BYTES
        if len(ch.encode()) > PG_MAX_IDENT_BYTES or ch == "created_time":
            assert col != ch and col.rsplit("_", 1)[1]  # cut + hash suffix, never silently truncated
        else:
            assert col == ch  # reserved words, quotes, case, unicode are kept (quoted)
    cols = {r[0] for r in pg.execute(
        "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0",
        (f"{schema}.tbl_data_timeseries_9100001",)).fetchall()}
    assert set(mapping.values()) | {"created_time"} == cols
    sw.verify_ship(cfg, "9100001")


def test_channel_limit_is_explicit(pg: Any, schema: str) -> None:
    sample = ship.generate(pg, schema, ships=1, channels=6, timestamps=3)
    pg.commit()
    (p,) = sw.plan_run(sw.ShipWideConfig(schema=schema))
    with pytest.raises(sw.ChannelLimitExceeded, match="6 channels"):
        sw.prepare_ship(sw.ShipWideConfig(schema=schema, max_channels=5), p)
    cfg = sw.ShipWideConfig(schema=schema, max_channels=6)
    build(cfg)
    ship.append_minute(pg, schema, sample.ships, [*sample.channels, "one too many"], minute=5)
    pg.commit()
    before = get_state(pg, cfg, "9100001")
    pg.commit()
    with pytest.raises(sw.ChannelLimitExceeded):
        sw.sync_ship(cfg, "9100001")
    assert get_state(pg, cfg, "9100001") == before  # nothing committed, nothing lost


def test_real_column_limit() -> None:
    assert sw.ShipWideConfig().max_channels == 1599
    with pytest.raises(ValueError):
        sw.ShipWideConfig(max_channels=1600)


def test_text_columns_mode(pg: Any, schema: str, pivot: str) -> None:
    ship.generate(pg, schema, ships=1, channels=10, timestamps=5)
    pg.commit()
    cfg = sw.ShipWideConfig(schema=schema, text_columns=True, pivot=pivot)
    build(cfg)
    types = {r[0] for r in pg.execute(
        "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 "
        "AND attname <> 'created_time'", (f"{schema}.tbl_data_timeseries_9100001",)).fetchall()}
    assert types == {"text"}
    sw.verify_ship(cfg, "9100001")


def test_gate_blocks_cutover_on_corrupted_wide_table(pg: Any, schema: str) -> None:
    ship.generate(pg, schema, ships=1, channels=4, timestamps=6)
    pg.commit()
    # no sync overlap: the catch-up sync before verifying would otherwise rewrite (repair) the last rows
    cfg = sw.ShipWideConfig(schema=schema, sync_overlap=0)
    build(cfg)
    sw.sync_ship(cfg, "9100001")
    tbl = f"{schema}.tbl_data_timeseries_9100001"
    pg.execute(f'UPDATE {tbl} SET "ch_0000" = "ch_0000" + 1 WHERE created_time = %s', (ship.time_at(3),))
    pg.commit()
    with pytest.raises(sw.ShipVerificationFailed, match="checksum"):
        sw.verify_ship(cfg, "9100001", gate=False)
    pg.execute(f'UPDATE {tbl} SET "ch_0000" = "ch_0000" - 1 WHERE created_time = %s', (ship.time_at(3),))
    pg.execute(f"INSERT INTO {tbl} (created_time) VALUES ('2030-01-01Z')")  # outside the narrow time range
    pg.commit()
    with pytest.raises(sw.ShipVerificationFailed, match="GX suite") as err:
        sw.verify_ship(cfg, "9100001", run_id="sw_it_gate")
    assert "expect_column_values_to_be_between" in str(err.value)
    assert control.get_switch(pg, "ship_wide_build", cfg.unit("9100001")).backend == "narrow"


def test_rollback_restores_readers(pg: Any, schema: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUTOVER_REQUIRE_APPROVAL", "off")  # this test switches without a human: policy off
    ship.generate(pg, schema, ships=2, channels=4, timestamps=6)
    pg.commit()
    cfg = sw.ShipWideConfig(schema=schema)
    build_run(cfg, "sw_it_rb_build")
    view = f"{schema}.ts_reader_9100001"
    before = pg.execute(f"SELECT * FROM {view} ORDER BY created_time").fetchall()
    pg.commit()  # a reader inside a transaction holds the view: the switch would wait for it
    sw.cutover_ship(cfg, "9100001", run_id="sw_it_rb")
    pg.commit()
    assert "tbl_data_timeseries_9100001" in pg.execute("SELECT pg_get_viewdef(%s::regclass)", (view,)).fetchone()[0]
    assert pg.execute(f"SELECT * FROM {view} ORDER BY created_time").fetchall() == before
    pg.commit()
    sw.rollback_ship(cfg, "9100001")
    pg.commit()
    definition = pg.execute("SELECT pg_get_viewdef(%s::regclass)", (view,)).fetchone()[0]
    assert "tbl_data_timeseries_9100001" not in definition and "tbl_data_timeseries" in definition
    assert pg.execute(f"SELECT * FROM {view} ORDER BY created_time").fetchall() == before
    pg.commit()
    hist = [(h["from_backend"], h["to_backend"]) for h in control.switch_history(pg, "ship_wide_build", cfg.unit("9100001"))]
    assert hist == [(None, "narrow"), ("narrow", "wide"), ("wide", "narrow")]
    pg.commit()
    # roll back with drop: table and state gone, readers still served, a rebuild starts clean
    sw.rollback_ship(cfg, "9100001", drop=True)
    pg.commit()
    assert pg.execute("SELECT to_regclass(%s)", (f"{schema}.tbl_data_timeseries_9100001",)).fetchone()[0] is None
    assert get_state(pg, cfg, "9100001") is None
    assert pg.execute(f"SELECT * FROM {view} ORDER BY created_time").fetchall() == before
    pg.commit()
    assert build_run(cfg, "sw_it_rb_rebuild", ["9100001"]).green


def _table_text(pg: Any, schema: str, table: str) -> list[tuple[Any, ...]]:
    """Every row of a table as text, key-ordered (columns in name order, so table layouts may differ)."""
    cols = sorted(r[0] for r in pg.execute(
        "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped",
        (f'"{schema}"."{table}"',)).fetchall())
    sel = ", ".join(f'"{c}"::text' for c in (c.replace('"', '""') for c in cols))
    return [tuple(cols)] + pg.execute(f'SELECT {sel} FROM "{schema}"."{table}" ORDER BY created_time').fetchall()


@pytest.mark.parametrize("text_columns", [False, True])
def test_server_and_client_pivots_write_the_same_table(pg: Any, schema: str, text_columns: bool) -> None:
    sample = ship.generate(pg, schema, ships=1, channels=len(ship.ODD_CHANNEL_NAMES) + 4, timestamps=40,
                           odd_names=True, conflict_channels=2, mismatches=4, duplicates=6)
    pg.commit()
    (s,) = sample.ships
    tables = []
    for mode in ("server", "client"):
        cfg = sw.ShipWideConfig(schema=schema, chunk_rows=120, pivot=mode, text_columns=text_columns)
        (p,) = sw.plan_run(cfg)
        sw.prepare_ship(cfg, p)
        out = sw.copy_history(cfg, s, rows_total=p["rows"])
        assert out["pivot"] == mode and out["narrow_rows"] == sample.rows
        assert out["superseded"] == sample.duplicates
        if mode == "server":  # the database took the clean times; the client only those with a problem
            assert 0 < out["client_rows"] < sample.rows // 4
        sw.finalize_ship(cfg, s)
        pg.commit()
        tables.append(_table_text(pg, schema, f"tbl_data_timeseries_{s}"))
        assert sw.verify_ship(cfg, s)["gate"]["success"] is True
        assert len(control.list_dead_letters(pg, "ship_wide_build", cfg.unit(s))) == sample.mismatches
        pg.commit()  # release this session's locks: the rollback drops the table
        sw.rollback_ship(cfg, s, drop=True)
        pg.commit()
    assert tables[0] == tables[1]
    assert len(tables[0]) == 41


def _reorder_narrow(pg: Any, schema: str, order_sql: str) -> None:
    """Rewrite the narrow table with its rows stored in another order (ids, i.e. ingest sequence, kept)."""
    pg.execute(f"CREATE TEMP TABLE narrow_copy AS SELECT * FROM {schema}.tbl_data_timeseries")
    pg.execute(f"TRUNCATE {schema}.tbl_data_timeseries")
    pg.execute(f"INSERT INTO {schema}.tbl_data_timeseries SELECT * FROM narrow_copy ORDER BY {order_sql}")
    pg.execute("DROP TABLE narrow_copy")
    pg.commit()


@pytest.fixture
def fast_path_for_small_ships(monkeypatch: pytest.MonkeyPatch) -> None:
    """The arrival patterns for ships of any size (a real run skips them under SMALL_SHIP_ROWS rows)."""
    import cutover.ship_wide.copy as copy_mod

    monkeypatch.setattr(copy_mod, "SMALL_SHIP_ROWS", 0)


def _server_vs_client(pg: Any, schema: str, ship_id: str, **cfg: Any) -> tuple[list[Any], dict[str, Any]]:
    """Build the ship with the in-database pivot, then with the client pivot; both tables must be equal
    and verified. Returns the table and the server copy's counts."""
    tables, outs = [], []
    for mode in ("server", "client"):
        c = sw.ShipWideConfig(schema=schema, pivot=mode, **cfg)
        pg.execute("DELETE FROM cutover.dead_letters WHERE pipeline = 'ship_wide_build' AND unit_key = %s",
                   (c.unit(ship_id),))
        pg.commit()
        (p,) = sw.plan_run(c)
        sw.prepare_ship(c, p)
        outs.append(sw.copy_history(c, ship_id, rows_total=p["rows"]))
        sw.finalize_ship(c, ship_id)
        pg.commit()
        tables.append(_table_text(pg, schema, f"tbl_data_timeseries_{ship_id}"))
        res = sw.verify_ship(c, ship_id)
        assert res["gate"]["success"] is True and res["narrow"]["checksum"] == res["wide"]["checksum"]
        pg.commit()
        sw.rollback_ship(c, ship_id, drop=True)
        pg.commit()
    assert tables[0] == tables[1]
    assert [o["narrow_rows"] for o in outs] == [outs[1]["narrow_rows"]] * 2
    assert [o["dead_letters"] for o in outs] == [outs[1]["dead_letters"]] * 2  # the same rows refused, by both
    return tables[0], outs[0]


@pytest.mark.usefixtures("fast_path_for_small_ships")
def test_fast_path_takes_times_that_arrive_in_a_known_order(pg: Any, schema: str) -> None:
    sample = ship.generate(pg, schema, ships=1, channels=len(ship.ODD_CHANNEL_NAMES) + 3, timestamps=60,
                           odd_names=True, conflict_channels=2, mismatches=3, duplicates=3)
    # bad values in times whose channels and formats arrive as usual: only the value checks can refuse them
    narrow = f"{schema}.tbl_data_timeseries"
    pg.execute(f"UPDATE {narrow} SET long_v = 7 WHERE data_channel_id = 'ch_0010' AND created_time = %s", (ship.time_at(10),))
    pg.execute(f"UPDATE {narrow} SET double_v = NULL, long_v = 7 WHERE data_channel_id = 'ch_0011' AND created_time = %s",
               (ship.time_at(20),))
    pg.commit()
    _reorder_narrow(pg, schema, "created_time, id")  # the updated rows back in arrival order
    for text_columns, connections in ((False, 1), (True, 3)):
        table, out = _server_vs_client(pg, schema, sample.ships[0], chunk_rows=100, text_columns=text_columns,
                                       copy_connections=connections)
        assert len(table) == 61 and out["dead_letters"] == sample.mismatches + 2
        # every time without a bad row or a duplicate matched a pattern and went through the arrays
        assert out["fast_rows"] + out["client_rows"] >= sample.rows - 4 * len(sample.channels)
        assert out["fast_rows"] > sample.rows // 2


@pytest.mark.usefixtures("fast_path_for_small_ships")
def test_fast_path_with_rows_in_random_order_falls_back_without_error(
    pg: Any, schema: str, caplog: pytest.LogCaptureFixture,
) -> None:
    sample = ship.generate(pg, schema, ships=1, channels=8, timestamps=50, conflict_channels=1, duplicates=2)
    _reorder_narrow(pg, schema, "created_time, md5(id::text)")  # each time's rows in a scrambled order
    with caplog.at_level(logging.INFO, logger="cutover.ship_wide.copy"):
        table, out = _server_vs_client(pg, schema, sample.ships[0], chunk_rows=40)
    assert len(table) == 51
    # the orders are never seen twice: the probe's patterns describe too few times, so the fast path
    # is off from the first chunk (not after GIVE_UP_AFTER wasted ones) and the general statement takes all
    assert out["fast_rows"] == 0
    assert out["chunks"] > GIVE_UP_AFTER + 1
    assert any("cover too few times" in r.getMessage() for r in caplog.records)


@pytest.mark.usefixtures("fast_path_for_small_ships")
def test_fast_path_never_takes_a_time_cut_by_the_chunk(pg: Any, schema: str) -> None:
    """Odd times carry a prefix of the even times' channels, so the cut end of a full chunk looks like a
    complete odd time: it must still wait for the next chunk (a wide row is written exactly once)."""
    sample = ship.generate(pg, schema, ships=1, channels=5, timestamps=40)
    pg.execute(f"DELETE FROM {schema}.tbl_data_timeseries WHERE data_channel_id IN ('ch_0002', 'ch_0003', 'ch_0004') "
               "AND extract(epoch FROM created_time)::bigint % 30 = 15")
    pg.commit()
    n = pg.execute(f"SELECT count(*) FROM {schema}.tbl_data_timeseries").fetchone()[0]
    assert n == sample.rows - 3 * 20
    # 9 rows per chunk (5 + 2 + 2): every chunk ends inside an even time, after the 2 rows an odd time has
    table, out = _server_vs_client(pg, schema, sample.ships[0], chunk_rows=9)
    assert len(table) == 41 and out["narrow_rows"] == n
    assert out["fast_rows"] > n // 2


@pytest.mark.usefixtures("fast_path_for_small_ships")
def test_fast_path_is_not_fooled_by_a_null_channel_beside_a_separator(pg: Any, schema: str) -> None:
    """The fast path compares a time's channels joined by a separator: a NULL channel id (left out of the
    join) next to an id holding the separator must not pass for the two channels of a known pattern."""
    sample = ship.generate(pg, schema, ships=1, channels=2, timestamps=20)  # ch_0000, ch_0001: Decimal
    t = ship.time_at(5)
    pg.execute(f"DELETE FROM {schema}.tbl_data_timeseries WHERE created_time = %s", (t,))
    ship.insert_rows(pg, schema, [
        {"ship_id": "9100001", "data_channel_id": None, "created_time": t, "value_format": "Decimal", "double_v": 1.0},
        {"ship_id": "9100001", "data_channel_id": "ch_0000\x1ech_0001", "created_time": t, "value_format": "Decimal",
         "double_v": 2.0},
    ])
    pg.commit()
    table, out = _server_vs_client(pg, schema, sample.ships[0], chunk_rows=10)
    assert out["dead_letters"] == 1 and len(table) == 21
    assert out["fast_rows"] == sample.rows - 2


def test_server_pivot_adds_a_channel_that_appears_during_the_copy(pg: Any, schema: str) -> None:
    sample = ship.generate(pg, schema, ships=1, channels=5, timestamps=20)
    pg.commit()
    cfg = sw.ShipWideConfig(schema=schema, chunk_rows=30, pivot="server")
    (p,) = sw.plan_run(cfg)
    sw.prepare_ship(cfg, p)
    t = ship.time_at(7)
    ship.insert_rows(pg, schema, [  # after prepare: the wide table has no column for it yet
        {"ship_id": "9100001", "data_channel_id": "late channel", "created_time": t, "value_format": "Integer", "long_v": 42},
    ])
    pg.commit()
    out = sw.copy_history(cfg, "9100001")
    assert out["new_columns"] == 1 and out["client_rows"] == len(sample.channels) + 1
    sw.finalize_ship(cfg, "9100001")
    assert pg.execute(f'SELECT "late channel" FROM {schema}.tbl_data_timeseries_9100001 WHERE created_time = %s',
                      (t,)).fetchone()[0] == 42
    assert sw.verify_ship(cfg, "9100001")["wide"]["rows"] == 20


def test_server_pivot_is_chosen_only_for_one_database(pg: Any, schema: str) -> None:
    ship.generate(pg, schema, ships=1, channels=3, timestamps=4)
    pg.commit()
    cfg = sw.ShipWideConfig(schema=schema)
    (p,) = sw.plan_run(cfg)
    sw.prepare_ship(cfg, p)
    assert sw.copy_history(cfg, "9100001")["pivot"] == "server"  # the defaults: one embedded database
    with pytest.raises(ValueError, match="pivot must be one of"):
        sw.ShipWideConfig(pivot="gpu")


def test_a_time_wider_than_a_chunk_is_taken_whole(pg: Any, schema: str, pivot: str) -> None:
    ship.generate(pg, schema, ships=1, channels=12, timestamps=6, duplicates=2)
    pg.commit()
    cfg = sw.ShipWideConfig(schema=schema, chunk_rows=5, pivot=pivot)  # 12+ rows per time > 5 per chunk
    (p,) = sw.plan_run(cfg)
    sw.prepare_ship(cfg, p)
    out = sw.copy_history(cfg, "9100001")
    assert out["narrow_rows"] == p["rows"] and out["wide_rows"] == 6
    sw.finalize_ship(cfg, "9100001")
    res = sw.verify_ship(cfg, "9100001")
    assert res["narrow"]["checksum"] == res["wide"]["checksum"]


def test_a_row_without_time_is_a_dead_letter_not_lost(pg: Any, schema: str, pivot: str) -> None:
    ship.generate(pg, schema, ships=1, channels=4, timestamps=10)
    pg.execute(f"ALTER TABLE {schema}.tbl_data_timeseries ALTER COLUMN created_time DROP NOT NULL")
    ship.insert_rows(pg, schema, [
        {"ship_id": "9100001", "data_channel_id": "ch_0000", "created_time": None, "value_format": "Decimal", "double_v": 1.0},
    ])
    pg.commit()
    cfg = sw.ShipWideConfig(schema=schema, chunk_rows=12, pivot=pivot)  # several chunks
    (p,) = sw.plan_run(cfg)
    sw.prepare_ship(cfg, p)
    out = sw.copy_history(cfg, "9100001")
    assert out["dead_letters"] == 1 and out["narrow_rows"] == 41 and out["wide_rows"] == 10
    (dead,) = control.list_dead_letters(pg, "ship_wide_build", cfg.unit("9100001"))
    assert dead["reason"] == "created_time is NULL"
    sw.finalize_ship(cfg, "9100001")
    assert sw.verify_ship(cfg, "9100001")["wide"]["rows"] == 10


@pytest.mark.parametrize("types", [
    ["double precision"] * 1016,  # exactly 8160 bytes
    ["double precision"] * 1017,
    ["boolean", "double precision"] * 400,  # alignment padding
    ["boolean", "double precision"] * 510,
    ["bigint"] * 1016,
    ["text"] * 1599,
])
def test_row_width_model_matches_postgresql(pg: Any, types: list[str]) -> None:
    import psycopg

    from cutover.ship_wide.ddl import MAX_ROW_BYTES, min_row_bytes

    cols = ", ".join(f"c{i} {t}" for i, t in enumerate(types))
    vals = ", ".join({"double precision": "1.5", "bigint": "7", "boolean": "true", "text": "''"}[t] for t in types)
    pg.execute("DROP TABLE IF EXISTS pg_temp.row_width_probe")
    pg.execute(f"CREATE TEMP TABLE row_width_probe (created_time timestamptz NOT NULL, {cols})")
    model = min_row_bytes(types)
    try:
        pg.execute(f"INSERT INTO row_width_probe VALUES (now(), {vals})")
    except psycopg.errors.ProgramLimitExceeded as exc:
        pg.rollback()
        assert model > MAX_ROW_BYTES and f"size {model}," in str(exc)
    else:
        assert model <= MAX_ROW_BYTES
        assert pg.execute("SELECT pg_column_size(t.*) FROM row_width_probe t").fetchone()[0] == model
        pg.rollback()


def test_a_row_too_wide_for_a_page_is_refused_at_prepare(pg: Any, schema: str) -> None:
    ship.generate(pg, schema, ships=1, channels=3, timestamps=2)
    pg.commit()
    cfg = sw.ShipWideConfig(schema=schema)
    (p,) = sw.plan_run(cfg)
    p["channels"] = {f"sensor {i}": ["Decimal"] for i in range(1017)}  # 1017 doubles: 8168 bytes a row
    with pytest.raises(sw.ChannelLimitExceeded, match="at least 8168 bytes"):
        sw.prepare_ship(cfg, p)
    pg.rollback()
    assert pg.execute("SELECT to_regclass(%s)", (f"{schema}.tbl_data_timeseries_9100001",)).fetchone()[0] is None
    p["channels"] = {f"sensor {i}": ["Decimal"] for i in range(1016)}  # fits exactly
    sw.prepare_ship(cfg, p)


def test_a_text_row_too_big_for_a_page_fails_the_ship_clearly(pg: Any, schema: str, pivot: str) -> None:
    ship.generate(pg, schema, ships=1, channels=2, timestamps=1)
    ship.insert_rows(pg, schema, [  # 800 short texts: a ~10 kB row that TOAST cannot shrink
        {"ship_id": "9100002", "data_channel_id": f"label {i}", "created_time": ship.time_at(0),
         "value_format": "String", "str_v": f"value {i:06d}"} for i in range(800)
    ])
    pg.commit()
    cfg = sw.ShipWideConfig(schema=schema, pivot=pivot)
    (p,) = sw.plan_run(cfg, ["9100002"])
    sw.prepare_ship(cfg, p)  # 800 text columns can fit; these values cannot
    with pytest.raises(sw.ChannelLimitExceeded, match="does not fit a PostgreSQL page"):
        sw.copy_history(cfg, "9100002")
    assert get_state(pg, cfg, "9100002") is None  # nothing committed, not even a watermark: narrow stays the source
    assert wide_rows(pg, "tbl_data_timeseries_9100002") == 0
