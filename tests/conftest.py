"""Shared fixtures: the same dev connections as `make demo` (AIRFLOW_CONN_* env vars, embedded defaults).

Set any AIRFLOW_CONN_<ID> before running pytest to run the same suite against another server, e.g.
``AIRFLOW_CONN_POSTGRES_TARGET=postgresql://postgres@127.0.0.1:5432/test make test``.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# Airflow must not touch a user's ~/airflow from the tests: a throw-away home per session.
# (`make` exports the demo's AIRFLOW_HOME; CUTOVER_TEST_AIRFLOW_HOME picks a fixed one.)
os.environ["AIRFLOW_HOME"] = os.environ.get("CUTOVER_TEST_AIRFLOW_HOME") or tempfile.mkdtemp(
    prefix="cutover-airflow-test-"
)
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("AIRFLOW__CORE__UNIT_TEST_MODE", "True")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")


def _test_gx_root() -> str:
    """The tests' own GX context: a throw-away folder holding copies of the project's committed suites,
    so that what the tests validate never shows in the project's data docs (CUTOVER_GX_ROOT wins)."""
    import shutil

    root = Path(tempfile.mkdtemp(prefix="cutover-gx-test-"))
    committed = Path(__file__).resolve().parents[1] / "great_expectations" / "expectations"
    (root / "expectations").mkdir()
    for suite in committed.glob("*.json"):
        if not suite.name.startswith("generated__"):
            shutil.copy(suite, root / "expectations" / suite.name)
    return str(root)


os.environ.setdefault("CUTOVER_GX_ROOT", _test_gx_root())
# The tests' own embedded PostgreSQL (its own data folder, not the demo's .data/): what they leave
# behind never reaches the server the demo and `make airflow` use. CUTOVER_DATA_DIR wins.
os.environ.setdefault("CUTOVER_DATA_DIR", str(Path(__file__).resolve().parents[1] / ".test-data"))

from cutover import connections, control  # noqa: E402
from cutover.identifiers import quote_mysql  # noqa: E402

TEST_DATABASE = "cutover_test"


def _use_test_database() -> None:
    """Same server as `make demo` (the embedded PostgreSQL), but its own database, so that what the
    tests leave behind (runs, registered pairs, wide tables) never shows up in the demo's UI or in its
    scheduled consistency checks. An AIRFLOW_CONN_POSTGRES_TARGET set by the caller is used as it is."""
    if os.environ.get("AIRFLOW_CONN_POSTGRES_TARGET"):
        return
    import psycopg

    server = connections.start_embedded_postgres()
    with psycopg.connect(server.pg_conninfo(), autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (TEST_DATABASE,)).fetchone() is None:
            conn.execute(f"CREATE DATABASE {TEST_DATABASE}")
    test = connections.ConnInfo(conn_id=connections.POSTGRES_TARGET, conn_type="postgres", host=server.host,
                                login=server.login, schema=TEST_DATABASE)
    os.environ["AIRFLOW_CONN_POSTGRES_TARGET"] = test.to_airflow_json()
    os.environ.setdefault("AIRFLOW_CONN_POSTGRES_SOURCE", test.to_airflow_json())


_use_test_database()
connections.apply_default_env()


@pytest.fixture(scope="session")
def pg_info() -> connections.ConnInfo:
    """The resolved postgres_target connection."""
    return connections.resolve(connections.POSTGRES_TARGET)


@pytest.fixture
def pg() -> Iterator[Any]:
    """A psycopg connection to postgres_target (autocommit off; rolled back if the test fails)."""
    with connections.pg_connect(connections.POSTGRES_TARGET) as conn:
        control.ensure_schema(conn)
        conn.commit()
        yield conn


@pytest.fixture(scope="session", autouse=True)
def _source_default_database() -> None:
    """The default source connection's database (``mysql_source``'s schema) exists, as on a machine where
    the demo ran: code that opens that connection without naming a database must not depend on the order
    the tests run in (a fresh server has no ``cutover_source`` until some test creates it)."""
    schema = connections.resolve(connections.MYSQL_SOURCE).schema
    if schema:
        try:
            with connections.mysql_connect(connections.MYSQL_TARGET) as conn:
                conn.cursor().execute(f"CREATE DATABASE IF NOT EXISTS {quote_mysql(schema)}")
        except Exception:  # noqa: BLE001 - no MySQL here: the tests that need it report that themselves
            pass


@pytest.fixture
def mysql() -> Iterator[Any]:
    """A MySQLdb connection to the local MariaDB/MySQL server (no default database)."""
    with connections.mysql_connect(connections.MYSQL_TARGET) as conn:
        yield conn
