"""The arm behind the arm driver's command mux, ROS-free: a MuJoCo simulation or a ros2_control controller.

``lwd.nodes.arm_driver`` ticks :class:`lwd.control.mux.CommandMux` and hands each target to an :class:`ArmBackend`;
the node only translates topics. Both backends share one small interface:

- ``low``, ``high``: joint limits (the mux clips targets into them);
- :meth:`~ArmBackend.reset` ``(event)``: an ``episode/event`` start (the sim resets its world to the event's task and
  seed; hardware is not reset);
- :meth:`~ArmBackend.apply` ``(target, dt)``: the target for the next ``dt`` seconds;
- :meth:`~ArmBackend.measured`: joint positions and velocities in ``JOINT_NAMES`` order (``ready`` says whether
  there is a measurement yet);
- :meth:`~ArmBackend.state`: the world-mirror vector published on ``sim/state`` (None: not a simulation);
- :meth:`~ArmBackend.success`: whether the task is solved (the sim's sparse reward; hardware: never, the operator
  marks the outcome);
- ``max_limit_excess``: the furthest a measured joint has been beyond its limits (physical-safety check).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

from lwd.control.health import Rejected, reorder_joints
from lwd.robot import JOINT_NAMES, N_JOINTS

__all__ = ["ArmBackend", "SimArmBackend", "RealArmBackend"]


class ArmBackend:
    """Interface and shared bookkeeping of the arm backends (see the module doc)."""

    name = "none"

    def __init__(self, low: Sequence[float], high: Sequence[float]) -> None:
        self.low = np.asarray(low, dtype=np.float64).reshape(-1)
        self.high = np.asarray(high, dtype=np.float64).reshape(-1)
        if self.low.shape != (N_JOINTS,) or self.high.shape != (N_JOINTS,):
            raise ValueError(f"joint limits must have {N_JOINTS} entries, got {self.low.shape} and {self.high.shape}")
        if not (self.low < self.high).all():
            raise ValueError("every joint's low limit must be below its high limit")
        self._position = np.zeros(N_JOINTS)
        self._velocity = np.zeros(N_JOINTS)
        self.max_limit_excess = 0.0

    @property
    def ready(self) -> bool:
        """Whether :meth:`measured` reports the arm (the sim always does; hardware once its first state came)."""
        return True

    def reset(self, event: Mapping) -> None:
        """An episode starts (``event``: the parsed ``episode/event`` start). Raises :class:`Rejected` ``bad_event``."""

    def apply(self, target: np.ndarray, dt: float) -> None:
        """Drive toward ``target`` (clipped, rate-limited by the mux) for the next ``dt`` seconds."""
        raise NotImplementedError

    def measured(self) -> tuple[np.ndarray, np.ndarray]:
        """Joint positions and velocities (copies)."""
        return self._position.copy(), self._velocity.copy()

    def state(self) -> np.ndarray | None:
        """The ``sim/state`` vector, or None when there is no simulation to mirror."""
        return None

    def success(self) -> bool:
        return False

    def new_subgoals(self) -> list[int]:
        """Subgoal counts (1, 2, ...) the episode reached for the first time since the last call or reset; each is
        published as an ``episode/event`` ``subgoal`` (the learner's filtered BC credits the segment before it).
        Hardware has no detector: nothing."""
        return []

    def close(self) -> None:
        pass

    def _measure(self, position: np.ndarray, velocity: np.ndarray) -> None:
        self._position, self._velocity = position, velocity
        excess = float(np.max(np.maximum(position - self.high, self.low - position)))
        self.max_limit_excess = max(self.max_limit_excess, excess)


class SimArmBackend(ArmBackend):
    """The dual arm in MuJoCo (:class:`lwd.sim.world.SimWorld`, no rendering: the camera driver renders its mirror).

    Args:
        image_size: the world's camera size (unused without rendering, kept equal to the camera's).
        task, seed: the scene before the first episode.
        world: an existing world to drive instead of a new one (tests); the backend then does not close it.
    """

    name = "sim"

    def __init__(self, image_size: int = 64, task: str = "pick_place", seed: int = 0, world=None) -> None:
        from lwd.sim.world import SimWorld  # MuJoCo only where the sim runs

        self._owns_world = world is None
        self.world = SimWorld(image_size=image_size, render=False) if world is None else world
        self.world.reset(task, seed)
        super().__init__(self.world.joint_low, self.world.joint_high)
        self._measure(self.world.qpos14(), self.world.qvel14())
        self._subgoals = 0

    def reset(self, event: Mapping) -> None:
        try:
            task, seed = str(event["task"]), int(event["seed"])
            self.world.reset(task, seed)
        except (KeyError, ValueError, TypeError) as e:
            raise Rejected("bad_event", f"cannot reset the sim for {dict(event)}: {e!r}") from None
        self._measure(self.world.qpos14(), self.world.qvel14())
        self._subgoals = self.world.progress()  # what the scene starts with is not the policy's

    def apply(self, target: np.ndarray, dt: float) -> None:
        """One physics step of ``dt``. Raises ValueError (wrong size, non-finite target)."""
        self.world.apply(target, dt)
        self._measure(self.world.qpos14(), self.world.qvel14())

    def state(self) -> np.ndarray:
        return self.world.get_state()

    def success(self) -> bool:
        return bool(self.world.success())

    def new_subgoals(self) -> list[int]:
        reached = self.world.progress()
        new = list(range(self._subgoals + 1, reached + 1))
        self._subgoals = max(self._subgoals, reached)
        return new

    def close(self) -> None:
        if self._owns_world:
            self.world.close()


class RealArmBackend(ArmBackend):
    """A ros2_control arm: targets go out through ``send(target, dt)`` (the node publishes them to the
    ``JointTrajectoryController``), the hardware's joint states come in through :meth:`update`.

    Nothing is sent before the first valid joint state: the mux must hold where the arm really is.
    """

    name = "real"

    def __init__(self, low: Sequence[float], high: Sequence[float], send: Callable[[np.ndarray, float], None],
                 joint_names: Sequence[str] = JOINT_NAMES) -> None:
        super().__init__(low, high)
        self.send = send
        self.joint_names = list(joint_names)
        self._seen = False

    @property
    def ready(self) -> bool:
        return self._seen

    def update(self, names: Sequence[str], position: Sequence[float], velocity: Sequence[float] = ()) -> bool:
        """A hardware ``JointState``; returns True for the first valid one (the node then holds there).

        Raises :class:`Rejected` (names as :func:`lwd.control.health.joint_order`, ``bad_shape``, ``nan_state``,
        ``nan_velocity``): a NaN or garbled reading never becomes the measured (= hold) position. Velocities are
        optional in ``sensor_msgs/JointState``: without one per name they read as zero.
        """
        pos = reorder_joints(names, position, self.joint_names)
        vel = (reorder_joints(names, velocity, self.joint_names, what="velocity")
               if len(velocity) == len(names) else np.zeros_like(pos))
        self._measure(pos, vel)
        first, self._seen = not self._seen, True
        return first

    def apply(self, target: np.ndarray, dt: float) -> None:
        if self._seen:
            self.send(np.asarray(target, dtype=np.float64), dt)

