"""Episode rollouts in the bare simulator (no ROS): expert demos, policy rollouts, operator interventions.

``run_episode`` is the single loop: each control step it records the observation *before* the action, asks the
operator (if any) whether it is engaged, otherwise pops the next action of the actor's current chunk, applies it and
checks success. An operator takeover drops the rest of the policy's chunk (the policy re-plans on release).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from lwd.data.schema import SOURCE_EXPERT, SOURCE_POLICY, SOURCE_TELEOP
from lwd.sim.expert import ScriptedExpert
from lwd.sim.operator import ScriptedOperator
from lwd.sim.tasks import get_task
from lwd.sim.world import CONTROL_DT, N_JOINTS, SimWorld

__all__ = [
    "Actor",
    "EpisodeRollout",
    "SOURCE_POLICY",
    "SOURCE_OPERATOR",
    "SOURCE_EXPERT",
    "SETTLE_STEPS",
    "obs",
    "run_episode",
    "collect_demos",
]

# Step source codes: the one definition is lwd.data.schema's SOURCE_*; the names here are kept for importers.
SOURCE_OPERATOR = SOURCE_TELEOP  # a scripted operator's intervention is recorded as teleop
SETTLE_STEPS = 3  # control steps recorded after success is first detected


class Actor(Protocol):
    """Anything that maps an observation to an action chunk (n, 14) of joint-position targets."""

    def reset(self) -> None: ...

    def act(self, obs: dict[str, object]) -> np.ndarray: ...


@dataclass
class EpisodeRollout:
    """One episode. Per-step arrays have length T; ``qpos[t]``/``images[t]`` are observed before ``actions[t]``."""

    images: np.ndarray  # (T, S, S * len(cameras), 3) uint8: the views side by side
    qpos: np.ndarray  # (T, 14) float32
    actions: np.ndarray  # (T, 14) float32, the executed (clipped) targets
    source: np.ndarray  # (T,) int8: lwd.data.schema SOURCE_POLICY / SOURCE_TELEOP (operator) / SOURCE_EXPERT
    success: bool
    task: str
    instruction: str
    seed: int
    interventions: int = 0
    steps_to_success: int | None = None
    progress: int = 0
    events: list[tuple[int, str]] = field(default_factory=list)  # (step, "takeover" | "release")
    subgoal_steps: list[int] = field(default_factory=list)
    """Steps whose action first achieved one more subgoal than ever before in the episode (an item placed)."""
    cameras: tuple[str, ...] = ("overview",)

    def __len__(self) -> int:
        return int(self.actions.shape[0])


def obs(world: SimWorld) -> dict[str, object]:
    """Observation dict: ``image`` uint8 (S, S * len(world.cameras), 3), ``qpos`` float32 (14,), ``instruction``."""
    return {
        "image": world.render(),
        "qpos": world.qpos14().astype(np.float32),
        "instruction": world.instruction,
    }


def run_episode(
    world: SimWorld,
    task: str,
    seed: int,
    actor: Actor | ScriptedExpert | None = None,
    operator: ScriptedOperator | None = None,
    time_limit_s: float | None = None,
    *,
    expert_noise: float = 0.0,
    variation: float = 1.0,
    target: str | None = None,
) -> EpisodeRollout:
    """Reset ``world`` to (task, seed) and run one episode.

    Args:
        world: the world to step (must have a renderer).
        task: task name.
        seed: reset seed (also seeds the default expert's noise).
        actor: ``reset()`` + ``act(obs) -> (n, 14)``; ``None`` = a ``ScriptedExpert`` (source 2).
        operator: optional ``ScriptedOperator`` consulted every step; its action wins while engaged (source 1).
        time_limit_s: defaults to the task's limit.
        expert_noise: noise of the default expert when ``actor`` is None.
        variation: item pose spread of the scene (1.0 = deployment conditions, see ``SimWorld.reset``).
        target: the item of a single-item task (default: drawn from the seed).

    Returns:
        The recorded ``EpisodeRollout``.
    """
    spec = get_task(task)
    limit = spec.time_limit_s if time_limit_s is None else float(time_limit_s)
    n_steps = max(1, round(limit / CONTROL_DT))
    world.reset(task, seed, variation, target)
    if actor is None:
        actor = ScriptedExpert(world, noise=expert_noise, seed=seed)
    actor_source = SOURCE_EXPERT if isinstance(actor, ScriptedExpert) else SOURCE_POLICY
    actor.reset()
    if operator is not None:
        operator.reset()
    images, qposs, actions, sources = [], [], [], []
    events: list[tuple[int, str]] = []
    chunk: list[np.ndarray] = []
    interventions = 0
    steps_to_success: int | None = None
    subgoal_steps: list[int] = []
    for step in range(n_steps):
        o = obs(world)
        src = actor_source
        action: np.ndarray | None = None
        if operator is not None:
            dec = operator.step(world.time)
            if dec.event is not None:
                events.append((step, dec.event))
                if dec.event == "takeover":
                    interventions += 1
            if dec.engaged and dec.action is not None:
                action, src = dec.action, SOURCE_TELEOP
                chunk.clear()
        if action is None:
            if not chunk:
                out = np.asarray(actor.act(o), dtype=np.float64)
                out = out.reshape(-1, N_JOINTS)
                if out.shape[0] < 1:
                    raise ValueError("actor returned an empty action chunk")
                chunk = list(out)
            action = chunk.pop(0)
        executed = np.clip(np.asarray(action, dtype=np.float64), world.joint_low, world.joint_high)
        world.apply(executed)
        images.append(o["image"])
        qposs.append(o["qpos"])
        actions.append(executed.astype(np.float32))
        sources.append(src)
        subgoal_steps += [step] * (world.progress() - len(subgoal_steps))  # no-op unless a new subgoal
        if steps_to_success is None and world.success():
            steps_to_success = step + 1
        if steps_to_success is not None and step + 1 >= steps_to_success + SETTLE_STEPS:
            break
    # sparse reward: success was detected (then settled a few steps) in physics that never blew up
    success = steps_to_success is not None and not world.unstable
    return EpisodeRollout(
        images=np.stack(images).astype(np.uint8),
        qpos=np.stack(qposs).astype(np.float32),
        actions=np.stack(actions).astype(np.float32),
        source=np.asarray(sources, dtype=np.int8),
        success=bool(success),
        task=task,
        instruction=world.instruction,
        seed=int(seed),
        interventions=interventions,
        steps_to_success=steps_to_success,
        progress=world.progress(),
        events=events,
        subgoal_steps=subgoal_steps,
        cameras=world.cameras,
    )


def collect_demos(
    task: str, n: int, seed0: int = 0, noise: float = 0.0, image_size: int = 64
) -> list[EpisodeRollout]:
    """``n`` scripted-expert episodes with seeds ``seed0 .. seed0 + n - 1`` (failures included; check ``success``)."""
    with SimWorld(image_size=image_size) as world:
        return [run_episode(world, task, seed0 + i, expert_noise=noise) for i in range(n)]
