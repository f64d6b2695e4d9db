"""What a consistency check compares: endpoints, key, compared columns, mapping, window, repair mode.

A :class:`PairSpec` is what the registry (``cutover.sync_pairs``) stores for every pair that a
pipeline keeps in sync, and what :func:`cutover.consistency.diff.diff_pair` compares.

Column *kinds* say how a value is rendered canonically before it is hashed (see
:mod:`cutover.consistency.normalize`): ``int``, ``decimal:<scale>``, ``float``, ``text``, ``bool``,
``timestamp`` (UTC, microseconds; naive values are taken as UTC), ``date``, ``bytes``. For table
endpoints the kinds are inferred from both sides' column types; a query endpoint (e.g. the unpivot of
a wide table) needs them given in ``kinds``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

KINDS = ("int", "decimal", "float", "text", "bool", "timestamp", "date", "bytes")
REPAIR_MODES = ("none", "upsert", "delete_insert")


class PairSpecError(ValueError):
    """A pair definition is incomplete or inconsistent (the message names the pair and the field)."""


@dataclass(frozen=True)
class Endpoint:
    """One side of a pair: an Airflow connection id and either a table (``schema.table``) or a query."""

    conn_id: str
    table: str | None = None
    query: str | None = None

    def __post_init__(self) -> None:
        if (self.table is None) == (self.query is None):
            raise PairSpecError(f"endpoint on {self.conn_id!r} needs exactly one of table= or query=")

    @property
    def label(self) -> str:
        """``conn_id:table`` (or ``conn_id:(query)``) for logs and results."""
        return f"{self.conn_id}:{self.table or '(query)'}"


@dataclass(frozen=True)
class Kind:
    """A parsed column kind: the logical type and, for decimals, the scale compared."""

    name: str
    scale: int = 0

    @classmethod
    def parse(cls, text: str) -> Kind:
        """Parse ``int``, ``decimal:2``, ``timestamp`` …; raise PairSpecError on anything else."""
        name, _, scale = str(text).strip().lower().partition(":")
        if name not in KINDS:
            raise PairSpecError(f"unknown column kind {text!r}; expected one of {', '.join(KINDS)}")
        if name == "decimal":
            try:
                return cls("decimal", int(scale or 0))
            except ValueError as exc:
                raise PairSpecError(f"bad decimal scale in kind {text!r}") from exc
        if name == "float":
            return cls("float", int(scale) if scale else 6)
        return cls(name)

    def __str__(self) -> str:
        return f"{self.name}:{self.scale}" if self.name in ("decimal", "float") else self.name


@dataclass(frozen=True)
class PairSpec:
    """A source/target pair kept in sync: what to compare and how (see module doc)."""

    name: str
    source: Endpoint
    target: Endpoint
    key: tuple[str, ...]
    columns: tuple[str, ...] = ()
    mapping: dict[str, str] = field(default_factory=dict)
    kinds: dict[str, str] = field(default_factory=dict)
    window_column: str | None = None
    recent_window_s: int = 3600
    settle_s: int = 60
    repair: str = "none"
    enabled: bool = True
    description: str = ""

    def __post_init__(self) -> None:
        if not self.name:
            raise PairSpecError("a pair needs a name")
        if not self.key:
            raise PairSpecError(f"pair {self.name!r}: key columns are required")
        if self.repair not in REPAIR_MODES:
            raise PairSpecError(f"pair {self.name!r}: repair must be one of {REPAIR_MODES}, got {self.repair!r}")
        if self.repair != "none" and (self.source.table is None or self.target.table is None):
            raise PairSpecError(f"pair {self.name!r}: repair needs table endpoints on both sides")
        for col, kind in self.kinds.items():
            Kind.parse(kind)
            if col not in self.key and self.columns and col not in self.columns and col != self.window_column:
                raise PairSpecError(f"pair {self.name!r}: kind given for unknown column {col!r}")
        dup = set(self.key) & set(self.columns)
        if dup:
            raise PairSpecError(f"pair {self.name!r}: columns {sorted(dup)} are listed as key and as compared")

    def target_name(self, column: str) -> str:
        """The target side's name of a source column (the mapping, else the same name)."""
        return self.mapping.get(column, column)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (the registry row, the DAG's XCom)."""
        d = asdict(self)
        d["key"] = list(self.key)
        d["columns"] = list(self.columns)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PairSpec:
        """Inverse of :meth:`to_dict` (unknown keys are ignored)."""
        return cls(
            name=d["name"],
            source=Endpoint(**d["source"]),
            target=Endpoint(**d["target"]),
            key=tuple(d["key"]),
            columns=tuple(d.get("columns") or ()),
            mapping=dict(d.get("mapping") or {}),
            kinds=dict(d.get("kinds") or {}),
            window_column=d.get("window_column"),
            recent_window_s=int(d.get("recent_window_s", 3600)),
            settle_s=int(d.get("settle_s", 60)),
            repair=d.get("repair", "none"),
            enabled=bool(d.get("enabled", True)),
            description=d.get("description", ""),
        )
