"""The readers' typical queries, timed on the narrow table and on the wide table (issue #13).

What the migration promises readers: the same answers, faster. Two queries a reader of one ship runs
all day, each written the way a reader writes it against each backend, with the same answer:

* ``range`` — one ship, all channels, a time range (the last ``window`` times of the ship: an hour of
  15-second data by default). The reader's text is the same on both sides, against the ship's reader
  view ``ts_reader_<ship>`` (:mod:`cutover.ship_wide.cutover`)::

      SELECT * FROM ts_reader_<ship> WHERE created_time BETWEEN $1 AND $2 ORDER BY created_time

  timed with the view's *narrow* definition (PostgreSQL pivots the narrow table: the readers' path
  before the cutover) and with its *wide* definition (``SELECT … FROM`` the wide table: after it). The
  definitions are :func:`cutover.ship_wide.cutover.view_sql`'s, inlined as a subquery (which is what
  PostgreSQL does with a view), so the timing depends neither on where the view points now nor on
  the view existing (source and target may be different databases).
* ``latest`` — the latest reading of each channel (a dashboard's "now" panel), as
  ``(channel, time, value as text)``. Against the narrow table, the strongest form a reader writes:
  per channel a backward walk of the ``(ship_id, created_time)`` index, ``LIMIT 1`` (``unnest`` of
  the channels ``CROSS JOIN LATERAL``; the common ``DISTINCT ON (data_channel_id) … ORDER BY
  data_channel_id, created_time DESC`` sorts every row of the ship: ~1.5 s for a million rows).
  Against the wide table: the last row (``ORDER BY created_time DESC LIMIT 1``), and only for a
  channel with no value in it (it did not report at the last time) its last non-NULL value, in a
  second statement over those columns only — what a reader's code does; both statements are timed.

The narrow side reads what the narrow backend serves readers — the *loadable* rows (valid, fitting the
channel's column, the latest per channel and time: :func:`cutover.ship_wide.fragments.loadable_narrow`)
— so both sides answer the same, and :func:`time_reader_queries` checks that they do (every value
compared as text), raising :class:`ReaderAnswersDiffer` when not. With ``upto_seq`` (the verification:
live rows keep arriving in the narrow table while it runs) the narrow side reads the rows up to the
ingest sequence the wide table was synced to (``AND <seq> <= $n``), so a row that arrived since does
not make the answers differ.

Timing: in a read-only transaction per connection, ``jit`` and every other setting as the server has
them (a ``statement_timeout`` bounds each statement; a query past it is skipped with a note, the
others still run); each statement rendered once and run *prepared*, as a reader's driver runs a
query it runs again and again (psycopg and JDBC prepare from the 5th run): the figure is about
executing, not planning. One warm-up run per query and side (its answer is the one compared), then
``repeats`` runs alternating narrow and wide, each the client's wall time of execute + fetch of every
row; the figure is the median. ``speedup`` = narrow ms / wide ms (> 1: the wide table is faster);
``faster_pct`` = the time the wide table saves, in % of the narrow time. The field's target (issue
#13) is "at least 50 % faster", read strictly: the wide table takes at most half the narrow time
(``faster_pct >= 50``, i.e. ``speedup >= 2``), overall and on every query.

Names from data (ship and channel ids, the mapped column names) reach SQL only through
:func:`cutover.identifiers.pg_ident` and ``sql.Literal`` (the view definition, the channel labels of
the wide side), values as parameters (through :func:`cutover.identifiers.with_params`).
"""

from __future__ import annotations

import math
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from typing import IO, Any

from psycopg import Connection, errors, sql
from psycopg.pq import TransactionStatus

from cutover.identifiers import pg_ident, with_params
from cutover.ship_wide.config import (
    FORMAT_COLUMN,
    TIME_COLUMN,
    VALID_SQL,
    VALUE_TEXT_SQL,
    ShipWideConfig,
    accepted_format,
)
from cutover.ship_wide.cutover import view_sql
from cutover.ship_wide.ddl import WideTable
from cutover.ship_wide.fragments import compat_sql, loadable_narrow

#: the queries, in the order they run and print
QUERIES = ("range", "latest")
DESCRIPTIONS = {
    "range": "one ship, all channels, a time range (reader view)",
    "latest": "the latest reading per channel",
}
#: the field's target (issue #13): the wide table at least 50 % faster, read as half the time or less
TARGET_FASTER_PCT = 50.0
#: the last hour of 15-second readings
DEFAULT_WINDOW = 240
DEFAULT_REPEATS = 5
DEFAULT_TIMEOUT_S = 30.0


class ReaderAnswersDiffer(AssertionError):
    """A reader's query answers differently on the narrow and on the wide table (the message says where)."""


def _channels(wide: WideTable) -> list[tuple[str, str]]:
    """(channel, column) of every channel with a column, in column order (as the reader view lists them)."""
    by_col = {col: ch for ch, col in wide.columns.items()}
    return [(by_col[col], col) for col in wide.types if col in by_col]


def narrow_view_sql(cfg: ShipWideConfig, wide: WideTable, *, upto_seq: int | None = None) -> sql.Composed:
    """The reader view's narrow definition; with ``upto_seq``, reading narrow rows with ``<seq> <=
    %(upto)s`` only (the same text otherwise: a test holds it equal to :func:`view_sql`'s)."""
    if upto_seq is None:
        return view_sql(cfg, wide, "narrow")
    items: list[sql.Composable] = [pg_ident(TIME_COLUMN)]
    for ch, col in _channels(wide):
        typ = wide.types[col]
        fmt = accepted_format(typ)
        value = sql.SQL(FORMAT_COLUMN[fmt] if fmt else VALUE_TEXT_SQL)
        cond = sql.SQL("data_channel_id = {}").format(sql.Literal(ch))
        if fmt:
            cond = cond + sql.SQL(" AND value_format = {}").format(sql.Literal(fmt))
        items.append(sql.SQL("(array_agg({v}) FILTER (WHERE {c}))[1]::{t} AS {n}").format(
            v=value, c=cond, t=sql.SQL(typ), n=pg_ident(col)))
    bound = sql.SQL("{} <= %(upto)s").format(pg_ident(cfg.seq_column))
    return sql.SQL("SELECT {items} FROM ({rows}) n GROUP BY created_time").format(
        items=sql.SQL(", ").join(items), rows=loadable_narrow(cfg, wide, sql.SQL("*"), bound))


def range_queries(cfg: ShipWideConfig, wide: WideTable, *, upto_seq: int | None = None) -> tuple[sql.Composed, sql.Composed]:
    """(narrow, wide): ``SELECT * FROM <reader view> WHERE created_time BETWEEN %(lo)s AND %(hi)s
    ORDER BY created_time`` with the view's narrow and wide definitions (parameters ``lo``, ``hi``
    and, with ``upto_seq``, ``upto``)."""
    text = sql.SQL("SELECT * FROM ({view}) AS {name} WHERE created_time BETWEEN %(lo)s AND %(hi)s ORDER BY created_time")
    name = pg_ident(wide.view)
    return (text.format(view=narrow_view_sql(cfg, wide, upto_seq=upto_seq), name=name),
            text.format(view=view_sql(cfg, wide, "wide"), name=name))


def latest_narrow_query(cfg: ShipWideConfig, wide: WideTable, *, upto_seq: int | None = None) -> sql.Composed:
    """``(data_channel_id, created_time, value text)``: per channel its latest loadable narrow row.

    The strongest form a narrow reader writes: per channel a backward walk of the ``(ship_id,
    created_time)`` index, ``LIMIT 1`` (``DISTINCT ON (data_channel_id) … ORDER BY data_channel_id,
    created_time DESC``, the common form, sorts every row of the ship: seconds for a million rows).
    Parameters ``ship``, ``channels`` (the channels with a column) and, with ``upto_seq``, ``upto``.
    """
    bound = (sql.SQL(" AND {} <= %(upto)s").format(pg_ident(cfg.seq_column)) if upto_seq is not None
             else sql.SQL(""))
    return sql.SQL(
        "SELECT c.data_channel_id, l.created_time, l.value FROM unnest(%(channels)s::text[]) AS c(data_channel_id) "
        "CROSS JOIN LATERAL (SELECT created_time, {value} AS value FROM {narrow} "
        "WHERE ship_id = %(ship)s AND data_channel_id = c.data_channel_id AND {valid} AND {compat}{bound} "
        "ORDER BY created_time DESC, {seq} DESC LIMIT 1) AS l"
    ).format(value=sql.SQL(VALUE_TEXT_SQL), narrow=pg_ident(cfg.schema, cfg.narrow_table), valid=sql.SQL(VALID_SQL),
             compat=compat_sql(wide), bound=bound, seq=pg_ident(cfg.seq_column))


def last_row_query(wide: WideTable) -> sql.Composed:
    """The wide reader's "now": ``SELECT created_time, <every channel column as text> FROM <wide> ORDER BY
    created_time DESC LIMIT 1`` (one probe of the primary key)."""
    return sql.SQL("SELECT {t}, {cols} FROM {w} ORDER BY {t} DESC LIMIT 1").format(
        t=pg_ident(TIME_COLUMN), w=wide.ident,
        cols=sql.SQL(", ").join(sql.SQL("{}::text").format(pg_ident(col)) for _, col in _channels(wide))
        if _channels(wide) else sql.SQL("NULL::text"))


def last_values_query(wide: WideTable, channels: list[tuple[str, str]]) -> sql.Composed:
    """``(data_channel_id, created_time, value text)``: per (channel, column) its last non-NULL value
    (a backward walk of the primary key each; ``UNION ALL``)."""
    return sql.SQL(" UNION ALL ").join(
        sql.SQL("(SELECT {ch}::text, {t}, {col}::text FROM {w} WHERE {col} IS NOT NULL ORDER BY {t} DESC LIMIT 1)").format(
            ch=sql.Literal(ch), t=pg_ident(TIME_COLUMN), col=pg_ident(col), w=wide.ident)
        for ch, col in channels)


class _LatestWide:
    """The wide reader's "latest reading per channel": the last row; a channel without a value in it
    (it did not report at the last time) gets its last non-NULL value in a second statement that
    reads only those columns. Two statements at most: what a reader's code does."""

    def __init__(self, conn: Connection[Any], wide: WideTable) -> None:
        self.conn = conn
        self.wide = wide
        self.channels = _channels(wide)
        self.last = last_row_query(wide).as_string(conn)
        self._fallback: dict[tuple[int, ...], str] = {}

    def __call__(self) -> list[tuple[Any, ...]]:
        row = self.conn.execute(self.last, prepare=True).fetchone()
        if row is None or not self.channels:
            return []
        out = [(ch, row[0], v) for (ch, _), v in zip(self.channels, row[1:], strict=True) if v is not None]
        missing = tuple(i for i, v in enumerate(row[1:]) if v is None)
        if missing:
            if missing not in self._fallback:
                self._fallback[missing] = last_values_query(self.wide, [self.channels[i] for i in missing]).as_string(self.conn)
            out += self.conn.execute(self._fallback[missing], prepare=True).fetchall()
        return out


def window_bounds(conn: Connection[Any], wide: WideTable, window: int) -> tuple[Any, Any, int] | None:
    """(first, last, times) of the ship's last ``window`` times in the wide table (None when it is empty)."""
    q = with_params(sql.SQL(
        "SELECT min(t), max(t), count(*) FROM (SELECT {c} AS t FROM {w} ORDER BY {c} DESC LIMIT %s) s").format(
        c=pg_ident(TIME_COLUMN), w=wide.ident))
    got = conn.execute(q, (int(window),)).fetchone()
    if got is None or not got[2]:
        return None
    return got[0], got[1], int(got[2])


def _as_text(rows: list[tuple[Any, ...]], *, by_first: bool) -> list[tuple[str | None, ...]]:
    """Rows with every value as text (``str``: floats in their shortest exact form, NaN equal to NaN);
    sorted by the first column when the query's order is not part of its answer."""
    out = [tuple(None if v is None else str(v) for v in r) for r in rows]
    return sorted(out, key=lambda r: r[0] or "") if by_first else out


def _first_difference(narrow: list[tuple[Any, ...]], wide: list[tuple[Any, ...]]) -> str:
    if len(narrow) != len(wide):
        return f"{len(narrow)} rows on narrow, {len(wide)} on wide"
    for i, (a, b) in enumerate(zip(narrow, wide, strict=True)):
        if a != b:
            return f"row {i}: narrow {a!r} ≠ wide {b!r}"
    return "no difference"  # pragma: no cover - only called when they differ


Runner = Callable[[], list[tuple[Any, ...]]]


def _statement(conn: Connection[Any], query: sql.Composable, params: Mapping[str, Any] | None) -> Runner:
    """One statement, rendered once (the rendering is not timed), run prepared: as a reader's driver
    runs a query it runs again and again (psycopg and JDBC prepare it from the 5th run on)."""
    text = (with_params(query) if params else query).as_string(conn)
    args = dict(params) if params else None
    return lambda: conn.execute(text, args, prepare=True).fetchall()


@contextmanager
def _read_only(conn: Connection[Any], timeout_s: float) -> Iterator[None]:
    """A read-only transaction with a statement timeout (``SET LOCAL``: gone with the transaction)."""
    with conn.transaction():
        conn.execute("SET TRANSACTION READ ONLY")
        conn.execute("SELECT set_config('statement_timeout', %s, true)", (f"{max(1, int(timeout_s * 1000))}ms",))
        yield


def _timed(run: Runner) -> tuple[float, list[tuple[Any, ...]]]:
    t0 = time.perf_counter()
    rows = run()
    return (time.perf_counter() - t0) * 1000.0, rows


def _figure(narrow_ms: float, wide_ms: float) -> dict[str, Any]:
    speedup = narrow_ms / wide_ms if wide_ms > 0 else math.inf
    faster = (1.0 - wide_ms / narrow_ms) * 100.0 if narrow_ms > 0 else 0.0
    return {"narrow_ms": round(narrow_ms, 3), "wide_ms": round(wide_ms, 3),
            "speedup": round(speedup, 2) if math.isfinite(speedup) else None, "faster_pct": round(faster, 1),
            "target_met": faster >= TARGET_FASTER_PCT}


def time_reader_queries(
    conn: Connection[Any], cfg: ShipWideConfig, wide: WideTable, *, source: Connection[Any] | None = None,
    repeats: int = DEFAULT_REPEATS, window: int = DEFAULT_WINDOW, upto_seq: int | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S, budget_s: float | None = None, queries: tuple[str, ...] = QUERIES,
) -> dict[str, Any]:
    """Run the readers' queries on both backends, check they answer the same, time them.

    ``conn`` reaches the wide table (the target), ``source`` the narrow table (default: ``conn``); both
    must have no transaction open, and are left so. ``wide`` is the ship's table as
    :func:`cutover.ship_wide.ddl.load_wide` returns it. Returns ``{"range": {...}, "latest": {...},
    "overall": {...}}``: per query ``narrow_ms``, ``wide_ms`` (medians of ``runs`` warm runs),
    ``speedup``, ``faster_pct``, ``target_met``, ``rows`` (``range`` also ``window``: its first and last
    time and how many); ``overall`` the same over the sums of the medians, with ``target_met`` true
    when met overall and by every query, ``target_faster_pct``, ``repeats`` and ``queries``.
    A query whose statement runs past ``timeout_s`` is ``{"skipped": why}``; with ``budget_s`` a query
    gets fewer timed runs (at least one) when ``repeats`` runs of both sides would take longer.
    Raises :class:`ReaderAnswersDiffer` when a query answers differently on the two sides.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    if window < 1:
        raise ValueError(f"window must be at least 1, got {window}")
    unknown = [q for q in queries if q not in QUERIES]
    if unknown:
        raise ValueError(f"unknown reader queries {unknown} (known: {', '.join(QUERIES)})")
    source = source if source is not None else conn
    for c in (conn, source):
        if c.info.transaction_status != TransactionStatus.IDLE:
            raise ValueError("time_reader_queries needs connections with no transaction open (commit first)")
    out: dict[str, Any] = {}
    base: dict[str, Any] = {} if upto_seq is None else {"upto": int(upto_seq)}
    bounds = window_bounds(conn, wide, window)
    if conn.info.transaction_status != TransactionStatus.IDLE:
        conn.commit()  # only the bounds query ran in it (the connection was idle, and is not autocommit)
    plan: list[tuple[str, Runner, Runner]] = []
    if "range" in queries:
        if bounds is not None:
            lo, hi, n = bounds
            narrow_q, wide_q = range_queries(cfg, wide, upto_seq=upto_seq)
            plan.append(("range", _statement(source, narrow_q, {**base, "lo": lo, "hi": hi}),
                         _statement(conn, wide_q, {"lo": lo, "hi": hi})))
            out["range"] = {"window": {"first": str(lo), "last": str(hi), "times": n}}
        else:
            out["range"] = {"skipped": "the wide table has no rows"}
    if "latest" in queries:
        params = {**base, "ship": wide.ship_id, "channels": [ch for ch, _ in _channels(wide)]}
        plan.append(("latest", _statement(source, latest_narrow_query(cfg, wide, upto_seq=upto_seq), params),
                     _LatestWide(conn, wide)))
        out["latest"] = {}
    times: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name, *_ in plan}
    conns = [source] if source is conn else [source, conn]
    with ExitStack() as stack:
        for c in conns:
            stack.enter_context(_read_only(c, timeout_s))
        for name, run_narrow, run_wide in plan:
            try:
                with ExitStack() as savepoints:  # a query over the timeout: the others still run
                    for c in conns:
                        savepoints.enter_context(c.transaction())
                    ms_n, a_rows = _timed(run_narrow)  # warm-up: this answer is the one compared
                    ms_w, b_rows = _timed(run_wide)
                    a, b = _as_text(a_rows, by_first=name == "latest"), _as_text(b_rows, by_first=name == "latest")
                    if a != b:
                        raise ReaderAnswersDiffer(
                            f"ship {wide.ship_id!r}, query {name!r} ({DESCRIPTIONS[name]}): the narrow and the wide "
                            f"table answer differently: {_first_difference(a, b)}")
                    out[name]["rows"] = len(a)
                    runs = repeats if budget_s is None else max(1, min(repeats, int(budget_s * 1000 // (ms_n + ms_w))))
                    for _ in range(runs):  # alternating, so a disturbance hits both sides alike
                        times[name][0].append(_timed(run_narrow)[0])
                        times[name][1].append(_timed(run_wide)[0])
            except errors.QueryCanceled:
                times.pop(name)
                out[name] = {"skipped": f"over the statement timeout ({timeout_s:g} s)"}
    total_n = total_w = 0.0
    for name, (tn, tw) in times.items():
        out[name]["runs"] = len(tn)
        med_n, med_w = statistics.median(tn), statistics.median(tw)
        total_n += med_n
        total_w += med_w
        out[name].update(_figure(med_n, med_w))
    overall: dict[str, Any] = _figure(total_n, total_w) if times else {"skipped": "no query ran"}
    if times:
        overall["target_met"] = bool(overall["target_met"] and all(out[n]["target_met"] for n in times))
    out["overall"] = {**overall, "target_faster_pct": TARGET_FASTER_PCT, "repeats": repeats,
                      "queries": [n for n in QUERIES if n in times]}
    return out


def format_reader_table(result: Mapping[str, Any], *, title: str | None = None) -> str:
    """A small text table of :func:`time_reader_queries`'s result: query, narrow ms, wide ms, speed-up."""
    head = ("query", "narrow ms", "wide ms", "speed-up", "faster", "rows")
    rows: list[tuple[str, ...]] = []
    for name in (*QUERIES, "overall"):
        r = result.get(name)
        if not isinstance(r, Mapping):
            continue
        label = "overall" if name == "overall" else f"{name}: {DESCRIPTIONS[name]}"
        if "narrow_ms" not in r:
            rows.append((label, "–", "–", "–", "–", str(r.get("skipped", ""))))
            continue
        speed = f"{r['speedup']:.2f}×" if r.get("speedup") is not None else "∞"
        rows.append((label, f"{r['narrow_ms']:.2f}", f"{r['wide_ms']:.2f}", speed,
                     f"{r['faster_pct']:.0f} %" + ("" if r.get("target_met") else " (< target)"),
                     "" if name == "overall" else f"{r.get('rows', '')}"))
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(head)]
    lines = [title] if title else []
    lines.append("  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(head, widths, strict=True))))
    lines.append("  ".join("-" * w for w in widths))
    for r in rows:
        lines.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))))
    overall = result.get("overall") or {}
    if "target_met" in overall:
        lines.append(f"target (issue #13): the wide table at least {TARGET_FASTER_PCT:.0f} % faster (half the time) "
                     f"on every query: {'met' if overall['target_met'] else 'NOT met'}")
    return "\n".join(lines)


def print_reader_table(result: Mapping[str, Any], *, title: str | None = None, file: IO[str] | None = None) -> None:
    """Print :func:`format_reader_table` (the benchmark calls this)."""
    print(format_reader_table(result, title=title), file=file or sys.stdout)
