"""Repair: re-sync the keys a diff found different, from source to target, in one transaction.

Only pairs registered with ``repair`` = ``delete_insert`` or ``upsert`` (table endpoints on both sides)
are repaired. Every column the target shares with the source (through the mapping) is copied:

* ``delete_insert`` — delete the target rows of every missing / extra / changed key, insert the
  source rows of the missing and changed keys;
* ``upsert`` — delete the extra keys, then ``INSERT … ON CONFLICT DO UPDATE`` (PostgreSQL) /
  ``ON DUPLICATE KEY UPDATE`` (MySQL) the source rows of the missing and changed keys.

Both are safe to repeat: a second run finds nothing to do. Values cross engines through their
kind (booleans, UTC timestamps). The caller re-checks the pair afterwards.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cutover.consistency.diff import DiffResult, Key, Side, open_side
from cutover.consistency.normalize import infer_kind
from cutover.consistency.spec import PairSpec, PairSpecError

log = logging.getLogger(__name__)
BATCH = 500


@dataclass
class RepairReport:
    """What a repair changed on the target."""

    pair: str
    deleted: int
    written: int


def _key_in(side: Side, cols: list[str], n: int) -> str:
    one = "(" + ", ".join(["%s"] * len(cols)) + ")"
    return f"({', '.join(cols)}) IN ({', '.join([one] * n)})"


def _convert(value: Any, kind: str, target: Side) -> Any:
    if value is None:
        return None
    if kind == "bool":
        return bool(value) if target.d.name == "postgres" else int(bool(value))
    if isinstance(value, dt.datetime) and value.tzinfo is not None and target.d.name == "mysql":
        return value.astimezone(dt.UTC).replace(tzinfo=None)
    if isinstance(value, uuid.UUID) and target.d.name == "mysql":  # a PostgreSQL uuid into a CHAR(36)
        return str(value)
    return value


def repair_pair(spec: PairSpec, result: DiffResult) -> RepairReport:
    """Copy the differing keys of ``result`` from ``spec``'s source to its target (one transaction)."""
    if spec.repair == "none":
        raise PairSpecError(f"pair {spec.name!r} does not allow repair (repair = 'none')")
    if spec.source.table is None or spec.target.table is None:
        raise PairSpecError(f"pair {spec.name!r}: repair needs table endpoints")
    fetch_keys: list[Key] = [*result.missing, *result.changed]
    drop_keys: list[Key] = list(result.extra) if spec.repair == "upsert" else [*result.extra, *fetch_keys]
    noop: list[int] = [0]

    with open_side(spec.source, lambda n: None) as src, _writable(spec, noop) as tgt:
        st, tt = src.column_types(), tgt.column_types()
        cols = [c for c in st if spec.target_name(c) in tt]
        kinds = {c: str(infer_kind(st[c], tt[spec.target_name(c)])).split(":")[0] for c in cols}
        for c, k in spec.kinds.items():
            kinds[c] = k.split(":")[0]
        skey = [src.d.quote(c) for c in spec.key]
        tkey = [tgt.d.quote(spec.target_name(c)) for c in spec.key]
        tcols = [tgt.d.quote(spec.target_name(c)) for c in cols]
        rows: list[tuple[Any, ...]] = []
        for i in range(0, len(fetch_keys), BATCH):
            batch = fetch_keys[i : i + BATCH]
            rows += src.query(
                f"SELECT {', '.join(src.d.quote(c) for c in cols)} FROM {src.from_clause} "
                f"WHERE {_key_in(src, skey, len(batch))}",
                [v for k in batch for v in k],
            )
        deleted = 0
        cur = tgt.conn.cursor()
        try:
            for i in range(0, len(drop_keys), BATCH):
                batch = drop_keys[i : i + BATCH]
                cur.execute(
                    f"DELETE FROM {tgt.from_clause} WHERE {_key_in(tgt, tkey, len(batch))}",
                    [_convert(v, kinds[c], tgt) for k in batch for v, c in zip(k, spec.key, strict=True)],
                )
                deleted += max(cur.rowcount, 0)
            if rows:
                marks = "(" + ", ".join(["%s"] * len(cols)) + ")"
                sql = f"INSERT INTO {tgt.from_clause} ({', '.join(tcols)}) VALUES {marks}"
                if spec.repair == "upsert":
                    sql += _upsert_clause(tgt, tkey, tcols)
                values = [tuple(_convert(v, kinds[c], tgt) for v, c in zip(r, cols, strict=True)) for r in rows]
                cur.executemany(sql, values)
        finally:
            cur.close()
        tgt.conn.commit()
    log.warning("repaired pair %s: %d target rows deleted, %d rows written from source", spec.name, deleted, len(rows))
    return RepairReport(pair=spec.name, deleted=deleted, written=len(rows))


def _upsert_clause(tgt: Side, tkey: Sequence[str], tcols: Sequence[str]) -> str:
    rest = [c for c in tcols if c not in tkey]
    if tgt.d.name == "postgres":
        sets = ", ".join(f"{c} = EXCLUDED.{c}" for c in rest) or f"{tkey[0]} = EXCLUDED.{tkey[0]}"
        return f" ON CONFLICT ({', '.join(tkey)}) DO UPDATE SET {sets}"
    sets = ", ".join(f"{c} = VALUES({c})" for c in rest) or f"{tkey[0]} = VALUES({tkey[0]})"
    return f" ON DUPLICATE KEY UPDATE {sets}"


class _writable:
    """The target opened for writing (UTC session), committed by the caller, rolled back on error."""

    def __init__(self, spec: PairSpec, counter: list[int]):
        self.spec = spec
        self.counter = counter
        self._cm: Any = None

    def __enter__(self) -> Side:
        from cutover.connections import mysql_connect, pg_connect, resolve
        from cutover.consistency.normalize import dialect_for

        ep = self.spec.target
        d = dialect_for(resolve(ep.conn_id).conn_type)
        if d.name == "postgres":
            self._cm = pg_connect(ep.conn_id)
            conn = self._cm.__enter__()
            conn.execute("SET TimeZone = 'UTC'")
        else:
            self._cm = mysql_connect(ep.conn_id)
            conn = self._cm.__enter__()
            cur = conn.cursor()
            cur.execute("SET time_zone = '+00:00', NAMES utf8mb4")
            cur.close()
        return Side(ep, conn, d, lambda n: None)

    def __exit__(self, *exc: Any) -> Any:
        return self._cm.__exit__(*exc)
