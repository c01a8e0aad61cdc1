"""Command mux and trajectory follower for one arm pair: teleop always wins, on the next control tick.

A command is a chunk of joint-position targets with times from its start (the JointTrajectory convention:
point j is the target during [tfs[j-1], tfs[j]) after the start; after the last point the last target is held).
The start is the receipt, or for a policy chunk the stamp of the observation it was computed from
(:mod:`lwd.control.chunking`): points whose time passed before it arrived are skipped, never replayed late.
The mux never extrapolates: with no valid command it holds the last commanded (or measured) position.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np

__all__ = ["Source", "Command", "CommandError", "CommandMux", "validate_command"]


class Source(str, enum.Enum):
    HOLD = "hold"
    POLICY = "policy"
    TELEOP = "teleop"


class CommandError(ValueError):
    """A command that must not reach the arm (wrong size, NaN, bad timing)."""


@dataclass(frozen=True)
class Command:
    positions: np.ndarray  # [P, J]
    times: np.ndarray  # [P] seconds from receipt, strictly increasing, > 0
    source: Source
    tag: str  # e.g. "policy/v3" or "teleop"
    received: float  # receipt time (s)
    start: float | None = None  # time base of ``times`` (s); None = the receipt

    @property
    def t0(self) -> float:
        return self.received if self.start is None else self.start

    def target(self, now: float) -> np.ndarray:
        dt = now - self.t0
        j = int(np.searchsorted(self.times, dt, side="right"))
        return self.positions[min(j, len(self.positions) - 1)]

    def finished(self, now: float) -> bool:
        return now - self.t0 >= self.times[-1]


def validate_command(positions: np.ndarray, times: np.ndarray, n_joints: int) -> tuple[np.ndarray, np.ndarray]:
    """Return float arrays or raise CommandError: no points, wrong joint count, non-finite values, bad times."""
    p = np.asarray(positions, dtype=np.float64)
    t = np.asarray(times, dtype=np.float64)
    if p.ndim != 2 or p.shape[0] == 0 or p.shape[1] != n_joints:
        raise CommandError(f"expected [P>0, {n_joints}] positions, got shape {p.shape}")
    if t.shape != (p.shape[0],):
        raise CommandError(f"expected {p.shape[0]} times, got {t.shape}")
    if not (np.isfinite(p).all() and np.isfinite(t).all()):
        raise CommandError("non-finite value in command")
    if (t <= 0).any() or (np.diff(t) <= 0).any():
        raise CommandError("time_from_start must be positive and strictly increasing")
    return p, t


class CommandMux:
    """Chooses the arm target each control tick.

    Args:
        n_joints: joint count.
        low, high: joint limits; targets are clipped into them.
        max_velocity: per-joint speed limit (units/s); targets are rate-limited from the previous target.
    """

    def __init__(self, n_joints: int, low: np.ndarray, high: np.ndarray, max_velocity: np.ndarray | float) -> None:
        self.n_joints = n_joints
        self.low = np.asarray(low, dtype=np.float64)
        self.high = np.asarray(high, dtype=np.float64)
        self.max_velocity = np.broadcast_to(np.asarray(max_velocity, dtype=np.float64), (n_joints,)).copy()
        self.teleop_engaged = False
        self.active: Command | None = None
        self.last_target: np.ndarray | None = None
        self.source = Source.HOLD
        self.stale = 0

    def reset(self, measured: np.ndarray) -> None:
        """Forget commands and hold ``measured`` (episode start, driver start)."""
        self.active = None
        self.last_target = np.clip(np.asarray(measured, dtype=np.float64), self.low, self.high)
        self.source = Source.HOLD

    def set_teleop_engaged(self, engaged: bool) -> None:
        """Takeover drops the policy chunk at once; release drops the teleop command (hold until the policy acts)."""
        if engaged == self.teleop_engaged:
            return
        self.teleop_engaged = engaged
        if self.active is not None and self.active.source != (Source.TELEOP if engaged else Source.POLICY):
            self.active = None

    def submit(self, source: Source, positions, times, tag: str, now: float, start: float | None = None) -> bool:
        """Offer a command; returns whether it was accepted. Raises CommandError on malformed input.

        ``start``: the time base of ``times`` (default ``now``); a command whose last point ended before ``now``
        is stale and not accepted (the current target holds).
        """
        p, t = validate_command(positions, times, self.n_joints)
        if start is not None and not np.isfinite(start):
            raise CommandError("non-finite command start time")
        if source == Source.POLICY and self.teleop_engaged:
            return False
        if start is not None and now - start >= t[-1]:
            self.stale += 1
            return False
        if source == Source.TELEOP and not self.teleop_engaged:
            # A teleop command is itself a takeover: the human wins even if the engaged flag is late.
            self.set_teleop_engaged(True)
        self.active = Command(p, t, source, tag, now, start)
        return True

    def tick(self, now: float, measured: np.ndarray, dt: float) -> np.ndarray:
        """Target for the next ``dt`` seconds."""
        if self.last_target is None:
            self.reset(measured)
        if self.active is not None:
            goal = self.active.target(now)
            self.source = self.active.source
        else:
            goal = self.last_target
            self.source = Source.HOLD
        goal = np.clip(goal, self.low, self.high)
        step = self.max_velocity * dt
        target = np.clip(goal, self.last_target - step, self.last_target + step)
        self.last_target = target
        return target
