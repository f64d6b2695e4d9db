"""The readers' typical queries (issue #13) on the real PostgreSQL: same answers on the narrow and the wide
table — hostile ship and channel ids, a hostile schema, late and duplicate rows, invalid rows, NULL
cells, conflicting formats — the figure's shape, and the figure in a verified unit's evidence."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import pytest
from psycopg import sql

from cutover import control
from cutover import ship_wide as sw
from cutover.connections import pg_connect
from cutover.identifiers import pg_ident, with_params
from cutover.samples import ship
from cutover.samples.hostile import HOSTILE_NAMES, MAX_BYTES_NAME
from cutover.ship_wide import readers
from cutover.ship_wide.cutover import view_sql
from cutover.ship_wide.ddl import WideTable, load_wide
from cutover.ship_wide.plan import session_setup
from tests.integration.test_ship_wide_hostile import _clean as _clean_schema

pytestmark = pytest.mark.integration

SCHEMA = "sw_it_readers"
#: a schema that is hostile too: a placeholder marker, a quote, a space
HOSTILE_SCHEMA = 'sw_it_readers 100%"s'
INJECTION = 'x"; DROP TABLE y; --'
#: ship ids: a placeholder marker, an injection, a 63-byte name (its table name is mapped), a colon
SHIPS = ("100%", INJECTION, MAX_BYTES_NAME, "x:y")
#: every hostile name is a channel of every ship (each a column; ``created_time`` too: a mapped name)
CHANNELS = HOSTILE_NAMES
TIMES = 12
#: a channel whose every row is invalid
GHOST = "ghost 100%"


def _clean(pg: Any, schema: str) -> None:
    """The hostile tests' cleanup (schema and every control row of its ships), after a rollback."""
    pg.rollback()
    _clean_schema(pg, schema)


@pytest.fixture(params=[SCHEMA, HOSTILE_SCHEMA], ids=["schema", "hostile_schema"])
def schema(request: pytest.FixtureRequest, pg: Any) -> Iterator[str]:
    name = str(request.param)
    _clean(pg, name)
    yield name
    _clean(pg, name)


@pytest.fixture
def plain_schema(pg: Any) -> Iterator[str]:
    _clean(pg, SCHEMA)
    yield SCHEMA
    _clean(pg, SCHEMA)


def insert_rows(pg: Any, schema: str, rows: list[dict[str, Any]]) -> None:
    """Insert narrow rows (the schema may hold a ``%``: the statement goes through ``with_params``)."""
    cols = list(ship.NARROW_COLUMNS)
    q = sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
        pg_ident(schema, "tbl_data_timeseries"), sql.SQL(", ").join(pg_ident(c) for c in cols),
        sql.SQL(", ").join(sql.Placeholder() * len(cols)))
    with pg.cursor() as cur:
        cur.executemany(with_params(q), [[r.get(c) for c in cols] for r in rows])
    pg.commit()


def _value(j: int, k: int, s: int) -> dict[str, Any]:
    """Channel ``j``'s reading at time ``k`` on ship ``s``: formats rotate over the channels."""
    fmt = ship.FORMATS[j % 4]
    col = {"Decimal": "double_v", "Integer": "long_v", "String": "str_v", "Boolean": "bool_v"}[fmt]
    val: Any = {"Decimal": s + j / 3 + k * 0.1, "Integer": 1000 * s + 10 * j + k,
                "String": f"{SHIPS[s]} · {j} @{k} 100%", "Boolean": (j + k) % 2 == 0}[fmt]
    return {"value_format": fmt, col: val}


def load(pg: Any, schema: str, channels: tuple[str, ...] = CHANNELS) -> None:
    """Per ship: every hostile channel at every time except holes (NULL cells: channel j skips times
    k ≡ j mod 3, one channel stops early, one only reports at the first time), a later duplicate that
    wins, an invalid later row that must not win, a channel with two formats (a text column)."""
    ship.create_narrow(pg, schema)
    pg.commit()
    rows: list[dict[str, Any]] = []
    for s, ship_id in enumerate(SHIPS):
        for k in range(TIMES):
            t = ship.time_at(k)
            for j, ch in enumerate(channels):
                if k % 3 == j % 3 and j > 0:
                    continue  # a hole: the wide cell is NULL
                if j == 1 and k > TIMES // 2:
                    continue  # stops reporting: its latest reading is in the middle
                if j == 2 and k > 0:
                    continue  # reported once
                rows.append({"ship_id": ship_id, "data_channel_id": ch, "created_time": t, **_value(j, k, s)})
            # a channel with two formats: a text column, its value text compared
            rows.append({"ship_id": ship_id, "data_channel_id": "mixed", "created_time": t,
                         **({"value_format": "Decimal", "double_v": k + 0.5} if k % 2 else
                            {"value_format": "String", "str_v": f"s{k}"})})
        last = ship.time_at(TIMES - 1)
        rows += [
            # a later duplicate of the last time: it wins, on both sides
            {"ship_id": ship_id, "data_channel_id": channels[0], "created_time": last, **_value(0, 99, s)},
            # an invalid later row (Decimal with long_v): it must not win anywhere
            {"ship_id": ship_id, "data_channel_id": channels[0], "created_time": last, "value_format": "Decimal",
             "long_v": 7},
            # a channel with invalid rows only: no reading on either side
            {"ship_id": ship_id, "data_channel_id": GHOST, "created_time": last, "value_format": "Integer",
             "double_v": 1.5},
        ]
    insert_rows(pg, schema, rows)


def build(cfg: sw.ShipWideConfig, ships: list[str] | None = None) -> None:
    for p in sw.plan_run(cfg, ships):
        sw.prepare_ship(cfg, p)
        sw.copy_history(cfg, p["ship_id"], rows_total=p["rows"])
        sw.finalize_ship(cfg, p["ship_id"])


def _wide(pg: Any, cfg: sw.ShipWideConfig, ship_id: str) -> WideTable:
    wide = load_wide(pg, cfg, ship_id)
    pg.commit()
    assert wide is not None, ship_id
    return wide


def answers(pg: Any, cfg: sw.ShipWideConfig, wide: WideTable, window: int) -> dict[str, tuple[list[Any], list[Any]]]:
    """Each query's rows on (narrow, wide), as the timing runs them (``latest`` by channel)."""
    lo, hi, _ = readers.window_bounds(pg, wide, window) or (None, None, 0)
    rn, rw = readers.range_queries(cfg, wide)
    chans = [ch for ch, col in wide.columns.items() if col in wide.types]
    out = {
        "range": (pg.execute(with_params(rn), {"lo": lo, "hi": hi}).fetchall(),
                  pg.execute(with_params(rw), {"lo": lo, "hi": hi}).fetchall()),
        "latest": (sorted(pg.execute(with_params(readers.latest_narrow_query(cfg, wide)),
                                     {"ship": wide.ship_id, "channels": chans}).fetchall()),
                   sorted(readers._LatestWide(pg, wide)())),
    }
    pg.commit()
    return out


def test_the_narrow_definition_is_the_reader_views(pg: Any, plain_schema: str) -> None:
    load(pg, plain_schema)
    cfg = sw.ShipWideConfig(schema=plain_schema)
    build(cfg, [SHIPS[0]])
    wide = _wide(pg, cfg, SHIPS[0])
    assert readers.narrow_view_sql(cfg, wide).as_string(pg) == view_sql(cfg, wide, "narrow").as_string(pg)
    bounded = readers.narrow_view_sql(cfg, wide, upto_seq=10).as_string(pg)
    assert bounded.replace(' AND "id" <= %(upto)s', "") == view_sql(cfg, wide, "narrow").as_string(pg)


def test_same_answers_with_hostile_names_duplicates_invalid_rows_and_null_cells(pg: Any, schema: str) -> None:
    load(pg, schema)
    cfg = sw.ShipWideConfig(schema=schema)
    build(cfg)
    for ship_id in SHIPS:
        wide = _wide(pg, cfg, ship_id)
        assert set(wide.columns) - {GHOST} == {*CHANNELS, "mixed"}
        assert wide.types[wide.columns["mixed"]] == "text"
        got = answers(pg, cfg, wide, window=TIMES)
        narrow, wide_rows = got["range"]
        assert len(narrow) == TIMES and narrow == wide_rows
        assert any(v is None for r in wide_rows for v in r)  # NULL cells are in the answer, on both sides
        # the reader's query through the real view (readers are on narrow after prepare) answers the same
        view_rows = pg.execute(sql.SQL("SELECT * FROM {} ORDER BY created_time").format(
            pg_ident(schema, wide.view))).fetchall()
        pg.commit()
        assert view_rows == narrow
        latest_n, latest_w = got["latest"]
        assert latest_n == latest_w
        by_ch = {r[0]: r for r in latest_w}
        assert set(by_ch) == {*CHANNELS, "mixed"}  # not the ghost channel, on either side
        s = SHIPS.index(ship_id)
        last = ship.time_at(TIMES - 1)
        # the later valid duplicate won, the invalid later row did not
        assert by_ch[CHANNELS[0]][1:] == (last, str(_value(0, 99, s)["double_v"]))
        assert by_ch[CHANNELS[1]][1] == ship.time_at(TIMES // 2)  # stopped early
        assert by_ch[CHANNELS[2]][1] == ship.time_at(0)  # reported once
        assert by_ch["mixed"][1:] == (last, str(TIMES - 1 + 0.5))  # the text column: the value's text
        # a smaller window: the last 3 times
        small = answers(pg, cfg, wide, window=3)["range"]
        assert [r[0] for r in small[0]] == [ship.time_at(k) for k in range(TIMES - 3, TIMES)] and small[0] == small[1]


def test_the_figure_and_its_table(pg: Any, schema: str) -> None:
    load(pg, schema)
    cfg = sw.ShipWideConfig(schema=schema)
    build(cfg, [SHIPS[1]])
    wide = _wide(pg, cfg, SHIPS[1])
    res = readers.time_reader_queries(pg, cfg, wide, repeats=3, window=5)
    assert set(res) == {"range", "latest", "overall"}
    for q in readers.QUERIES:
        r = res[q]
        assert {"narrow_ms", "wide_ms", "speedup", "faster_pct", "target_met", "rows"} <= set(r)
        assert r["narrow_ms"] > 0 and r["wide_ms"] > 0
        assert r["speedup"] == pytest.approx(r["narrow_ms"] / r["wide_ms"], rel=0.01)
        assert isinstance(r["target_met"], bool)
    assert res["range"]["rows"] == 5 and res["range"]["window"]["times"] == 5
    assert res["latest"]["rows"] == len(CHANNELS) + 1
    o = res["overall"]
    assert o["narrow_ms"] == pytest.approx(res["range"]["narrow_ms"] + res["latest"]["narrow_ms"], abs=0.01)
    assert o["repeats"] == 3 and o["queries"] == ["range", "latest"] and o["target_faster_pct"] == 50.0
    assert o["target_met"] == (o["faster_pct"] >= 50 and all(res[q]["target_met"] for q in readers.QUERIES))
    # the connection is left as it was: no transaction open, nothing written
    assert pg.info.transaction_status == 0
    # bounded by an ingest sequence: rows that arrive after it do not change the answers
    top = pg.execute(sql.SQL("SELECT max(id) FROM {}").format(pg_ident(schema, "tbl_data_timeseries"))).fetchone()[0]
    pg.commit()
    insert_rows(pg, schema, [{"ship_id": SHIPS[1], "data_channel_id": CHANNELS[1], "created_time": ship.time_at(TIMES - 1),
                              "value_format": "Integer", "long_v": -1}])
    with pytest.raises(readers.ReaderAnswersDiffer, match="latest|range"):
        readers.time_reader_queries(pg, cfg, wide, repeats=1, window=5)
    assert pg.info.transaction_status == 0
    bounded = readers.time_reader_queries(pg, cfg, wide, repeats=1, window=5, upto_seq=top)
    assert bounded["latest"]["rows"] == len(CHANNELS) + 1
    # the table the benchmark prints
    buf = io.StringIO()
    readers.print_reader_table(res, title="ship x", file=buf)
    text = buf.getvalue()
    assert text.splitlines()[0] == "ship x"
    for word in ("query", "narrow ms", "wide ms", "speed-up", "range", "latest", "overall", "target"):
        assert word in text
    assert f"{res['range']['speedup']:.2f}×" in text


def test_a_connection_in_a_transaction_is_refused(pg: Any, plain_schema: str) -> None:
    load(pg, plain_schema)
    cfg = sw.ShipWideConfig(schema=plain_schema)
    build(cfg, [SHIPS[0]])
    wide = _wide(pg, cfg, SHIPS[0])
    pg.execute("SELECT 1")
    with pytest.raises(ValueError, match="no transaction open"):
        readers.time_reader_queries(pg, cfg, wide)
    pg.rollback()
    with pytest.raises(ValueError, match="repeats"):
        readers.time_reader_queries(pg, cfg, wide, repeats=0)


def test_two_connections_source_and_target(pg: Any, plain_schema: str) -> None:
    """The narrow side on its own (autocommit) connection, as ``verify_ship`` passes it."""
    load(pg, plain_schema)
    cfg = sw.ShipWideConfig(schema=plain_schema)
    build(cfg, [SHIPS[2]])
    wide = _wide(pg, cfg, SHIPS[2])
    with pg_connect(cfg.source_conn_id, autocommit=True) as src:
        session_setup(src)
        res = readers.time_reader_queries(pg, cfg, wide, source=src, repeats=1, window=4)
        assert src.info.transaction_status == 0
    assert res["range"]["rows"] == 4 and res["latest"]["rows"] == len(CHANNELS) + 1
    assert pg.info.transaction_status == 0


def test_verify_ship_carries_the_readers_figure(pg: Any, plain_schema: str) -> None:
    load(pg, plain_schema)
    cfg = sw.ShipWideConfig(schema=plain_schema)
    build(cfg, [SHIPS[0]])
    # a row that arrives after the build: verify's catch-up sync takes it, the figure compares up to it
    insert_rows(pg, plain_schema, [{"ship_id": SHIPS[0], "data_channel_id": "late 100%", "created_time": ship.time_at(3),
                                    "value_format": "Boolean", "bool_v": True}])
    res = sw.verify_ship(cfg, SHIPS[0], gate=False)
    assert res["failures"] == []
    fig = res["readers"]
    assert set(fig) >= {"range", "latest", "overall"}
    assert fig["latest"]["rows"] == len(CHANNELS) + 2  # the late channel too
    assert fig["range"]["rows"] == min(TIMES, readers.DEFAULT_WINDOW)
    assert fig["overall"]["speedup"] is not None and "narrow_ms" in fig["overall"]
    # turned off: no figure
    assert "readers" not in sw.verify_ship(cfg, SHIPS[0], gate=False, readers=False)


def test_verify_ship_bounds_the_figure(pg: Any, plain_schema: str) -> None:
    load(pg, plain_schema)
    cfg = sw.ShipWideConfig(schema=plain_schema, extra={"readers_window": 6, "readers_repeats": 50,
                                                         "readers_budget_s": 0.000001})
    build(cfg, [SHIPS[0]])
    res = sw.verify_ship(cfg, SHIPS[0], gate=False)
    assert res["failures"] == []
    fig = res["readers"]
    assert fig["range"]["rows"] == 6 and "asked" not in fig["range"]["window"]
    assert fig["range"]["runs"] == fig["latest"]["runs"] == 1  # the budget: one timed run each, not 50


def test_verify_ship_narrows_the_window_of_a_wide_ship(pg: Any, plain_schema: str) -> None:
    ship.generate(pg, plain_schema, ships=1, channels=900, timestamps=8)
    pg.commit()
    cfg = sw.ShipWideConfig(schema=plain_schema)
    build(cfg)
    res = sw.verify_ship(cfg, "9100001", gate=False)
    assert res["failures"] == []
    window = res["readers"]["range"]["window"]
    assert window["asked"] == readers.DEFAULT_WINDOW and window["times"] == 5_000_000 // 900 ** 2 == 6
    assert res["readers"]["latest"]["rows"] == 900


def test_a_query_over_the_timeout_is_skipped_with_a_note(pg: Any, plain_schema: str,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    load(pg, plain_schema)
    cfg = sw.ShipWideConfig(schema=plain_schema)
    build(cfg, [SHIPS[0]])
    wide = _wide(pg, cfg, SHIPS[0])
    # the narrow side of "latest" reads through a function that sleeps past a 50 ms timeout
    slow = pg_ident(plain_schema, "slow")
    pg.execute(sql.SQL("CREATE FUNCTION {}() RETURNS boolean LANGUAGE sql AS 'SELECT pg_sleep(0.2) IS NOT NULL'").format(slow))
    pg.commit()
    original = readers.latest_narrow_query

    def sleepy(cfg: sw.ShipWideConfig, wide: WideTable, *, upto_seq: int | None = None) -> sql.Composed:
        return sql.SQL("SELECT * FROM ({}) q WHERE {}()").format(original(cfg, wide, upto_seq=upto_seq), slow)

    monkeypatch.setattr(readers, "latest_narrow_query", sleepy)
    res = readers.time_reader_queries(pg, cfg, wide, repeats=1, timeout_s=0.05)
    assert res["latest"] == {"skipped": "over the statement timeout (0.05 s)"}
    assert res["range"]["rows"] == TIMES and res["overall"]["queries"] == ["range"]
    assert pg.info.transaction_status == 0


def test_a_build_run_records_the_figure_in_the_units_verify_detail(pg: Any, plain_schema: str) -> None:
    from cutover.lifecycle.stages import run_build
    from cutover.ship_wide.spec import SPEC

    # every channel, "Mixed Case" beside "mixed case" of another type included (the gate checks their types
    # itself: GX reads PostgreSQL column types by case-insensitive name)
    load(pg, plain_schema, tuple(CHANNELS))
    cfg = sw.ShipWideConfig(schema=plain_schema)
    run = "sw_it_readers_run"
    report = run_build(SPEC, {"schema": plain_schema, "units": [SHIPS[0]]}, run)
    assert report.green, report.reason
    units = control.list_units(pg, run)
    pg.commit()
    assert len(units) == 1
    detail = units[0]["detail"]["verify"]
    if "readers" not in detail:
        pytest.skip("spec._verify does not put res['readers'] in the verify detail yet")
    assert detail["readers"]["overall"]["speedup"] is not None
    assert cfg.unit(SHIPS[0]) == units[0]["unit_key"]
    # the run page shows it
    from cutover.ui.pages import collect_run, render_run_html

    page = render_run_html(collect_run(pg, run), run_id=run)
    pg.commit()
    assert "Readers: narrow → wide" in page and "latest" in page


def test_the_run_page_shows_the_figure_escaped() -> None:
    from cutover.ui.pages import render_run_html

    fig = {"range": {"window": {"first": "2024-01-01 00:00:00+00", "last": "2024-01-01 01:00:00+00", "times": 240},
                     "rows": 240, "narrow_ms": 30.5, "wide_ms": 2.25, "speedup": 13.56, "faster_pct": 92.6,
                     "target_met": True, "runs": 3},
           "latest": {"skipped": "over the statement timeout (10 s)"},
           "overall": {"narrow_ms": 30.5, "wide_ms": 2.25, "speedup": 13.56, "faster_pct": 92.6, "target_met": True,
                       "target_faster_pct": 50.0, "repeats": 3, "queries": ["range"]}}
    units = [{"unit_key": "tenant.tbl_data_timeseries:<script>x</script>", "state": "verified",
              "detail": {"verify": {"readers": fig}}},
             {"unit_key": "tenant.tbl_data_timeseries:other", "state": "verified",
              "detail": {"verify": {"readers": {"skipped": "the readers' queries could not be timed: <boom>"}}}},
             {"unit_key": "tenant.tbl_data_timeseries:older", "state": "verified", "detail": {"verify": {"cells": 3}}}]
    page = render_run_html({"run_id": "r", "pipeline": "ship_wide_build", "units": units}, run_id="r")
    assert "Readers: narrow → wide" in page and "at least 50.0 % faster" in page
    assert "13.56×" in page and "30.50" in page and "2.25" in page and "240 times" in page
    assert "over the statement timeout (10 s)" in page and "&lt;boom&gt;" in page
    assert "<script>x" not in page and "&lt;script&gt;x" in page
    assert "Readers: narrow" not in render_run_html({"run_id": "r", "units": units[2:]}, run_id="r")
