"""Units → at most ``max_batches`` batches, so a run of any size fits Airflow's dynamic task mapping.

Airflow refuses to map over more than ``[core] max_map_length`` items (default 1,024): a plan of
5,000 units mapped one per task would fail. Units are packed into batches instead, each a mapped
task that works through its units one by one (each unit keeping its own state and checkpoint).
Batches are balanced by rows with the longest-processing-time rule (largest unit to the lightest
batch; Graham 1969), so one huge unit does not wait behind many small ones.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from typing import Any

from cutover.lifecycle.model import PlannedUnit

#: Airflow's default ``[core] max_map_length``
AIRFLOW_MAX_MAP_LENGTH = 1024


def max_map_length() -> int:
    """Airflow's ``[core] max_map_length`` where Airflow is importable, else its default (1,024)."""
    try:
        from airflow.configuration import conf

        return max(1, conf.getint("core", "max_map_length", fallback=AIRFLOW_MAX_MAP_LENGTH))
    except Exception:  # noqa: BLE001 - outside Airflow the default holds
        return AIRFLOW_MAX_MAP_LENGTH


def label(units: Sequence[PlannedUnit], *, width: int = 60) -> str:
    """A grid label naming the batch's units: ``a``, ``a, b``, or ``a, b … (+12)``."""
    names = [u.key.label for u in units]
    out = ""
    for i, n in enumerate(names):
        piece = n if not out else f"{out}, {n}"
        if len(piece) > width and out:
            return f"{out} … (+{len(names) - i})"
        out = piece
    return out


def make_batches(units: Sequence[PlannedUnit], max_batches: int) -> list[dict[str, Any]]:
    """Pack ``units`` into ``min(len(units), max_batches)`` batches balanced by rows.

    Returns ``[{"batch": i, "label": str, "units": [PlannedUnit.to_dict(), …]}, …]``, batches in
    plan order of their first unit, units within a batch in plan order (smallest first when the plan
    sorts so). Raises ``ValueError`` for ``max_batches < 1``.
    """
    if max_batches < 1:
        raise ValueError(f"max_batches must be at least 1, got {max_batches}")
    n = min(len(units), max_batches)
    if n == 0:
        return []
    order = {id(u): i for i, u in enumerate(units)}
    heap: list[tuple[int, int, int]] = [(0, 0, b) for b in range(n)]  # (rows, units, batch)
    members: list[list[PlannedUnit]] = [[] for _ in range(n)]
    for u in sorted(units, key=lambda x: -x.rows):
        rows, count, b = heapq.heappop(heap)
        members[b].append(u)
        heapq.heappush(heap, (rows + max(u.rows, 1), count + 1, b))
    for m in members:
        m.sort(key=lambda x: order[id(x)])
    members.sort(key=lambda m: order[id(m[0])])
    return [{"batch": i, "label": label(m), "units": [u.to_dict() for u in m]} for i, m in enumerate(members)]
