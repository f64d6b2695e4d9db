"""Configuration of ``mysql_to_postgres``: which MySQL tables, into which PostgreSQL schema, by which rules.

One frozen :class:`MysqlToPostgresConfig`, built from a trigger form's Params (:meth:`from_params`) and
stored with the run. The build, sync, cutover and rollback DAGs share its Param names.
"""

from __future__ import annotations

import fnmatch
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cutover.connections import CONTROL, MYSQL_READONLY, MYSQL_REVERSE, POSTGRES_TARGET, PROJECT_ROOT

PIPELINE = "mysql_to_postgres"
SYNC_PIPELINE = "mysql_to_postgres_sync"
DEFAULT_OVERRIDES = "mappings/mysql_to_postgres.yaml"
SYNC_MODES = ("auto", "binlog", "watermark")
#: what a zero or partial date (``0000-00-00``, ``2020-00-15``, ``2020-05-00``, year 0) becomes
ZERO_DATE_RULES = ("null", "dead_letter")
#: what the empty "invalid" ENUM value (index 0, written by a non-strict server) becomes
ENUM_EMPTY_RULES = ("dead_letter", "null", "keep")


@dataclass(frozen=True)
class MysqlToPostgresConfig:
    """A MySQL → PostgreSQL copy.

    * ``source_conn_id`` / ``source_database`` — the MySQL connection (a **read-only** user: proven at
      the start of every run, see :mod:`cutover.mysql_to_postgres.readonly`) and the database read;
    * ``allow_writable_source`` — run even when the source user could write (off by default);
    * ``target_conn_id`` / ``target_schema`` — where the tables go (created if missing);
    * ``tables`` / ``table_pattern`` — which tables: the list (exact names), else the shell-style
      pattern (``fnmatch``, case-sensitive; ``*`` = every base table);
    * ``overrides`` — a YAML file of per-column type / rule overrides (path from the project root or
      absolute; the default file may be missing: no overrides);
    * ``zero_date`` / ``enum_empty`` — the rules for MySQL's invalid temporal and ENUM values (see
      :mod:`cutover.mysql_to_postgres.typemap`), per column overridable;
    * ``chunk_rows`` — rows per committed chunk: the bound on memory (one chunk in flight while the
      next is read: at most two chunks' text per copying task);
    * ``parallelism`` — tables copied at once in one run (each holds one source connection);
    * ``sync_mode`` — ``binlog`` (change data capture from the binary log: inserts, updates,
      deletes), ``watermark`` (rows whose ``watermark_column`` moved; **deletes are not seen**),
      ``auto`` (binlog when the server logs ROW images, else watermark);
    * ``gx_gate`` — the Great Expectations gate per table (data docs);
    * ``reverse_conn_id`` — the MySQL connection reverse replication writes through after a table's
      switch (PostgreSQL → MySQL, :mod:`cutover.mysql_to_postgres.reverse`): a **writer** on the source's
      server (the source connection stays read-only); ``reverse_state_database`` — the MySQL database of
      its position table (created if missing; not the source database, so no plan ever picks it up);
    * ``forward_stray_writes`` — writes that still reach MySQL after the switch (stray writes, always
      recorded) are also applied to PostgreSQL (off by default: recorded and logged only).
    """

    source_conn_id: str = MYSQL_READONLY
    source_database: str = "cutover_m2p"
    target_conn_id: str = POSTGRES_TARGET
    target_schema: str = "mysql_mirror"
    control_conn_id: str = CONTROL
    tables: tuple[str, ...] = ()
    table_pattern: str = "*"
    overrides: str = DEFAULT_OVERRIDES
    allow_writable_source: bool = False
    zero_date: str = "null"
    enum_empty: str = "dead_letter"
    chunk_rows: int = 10_000
    parallelism: int = 4
    sync_mode: str = "auto"
    watermark_column: str = "updated_at"
    gx_gate: bool = True
    reverse_conn_id: str = MYSQL_REVERSE
    reverse_state_database: str = "cutover_state"
    forward_stray_writes: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.chunk_rows < 1:
            raise ValueError(f"chunk_rows must be positive, got {self.chunk_rows}")
        if self.parallelism < 1:
            raise ValueError(f"parallelism must be at least 1, got {self.parallelism}")
        for name, value, allowed in (("sync_mode", self.sync_mode, SYNC_MODES),
                                     ("zero_date", self.zero_date, ZERO_DATE_RULES),
                                     ("enum_empty", self.enum_empty, ENUM_EMPTY_RULES)):
            if value not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
        if not self.source_database or not self.target_schema:
            raise ValueError("source_database and target_schema must not be empty")
        if not self.reverse_state_database or self.reverse_state_database == self.source_database:
            raise ValueError("reverse_state_database must be set and must not be the source database "
                             f"({self.source_database!r}): a plan of the source would pick its table up")

    @property
    def scope(self) -> str:
        """The scope of unit keys, routes and name maps: ``<source database>><target schema>``
        (``%`` and ``:`` percent-escaped: a unit key's scope holds no ``:``)."""
        esc = lambda s: s.replace("%", "%25").replace(":", "%3A")  # noqa: E731
        return f"{esc(self.source_database)}>{esc(self.target_schema)}"

    def selects(self, table: str) -> bool:
        """Whether ``table`` is one of the configured tables (list, else pattern)."""
        if self.tables:
            return table in self.tables
        return fnmatch.fnmatchcase(table, self.table_pattern or "*")

    def overrides_path(self) -> Path:
        """The override file as an absolute path."""
        p = Path(self.overrides)
        return p if p.is_absolute() else PROJECT_ROOT / p

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able form (stored with the run)."""
        d = asdict(self)
        d["tables"] = list(self.tables)
        return d

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> MysqlToPostgresConfig:
        """Build from a trigger form's Params (unknown keys kept in ``extra``; ``units`` / ``dry_run`` are the life cycle's)."""
        known = set(cls.__dataclass_fields__) - {"extra"}
        kw: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        for k, v in (params or {}).items():
            if k in known:
                if v is None:
                    continue
                if k == "tables":
                    v = tuple(str(x) for x in v if str(x).strip())
                elif k in ("chunk_rows", "parallelism"):
                    v = int(v)
                elif k in ("allow_writable_source", "gx_gate", "forward_stray_writes"):
                    v = bool(v)
                else:
                    v = str(v)
                kw[k] = v
            else:
                extra[k] = v
        return cls(**kw, extra=extra)
