"""Consistency engine on the real databases: exact detection, no false alarm across engines, windows,
repair, the narrow-vs-wide pair, the registry and its status view."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from cutover import connections
from cutover.consistency import registry
from cutover.consistency.diff import DiffOptions, diff_pair
from cutover.consistency.runner import check_window, run_check
from cutover.consistency.spec import Endpoint, PairSpec

pytestmark = pytest.mark.integration

MY_DB = "cutover_cc_test"
PG_SCHEMA = "cc_test"
PG15 = "cc_test_pg15"
N = 3000
T0 = dt.datetime(2024, 3, 1, 12, 0, 0)
SMALL = DiffOptions(segment_rows=64, leaf_rows=16, factor=4, bucket_rows=32)  # forces several bisection levels


def rows(n: int = N) -> list[tuple[Any, ...]]:
    """id, amount, note (NULLs, unicode, trailing spaces), ts (µs), flag, qty."""
    out = []
    for i in range(1, n + 1):
        note = None if i % 11 == 0 else ("héllo ✓ " if i % 5 == 0 else f"note {i}")
        out.append((i, Decimal(i * 7 % 10000) / 100, note, T0 + dt.timedelta(seconds=i, microseconds=i * 13 % 1_000_000),
                    i % 2 == 0, i % 97))
    return out


MY_DDL = """CREATE TABLE {t} (id bigint PRIMARY KEY, amount decimal(12,2), note varchar(64), ts datetime(6),
            flag tinyint(1), qty int) DEFAULT CHARSET=utf8mb4"""
PG_DDL = """CREATE TABLE {t} (id bigint PRIMARY KEY, amount numeric(14,4), note text, ts timestamptz, flag boolean,
            qty bigint)"""


def load_mysql(table: str, data: list[tuple[Any, ...]]) -> None:
    with connections.mysql_connect(connections.MYSQL_TARGET) as m:
        cur = m.cursor()
        cur.execute(f"CREATE DATABASE IF NOT EXISTS {MY_DB} DEFAULT CHARSET utf8mb4")
        cur.execute(f"DROP TABLE IF EXISTS {MY_DB}.{table}")
        cur.execute(MY_DDL.format(t=f"{MY_DB}.{table}"))
        cur.executemany(f"INSERT INTO {MY_DB}.{table} VALUES (%s, %s, %s, %s, %s, %s)",
                        [(r[0], r[1], r[2], r[3], int(r[4]), r[5]) for r in data])


def load_pg(conn_id: str, table: str, data: list[tuple[Any, ...]]) -> None:
    with connections.pg_connect(conn_id) as p:
        p.execute(f"CREATE SCHEMA IF NOT EXISTS {PG_SCHEMA}")
        p.execute(f"DROP TABLE IF EXISTS {PG_SCHEMA}.{table}")
        p.execute(PG_DDL.format(t=f"{PG_SCHEMA}.{table}"))
        p.execute("SET TimeZone = 'America/New_York'")  # the stored instants must not depend on the session
        with p.cursor().copy(f"COPY {PG_SCHEMA}.{table} FROM STDIN") as cp:
            for r in data:
                cp.write_row((r[0], r[1], r[2], r[3].replace(tzinfo=dt.UTC), r[4], r[5]))


def mysql_exec(sql: str, params: tuple[Any, ...] = ()) -> None:
    with connections.mysql_connect(connections.MYSQL_TARGET) as m:
        cur = m.cursor()
        cur.execute(sql, params)


def pg_exec(conn_id: str, sql: str, params: tuple[Any, ...] = ()) -> None:
    with connections.pg_connect(conn_id) as p:
        p.execute(sql, params)


@pytest.fixture(scope="module")
def pg15() -> Iterator[str]:
    os.environ.setdefault(f"AIRFLOW_CONN_{PG15.upper()}", "postgresql://postgres@127.0.0.1:5432/test")
    try:
        with connections.pg_connect(PG15) as p:
            p.execute("SELECT 1")
    except Exception as exc:  # pragma: no cover - depends on the machine
        pytest.skip(f"second PostgreSQL not reachable: {exc}")
    yield PG15


def ep_my(table: str) -> Endpoint:
    return Endpoint(connections.MYSQL_TARGET, table=f"{MY_DB}.{table}")


def ep_pg(table: str, conn_id: str = connections.POSTGRES_TARGET) -> Endpoint:
    return Endpoint(conn_id, table=f"{PG_SCHEMA}.{table}")


def inject(target: str, which: str, conn_id: str = connections.POSTGRES_TARGET) -> dict[str, set[int]]:
    """3 missing, 2 extra, 4 changed (NULL, decimal last digit, µs, trailing space) on the target."""
    if which == "mysql":
        t = f"{MY_DB}.{target}"
        run = mysql_exec
        ins = f"INSERT INTO {t} VALUES (%s, 1.00, 'x', '2024-03-01 12:00:00.000001', 1, 1)"
        run(f"DELETE FROM {t} WHERE id IN (1, 1500, {N})")
        run(ins, (N + 5,))
        run(ins, (N + 500,))
        run(f"UPDATE {t} SET note = NULL WHERE id = 10")
        run(f"UPDATE {t} SET amount = amount + 0.01 WHERE id = 777")
        run(f"UPDATE {t} SET ts = ts + INTERVAL 1 MICROSECOND WHERE id = 2001")
        run(f"UPDATE {t} SET note = CONCAT(note, ' ') WHERE id = 2999")
    else:
        t = f"{PG_SCHEMA}.{target}"

        def run(sql: str, params: tuple[Any, ...] = ()) -> None:
            pg_exec(conn_id, sql, params)

        ins = f"INSERT INTO {t} VALUES (%s, 1.00, 'x', '2024-03-01 12:00:00.000001+00', true, 1)"
        run(f"DELETE FROM {t} WHERE id IN (1, 1500, {N})")
        run(ins, (N + 5,))
        run(ins, (N + 500,))
        run(f"UPDATE {t} SET note = NULL WHERE id = 10")
        run(f"UPDATE {t} SET amount = amount + 0.01 WHERE id = 777")
        run(f"UPDATE {t} SET ts = ts + interval '1 microsecond' WHERE id = 2001")
        run(f"UPDATE {t} SET note = note || ' ' WHERE id = 2999")
    return {"missing": {1, 1500, N}, "extra": {N + 5, N + 500}, "changed": {10, 777, 2001, 2999}}


def found(r: Any) -> dict[str, set[int]]:
    return {"missing": {k[0] for k in r.missing}, "extra": {k[0] for k in r.extra}, "changed": {k[0] for k in r.changed}}


# --- no false alarm across engines and type mappings ------------------------------------------------


def test_mysql_vs_postgres_equal_data_with_mapped_types_is_equal() -> None:
    data = rows()
    load_mysql("same_src", data)
    load_pg(connections.POSTGRES_TARGET, "same_tgt", data)
    spec = PairSpec(name="cc_test_same", source=ep_my("same_src"), target=ep_pg("same_tgt"), key=("id",))
    for opts in (SMALL, DiffOptions()):
        r = diff_pair(spec, options=opts)
        assert r.equal, r.summary()
        assert r.source_rows == r.target_rows == N
    assert r.kinds == {"id": "int", "amount": "decimal:4", "note": "text", "ts": "timestamp", "flag": "bool",
                       "qty": "int"}
    assert r.mode == "range"


def test_postgres_vs_postgres_equal_is_equal(pg15: str) -> None:
    data = rows()
    load_pg(connections.POSTGRES_TARGET, "pp_src", data)
    load_pg(pg15, "pp_tgt", data)
    r = diff_pair(PairSpec(name="cc_test_pp", source=ep_pg("pp_src"), target=ep_pg("pp_tgt", pg15), key=("id",)),
                  options=SMALL)
    assert r.equal, r.summary()


# --- exact detection ----------------------------------------------------------------------------------


@pytest.mark.parametrize("pair", ["mysql_vs_pg", "pg_vs_pg", "mysql_vs_mysql", "pg_vs_mysql"])
def test_detects_exactly_the_injected_differences(pair: str, pg15: str) -> None:
    data = rows()
    if pair == "mysql_vs_pg":
        load_mysql("d1_src", data)
        load_pg(connections.POSTGRES_TARGET, "d1_tgt", data)
        src, tgt, expect = ep_my("d1_src"), ep_pg("d1_tgt"), inject("d1_tgt", "pg")
    elif pair == "pg_vs_pg":
        load_pg(pg15, "d2_src", data)
        load_pg(connections.POSTGRES_TARGET, "d2_tgt", data)
        src, tgt, expect = ep_pg("d2_src", pg15), ep_pg("d2_tgt"), inject("d2_tgt", "pg")
    elif pair == "mysql_vs_mysql":
        load_mysql("d3_src", data)
        load_mysql("d3_tgt", data)
        src, tgt, expect = ep_my("d3_src"), ep_my("d3_tgt"), inject("d3_tgt", "mysql")
    else:
        load_pg(connections.POSTGRES_TARGET, "d4_src", data)
        load_mysql("d4_tgt", data)
        src, tgt, expect = ep_pg("d4_src"), ep_my("d4_tgt"), inject("d4_tgt", "mysql")
    spec = PairSpec(name=f"cc_test_{pair}", source=src, target=tgt, key=("id",), kinds={"amount": "decimal:2"})
    for opts in (SMALL, DiffOptions()):
        r = diff_pair(spec, options=opts)
        assert found(r) == expect, r.summary()
        # transfer stays proportional to the differences, not to the table
        assert r.bytes_transferred < 60 * N, r.summary()
    deep = diff_pair(spec, options=SMALL)
    assert deep.levels >= 2  # bisected below the first level


@pytest.mark.parametrize("mysql_levels", ["union", "group_by"])
def test_far_away_keys_and_both_mysql_level_queries(mysql_levels: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keys far beyond the rest (most of the range empty) still spread over the connections, and the
    MariaDB level query (UNION ALL of ranges, or GROUP BY past MYSQL_UNION_SEGMENTS) finds exactly the
    differences."""
    from cutover.consistency import diff as engine

    if mysql_levels == "group_by":
        monkeypatch.setattr(engine, "MYSQL_UNION_SEGMENTS", 0)
    data = rows()
    load_mysql("far_src", data)
    load_pg(connections.POSTGRES_TARGET, "far_tgt", data)
    expect = inject("far_tgt", "pg")
    pg_exec(connections.POSTGRES_TARGET,
            f"INSERT INTO {PG_SCHEMA}.far_tgt VALUES (5000000000, 1.00, 'far', '2024-03-01 12:00:00+00', true, 1)")
    mysql_exec(f"INSERT INTO {MY_DB}.far_src VALUES (5000000001, 1.00, 'far', '2024-03-01 12:00:00', 1, 1)")
    expect = {"missing": expect["missing"] | {5000000001}, "extra": expect["extra"] | {5000000000},
              "changed": expect["changed"]}
    spec = PairSpec(name="cc_test_far", source=ep_my("far_src"), target=ep_pg("far_tgt"), key=("id",),
                    kinds={"amount": "decimal:2"})
    for opts in (SMALL, DiffOptions(), DiffOptions(parallel=1)):
        r = diff_pair(spec, options=opts)
        assert found(r) == expect, r.summary()
        assert r.source_rows == N + 1 and r.target_rows == N - 3 + 2 + 1


def test_key_range_limits_the_comparison() -> None:
    data = rows()
    load_mysql("kr_src", data)
    load_pg(connections.POSTGRES_TARGET, "kr_tgt", data)
    inject("kr_tgt", "pg")
    spec = PairSpec(name="cc_test_kr", source=ep_my("kr_src"), target=ep_pg("kr_tgt"), key=("id",),
                    kinds={"amount": "decimal:2"})
    r = diff_pair(spec, key_range=(700, 2100), options=SMALL)
    assert found(r) == {"missing": {1500}, "extra": set(), "changed": {777, 2001}}


def test_composite_key_hash_mode_detects_differences() -> None:
    data = rows()
    load_mysql("ck_src", data)
    load_pg(connections.POSTGRES_TARGET, "ck_tgt", data)
    expect = inject("ck_tgt", "pg")
    spec = PairSpec(name="cc_test_ck", source=ep_my("ck_src"), target=ep_pg("ck_tgt"), key=("id", "qty"),
                    kinds={"amount": "decimal:2"})
    r = diff_pair(spec, options=SMALL)
    assert r.mode == "hash"
    assert {k[0] for k in r.missing} == expect["missing"]
    assert {k[0] for k in r.extra} == expect["extra"]
    assert {k[0] for k in r.changed} == expect["changed"]


def test_narrow_vs_wide_pivot_through_query_endpoints() -> None:
    """The narrow time series vs its wide pivot: the wide side unpivots in SQL; key = (created_time, channel)."""
    times = [T0 + dt.timedelta(seconds=15 * i, microseconds=i) for i in range(400)]
    narrow = [(t, ch, float(i) + 0.25 * j if (i + j) % 13 else None) for i, t in enumerate(times)
              for j, ch in enumerate(["speed", "rpm", "temp"])]
    with connections.mysql_connect(connections.MYSQL_TARGET) as m:
        cur = m.cursor()
        cur.execute(f"CREATE DATABASE IF NOT EXISTS {MY_DB}")
        cur.execute(f"DROP TABLE IF EXISTS {MY_DB}.narrow")
        cur.execute(f"CREATE TABLE {MY_DB}.narrow (ship_id int, created_time datetime(6), data_channel_id varchar(32), "
                    "double_v double, PRIMARY KEY (ship_id, created_time, data_channel_id))")
        cur.executemany(f"INSERT INTO {MY_DB}.narrow VALUES (7, %s, %s, %s)", narrow)
    by_time: dict[dt.datetime, dict[str, Any]] = {}
    for t, ch, v in narrow:
        by_time.setdefault(t, {})[ch] = v
    with connections.pg_connect() as p:
        p.execute(f"CREATE SCHEMA IF NOT EXISTS {PG_SCHEMA}; DROP TABLE IF EXISTS {PG_SCHEMA}.wide_7")
        p.execute(f"CREATE TABLE {PG_SCHEMA}.wide_7 (created_time timestamptz PRIMARY KEY, speed double precision, "
                  "rpm double precision, temp double precision)")
        with p.cursor().copy(f"COPY {PG_SCHEMA}.wide_7 FROM STDIN") as cp:
            for t, vals in by_time.items():
                cp.write_row((t.replace(tzinfo=dt.UTC), vals["speed"], vals["rpm"], vals["temp"]))
    unpivot = " UNION ALL ".join(
        f"SELECT created_time, '{ch}' AS channel, {ch} AS value FROM {PG_SCHEMA}.wide_7 WHERE {ch} IS NOT NULL"
        for ch in ("speed", "rpm", "temp")
    )
    spec = PairSpec(
        name="cc_test_narrow_wide",
        source=Endpoint(connections.MYSQL_TARGET, query=f"SELECT created_time, data_channel_id AS channel, double_v AS value "
                        f"FROM {MY_DB}.narrow WHERE ship_id = 7 AND double_v IS NOT NULL"),
        target=Endpoint(connections.POSTGRES_TARGET, query=unpivot),
        key=("created_time", "channel"), columns=("value",),
        kinds={"created_time": "timestamp", "channel": "text", "value": "float"},
        window_column="created_time",
    )
    r = diff_pair(spec, options=SMALL)
    assert r.equal, r.summary()
    assert r.source_rows == sum(1 for x in narrow if x[2] is not None)
    pg_exec(connections.POSTGRES_TARGET, f"UPDATE {PG_SCHEMA}.wide_7 SET rpm = rpm + 0.5 WHERE created_time = %s",
            (times[100].replace(tzinfo=dt.UTC),))
    pg_exec(connections.POSTGRES_TARGET, f"UPDATE {PG_SCHEMA}.wide_7 SET temp = NULL WHERE created_time = %s",
            (times[200].replace(tzinfo=dt.UTC),))
    r = diff_pair(spec, options=SMALL)
    assert [(k[0], k[1]) for k in r.changed] == [(times[100], "rpm")]
    assert [(k[0], k[1]) for k in r.missing] == [(times[200], "temp")]
    assert r.extra == []
    # and only inside a window
    w = diff_pair(spec, window_start=times[150], window_end=times[300], options=SMALL)
    assert w.changed == [] and [k[1] for k in w.missing] == ["temp"]


# --- registry, scheduled window, repair -------------------------------------------------------------------


@pytest.fixture
def registered(pg: Any) -> Iterator[list[str]]:
    names: list[str] = []
    registry.ensure_registry(pg)
    pg.commit()
    yield names
    for n in names:
        registry.unregister_pair(pg, n)
    pg.execute("DELETE FROM cutover.consistency_results WHERE pair_name = ANY(%s)", (names,))
    pg.commit()


def test_registry_round_trip_and_status_view(pg: Any, registered: list[str]) -> None:
    spec = PairSpec(name="cc_test_reg", source=ep_my("same_src"), target=ep_pg("same_tgt"), key=("id",),
                    columns=("amount", "note"), mapping={"note": "note"}, kinds={"amount": "decimal:2"},
                    window_column="ts", recent_window_s=600, settle_s=30, repair="upsert")
    registered.append(spec.name)
    registry.register_pair(pg, spec, pipeline="mysql_to_postgres")
    registry.register_pair(pg, spec, pipeline="mysql_to_postgres")  # idempotent
    pg.commit()
    assert registry.get_pair(pg, spec.name) == spec
    assert spec.name in [p.name for p in registry.list_pairs(pg, pipeline="mysql_to_postgres")]
    registry.set_enabled(pg, spec.name, False)
    assert spec.name not in [p.name for p in registry.list_pairs(pg)]
    registry.set_enabled(pg, spec.name, True)
    pg.commit()
    status = registry.pair_status(pg, [spec.name])
    assert status[0]["pair_name"] == spec.name and status[0]["last_status"] is None


def test_scheduled_check_covers_only_the_recent_window(pg: Any, registered: list[str]) -> None:
    data = rows()
    load_mysql("win_src", data)
    load_pg(connections.POSTGRES_TARGET, "win_tgt", data)
    # an old difference (outside the window) and a recent one (inside)
    pg_exec(connections.POSTGRES_TARGET, f"UPDATE {PG_SCHEMA}.win_tgt SET note = 'old change' WHERE id = 100")
    pg_exec(connections.POSTGRES_TARGET, f"DELETE FROM {PG_SCHEMA}.win_tgt WHERE id = 2900")
    spec = PairSpec(name="cc_test_window", source=ep_my("win_src"), target=ep_pg("win_tgt"), key=("id",),
                    window_column="ts", recent_window_s=600, settle_s=60)
    registered.append(spec.name)
    registry.register_pair(pg, spec)
    pg.commit()
    as_of = T0 + dt.timedelta(seconds=N + 60)  # the window is [T0 + N - 600 s, T0 + N s)
    start, end = check_window(spec, as_of.replace(tzinfo=dt.UTC))
    assert (start, end) == (T0 + dt.timedelta(seconds=N - 600), T0 + dt.timedelta(seconds=N))
    out = run_check(spec.name, as_of=as_of, run_id="cc_test_run_window")
    assert out.status == "different"
    assert (out.missing, out.extra, out.changed) == (1, 0, 0)
    assert out.details["missing_keys"] == [2900]
    assert 500 < out.rows_checked <= 601
    assert out.lag_s == 0.0
    full = run_check(spec.name, as_of=as_of, full=True, run_id="cc_test_run_window")
    assert (full.missing, full.changed) == (1, 1)
    row = registry.pair_status(pg, [spec.name])[0]
    assert row["last_status"] == "different" and row["missing"] == 1 and row["changed"] == 1
    assert row["last_difference_at"] is not None and row["lag_s"] == 0.0


@pytest.mark.parametrize("mode,target", [("delete_insert", "pg"), ("upsert", "pg"), ("upsert", "mysql")])
def test_repair_resyncs_the_differing_keys(pg: Any, registered: list[str], mode: str, target: str) -> None:
    data = rows()
    load_mysql("rep_src", data) if target == "pg" else load_pg(connections.POSTGRES_TARGET, "rep_src", data)
    if target == "pg":
        load_pg(connections.POSTGRES_TARGET, "rep_tgt", data)
        src, tgt = ep_my("rep_src"), ep_pg("rep_tgt")
        inject("rep_tgt", "pg")
    else:
        load_mysql("rep_tgt", data)
        src, tgt = ep_pg("rep_src"), ep_my("rep_tgt")
        inject("rep_tgt", "mysql")
    spec = PairSpec(name=f"cc_test_repair_{mode}_{target}", source=src, target=tgt, key=("id",), repair=mode,
                    window_column="ts")
    registered.append(spec.name)
    registry.register_pair(pg, spec)
    pg.commit()
    as_of = T0 + dt.timedelta(days=1)
    out = run_check(spec.name, as_of=as_of, full=True, repair=True, run_id="cc_test_run_repair")
    assert out.status == "repaired" and out.repaired, out
    assert diff_pair(spec).equal
    statuses = pg.execute("SELECT status FROM cutover.consistency_results WHERE pair_name = %s ORDER BY id",
                          (spec.name,)).fetchall()
    assert [s[0] for s in statuses] == ["different", "repaired"]


def test_repair_refused_when_the_pair_does_not_allow_it(pg: Any, registered: list[str]) -> None:
    data = rows(200)
    load_mysql("norep_src", data)
    load_pg(connections.POSTGRES_TARGET, "norep_tgt", data)
    pg_exec(connections.POSTGRES_TARGET, f"DELETE FROM {PG_SCHEMA}.norep_tgt WHERE id = 5")
    spec = PairSpec(name="cc_test_norepair", source=ep_my("norep_src"), target=ep_pg("norep_tgt"), key=("id",))
    registered.append(spec.name)
    out = run_check(spec, as_of=T0, repair=True, run_id="cc_test_run_norepair")
    assert out.status == "different" and not out.repaired
    assert diff_pair(spec).missing == [(5,)]
