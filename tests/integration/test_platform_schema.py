"""The platform schema on the real PostgreSQL: versioned migrations applied once, refused when tampered
with, serialized when concurrent; row-level security proven by acting as each role (SET ROLE)."""

from __future__ import annotations

import hashlib
import shutil
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from cutover import connections
from cutover.identifiers import IdentifierError, with_params
from cutover.platform.config import DEFAULT_APP_ROLE, DEFAULT_SERVICE_ROLE, PLATFORM_TABLES
from cutover.platform.schema import (
    MIGRATIONS_DIR,
    ChecksumMismatchError,
    MigrationFailedError,
    PlatformSchemaError,
    apply_platform_schema,
    load_migrations,
    migrate,
    set_request_tenant,
)
from cutover.samples.hostile import HOSTILE_NAMES

pytestmark = pytest.mark.integration

SHIPPED = [m.version for m in load_migrations()]


def _drop_schema(name: str) -> None:
    with connections.pg_connect(autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


@pytest.fixture
def new_schema() -> Iterator[Callable[[str], str]]:
    """Hands out schema names unique to the test (a given prefix, or a hostile name as it is); drops them after."""
    made: list[str] = []

    def make(base: str = "plat_t") -> str:
        name = base if base in HOSTILE_NAMES else f"{base}_{uuid.uuid4().hex[:10]}"
        _drop_schema(name)
        made.append(name)
        return name

    yield make
    for name in made:
        _drop_schema(name)


@pytest.fixture
def schema(new_schema: Callable[[str], str]) -> str:
    """A unique schema, not yet created."""
    return new_schema("plat_t")


@pytest.fixture
def migrations_copy(tmp_path: Path) -> Path:
    """A copy of the shipped migrations that a test may change."""
    folder = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, folder)
    return folder


def _q(schema: str, table: str) -> sql.Composed:
    return sql.SQL("{}").format(sql.Identifier(schema, table))


def _exec(conn: Any, query: sql.Composable, params: tuple | None = None) -> Any:
    return conn.execute(with_params(query), params) if params is not None else conn.execute(query)


def _count(conn: Any, schema: str, table: str) -> int:
    return int(_exec(conn, sql.SQL("SELECT count(*) FROM {}").format(_q(schema, table))).fetchone()[0])


def _tenants(conn: Any, schema: str, table: str) -> set[str]:
    rows = _exec(conn, sql.SQL("SELECT DISTINCT tenant_id FROM {}").format(_q(schema, table))).fetchall()
    return {r[0] for r in rows}


@contextmanager
def acting_as(role: str, tenant: str | None = None, *, commit: bool = False) -> Iterator[Any]:
    """A connection acting as ``role`` (SET LOCAL ROLE) for ``tenant``, in a transaction rolled back at the end
    (committed with ``commit``)."""
    with connections.pg_connect(autocommit=True) as conn:
        with conn.transaction(force_rollback=not commit):
            conn.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(role)))
            if tenant is not None:
                set_request_tenant(conn, tenant)
            yield conn


def _seed(schema: str, tenant: str, n: int = 2) -> dict[str, int]:
    """As the superuser (RLS does not apply): per tenant, a row chain through all six tables, ``n`` times."""
    ids: dict[str, int] = {}
    with connections.pg_connect() as conn:
        for i in range(n):
            t = _exec(conn, sql.SQL("INSERT INTO {} (tenant_id, name, channel, body, variables) "
                                    "VALUES (%s, %s, 'sms', 'Hi #{{name}}', '{{name}}') RETURNING id")
                      .format(_q(schema, "message_templates")), (tenant, f"welcome {i}")).fetchone()[0]
            _exec(conn, sql.SQL("INSERT INTO {} (tenant_id, template_id, variable_name, source_table, source_column) "
                                "VALUES (%s, %s, 'name', 'customers', 'first_name')")
                  .format(_q(schema, "individual_variable_mappings")), (tenant, t))
            w = _exec(conn, sql.SQL("INSERT INTO {} (tenant_id, name, template_id) VALUES (%s, %s, %s) RETURNING id")
                      .format(_q(schema, "workflows")), (tenant, f"onboarding {i}", t)).fetchone()[0]
            r = _exec(conn, sql.SQL("INSERT INTO {} (tenant_id, workflow_id, template_id, status) "
                                    "VALUES (%s, %s, %s, 'succeeded') RETURNING id")
                      .format(_q(schema, "workflow_runs")), (tenant, w, t)).fetchone()[0]
            _exec(conn, sql.SQL("INSERT INTO {} (tenant_id, run_id, template_id, channel, recipient, status) "
                                "VALUES (%s, %s, %s, 'sms', %s, 'delivered')")
                  .format(_q(schema, "message_logs")), (tenant, r, t, f"+8210000000{i}"))
            _exec(conn, sql.SQL("INSERT INTO {} (tenant_id, day, runs_started, messages_sent) "
                                "VALUES (%s, date '2026-01-01' + %s::integer, 1, 1)")
                  .format(_q(schema, "daily_statistics")), (tenant, i))
            ids.update(template=t, workflow=w, run=r)
    return ids


@pytest.fixture
def two_tenants(schema: str) -> dict[str, dict[str, int]]:
    """The schema migrated with the default roles, and rows of tenants 'acme' (2 per table) and 'globex' (3)."""
    apply_platform_schema(schema=schema)
    return {"acme": _seed(schema, "acme", 2), "globex": _seed(schema, "globex", 3)}


# --- migrations: applied once, in order, checked ------------------------------------------------------


def test_shipped_migrations_load_in_order_with_sha256() -> None:
    files = load_migrations()
    assert [m.file for m in files] == sorted(p.name for p in MIGRATIONS_DIR.glob("*.sql"))
    assert [m.version for m in files] == sorted({m.version for m in files}) and files[0].version == 1
    for m in files:
        assert m.checksum == hashlib.sha256(m.path.read_bytes()).hexdigest()


@pytest.mark.parametrize("name", ["1_x.sql", "0003-x.sql", "0003_X.sql"])
def test_misnamed_or_duplicate_files_are_refused(migrations_copy: Path, name: str) -> None:
    (migrations_copy / name).write_text("SELECT 1;\n")
    with pytest.raises(PlatformSchemaError, match=name.replace(".", r"\.")):
        load_migrations(migrations_copy)
    (migrations_copy / name).unlink()
    (migrations_copy / "0002_again.sql").write_text("SELECT 1;\n")
    with pytest.raises(PlatformSchemaError, match="share version 0002"):
        load_migrations(migrations_copy)


def test_unknown_variable_is_refused(migrations_copy: Path) -> None:
    (migrations_copy / "0003_grant.sql").write_text('GRANT USAGE ON SCHEMA :"schema" TO :"reader";\n'
                                                    "SELECT 'a'::\"char\";\n")
    with pytest.raises(PlatformSchemaError, match=r"0003_grant\.sql: unknown variable\(s\) reader"):
        load_migrations(migrations_copy)


def test_migrations_apply_in_order_then_rerun_is_a_noop(schema: str) -> None:
    first = apply_platform_schema(schema=schema)
    assert [m["version"] for m in first["applied"]] == SHIPPED and first["skipped"] == []
    assert set(first["roles_created"]) | set(first["roles_existing"]) == {DEFAULT_SERVICE_ROLE, DEFAULT_APP_ROLE}

    with connections.pg_connect() as conn:
        rls = conn.execute(
            """SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity FROM pg_class c
               JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relkind = 'r'""",
            (schema,)).fetchall()
        assert {r[0] for r in rls} == {*PLATFORM_TABLES, "schema_migrations"}
        assert all(r[1] and r[2] for r in rls if r[0] in PLATFORM_TABLES), rls
        stored = _exec(conn, sql.SQL("SELECT version, name, checksum, roles FROM {} ORDER BY version")
                       .format(_q(schema, "schema_migrations"))).fetchall()
        assert [(v, n, c) for v, n, c, _ in stored] == [(m.version, m.name, m.checksum) for m in load_migrations()]
        assert stored[0][3] == {"service_role": DEFAULT_SERVICE_ROLE, "app_role": DEFAULT_APP_ROLE}
        roles = dict(conn.execute("SELECT rolname, rolcanlogin FROM pg_roles WHERE rolname IN (%s, %s)",
                                  (DEFAULT_SERVICE_ROLE, DEFAULT_APP_ROLE)).fetchall())
        assert set(roles) == {DEFAULT_SERVICE_ROLE, DEFAULT_APP_ROLE}
        assert _count(conn, schema, "workflows") == 0

    again = apply_platform_schema(schema=schema)
    assert again["applied"] == [] and [m["version"] for m in again["skipped"]] == SHIPPED
    assert again["roles_created"] == []


def test_dry_run_writes_nothing(schema: str) -> None:
    dry = apply_platform_schema(schema=schema, dry_run=True)
    assert dry["dry_run"] and dry["applied"] == [] and [m["version"] for m in dry["pending"]] == SHIPPED
    with connections.pg_connect() as conn:
        assert conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)).fetchone() is None
    apply_platform_schema(schema=schema)
    dry = apply_platform_schema(schema=schema, dry_run=True)
    assert dry["pending"] == [] and [m["version"] for m in dry["skipped"]] == SHIPPED


def test_changed_applied_file_is_refused_naming_it(schema: str, migrations_copy: Path) -> None:
    apply_platform_schema(schema=schema, migrations_dir=migrations_copy)
    path = migrations_copy / "0001_platform_tables.sql"
    path.write_text(path.read_text().replace("body        text NOT NULL", "body        varchar(2000) NOT NULL"))
    for dry_run in (True, False):
        with pytest.raises(ChecksumMismatchError, match=r"0001_platform_tables\.sql.*checksum mismatch") as info:
            apply_platform_schema(schema=schema, dry_run=dry_run, migrations_dir=migrations_copy)
        assert info.value.file == "0001_platform_tables.sql" and info.value.stored != info.value.current


def test_new_migration_applies_alone_and_a_late_number_is_refused(schema: str, migrations_copy: Path) -> None:
    apply_platform_schema(schema=schema, migrations_dir=migrations_copy)
    (migrations_copy / "0010_template_locale.sql").write_text(
        "ALTER TABLE message_templates ADD COLUMN locale text NOT NULL DEFAULT 'ko-KR';\n")
    result = apply_platform_schema(schema=schema, migrations_dir=migrations_copy)
    assert [m["file"] for m in result["applied"]] == ["0010_template_locale.sql"]
    with connections.pg_connect() as conn:
        assert conn.execute("SELECT 1 FROM information_schema.columns WHERE table_schema = %s AND "
                            "table_name = 'message_templates' AND column_name = 'locale'", (schema,)).fetchone()

    (migrations_copy / "0005_too_late.sql").write_text("SELECT 1;\n")
    with pytest.raises(PlatformSchemaError, match=r"0005_too_late\.sql is numbered below 0010"):
        apply_platform_schema(schema=schema, migrations_dir=migrations_copy)
    (migrations_copy / "0005_too_late.sql").unlink()
    (migrations_copy / "0010_template_locale.sql").unlink()
    with pytest.raises(PlatformSchemaError, match=r"0010_template_locale applied, but there is no such file"):
        apply_platform_schema(schema=schema, migrations_dir=migrations_copy)


def test_failing_migration_is_rolled_back_alone(schema: str, migrations_copy: Path) -> None:
    (migrations_copy / "0003_broken.sql").write_text(
        "CREATE TABLE half_done (id int);\nALTER TABLE no_such_table ADD COLUMN x int;\n")
    with pytest.raises(MigrationFailedError, match=r"0003_broken\.sql failed and was rolled back") as info:
        apply_platform_schema(schema=schema, migrations_dir=migrations_copy)
    assert not info.value.transient
    with connections.pg_connect() as conn:
        versions = [r[0] for r in _exec(conn, sql.SQL("SELECT version FROM {} ORDER BY 1")
                                        .format(_q(schema, "schema_migrations"))).fetchall()]
        assert versions == SHIPPED
        assert conn.execute("SELECT to_regclass(%s)", (f'"{schema}".half_done',)).fetchone() == (None,)


def test_concurrent_runs_apply_each_migration_once(schema: str) -> None:
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda _: apply_platform_schema(schema=schema), range(4)))
    applied = sorted(m["version"] for r in results for m in r["applied"])
    assert applied == SHIPPED  # each exactly once, across the four runs
    assert all(sorted(m["version"] for m in r["applied"] + r["skipped"]) == SHIPPED for r in results)


def test_migrate_needs_an_idle_connection(schema: str) -> None:
    with connections.pg_connect() as conn:
        conn.execute("SELECT 1")  # opens a transaction
        with pytest.raises(PlatformSchemaError, match="no open transaction"):
            migrate(conn, schema=schema)


@pytest.mark.parametrize(("kwargs", "error"), [
    ({"schema": ""}, IdentifierError),
    ({"schema": "a\x00b"}, IdentifierError),
    ({"schema": "x" * 64}, IdentifierError),
    ({"app_role": "new\nline"}, IdentifierError),
    ({"service_role": "same", "app_role": "same"}, ValueError),
])
def test_bad_names_are_refused_before_connecting(kwargs: dict[str, str], error: type[Exception]) -> None:
    with pytest.raises(error):
        apply_platform_schema(conn_id="no_such_connection", **kwargs)


def test_custom_roles_created_nologin_existing_kept_and_names_fixed(new_schema: Callable[[str], str]) -> None:
    suffix = uuid.uuid4().hex[:8]
    service, app = f"plat svc {suffix}", f'plat "app" {suffix}'
    schema, other = new_schema("plat_roles"), new_schema("plat_roles2")
    try:
        with connections.pg_connect(autocommit=True) as conn:  # the service role exists already, with LOGIN
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN CONNECTION LIMIT 3").format(sql.Identifier(service)))
        result = apply_platform_schema(schema=schema, service_role=service, app_role=app)
        assert result["roles_created"] == [app] and result["roles_existing"] == [service]
        with connections.pg_connect() as conn:
            roles = {r[0]: r[1:] for r in conn.execute(
                "SELECT rolname, rolcanlogin, rolconnlimit FROM pg_roles WHERE rolname IN (%s, %s)",
                (service, app)).fetchall()}
            assert roles == {service: (True, 3), app: (False, -1)}
        _seed(schema, "acme", 1)
        _seed(schema, "globex", 1)
        with acting_as(app, "acme") as conn:
            assert _tenants(conn, schema, "workflows") == {"acme"}
        with acting_as(service) as conn:
            assert _tenants(conn, schema, "workflows") == {"acme", "globex"}

        with pytest.raises(PlatformSchemaError, match="was migrated for service role"):
            apply_platform_schema(schema=schema)  # the default names: the policies name the custom ones
        assert apply_platform_schema(schema=other, service_role=service, app_role=app)["roles_created"] == []
    finally:
        for name in (schema, other):
            _drop_schema(name)
        with connections.pg_connect(autocommit=True) as conn:
            for role in (service, app):
                conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


@pytest.mark.parametrize("name", HOSTILE_NAMES, ids=lambda n: repr(n)[:24])
def test_hostile_schema_name_works(new_schema: Callable[[str], str], name: str) -> None:
    schema = new_schema(name)
    assert [m["version"] for m in apply_platform_schema(schema=schema)["applied"]] == SHIPPED
    assert apply_platform_schema(schema=schema)["applied"] == []
    _seed(schema, "acme", 1)
    _seed(schema, "globex", 1)
    with acting_as(DEFAULT_APP_ROLE, "acme") as conn:
        assert all(_tenants(conn, schema, t) == {"acme"} for t in PLATFORM_TABLES)
        _exec(conn, sql.SQL("INSERT INTO {} (tenant_id, name, channel, body) VALUES ('acme', 'x', 'email', 'b')")
              .format(_q(schema, "message_templates")))
    with connections.pg_connect() as conn:
        assert conn.execute("SELECT count(*) FROM pg_policies WHERE schemaname = %s", (schema,)).fetchone()[0] == 12


# --- row-level security: what each role sees and writes ----------------------------------------------


def test_app_role_sees_only_its_tenant_in_every_table(schema: str, two_tenants: dict) -> None:
    for tenant, rows in (("acme", 2), ("globex", 3)):
        with acting_as(DEFAULT_APP_ROLE, tenant) as conn:
            for table in PLATFORM_TABLES:
                assert _tenants(conn, schema, table) == {tenant}, table
                assert _count(conn, schema, table) == rows, table
    with acting_as(DEFAULT_APP_ROLE, "initech") as conn:  # a tenant with no rows
        assert all(_count(conn, schema, t) == 0 for t in PLATFORM_TABLES)


def test_app_role_without_a_tenant_sees_and_writes_nothing(schema: str, two_tenants: dict) -> None:
    for claims in (None, "", '{"role": "authenticated"}', '{"tenant_id": null}'):
        with acting_as(DEFAULT_APP_ROLE) as conn:
            if claims is not None:
                conn.execute("SELECT set_config('request.jwt.claims', %s, true)", (claims,))
            assert all(_count(conn, schema, t) == 0 for t in PLATFORM_TABLES), claims
            updated = _exec(conn, sql.SQL("UPDATE {} SET body = 'x'").format(_q(schema, "message_templates")))
            assert updated.rowcount == 0
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="row-level security"):
                _exec(conn, sql.SQL("INSERT INTO {} (tenant_id, name, channel, body) VALUES ('acme', 'n', 'sms', 'b')")
                      .format(_q(schema, "message_templates")))
    with acting_as(DEFAULT_APP_ROLE) as conn:  # claims that are not JSON: an error, never rows
        conn.execute("SELECT set_config('request.jwt.claims', 'acme', true)")
        with pytest.raises(psycopg.errors.InvalidTextRepresentation):
            _count(conn, schema, "workflows")


def test_app_role_writes_its_tenant_only(schema: str, two_tenants: dict) -> None:
    acme, globex = two_tenants["acme"], two_tenants["globex"]
    with acting_as(DEFAULT_APP_ROLE, "acme", commit=True) as conn:  # its own rows: insert, update, delete
        t = _exec(conn, sql.SQL("INSERT INTO {} (tenant_id, name, channel, body) VALUES ('acme', 'new', 'kakao', 'b') "
                                "RETURNING id").format(_q(schema, "message_templates"))).fetchone()[0]
        w = _exec(conn, sql.SQL("INSERT INTO {} (tenant_id, name, template_id) VALUES ('acme', 'new', %s) RETURNING id")
                  .format(_q(schema, "workflows")), (t,)).fetchone()[0]
        r = _exec(conn, sql.SQL("INSERT INTO {} (tenant_id, workflow_id) VALUES ('acme', %s) RETURNING id")
                  .format(_q(schema, "workflow_runs")), (w,)).fetchone()[0]
        _exec(conn, sql.SQL("INSERT INTO {} (tenant_id, run_id, channel, recipient) VALUES ('acme', %s, 'email', 'a@b')")
              .format(_q(schema, "message_logs")), (r,))
        assert _exec(conn, sql.SQL("UPDATE {} SET status = 'running' WHERE id = %s")
                     .format(_q(schema, "workflow_runs")), (r,)).rowcount == 1
        assert _exec(conn, sql.SQL("DELETE FROM {} WHERE id = %s").format(_q(schema, "individual_variable_mappings")),
                     (0,)).rowcount == 0
        assert _exec(conn, sql.SQL("DELETE FROM {} WHERE template_id = %s")
                     .format(_q(schema, "individual_variable_mappings")), (acme["template"],)).rowcount == 1

    insert_other = {
        "message_templates": ("(tenant_id, name, channel, body) VALUES ('globex', 'evil', 'sms', 'b')", ()),
        "individual_variable_mappings": ("(tenant_id, template_id, variable_name, source_kind, default_value) "
                                         "VALUES ('globex', %s, 'v', 'constant', 'x')", (globex["template"],)),
        "workflows": ("(tenant_id, name) VALUES ('globex', 'evil')", ()),
        "workflow_runs": ("(tenant_id, workflow_id) VALUES ('globex', %s)", (globex["workflow"],)),
        "message_logs": ("(tenant_id, channel, recipient) VALUES ('globex', 'sms', 'x')", ()),
    }
    for table, (values, params) in insert_other.items():
        with acting_as(DEFAULT_APP_ROLE, "acme") as conn:
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="violates row-level security policy"):
                _exec(conn, sql.SQL("INSERT INTO {} " + values).format(_q(schema, table)), params)
        with acting_as(DEFAULT_APP_ROLE, "acme") as conn:  # moving its own row to another tenant: WITH CHECK
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="violates row-level security policy"):
                _exec(conn, sql.SQL("UPDATE {} SET tenant_id = 'globex'").format(_q(schema, table)))
        with acting_as(DEFAULT_APP_ROLE, "acme") as conn:  # another tenant's rows are out of reach
            assert _exec(conn, sql.SQL("UPDATE {} SET updated_at = now() WHERE tenant_id = 'globex'")
                         .format(_q(schema, table))).rowcount == 0
    for table in ("message_templates", "workflows"):
        with acting_as(DEFAULT_APP_ROLE, "acme") as conn:
            assert _exec(conn, sql.SQL("DELETE FROM {} WHERE tenant_id = 'globex'").format(_q(schema, table))).rowcount == 0

    with acting_as(DEFAULT_APP_ROLE, "acme") as conn:  # nor can its rows point at another tenant's rows
        with pytest.raises(psycopg.errors.ForeignKeyViolation):
            _exec(conn, sql.SQL("INSERT INTO {} (tenant_id, workflow_id) VALUES ('acme', %s)")
                  .format(_q(schema, "workflow_runs")), (globex["workflow"],))
    for table in ("workflow_runs", "message_logs"):  # history: no DELETE for the application
        with acting_as(DEFAULT_APP_ROLE, "acme") as conn:
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied"):
                _exec(conn, sql.SQL("DELETE FROM {} WHERE id = %s").format(_q(schema, table)), (acme["run"],))

    with connections.pg_connect() as conn:  # as the superuser: globex untouched
        assert _count(conn, schema, "message_templates") == 2 + 3 + 1
        assert _count(conn, schema, "individual_variable_mappings") == 1 + 3
        assert _count(conn, schema, "message_logs") == 2 + 3 + 1
        assert _exec(conn, sql.SQL("SELECT count(*) FROM {} WHERE tenant_id = 'globex' AND name = 'evil'")
                     .format(_q(schema, "workflows"))).fetchone()[0] == 0


def test_app_role_cannot_write_daily_statistics(schema: str, two_tenants: dict) -> None:
    statements = [
        sql.SQL("INSERT INTO {} (tenant_id, day) VALUES ('acme', date '2026-02-01')"),
        sql.SQL("UPDATE {} SET messages_sent = 99 WHERE tenant_id = 'acme'"),
        sql.SQL("DELETE FROM {} WHERE tenant_id = 'acme'"),
    ]
    for statement in statements:
        with acting_as(DEFAULT_APP_ROLE, "acme") as conn:
            assert _count(conn, schema, "daily_statistics") == 2
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied"):
                _exec(conn, statement.format(_q(schema, "daily_statistics")))


def test_app_role_cannot_read_the_migration_history(schema: str, two_tenants: dict) -> None:
    with acting_as(DEFAULT_APP_ROLE, "acme") as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied"):
            _count(conn, schema, "schema_migrations")


def test_service_role_sees_and_writes_every_row(schema: str, two_tenants: dict) -> None:
    globex = two_tenants["globex"]
    with acting_as(DEFAULT_SERVICE_ROLE) as conn:  # no tenant needed
        for table in PLATFORM_TABLES:
            assert _tenants(conn, schema, table) == {"acme", "globex"}, table
            assert _count(conn, schema, table) == 5, table
        _exec(conn, sql.SQL("INSERT INTO {} (tenant_id, name) VALUES ('initech', 'w')").format(_q(schema, "workflows")))
        assert _exec(conn, sql.SQL("UPDATE {} SET status = 'failed' WHERE tenant_id = 'globex'")
                     .format(_q(schema, "message_logs"))).rowcount == 3
        _exec(conn, sql.SQL("""INSERT INTO {} (tenant_id, day, messages_sent) VALUES ('acme', date '2026-01-01', 7)
                               ON CONFLICT (tenant_id, day) DO UPDATE SET messages_sent = excluded.messages_sent""")
              .format(_q(schema, "daily_statistics")))
        assert _exec(conn, sql.SQL("SELECT messages_sent FROM {} WHERE tenant_id = 'acme' AND day = '2026-01-01'")
                     .format(_q(schema, "daily_statistics"))).fetchone()[0] == 7
        assert _exec(conn, sql.SQL("DELETE FROM {} WHERE id = %s").format(_q(schema, "message_logs")),
                     (0,)).rowcount == 0
        _exec(conn, sql.SQL("DELETE FROM {} WHERE tenant_id = 'globex'").format(_q(schema, "message_logs")))
        _exec(conn, sql.SQL("DELETE FROM {} WHERE id = %s").format(_q(schema, "workflow_runs")), (globex["run"],))
        assert _count(conn, schema, "workflows") == 6
    with acting_as(DEFAULT_SERVICE_ROLE, "acme") as conn:  # a tenant in the claims narrows nothing for it
        assert _tenants(conn, schema, "message_logs") == {"acme", "globex"}


def test_updated_at_is_kept_current(schema: str, two_tenants: dict) -> None:
    with connections.pg_connect() as conn:
        _exec(conn, sql.SQL("UPDATE {} SET updated_at = created_at - interval '1 day'").format(_q(schema, "workflows")))
    with acting_as(DEFAULT_APP_ROLE, "acme") as conn:
        _exec(conn, sql.SQL("UPDATE {} SET description = 'edited'").format(_q(schema, "workflows")))
        stale = _exec(conn, sql.SQL("SELECT count(*) FROM {} WHERE updated_at < created_at")
                      .format(_q(schema, "workflows"))).fetchone()[0]
        assert stale == 0
