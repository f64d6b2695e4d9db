"""What a pipeline supplies to the shared life cycle: its config and the hooks for its kind of unit.

A pipeline module exposes one :class:`PipelineSpec`; the DAG files name it by import path (e.g.
``"cutover.ship_wide.spec:SPEC"``) and :mod:`cutover.lifecycle.tasks` wires the same tasks around it
for every pipeline. Everything else — states, progress, batching, the report, cutover with approval,
rollback, the evidence bundle — is the life cycle's, written once in :mod:`cutover.lifecycle`.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Hashable
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from cutover.lifecycle.model import PlannedUnit, UnitKey

if TYPE_CHECKING:
    from psycopg import Connection


class PipelineConfig(Protocol):
    """A pipeline's frozen config: built from the trigger form, stored with the run."""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able form."""
        ...


@dataclass(frozen=True)
class Verification:
    """A unit's verification: counts and checksums of both sides, what failed (empty: passed)."""

    rows_source: int
    rows_target: int
    checksum_source: str | None
    checksum_target: str | None
    failures: list[str] = field(default_factory=list)
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        """No check failed."""
        return not self.failures


class BatchSession:
    """What the units of one stage share while it works through a batch: connections and a cache.

    A batch of 250 small ships would otherwise open ~5 PostgreSQL connections per ship (~3 ms each
    on a local server: more than a small ship's copy) and re-read the same catalog rows per ship.
    A hook takes its connections from :meth:`pg` (opened on first use, kept for the rest of the
    stage, closed by the life cycle), may hold a context for the whole stage with :meth:`hold`
    (e.g. a parallelism slot) and may memoise with :attr:`cache`. The life cycle calls
    :meth:`reset` after a unit fails (its transactions rolled back, the cache emptied) and
    :meth:`close` when the stage ends. Hooks must leave the connections idle: commit or roll back
    what they did before returning.
    """

    def __init__(self) -> None:
        self._stack = ExitStack()
        self._conns: dict[tuple[str, bool], Any] = {}
        self._held: dict[Hashable, Any] = {}
        self.cache: dict[Hashable, Any] = {}

    def pg(self, conn_id: str, *, autocommit: bool = False) -> Connection[Any]:
        """A psycopg 3 connection for ``conn_id`` shared by the stage's units (a new one when the last
        one broke; one left in a transaction is rolled back first)."""
        from psycopg.pq import TransactionStatus

        from cutover.connections import pg_open

        key = (conn_id, autocommit)
        conn = self._conns.get(key)
        if conn is not None and (conn.closed or conn.broken):
            conn = None
        if conn is None:
            conn = pg_open(conn_id, autocommit=autocommit)
            self._conns[key] = conn
        elif conn.info.transaction_status != TransactionStatus.IDLE:
            conn.rollback()
        return conn

    def hold(self, key: Hashable, cm: AbstractContextManager[Any]) -> Any:
        """Enter ``cm`` once per ``key`` and keep it entered until the stage ends; returns what it yields."""
        if key not in self._held:
            self._held[key] = self._stack.enter_context(cm)
        return self._held[key]

    def reset(self) -> None:
        """After a failure: roll back every connection (close the broken ones) and empty the cache."""
        self.cache.clear()
        for key, conn in list(self._conns.items()):
            try:
                if not conn.closed and not conn.autocommit:
                    conn.rollback()
            except Exception:  # noqa: BLE001 - broken: the next pg() opens a new one
                self._conns.pop(key, None)

    def close(self) -> None:
        """Close the connections and leave what :meth:`hold` entered."""
        try:
            self._stack.close()
        finally:
            for conn in self._conns.values():
                try:
                    conn.close()
                except Exception:  # noqa: BLE001 - already gone
                    pass
            self._conns.clear()
            self.cache.clear()


@dataclass
class UnitContext:
    """What a hook gets besides its config and unit: the run, where the control schema is, progress.

    ``chunk_done(conn, rows_read, rows_written)`` must be called by a copy inside each chunk's
    transaction (running totals: source rows read, target rows written), when ``conn`` reaches the
    control schema; the unit is then ``copying`` with those counts, committed with the chunk.
    """

    run_id: str
    pipeline: str
    unit: PlannedUnit
    control_conn_id: str
    log: logging.Logger
    #: shared by the units of this stage and batch (None when a hook is called alone, e.g. in a test)
    session: BatchSession | None = None

    @property
    def key(self) -> str:
        """The unit key as stored."""
        return str(self.unit.key)

    def chunk_done(self, conn: Connection[Any], rows_read: int, rows_written: int) -> None:
        """Record a committed chunk's running totals in the chunk's own transaction."""
        from cutover.lifecycle.state import chunk_done

        chunk_done(conn, self.run_id, self.key, rows_read=rows_read, rows_written=rows_written)


Hook = Callable[[Any, PlannedUnit, UnitContext], dict[str, Any]]


@dataclass(frozen=True)
class CopyResult:
    """What a copy hook returns: running totals after the last chunk, and anything for the log."""

    rows_read: int
    rows_written: int
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PipelineSpec:
    """The hooks of one pipeline. Each is a plain function the tests call without Airflow.

    * ``config(params)`` — the pipeline config from the trigger form's Params;
    * ``plan(cfg, wanted)`` — the units (``wanted``: the ``units`` Param, ``None`` = all); raises
      for a wanted unit that does not exist;
    * ``prepare`` / ``copy`` / ``finalize`` / ``verify`` — one unit each (copy returns
      :class:`CopyResult`, verify :class:`Verification`); each must be safe to run again;
    * ``route(conn, cfg, key, backend)`` — point the unit's readers at ``backend`` on the control
      connection (the life cycle records the switch in the same transaction);
    * ``drop(conn, cfg, key)`` — remove what was built for a unit (rollback with drop);
    * ``known_units(cfg)`` — every unit with something built or routed (rollback of "all");
    * ``backends`` — (source backend, target backend) names, e.g. ``("narrow", "wide")``;
    * ``key_arity`` — the number of parts of its unit keys;
    * ``permanent_errors`` — exceptions that fail the same on every try: no retries;
    * ``close`` / ``switch_group`` / ``around_switch`` — optional: run-level checks before the verdict,
      and units switched together inside one context (see the fields);
    * ``target_divergence`` — optional: the writes a rollback would lose (see the field);
    * ``drain_reverse`` / ``around_rollback`` — optional: the reverse stream's last step before a rollback,
      and the rollback's own write pause around routing a group back (see the fields).
    """

    name: str
    unit_noun: str
    config: Callable[[dict[str, Any]], Any]
    plan: Callable[[Any, list[str] | None], list[PlannedUnit]]
    prepare: Hook
    copy: Callable[[Any, PlannedUnit, UnitContext], CopyResult]
    finalize: Hook
    verify: Callable[[Any, PlannedUnit, UnitContext], Verification]
    route: Callable[[Connection[Any], Any, UnitKey, str], dict[str, Any]]
    drop: Callable[[Connection[Any], Any, UnitKey], dict[str, Any]]
    known_units: Callable[[Any], list[UnitKey]]
    scope: Callable[[Any], str]
    unit_key: Callable[[Any, str], UnitKey]
    control_conn_id: Callable[[Any], str]
    backends: tuple[str, str] = ("source", "target")
    #: how many parts a unit key has (a ship: 1; a tenant and a table: 2)
    key_arity: int = 1
    #: whether its readers honour a canary share (they consult ``cutover.switches`` per request); when
    #: False, ``route`` moves every reader at once and a cutover refuses a share under 100 %
    canary: bool = False
    permanent_errors: tuple[type[BaseException], ...] = ()
    copy_slots: Callable[[Any], int] | None = None
    #: run-level work after every unit stage, before the verdict: ``close(cfg, run_id, units)`` gets the
    #: run's unit rows and returns ``{"failed": {unit key: error}, …evidence}`` (e.g. checks that span
    #: units, such as foreign keys between tables copied by different tasks); the units it names fail
    close: Callable[[Any, str, list[dict[str, Any]]], dict[str, Any]] | None = None
    #: units that must switch together (e.g. every table of a tenant): key → group name (None: alone)
    switch_group: Callable[[UnitKey], str] | None = None
    #: a context manager entered around switching one group (``around_switch(cfg, keys, run_id)``), e.g.
    #: a write pause with a final catch-up; what it yields (a dict) is recorded with the group's switch
    around_switch: Callable[[Any, list[UnitKey], str], Any] | None = None
    #: names a user may give for several units (a tenant for all its tables): ``expand_units(cfg, names)``
    #: returns unit names (cutover and rollback apply it to their ``units`` Param)
    expand_units: Callable[[Any, list[str]], list[str]] | None = None
    #: how many mapped batches the plan's units need (``max_batches(cfg, units)``; the life cycle caps it
    #: at Airflow's ``max_map_length``). None: one batch per unit up to that cap. A pipeline with many
    #: small units packs them, so 1,000 small ships are a few task instances, not 4,000
    max_batches: Callable[[Any, list[PlannedUnit]], int] | None = None
    #: writes the target holds that the source lacks, for a unit whose readers are on the target (what a
    #: rollback would lose until changes flow back): ``target_divergence(cfg, key)`` returns None when the
    #: target matches the source, else ``{"table": …, "inserted": n, "updated": n, "deleted": n,
    #: "sample_keys": {"inserted": […], "updated": […], "deleted": […]}, …}`` (counts of rows; keys as the
    #: pipeline names them). None: the pipeline's readers never write to the target (nothing to lose)
    target_divergence: Callable[[Any, UnitKey], dict[str, Any] | None] | None = None
    #: reverse replication's last step before a rollback: ``drain_reverse(cfg, keys)`` applies to the source
    #: every change the target's stream holds for these units (readers on the target), up to the target's
    #: position now, stops the stream and returns its evidence (``{unit label: {"applied": rows, "position":
    #: …}}``); rollback calls it before ``target_divergence``, which then finds the sides equal. None: the
    #: pipeline has no reverse stream (the divergence check alone guards the rollback)
    drain_reverse: Callable[[Any, list[UnitKey]], dict[str, Any]] | None = None
    #: a context manager entered around routing one group of units back to the source
    #: (``around_rollback(cfg, keys, run_id)``; ``keys``: the group's units whose readers are on the target),
    #: the mirror of ``around_switch``: before it yields, the writers on the *target* are paused (routing
    #: entry ``paused``), its writing transactions in flight drained, the reverse stream drained to the
    #: target's position at that moment (a fence) and only the rows it touched since the last proof re-proved;
    #: the life cycle then routes the units back (writers resume on the source) unless what it yields says
    #: the target holds writes the source lacks, and the context resumes the writers where the route points
    #: when it ends. It yields a dict (recorded as the group's evidence in the rollback run) with at least
    #: ``target_writes`` (unit label → a ``target_divergence``-shaped report of what differs; empty: nothing),
    #: ``drained`` (unit label → what the reverse stream applied) and ``paused_s`` (filled when it ends). When
    #: set, rollback uses it instead of ``drain_reverse`` + ``target_divergence`` for units on the target
    around_rollback: Callable[[Any, list[UnitKey], str], Any] | None = None


def load_spec(ref: str) -> PipelineSpec:
    """Import ``"package.module:NAME"`` and return the spec (DAG files pass the path, tasks load it)."""
    module, _, attr = ref.partition(":")
    spec = getattr(importlib.import_module(module), attr or "SPEC")
    if not isinstance(spec, PipelineSpec):
        raise TypeError(f"{ref} is {type(spec).__name__}, not a PipelineSpec")
    return spec
