"""The shared life cycle of every Cutover pipeline (``DESIGN.md``): plan → prepare → copy → finalize →
verify → cutover → sync → rollback.

* :mod:`.model` — :class:`UnitState` with checked transitions, :class:`UnitKey`, :class:`PlannedUnit`;
* :mod:`.state` — runs and units in the control schema: plan, advance, per-chunk progress, failure, verdict;
* :mod:`.batching` — any number of units in at most ``max_map_length`` mapped batches;
* :mod:`.spec` — :class:`PipelineSpec`, the hooks a pipeline supplies (and nothing else);
* :mod:`.stages` — the task bodies (plan, unit stages, report) as plain functions;
* :mod:`.switch` — readiness, cutover with approval and canary, rollback, each recorded as a run;
* :mod:`.tasks` — the Airflow wiring every pipeline's DAG files call (the only Airflow import).
"""

from cutover.lifecycle.model import (
    BUILD_END_STATES,
    TRANSITIONS,
    InvalidTransition,
    PlannedUnit,
    UnitKey,
    UnitState,
    check_transition,
)

# Only the light model here: DAG files import ``cutover.lifecycle.tasks`` at parse time, which must
# not pull in database drivers (the hooks live in ``.spec``; import it where it is used).
__all__ = ["BUILD_END_STATES", "TRANSITIONS", "InvalidTransition", "PlannedUnit", "UnitKey", "UnitState", "check_transition"]
