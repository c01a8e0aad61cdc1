"""The scripted operator's tunables, without MuJoCo: the teleop node declares them as parameters whatever its
backend, and ``lwd.sim.operator.ScriptedOperator`` and the bench take their defaults from here."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["OperatorConfig"]


@dataclass(frozen=True)
class OperatorConfig:
    """Defaults of ``ScriptedOperator``'s arguments of the same names (see its docstring)."""

    stall_s: float = 3.0
    max_correction_s: float = 5.0
    max_interventions: int = 3
    misaligned_s: float = 0.0
