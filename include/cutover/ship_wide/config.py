"""Configuration and the value rules every stage of ``ship_wide_build`` shares.

The rules live here once, in Python *and* SQL, so the copy (which filters rows in Python) and the
verification (which recomputes the narrow side in SQL) can never disagree:

* **valid row** — ``value_format`` is one of ``Decimal``, ``Integer``, ``String``, ``Boolean``; the value
  column of that format (``double_v``, ``long_v``, ``str_v``, ``bool_v``) is set and the three others
  are NULL; the channel id is neither NULL nor empty; ``created_time`` is set. Anything else is a dead letter, with the reason.
* **compatible row** — a typed column only takes its own format (a ``double precision`` channel does
  not take an ``Integer`` row that arrives later: that row is a dead letter, the column is not
  rewritten); a ``text`` column takes every format.
* **value text** — ``coalesce(double_v::text, long_v::text, str_v, bool_v::text)``, which for a valid
  row is exactly the one value it carries, in PostgreSQL's own text form (shortest exact float form,
  ``t``/``f`` for booleans). Text columns hold this text.
* **duplicates** — when one ``(ship, channel, created_time)`` appears more than once, the valid row
  with the highest ingest sequence (``seq_column``, default ``id``) wins: the one written last.
  Invalid rows are removed first, so a bad later row never hides a good earlier one.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from cutover.connections import POSTGRES_SOURCE, POSTGRES_TARGET
from cutover.identifiers import PG_MAX_COLUMNS

PIPELINE = "ship_wide_build"
SYNC_PIPELINE = "ship_wide_sync"

FORMAT_COLUMN: dict[str, str] = {"Decimal": "double_v", "Integer": "long_v", "String": "str_v", "Boolean": "bool_v"}
FORMAT_TYPE: dict[str, str] = {"Decimal": "double precision", "Integer": "bigint", "String": "text", "Boolean": "boolean"}
VALUE_COLUMNS = ("double_v", "long_v", "str_v", "bool_v")
TIME_COLUMN = "created_time"
#: the wide table's key column takes one of PostgreSQL's 1600 columns
MAX_CHANNELS = PG_MAX_COLUMNS - 1
PIVOT_MODES = ("auto", "server", "client")
#: a ship planned with fewer narrow rows is "small": its wide table gets its primary key at once (inserting
#: a few thousand rows into an indexed table costs less than building the key after), the in-database
#: copy skips the arrival patterns (a probe and a statement per pattern set cost more than they save) and
#: finalize skips ANALYZE (autovacuum analyzes a new table after its first 50 rows)
SMALL_SHIP_ROWS = 100_000  # measured: under ~100,000 rows the general statement beats the fast path
MAX_COPY_CONNECTIONS = 16


#: what a build does with narrow rows outside every ship (``ship_id`` NULL): see ``ShipWideConfig.orphans``
ORPHAN_MODES = ("error", "report")


@dataclass(frozen=True)
class ShipWideConfig:
    """Where the narrow table is, where the wide tables go, and how to build them."""

    schema: str = "tenant"
    narrow_table: str = "tbl_data_timeseries"
    seq_column: str = "id"
    source_conn_id: str = POSTGRES_SOURCE
    target_conn_id: str = POSTGRES_TARGET
    text_columns: bool = False
    chunk_rows: int = 200_000
    max_channels: int = MAX_CHANNELS
    sync_overlap: int = 10_000
    #: where the history copy pivots: ``server`` (inside PostgreSQL, source and target must be one
    #: database), ``client`` (COPY out, pivot in pyarrow, COPY in) or ``auto`` (server when it can)
    pivot: str = "auto"
    #: chunks of one ship the in-database pivot works on at once (one connection each)
    copy_connections: int = 2
    #: ships of one run copied at the same time (applied at run time with advisory-lock slots)
    parallelism: int = 4
    #: narrow rows per mapped batch of ships: a run has ``max(parallelism, rows / batch_rows)`` batches
    #: (each four task instances: prepare, copy, finalize, verify), so 1,000 small ships are a few tasks
    batch_rows: int = 5_000_000
    #: narrow rows whose ``ship_id`` is NULL belong to no ship: ``error`` (the plan fails, naming their
    #: count and sample ids) or ``report`` (counted in the plan's log and the run's evidence, not copied)
    orphans: str = "error"
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.chunk_rows < 1:
            raise ValueError(f"chunk_rows must be positive, got {self.chunk_rows}")
        if not 1 <= self.copy_connections <= MAX_COPY_CONNECTIONS:
            raise ValueError(f"copy_connections must be between 1 and {MAX_COPY_CONNECTIONS}, got {self.copy_connections}")
        if self.pivot not in PIVOT_MODES:
            raise ValueError(f"pivot must be one of {', '.join(PIVOT_MODES)}, got {self.pivot!r}")
        if self.batch_rows < 1:
            raise ValueError(f"batch_rows must be positive, got {self.batch_rows}")
        if self.parallelism < 1:
            raise ValueError(f"parallelism must be at least 1, got {self.parallelism}")
        if not 1 <= self.max_channels <= MAX_CHANNELS:
            raise ValueError(f"max_channels must be between 1 and {MAX_CHANNELS}, got {self.max_channels}")
        if self.orphans not in ORPHAN_MODES:
            raise ValueError(f"orphans must be one of {', '.join(ORPHAN_MODES)}, got {self.orphans!r}")

    @property
    def scope(self) -> str:
        """The scope of this narrow table's unit keys (``<schema>.<narrow table>``)."""
        return f"{self.schema}.{self.narrow_table}"

    def unit(self, ship_id: str) -> str:
        """The unit key of a ship in the control schema (scoped by the narrow table it comes from)."""
        return f"{self.scope}:{ship_id}"

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> ShipWideConfig:
        """The config from a trigger form's Params (the build, sync, cutover and rollback DAGs share the
        names; a Param a DAG does not have keeps the default). Raises ``ValueError`` for bad values."""
        known = {"schema": str, "text_columns": bool, "chunk_rows": int, "pivot": str, "copy_connections": int,
                 "parallelism": int, "sync_overlap": int, "batch_rows": int, "orphans": str}
        return cls(**{k: conv(params[k]) for k, conv in known.items() if params.get(k) is not None})  # type: ignore[operator]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able form (for XCom and the control schema)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ShipWideConfig:
        """The inverse of :meth:`to_dict` (unknown keys are ignored)."""
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


def column_type(formats: set[str] | frozenset[str], *, text_columns: bool) -> str:
    """The PostgreSQL type of a channel's column: its format's type, or ``text`` when formats conflict."""
    known = {f for f in formats if f in FORMAT_TYPE}
    if text_columns or len(known) != 1:
        return "text"
    return FORMAT_TYPE[next(iter(known))]


def accepted_format(pg_type: str) -> str | None:
    """The one format a typed column accepts (None: a text column accepts every format)."""
    for fmt, typ in FORMAT_TYPE.items():
        if typ == pg_type and typ != "text":
            return fmt
    return None


VALID_SQL = (
    "(data_channel_id IS NOT NULL AND data_channel_id <> '' AND created_time IS NOT NULL AND CASE value_format"
    " WHEN 'Decimal' THEN double_v IS NOT NULL AND long_v IS NULL AND str_v IS NULL AND bool_v IS NULL"
    " WHEN 'Integer' THEN long_v IS NOT NULL AND double_v IS NULL AND str_v IS NULL AND bool_v IS NULL"
    " WHEN 'String' THEN str_v IS NOT NULL AND double_v IS NULL AND long_v IS NULL AND bool_v IS NULL"
    " WHEN 'Boolean' THEN bool_v IS NOT NULL AND double_v IS NULL AND long_v IS NULL AND str_v IS NULL"
    " ELSE false END)"
)
VALUE_TEXT_SQL = "coalesce(double_v::text, long_v::text, str_v, bool_v::text)"


def invalid_reason(
    channel: str | None, value_format: str | None, present: dict[str, bool], *, time_missing: bool = False
) -> str | None:
    """Why a narrow row cannot load (None when it is valid). ``present`` says which value columns are set."""
    if time_missing:
        return "created_time is NULL"
    if channel is None or channel == "":
        return "data_channel_id is empty"
    if value_format not in FORMAT_COLUMN:
        return f"unknown value_format {value_format!r}"
    want = FORMAT_COLUMN[value_format]
    others = [c for c in VALUE_COLUMNS if c != want and present.get(c)]
    if not present.get(want):
        got = f" ({', '.join(others)} set)" if others else " (no value column set)"
        return f"value_format {value_format} but {want} is NULL{got}"
    if others:
        return f"value_format {value_format} but {', '.join(others)} also set"
    return None
