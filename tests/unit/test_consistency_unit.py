"""Pure pieces of the consistency engine: kinds, canonical values, SQL fragments, windows, alerts."""

from __future__ import annotations

import datetime as dt
import http.server
import json
import threading
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from cutover.consistency.diff import DiffResult, row_bytes
from cutover.consistency.normalize import MYSQL, POSTGRES, PhysicalType, infer_kind, python_canonical
from cutover.consistency.runner import (
    CheckOutcome,
    ConsistencyMismatch,
    check_window,
    raise_if_different,
    results_gate_query,
)
from cutover.consistency.spec import Endpoint, Kind, PairSpec, PairSpecError


def test_kind_parse() -> None:
    assert Kind.parse("decimal:2") == Kind("decimal", 2)
    assert Kind.parse("float") == Kind("float", 15)
    assert str(Kind.parse("TIMESTAMP")) == "timestamp"
    with pytest.raises(PairSpecError):
        Kind.parse("jsonb")


@pytest.mark.parametrize(
    "src,tgt,expected",
    [
        (PhysicalType("tinyint", 0, "tinyint(1)"), PhysicalType("boolean"), "bool"),
        (PhysicalType("decimal", 2, "decimal(12,2)"), PhysicalType("numeric", 4), "decimal:4"),
        (PhysicalType("datetime", None, "datetime(6)"), PhysicalType("timestamp with time zone"), "timestamp"),
        (PhysicalType("varchar", None, "varchar(20)"), PhysicalType("text"), "text"),
        (PhysicalType("bigint"), PhysicalType("integer"), "int"),
        (PhysicalType("int"), PhysicalType("text"), "text"),
    ],
)
def test_infer_kind(src: PhysicalType, tgt: PhysicalType, expected: str) -> None:
    assert str(infer_kind(src, tgt)) == expected


def test_python_canonical_matches_the_sql_rules() -> None:
    assert python_canonical(None, Kind("text")) == "~"
    assert python_canonical("~", Kind("text")) == "1:~"
    assert python_canonical("a ", Kind("text")) != python_canonical("a", Kind("text"))
    assert python_canonical(Decimal("12.3"), Kind("decimal", 2)) == "12.30"
    assert python_canonical(Decimal("12.3000"), Kind("decimal", 2)) == "12.30"
    assert python_canonical(True, Kind("bool")) == "1"
    naive = dt.datetime(2024, 1, 1, 12, 0, 0, 500000)
    aware = dt.datetime(2024, 1, 1, 13, 0, 0, 500000, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    assert python_canonical(naive, Kind("timestamp")) == python_canonical(aware, Kind("timestamp")) == "2024-01-01 12:00:00.5"
    assert python_canonical(dt.datetime(2024, 1, 1), Kind("timestamp")) == "2024-01-01 00:00:00"


def test_sql_fragments_are_parameter_safe_and_null_aware() -> None:
    ts_my = MYSQL.canonical("`ts`", Kind("timestamp"), PhysicalType("datetime", None, "datetime(6)", precision=6))
    assert "TRIM(TRAILING '0'" in ts_my and "COALESCE" in ts_my
    assert "CAST(`ts` AS DATETIME(6))" in MYSQL.canonical("`ts`", Kind("timestamp"), PhysicalType("datetime", precision=0))
    assert "CONVERT(`n` USING utf8mb4)" in MYSQL.canonical("`n`", Kind("text"), PhysicalType("varchar", charset="latin1"))
    assert "CONVERT" not in MYSQL.canonical("`n`", Kind("text"), PhysicalType("varchar", charset="utf8mb4"))
    assert POSTGRES.canonical('"a"', Kind("decimal", 2), PhysicalType("numeric", 4)) == \
        """coalesce(round("a"::numeric, 2)::text, '~')"""
    assert "::int::text" in POSTGRES.canonical('"f"', Kind("bool"), PhysicalType("boolean"))
    assert "%" not in POSTGRES.bucket("x", 16) and "%" not in MYSQL.bucket("x", 16)
    assert "md5" in POSTGRES.hash60("x") and "hashtextextended" in POSTGRES.hash60("x", "pg")
    assert "MD5" in MYSQL.hash60("x")


def test_pair_spec_validation_and_round_trip() -> None:
    with pytest.raises(PairSpecError):
        Endpoint("c", table="t", query="select 1")
    with pytest.raises(PairSpecError):
        PairSpec(name="p", source=Endpoint("a", table="t"), target=Endpoint("b", table="t"), key=())
    with pytest.raises(PairSpecError):
        PairSpec(name="p", source=Endpoint("a", query="select 1"), target=Endpoint("b", table="t"), key=("id",),
                 repair="upsert")
    spec = PairSpec(name="p", source=Endpoint("a", table="s.t"), target=Endpoint("b", table="t"), key=("id",),
                    columns=("x",), mapping={"x": "y"}, window_column="ts")
    assert PairSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    assert spec.target_name("x") == "y" and spec.target_name("id") == "id"


def test_check_window_ends_before_the_settle_time() -> None:
    spec = PairSpec(name="p", source=Endpoint("a", table="t"), target=Endpoint("b", table="t"), key=("id",),
                    window_column="ts", recent_window_s=600, settle_s=60)
    as_of = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    assert check_window(spec, as_of) == (dt.datetime(2024, 5, 1, 9, 49), dt.datetime(2024, 5, 1, 9, 59))
    assert check_window(spec, as_of, full=True) == (None, None)


def test_result_details_and_mismatch_message() -> None:
    r = DiffResult(pair="p", mode="range", source_rows=10, target_rows=9, missing=[(3,)], changed=[(5,)],
                   source_latest=dt.datetime(2024, 1, 1, 0, 0, 10), target_latest=dt.datetime(2024, 1, 1, 0, 0, 4,
                                                                                             tzinfo=dt.UTC))
    assert not r.equal and r.differences == 2 and r.lag_s == 6.0
    d = r.details()
    assert d["missing_keys"] == [3] and d["changed_keys"] == [5] and json.dumps(d)
    out = CheckOutcome(pair="p", status="different", window_start=None, window_end=None, rows_checked=10, missing=1,
                       extra=0, changed=1, duration_s=0.1, lag_s=6.0, result_id=7, details=d)
    with pytest.raises(ConsistencyMismatch, match=r"pair 'p' differs over the whole pair: 1 missing"):
        raise_if_different(out)
    out.status = "equal"
    assert raise_if_different(out)["status"] == "equal"
    assert "run_id = 'a''b'" in results_gate_query("a'b")


def test_row_bytes() -> None:
    assert row_bytes([(1, "abc", None, Decimal("1.50"))]) == 8 + 3 + 1 + 4


@pytest.fixture
def webhook(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict[str, Any]]]:
    received: list[dict[str, Any]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server API
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("AIRFLOW_CONN_CUTOVER_ALERTS", f"http://127.0.0.1:{server.server_port}/hook")
    yield received
    server.shutdown()


def test_alert_posts_to_the_webhook(webhook: list[dict[str, Any]], caplog: pytest.LogCaptureFixture) -> None:
    from cutover.consistency.alerts import consistency_alert

    class TI:
        task_id, map_index, dag_id, run_id = "check", 0, "consistency_checks", "manual__1"

    consistency_alert({"ti": TI(), "exception": RuntimeError("pair 'orders' differs over …")})
    assert webhook and webhook[0]["task"] == "check[0]" and "orders" in webhook[0]["error"]
    assert webhook[0]["pair"] == "orders"
    assert "CONSISTENCY ALERT" in caplog.text


def test_alert_without_webhook_only_logs(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    from cutover.consistency.alerts import send_alert

    monkeypatch.delenv("AIRFLOW_CONN_CUTOVER_ALERTS", raising=False)
    assert send_alert({"text": "x"}) is False
    assert "CONSISTENCY ALERT" in caplog.text
