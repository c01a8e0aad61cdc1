"""``lwd tasks``: list the task registry, and draw a contact sheet of every task's start and goal state.

The sheet shows what the policy sees: the overview camera at the policy's image size (64 px, ``config/robot.yaml``
``camera_driver.image_size``), upscaled with nearest-neighbour for visibility. The goal state is where the zero-noise
scripted expert leaves the scene (success detected, arms back toward home).
"""

from __future__ import annotations

import logging
import textwrap
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger("lwd.tasks")

__all__ = ["TaskShot", "task_rows", "shoot", "write_sheet"]

POLICY_IMAGE_SIZE = 64


@dataclass
class TaskShot:
    task: str
    seed: int
    instruction: str
    start: np.ndarray  # (S, S, 3) uint8
    goal: np.ndarray
    success: bool
    steps: int | None  # control steps the expert took to succeed


def task_rows() -> list[dict[str, object]]:
    """One row per registered task: name, default curriculum, subgoals, time limit, horizon, an instruction."""
    from lwd.sim.tasks import TASKS

    return [
        dict(task=name, default=spec.default, subgoals=spec.num_subgoals, time_limit_s=spec.time_limit_s,
             long_horizon=spec.long_horizon, start=spec.start, phrasings=len(spec.instructions),
             example=spec.instructions[0])
        for name, spec in TASKS.items()
    ]


def shoot(task: str, seed: int = 0, image_size: int = POLICY_IMAGE_SIZE, settle_steps: int = 30,
          tries: int = 5) -> TaskShot:
    """Render ``task``'s start and the state the zero-noise expert reaches (the next seed if one fails)."""
    from lwd.sim.expert import ScriptedExpert
    from lwd.sim.tasks import get_task
    from lwd.sim.world import CONTROL_DT, SimWorld

    spec = get_task(task)
    with SimWorld(image_size=image_size) as world:
        for s in range(seed, seed + tries):
            world.reset(task, s)
            start = world.render()
            expert = ScriptedExpert(world)
            steps = None
            for k in range(round(spec.time_limit_s / CONTROL_DT)):
                world.apply(expert.act())
                if world.success():
                    steps = k + 1
                    break
            if steps is None:
                log.warning("%s seed %d: the expert did not succeed, trying the next seed", task, s)
                continue
            for _ in range(settle_steps):  # the expert sends both arms home once every subgoal is done
                world.apply(expert.act())
            return TaskShot(task, s, world.instruction, start, world.render(), world.success(), steps)
    raise RuntimeError(f"{task}: the expert failed on seeds {seed}..{seed + tries - 1}")


def write_sheet(out: Path, seed: int = 0, scale: int = 4, tasks: tuple[str, ...] | None = None) -> Path:
    """Write the contact sheet (one row per task: start | goal) to ``out`` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from lwd.sim.tasks import TASKS

    names = tuple(tasks or TASKS)
    shots = [shoot(t, seed) for t in names]
    side = shots[0].start.shape[0] * scale / 100  # inches at dpi 100: the upscaled image shown pixel for pixel
    fig, axes = plt.subplots(len(shots), 3, figsize=(2.9 + 2 * (side + 0.15), (side + 0.45) * len(shots) + 0.5),
                             squeeze=False, gridspec_kw={"width_ratios": [2.9, side, side]})
    for row, shot in zip(axes, shots, strict=True):
        spec = TASKS[shot.task]
        text = row[0]
        text.axis("off")
        curriculum = "in the default curriculum" if spec.default else "not in the default curriculum"
        horizon = "long-horizon" if spec.long_horizon else "short"
        text.text(0.0, 0.92, shot.task, fontsize=13, fontweight="bold", va="top", transform=text.transAxes)
        text.text(0.0, 0.74, f"{curriculum}\n{spec.num_subgoals} subgoal(s), {horizon}, {spec.time_limit_s:g} s limit\n"
                  f"{len(spec.instructions)} phrasings; seed {shot.seed}", fontsize=9, va="top",
                  transform=text.transAxes)
        text.text(0.0, 0.38, "\n".join(textwrap.wrap(f'"{shot.instruction}"', 34)), fontsize=9, va="top",
                  style="italic", transform=text.transAxes)
        for ax, img, label in ((row[1], shot.start, "start"), (row[2], shot.goal, f"goal: expert, {shot.steps} steps")):
            big = np.repeat(np.repeat(img, scale, axis=0), scale, axis=1)
            ax.imshow(big, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_xlabel(label, fontsize=9)
    fig.suptitle(f"Tasks from the policy's camera ({shots[0].start.shape[0]} px, shown x{scale}): start and goal "
                 "(zero-noise scripted expert)", fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 0.985))
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    log.info("wrote %s (%s)", out, ", ".join(f"{s.task}: seed {s.seed}, {s.steps} steps" for s in shots))
    return out
