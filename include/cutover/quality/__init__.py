"""Quality: the Great Expectations gate every cutover passes through (see :mod:`cutover.quality.gate`)."""

from cutover.quality.gate import GateResult, QualityGateFailed, run_gate

__all__ = ["GateResult", "QualityGateFailed", "run_gate"]
