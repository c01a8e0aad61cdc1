"""Action-chunk scheduling on the observation's time base (ROS-free): when to infer, what to execute, seams.

A policy maps the observation taken at time ``t_obs`` to a chunk of H joint targets; action ``k`` is *due* at
``t_obs + k * dt`` and is the target during ``[t_obs + k dt, t_obs + (k + 1) dt)`` (``dt`` = ``lwd.robot.CONTROL_DT``).
The chunk arrives only after the observation travelled to the policy and inference ran (the *delay*); actions whose
slot has already ended by then are skipped, never replayed late. Every published chunk therefore carries its time
base in ``header.stamp`` of ``policy/joint_trajectory`` (the observation's stamp), and the arm driver's mux executes
it on that time base. Only time the robot spent moving is skipped: if it held still for part of the delay (no chunk
in flight, as at an episode start, or the old one ran out), the time base moves forward by that much, because
the state the chunk was planned from is still where the robot is.

How a new chunk meets the one in flight (``mode``):

* ``"replace"``: the new chunk replaces the one in flight at once (the behaviour before chunk blending).
* ``"blend"``: over the overlap of the two chunks the executed target is ``w_i * old + (1 - w_i) * new``, with the
  exponentially decaying soft-masking weights of real-time chunking (:func:`soft_mask`, Black et al. 2025,
  arXiv 2506.07339, eq. 5): 1 for the slots the delay already committed, decaying to 0 where the old chunk ends.
* ``"rtc"``: real-time chunking by inference-time guidance. When inference starts the scheduler hands the policy a
  :class:`Prefix` (the in-flight chunk's remaining targets on the new chunk's time base, with soft-mask weights over
  the estimated delay); the policy inpaints its new chunk toward it (``lwd.policy.rtc``), which then replaces the old.

Inference is requested every ``exec_steps`` control steps of the chunk's time base (one inference in flight at a
time), or as soon as no chunk covers the present.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np

from lwd.robot import CONTROL_DT

__all__ = ["MODES", "DEFAULT_MODE", "Chunk", "Prefix", "ChunkScheduler", "ObservationGate", "soft_mask",
           "steps_elapsed"]

MODES = ("replace", "blend", "rtc")
DEFAULT_MODE = "blend"
"""Chosen by ``lwd bench chunking`` (README, "Chunk execution"; bench/results/chunking.md): at 0-400 ms of delay it
had the lowest jerk and boundary jumps, at equal task success."""

_EPS = 1e-6  # tolerance (in control steps) for times that sit on the grid up to float rounding


def steps_elapsed(t0: float, t: float, dt: float) -> int:
    """Index of the control slot of time ``t`` on a grid starting at ``t0``: ``floor((t - t0) / dt)``."""
    return math.floor((t - t0) / dt + _EPS)


def soft_mask(horizon: int, frozen: int, overlap: int) -> np.ndarray:
    """RTC soft-masking weights on the old chunk, per index ``i`` of the new chunk (length ``horizon``).

    ``1`` for ``i < frozen`` (slots the inference delay commits to the old chunk), ``c_i (e^{c_i} - 1) / (e - 1)``
    with ``c_i = (overlap - i) / (overlap - frozen + 1)`` for ``frozen <= i < overlap``, ``0`` from ``overlap`` on
    (where the old chunk has no action left). ``overlap`` is clipped to ``[0, horizon]``, ``frozen`` to
    ``[0, overlap]``.
    """
    overlap = int(np.clip(overlap, 0, horizon))
    frozen = int(np.clip(frozen, 0, overlap))
    w = np.zeros(horizon, dtype=np.float64)
    w[:frozen] = 1.0
    i = np.arange(frozen, overlap)
    c = (overlap - i) / (overlap - frozen + 1.0)
    w[frozen:overlap] = c * np.expm1(c) / math.expm1(1.0)
    return w


@dataclass(frozen=True)
class Chunk:
    """Absolute joint targets ``actions`` (H, J); action ``k`` is due at ``start + k * dt``."""

    actions: np.ndarray
    start: float
    dt: float = CONTROL_DT
    tag: str = ""

    def __post_init__(self) -> None:
        a = np.asarray(self.actions, dtype=np.float64)
        if a.ndim != 2 or a.shape[0] == 0:
            raise ValueError(f"a chunk needs (H > 0, J) actions, got shape {a.shape}")
        if not np.isfinite(a).all():
            raise ValueError("non-finite action in chunk")
        if self.dt <= 0:
            raise ValueError("dt must be positive")
        object.__setattr__(self, "actions", a)

    @property
    def horizon(self) -> int:
        return int(self.actions.shape[0])

    @property
    def end(self) -> float:
        """Time at which the last action's slot ends."""
        return self.start + self.horizon * self.dt

    def index(self, t: float) -> int:
        """Index of the action due at ``t`` (may be < 0 or >= H)."""
        return steps_elapsed(self.start, t, self.dt)

    def action_at(self, t: float) -> np.ndarray | None:
        """The target at time ``t``: the action whose slot contains ``t``; ``None`` once the chunk has run out.
        (Before ``start`` the first action is the target.)"""
        k = self.index(t)
        if k >= self.horizon:
            return None
        return self.actions[max(k, 0)]

    def remaining(self, t: float) -> int:
        """Actions not yet finished at ``t`` (the current one included)."""
        return max(0, self.horizon - max(self.index(t), 0))


@dataclass(frozen=True)
class Prefix:
    """What RTC guidance inpaints toward: the in-flight chunk's targets on the new chunk's time base.

    ``actions[i]`` (absolute, (P, J)) is the old chunk's target for slot ``i`` of the new chunk (due at the new
    observation's time + i dt), ``weights[i]`` in [0, 1] its guidance weight (1: committed by the inference delay).
    ``P`` <= the new chunk's horizon; slots past ``P`` are free.
    """

    actions: np.ndarray
    weights: np.ndarray

    @property
    def frozen(self) -> int:
        return int(np.sum(self.weights >= 1.0))


@dataclass(frozen=True)
class ObservationGate:
    """Which cached observation may start an inference.

    Args:
        max_age_s: an observation older than this (vs now) is stale.
        settle_s: after an episode start, ignore observations stamped earlier than ``start + settle_s``
            (frames rendered before the sim reset reached the camera).
        wait_s: when an inference is due at time ``t``, wait up to this long past ``t`` for an observation taken at
            or after ``t`` rather than use an older one. Requests fall on the chunk's time base, which is a camera
            frame's stamp, so without waiting the frame due at ``t`` is still in transit and the policy would act on
            the one a camera period older (measured: obs -> command p50 116 ms with a 10 Hz camera).
    """

    max_age_s: float = 0.5
    settle_s: float = 0.15
    wait_s: float = 0.1

    def accepts(self, obs_time: float, now: float, episode_start: float, due: float = -math.inf) -> bool:
        """Whether the observation taken at ``obs_time`` may start the inference due at ``due`` (checked at
        ``now``)."""
        if obs_time < episode_start + self.settle_s or now - obs_time > self.max_age_s:
            return False
        return obs_time >= due - 1e-3 or now >= due + self.wait_s


class ChunkScheduler:
    """Decides when to infer and which chunk is executed; one instance per robot, driven by one thread.

    Use: ``if request_due(now)``: take the observation (time ``t_obs``), ``prefix = begin(t_obs)``, infer (passing
    ``prefix`` to an RTC-capable policy when it is not None), then ``accept(actions, t_obs, now)`` returns the chunk
    to execute / publish (``None`` if it arrived too late to contribute a single action), or ``cancel()`` on failure.
    ``target(now)`` is the target due now from the chunk in flight (``None``: no fresh target, hold).

    Args:
        mode: one of :data:`MODES`.
        dt: control period (s) of one chunk action.
        exec_steps: steps of a chunk executed before the next inference is requested.
        time_base: ``"obs"`` (chunks are timed from their observation) or ``"receipt"`` (timed from arrival: the
            behaviour before latency-aware execution; kept for measurements).
        delay_window: inference delays remembered to estimate the next one (the max is used, as in RTC).
    """

    def __init__(self, mode: str = DEFAULT_MODE, dt: float = CONTROL_DT, exec_steps: int = 5,
                 time_base: str = "obs", delay_window: int = 10) -> None:
        if mode not in MODES:
            raise ValueError(f"chunk mode must be one of {MODES}, got {mode!r}")
        if time_base not in ("obs", "receipt"):
            raise ValueError(f"time_base must be 'obs' or 'receipt', got {time_base!r}")
        if exec_steps < 1 or dt <= 0:
            raise ValueError("exec_steps must be >= 1 and dt > 0")
        self.mode = mode
        self.dt = float(dt)
        self.exec_steps = int(exec_steps)
        self.time_base = time_base
        self.delays: deque[float] = deque(maxlen=delay_window)
        self.active: Chunk | None = None
        self.inflight_obs: float | None = None
        self.chunks = 0
        self.stale = 0

    def reset(self) -> None:
        """Forget the chunk in flight and any pending inference (episode start, takeover)."""
        self.active = None
        self.inflight_obs = None

    # -- requesting ---------------------------------------------------------------------------------------------
    def request_due(self, now: float) -> bool:
        """Whether to start an inference now (none is in flight and the chunk in flight is due for replanning)."""
        if self.inflight_obs is not None:
            return False
        if self.active is None:
            return True
        return now >= self.next_request_time()

    def next_request_time(self) -> float:
        """When the next inference is due (``-inf``: at once)."""
        if self.active is None:
            return -math.inf
        return min(self.active.start + self.exec_steps * self.dt, self.active.end) - _EPS * self.dt

    def delay_estimate(self) -> float:
        """Expected delay observation -> chunk arrival (s): the largest of the recent ones, 0 before any."""
        return max(self.delays) if self.delays else 0.0

    def begin(self, obs_time: float) -> Prefix | None:
        """An inference starts on the observation taken at ``obs_time``; returns the RTC prefix (``rtc`` only)."""
        self.inflight_obs = obs_time
        if self.mode != "rtc" or self.active is None:
            return None
        return self.prefix(obs_time, self.active.horizon)

    def prefix(self, obs_time: float, horizon: int) -> Prefix | None:
        """The in-flight chunk's targets for the slots of a chunk starting at ``obs_time``, with soft-mask weights
        (the estimated delay's slots frozen). ``None`` if nothing overlaps."""
        old = self.active
        if old is None:
            return None
        overlap = min(horizon, math.ceil((old.end - obs_time) / self.dt - _EPS))
        if overlap <= 0:
            return None
        frozen = math.ceil(self.delay_estimate() / self.dt - _EPS)
        times = obs_time + self.dt * np.arange(overlap)
        actions = np.stack([old.actions[min(max(old.index(t), 0), old.horizon - 1)] for t in times])
        return Prefix(actions, soft_mask(horizon, frozen, overlap)[:overlap])

    def cancel(self) -> None:
        """The inference begun last failed or was dropped."""
        self.inflight_obs = None

    # -- receiving ----------------------------------------------------------------------------------------------
    def accept(self, actions: np.ndarray, obs_time: float, now: float, tag: str = "") -> Chunk | None:
        """A chunk computed from the observation at ``obs_time`` arrives at ``now``; returns the chunk to execute
        (for ``blend``, already merged with the one in flight), or ``None`` if all its slots have passed."""
        self.inflight_obs = None
        self.delays.append(max(0.0, now - obs_time))
        old = self.active
        if self.time_base == "receipt":
            start = now
        else:  # skip what was due while the robot moved on along the old chunk; not the time it held still
            moving = 0.0 if old is None else min(max(0.0, min(now, old.end) - obs_time), now - obs_time)
            start = now - moving
        new = Chunk(actions, start, self.dt, tag)
        if new.index(now) >= new.horizon:
            self.stale += 1
            return None
        if self.mode == "blend" and old is not None:
            new = self._blend(old, new, now)
        self.active = new
        self.chunks += 1
        return new

    def _blend(self, old: Chunk, new: Chunk, now: float) -> Chunk:
        overlap = min(new.horizon, math.ceil((old.end - new.start) / self.dt - _EPS))
        if overlap <= 0:
            return new
        frozen = math.ceil((now - new.start) / self.dt - _EPS)  # slots the delay committed to the old chunk
        w = soft_mask(new.horizon, frozen, overlap)
        merged = new.actions.copy()
        for i in range(overlap):
            a_old = old.action_at(new.start + i * self.dt)
            if a_old is not None:
                merged[i] = w[i] * a_old + (1.0 - w[i]) * new.actions[i]
        return Chunk(merged, new.start, new.dt, new.tag)

    # -- executing ----------------------------------------------------------------------------------------------
    def target(self, now: float) -> np.ndarray | None:
        """The action due at ``now`` from the chunk in flight; ``None`` when there is none (hold)."""
        return self.active.action_at(now) if self.active is not None else None
