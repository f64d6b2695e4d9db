"""The diff engine: segment checksums computed inside each database, bisection down to the rows.

:func:`diff_pair` compares a source and a target (tables or queries, PostgreSQL and/or MySQL) over a
key range and/or a time window and returns a :class:`DiffResult` with every missing, extra and
changed key.

How (memory and transfer proportional to the differences, not the table):

1. **canonical row hash** — each row's key and columns are rendered canonically in SQL
   (:mod:`cutover.consistency.normalize`) and hashed to 60 bits with ``md5``, inside the database;
2. **one level = one ``GROUP BY`` per side** — a single integer key is cut into key-ordered segments
   by arithmetic (``(k - lo) DIV width``), so one aggregate query per side returns the ``count`` and
   ``sum`` of hashes of thousands of segments; both sides run concurrently (one thread each), in one
   consistent snapshot per side;
3. **bisection** — only segments whose (count, sum) differ are split again (index range scans of
   just those segments) until a segment holds at most ``leaf_rows`` rows; then the keys and row
   hashes of those leaves are fetched from both sides and compared in Python;
4. other keys (composite, text, time, uuid) are bucketed by a hash of their canonical text (engines
   order text differently, a hash does not): one ``GROUP BY`` bucket level, then the rows of
   differing buckets, matched by that canonical text too — so a key equal as its kind means it (an
   upper-case uuid in a MySQL CHAR(36) and the same uuid in PostgreSQL) is one key, never a missing
   plus an extra one; the keys reported are the values as each side holds them.

``bytes_transferred`` counts the bytes of every result row fetched (the same measure the benchmark
applies to reladiff and to the naive diff).
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import math
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from cutover.connections import mysql_connect, pg_connect, resolve
from cutover.consistency.normalize import Dialect, PhysicalType, dialect_for, infer_kind
from cutover.consistency.spec import Endpoint, Kind, PairSpec, PairSpecError
from cutover.identifiers import validate_identifier

log = logging.getLogger(__name__)

#: slices of the first level per connection (taken from a queue, so uneven keys still spread)
SLICES_PER_CONNECTION = 8
#: most segments one MySQL level query lists as a UNION ALL of range aggregates (instead of GROUP BY)
MYSQL_UNION_SEGMENTS = 4096

Key = tuple[Any, ...]


@dataclass
class DiffOptions:
    """Tuning knobs (defaults suit tables from thousands to hundreds of millions of rows)."""

    segment_rows: int = 1024  # target rows per first-level segment (range mode)
    max_segments: int = 16384  # most segments in one GROUP BY level
    factor: int = 32  # sub-segments per differing segment on deeper levels
    leaf_rows: int = 2048  # at or below this, fetch keys + row hashes of the segment
    bucket_rows: int = 256  # target rows per bucket (hash mode)
    max_buckets: int = 65536
    max_reported: int = 100_000  # most keys listed per kind (counts stay exact)
    parallel: int = 2  # connections per side sharing the first (full-scan) level of a range-mode diff


@dataclass
class DiffResult:
    """What a comparison found: missing (source only), extra (target only), changed keys, and costs."""

    pair: str
    mode: str
    source_rows: int = 0
    target_rows: int = 0
    missing: list[Key] = field(default_factory=list)
    extra: list[Key] = field(default_factory=list)
    changed: list[Key] = field(default_factory=list)
    bytes_transferred: int = 0
    queries: int = 0
    segments: int = 0
    levels: int = 0
    duration_s: float = 0.0
    window_start: dt.datetime | None = None
    window_end: dt.datetime | None = None
    key_range: tuple[Any, Any] | None = None
    columns: list[str] = field(default_factory=list)
    kinds: dict[str, str] = field(default_factory=dict)
    source_latest: Any = None  # max(window column) per side, in the same snapshot as the diff
    target_latest: Any = None

    @property
    def lag_s(self) -> float | None:
        """How far the target's newest row trails the source's (window column), in seconds or units."""
        a, b = self.source_latest, self.target_latest
        if a is None or b is None:
            return None
        if isinstance(a, dt.datetime) and isinstance(b, dt.datetime):
            return (_utc(a) - _utc(b)).total_seconds()
        try:
            return float(a) - float(b)
        except (TypeError, ValueError):
            return None

    @property
    def equal(self) -> bool:
        """True when no key is missing, extra or changed."""
        return not (self.missing or self.extra or self.changed)

    @property
    def rows_checked(self) -> int:
        """Rows covered by the comparison (the larger side)."""
        return max(self.source_rows, self.target_rows)

    @property
    def differences(self) -> int:
        """missing + extra + changed."""
        return len(self.missing) + len(self.extra) + len(self.changed)

    def summary(self) -> str:
        """One log line."""
        return (
            f"{self.pair}: {'EQUAL' if self.equal else 'DIFFERENT'} — {self.rows_checked} rows, "
            f"{len(self.missing)} missing, {len(self.extra)} extra, {len(self.changed)} changed "
            f"({self.mode} mode, {self.segments} segments, {self.levels} levels, {self.queries} queries, "
            f"{self.bytes_transferred} bytes, {self.duration_s:.2f} s)"
        )

    def details(self, max_keys: int = 1000) -> dict[str, Any]:
        """A JSON-able report (the first ``max_keys`` keys of each kind)."""

        def keys(ks: list[Key]) -> list[Any]:
            return [_jsonable(k[0] if len(k) == 1 else list(k)) for k in ks[:max_keys]]

        return {
            "mode": self.mode,
            "source_rows": self.source_rows,
            "target_rows": self.target_rows,
            "missing_keys": keys(self.missing),
            "extra_keys": keys(self.extra),
            "changed_keys": keys(self.changed),
            "bytes_transferred": self.bytes_transferred,
            "queries": self.queries,
            "segments": self.segments,
            "levels": self.levels,
            "columns": self.columns,
            "kinds": self.kinds,
            "key_range": [_jsonable(v) for v in self.key_range] if self.key_range else None,
            "lag_s": self.lag_s,
            "source_latest": _jsonable(self.source_latest),
            "target_latest": _jsonable(self.target_latest),
        }


def _utc(v: dt.datetime) -> dt.datetime:
    return v.astimezone(dt.UTC).replace(tzinfo=None) if v.tzinfo else v


def _jsonable(v: Any) -> Any:
    if isinstance(v, list):
        return [_jsonable(x) for x in v]
    if isinstance(v, (dt.datetime, dt.date, dt.timedelta, Decimal, uuid.UUID)):
        return str(v)
    if isinstance(v, bytes):
        return v.hex()
    return v


def row_bytes(rows: Sequence[Sequence[Any]]) -> int:
    """Approximate wire size of result rows: 8 per number/time, the UTF-8 length of text."""
    n = 0
    for row in rows:
        for v in row:
            if v is None:
                n += 1
            elif isinstance(v, (int, float, dt.datetime, dt.date)):
                n += 8
            elif isinstance(v, (bytes, bytearray, memoryview)):
                n += len(v)
            else:
                n += len(str(v).encode())
    return n


# --- one side: connection, introspection, SQL ------------------------------------------------------


class Side:
    """One endpoint's open connection (in a read-only snapshot) and its SQL building blocks."""

    def __init__(self, endpoint: Endpoint, conn: Any, dialect: Dialect, counter: Callable[[int], None]):
        self.endpoint = endpoint
        self.conn = conn
        self.d = dialect
        self._count = counter
        self.queries = 0
        self.snapshot: str | None = None
        self.helpers: list[Side] = []  # extra connections for the first level (same snapshot where possible)

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run ``sql`` and fetch all rows, counting them into the transfer total."""
        cur = self.conn.cursor()
        try:
            cur.execute(sql, tuple(params))
            rows = list(cur.fetchall())
        finally:
            cur.close()
        self.queries += 1
        self._count(row_bytes(rows))
        return rows

    def table_parts(self) -> tuple[str | None, str]:
        """(schema or database, table) of a table endpoint."""
        assert self.endpoint.table is not None
        parts = self.endpoint.table.split(".", 1)  # "schema.table": a table name may hold dots, a schema name not
        if len(parts) == 1:
            return None, validate_identifier(parts[0], dialect=self.d.name)  # type: ignore[arg-type]
        if len(parts) == 2:
            return (
                validate_identifier(parts[0], dialect=self.d.name),  # type: ignore[arg-type]
                validate_identifier(parts[1], dialect=self.d.name),  # type: ignore[arg-type]
            )
        raise PairSpecError(f"table {self.endpoint.table!r} must be 'table' or 'schema.table'")  # pragma: no cover

    @property
    def from_clause(self) -> str:
        """The quoted table, or the query as a derived table."""
        if self.endpoint.query is not None:
            return f"({self.endpoint.query}) AS cutover_q"
        schema, table = self.table_parts()
        return (self.d.quote(schema) + "." if schema else "") + self.d.quote(table)

    def column_types(self) -> dict[str, PhysicalType]:
        """The table's columns and their physical types ({} for a query endpoint)."""
        if self.endpoint.table is None:
            return {}
        schema, table = self.table_parts()
        if self.d.name == "postgres":
            rows = self.query(
                """SELECT column_name, data_type, numeric_scale, data_type, '', datetime_precision,
                          character_maximum_length
                   FROM information_schema.columns
                   WHERE table_schema = coalesce(%s, current_schema()) AND table_name = %s ORDER BY ordinal_position""",
                (schema, table),
            )
        else:
            rows = self.query(
                """SELECT COLUMN_NAME, DATA_TYPE, NUMERIC_SCALE, COLUMN_TYPE, CHARACTER_SET_NAME, DATETIME_PRECISION,
                          NULL
                   FROM information_schema.COLUMNS
                   WHERE TABLE_SCHEMA = COALESCE(%s, DATABASE()) AND TABLE_NAME = %s ORDER BY ORDINAL_POSITION""",
                (schema, table),
            )
        if not rows:
            raise PairSpecError(f"table {self.endpoint.label} does not exist or has no columns")
        return {
            str(r[0]): PhysicalType(
                str(r[1]), int(r[2]) if r[2] is not None else None, str(r[3] or ""), str(r[4] or ""),
                int(r[5]) if r[5] is not None else None, int(r[6]) if r[6] is not None else None,
            )
            for r in rows
        }


@contextmanager
def open_side(endpoint: Endpoint, counter: Callable[[int], None], snapshot: str | None = None) -> Iterator[Side]:
    """Open an endpoint in a read-only consistent snapshot, with UTC / ISO / utf8mb4 sessions.

    ``snapshot`` (PostgreSQL) joins a snapshot exported by another connection, so helper
    connections see exactly the same data as the main one.
    """
    info = resolve(endpoint.conn_id)
    dialect = dialect_for(info.conn_type)
    if dialect.name == "postgres":
        from psycopg import IsolationLevel

        with pg_connect(endpoint.conn_id) as conn:
            conn.isolation_level = IsolationLevel.REPEATABLE_READ
            conn.read_only = True
            conn.execute("SET TimeZone = 'UTC'; SET DateStyle = 'ISO, YMD'; SET client_encoding = 'UTF8'; "
                         "SET extra_float_digits = 3")  # the shortest exact float text (PostgreSQL ≥ 12)
            if snapshot:
                conn.execute(f"SET TRANSACTION SNAPSHOT '{snapshot}'")
            side = Side(endpoint, conn, dialect, counter)
            if snapshot is None:
                side.snapshot = str(conn.execute("SELECT pg_export_snapshot()").fetchone()[0])
            yield side
            conn.rollback()
    else:
        # a "database.table" endpoint names its database: the connection's default database may not exist
        named = endpoint.table is not None and "." in endpoint.table
        with mysql_connect(endpoint.conn_id, database="" if named else None) as conn:
            cur = conn.cursor()
            cur.execute("SET time_zone = '+00:00', NAMES utf8mb4")
            cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
            cur.close()
            yield Side(endpoint, conn, dialect, counter)
            conn.rollback()


@dataclass
class _Plan:
    """The SQL expressions of one side, compiled from the pair and both sides' types."""

    key: list[str]  # quoted key columns
    key_text: str  # canonical key text
    row_hash: str  # 60-bit hash of the canonical row
    window: str | None  # quoted window column
    family: str  # hash family shared by both sides


def _plan(spec: PairSpec, src: Side, tgt: Side) -> tuple[_Plan, _Plan, list[str], dict[str, Kind]]:
    st, tt = src.column_types(), tgt.column_types()
    if spec.columns:
        columns = list(spec.columns)
    elif st:
        columns = [c for c in st if c not in spec.key and (not tt or spec.target_name(c) in tt)]
    else:
        raise PairSpecError(f"pair {spec.name!r}: a query endpoint needs its compared columns listed")
    kinds: dict[str, Kind] = {}
    for c in [*spec.key, *columns]:
        if st and c not in st:
            raise PairSpecError(f"pair {spec.name!r}: column {c!r} not in source {spec.source.label}")
        if tt and spec.target_name(c) not in tt:
            raise PairSpecError(
                f"pair {spec.name!r}: column {spec.target_name(c)!r} not in target {spec.target.label}"
            )
        if c in spec.kinds:
            kinds[c] = Kind.parse(spec.kinds[c])
        elif st or tt:
            kinds[c] = infer_kind(st.get(c), tt.get(spec.target_name(c)))
        else:
            raise PairSpecError(f"pair {spec.name!r}: column {c!r} needs a kind (query endpoints)")

    family = "pg" if src.d.name == tgt.d.name == "postgres" else "md5"

    def build(side: Side, types: dict[str, PhysicalType], name: Callable[[str], str]) -> _Plan:
        q = side.d.quote
        key_can = [side.d.canonical(q(name(c)), kinds[c], types.get(name(c))) for c in spec.key]
        col_can = [side.d.canonical(q(name(c)), kinds[c], types.get(name(c))) for c in columns]
        key_text = side.d.row_text(key_can)
        return _Plan(
            key=[q(name(c)) for c in spec.key],
            key_text=key_text,
            row_hash=side.d.hash60(side.d.row_text(key_can + col_can), family),
            window=q(name(spec.window_column)) if spec.window_column else None,
            family=family,
        )

    return build(src, st, lambda c: c), build(tgt, tt, spec.target_name), columns, kinds


# --- the engine ------------------------------------------------------------------------------------


class _Engine:
    def __init__(self, spec: PairSpec, src: Side, tgt: Side, pool: ThreadPoolExecutor, opts: DiffOptions,
                 window: tuple[dt.datetime | None, dt.datetime | None], key_range: tuple[Any, Any] | None):
        self.spec, self.src, self.tgt, self.pool, self.o = spec, src, tgt, pool, opts
        self.window = window
        self.key_range = key_range
        self.ps, self.pt, self.columns, self.kinds = _plan(spec, src, tgt)
        self.result = DiffResult(pair=spec.name, mode="", window_start=window[0], window_end=window[1],
                                 columns=self.columns, kinds={c: str(k) for c, k in self.kinds.items()})

    def both(self, fn: Callable[[Side, _Plan], Any]) -> tuple[Any, Any]:
        """Run ``fn`` on both sides concurrently."""
        fs = self.pool.submit(fn, self.src, self.ps)
        ft = self.pool.submit(fn, self.tgt, self.pt)
        return fs.result(), ft.result()

    def where(self, p: _Plan, extra: list[str] | None = None) -> tuple[str, list[Any]]:
        conds: list[str] = list(extra or [])
        params: list[Any] = []
        if p.window and self.window[0] is not None:
            conds.append(f"{p.window} >= %s")
            params.append(self.window[0])
        if p.window and self.window[1] is not None:
            conds.append(f"{p.window} < %s")
            params.append(self.window[1])
        return (" WHERE " + " AND ".join(conds)) if conds else "", params

    def run(self) -> DiffResult:
        if self.spec.window_column:
            def latest(side: Side, p: _Plan) -> Any:
                return side.query(f"SELECT max({p.window}) FROM {side.from_clause}")[0][0]

            self.result.source_latest, self.result.target_latest = self.both(latest)
        int_key = len(self.spec.key) == 1 and self.kinds[self.spec.key[0]].name == "int"
        if int_key:
            self.result.mode = "range"
            self._range_mode()
        else:
            if self.key_range is not None:
                raise PairSpecError(f"pair {self.spec.name!r}: key ranges need a single integer key")
            self.result.mode = "hash"
            self._hash_mode()
        return self.result

    # range mode: a single integer key ------------------------------------------------------------

    def _bounds(self) -> tuple[int, int] | None:
        def q(side: Side, p: _Plan) -> tuple[Any, Any]:
            extra, params = [], []
            if self.key_range is not None:
                extra = [f"{p.key[0]} >= %s", f"{p.key[0]} <= %s"]
                params = [int(self.key_range[0]), int(self.key_range[1])]
            w, wp = self.where(p, extra)
            return side.query(f"SELECT min({p.key[0]}), max({p.key[0]}) FROM {side.from_clause}{w}", params + wp)[0]

        (smin, smax), (tmin, tmax) = self.both(q)
        lows = [int(v) for v in (smin, tmin) if v is not None]
        highs = [int(v) for v in (smax, tmax) if v is not None]
        if not lows:
            return None
        return min(lows), max(highs)

    def _sub_level(self, side: Side, p: _Plan, *, a: int, b: int, width: int) -> dict[int, tuple[int, int]]:
        return self._levels(side, p, a, b, width)

    def _levels(
        self, side: Side, p: _Plan, lo: int, hi: int, width: int, start: int | None = None
    ) -> dict[int, tuple[int, int]]:
        """count and sum of row hashes per segment ``(key - lo) DIV width`` of keys in [start or lo, hi]."""
        first = ((lo if start is None else start) - lo) // width
        last = (hi - lo) // width
        if side.d.name == "mysql" and side.endpoint.query is None and last - first < MYSQL_UNION_SEGMENTS:
            return self._levels_union(side, p, lo, hi, width, first, last)
        seg = side.d.int_div(f"{p.key[0]} - CAST(%s AS {_bigint(side)})", f"CAST(%s AS {_bigint(side)})")
        w, wp = self.where(p, [f"{p.key[0]} >= %s", f"{p.key[0]} <= %s"])
        rows = side.query(
            f"SELECT {seg} AS seg, count(*), sum({p.row_hash}) FROM {side.from_clause}{w} GROUP BY 1",
            [lo, width, lo if start is None else start, hi, *wp],
        )
        return {int(r[0]): (int(r[1]), int(r[2] or 0)) for r in rows}

    def _levels_union(
        self, side: Side, p: _Plan, lo: int, hi: int, width: int, first: int, last: int
    ) -> dict[int, tuple[int, int]]:
        """:meth:`_levels` as one ``UNION ALL`` of range aggregates, one per segment (MySQL/MariaDB).

        MariaDB groups ``(key - lo) DIV width`` through a temporary table; a range scan per segment
        on the primary key needs none, and is about a fifth cheaper. Empty segments are dropped, as
        a ``GROUP BY`` would.
        """
        parts: list[str] = []
        params: list[Any] = []
        for s in range(first, last + 1):
            a, b = lo + s * width, min(hi, lo + (s + 1) * width - 1)
            w, wp = self.where(p, [f"{p.key[0]} >= {int(a)}", f"{p.key[0]} <= {int(b)}"])
            parts.append(f"SELECT {int(s)}, count(*), sum({p.row_hash}) FROM {side.from_clause}{w}")
            params += wp
        rows = side.query(" UNION ALL ".join(parts), params)
        return {int(r[0]): (int(r[1]), int(r[2] or 0)) for r in rows if int(r[1])}

    def _range_mode(self) -> None:
        bounds = self._bounds()
        self.result.key_range = bounds
        if bounds is None:
            return
        lo, hi = bounds
        span = hi - lo + 1
        nseg = max(1, min(self.o.max_segments, math.ceil(span / self.o.segment_rows)))
        todo: list[tuple[int, int, int]] = [(lo, hi, nseg)]  # ranges to split, and into how many
        leaves: list[tuple[int, int]] = []
        first = True
        while todo:
            self.result.levels += 1
            nxt: list[tuple[int, int, int]] = []
            for a, b, n in todo:
                width = max(1, math.ceil((b - a + 1) / n))
                if first:
                    ss, ts = self._level_parallel(a, b, width, n)
                else:
                    ss, ts = self.both(functools.partial(self._sub_level, a=a, b=b, width=width))
                if first:
                    self.result.source_rows = sum(c for c, _ in ss.values())
                    self.result.target_rows = sum(c for c, _ in ts.values())
                    self.result.segments = len(set(ss) | set(ts))
                for s in sorted(set(ss) | set(ts)):
                    if ss.get(s) == ts.get(s):
                        continue
                    sa = a + s * width
                    sb = min(b, sa + width - 1)
                    rows = max(ss.get(s, (0, 0))[0], ts.get(s, (0, 0))[0])
                    if rows <= self.o.leaf_rows or sa == sb:
                        leaves.append((sa, sb))
                    else:
                        sub = max(2, min(self.o.factor, math.ceil(rows / self.o.leaf_rows) * 2))
                        nxt.append((sa, sb, sub))
            first = False
            todo = nxt
        for i in range(0, len(leaves), 200):
            self._range_leaves(leaves[i : i + 200])

    def _level_parallel(self, a: int, b: int, width: int, n: int) -> tuple[dict[int, Any], dict[int, Any]]:
        """One level over [a, b], cut into contiguous slices of whole segments that the connections of
        each side take from a shared queue.

        More slices than connections: keys are rarely spread evenly over [a, b] (a few far-away keys
        leave most of the range empty), and with one slice per connection one of them would get all
        the rows while the other idles. With a queue an empty slice costs one cheap query.
        """
        k = 1 + min(len(self.src.helpers), len(self.tgt.helpers))
        m = min(n, k * SLICES_PER_CONNECTION)
        per = math.ceil(n / m)
        slices = [(a + i * per * width, min(b, a + min(n, (i + 1) * per) * width - 1))
                  for i in range(m) if i * per < n]

        def drain(side: Side, p: _Plan, todo: deque[tuple[int, int]]) -> dict[int, tuple[int, int]]:
            out: dict[int, tuple[int, int]] = {}
            while True:
                try:
                    sa, sb = todo.popleft()  # atomic: each slice goes to one connection
                except IndexError:
                    return out
                out.update(self._levels(side, p, a, sb, width, start=sa))

        futures = []
        for main, plan in ((self.src, self.ps), (self.tgt, self.pt)):
            todo = deque(slices)  # one queue per side: each side reads every slice once
            futures.append([self.pool.submit(drain, c, plan, todo) for c in ([main] + main.helpers)[:k]])
        ss: dict[int, Any] = {}
        ts: dict[int, Any] = {}
        for f in futures[0]:
            ss.update(f.result())
        for f in futures[1]:
            ts.update(f.result())
        return ss, ts

    def _range_leaves(self, ranges: list[tuple[int, int]]) -> None:
        def q(side: Side, p: _Plan) -> dict[Any, int]:
            cond = "(" + " OR ".join(f"{p.key[0]} BETWEEN %s AND %s" for _ in ranges) + ")"
            w, wp = self.where(p, [cond])
            params = [v for r in ranges for v in r] + wp
            rows = side.query(f"SELECT {p.key[0]}, {p.row_hash} FROM {side.from_clause}{w}", params)
            return {int(r[0]): int(r[1]) for r in rows}

        s, t = self.both(q)
        self._compare({(k,): (h, (k,)) for k, h in s.items()}, {(k,): (h, (k,)) for k, h in t.items()})

    def _compare(self, s: dict[Any, tuple[int, Key]], t: dict[Any, tuple[int, Key]]) -> None:
        r, cap = self.result, self.o.max_reported
        for k in sorted(s.keys() - t.keys(), key=_sort_key):
            if len(r.missing) < cap:
                r.missing.append(s[k][1])
        for k in sorted(t.keys() - s.keys(), key=_sort_key):
            if len(r.extra) < cap:
                r.extra.append(t[k][1])
        for k in sorted(s.keys() & t.keys(), key=_sort_key):
            if s[k][0] != t[k][0] and len(r.changed) < cap:
                r.changed.append(s[k][1])

    # hash mode: any key ----------------------------------------------------------------------------

    def _hash_mode(self) -> None:
        def count(side: Side, p: _Plan) -> int:
            w, wp = self.where(p)
            return int(side.query(f"SELECT count(*) FROM {side.from_clause}{w}", wp)[0][0])

        sc, tc = self.both(count)
        self.result.source_rows, self.result.target_rows = sc, tc
        if sc == 0 and tc == 0:
            return
        n = max(1, min(self.o.max_buckets, max(sc, tc) // self.o.bucket_rows))
        self.result.levels = 1

        def level(side: Side, p: _Plan) -> dict[int, tuple[int, int]]:
            w, wp = self.where(p)
            rows = side.query(
                f"SELECT {side.d.bucket(p.key_text, n, p.family)} AS b, count(*), sum({p.row_hash}) "
                f"FROM {side.from_clause}{w} GROUP BY 1",
                wp,
            )
            return {int(r[0]): (int(r[1]), int(r[2] or 0)) for r in rows}

        ss, ts = self.both(level)
        self.result.segments = len(set(ss) | set(ts))
        differing = sorted(b for b in set(ss) | set(ts) if ss.get(b) != ts.get(b))
        if not differing:
            return
        self.result.levels = 2
        for i in range(0, len(differing), 1000):
            chunk = differing[i : i + 1000]

            def fetch(side: Side, p: _Plan, chunk: list[int] = chunk) -> dict[str, tuple[int, Key]]:
                marks = ", ".join(["%s"] * len(chunk))
                w, wp = self.where(p, [f"{side.d.bucket(p.key_text, n, p.family)} IN ({marks})"])
                rows = side.query(
                    f"SELECT {p.key_text}, {p.row_hash}, {', '.join(p.key)} FROM {side.from_clause}{w}",
                    [*chunk, *wp],
                )
                return {str(r[0]): (int(r[1]), tuple(r[2:])) for r in rows}

            s, t = self.both(fetch)
            self._compare(s, t)


def _bigint(side: Side) -> str:
    return "bigint" if side.d.name == "postgres" else "SIGNED"


def _sort_key(k: Any) -> Any:
    return (0, k) if not isinstance(k, str) else (1, k)


@contextmanager
def _source(spec: PairSpec, counter: Callable[[int], None], session: Any | None) -> Iterator[Side]:
    """The source side: a new read-only snapshot (:func:`open_side`), or ``session`` — a MySQL connection the
    caller already holds in a consistent snapshot (e.g. :func:`cutover.binlog.consistent_snapshot`, a fence),
    used as it is: its session gets UTC and utf8mb4, and its transaction is left open (the caller ends it)."""
    if session is None:
        with open_side(spec.source, counter) as side:
            yield side
        return
    info = resolve(spec.source.conn_id)
    dialect = dialect_for(info.conn_type)
    if dialect.name != "mysql":
        raise PairSpecError(f"pair {spec.name!r}: an open source session is supported for MySQL sources only")
    cur = session.cursor()
    try:
        cur.execute("SET time_zone = '+00:00', NAMES utf8mb4")
    finally:
        cur.close()
    yield Side(spec.source, session, dialect, counter)


def diff_pair(
    spec: PairSpec,
    *,
    window_start: dt.datetime | None = None,
    window_end: dt.datetime | None = None,
    key_range: tuple[Any, Any] | None = None,
    options: DiffOptions | None = None,
    source_session: Any | None = None,
) -> DiffResult:
    """Compare ``spec``'s source and target over ``[window_start, window_end)`` and/or a key range.

    Naive datetimes are UTC. A window needs the pair's ``window_column``; without window and key
    range the whole pair is compared (a full sweep). ``source_session``: an open MySQL connection already
    inside a consistent snapshot (a fence: :func:`cutover.binlog.consistent_snapshot`) that the source side
    reads through instead of opening its own — so the source is compared at the moment the caller chose;
    it is used alone (no helper connections: another connection could not join that snapshot) and its
    transaction is left open. Raises :class:`PairSpecError` for a source session on a PostgreSQL source.
    """
    if (window_start or window_end) and not spec.window_column:
        raise PairSpecError(f"pair {spec.name!r} has no window column; it can only be compared by key range")
    t0 = time.perf_counter()
    transferred = [0]

    def counter(n: int) -> None:
        transferred[0] += n  # each side's thread adds its own counts; ints are swapped under the GIL

    opts = options or DiffOptions()
    helpers = max(0, opts.parallel - 1) if key_range is not None or len(spec.key) == 1 else 0
    if source_session is not None:
        helpers = 0  # no second connection can join the caller's MySQL snapshot
    with ExitStack() as stack:
        pool = stack.enter_context(ThreadPoolExecutor(max_workers=2 * (1 + helpers), thread_name_prefix="cutover-diff"))
        fs = pool.submit(lambda: stack.enter_context(_source(spec, counter, source_session)))
        tgt = stack.enter_context(open_side(spec.target, counter))
        src = fs.result()
        for main in (src, tgt):
            for _ in range(helpers):
                main.helpers.append(stack.enter_context(open_side(main.endpoint, counter, main.snapshot)))
        engine = _Engine(spec, src, tgt, pool, opts, (window_start, window_end), key_range)
        result = engine.run()
        result.queries = sum(s.queries for s in (src, tgt, *src.helpers, *tgt.helpers))
    result.bytes_transferred = transferred[0]
    result.duration_s = time.perf_counter() - t0
    log.info("consistency %s", result.summary())
    return result


def diff_keys(spec: PairSpec, keys: Sequence[Key], *, source_session: Any | None = None,
              chunk: int = 1000) -> DiffResult:
    """Compare only the rows of ``keys`` (tuples of the source's key values, in ``spec.key`` order) on both
    sides: per chunk of keys, one ``SELECT`` of key text and row hash per side (``WHERE (key) IN (…)``), matched
    by the canonical key text as :func:`diff_pair` does. A key neither side has is not counted. Memory and
    transfer grow with the keys, not the table: the re-proof of what changed since a full proof.

    ``source_session``: as for :func:`diff_pair`. ``source_rows`` / ``target_rows``: rows of those keys found
    per side; ``mode`` is ``"keys"``.
    """
    t0 = time.perf_counter()
    transferred = [0]

    def counter(n: int) -> None:
        transferred[0] += n

    uniq = list(dict.fromkeys(tuple(k) for k in keys))
    with ExitStack() as stack:
        pool = stack.enter_context(ThreadPoolExecutor(max_workers=2, thread_name_prefix="cutover-diff"))
        src = stack.enter_context(_source(spec, counter, source_session))
        tgt = stack.enter_context(open_side(spec.target, counter))
        engine = _Engine(spec, src, tgt, pool, DiffOptions(), (None, None), None)
        engine.result.mode = "keys"
        n = len(spec.key)
        for i in range(0, len(uniq), max(1, chunk)):
            part = uniq[i:i + chunk]

            def fetch(side: Side, p: _Plan, part: list[Key] = part) -> dict[str, tuple[int, Key]]:
                row = "(" + ", ".join(["%s"] * n) + ")"
                cond = f"({', '.join(p.key)}) IN ({', '.join([row] * len(part))})"
                rows = side.query(f"SELECT {p.key_text}, {p.row_hash}, {', '.join(p.key)} FROM {side.from_clause} "
                                  f"WHERE {cond}", [v for k in part for v in k])
                return {str(r[0]): (int(r[1]), tuple(r[2:])) for r in rows}

            s, t = engine.both(fetch)
            engine.result.source_rows += len(s)
            engine.result.target_rows += len(t)
            engine._compare(s, t)
        result = engine.result
        result.queries = src.queries + tgt.queries
    result.bytes_transferred = transferred[0]
    result.duration_s = time.perf_counter() - t0
    log.info("consistency (keys) %s", result.summary())
    return result
