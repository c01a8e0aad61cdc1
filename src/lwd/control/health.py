"""Node health, ROS-free: per-reason rejection counters, a status level, and the input checks that feed them.

Every robot node owns one :class:`Health`. Inputs it refuses are counted per reason (``nan_state``, ``bad_shape``,
``bad_joint_names``, ``nan_command``, ``bad_timing``, ``bad_event`` …) instead of only being logged: a throttled log
line hides all but the first reason, a counter does not. ``lwd.nodes.common.HealthPublisher`` turns a
:meth:`Health.report` into a ``diagnostic_msgs/DiagnosticStatus`` on ``/diagnostics`` about once a second.

Levels follow ``diagnostic_msgs/DiagnosticStatus``: OK, WARN (inputs were rejected since the previous report, or the
node says it is degraded), ERROR (the node cannot do its job), STALE (no report).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "OK", "WARN", "ERROR", "STALE", "LEVEL_NAMES", "Rejected", "HealthReport", "Health",
    "check_finite_vector", "joint_order", "reorder_joints",
]

OK, WARN, ERROR, STALE = 0, 1, 2, 3
LEVEL_NAMES = {OK: "OK", WARN: "WARN", ERROR: "ERROR", STALE: "STALE"}


class Rejected(ValueError):
    """An input refused for a named ``reason`` (the counter key); ``str()`` is the human-readable detail."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(detail or reason)
        self.reason = reason


@dataclass(frozen=True)
class HealthReport:
    level: int
    message: str
    values: list[tuple[str, str]] = field(default_factory=list)


class Health:
    """Counters + status of one node.

    Args:
        log_every_s: per reason, :meth:`reject` asks the caller to log the first rejection and then at most one
            per this many seconds (each reason has its own clock, so a frequent reason never hides a rare one).
        clock: monotonic time source (seconds), injectable for tests.
    """

    def __init__(self, log_every_s: float = 5.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.log_every_s = float(log_every_s)
        self.clock = clock
        self.rejected: Counter[str] = Counter()
        self.counts: Counter[str] = Counter()
        self.values: dict[str, str] = {}
        self.level = OK
        self.message = "ok"
        self._last_log: dict[str, float] = {}
        self._rejected_at_report = 0
        self._last_reason = ""

    # -- recording ----------------------------------------------------------------------------------------------
    def reject(self, reason: str) -> bool:
        """Count one rejected input; returns True when the caller should log it now (rate-limited per reason)."""
        self.rejected[reason] += 1
        self._last_reason = reason
        now = self.clock()
        last = self._last_log.get(reason)
        if last is None or now - last >= self.log_every_s:
            self._last_log[reason] = now
            return True
        return False

    def count(self, key: str, n: int = 1) -> None:
        """Count something that is not a rejection (frames published, episodes recorded …)."""
        self.counts[key] += n

    def set_value(self, key: str, value) -> None:
        self.values[key] = str(value)

    def set_status(self, level: int, message: str) -> None:
        """The node's own view of its health (e.g. ERROR "store not writable", WARN "waiting for the recorder")."""
        if level not in LEVEL_NAMES:
            raise ValueError(f"unknown level {level}")
        self.level, self.message = int(level), str(message)

    @property
    def total_rejected(self) -> int:
        return sum(self.rejected.values())

    # -- reporting ----------------------------------------------------------------------------------------------
    def report(self) -> HealthReport:
        """Level, message and key/values for one diagnostics publication.

        The level is the node's status, raised to WARN when inputs were rejected since the previous report.
        Rejection counters are cumulative (``rejected/<reason>``), so a missed publication loses nothing.
        """
        total = self.total_rejected
        fresh = total - self._rejected_at_report
        self._rejected_at_report = total
        level, message = self.level, self.message
        if fresh > 0 and level < WARN:
            level = WARN
            message = f"{message}; rejected {fresh} input(s) (last: {self._last_reason})"
        values = [("rejected_total", str(total))]
        values += [(f"rejected/{k}", str(v)) for k, v in sorted(self.rejected.items())]
        values += [(f"count/{k}", str(v)) for k, v in sorted(self.counts.items())]
        values += sorted(self.values.items())
        return HealthReport(level, message, values)


# -- input checks ---------------------------------------------------------------------------------------------------
def check_finite_vector(data: Sequence[float] | np.ndarray, size: int | None = None, what: str = "state") -> np.ndarray:
    """A float64 copy of a flat numeric vector, or :class:`Rejected` (``bad_shape`` / ``nan_<what>``)."""
    try:
        v = np.array(data, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as e:
        raise Rejected("bad_shape", f"{what} is not numeric: {e}") from None
    if size is not None and v.shape != (size,):
        raise Rejected("bad_shape", f"{what} has {v.size} entries, expected {size}")
    if not np.isfinite(v).all():
        raise Rejected(f"nan_{what}", f"{what} contains NaN or inf")
    return v


def joint_order(names: Sequence[str], joint_names: Sequence[str], *, extra: str = "ignore") -> list[int]:
    """For each of ``joint_names``, the index of that joint in ``names``: the one place that maps named joints
    (``JointState.name``, ``JointTrajectory.joint_names``) onto the arm's joint order.

    Defined behaviour (each refusal is :class:`Rejected` with reason ``bad_joint_names``):

    - no names at all: refused (an unnamed vector is ambiguous; ros2_control refuses it too);
    - a name given twice: refused;
    - a joint of ``joint_names`` missing: refused;
    - names the arm does not have: ignored with ``extra="ignore"`` (a robot's joint_states may list other
      joints), refused with ``extra="reject"`` (a command for a joint this arm does not drive is a mismatch).
    """
    if extra not in ("ignore", "reject"):
        raise ValueError(f"extra must be 'ignore' or 'reject', got {extra!r}")
    names = list(names)
    if not names:
        raise Rejected("bad_joint_names", "no joint names")
    index = {n: i for i, n in enumerate(names)}
    if len(index) != len(names):
        twice = sorted({n for n in names if names.count(n) > 1})
        raise Rejected("bad_joint_names", f"joints named twice: {twice}")
    missing = [n for n in joint_names if n not in index]
    if missing:
        raise Rejected("bad_joint_names", f"missing joints {missing}")
    if extra == "reject" and len(names) != len(joint_names):
        unknown = [n for n in names if n not in set(joint_names)]
        raise Rejected("bad_joint_names", f"unknown joints {unknown}")
    return [index[n] for n in joint_names]


def reorder_joints(names: Sequence[str], values: Sequence[float], joint_names: Sequence[str],
                   what: str = "state", *, extra: str = "ignore") -> np.ndarray:
    """``values`` (one per ``names``) as float64 in the order of ``joint_names`` (names as :func:`joint_order`).

    Raises :class:`Rejected`: ``bad_joint_names`` (see :func:`joint_order`), ``bad_shape`` (not one value per
    name), ``nan_<what>`` (a non-finite value among the joints used; values of ignored extra joints are not checked).
    """
    order = joint_order(names, joint_names, extra=extra)
    try:
        v = np.asarray(values, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as e:
        raise Rejected("bad_shape", f"{what} is not numeric: {e}") from None
    if len(v) != len(names):
        raise Rejected("bad_shape", f"{len(v)} values for {len(names)} joint names")
    v = v[order]
    if not np.isfinite(v).all():
        raise Rejected(f"nan_{what}", f"{what} contains NaN or inf")
    return v
