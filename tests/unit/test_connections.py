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


# --- inside an Airflow task: only "not defined" falls back to a default --------------------------------


@pytest.fixture
def in_task(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """An Airflow task context with no AIRFLOW_CONN_* for the MySQL ids and a fresh "logged once" memo."""
    monkeypatch.setenv("AIRFLOW_CTX_DAG_ID", "test_dag")
    monkeypatch.delenv("AIRFLOW_CONN_MYSQL_SOURCE", raising=False)
    monkeypatch.delenv("AIRFLOW_CONN_MYSQL_TARGET", raising=False)
    monkeypatch.setattr(c, "_LOGGED_SOURCE", {})
    return monkeypatch


def test_failed_airflow_lookup_fails_instead_of_using_the_default(in_task: pytest.MonkeyPatch) -> None:
    from airflow.sdk import BaseHook

    def broken(conn_id: str) -> object:
        raise RuntimeError("secrets backend down")

    in_task.setattr(BaseHook, "get_connection", staticmethod(broken))
    with pytest.raises(c.CutoverConnectionError, match="'mysql_source'") as err:
        c.resolve(c.MYSQL_SOURCE)
    assert "lookup failed" in str(err.value) and "refuses to fall back" in str(err.value)
    assert isinstance(err.value.__cause__, RuntimeError)


def test_connection_not_defined_in_airflow_falls_back_and_says_so(
    in_task: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    calls: list[str] = []

    def missing(conn_id: str) -> object:
        calls.append(conn_id)
        raise AirflowNotFoundException(f"The conn_id `{conn_id}` isn't defined")

    in_task.setattr(BaseHook, "get_connection", staticmethod(missing))
    with caplog.at_level("INFO", logger="cutover.connections"):
        info = c.resolve(c.MYSQL_TARGET)
        c.resolve(c.MYSQL_TARGET)
    assert calls == [c.MYSQL_TARGET, c.MYSQL_TARGET]
    assert (info.host, info.port, info.login) == ("127.0.0.1", 3306, "root")
    messages = [r.getMessage() for r in caplog.records if r.name == "cutover.connections"]
    assert len(messages) == 1  # once per id per process, not per call
    assert "'mysql_target'" in messages[0] and "built-in default" in messages[0]
    assert "127.0.0.1:3306" in messages[0] and "not defined in Airflow" in messages[0]


def test_connection_found_in_airflow_is_used_as_is(
    in_task: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from airflow.sdk import BaseHook, Connection

    conn = Connection(conn_id="mysql_source", conn_type="mysql", host="db.internal", port=3307, login="reader",
                      password="hunter2", schema="legacy", extra='{"ssl_mode": "REQUIRED"}')
    in_task.setattr(BaseHook, "get_connection", staticmethod(lambda conn_id: conn))
    with caplog.at_level("INFO", logger="cutover.connections"):
        info = c.resolve(c.MYSQL_SOURCE)
    assert (info.conn_type, info.host, info.port, info.login, info.password, info.schema) == (
        "mysql", "db.internal", 3307, "reader", "hunter2", "legacy")
    assert info.extra == {"ssl_mode": "REQUIRED"}
    assert "Airflow connection" in caplog.text and "db.internal:3307" in caplog.text
    assert "hunter2" not in caplog.text  # passwords never logged


def test_env_var_source_is_logged_without_password(
    in_task: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    in_task.setenv("AIRFLOW_CONN_MYSQL_SOURCE", "mysql://reader:s3cret@10.0.0.9:3306/legacy")
    with caplog.at_level("INFO", logger="cutover.connections"):
        c.resolve(c.MYSQL_SOURCE)
    assert "env var AIRFLOW_CONN_MYSQL_SOURCE" in caplog.text and "s3cret" not in caplog.text
