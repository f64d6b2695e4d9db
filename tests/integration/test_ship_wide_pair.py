"""Each built ship is registered with consistency_checks: equal after a build, exact after a corruption."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

pytestmark = pytest.mark.integration

SCHEMA = "sw_it_pair"


def test_built_ship_is_watched_by_consistency_checks(pg: Any) -> None:
    from psycopg import sql

    from cutover.consistency import registry
    from cutover.consistency.diff import diff_pair
    from cutover.consistency.runner import run_check
    from cutover.samples import ship as samples
    from cutover.ship_wide import (
        ShipWideConfig,
        copy_history,
        finalize_ship,
        plan_run,
        prepare_ship,
        rollback_ship,
        verify_ship,
    )
    from cutover.ship_wide.ddl import load_wide
    from cutover.ship_wide.pair import pair_name

    pg.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE; CREATE SCHEMA {SCHEMA}")
    # odd channel names, a conflicting channel, format mismatches and duplicates: none may look like a difference
    sample = samples.generate(pg, SCHEMA, ships=1, channels=6, timestamps=30, seed=5, odd_names=True,
                              conflict_channels=1, mismatches=3, duplicates=3)
    pg.commit()
    ship = sample.ships[0]
    cfg = ShipWideConfig(schema=SCHEMA, chunk_rows=1000)
    rollback_ship(cfg, ship, drop=True)
    [plan] = plan_run(cfg)
    prepare_ship(cfg, plan)
    copy_history(cfg, ship, rows_total=plan["rows"])
    final = finalize_ship(cfg, ship)
    verify_ship(cfg, ship, gate=False)
    assert final["consistency_pair"] == pair_name(cfg, ship)

    spec = registry.get_pair(pg, pair_name(cfg, ship))
    assert spec is not None and spec.key == ("created_time", "channel") and spec.repair == "none"
    now = dt.datetime.now(dt.UTC)
    outcome = run_check(spec.name, as_of=now, full=True)
    assert outcome.status == "equal", outcome
    assert outcome.rows_checked > 0

    # corrupt one cell of the wide table: exactly that (created_time, channel) is reported changed
    wide = load_wide(pg, cfg, ship)
    assert wide is not None
    channel, column = next((ch, col) for ch, col in wide.columns.items() if wide.types[col] == "double precision")
    t = pg.execute(sql.SQL("SELECT min(created_time) FROM {} WHERE {} IS NOT NULL").format(
        wide.ident, sql.Identifier(column))).fetchone()[0]
    pg.execute(sql.SQL("UPDATE {} SET {} = {} + 1 WHERE created_time = %s").format(
        wide.ident, sql.Identifier(column), sql.Identifier(column)), (t,))
    pg.commit()
    result = diff_pair(spec)
    assert [(k[0], k[1]) for k in result.changed] == [(t, channel)]
    assert result.missing == [] and result.extra == []

    rollback_ship(cfg, ship, drop=True)
    assert registry.get_pair(pg, pair_name(cfg, ship)) is None
    pg.execute(f"DROP SCHEMA {SCHEMA} CASCADE")
    pg.commit()
