"""Quality: the Great Expectations gate every cutover passes through.

:mod:`cutover.quality.gate` is the logic (``run_gate``), :mod:`cutover.quality.task` the reusable
Airflow task. Names are loaded lazily so that DAG files importing the task stay light.
"""

from __future__ import annotations

from typing import Any

__all__ = ["GateResult", "QualityGateFailed", "run_gate"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from cutover.quality import gate

        return getattr(gate, name)
    raise AttributeError(name)
