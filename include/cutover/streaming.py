"""Streaming readers and COPY writers with memory bounded by the chunk size.

* :func:`pg_stream` / :func:`mysql_stream` read a query through a server-side cursor, a chunk at a
  time, so a table of any size is never held in memory;
* :func:`pg_keyset_chunks` pages a table by its key (``WHERE (k1, k2) > (…) ORDER BY k1, k2 LIMIT n``):
  every chunk is its own short query, so a resumed copy starts right after the last committed key;
* :func:`copy_rows` loads rows with ``COPY … FROM STDIN`` and checks the count it loaded;
  :func:`copy_csv` does the same for a CSV buffer already written (pyarrow), in 1 MiB writes;
* :class:`Progress` logs rows done / total and rows per second to the task log.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from psycopg import Connection, sql

from cutover.identifiers import pg_ident, with_params

log = logging.getLogger(__name__)


class CopyCountMismatch(RuntimeError):
    """COPY loaded a different number of rows than it was given."""


def pg_stream(
    conn: Connection[Any], query: sql.Composed | sql.SQL | str, params: Sequence[Any] | dict[str, Any] | None = None,
    *, chunk_rows: int = 10_000, name: str = "cutover_stream",
) -> Iterator[list[tuple[Any, ...]]]:
    """Yield lists of at most ``chunk_rows`` rows from a PostgreSQL server-side (named) cursor.

    Must run inside a transaction (the default for a non-autocommit psycopg connection).
    """
    with conn.cursor(name=name) as cur:
        cur.itersize = chunk_rows
        cur.execute(with_params(query) if params and isinstance(query, sql.Composable) else query, params)
        while True:
            rows = cur.fetchmany(chunk_rows)
            if not rows:
                return
            yield rows


def mysql_stream(
    conn: Any, query: str, params: Sequence[Any] | None = None, *, chunk_rows: int = 10_000
) -> Iterator[list[tuple[Any, ...]]]:
    """Yield lists of at most ``chunk_rows`` rows from MySQL through an unbuffered (SSCursor) cursor."""
    import MySQLdb.cursors

    cur = conn.cursor(MySQLdb.cursors.SSCursor)
    try:
        cur.execute(query, params)
        while True:
            rows = cur.fetchmany(chunk_rows)
            if not rows:
                return
            yield list(rows)
    finally:
        cur.close()


def pg_keyset_chunks(
    conn: Connection[Any],
    table: sql.Composable,
    columns: Sequence[str],
    key_columns: Sequence[str],
    *,
    chunk_rows: int = 10_000,
    after: Sequence[Any] | None = None,
    where: sql.Composable | None = None,
    where_params: Sequence[Any] = (),
) -> Iterator[tuple[list[tuple[Any, ...]], tuple[Any, ...]]]:
    """Page ``table`` by ``key_columns``; yields ``(rows, last_key)`` per chunk, starting after ``after``.

    ``columns`` must include every key column. Each chunk is one indexed range query, so the reader
    holds no long transaction and a resume costs nothing.
    """
    key_idx = [list(columns).index(k) for k in key_columns]
    cols = sql.SQL(", ").join(pg_ident(c) for c in columns)
    keys = sql.SQL(", ").join(pg_ident(k) for k in key_columns)
    holders = sql.SQL(", ").join(sql.Placeholder() * len(key_columns))
    last = tuple(after) if after is not None else None
    while True:
        conds: list[sql.Composable] = []
        params: list[Any] = []
        if where is not None:
            conds.append(where)
            params.extend(where_params)
        if last is not None:
            conds.append(sql.SQL("({}) > ({})").format(keys, holders))
            params.extend(last)
        cond = sql.SQL(" WHERE ") + sql.SQL(" AND ").join(conds) if conds else sql.SQL("")
        q = sql.SQL("SELECT {} FROM {}{} ORDER BY {} LIMIT {}").format(
            cols, table, cond, keys, sql.Literal(chunk_rows)
        )
        rows = conn.execute(with_params(q), params).fetchall()
        if not rows:
            return
        last = tuple(rows[-1][i] for i in key_idx)
        yield rows, last
        if len(rows) < chunk_rows:
            return


def copy_rows(
    conn: Connection[Any], table: sql.Composable, columns: Sequence[str], rows: Iterable[Sequence[Any]],
    *, expected: int | None = None,
) -> int:
    """``COPY table (columns) FROM STDIN`` the rows; returns the count and checks it against ``expected``.

    A COPY that loaded nothing can look like success: the count PostgreSQL reports is compared with
    what was sent, and a mismatch raises :class:`CopyCountMismatch`.
    """
    cols = sql.SQL(", ").join(pg_ident(c) for c in columns)
    sent = 0
    with conn.cursor() as cur:
        with cur.copy(sql.SQL("COPY {} ({}) FROM STDIN").format(table, cols)) as cp:
            for row in rows:
                cp.write_row(row)
                sent += 1
        loaded = cur.rowcount
    if loaded != sent or (expected is not None and loaded != expected):
        raise CopyCountMismatch(f"COPY into {table!r} loaded {loaded} rows, sent {sent}, expected {expected}")
    return loaded


def copy_csv(
    conn: Connection[Any], table: sql.Composable, columns: Sequence[str], data: bytes | memoryview, *, expected: int,
) -> int:
    """``COPY table (columns) FROM STDIN (FORMAT csv)`` a CSV buffer of ``expected`` rows; checks the count."""
    cols = sql.SQL(", ").join(pg_ident(c) for c in columns)
    view = memoryview(data)
    with conn.cursor() as cur:
        with cur.copy(sql.SQL("COPY {} ({}) FROM STDIN (FORMAT csv)").format(table, cols)) as cp:
            for off in range(0, len(view), 1 << 20):
                cp.write(view[off : off + (1 << 20)])
        loaded = cur.rowcount
    if loaded != expected:
        raise CopyCountMismatch(f"COPY into {table!r} loaded {loaded} rows, sent {expected}")
    return loaded


class Progress:
    """Logs ``rows done / total (pct), rows/s`` at most every ``every_s`` seconds, and at the end."""

    def __init__(self, label: str, total: int | None, *, every_s: float = 5.0, logger: logging.Logger | None = None):
        self.label = label
        self.total = total
        self.every_s = every_s
        self.done = 0
        self.log = logger or log
        self.started = time.monotonic()
        self._last = self.started

    def add(self, n: int) -> None:
        """Count ``n`` more rows and log if the interval passed."""
        self.done += n
        now = time.monotonic()
        if now - self._last >= self.every_s:
            self._last = now
            self.log.info("%s", self.line())

    @property
    def rate(self) -> float:
        """Rows per second since the start."""
        return self.done / max(time.monotonic() - self.started, 1e-9)

    def line(self) -> str:
        """The progress line as logged."""
        if self.total:
            pct = 100.0 * self.done / self.total
            return f"{self.label}: {self.done:,} / {self.total:,} rows ({pct:.1f} %), {self.rate:,.0f} rows/s"
        return f"{self.label}: {self.done:,} rows, {self.rate:,.0f} rows/s"

    def finish(self) -> None:
        """Log the final line."""
        self.log.info("%s (done in %.1f s)", self.line(), time.monotonic() - self.started)
