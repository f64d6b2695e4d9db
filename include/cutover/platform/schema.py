"""The platform schema: versioned SQL migrations with row-level security, applied idempotently.

The platform keeps its customer data in MySQL (read-only for it) and its own tables in PostgreSQL:
``message_templates``, ``individual_variable_mappings``, ``workflows``, ``workflow_runs``,
``message_logs`` and ``daily_statistics``. They are created by the plain SQL files in
``migrations/`` (``NNNN_<name>.sql``, applied in version order), which a reviewer reads as they are.

How a run applies them (:func:`apply_platform_schema`, or :func:`migrate` on an open connection):

* the target schema is a parameter: each migration runs with ``search_path`` set to the schema's
  *quoted* name, and the files name no schema; where one must (``GRANT USAGE ON SCHEMA``) the file
  writes ``:"schema"``, psql's variable syntax, and the runner puts the driver-quoted identifier there,
  as it does for ``:"service_role"`` and ``:"app_role"`` — any name that PostgreSQL can hold works;
* the two roles are cluster-wide: created ``NOLOGIN`` when missing, left exactly as they are when
  they exist (a concurrent creation from another database is taken as "exists");
* each pending migration runs in its own transaction, together with its row in
  ``<schema>.schema_migrations(version, name, checksum, applied_at, roles)``: a failing file leaves
  nothing of itself behind and the migrations before it stay applied;
* every transaction first takes ``pg_advisory_xact_lock`` on the schema's name, then reads what is
  applied: concurrent runs on one schema are serialized and each migration is applied exactly once;
* before anything is applied, what is already applied is checked against the files: a changed file
  (its SHA-256 differs from the stored one) raises :class:`ChecksumMismatchError` naming the file; an
  applied version with no file, a new file numbered below the newest applied one, or other role
  names than the schema was migrated for raise :class:`PlatformSchemaError`;
* re-running applies nothing; ``dry_run`` reads only and says what would be applied.

The application role's tenant comes from the Supabase / PostgREST JWT claims setting
(:data:`~cutover.platform.config.TENANT_SETTING`); :func:`set_request_tenant` sets it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict

from psycopg import Connection, errors, sql
from psycopg.pq import TransactionStatus
from psycopg.types.json import Jsonb

from cutover.connections import pg_connect
from cutover.identifiers import with_params
from cutover.platform.config import (
    DEFAULT_APP_ROLE,
    DEFAULT_CONN_ID,
    DEFAULT_SCHEMA,
    DEFAULT_SERVICE_ROLE,
    TENANT_CLAIM,
    TENANT_SETTING,
    PlatformSchemaConfig,
)

log = logging.getLogger(__name__)

#: the migrations shipped with this package
MIGRATIONS_DIR = Path(__file__).resolve().with_name("migrations")
#: the table each migration's row is kept in, inside the target schema
MIGRATIONS_TABLE = "schema_migrations"

_FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
#: psql-style ``:"name"`` variables (not a ``::"type"`` cast)
_VARIABLE = re.compile(r'(?<!:):"([A-Za-z_][A-Za-z0-9_]*)"')
_VARIABLES = ("schema", "service_role", "app_role")
#: first key of the two-key advisory lock (the second is hashtext(schema)): "plat"
_LOCK_CLASS = 0x706C6174


class PlatformSchemaError(RuntimeError):
    """The platform schema cannot be migrated as asked (the message names the schema, file or role)."""


class ChecksumMismatchError(PlatformSchemaError):
    """An already-applied migration file was changed since it was applied."""

    def __init__(self, schema: str, file: str, stored: str, current: str) -> None:
        self.schema, self.file, self.stored, self.current = schema, file, stored, current
        super().__init__(
            f"platform schema {schema!r}: migration file {file} was changed after it was applied "
            f"(checksum mismatch: applied sha256 {stored[:12]}…, file now {current[:12]}…). Applied "
            "migrations are never edited: restore the file and add a new NNNN_<name>.sql instead"
        )


class MigrationFailedError(PlatformSchemaError):
    """A migration's SQL failed; it was rolled back whole (the migrations before it stay applied).

    ``transient`` is true for errors that may pass on a retry (connection lost, lock or statement
    timeout, deadlock: psycopg's ``OperationalError``); false for errors in the SQL itself.
    """

    def __init__(self, schema: str, file: str, exc: Exception) -> None:
        self.schema, self.file = schema, file
        self.transient = isinstance(exc, errors.OperationalError)
        super().__init__(
            f"platform schema {schema!r}: migration {file} failed and was rolled back "
            f"({type(exc).__name__}: {exc})"
        )


@dataclass(frozen=True)
class PlatformMigration:
    """One migration file: its version and name (from the file name), its SQL and the SHA-256 of its bytes."""

    version: int
    name: str
    path: Path
    text: str
    checksum: str

    @property
    def file(self) -> str:
        """The file name, e.g. ``0001_platform_tables.sql``."""
        return self.path.name

    def render(self, conn: Connection[Any], *, schema: str, service_role: str, app_role: str) -> str:
        """The SQL to execute: each ``:"variable"`` replaced by the driver-quoted identifier."""
        values = {"schema": schema, "service_role": service_role, "app_role": app_role}
        return _VARIABLE.sub(lambda m: sql.Identifier(values[m.group(1)]).as_string(conn), self.text)


class MigrationInfo(TypedDict):
    """A migration as a run reports it."""

    version: int
    name: str
    file: str
    checksum: str


class PlatformSchemaResult(TypedDict):
    """What :func:`apply_platform_schema` did (JSON-serialisable: it is the DAG task's XCom).

    ``applied``: migrations this run applied, in order (always empty in a dry run); ``skipped``:
    migrations found already applied (checksums verified); ``pending``: in a dry run, what a real run
    would apply (empty otherwise); ``roles_created``: roles this run created (dry run: would create);
    ``roles_existing``: roles found and left as they are.
    """

    schema: str
    service_role: str
    app_role: str
    dry_run: bool
    applied: list[MigrationInfo]
    skipped: list[MigrationInfo]
    pending: list[MigrationInfo]
    roles_created: list[str]
    roles_existing: list[str]


@dataclass(frozen=True)
class _Applied:
    version: int
    name: str
    checksum: str
    roles: dict[str, Any]


def load_migrations(directory: Path | None = None) -> tuple[PlatformMigration, ...]:
    """Read the ``NNNN_<name>.sql`` files of ``directory`` (default: the shipped ones), in version order.

    Raises :class:`PlatformSchemaError` naming the file for a ``.sql`` file whose name does not follow
    the pattern, two files with one version, or a ``:"variable"`` the runner does not know.
    """
    folder = MIGRATIONS_DIR if directory is None else Path(directory)
    found: dict[int, PlatformMigration] = {}
    for path in sorted(folder.glob("*.sql")):
        match = _FILE_NAME.match(path.name)
        if match is None:
            raise PlatformSchemaError(
                f"migration file {path.name} in {folder}: the name must be NNNN_<name>.sql "
                "(four digits, then lower-case letters, digits and underscores)"
            )
        version = int(match.group(1))
        if version in found:
            raise PlatformSchemaError(
                f"migration files {found[version].file} and {path.name} in {folder} share version {version:04d}"
            )
        data = path.read_bytes()
        text = data.decode("utf-8")
        unknown = sorted({v for v in _VARIABLE.findall(text) if v not in _VARIABLES})
        if unknown:
            raise PlatformSchemaError(
                f"migration file {path.name}: unknown variable(s) {', '.join(unknown)}; "
                f"the runner sets {', '.join(_VARIABLES)}"
            )
        found[version] = PlatformMigration(version, match.group(2), path, text, hashlib.sha256(data).hexdigest())
    if not found:
        raise PlatformSchemaError(f"no migration files (NNNN_<name>.sql) in {folder}")
    return tuple(found[v] for v in sorted(found))


def apply_platform_schema(
    conn_id: str = DEFAULT_CONN_ID,
    schema: str = DEFAULT_SCHEMA,
    service_role: str = DEFAULT_SERVICE_ROLE,
    app_role: str = DEFAULT_APP_ROLE,
    dry_run: bool = False,
    *,
    migrations_dir: Path | None = None,
) -> PlatformSchemaResult:
    """Apply the pending platform migrations to ``schema`` on ``conn_id``; returns what was done.

    Opens its own connection (each migration is committed on its own). See :func:`migrate` for what
    is raised; bad names raise :class:`cutover.identifiers.IdentifierError` before anything connects.
    """
    cfg = PlatformSchemaConfig(conn_id=conn_id, schema=schema, service_role=service_role,
                               app_role=app_role, dry_run=dry_run)
    migrations = load_migrations(migrations_dir)
    with pg_connect(cfg.conn_id, autocommit=True) as conn:
        return migrate(conn, schema=cfg.schema, service_role=cfg.service_role, app_role=cfg.app_role,
                       dry_run=cfg.dry_run, migrations=migrations)


def migrate(
    conn: Connection[Any],
    *,
    schema: str = DEFAULT_SCHEMA,
    service_role: str = DEFAULT_SERVICE_ROLE,
    app_role: str = DEFAULT_APP_ROLE,
    dry_run: bool = False,
    migrations: Sequence[PlatformMigration] | None = None,
) -> PlatformSchemaResult:
    """Apply the pending ``migrations`` (default: the shipped ones) on ``conn``, each in its own transaction.

    ``conn`` must have no transaction open (each migration commits by itself). Raises
    :class:`ChecksumMismatchError` (an applied file changed), :class:`PlatformSchemaError` (an applied
    version with no file, a new file numbered below the newest applied one, the schema migrated for
    other roles), :class:`MigrationFailedError` (a migration's SQL failed — the message names its file;
    the earlier ones stay applied, nothing of the failed one remains), ``IdentifierError`` /
    ``ValueError`` for bad names, ``psycopg.OperationalError`` when the server cannot be reached.
    """
    cfg = PlatformSchemaConfig(schema=schema, service_role=service_role, app_role=app_role, dry_run=dry_run)
    files = tuple(migrations) if migrations is not None else load_migrations()
    if conn.info.transaction_status != TransactionStatus.IDLE:
        raise PlatformSchemaError(
            "migrate() needs a connection with no open transaction: every migration commits on its own"
        )
    roles = {"service_role": cfg.service_role, "app_role": cfg.app_role}
    result = PlatformSchemaResult(schema=cfg.schema, service_role=cfg.service_role, app_role=cfg.app_role,
                                  dry_run=cfg.dry_run, applied=[], skipped=[], pending=[],
                                  roles_created=[], roles_existing=[])
    if cfg.dry_run:
        with conn.transaction(force_rollback=True):
            conn.execute("SET TRANSACTION READ ONLY")
            applied = _read_applied(conn, cfg.schema)
            _check(cfg.schema, files, applied, roles)
            for role in (cfg.service_role, cfg.app_role):
                (result["roles_existing"] if _role_exists(conn, role) else result["roles_created"]).append(role)
        result["skipped"] = [_info(m) for m in files if m.version in applied]
        result["pending"] = [_info(m) for m in files if m.version not in applied]
        log.info("platform schema %r (dry run): %d applied, would apply %s%s", cfg.schema, len(result["skipped"]),
                 [m["file"] for m in result["pending"]] or "nothing",
                 f", would create roles {result['roles_created']}" if result["roles_created"] else "")
        return result

    with conn.transaction():
        _lock(conn, cfg.schema)
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(cfg.schema)))
        table = sql.Identifier(cfg.schema, MIGRATIONS_TABLE)
        conn.execute(sql.SQL("""CREATE TABLE IF NOT EXISTS {} (
                                    version    integer PRIMARY KEY,
                                    name       text NOT NULL,
                                    checksum   text NOT NULL CHECK (length(checksum) = 64),
                                    applied_at timestamptz NOT NULL DEFAULT now(),
                                    roles      jsonb NOT NULL DEFAULT '{{}}')""").format(table))
        # no policy: only the owner (and superusers) may read or change the history
        conn.execute(sql.SQL("ALTER TABLE {} ENABLE ROW LEVEL SECURITY").format(table))
        _check(cfg.schema, files, _read_applied(conn, cfg.schema), roles)
        for role in (cfg.service_role, cfg.app_role):
            (result["roles_created"] if _ensure_role(conn, role) else result["roles_existing"]).append(role)

    for m in files:
        started = time.monotonic()
        with conn.transaction():
            _lock(conn, cfg.schema)
            applied = _read_applied(conn, cfg.schema)  # again, under the lock: another run may have been first
            _check(cfg.schema, files, applied, roles)
            if m.version in applied:
                result["skipped"].append(_info(m))
                continue
            log.info("platform schema %r: applying %s", cfg.schema, m.file)
            conn.execute(sql.SQL("SET LOCAL search_path TO {}").format(sql.Identifier(cfg.schema)))
            try:
                with conn.transaction():  # a savepoint, so that the error is reported with the file's name
                    conn.execute(m.render(conn, schema=cfg.schema, service_role=cfg.service_role,
                                          app_role=cfg.app_role))
            except errors.Error as exc:
                raise MigrationFailedError(cfg.schema, m.file, exc) from exc
            conn.execute(
                with_params(sql.SQL("INSERT INTO {} (version, name, checksum, roles) VALUES (%s, %s, %s, %s)")
                            .format(table)),
                (m.version, m.name, m.checksum, Jsonb(roles)),
            )
        result["applied"].append(_info(m))
        log.info("platform schema %r: applied %s in %.2f s", cfg.schema, m.file, time.monotonic() - started)
    if not result["applied"]:
        log.info("platform schema %r: up to date, nothing to apply (%d migrations already applied)",
                 cfg.schema, len(result["skipped"]))
    return result


def set_request_tenant(conn: Connection[Any], tenant_id: str | None, *, local: bool = True) -> None:
    """Act for ``tenant_id`` as the application role sees it: set the request's JWT claims (or clear them).

    What PostgREST does per request; an application connecting directly calls this at the start of
    each transaction (``local=True``: the setting ends with the transaction). ``None`` clears the
    claims, and the application role then sees no row. Never commits.
    """
    claims = "" if tenant_id is None else json.dumps({TENANT_CLAIM: tenant_id})
    conn.execute("SELECT set_config(%s, %s, %s)", (TENANT_SETTING, claims, local))


def _info(m: PlatformMigration) -> MigrationInfo:
    return MigrationInfo(version=m.version, name=m.name, file=m.file, checksum=m.checksum)


def _lock(conn: Connection[Any], schema: str) -> None:
    conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (_LOCK_CLASS, schema))


def _read_applied(conn: Connection[Any], schema: str) -> dict[int, _Applied]:
    """The applied migrations of ``schema`` by version (empty when it has no migrations table yet)."""
    exists = conn.execute(
        """SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE n.nspname = %s AND c.relname = %s AND c.relkind IN ('r', 'p')""",
        (schema, MIGRATIONS_TABLE),
    ).fetchone()
    if exists is None:
        return {}
    rows = conn.execute(
        sql.SQL("SELECT version, name, checksum, roles FROM {} ORDER BY version")
        .format(sql.Identifier(schema, MIGRATIONS_TABLE))
    ).fetchall()
    return {int(v): _Applied(int(v), str(n), str(c), dict(r or {})) for v, n, c, r in rows}


def _check(schema: str, files: Sequence[PlatformMigration], applied: dict[int, _Applied],
           roles: dict[str, str]) -> None:
    """Refuse to go on when what is applied disagrees with the files or the roles (see :func:`migrate`)."""
    by_version = {m.version: m for m in files}
    for version, row in applied.items():
        m = by_version.get(version)
        if m is None:
            raise PlatformSchemaError(
                f"platform schema {schema!r} has migration {version:04d}_{row.name} applied, but there is no "
                "such file: was the schema migrated by a newer release? Deploy that release's migrations"
            )
        if row.checksum != m.checksum or row.name != m.name:
            raise ChecksumMismatchError(schema, m.file, row.checksum, m.checksum)
        if row.roles and row.roles != roles:
            raise PlatformSchemaError(
                f"platform schema {schema!r} was migrated for service role {row.roles.get('service_role')!r} "
                f"and app role {row.roles.get('app_role')!r} ({m.file}); this run names "
                f"{roles['service_role']!r} and {roles['app_role']!r}. Use the same role names (the "
                "policies name them), or migrate another schema"
            )
    newest = max(applied, default=0)
    late = [m for m in files if m.version < newest and m.version not in applied]
    if late:
        raise PlatformSchemaError(
            f"platform schema {schema!r}: migration file {late[0].file} is numbered below {newest:04d}, the "
            "newest applied migration; number a new migration after the newest one"
        )


def _role_exists(conn: Connection[Any], role: str) -> bool:
    return conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone() is not None


def _ensure_role(conn: Connection[Any], role: str) -> bool:
    """Create ``role`` NOLOGIN unless it exists (left as it is); True when this call created it."""
    if _role_exists(conn, role):
        return False
    try:
        with conn.transaction():  # savepoint: another database of the cluster may create it meanwhile
            conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(role)))
    except (errors.DuplicateObject, errors.UniqueViolation):
        log.info("role %r was created concurrently by another session; using it", role)
        return False
    log.info("created role %r (NOLOGIN)", role)
    return True
