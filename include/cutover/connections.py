"""Connections: Airflow connection ids, their zero-configuration defaults, and driver connections.

Every database is reached through an Airflow connection id. Resolution order for an id:

1. the ``AIRFLOW_CONN_<ID>`` environment variable (URI or Airflow's JSON form), exactly as Airflow
   reads it — so one definition feeds Airflow, the tests and the CLI;
2. inside a running Airflow task (``AIRFLOW_CTX_DAG_ID`` set), the connection Airflow returns for the
   id (metadata DB through the API server, secrets backend). Only Airflow's "not defined" answer
   (``AirflowNotFoundException``) moves on to the next step; any other lookup error (secrets backend
   down, API server error) raises :class:`CutoverConnectionError` and fails the task — Cutover never
   falls back to a default because a lookup failed;
3. for ``postgres_source`` and ``cutover_control``, the ``AIRFLOW_CONN_POSTGRES_TARGET`` variable of the
   server they share;
4. the built-in default below (``postgres_source`` and ``cutover_control`` share ``postgres_target``'s).

Which of these was used is logged (INFO, logger ``cutover.connections``) the first time an id is
resolved in a process, and again if the source changes; passwords are never logged.

Defaults (nothing to configure on a fresh machine):

====================  ===========================================================================
``mysql_source``      local MariaDB/MySQL, ``root@127.0.0.1:3306``, database ``cutover_source``
``mysql_target``      local MariaDB/MySQL, ``root@127.0.0.1:3306`` (per-tenant databases)
``postgres_target``   embedded PostgreSQL 16 + pgvector (``pgserver``) under ``.data/pg``
``postgres_source``   same server as ``postgres_target`` (the narrow time-series source)
``mysql_readonly``    local MariaDB/MySQL, ``cutover_ro@127.0.0.1:3306`` (no password): the read-only
                      user mysql_to_postgres reads through (``make demo`` and the tests create it)
``mysql_reverse``     local MariaDB/MySQL, ``root@127.0.0.1:3306``: the writer of mysql_to_postgres'
                      reverse replication (PostgreSQL → MySQL after a table's switch; the source
                      connection stays read-only)
====================  ===========================================================================

The control schema ``cutover`` lives in ``postgres_target`` unless ``cutover_control`` is set.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit

MYSQL_SOURCE = "mysql_source"
MYSQL_TARGET = "mysql_target"
POSTGRES_SOURCE = "postgres_source"
POSTGRES_TARGET = "postgres_target"
CONTROL = "cutover_control"
MYSQL_READONLY = "mysql_readonly"
MYSQL_REVERSE = "mysql_reverse"

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DATA_DIR = Path(os.environ.get("CUTOVER_DATA_DIR", PROJECT_ROOT / ".data"))

_MYSQL_DEFAULTS: dict[str, dict[str, Any]] = {
    MYSQL_SOURCE: {"conn_type": "mysql", "host": "127.0.0.1", "port": 3306, "login": "root", "schema": "cutover_source"},
    MYSQL_TARGET: {"conn_type": "mysql", "host": "127.0.0.1", "port": 3306, "login": "root", "schema": ""},
    MYSQL_READONLY: {"conn_type": "mysql", "host": "127.0.0.1", "port": 3306, "login": "cutover_ro", "schema": ""},
    MYSQL_REVERSE: {"conn_type": "mysql", "host": "127.0.0.1", "port": 3306, "login": "root", "schema": ""},
}
_PG_ALIASES = {POSTGRES_SOURCE: POSTGRES_TARGET, CONTROL: POSTGRES_TARGET}

log = logging.getLogger(__name__)

# conn id -> the source last logged for it in this process (so each id is logged once, not per call).
_LOGGED_SOURCE: dict[str, str] = {}


class CutoverConnectionError(RuntimeError):
    """A connection id cannot be resolved or reached (the message names the id)."""


@dataclass(frozen=True)
class ConnInfo:
    """A resolved connection: the fields Airflow's Connection has, enough to open a driver connection."""

    conn_id: str
    conn_type: str
    host: str = ""
    port: int | None = None
    login: str = ""
    password: str = field(default="", repr=False)
    schema: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def is_postgres(self) -> bool:
        return self.conn_type in ("postgres", "postgresql")

    @property
    def is_mysql(self) -> bool:
        return self.conn_type in ("mysql", "mariadb")

    def pg_conninfo(self) -> str:
        """A libpq URI for psycopg (unix-socket hosts are passed as the ``host`` parameter)."""
        user = quote(self.login or "postgres", safe="")
        pw = (":" + quote(self.password, safe="")) if self.password else ""
        db = quote(self.schema or "postgres", safe="")
        if self.host.startswith("/"):
            return f"postgresql://{user}{pw}@/{db}?host={quote(self.host, safe='/')}"
        port = f":{self.port}" if self.port else ""
        return f"postgresql://{user}{pw}@{self.host or '127.0.0.1'}{port}/{db}"

    def sqlalchemy_url(self) -> str:
        """A SQLAlchemy URL (psycopg 3 dialect for PostgreSQL, mysqlclient for MySQL)."""
        if self.is_postgres:
            return self.pg_conninfo().replace("postgresql://", "postgresql+psycopg://", 1)
        user = quote(self.login or "root", safe="")
        pw = (":" + quote(self.password, safe="")) if self.password else ""
        return f"mysql+mysqldb://{user}{pw}@{self.host or '127.0.0.1'}:{self.port or 3306}/{self.schema}"

    def mysql_kwargs(self, database: str | None = None) -> dict[str, Any]:
        """Keyword arguments for ``MySQLdb.connect``."""
        kwargs: dict[str, Any] = {
            "host": self.host or "127.0.0.1",
            "port": int(self.port or 3306),
            "user": self.login or "root",
            "passwd": self.password,
            "charset": "utf8mb4",
            "autocommit": False,
        }
        db = self.schema if database is None else database
        if db:
            kwargs["db"] = db
        return kwargs

    def to_airflow_json(self) -> str:
        """This connection in Airflow's JSON ``AIRFLOW_CONN_*`` form."""
        body: dict[str, Any] = {"conn_type": self.conn_type, "host": self.host, "login": self.login}
        if self.port:
            body["port"] = self.port
        if self.password:
            body["password"] = self.password
        if self.schema:
            body["schema"] = self.schema
        if self.extra:
            body["extra"] = self.extra
        return json.dumps(body)


def parse_airflow_conn(conn_id: str, value: str) -> ConnInfo:
    """Parse an ``AIRFLOW_CONN_*`` value (JSON or URI form) into a :class:`ConnInfo`."""
    value = value.strip()
    if value.startswith("{"):
        body = json.loads(value)
        extra = body.get("extra") or {}
        if isinstance(extra, str):
            extra = json.loads(extra) if extra else {}
        return ConnInfo(
            conn_id=conn_id,
            conn_type=str(body.get("conn_type", "")).replace("postgresql", "postgres"),
            host=body.get("host") or "",
            port=int(body["port"]) if body.get("port") else None,
            login=body.get("login") or "",
            password=body.get("password") or "",
            schema=body.get("schema") or "",
            extra=extra,
        )
    parts = urlsplit(value)
    scheme = parts.scheme.split("+")[0].replace("-", "_")
    conn_type = {"postgresql": "postgres"}.get(scheme, scheme)
    query = dict(parse_qsl(parts.query))
    # Airflow URIs carry the host percent-encoded (so it can be a socket path); the netloc is kept as
    # written here because urlsplit().hostname lower-cases it.
    netloc = parts.netloc.rsplit("@", 1)[-1]
    host_part = netloc
    port: int | None = None
    if ":" in netloc and not netloc.endswith("]"):
        host_part, _, port_s = netloc.rpartition(":")
        port = int(port_s) if port_s else None
    host = unquote(host_part) or query.pop("host", "")
    if "host" in query and not host:
        host = query.pop("host")
    return ConnInfo(
        conn_id=conn_id,
        conn_type=conn_type,
        host=host,
        port=port,
        login=unquote(parts.username or ""),
        password=unquote(parts.password or ""),
        schema=unquote(parts.path.lstrip("/")),
        extra=query,
    )


def embedded_postgres_dir() -> Path:
    """Where the embedded PostgreSQL keeps its data (``$CUTOVER_DATA_DIR/pg``, default ``.data/pg``)."""
    return DATA_DIR / "pg"


def start_embedded_postgres() -> ConnInfo:
    """Start (or reuse) the embedded PostgreSQL 16 + pgvector server and return its connection.

    The server outlives this process (Airflow workers, tests and the CLI share it); ``make stop-pg``
    stops it. Needs the ``pgserver`` wheel; when run as root it runs PostgreSQL as user ``pgserver``.
    """
    import pgserver  # heavy: only when the embedded default is really used

    pgdata = embedded_postgres_dir()
    pgdata.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(pgdata, cleanup_mode=None)
    # cleanup_mode=None never stops the server; its exit hook would only log into closed streams.
    atexit.unregister(server._cleanup)
    info = parse_airflow_conn(POSTGRES_TARGET, server.get_uri())
    return ConnInfo(conn_id=POSTGRES_TARGET, conn_type="postgres", host=info.host, login="postgres", schema="postgres")


def _env_value(conn_id: str) -> str | None:
    return os.environ.get(f"AIRFLOW_CONN_{conn_id.upper()}")


def _airflow_lookup(conn_id: str) -> ConnInfo | None:
    """Ask Airflow for a connection defined elsewhere (metadata DB, secrets backend) inside a task.

    Returns None outside a running Airflow task, or when Airflow says the id is not defined
    (``AirflowNotFoundException``). Any other lookup error raises :class:`CutoverConnectionError`:
    a secrets backend or API server that is down must fail the task, not silently switch it to a
    built-in default database.
    """
    if "AIRFLOW_CTX_DAG_ID" not in os.environ:  # set by Airflow's task runner while a task executes
        return None
    try:  # only meaningful inside a running Airflow task
        from airflow.sdk import BaseHook
        from airflow.sdk.exceptions import AirflowNotFoundException
    except ImportError:  # pragma: no cover - Airflow absent
        return None
    try:
        conn = BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        return None
    except Exception as exc:
        raise CutoverConnectionError(
            f"connection {conn_id!r}: the Airflow connection lookup failed (secrets backend / API server "
            f"error: {type(exc).__name__}: {exc}); Cutover refuses to fall back to a built-in default "
            f"database. Fix the secrets backend, or set AIRFLOW_CONN_{conn_id.upper()} explicitly"
        ) from exc
    return ConnInfo(
        conn_id=conn_id,
        conn_type=(conn.conn_type or "").replace("postgresql", "postgres"),
        host=conn.host or "",
        port=conn.port,
        login=conn.login or "",
        password=conn.password or "",
        schema=conn.schema or "",
        extra=conn.extra_dejson if hasattr(conn, "extra_dejson") else {},
    )


def _describe(info: ConnInfo) -> str:
    """Where a connection points, for logs: type, user, host, port, database — never the password."""
    port = f":{info.port}" if info.port else ""
    login = f"{info.login}@" if info.login else ""
    return f"{info.conn_type} {login}{info.host or '?'}{port}/{info.schema}"


def _log_source(info: ConnInfo, source: str) -> ConnInfo:
    """Log (once per id and source, per process) which source resolved ``info``; returns ``info``."""
    if _LOGGED_SOURCE.get(info.conn_id) != source:
        _LOGGED_SOURCE[info.conn_id] = source
        log.info("connection %r: using %s (%s)", info.conn_id, source, _describe(info))
    return info


def resolve(conn_id: str) -> ConnInfo:
    """Resolve a connection id: ``AIRFLOW_CONN_*`` env var, then Airflow, then the built-in default.

    Raises :class:`CutoverConnectionError` when Airflow's lookup fails for any reason other than
    "not defined" (see the module docstring), or when the id has no definition and no default.
    """
    env_name = f"AIRFLOW_CONN_{conn_id.upper()}"
    value = _env_value(conn_id)
    why_default = f"{env_name} not set" + (", not defined in Airflow" if "AIRFLOW_CTX_DAG_ID" in os.environ else "")
    if value:
        return _log_source(parse_airflow_conn(conn_id, value), f"env var {env_name}")
    found = _airflow_lookup(conn_id)
    if found is not None:
        return _log_source(found, "the Airflow connection (metadata DB / secrets backend)")
    alias = _PG_ALIASES.get(conn_id)
    alias_value = _env_value(alias) if alias else None
    if alias and alias_value:
        return _log_source(
            parse_airflow_conn(conn_id, alias_value), f"alias env var AIRFLOW_CONN_{alias.upper()} (of {alias!r})"
        )
    if conn_id in _MYSQL_DEFAULTS:
        return _log_source(
            ConnInfo(conn_id=conn_id, **_MYSQL_DEFAULTS[conn_id]),
            f"built-in default: local MariaDB/MySQL 127.0.0.1:3306 ({why_default})",
        )
    if conn_id == POSTGRES_TARGET or alias == POSTGRES_TARGET:
        info = start_embedded_postgres()
        return _log_source(
            ConnInfo(conn_id=conn_id, conn_type="postgres", host=info.host, login=info.login, schema=info.schema),
            f"built-in default: embedded PostgreSQL under {embedded_postgres_dir()} ({why_default})",
        )
    raise CutoverConnectionError(
        f"connection {conn_id!r} is not defined: set AIRFLOW_CONN_{conn_id.upper()} or add it in Airflow"
    )


def default_env() -> dict[str, str]:
    """``AIRFLOW_CONN_*`` variables for every Cutover connection not already set (starts the embedded PG)."""
    env: dict[str, str] = {}
    for conn_id in (MYSQL_SOURCE, MYSQL_TARGET, MYSQL_READONLY, MYSQL_REVERSE, POSTGRES_TARGET, POSTGRES_SOURCE):
        if not _env_value(conn_id):
            env[f"AIRFLOW_CONN_{conn_id.upper()}"] = resolve(conn_id).to_airflow_json()
    return env


def apply_default_env() -> dict[str, str]:
    """Put :func:`default_env` into ``os.environ`` (tests, CLI); returns what was added."""
    env = default_env()
    os.environ.update(env)
    return env


def pg_open(conn_id: str = POSTGRES_TARGET, *, autocommit: bool = False) -> Any:
    """A new psycopg 3 connection for ``conn_id`` that the caller closes (:func:`pg_connect` manages one
    for a block). Raises :class:`CutoverConnectionError` when ``conn_id`` is not a PostgreSQL connection."""
    import psycopg

    info = resolve(conn_id)
    if not info.is_postgres:
        raise CutoverConnectionError(f"connection {conn_id!r} is {info.conn_type!r}, not postgres")
    return psycopg.connect(info.pg_conninfo(), autocommit=autocommit, application_name=f"cutover:{conn_id}")


@contextmanager
def pg_connect(conn_id: str = POSTGRES_TARGET, *, autocommit: bool = False) -> Iterator[Any]:
    """Open a psycopg 3 connection for ``conn_id``; commits on success, rolls back on error, closes."""
    conn = pg_open(conn_id, autocommit=autocommit)
    try:
        yield conn
        if not autocommit:
            conn.commit()
    except BaseException:
        if not autocommit and not conn.closed:
            conn.rollback()
        raise
    finally:
        conn.close()


@contextmanager
def mysql_connect(conn_id: str = MYSQL_SOURCE, *, database: str | None = None) -> Iterator[Any]:
    """Open a MySQLdb (mysqlclient) connection for ``conn_id``; commits on success, rolls back on error."""
    import MySQLdb

    info = resolve(conn_id)
    if not info.is_mysql:
        raise CutoverConnectionError(f"connection {conn_id!r} is {info.conn_type!r}, not mysql")
    conn = MySQLdb.connect(**info.mysql_kwargs(database))
    try:
        yield conn
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
    finally:
        conn.close()
