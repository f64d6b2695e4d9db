"""Connection resolution: AIRFLOW_CONN_* in URI or JSON form, socket hosts, defaults."""

from __future__ import annotations

import pytest

from cutover import connections as c


def test_uri_form_with_password_and_port() -> None:
    info = c.parse_airflow_conn("x", "postgresql://app:s%40cret@db.example:5433/sales?sslmode=require")
    assert (info.conn_type, info.host, info.port, info.login, info.password, info.schema) == (
        "postgres", "db.example", 5433, "app", "s@cret", "sales")
    assert info.extra == {"sslmode": "require"}
    assert info.pg_conninfo() == "postgresql://app:s%40cret@db.example:5433/sales"
    assert "s@cret" not in repr(info)  # secrets stay out of logs


def test_uri_form_keeps_socket_path_case() -> None:
    info = c.parse_airflow_conn("x", "postgres://postgres@%2FTmp%2FPg/postgres")
    assert info.host == "/Tmp/Pg"
    assert info.pg_conninfo() == "postgresql://postgres@/postgres?host=/Tmp/Pg"
    q = c.parse_airflow_conn("x", "postgresql://postgres:@/postgres?host=/work/.data/pg")
    assert q.host == "/work/.data/pg"


def test_json_form() -> None:
    info = c.parse_airflow_conn("m", '{"conn_type": "mysql", "host": "h", "port": 3307, "login": "ro", "schema": "src"}')
    assert info.is_mysql and info.mysql_kwargs()["port"] == 3307 and info.mysql_kwargs()["db"] == "src"
    assert c.parse_airflow_conn("m", info.to_airflow_json()) == info


def test_env_var_wins_over_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_MYSQL_SOURCE", "mysql://reader@10.0.0.9:3306/legacy")
    info = c.resolve(c.MYSQL_SOURCE)
    assert (info.host, info.login, info.schema) == ("10.0.0.9", "reader", "legacy")


def test_mysql_defaults_without_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_MYSQL_TARGET", raising=False)
    info = c.resolve(c.MYSQL_TARGET)
    assert (info.host, info.port, info.login) == ("127.0.0.1", 3306, "root")


def test_unknown_connection_has_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIRFLOW_CTX_DAG_ID", raising=False)
    with pytest.raises(c.CutoverConnectionError, match="AIRFLOW_CONN_NOPE"):
        c.resolve("nope")
