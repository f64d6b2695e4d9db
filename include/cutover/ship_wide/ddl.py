"""Prepare: the wide table of a ship, its channel → column map, its set-aside primary key, its reader view.

**Names.** Channel ids are data: any case, spaces, quotes, reserved words, unicode, any length. A
channel keeps its id as column name whenever PostgreSQL can hold it (always quoted, so ``select``,
``Mixed Case`` and ``quo"te`` are fine). A channel whose id is over 63 bytes, holds a control
character, or is ``created_time`` (the key) gets ``<cut id>_<sha1 prefix>`` instead (see
:class:`cutover.identifiers.NameMapper`). Every mapping is stored in ``cutover.name_map`` (scope
``columns:<ship>``), with the channel's formats and column type in its detail: nothing is truncated
silently. Table and view names (``<narrow>_<ship>``, ``ts_reader_<ship>``) go through the same mapper
(scope ``tables:<schema>.<narrow>``).

**Limits.** PostgreSQL allows 1600 columns per table, dropped ones included; the key takes one, so a
ship holds at most 1599 channels (``max_channels`` lowers it). A row must also fit in a page: at
most 8160 bytes, and fixed-width values (double precision and bigint: 8 bytes, boolean: 1) cannot
move out of line, so 1016 typed numeric channels fill a row (:func:`min_row_bytes`). A ship
past either limit is refused at prepare with :class:`ChannelLimitExceeded` naming the ship, its
count or its row width (the other ships go on); a new channel that would pass it during copy or
sync fails that ship's task the same way, before any of its rows is committed, so nothing is lost:
the narrow table stays the readers' source. Text values are only known when they arrive: a row of
many short texts that still passes 8160 bytes (TOAST cannot shrink values that small) fails its
chunk, which rolls back, with the same error. Columns are never dropped, so the count only grows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from psycopg import Connection, sql

from cutover import control
from cutover.identifiers import NameMapper, pg_ident
from cutover.ship_wide.config import PIPELINE, SMALL_SHIP_ROWS, TIME_COLUMN, ShipWideConfig, column_type
from cutover.ship_wide.plan import ShipPlan


class ChannelLimitExceeded(RuntimeError):
    """A ship has more channels than one PostgreSQL table can hold as columns (or in one row)."""


#: the largest heap row PostgreSQL stores with 8 kB pages (MaxHeapTupleSize)
MAX_ROW_BYTES = 8160
_WIDTH = {"double precision": 8, "bigint": 8, "boolean": 1}  # fixed widths; alignment = width


def min_row_bytes(types: list[str]) -> int:
    """The smallest size of a fully populated wide row with these channel column types, in order.

    Row header (23 bytes, aligned to 8: a row with every value set has no null bitmap), the 8-byte
    key, then each value with its alignment: 8 for double precision and bigint, 1 for boolean, and at least 1 for a text value
    (a short text is stored inline with a 1-byte header). Past :data:`MAX_ROW_BYTES` no row with a
    value in every column can be stored.
    """
    size = 24 + 8
    for t in types:
        w = _WIDTH.get(t, 1)
        size = (size + w - 1) // w * w + w
    return size


@dataclass
class WideTable:
    """A ship's wide table: where it is, and its channel → column map with the column types."""

    ship_id: str
    unit: str
    schema: str
    table: str
    view: str
    columns: dict[str, str] = field(default_factory=dict)  # channel -> column name
    types: dict[str, str] = field(default_factory=dict)  # column name -> PostgreSQL type

    @property
    def ident(self) -> sql.Composable:
        """The schema-qualified, quoted table name."""
        return pg_ident(self.schema, self.table)

    @property
    def pk_name(self) -> str:
        """The name of the primary-key constraint (mapped to fit 63 bytes)."""
        return NameMapper().map(f"{self.table}_pkey")

    def ordered_channels(self) -> list[str]:
        """Channels in column order."""
        order = {c: i for i, c in enumerate(self.types)}
        return sorted(self.columns, key=lambda ch: order.get(self.columns[ch], 1 << 30))


def table_scope(cfg: ShipWideConfig) -> str:
    """The name-map scope of the wide-table and view names of one narrow table."""
    return f"tables:{cfg.schema}.{cfg.narrow_table}"


def column_scope(unit: str) -> str:
    """The name-map scope of one ship's channel → column map (``unit`` from ``cfg.unit(ship)``)."""
    return f"columns:{unit}"


def object_names(conn: Connection[Any], cfg: ShipWideConfig, ship_id: str, *, save: bool = True) -> tuple[str, str]:
    """(wide table, reader view) names of a ship, assigned once and stored.

    Once stored, the two names are looked up alone: the whole scope holds every ship's names, and
    reading it per ship made a fleet's cost grow with the square of its ships. Only a ship seen for
    the first time reads it (its new names must not collide with any other).
    """
    scope = table_scope(cfg)
    keys = [f"{cfg.narrow_table}_{ship_id}", f"ts_reader_{ship_id}"]
    known = control.lookup_names(conn, PIPELINE, scope, keys)
    if len(known) == 2:
        return known[keys[0]], known[keys[1]]
    mapper = NameMapper(existing=control.load_name_map(conn, PIPELINE, scope), reserved=[cfg.narrow_table])
    table = mapper.map(f"{cfg.narrow_table}_{ship_id}")
    view = mapper.map(f"ts_reader_{ship_id}")
    if save:
        control.save_name_map(conn, PIPELINE, scope, {f"{cfg.narrow_table}_{ship_id}": table, f"ts_reader_{ship_id}": view})
    return table, view


def map_channels(
    existing: dict[str, str], channels: dict[str, str], *, max_channels: int, ship_id: str
) -> dict[str, str]:
    """Column names for new ``channels`` (channel → type), given the ``existing`` map; checks the limit."""
    new = [ch for ch in channels if ch not in existing]
    total = len(existing) + len(new)
    if total > max_channels:
        raise ChannelLimitExceeded(
            f"ship {ship_id!r} has {total} channels; a PostgreSQL table holds at most {max_channels} "
            f"besides {TIME_COLUMN} (1600 columns in all). The ship is not built; split its channels "
            "or keep its readers on the narrow table."
        )
    mapper = NameMapper(existing=existing, reserved=[TIME_COLUMN])
    return {ch: mapper.map(ch) for ch in sorted(new)}


def _catalog_types(conn: Connection[Any], schema: str, table: str) -> dict[str, str]:
    rows = conn.execute(
        """SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a
           JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE n.nspname = %s AND c.relname = %s AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum""",
        (schema, table),
    ).fetchall()
    return {r[0]: r[1] for r in rows}


def load_wide(conn: Connection[Any], cfg: ShipWideConfig, ship_id: str) -> WideTable | None:
    """The ship's wide table as it is now (None when it does not exist)."""
    # the stored table and view names, the table's columns and the ship's channel map in one round
    # trip (every stage asks for each ship); a ship whose names were never stored maps them first
    n = f"{control.SCHEMA}.name_map"
    row = conn.execute(
        f"""WITH t AS (SELECT (SELECT mapped FROM {n} WHERE pipeline = %(p)s AND scope = %(ts)s AND original = %(tk)s) AS tbl,
                              (SELECT mapped FROM {n} WHERE pipeline = %(p)s AND scope = %(ts)s AND original = %(vk)s) AS vw)
            SELECT t.tbl, t.vw,
                   (SELECT coalesce(jsonb_agg(jsonb_build_array(a.attname, format_type(a.atttypid, a.atttypmod))
                                     ORDER BY a.attnum), '[]')
                    FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace s ON s.oid = c.relnamespace
                    WHERE s.nspname = %(schema)s AND c.relname = t.tbl AND a.attnum > 0 AND NOT a.attisdropped),
                   (SELECT coalesce(jsonb_agg(jsonb_build_array(original, mapped) ORDER BY created_at, original), '[]')
                    FROM {n} WHERE pipeline = %(p)s AND scope = %(cs)s)
            FROM t""",
        {"p": PIPELINE, "ts": table_scope(cfg), "tk": f"{cfg.narrow_table}_{ship_id}", "vk": f"ts_reader_{ship_id}",
         "schema": cfg.schema, "cs": column_scope(cfg.unit(ship_id))},
    ).fetchone()
    assert row is not None
    if row[0] is None or row[1] is None:  # names not stored yet: the mapper's names, looked up the long way
        table, view = object_names(conn, cfg, ship_id, save=False)
        types = _catalog_types(conn, cfg.schema, table)
        columns = control.load_name_map(conn, PIPELINE, column_scope(cfg.unit(ship_id)))
    else:
        table, view = row[0], row[1]
        types = {name: typ for name, typ in row[2]}
        columns = {orig: mapped for orig, mapped in row[3]}
    if not types:
        return None
    types.pop(TIME_COLUMN, None)
    return WideTable(ship_id, cfg.unit(ship_id), cfg.schema, table, view, columns, types)


def create_wide_table(conn: Connection[Any], cfg: ShipWideConfig, plan: ShipPlan, *, time_type: str = "timestamptz") -> WideTable:
    """Create the ship's wide table (or add what is missing), store the map, set the primary key aside.

    The key is created after the bulk load (:func:`restore_primary_key`); its exact definition is kept
    in ``cutover.object_backups`` meanwhile — except for a small ship (fewer than
    :data:`~cutover.ship_wide.config.SMALL_SHIP_ROWS` planned rows), whose table has its key from the
    start. Idempotent. The caller commits.
    """
    table, view = object_names(conn, cfg, plan.ship_id)
    conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(pg_ident(cfg.schema)))
    existing = load_wide(conn, cfg, plan.ship_id)
    if existing is None:
        conn.execute(
            sql.SQL("CREATE TABLE {} ({} {} NOT NULL)").format(
                pg_ident(cfg.schema, table), pg_ident(TIME_COLUMN), sql.SQL(time_type)
            )
        )
        unit = cfg.unit(plan.ship_id)
        existing = WideTable(plan.ship_id, unit, cfg.schema, table, view,
                             control.load_name_map(conn, PIPELINE, column_scope(unit)), {})
        wide = existing
        conn.execute(
            f"DELETE FROM {control.SCHEMA}.object_backups WHERE pipeline = %s AND unit_key = %s",
            (PIPELINE, unit),
        )
        key = sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} PRIMARY KEY ({})").format(
            wide.ident, pg_ident(wide.pk_name), pg_ident(TIME_COLUMN))
        if plan.rows < SMALL_SHIP_ROWS:  # a small ship loads into its indexed table
            conn.execute(key)
        else:
            control.backup_object(conn, PIPELINE, unit, "constraint", wide.pk_name, key.as_string(conn))
    add_channels(conn, cfg, existing, {ch: set(f) for ch, f in plan.channels.items()})
    return existing


def add_channels(conn: Connection[Any], cfg: ShipWideConfig, wide: WideTable, channels: dict[str, set[str]]) -> dict[str, str]:
    """Add a column per channel not yet in the table (typed from its formats); returns the new ones.

    ``ALTER TABLE … ADD COLUMN`` of a nullable column without default only touches the catalog, so
    readers and writers wait for a moment, not for a rewrite. The map is saved in the same transaction.
    """
    missing = {
        ch: column_type(f, text_columns=cfg.text_columns)
        for ch, f in channels.items()
        if ch not in wide.columns or wide.columns[ch] not in wide.types
    }
    if not missing:
        return {}
    fresh = map_channels(wide.columns, {ch: t for ch, t in missing.items() if ch not in wide.columns},
                         max_channels=cfg.max_channels, ship_id=wide.ship_id)
    names = {ch: wide.columns.get(ch) or fresh[ch] for ch in missing}
    if len(wide.types) + len(names) > cfg.max_channels:
        raise ChannelLimitExceeded(
            f"ship {wide.ship_id!r} would have {len(wide.types) + len(names)} channel columns; "
            f"at most {cfg.max_channels} fit (1600 columns in all)"
        )
    order = [*wide.types.values(), *(missing[ch] for ch in sorted(names, key=lambda c: names[c]))]
    if (need := min_row_bytes(order)) > MAX_ROW_BYTES:
        raise ChannelLimitExceeded(
            f"ship {wide.ship_id!r}: {len(order)} channel columns take at least {need} bytes in a row with every "
            f"channel set; a PostgreSQL row holds at most {MAX_ROW_BYTES} bytes and fixed-width values "
            "(double precision, bigint) cannot move out of line. The ship is not built; split its channels "
            "or keep its readers on the narrow table."
        )
    ordered = sorted(names, key=lambda c: names[c])
    conn.execute(sql.SQL("ALTER TABLE {} {}").format(wide.ident, sql.SQL(", ").join(  # one statement for all
        sql.SQL("ADD COLUMN IF NOT EXISTS {} {}").format(pg_ident(names[ch]), sql.SQL(missing[ch])) for ch in ordered)))
    for ch in ordered:
        wide.types[names[ch]] = missing[ch]
    control.save_name_map(
        conn, PIPELINE, column_scope(wide.unit), fresh,
        {ch: {"type": missing[ch], "formats": sorted(channels[ch])} for ch in fresh},
    )
    wide.columns.update(names)
    return names


def has_primary_key(conn: Connection[Any], wide: WideTable) -> bool:
    """Whether the wide table has its primary key (i.e. it was finalized)."""
    row = conn.execute(
        """SELECT 1 FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid
           JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE n.nspname = %s AND c.relname = %s AND k.contype = 'p'""",
        (wide.schema, wide.table),
    ).fetchone()
    return row is not None


def restore_primary_key(conn: Connection[Any], wide: WideTable, *, analyze: bool = True) -> list[str]:
    """Recreate what prepare set aside, exactly as backed up, then ANALYZE the key; returns what was restored.

    Only the key column is analyzed here (what readers filter on; it also sets the row count): the
    statistics of every channel column cost more than the copy of a ship, and autovacuum gathers them
    after a load of this size anyway. ``analyze=False`` (a small ship): not even the key — autovacuum
    analyzes a new table after its first 50 rows, and any plan of a few thousand rows is fine meanwhile.
    """
    restored: list[str] = []
    for kind, name, definition in control.pending_backups(conn, PIPELINE, wide.unit):
        if not (kind == "constraint" and has_primary_key(conn, wide)):
            conn.execute(definition)
        control.mark_restored(conn, PIPELINE, wide.unit, kind, name)
        restored.append(f"{kind} {name}")
    if analyze:
        conn.execute(sql.SQL("ANALYZE {} ({})").format(wide.ident, pg_ident(TIME_COLUMN)))
    return restored
