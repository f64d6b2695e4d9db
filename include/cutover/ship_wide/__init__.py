"""``ship_wide_build``: narrow time series → one wide table per ship, kept in sync, verified, cut over.

The library under ``dags/ship_wide_*.py`` (no Airflow imports): :mod:`.plan` (ships, channels,
formats), :mod:`.ddl` (wide tables, channel → column map, limits), :mod:`.pivot` (the vectorised
pivot), :mod:`.copy` (resumable history copy, finalize), :mod:`.sync` (incremental upsert by ingest
sequence), :mod:`.verify` (counts, full checksum, GX gate), :mod:`.cutover` (reader views: the
``route`` and ``drop`` hooks), :mod:`.pipeline` (plan, prepare) and :mod:`.spec` (the hooks the
shared life cycle, :mod:`cutover.lifecycle`, runs). The value rules are in :mod:`.config`.
"""

from cutover.ship_wide.config import PIPELINE, ShipWideConfig
from cutover.ship_wide.copy import copy_history, finalize_ship
from cutover.ship_wide.cutover import cutover_ship, rollback_ship
from cutover.ship_wide.ddl import ChannelLimitExceeded
from cutover.ship_wide.pipeline import plan_run, prepare_ship
from cutover.ship_wide.sync import built_ships, sync_ship
from cutover.ship_wide.verify import ShipVerificationFailed, verify_ship

__all__ = [
    "PIPELINE", "ChannelLimitExceeded", "ShipVerificationFailed", "ShipWideConfig", "built_ships", "copy_history",
    "cutover_ship", "finalize_ship", "plan_run", "prepare_ship", "rollback_ship", "sync_ship",
    "verify_ship",
]
