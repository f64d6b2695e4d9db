"""Configuration of ``tenant_split``: where the shared tables are, where each tenant's database goes, how to copy.

One frozen :class:`TenantSplitConfig`, built from a trigger form's Params (:meth:`from_params`) and
stored with the run. The build, sync, cutover and rollback DAGs share its Param names.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cutover.connections import CONTROL, MYSQL_SOURCE, MYSQL_TARGET, PROJECT_ROOT

PIPELINE = "tenant_split"
SYNC_PIPELINE = "tenant_split_sync"
COPY_MODES = ("auto", "server", "client")
SHARED_MODES = ("copy", "keep")
BINLOG_MODES = ("auto", "off")
#: how the cutover's write pause holds the tenant's writes (see :mod:`cutover.tenant_split.cutover`)
PAUSE_LOCKS = ("none", "rows")
#: MySQL's limit on database (and table) names, in characters
MYSQL_MAX_NAME = 64
DEFAULT_MAPPING = "mappings/tenant_split.yaml"


@dataclass(frozen=True)
class TenantSplitConfig:
    """A tenant split: the source database with shared tables, the target server, the mapping, the copy knobs.

    * ``mapping`` — the YAML mapping file (path relative to the project root, or absolute);
    * ``tenant_directory`` — a table whose tenant column lists every tenant (``""``: the distinct
      tenant values of every tenant-scoped table);
    * ``database_prefix`` — each tenant's database is ``<prefix><tenant>``, mapped to a safe name
      (lower-case ``[a-z0-9_]``, ≤ 64 characters, a hash suffix whenever the tenant id had to change),
      stored in ``cutover.name_map`` so it never changes once given;
    * ``shared`` — ``copy``: shared reference tables are copied whole into every tenant database;
      ``keep``: they stay where they are (not copied, listed in the diff report);
    * ``copy_mode`` — ``server``: ``INSERT … SELECT`` chunks inside one server (source and target
      connections must reach the same server); ``client``: rows fetched and written with multi-row
      INSERTs (any two servers); ``auto``: server when both connections reach the same server;
    * ``chunk_rows`` — rows per committed chunk (memory bound of the client copy);
    * ``parallelism`` — units copied at once in one run (advisory-lock slots), each holding one
      source connection: the bound on the load a run puts on the source;
    * ``binlog`` — ``auto``: record the binary-log position before the copy so ``tenant_split_sync``
      can catch up; a server without a ROW binlog is reported and the run falls back to copy + verify
      (writes paused at cutover); ``off``: that fallback by choice;
    * ``pause_locks`` — how the cutover's write pause holds the tenant's writes: ``none`` (default):
      the routing entry's ``paused`` state only (cooperative writers wait) and a drain of the source
      transactions in flight; the pause's length does not depend on the tenant's size. ``rows``: also
      ``SELECT … FOR UPDATE`` record locks on every row of the tenant (READ COMMITTED), which hold
      writers that ignore the route too, at a cost that grows with the tenant (≈ 1.4 s for 14k rows,
      4.3 s for 278k measured) and with lock waits / deadlocks (1213) for the tenant's own writers;
    * ``pause_drain_s`` — seconds the pause waits at most for source transactions that began before
      it to end (a longer one is warned about and left to the binlog fence).
    """

    source_conn_id: str = MYSQL_SOURCE
    source_database: str = "cutover_source"
    target_conn_id: str = MYSQL_TARGET
    control_conn_id: str = CONTROL
    mapping: str = DEFAULT_MAPPING
    tenant_directory: str = "tenants"
    database_prefix: str = "tenant_"
    state_database: str = "cutover_state"
    tenants: tuple[str, ...] = ()
    tables: tuple[str, ...] = ()
    shared: str = "copy"
    copy_mode: str = "auto"
    chunk_rows: int = 5_000
    parallelism: int = 4
    binlog: str = "auto"
    gx_gate: bool = True
    pause_locks: str = "none"
    pause_drain_s: float = 2.0
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.chunk_rows < 1:
            raise ValueError(f"chunk_rows must be positive, got {self.chunk_rows}")
        if self.parallelism < 1:
            raise ValueError(f"parallelism must be at least 1, got {self.parallelism}")
        for name, value, allowed in (("copy_mode", self.copy_mode, COPY_MODES), ("shared", self.shared, SHARED_MODES),
                                     ("binlog", self.binlog, BINLOG_MODES),
                                     ("pause_locks", self.pause_locks, PAUSE_LOCKS)):
            if value not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
        if len(self.database_prefix) > 20:
            raise ValueError(f"database_prefix is at most 20 characters, got {len(self.database_prefix)}")
        if not 0 <= self.pause_drain_s <= 60:
            raise ValueError(f"pause_drain_s must be between 0 and 60 seconds, got {self.pause_drain_s}")

    @property
    def scope(self) -> str:
        """The scope of unit keys and name maps: the source database."""
        return self.source_database

    @property
    def mapping_path(self) -> Path:
        """The mapping file (relative paths are from the project root)."""
        p = Path(self.mapping)
        return p if p.is_absolute() else PROJECT_ROOT / p

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> TenantSplitConfig:
        """The config from the trigger form's Params (a Param a DAG does not have keeps its default).

        ``tenants`` and ``tables`` are lists (empty = all). Raises ``ValueError`` for bad values.
        """
        known: dict[str, Any] = {
            "source_conn_id": str, "source_database": str, "target_conn_id": str, "control_conn_id": str,
            "mapping": str, "tenant_directory": str, "database_prefix": str, "state_database": str,
            "shared": str, "copy_mode": str, "chunk_rows": int, "parallelism": int, "binlog": str, "gx_gate": bool,
            "pause_locks": str, "pause_drain_s": float,
        }
        kw: dict[str, Any] = {k: conv(params[k]) for k, conv in known.items() if params.get(k) is not None}
        for k in ("tenants", "tables"):
            if params.get(k):
                kw[k] = tuple(str(v) for v in params[k])
        return cls(**kw)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able form (XCom, the control schema)."""
        d = asdict(self)
        d["tenants"], d["tables"] = list(self.tenants), list(self.tables)
        return d
