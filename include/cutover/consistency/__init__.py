"""Consistency checks: compare pairs kept in sync (source vs target), find every differing key, repair.

* :mod:`~cutover.consistency.spec` — what a pair is (:class:`PairSpec`, :class:`Endpoint`);
* :mod:`~cutover.consistency.normalize` — canonical value rendering per engine;
* :mod:`~cutover.consistency.diff` — the engine (:func:`diff_pair` → :class:`DiffResult`);
* :mod:`~cutover.consistency.registry` — ``cutover.sync_pairs``, where pipelines register pairs;
* :mod:`~cutover.consistency.repair` — re-sync the differing keys of a pair that allows it;
* :mod:`~cutover.consistency.runner` — one scheduled check: window, diff, record, repair, alert.
"""

from cutover.consistency.diff import DiffOptions, DiffResult, diff_pair
from cutover.consistency.spec import Endpoint, PairSpec, PairSpecError

__all__ = ["DiffOptions", "DiffResult", "Endpoint", "PairSpec", "PairSpecError", "diff_pair"]
