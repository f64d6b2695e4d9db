"""Identifier validation, quoting and safe-name mapping.

Names that come from data (tenant ids, ship ids, channel ids, table names) are untrusted. Every name
that reaches SQL goes through this module:

* :func:`validate_identifier` rejects what no database can hold (empty names, NUL and other control
  characters, names too long for the dialect) with an :class:`IdentifierError` that names the value;
* :func:`quote_pg` / :func:`pg_ident` and :func:`quote_mysql` quote a validated name, so quotes,
  semicolons and comment markers inside it are part of the name, never SQL; :func:`sa_ident` does the
  same for names handed to libraries that build SQL with SQLAlchemy (GX);
* :func:`with_params` readies a statement composed of such names (and literals) to run *with*
  parameters: psycopg then reads every ``%`` of the text as a placeholder marker, the ones inside a
  quoted name such as ``"100%"`` too, so those are doubled;
* :class:`NameMapper` maps arbitrary names onto names that fit a database limit (PostgreSQL: 63 bytes)
  deterministically, with a hash suffix that keeps names distinct when they collide after truncation.
  It never truncates silently: the mapping is returned so the caller stores it.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Iterable
from typing import TYPE_CHECKING, Literal

from psycopg import sql

if TYPE_CHECKING:
    from psycopg.abc import AdaptContext
    from sqlalchemy.sql import quoted_name

Dialect = Literal["postgres", "mysql"]

PG_MAX_IDENT_BYTES = 63
PG_MAX_COLUMNS = 1600
MYSQL_MAX_IDENT_CHARS = 64

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_SAFE_SLUG = re.compile(r"[^a-z0-9_]+")


class IdentifierError(ValueError):
    """A name from data cannot be used as an identifier (it names the offending value)."""


def validate_identifier(name: object, *, dialect: Dialect = "postgres") -> str:
    """Return ``name`` if the dialect can hold it as a quoted identifier, else raise IdentifierError."""
    if not isinstance(name, str):
        raise IdentifierError(f"identifier must be a string, got {type(name).__name__}: {name!r}")
    if name == "":
        raise IdentifierError("identifier must not be empty")
    if _CONTROL.search(name):
        raise IdentifierError(f"identifier {name!r} contains a control character (NUL, newline, tab …)")
    if dialect == "postgres":
        size = len(name.encode("utf-8"))
        if size > PG_MAX_IDENT_BYTES:
            raise IdentifierError(
                f"identifier {name!r} is {size} bytes; PostgreSQL holds at most {PG_MAX_IDENT_BYTES} "
                "(map it with NameMapper instead of letting PostgreSQL truncate it)"
            )
    elif dialect == "mysql":
        if len(name) > MYSQL_MAX_IDENT_CHARS:
            raise IdentifierError(
                f"identifier {name!r} is {len(name)} characters; MySQL holds at most {MYSQL_MAX_IDENT_CHARS}"
            )
        if name.endswith(" "):
            raise IdentifierError(f"identifier {name!r} ends with a space, which MySQL does not allow")
        if any(ord(c) > 0xFFFF for c in name):
            raise IdentifierError(f"identifier {name!r} has a character outside the BMP, which MySQL rejects")
    else:  # pragma: no cover - Literal guards this
        raise IdentifierError(f"unknown dialect {dialect!r}")
    return name


def quote_pg(name: str) -> str:
    """Quote a PostgreSQL identifier (after validating it): ``a"b`` becomes ``"a""b"``."""
    validate_identifier(name, dialect="postgres")
    return '"' + name.replace('"', '""') + '"'


def pg_ident(*parts: str) -> sql.Identifier:
    """A psycopg ``sql.Identifier`` (schema-qualified when given several parts), validated first.

    A statement holding it that runs with parameters goes through :func:`with_params` (a ``%`` in the
    name would otherwise be read as a placeholder marker).
    """
    for part in parts:
        validate_identifier(part, dialect="postgres")
    return sql.Identifier(*parts)


class _DataPercentEscaped(sql.Composable):
    """A quoted name or literal of a statement run with parameters: each ``%`` of its text doubled."""

    def __init__(self, obj: sql.Identifier | sql.Literal) -> None:
        super().__init__(obj)

    def as_bytes(self, context: AdaptContext | None = None) -> bytes:
        # psycopg scans the statement's bytes for b"%"; 0x25 is never part of a multi-byte character
        # in any encoding PostgreSQL accepts from a client, so doubling the byte doubles the character
        return bytes(self._obj.as_bytes(context)).replace(b"%", b"%%")


def with_params(query: sql.Composable) -> sql.Composed:
    """``query`` ready to be executed *with* parameters (``execute``, ``copy``, ``mogrify``).

    When parameters are passed, psycopg reads every ``%`` of the statement as the start of a
    placeholder (``%s``) or of an escaped percent (``%%``) — also a ``%`` that a quoted name or a literal
    put there: ``"100%"`` fails with "only '%s', '%b', '%t' are allowed as placeholders", and ``"x%sy"``
    silently takes a parameter. psycopg's ``sql.Identifier`` and ``sql.Literal`` do not escape it
    (psycopg 3.3; they cannot know whether parameters follow: without them ``%%`` would reach
    PostgreSQL as two characters). This walks the composed statement and doubles ``%`` inside every
    ``sql.Identifier`` (so every :func:`pg_ident`) and ``sql.Literal``, and leaves the code's own
    ``sql.SQL`` text (its ``%s`` placeholders and ``%%``) and ``sql.Placeholder`` as written.

    Use it exactly where a composed statement is executed with parameters; one executed without
    parameters must not go through it.
    """
    return sql.Composed([_escape_data(part) for part in (query if isinstance(query, sql.Composed) else [query])])


def _escape_data(part: sql.Composable) -> sql.Composable:
    if isinstance(part, sql.SQL | sql.Placeholder | _DataPercentEscaped):
        return part
    if isinstance(part, sql.Composed):
        return with_params(part)
    if isinstance(part, sql.Identifier | sql.Literal):
        return _DataPercentEscaped(part)
    raise TypeError(f"with_params: cannot tell code from data in {type(part).__name__} {part!r}")


def sa_ident(name: str, *, dialect: Dialect = "postgres") -> quoted_name:
    """A name for a library that builds its SQL with SQLAlchemy (GX assets and expectations), validated first.

    The SQLAlchemy form of :func:`quote_pg` / :func:`quote_mysql`: a ``quoted_name`` with ``quote=True``,
    so the dialect's own identifier quoting always applies (quotes doubled, ``%`` escaped for the
    driver) and nothing folds its case. A plain ``str`` is not enough: GX 1.x turns a table name into
    ``quoted_name(name, quote=False)`` — never quoted — and lower-cases a schema name.
    """
    from sqlalchemy.sql import quoted_name as _quoted_name

    validate_identifier(name, dialect=dialect)
    return _quoted_name(name, True)


def quote_mysql(name: str) -> str:
    """Quote a MySQL identifier with backticks (after validating it): ``a`b`` becomes ```a``b```."""
    validate_identifier(name, dialect="mysql")
    return "`" + name.replace("`", "``") + "`"


def qualified_mysql(*parts: str) -> str:
    """Quote and join a schema-qualified MySQL name: ``db``.``table``."""
    return ".".join(quote_mysql(p) for p in parts)


def _short_hash(text: str, length: int = 8) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:length]


def truncate_utf8(text: str, max_bytes: int) -> str:
    """Cut ``text`` to at most ``max_bytes`` UTF-8 bytes without splitting a character."""
    data = text.encode("utf-8")
    if len(data) <= max_bytes:
        return text
    return data[:max_bytes].decode("utf-8", errors="ignore")


def slugify(raw: str, *, prefix: str = "", max_bytes: int = PG_MAX_IDENT_BYTES) -> str:
    """Map any text to a lower-case ``[a-z0-9_]`` name, with a hash suffix whenever that changed it.

    Used where a name must be safe unquoted too (schema and database names made from tenant ids).
    Different inputs never share a slug unless their hashes collide.
    """
    text = unicodedata.normalize("NFKD", str(raw)).encode("ascii", "ignore").decode("ascii").lower()
    slug = _SAFE_SLUG.sub("_", text).strip("_")
    candidate = f"{prefix}{slug}"
    if candidate and slug == str(raw) and len(candidate) <= max_bytes and not candidate[0].isdigit():
        return candidate
    suffix = "_" + _short_hash(str(raw))
    return truncate_utf8(candidate, max_bytes - len(suffix)) + suffix


class NameMapper:
    """Deterministic, collision-free mapping of arbitrary names onto names a database can hold.

    A name that is valid and fits is kept as it is. A longer one is cut at a character boundary and
    gets ``_`` plus a hash of the *whole* original name, so two names that only differ after the cut
    stay distinct; a name that would still collide with one already taken gets a longer hash.
    ``case_insensitive`` compares names case-folded (MySQL column names).
    """

    def __init__(
        self,
        *,
        max_bytes: int = PG_MAX_IDENT_BYTES,
        reserved: Iterable[str] = (),
        case_insensitive: bool = False,
        existing: dict[str, str] | None = None,
    ) -> None:
        self.max_bytes = max_bytes
        self.case_insensitive = case_insensitive
        self._forward: dict[str, str] = {}
        self._taken: set[str] = {self._key(r) for r in reserved}
        for original, mapped in (existing or {}).items():
            self._forward[original] = mapped
            self._taken.add(self._key(mapped))

    def _key(self, name: str) -> str:
        return name.casefold() if self.case_insensitive else name

    def map(self, original: str) -> str:
        """Return the safe name of ``original``, assigning one on first sight."""
        if original in self._forward:
            return self._forward[original]
        if not isinstance(original, str) or original == "":
            raise IdentifierError(f"cannot map {original!r}: names must be non-empty strings")
        cleaned = _CONTROL.sub("_", original)
        candidate = cleaned
        fits = len(candidate.encode("utf-8")) <= self.max_bytes
        if not fits or cleaned != original or self._key(candidate) in self._taken:
            for length in (8, 12, 16, 40):
                suffix = "_" + _short_hash(original, length)
                candidate = truncate_utf8(cleaned, self.max_bytes - len(suffix)) + suffix
                if self._key(candidate) not in self._taken:
                    break
            else:  # pragma: no cover - needs a full sha1 collision
                raise IdentifierError(f"cannot find a unique name for {original!r}")
        self._forward[original] = candidate
        self._taken.add(self._key(candidate))
        return candidate

    @property
    def mapping(self) -> dict[str, str]:
        """Every original name seen so far and its safe name."""
        return dict(self._forward)

    def changed(self) -> dict[str, str]:
        """Only the names that were changed by the mapping (the ones a user must be told about)."""
        return {k: v for k, v in self._forward.items() if k != v}
