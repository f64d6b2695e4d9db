"""Hostile identifiers: the one list of awkward names every test suite reuses.

Names from data (ship ids, channel ids, tenant ids, table names) are untrusted, and every place where
one reaches SQL — ours or a third-party library's (GX assets and queries, SQL built by SQLAlchemy) —
must quote it through :mod:`cutover.identifiers`. :data:`HOSTILE_NAMES` is the fixture that proves it:
pass each name as a schema, table or column name wherever a test builds one from data.

Every name is valid for PostgreSQL as a *quoted* identifier (1–63 UTF-8 bytes, no NUL or other
control character); most are invalid, ambiguous or dangerous *unquoted*.
"""

from __future__ import annotations

from cutover.identifiers import PG_MAX_IDENT_BYTES
from cutover.samples.ship import ODD_CHANNEL_NAMES

#: Exactly 63 UTF-8 bytes (PostgreSQL's limit), mixing two-byte characters and ASCII, so that any
#: code that counts characters instead of bytes, or truncates, changes it.
MAX_BYTES_NAME = "é" * 31 + "x"

_EXTRA = (
    "vessel-7",  # hyphen: a ship id (the reported bug)
    "M/V Ocean.1",  # slash, space, dot: a vessel name
    'x"; DROP TABLE y; --',  # quote, semicolon, comment: injection attempt
    "a b",  # space
    "select",  # reserved word
    "Order",  # reserved word, mixed case (folded to lower case when unquoted)
    "a.b",  # dot: reads as schema.table when unquoted
    "100%",  # percent: a DB-API paramstyle marker, starts with a digit
    "x:y",  # colon: SQLAlchemy's bind-parameter marker in text()
    "船速",  # unicode (CJK)
    "Ünïcødé ✓ °C",  # unicode with symbols and spaces
    MAX_BYTES_NAME,  # exactly 63 bytes
)


def _fits(name: str) -> bool:
    return len(name.encode("utf-8")) <= PG_MAX_IDENT_BYTES


#: The hostile names, each once, in a stable order: every entry of
#: :data:`cutover.samples.ship.ODD_CHANNEL_NAMES` that fits in 63 bytes, then the extra ones above.
HOSTILE_NAMES: tuple[str, ...] = tuple(dict.fromkeys(n for n in (*ODD_CHANNEL_NAMES, *_EXTRA) if _fits(n)))

assert len(MAX_BYTES_NAME.encode("utf-8")) == PG_MAX_IDENT_BYTES
assert all(name and "\x00" not in name and _fits(name) for name in HOSTILE_NAMES)

__all__ = ["HOSTILE_NAMES", "MAX_BYTES_NAME"]
