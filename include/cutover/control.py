"""The control schema ``cutover`` in PostgreSQL, and a small typed API over it.

It holds what makes runs resumable and reviewable: runs and their units (state, rows, checksums,
timings), checkpoints / watermarks, the backend switch of every unit with its full history,
consistency results, quality-gate results, backups of set-aside objects, name mappings and dead
letters. The UI plugin reads it.

:func:`ensure_schema` is idempotent (``CREATE … IF NOT EXISTS``, guarded by an advisory lock so that
parallel mapped tasks do not race). Functions take an open psycopg connection and never commit:
the caller commits, so that a chunk of data and its checkpoint land in one transaction.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from typing import Any

from psycopg import Connection
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

SCHEMA = "cutover"
_LOCK_KEY = 0x6375746F  # "cuto": advisory lock held while the schema is migrated

#: version 2, the schema as the first releases created it (``CREATE … IF NOT EXISTS``): the baseline
#: every later version migrates from. Never edit it; add a migration below instead.
BASELINE_DDL = f"""
CREATE SCHEMA IF NOT EXISTS {SCHEMA};

CREATE TABLE IF NOT EXISTS {SCHEMA}.schema_version (
    version     integer PRIMARY KEY,
    applied_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS {SCHEMA}.runs (
    run_id      text PRIMARY KEY,
    pipeline    text NOT NULL,
    state       text NOT NULL DEFAULT 'running',
    params      jsonb NOT NULL DEFAULT '{{}}',
    evidence    jsonb NOT NULL DEFAULT '{{}}',
    started_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz
);

CREATE TABLE IF NOT EXISTS {SCHEMA}.units (
    run_id          text NOT NULL,
    pipeline        text NOT NULL,
    unit_key        text NOT NULL,
    state           text NOT NULL DEFAULT 'planned',
    rows_total      bigint,
    rows_done       bigint NOT NULL DEFAULT 0,
    checksum_source text,
    checksum_target text,
    detail          jsonb NOT NULL DEFAULT '{{}}',
    error           text,
    started_at      timestamptz,
    finished_at     timestamptz,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, unit_key)
);
CREATE INDEX IF NOT EXISTS units_pipeline_unit ON {SCHEMA}.units (pipeline, unit_key, updated_at DESC);

CREATE TABLE IF NOT EXISTS {SCHEMA}.checkpoints (
    pipeline    text NOT NULL,
    unit_key    text NOT NULL,
    watermark   jsonb NOT NULL,
    rows_done   bigint NOT NULL DEFAULT 0,
    run_id      text,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (pipeline, unit_key)
);

CREATE TABLE IF NOT EXISTS {SCHEMA}.switches (
    pipeline    text NOT NULL,
    unit_key    text NOT NULL,
    backend     text NOT NULL,
    canary_pct  smallint NOT NULL DEFAULT 100 CHECK (canary_pct BETWEEN 0 AND 100),
    run_id      text,
    actor       text,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (pipeline, unit_key)
);

CREATE TABLE IF NOT EXISTS {SCHEMA}.switch_history (
    id           bigserial PRIMARY KEY,
    pipeline     text NOT NULL,
    unit_key     text NOT NULL,
    from_backend text,
    to_backend   text NOT NULL,
    canary_pct   smallint NOT NULL,
    run_id       text,
    actor        text,
    reason       text,
    at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS switch_history_unit ON {SCHEMA}.switch_history (pipeline, unit_key, at);

CREATE TABLE IF NOT EXISTS {SCHEMA}.consistency_results (
    id           bigserial PRIMARY KEY,
    pair_name    text NOT NULL,
    checked_at   timestamptz NOT NULL DEFAULT now(),
    window_start text,
    window_end   text,
    status       text NOT NULL,
    rows_checked bigint NOT NULL DEFAULT 0,
    missing      bigint NOT NULL DEFAULT 0,
    extra        bigint NOT NULL DEFAULT 0,
    changed      bigint NOT NULL DEFAULT 0,
    duration_s   double precision,
    details      jsonb NOT NULL DEFAULT '{{}}',
    run_id       text
);
CREATE INDEX IF NOT EXISTS consistency_pair ON {SCHEMA}.consistency_results (pair_name, checked_at DESC);

CREATE TABLE IF NOT EXISTS {SCHEMA}.quality_results (
    id          bigserial PRIMARY KEY,
    suite       text NOT NULL,
    asset       text NOT NULL,
    success     boolean NOT NULL,
    evaluated   integer NOT NULL DEFAULT 0,
    failed      integer NOT NULL DEFAULT 0,
    statistics  jsonb NOT NULL DEFAULT '{{}}',
    docs_path   text,
    run_id      text,
    checked_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS {SCHEMA}.dead_letters (
    id          bigserial PRIMARY KEY,
    pipeline    text NOT NULL,
    run_id      text,
    unit_key    text,
    source      text NOT NULL,
    record_key  text,
    reason      text NOT NULL,
    payload     jsonb,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS dead_letters_unit ON {SCHEMA}.dead_letters (pipeline, unit_key);

CREATE TABLE IF NOT EXISTS {SCHEMA}.object_backups (
    pipeline    text NOT NULL,
    unit_key    text NOT NULL,
    kind        text NOT NULL,
    name        text NOT NULL,
    definition  text NOT NULL,
    restored_at timestamptz,
    saved_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (pipeline, unit_key, kind, name)
);

CREATE TABLE IF NOT EXISTS {SCHEMA}.name_map (
    pipeline    text NOT NULL,
    scope       text NOT NULL,
    original    text NOT NULL,
    mapped      text NOT NULL,
    detail      jsonb NOT NULL DEFAULT '{{}}',
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (pipeline, scope, original),
    UNIQUE (pipeline, scope, mapped)
);

-- pairs kept in sync, checked by consistency_checks (see cutover.consistency.registry)
CREATE TABLE IF NOT EXISTS {SCHEMA}.sync_pairs (
    name            text PRIMARY KEY,
    pipeline        text,
    source_conn     text NOT NULL,
    source_table    text,
    source_query    text,
    target_conn     text NOT NULL,
    target_table    text,
    target_query    text,
    key_columns     text[] NOT NULL,
    columns         text[] NOT NULL DEFAULT '{{}}',
    mapping         jsonb NOT NULL DEFAULT '{{}}',
    kinds           jsonb NOT NULL DEFAULT '{{}}',
    window_column   text,
    recent_window_s integer NOT NULL DEFAULT 3600 CHECK (recent_window_s > 0),
    settle_s        integer NOT NULL DEFAULT 60 CHECK (settle_s >= 0),
    repair          text NOT NULL DEFAULT 'none' CHECK (repair IN ('none', 'upsert', 'delete_insert')),
    enabled         boolean NOT NULL DEFAULT true,
    description     text NOT NULL DEFAULT '',
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CHECK ((source_table IS NULL) <> (source_query IS NULL)),
    CHECK ((target_table IS NULL) <> (target_query IS NULL))
);

CREATE OR REPLACE VIEW {SCHEMA}.consistency_status AS
SELECT p.name AS pair_name, p.pipeline, p.enabled, p.repair,
       p.source_conn || ':' || coalesce(p.source_table, '(query)') AS source,
       p.target_conn || ':' || coalesce(p.target_table, '(query)') AS target,
       r.checked_at AS last_checked_at, r.status AS last_status,
       r.rows_checked, r.missing, r.extra, r.changed, r.window_start, r.window_end, r.duration_s,
       (r.details ->> 'lag_s')::double precision AS lag_s,
       extract(epoch FROM now() - r.checked_at)::double precision AS check_age_s,
       d.checked_at AS last_difference_at, r.run_id
FROM {SCHEMA}.sync_pairs p
LEFT JOIN LATERAL (
    SELECT * FROM {SCHEMA}.consistency_results c WHERE c.pair_name = p.name ORDER BY c.checked_at DESC, c.id DESC LIMIT 1
) r ON true
LEFT JOIN LATERAL (
    SELECT c.checked_at FROM {SCHEMA}.consistency_results c
    WHERE c.pair_name = p.name AND c.status = 'different' ORDER BY c.checked_at DESC LIMIT 1
) d ON true;
"""

#: the values of :class:`cutover.lifecycle.model.UnitState` (a test checks they agree)
UNIT_STATES = ("planned", "prepared", "copying", "copied", "verified", "cut_over", "failed", "rolled_back")
_UNIT_STATES_SQL = ", ".join(f"'{s}'" for s in UNIT_STATES)

#: version 3, the shared life cycle (:mod:`cutover.lifecycle`): one unit-state enum (legacy states
#: mapped onto it, then a CHECK), source rows read and target rows written per unit and checkpoint,
#: the stage a unit failed in, and per run its kind (build / cutover / rollback), DAG and plan
#: bookkeeping (a run whose plan never finished is never green).
V3_LIFECYCLE = f"""
ALTER TABLE {SCHEMA}.units
    ADD COLUMN IF NOT EXISTS rows_read bigint NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS rows_written bigint NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS failed_stage text;
UPDATE {SCHEMA}.units SET state = 'verified' WHERE state = 'done';
UPDATE {SCHEMA}.units SET rows_written = rows_done WHERE state = 'verified' AND rows_written = 0;
UPDATE {SCHEMA}.units SET rows_read = rows_done WHERE state <> 'verified' AND rows_read = 0;
UPDATE {SCHEMA}.units u SET state = 'copied' FROM {SCHEMA}.checkpoints c
    WHERE u.state = 'prepared' AND c.pipeline = u.pipeline AND c.unit_key = u.unit_key
      AND c.watermark ->> 'phase' IN ('copied', 'built');
UPDATE {SCHEMA}.units SET error = coalesce(error, 'legacy state ' || state), state = 'failed'
    WHERE state NOT IN ({_UNIT_STATES_SQL});
ALTER TABLE {SCHEMA}.units DROP CONSTRAINT IF EXISTS units_state_known;
ALTER TABLE {SCHEMA}.units ADD CONSTRAINT units_state_known CHECK (state IN ({_UNIT_STATES_SQL}));
CREATE INDEX IF NOT EXISTS units_run_state ON {SCHEMA}.units (run_id, state);

ALTER TABLE {SCHEMA}.runs
    ADD COLUMN IF NOT EXISTS kind text NOT NULL DEFAULT 'build',
    ADD COLUMN IF NOT EXISTS dag_id text,
    ADD COLUMN IF NOT EXISTS planned_units integer,
    ADD COLUMN IF NOT EXISTS planned_at timestamptz;
UPDATE {SCHEMA}.runs SET kind = split_part(pipeline, ':', 2), pipeline = split_part(pipeline, ':', 1)
    WHERE pipeline LIKE '%:%';

ALTER TABLE {SCHEMA}.checkpoints ADD COLUMN IF NOT EXISTS rows_written bigint NOT NULL DEFAULT 0;
"""


#: version 4, progress over time: one row per committed chunk (the rows it read and wrote), so the
#: UI can draw a run's rows/s over time (written by :func:`cutover.lifecycle.state.chunk_done`)
V4_PROGRESS = f"""
CREATE TABLE IF NOT EXISTS {SCHEMA}.progress (
    run_id        text NOT NULL,
    unit_key      text NOT NULL,
    at            timestamptz NOT NULL DEFAULT clock_timestamp(),
    rows_read     bigint NOT NULL,
    rows_written  bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS progress_run_at ON {SCHEMA}.progress (run_id, at);
"""


#: version 5, routing entries: where a named thing (a tenant) is served from, with its history — what
#: an application reads to route a tenant's connections (``tenant_split`` writes it at cutover / rollback)
V5_ROUTES = f"""
CREATE TABLE IF NOT EXISTS {SCHEMA}.routes (
    pipeline    text NOT NULL,
    scope       text NOT NULL,
    name        text NOT NULL,
    location    jsonb NOT NULL,
    state       text NOT NULL DEFAULT 'active',
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (pipeline, scope, name)
);
CREATE TABLE IF NOT EXISTS {SCHEMA}.route_history (
    id          bigserial PRIMARY KEY,
    pipeline    text NOT NULL,
    scope       text NOT NULL,
    name        text NOT NULL,
    location    jsonb NOT NULL,
    state       text NOT NULL,
    run_id      text,
    reason      text,
    at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS route_history_name ON {SCHEMA}.route_history (pipeline, scope, name, at);
"""

#: version 6, who switched: the user who triggered the run and the one who approved it (None when Airflow
#: knows no user, e.g. ``dag.test()``), and what else the switch decided (policy, discarded target writes)
V6_SWITCH_ACTORS = f"""
ALTER TABLE {SCHEMA}.switch_history ADD COLUMN IF NOT EXISTS triggered_by text;
ALTER TABLE {SCHEMA}.switch_history ADD COLUMN IF NOT EXISTS approved_by text;
ALTER TABLE {SCHEMA}.switch_history ADD COLUMN IF NOT EXISTS detail jsonb;
"""


#: version 7, a run's own error: why a run failed when no unit can say it (a plan that raised: a bad
#: mapping, a missing schema or source database), shown on the status page and the run's evidence page;
#: ``closed_by`` names what closed a run whose Airflow run ended without its report (a killed task)
V7_RUN_ERROR = f"""
ALTER TABLE {SCHEMA}.runs ADD COLUMN IF NOT EXISTS error text;
ALTER TABLE {SCHEMA}.runs ADD COLUMN IF NOT EXISTS closed_by text;
"""


#: version 8, change streams and stray writes: every catch-up stream (``forward``: source → target before
#: the switch; ``reverse``: target → source after it) reports where it is and how far behind, per pipeline,
#: scope and name (a tenant, a table), for the status page; writes that reached the old side after a switch
#: (a client that did not re-read its route) are recorded with their keys
V8_STREAMS = f"""
CREATE TABLE IF NOT EXISTS {SCHEMA}.streams (
    pipeline     text NOT NULL,
    scope        text NOT NULL,
    name         text NOT NULL,
    direction    text NOT NULL CHECK (direction IN ('forward', 'reverse')),
    state        text NOT NULL DEFAULT 'running',
    position     text,
    lag_s        double precision,
    applied      bigint NOT NULL DEFAULT 0,
    detail       jsonb NOT NULL DEFAULT '{{}}'::jsonb,
    started_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (pipeline, scope, name, direction)
);
CREATE TABLE IF NOT EXISTS {SCHEMA}.stray_writes (
    id           bigserial PRIMARY KEY,
    pipeline     text NOT NULL,
    scope        text NOT NULL,
    name         text NOT NULL,
    table_name   text NOT NULL,
    kind         text NOT NULL,
    record_key   jsonb,
    position     text,
    run_id       text,
    forwarded    boolean NOT NULL DEFAULT false,
    seen_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS stray_writes_name ON {SCHEMA}.stray_writes (pipeline, scope, name, seen_at);
"""


@dataclass(frozen=True)
class Migration:
    """One version of the control schema: the SQL that takes the previous version to this one."""

    version: int
    description: str
    sql: str


#: every version, oldest first. A deployment at version N gets the migrations after N, in order,
#: in one transaction under an advisory lock; each migration is also safe to run twice.
MIGRATIONS: tuple[Migration, ...] = (
    Migration(2, "baseline: runs, units, checkpoints, switches, results, dead letters, backups, name maps, pairs",
              BASELINE_DDL),
    Migration(3, "life cycle: unit state enum, rows read / written, failed stage, run kind and plan", V3_LIFECYCLE),
    Migration(4, "progress over time: rows read and written per committed chunk", V4_PROGRESS),
    Migration(5, "routing entries with history (tenant → database)", V5_ROUTES),
    Migration(6, "switch history names who triggered and who approved, and the switch's detail", V6_SWITCH_ACTORS),
    Migration(7, "a run's own error (a failed plan's reason) and what closed a run left running", V7_RUN_ERROR),
    Migration(8, "change streams (forward / reverse, position and lag) and stray writes to the old side", V8_STREAMS),
)
SCHEMA_VERSION = MIGRATIONS[-1].version


@dataclass(frozen=True)
class Checkpoint:
    """Where a unit's copy stopped: an opaque JSON watermark plus the rows done so far."""

    pipeline: str
    unit_key: str
    watermark: dict[str, Any]
    rows_done: int  # source rows read so far
    updated_at: dt.datetime
    rows_written: int = 0  # target rows written so far


@dataclass(frozen=True)
class Switch:
    """Which backend serves a unit's readers, and to what share (canary)."""

    pipeline: str
    unit_key: str
    backend: str
    canary_pct: int
    updated_at: dt.datetime


@dataclass(frozen=True)
class DeadLetter:
    """A record that could not be loaded, with the reason and enough to find it again."""

    source: str
    record_key: str
    reason: str
    payload: dict[str, Any] | None = None


def ensure_schema(conn: Connection[Any], *, upto: int | None = None) -> int:
    """Create or migrate the control schema to the latest version (or ``upto``); returns the version.

    Idempotent and safe from parallel tasks: the migrations after the stored version run in order, in
    one transaction holding an advisory lock, each recorded in ``cutover.schema_version``. Rows
    already stored are kept (and, where a migration says so, mapped onto the new columns).
    """
    target = SCHEMA_VERSION if upto is None else upto
    if _current_version(conn) >= target:
        return _current_version(conn)
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        conn.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
        conn.execute(f"""CREATE TABLE IF NOT EXISTS {SCHEMA}.schema_version (
                             version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())""")
        row = conn.execute(f"SELECT coalesce(max(version), 0) FROM {SCHEMA}.schema_version").fetchone()
        current = int(row[0]) if row else 0
        for m in MIGRATIONS:
            if current < m.version <= target:
                conn.execute(m.sql)
                conn.execute(f"INSERT INTO {SCHEMA}.schema_version (version) VALUES (%s) ON CONFLICT DO NOTHING",
                             (m.version,))
                current = m.version
    return current


def _current_version(conn: Connection[Any]) -> int:
    with conn.transaction():
        if conn.execute("SELECT to_regclass(%s)", (f"{SCHEMA}.schema_version",)).fetchone() == (None,):
            return 0
        row = conn.execute(f"SELECT max(version) FROM {SCHEMA}.schema_version").fetchone()
    return int(row[0]) if row and row[0] is not None else 0


# --- runs and units -------------------------------------------------------------------------------


def start_run(
    conn: Connection[Any], run_id: str, pipeline: str, params: dict[str, Any] | None = None, *, kind: str = "build",
    dag_id: str | None = None, started_at: dt.datetime | None = None,
) -> None:
    """Record that a run started (a rerun of the same run id keeps its row and becomes running again,
    unplanned: its plan must be recorded again, so a rerun whose planning fails is never green).

    ``kind`` is ``build``, ``cutover``, ``rollback`` …; ``started_at`` is the Airflow DAG run's start
    (default: now), so the control schema and Airflow show the same times.
    """
    conn.execute(
        f"""INSERT INTO {SCHEMA}.runs (run_id, pipeline, params, kind, dag_id, started_at)
            VALUES (%s, %s, %s, %s, %s, coalesce(%s, now()))
            ON CONFLICT (run_id) DO UPDATE SET state = 'running', params = EXCLUDED.params, finished_at = NULL,
                error = NULL, closed_by = NULL,
                kind = EXCLUDED.kind, dag_id = coalesce(EXCLUDED.dag_id, runs.dag_id),
                planned_at = NULL, planned_units = NULL""",
        (run_id, pipeline, Jsonb(params or {}), kind, dag_id, started_at),
    )


def finish_run(conn: Connection[Any], run_id: str, state: str, evidence: dict[str, Any] | None = None) -> None:
    """Close a run with its final state, merging ``evidence`` into the run's evidence bundle."""
    conn.execute(
        f"""UPDATE {SCHEMA}.runs SET state = %s, finished_at = now(), evidence = evidence || %s
            WHERE run_id = %s""",
        (state, Jsonb(evidence or {}), run_id),
    )


def set_run_error(conn: Connection[Any], run_id: str, error: str) -> None:
    """Record why a run failed where no unit says it (a plan that raised); cleared when the run restarts."""
    conn.execute(f"UPDATE {SCHEMA}.runs SET error = %s WHERE run_id = %s", (error[:8000], run_id))


def add_evidence(conn: Connection[Any], run_id: str, evidence: dict[str, Any]) -> None:
    """Merge keys into a run's evidence bundle (counts, checksums, diff report, docs, approvals)."""
    conn.execute(
        f"UPDATE {SCHEMA}.runs SET evidence = evidence || %s WHERE run_id = %s", (Jsonb(evidence), run_id)
    )


def get_run(conn: Connection[Any], run_id: str) -> dict[str, Any] | None:
    """One run's row (state, params, evidence, timings) or None."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(f"SELECT * FROM {SCHEMA}.runs WHERE run_id = %s", (run_id,)).fetchone()


def set_unit(
    conn: Connection[Any],
    run_id: str,
    pipeline: str,
    unit_key: str,
    state: str,
    *,
    rows_total: int | None = None,
    rows_read: int | None = None,
    rows_written: int | None = None,
    checksum_source: str | None = None,
    checksum_target: str | None = None,
    detail: dict[str, Any] | None = None,
    error: str | None = None,
    failed_stage: str | None = None,
) -> None:
    """Create or update a unit of a run, unchecked; fields left as None keep their stored value.

    Pipelines do not call this: :mod:`cutover.lifecycle.state` moves units with checked transitions.
    ``rows_read`` counts source rows, ``rows_written`` target rows (``rows_done`` mirrors rows read,
    for readers of schema version 2).
    """
    conn.execute(
        f"""INSERT INTO {SCHEMA}.units AS u (run_id, pipeline, unit_key, state, rows_total, rows_read, rows_written,
                rows_done, checksum_source, checksum_target, detail, error, failed_stage, started_at, finished_at)
            VALUES (%(run_id)s, %(pipeline)s, %(unit_key)s, %(state)s, %(rows_total)s, coalesce(%(rr)s, 0),
                coalesce(%(rw)s, 0), coalesce(%(rr)s, 0), %(cs)s, %(ct)s, %(detail)s, %(error)s, %(fs)s,
                CASE WHEN %(state)s <> 'planned' THEN now() END,
                CASE WHEN %(state)s IN ('verified', 'cut_over', 'failed', 'rolled_back') THEN now() END)
            ON CONFLICT (run_id, unit_key) DO UPDATE SET
                state = EXCLUDED.state,
                rows_total = coalesce(EXCLUDED.rows_total, u.rows_total),
                rows_read = coalesce(%(rr)s, u.rows_read),
                rows_written = coalesce(%(rw)s, u.rows_written),
                rows_done = coalesce(%(rr)s, u.rows_done),
                checksum_source = coalesce(EXCLUDED.checksum_source, u.checksum_source),
                checksum_target = coalesce(EXCLUDED.checksum_target, u.checksum_target),
                detail = u.detail || EXCLUDED.detail,
                error = EXCLUDED.error,
                failed_stage = EXCLUDED.failed_stage,
                started_at = coalesce(u.started_at, EXCLUDED.started_at),
                finished_at = EXCLUDED.finished_at,
                updated_at = now()""",
        {
            "run_id": run_id,
            "pipeline": pipeline,
            "unit_key": unit_key,
            "state": state,
            "rows_total": rows_total,
            "rr": rows_read,
            "rw": rows_written,
            "cs": checksum_source,
            "ct": checksum_target,
            "detail": Jsonb(detail or {}),
            "error": error,
            "fs": failed_stage,
        },
    )


def list_units(conn: Connection[Any], run_id: str) -> list[dict[str, Any]]:
    """Every unit of a run, ordered by key."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            f"SELECT * FROM {SCHEMA}.units WHERE run_id = %s ORDER BY unit_key", (run_id,)
        ).fetchall()


# --- checkpoints ---------------------------------------------------------------------------------


def get_checkpoint(conn: Connection[Any], pipeline: str, unit_key: str) -> Checkpoint | None:
    """The stored watermark of a unit, or None when it never ran."""
    row = conn.execute(
        f"""SELECT pipeline, unit_key, watermark, rows_done, updated_at, rows_written FROM {SCHEMA}.checkpoints
            WHERE pipeline = %s AND unit_key = %s""",
        (pipeline, unit_key),
    ).fetchone()
    return Checkpoint(*row) if row else None


def set_checkpoint(
    conn: Connection[Any],
    pipeline: str,
    unit_key: str,
    watermark: dict[str, Any],
    *,
    rows_done: int | None = None,
    run_id: str | None = None,
    rows_written: int | None = None,
) -> None:
    """Store a unit's watermark; call it inside the transaction that wrote the chunk it describes.

    ``rows_done`` is the source rows read so far, ``rows_written`` the target rows written (None keeps
    the stored count).
    """
    conn.execute(
        f"""INSERT INTO {SCHEMA}.checkpoints AS c (pipeline, unit_key, watermark, rows_done, rows_written, run_id)
            VALUES (%(p)s, %(u)s, %(w)s, coalesce(%(rd)s, 0), coalesce(%(rw)s, 0), %(run)s)
            ON CONFLICT (pipeline, unit_key) DO UPDATE SET watermark = EXCLUDED.watermark,
                rows_done = coalesce(%(rd)s, c.rows_done), rows_written = coalesce(%(rw)s, c.rows_written),
                run_id = EXCLUDED.run_id, updated_at = now()""",
        {"p": pipeline, "u": unit_key, "w": Jsonb(watermark), "rd": rows_done, "rw": rows_written, "run": run_id},
    )


def clear_checkpoint(conn: Connection[Any], pipeline: str, unit_key: str) -> None:
    """Forget a unit's watermark (rollback that removes what was built)."""
    conn.execute(f"DELETE FROM {SCHEMA}.checkpoints WHERE pipeline = %s AND unit_key = %s", (pipeline, unit_key))


# --- backend switches ----------------------------------------------------------------------------


def get_switch(conn: Connection[Any], pipeline: str, unit_key: str) -> Switch | None:
    """The current backend of a unit's readers, or None when never switched."""
    row = conn.execute(
        f"""SELECT pipeline, unit_key, backend, canary_pct, updated_at FROM {SCHEMA}.switches
            WHERE pipeline = %s AND unit_key = %s""",
        (pipeline, unit_key),
    ).fetchone()
    return Switch(*row) if row else None


def switch_backend(
    conn: Connection[Any],
    pipeline: str,
    unit_key: str,
    backend: str,
    *,
    canary_pct: int = 100,
    run_id: str | None = None,
    actor: str | None = None,
    reason: str | None = None,
    triggered_by: str | None = None,
    approved_by: str | None = None,
    detail: dict[str, Any] | None = None,
) -> Switch:
    """Point a unit's readers at ``backend`` (for ``canary_pct`` % of them) and record it in the history
    (with who triggered and who approved, None where unknown, and ``detail``: JSON, e.g. the policy)."""
    if not 0 <= canary_pct <= 100:
        raise ValueError(f"canary_pct must be between 0 and 100, got {canary_pct}")
    # Lock the row so two concurrent switches record a consistent from → to history.
    prev = conn.execute(
        f"SELECT backend FROM {SCHEMA}.switches WHERE pipeline = %s AND unit_key = %s FOR UPDATE",
        (pipeline, unit_key),
    ).fetchone()
    row = conn.execute(
        f"""INSERT INTO {SCHEMA}.switches (pipeline, unit_key, backend, canary_pct, run_id, actor)
            VALUES (%s, %s, %s, %s, %s, %s)
            ON CONFLICT (pipeline, unit_key) DO UPDATE SET backend = EXCLUDED.backend,
                canary_pct = EXCLUDED.canary_pct, run_id = EXCLUDED.run_id, actor = EXCLUDED.actor,
                updated_at = now()
            RETURNING pipeline, unit_key, backend, canary_pct, updated_at""",
        (pipeline, unit_key, backend, canary_pct, run_id, actor),
    ).fetchone()
    conn.execute(
        f"""INSERT INTO {SCHEMA}.switch_history
                (pipeline, unit_key, from_backend, to_backend, canary_pct, run_id, actor, reason,
                 triggered_by, approved_by, detail)
            VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)""",
        (pipeline, unit_key, prev[0] if prev else None, backend, canary_pct, run_id, actor, reason,
         triggered_by, approved_by, None if detail is None else Jsonb(detail)),
    )
    assert row is not None
    return Switch(*row)


def switch_history(conn: Connection[Any], pipeline: str, unit_key: str | None = None) -> list[dict[str, Any]]:
    """Every recorded switch of a pipeline (or one unit), oldest first."""
    with conn.cursor(row_factory=dict_row) as cur:
        if unit_key is None:
            return cur.execute(
                f"SELECT * FROM {SCHEMA}.switch_history WHERE pipeline = %s ORDER BY id", (pipeline,)
            ).fetchall()
        return cur.execute(
            f"SELECT * FROM {SCHEMA}.switch_history WHERE pipeline = %s AND unit_key = %s ORDER BY id",
            (pipeline, unit_key),
        ).fetchall()


# --- dead letters, quality, consistency ----------------------------------------------------------


def current_run_id(run_id: str | None = None) -> str | None:
    """``run_id``, or else the Airflow run of the task this code runs in (``AIRFLOW_CTX_DAG_RUN_ID``, which
    Airflow's task runner exports for every task), so a record written by a task names its run even
    where a caller passed none (a sync, a repair, a route set by a switch hook)."""
    return run_id or os.environ.get("AIRFLOW_CTX_DAG_RUN_ID") or None


def add_dead_letters(
    conn: Connection[Any], pipeline: str, run_id: str | None, unit_key: str | None, letters: list[DeadLetter]
) -> int:
    """Store records that could not be loaded, each naming its run (:func:`current_run_id`); returns
    how many were stored."""
    if not letters:
        return 0
    run_id = current_run_id(run_id)
    with conn.cursor() as cur:
        cur.executemany(
            f"""INSERT INTO {SCHEMA}.dead_letters (pipeline, run_id, unit_key, source, record_key, reason, payload)
                VALUES (%s, %s, %s, %s, %s, %s, %s)""",
            [
                (pipeline, run_id, unit_key, d.source, d.record_key, d.reason, Jsonb(d.payload) if d.payload else None)
                for d in letters
            ],
        )
    return len(letters)


def list_dead_letters(conn: Connection[Any], pipeline: str, unit_key: str | None = None) -> list[dict[str, Any]]:
    """Dead letters of a pipeline (or one unit), oldest first."""
    with conn.cursor(row_factory=dict_row) as cur:
        q = f"SELECT * FROM {SCHEMA}.dead_letters WHERE pipeline = %s"
        args: list[Any] = [pipeline]
        if unit_key is not None:
            q += " AND unit_key = %s"
            args.append(unit_key)
        return cur.execute(q + " ORDER BY id", args).fetchall()


def record_quality(
    conn: Connection[Any],
    suite: str,
    asset: str,
    success: bool,
    *,
    evaluated: int,
    failed: int,
    statistics: dict[str, Any],
    docs_path: str | None,
    run_id: str | None,
) -> int:
    """Store one quality-gate result; returns its id."""
    row = conn.execute(
        f"""INSERT INTO {SCHEMA}.quality_results (suite, asset, success, evaluated, failed, statistics, docs_path, run_id)
            VALUES (%s, %s, %s, %s, %s, %s, %s, %s) RETURNING id""",
        (suite, asset, success, evaluated, failed, Jsonb(statistics), docs_path, run_id),
    ).fetchone()
    assert row is not None
    return int(row[0])


def record_consistency(
    conn: Connection[Any],
    pair_name: str,
    status: str,
    *,
    rows_checked: int = 0,
    missing: int = 0,
    extra: int = 0,
    changed: int = 0,
    window_start: str | None = None,
    window_end: str | None = None,
    duration_s: float | None = None,
    details: dict[str, Any] | None = None,
    run_id: str | None = None,
) -> int:
    """Store one consistency-check result; returns its id."""
    row = conn.execute(
        f"""INSERT INTO {SCHEMA}.consistency_results (pair_name, status, rows_checked, missing, extra, changed,
                window_start, window_end, duration_s, details, run_id)
            VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id""",
        (pair_name, status, rows_checked, missing, extra, changed, window_start, window_end, duration_s,
         Jsonb(details or {}), run_id),
    ).fetchone()
    assert row is not None
    return int(row[0])


# --- set-aside objects and name maps -------------------------------------------------------------


def backup_object(conn: Connection[Any], pipeline: str, unit_key: str, kind: str, name: str, definition: str) -> None:
    """Keep the exact definition of a trigger / index set aside for a bulk load (first backup wins)."""
    conn.execute(
        f"""INSERT INTO {SCHEMA}.object_backups (pipeline, unit_key, kind, name, definition)
            VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING""",
        (pipeline, unit_key, kind, name, definition),
    )


def pending_backups(conn: Connection[Any], pipeline: str, unit_key: str) -> list[tuple[str, str, str]]:
    """(kind, name, definition) of objects set aside and not yet restored."""
    return [
        (r[0], r[1], r[2])
        for r in conn.execute(
            f"""SELECT kind, name, definition FROM {SCHEMA}.object_backups
                WHERE pipeline = %s AND unit_key = %s AND restored_at IS NULL ORDER BY kind, name""",
            (pipeline, unit_key),
        ).fetchall()
    ]


def mark_restored(conn: Connection[Any], pipeline: str, unit_key: str, kind: str, name: str) -> None:
    """Record that a set-aside object was recreated."""
    conn.execute(
        f"""UPDATE {SCHEMA}.object_backups SET restored_at = now()
            WHERE pipeline = %s AND unit_key = %s AND kind = %s AND name = %s""",
        (pipeline, unit_key, kind, name),
    )


def load_name_map(conn: Connection[Any], pipeline: str, scope: str) -> dict[str, str]:
    """original → mapped names stored for a scope (e.g. one ship's channel → column map)."""
    rows = conn.execute(
        f"SELECT original, mapped FROM {SCHEMA}.name_map WHERE pipeline = %s AND scope = %s ORDER BY created_at, original",
        (pipeline, scope),
    ).fetchall()
    return {r[0]: r[1] for r in rows}


def lookup_names(conn: Connection[Any], pipeline: str, scope: str, originals: list[str]) -> dict[str, str]:
    """original → mapped for just ``originals`` of a scope (those stored; one index probe each, where
    :func:`load_name_map` reads the whole scope — thousands of names for a fleet's tables)."""
    rows = conn.execute(
        f"SELECT original, mapped FROM {SCHEMA}.name_map WHERE pipeline = %s AND scope = %s AND original = ANY(%s)",
        (pipeline, scope, originals),
    ).fetchall()
    return {r[0]: r[1] for r in rows}


def save_name_map(
    conn: Connection[Any], pipeline: str, scope: str, mapping: dict[str, str], detail: dict[str, dict[str, Any]] | None = None
) -> None:
    """Store original → mapped names for a scope (existing entries are kept as they are)."""
    with conn.cursor() as cur:
        cur.executemany(
            f"""INSERT INTO {SCHEMA}.name_map (pipeline, scope, original, mapped, detail) VALUES (%s, %s, %s, %s, %s)
                ON CONFLICT (pipeline, scope, original) DO NOTHING""",
            [(pipeline, scope, k, v, Jsonb((detail or {}).get(k, {}))) for k, v in mapping.items()],
        )


def clear_name_map(conn: Connection[Any], pipeline: str, scope: str) -> None:
    """Forget a scope's name map (rollback that drops what was built)."""
    conn.execute(f"DELETE FROM {SCHEMA}.name_map WHERE pipeline = %s AND scope = %s", (pipeline, scope))


# --- routing entries -------------------------------------------------------------------------------


def set_route(conn: Connection[Any], pipeline: str, scope: str, name: str, location: dict[str, Any], *,
              state: str = "active", run_id: str | None = None, reason: str | None = None) -> None:
    """Point ``name`` (a tenant) at ``location`` (e.g. ``{"conn_id": …, "database": …}``), with a history row
    naming its run (:func:`current_run_id`)."""
    run_id = current_run_id(run_id)
    conn.execute(
        f"""INSERT INTO {SCHEMA}.routes (pipeline, scope, name, location, state) VALUES (%s, %s, %s, %s, %s)
            ON CONFLICT (pipeline, scope, name) DO UPDATE SET location = EXCLUDED.location, state = EXCLUDED.state,
              updated_at = now()""",
        (pipeline, scope, name, Jsonb(location), state))
    conn.execute(
        f"""INSERT INTO {SCHEMA}.route_history (pipeline, scope, name, location, state, run_id, reason)
            VALUES (%s, %s, %s, %s, %s, %s, %s)""",
        (pipeline, scope, name, Jsonb(location), state, run_id, reason))


def get_route(conn: Connection[Any], pipeline: str, scope: str, name: str) -> dict[str, Any] | None:
    """The routing entry of ``name`` (None: never routed)."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(f"SELECT * FROM {SCHEMA}.routes WHERE pipeline = %s AND scope = %s AND name = %s",
                           (pipeline, scope, name)).fetchone()


def route_history(conn: Connection[Any], pipeline: str, scope: str, name: str | None = None) -> list[dict[str, Any]]:
    """Every change of the routing entries of a scope (or one name), oldest first."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            f"""SELECT * FROM {SCHEMA}.route_history WHERE pipeline = %s AND scope = %s AND (%s::text IS NULL OR name = %s)
                ORDER BY id""", (pipeline, scope, name, name)).fetchall()


# --- change streams and stray writes ----------------------------------------------------------------

STREAM_DIRECTIONS = ("forward", "reverse")


def report_stream(conn: Connection[Any], pipeline: str, scope: str, name: str, direction: str, *,
                  position: str | None, lag_s: float | None, applied: int = 0, state: str = "running",
                  detail: dict[str, Any] | None = None) -> None:
    """Record where a change stream of ``name`` (a tenant, a table) stands: ``direction`` ``forward``
    (source → target, before the switch) or ``reverse`` (target → source, after it); ``position`` as the
    stream names it (a binlog position ``file:pos``, a change-table id); ``lag_s`` seconds between the
    newest change read and now (None: unknown); ``applied`` rows applied by this call (added to the
    total); ``state`` e.g. ``running`` / ``stopped`` / ``drained`` / ``failed``. Raises ``ValueError`` for
    an unknown direction. The caller commits."""
    if direction not in STREAM_DIRECTIONS:
        raise ValueError(f"stream direction must be one of {STREAM_DIRECTIONS}, not {direction!r}")
    conn.execute(
        f"""INSERT INTO {SCHEMA}.streams (pipeline, scope, name, direction, state, position, lag_s, applied, detail)
            VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)
            ON CONFLICT (pipeline, scope, name, direction) DO UPDATE SET state = EXCLUDED.state,
              position = COALESCE(EXCLUDED.position, {SCHEMA}.streams.position), lag_s = EXCLUDED.lag_s,
              applied = {SCHEMA}.streams.applied + EXCLUDED.applied,
              detail = {SCHEMA}.streams.detail || EXCLUDED.detail, updated_at = now()""",
        (pipeline, scope, name, direction, state, position, lag_s, int(applied), Jsonb(detail or {})))


def get_stream(conn: Connection[Any], pipeline: str, scope: str, name: str, direction: str) -> dict[str, Any] | None:
    """One stream's row of :func:`report_stream` (None: never reported)."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(f"""SELECT * FROM {SCHEMA}.streams WHERE pipeline = %s AND scope = %s AND name = %s
                               AND direction = %s""", (pipeline, scope, name, direction)).fetchone()


def list_streams(conn: Connection[Any], pipeline: str | None = None) -> list[dict[str, Any]]:
    """Every stream (of one pipeline, or all), by pipeline, scope, name and direction."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(f"""SELECT * FROM {SCHEMA}.streams WHERE %s::text IS NULL OR pipeline = %s
                               ORDER BY pipeline, scope, name, direction""", (pipeline, pipeline)).fetchall()


def record_stray_writes(conn: Connection[Any], pipeline: str, scope: str, name: str,
                        writes: list[dict[str, Any]], *, run_id: str | None = None) -> int:
    """Record writes that reached the old side after ``name`` switched (a client that did not re-read
    its route): each ``{"table": str, "kind": "insert"|"update"|"delete", "key": JSON-able, "position":
    str, "forwarded": bool}``. Returns how many were recorded. The caller commits."""
    run_id = current_run_id(run_id)
    for w in writes:
        conn.execute(
            f"""INSERT INTO {SCHEMA}.stray_writes (pipeline, scope, name, table_name, kind, record_key, position, run_id,
                forwarded) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)""",
            (pipeline, scope, name, w["table"], w["kind"], Jsonb(w.get("key")), w.get("position"), run_id,
             bool(w.get("forwarded"))))
    return len(writes)


def list_stray_writes(conn: Connection[Any], pipeline: str | None = None, scope: str | None = None,
                      name: str | None = None, limit: int = 1000) -> list[dict[str, Any]]:
    """Stray writes recorded by :func:`record_stray_writes`, newest first (at most ``limit``)."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            f"""SELECT * FROM {SCHEMA}.stray_writes WHERE (%s::text IS NULL OR pipeline = %s)
                AND (%s::text IS NULL OR scope = %s) AND (%s::text IS NULL OR name = %s)
                ORDER BY id DESC LIMIT %s""", (pipeline, pipeline, scope, scope, name, name, int(limit))).fetchall()
