"""Identifier handling: names from data are validated, quoted or mapped, never executed."""

from __future__ import annotations

import pytest

from cutover.identifiers import (
    PG_MAX_IDENT_BYTES,
    IdentifierError,
    NameMapper,
    pg_ident,
    quote_mysql,
    quote_pg,
    sa_ident,
    slugify,
    truncate_utf8,
    validate_identifier,
)
from cutover.samples.hostile import HOSTILE_NAMES, MAX_BYTES_NAME

INJECTION = 'x"; DROP TABLE y; --'


@pytest.mark.parametrize("name", ["select", "user", "order", "from", "table", "GROUP"])
def test_reserved_words_are_quoted_not_rejected(name: str) -> None:
    assert quote_pg(name) == f'"{name}"'
    assert quote_mysql(name) == f"`{name}`"


def _unquote_pg(quoted: str) -> str:
    assert quoted.startswith('"') and quoted.endswith('"')
    body = quoted[1:-1]
    assert '"' not in body.replace('""', "")  # every quote inside is doubled: nothing can close it early
    return body.replace('""', '"')


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_hostile_names_round_trip_through_every_quoting_path(name: str) -> None:
    from sqlalchemy.dialects import postgresql

    assert validate_identifier(name) == name
    assert _unquote_pg(quote_pg(name)) == name
    rendered = pg_ident(name).as_string(None)
    assert rendered == quote_pg(name)
    assert _unquote_pg(rendered) == name
    assert pg_ident("s", name).as_string(None) == '"s".' + quote_pg(name)
    # what SQLAlchemy (hence GX) renders: always quoted, same text, case kept
    quoted = sa_ident(name)
    assert quoted == name and quoted.quote is True
    assert postgresql.dialect(paramstyle="named").identifier_preparer.quote(quoted) == quote_pg(name)


def test_hostile_names_include_the_limits() -> None:
    assert len(MAX_BYTES_NAME.encode()) == PG_MAX_IDENT_BYTES == max(len(n.encode()) for n in HOSTILE_NAMES)
    assert len(set(HOSTILE_NAMES)) == len(HOSTILE_NAMES)
    assert {"vessel-7", "M/V Ocean.1", INJECTION, "select", "Order", "a.b", "100%", "x:y", "船速"} <= set(HOSTILE_NAMES)
    with pytest.raises(IdentifierError):
        sa_ident(MAX_BYTES_NAME + "x")


def test_quotes_are_doubled() -> None:
    assert quote_pg(INJECTION) == '"x""; DROP TABLE y; --"'
    assert quote_mysql("a`b; DROP TABLE y; --") == "`a``b; DROP TABLE y; --`"
    assert quote_pg('"') == '""""'


def test_unicode_names_are_kept() -> None:
    assert quote_pg("température_°C") == '"température_°C"'
    assert quote_mysql("船速") == "`船速`"


@pytest.mark.parametrize("bad", ["", "a\x00b", "line\nbreak", "tab\there", None, 42])
def test_invalid_names_rejected_with_clear_error(bad: object) -> None:
    with pytest.raises(IdentifierError) as err:
        validate_identifier(bad)
    assert "identifier" in str(err.value)


def test_too_long_for_postgres_is_rejected_not_truncated() -> None:
    name = "a" * 64
    with pytest.raises(IdentifierError, match="64 bytes; PostgreSQL holds at most 63"):
        quote_pg(name)
    # multi-byte: 32 × 'é' = 64 bytes although only 32 characters
    with pytest.raises(IdentifierError):
        quote_pg("é" * 32)
    assert quote_pg("a" * 63) == '"' + "a" * 63 + '"'


def test_mysql_limits() -> None:
    with pytest.raises(IdentifierError, match="MySQL holds at most 64"):
        quote_mysql("b" * 65)
    with pytest.raises(IdentifierError, match="ends with a space"):
        quote_mysql("trailing ")
    with pytest.raises(IdentifierError, match="outside the BMP"):
        quote_mysql("ship😀")


def test_truncate_utf8_never_splits_a_character() -> None:
    assert truncate_utf8("ééé", 5) == "éé"
    assert truncate_utf8("abc", 10) == "abc"


def test_mapper_keeps_names_that_fit() -> None:
    m = NameMapper()
    assert m.map("speed") == "speed"
    assert m.map(INJECTION) == INJECTION  # fits: it is quoted when used, never mapped away
    assert m.changed() == {}


def test_mapper_maps_long_names_within_limit_and_reports_them() -> None:
    m = NameMapper()
    long_name = "engine.main.cylinder_exhaust_temperature_after_turbocharger_" + "x" * 30
    mapped = m.map(long_name)
    assert len(mapped.encode()) <= PG_MAX_IDENT_BYTES
    assert mapped != long_name
    assert m.changed() == {long_name: mapped}
    assert m.map(long_name) == mapped  # stable


def test_names_colliding_after_truncation_stay_distinct() -> None:
    m = NameMapper()
    prefix = "p" * 70
    a, b = m.map(prefix + "_a"), m.map(prefix + "_b")
    assert a != b
    assert all(len(x.encode()) <= PG_MAX_IDENT_BYTES for x in (a, b))


def test_mapped_name_cannot_steal_an_existing_name() -> None:
    m = NameMapper()
    long_name = "q" * 80
    mapped = m.map(long_name)
    m2 = NameMapper(reserved=[mapped])
    assert m2.map(long_name) != mapped


def test_mapping_is_deterministic_across_instances() -> None:
    names = ["x" * 100, "y", "é" * 40, INJECTION]
    assert NameMapper().mapping == NameMapper().mapping
    m1, m2 = NameMapper(), NameMapper()
    assert [m1.map(n) for n in names] == [m2.map(n) for n in names]


def test_case_insensitive_mapper_separates_case_variants() -> None:
    m = NameMapper(case_insensitive=True)
    assert m.map("Speed") == "Speed"
    other = m.map("speed")
    assert other.casefold() != "speed"


def test_mapper_replaces_control_characters() -> None:
    m = NameMapper()
    mapped = m.map("bad\nname")
    assert "\n" not in mapped
    validate_identifier(mapped)


def test_existing_mapping_is_reused() -> None:
    m = NameMapper(existing={"a" * 70: "short_a"})
    assert m.map("a" * 70) == "short_a"
    assert m.map("short_a") != "short_a"  # taken by the stored mapping


@pytest.mark.parametrize("raw", ["Tenant 42", "ACME/Corp", "42", INJECTION, "ü" * 80, "acme"])
def test_slugify_is_safe_unquoted(raw: str) -> None:
    slug = slugify(raw, prefix="t_")
    assert slug.startswith("t_")
    assert all(c.isalnum() or c == "_" for c in slug) and slug.isascii() and slug == slug.lower()
    assert len(slug.encode()) <= PG_MAX_IDENT_BYTES


def test_slugify_distinguishes_inputs_that_clean_alike() -> None:
    assert slugify("Tenant 1") != slugify("tenant_1")
    assert slugify("acme") == "acme"
