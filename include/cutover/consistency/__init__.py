"""Consistency checks: compare pairs kept in sync (source vs target), find every differing key, repair.

* :mod:`~cutover.consistency.spec` — what a pair is (:class:`PairSpec`, :class:`Endpoint`);
* :mod:`~cutover.consistency.normalize` — canonical value rendering per engine;
* :mod:`~cutover.consistency.diff` — the engine (:func:`diff_pair` → :class:`DiffResult`);
* :mod:`~cutover.consistency.registry` — ``cutover.sync_pairs``, where pipelines register pairs;
* :mod:`~cutover.consistency.repair` — re-sync the differing keys of a pair that allows it;
* :mod:`~cutover.consistency.runner` — one scheduled check: window, diff, record, repair, alert.

Names are loaded lazily, so that DAG files importing :mod:`~cutover.consistency.dag` stay light.
"""

from __future__ import annotations

from typing import Any

__all__ = ["DiffOptions", "DiffResult", "Endpoint", "PairSpec", "PairSpecError", "diff_pair"]
_HOME = {"DiffOptions": "diff", "DiffResult": "diff", "diff_pair": "diff",
         "Endpoint": "spec", "PairSpec": "spec", "PairSpecError": "spec"}


def __getattr__(name: str) -> Any:
    if name in _HOME:
        from importlib import import_module

        return getattr(import_module(f"cutover.consistency.{_HOME[name]}"), name)
    raise AttributeError(name)
