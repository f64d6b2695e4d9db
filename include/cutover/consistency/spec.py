"""What a consistency check compares: endpoints, key, compared columns, mapping, window, repair mode.

A :class:`PairSpec` is what the registry (``cutover.sync_pairs``) stores for every pair that a
pipeline keeps in sync, and what :func:`cutover.consistency.diff.diff_pair` compares.

Column *kinds* say how a value is rendered canonically before it is hashed (the table in
:mod:`cutover.consistency.normalize` gives each canonical form): ``int``, ``decimal:<scale>``,
``float[:<significant digits>]`` (default 15), ``text``, ``bool``, ``timestamp[:<fraction digits>]``
(UTC, microseconds unless 0–5 fraction digits are given; naive values are taken as UTC), ``date``,
``bytes``, ``uuid``, ``interval`` (a duration, in microseconds) and ``bits[:<length>]``. For table
endpoints the kinds are inferred from both sides' column types; a query endpoint (e.g. the unpivot of
a wide table) needs them given in ``kinds``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

KINDS = ("int", "decimal", "float", "text", "bool", "timestamp", "date", "bytes", "uuid", "interval", "bits")
#: the kinds that take a parameter after a colon (``decimal:2``), and its range
_PARAM_RANGE = {"decimal": (0, 1000), "float": (1, 17), "timestamp": (0, 6), "bits": (1, 83_886_080)}
FLOAT_DIGITS = 15  # significant digits compared of a double precision value (``float`` alone)
FLOAT4_DIGITS = 6  # … of a single precision one (PostgreSQL ``real``, MySQL ``FLOAT``)
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
    """A parsed column kind: the logical type and its parameter, where it takes one.

    ``param`` is, per kind: ``decimal`` the scale compared (default 0); ``float`` the significant
    digits compared (1–17, default 15); ``timestamp`` the fraction digits compared (0–5; ``None``, the
    default, is microseconds); ``bits`` the length the bit strings are padded to (``None``: each
    side's own declared length). The other kinds take none. Defaults are filled in, so
    ``Kind("float") == Kind("float", 15)`` and ``Kind("timestamp", 6) == Kind("timestamp")``.
    """

    name: str
    param: int | None = None

    def __post_init__(self) -> None:
        if self.name not in KINDS:
            raise PairSpecError(f"unknown column kind {self.name!r}; expected one of {', '.join(KINDS)}")
        p = self.param
        if p is None:
            p = {"decimal": 0, "float": FLOAT_DIGITS}.get(self.name)
        elif self.name not in _PARAM_RANGE:
            raise PairSpecError(f"column kind {self.name!r} takes no parameter (got {p!r})")
        elif not _PARAM_RANGE[self.name][0] <= int(p) <= _PARAM_RANGE[self.name][1]:
            lo, hi = _PARAM_RANGE[self.name]
            raise PairSpecError(f"column kind {self.name}:{p} is out of range ({lo}–{hi})")
        if self.name == "timestamp" and p == 6:
            p = None  # microseconds: what plain ``timestamp`` compares
        object.__setattr__(self, "param", None if p is None else int(p))

    @classmethod
    def parse(cls, text: str) -> Kind:
        """Parse ``int``, ``decimal:2``, ``float:6``, ``timestamp:3`` …; raise PairSpecError on anything else."""
        name, _, param = str(text).strip().lower().partition(":")
        if name not in KINDS:
            raise PairSpecError(f"unknown column kind {text!r}; expected one of {', '.join(KINDS)}")
        if not param.strip():
            return cls(name)
        try:
            value = int(param)
        except ValueError as exc:
            raise PairSpecError(f"bad parameter in column kind {text!r} (an integer is expected)") from exc
        return cls(name, value)

    @property
    def scale(self) -> int:
        """A ``decimal``'s scale (0 for every other kind)."""
        return int(self.param or 0) if self.name == "decimal" else 0

    @property
    def digits(self) -> int:
        """A ``float``'s significant digits compared."""
        return int(self.param or FLOAT_DIGITS)

    @property
    def fraction(self) -> int:
        """A ``timestamp``'s fraction digits compared (6: microseconds)."""
        return 6 if self.param is None else int(self.param)

    def __str__(self) -> str:
        return self.name if self.param is None else f"{self.name}:{self.param}"


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
