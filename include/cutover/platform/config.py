"""What a platform-schema run is told: connection, schema, role names, dry run (light: no driver import).

The DAG file imports the defaults at parse time; the task builds a :class:`PlatformSchemaConfig`
from its Params. Names are checked here, before anything connects: each must be a valid PostgreSQL
identifier (1–63 UTF-8 bytes, no control character). They are always quoted where they reach SQL, so
any such name works, hostile ones included (:data:`cutover.samples.hostile.HOSTILE_NAMES`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

DEFAULT_CONN_ID = "postgres_target"
DEFAULT_SCHEMA = "platform"
DEFAULT_SERVICE_ROLE = "cutover_service"
DEFAULT_APP_ROLE = "cutover_app"

#: the setting the application role's tenant is read from (Supabase / PostgREST: the request's JWT
#: claims as JSON, set per transaction), and the claim that names the tenant
TENANT_SETTING = "request.jwt.claims"
TENANT_CLAIM = "tenant_id"

#: the tables the migrations create, every one with row-level security
PLATFORM_TABLES = (
    "message_templates",
    "individual_variable_mappings",
    "workflows",
    "workflow_runs",
    "message_logs",
    "daily_statistics",
)


@dataclass(frozen=True)
class PlatformSchemaConfig:
    """One platform-schema run: where (connection, schema), for which roles, and whether to write.

    Raises :class:`cutover.identifiers.IdentifierError` (a ``ValueError``) naming the field when a name
    cannot be a PostgreSQL identifier, and ``ValueError`` when the two roles are the same.
    """

    conn_id: str = DEFAULT_CONN_ID
    schema: str = DEFAULT_SCHEMA
    service_role: str = DEFAULT_SERVICE_ROLE
    app_role: str = DEFAULT_APP_ROLE
    dry_run: bool = False

    def __post_init__(self) -> None:
        from cutover.identifiers import IdentifierError, validate_identifier

        if not isinstance(self.conn_id, str) or not self.conn_id:
            raise ValueError(f"conn_id must be a connection id, got {self.conn_id!r}")
        for field in ("schema", "service_role", "app_role"):
            try:
                validate_identifier(getattr(self, field), dialect="postgres")
            except IdentifierError as exc:
                raise IdentifierError(f"platform schema {field}: {exc}") from exc
        if self.service_role == self.app_role:
            raise ValueError(
                f"service_role and app_role must differ (both {self.app_role!r}): the application role's "
                "policies would be widened by the service role's"
            )
        if not isinstance(self.dry_run, bool):
            raise ValueError(f"dry_run must be true or false, got {self.dry_run!r}")

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> PlatformSchemaConfig:
        """The config a DAG run's Params describe (missing keys take the defaults)."""
        return cls(
            conn_id=params.get("conn_id") or DEFAULT_CONN_ID,
            schema=params.get("schema") or DEFAULT_SCHEMA,
            service_role=params.get("service_role") or DEFAULT_SERVICE_ROLE,
            app_role=params.get("app_role") or DEFAULT_APP_ROLE,
            dry_run=bool(params.get("dry_run", False)),
        )
