"""Task catalogue: items, goal regions and data-driven task specs (ROS-free, MuJoCo-free).

A task is a list of *subgoals* ``Goal(item, region)`` ("this item must rest in that region"), resolved from a seed
together with the language instruction. The world (``lwd.sim.world``) owns geometry and success detection, the
expert (``lwd.sim.expert``) executes subgoals in order; a new task is a new ``TaskSpec`` entry, not new code, as long
as it is expressible as "move items into regions".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "ItemSpec",
    "Goal",
    "TaskSpec",
    "ITEMS",
    "ITEM_NAMES",
    "TASKS",
    "task_names",
    "default_tasks",
    "get_task",
]


@dataclass(frozen=True)
class ItemSpec:
    """One grocery-like item.

    Attributes:
        name: geom/body name stem (``"can"``).
        label: words used in instructions (``"red can"``).
        shape: ``"cylinder"`` or ``"box"`` (a bottle is a cylinder with a neck).
        half_size: (radius or half x, half y (box), half height) in metres.
        rgba: colour.
        slot: name of the matching shelf slot region.
        category: semantic class ("drink", "food") for semantic instructions.
    """

    name: str
    label: str
    shape: str
    half_size: tuple[float, float, float]
    rgba: tuple[float, float, float, float]
    slot: str
    category: str

    @property
    def half_height(self) -> float:
        return self.half_size[2]

    @property
    def grasp_half_width(self) -> float:
        """Half the width the fingers close on (radius, or the box's half y extent)."""
        return self.half_size[0] if self.shape == "cylinder" else self.half_size[1]


ITEMS: dict[str, ItemSpec] = {
    "can": ItemSpec("can", "red can", "cylinder", (0.025, 0.025, 0.04), (0.85, 0.12, 0.1, 1.0), "slot_red", "drink"),
    "box": ItemSpec("box", "green box", "box", (0.03, 0.018, 0.04), (0.15, 0.7, 0.2, 1.0), "slot_green", "food"),
    "bottle": ItemSpec(
        "bottle", "blue bottle", "cylinder", (0.022, 0.022, 0.035), (0.15, 0.3, 0.9, 1.0), "slot_blue", "drink"
    ),
}
ITEM_NAMES: tuple[str, ...] = tuple(ITEMS)


@dataclass(frozen=True)
class Goal:
    """Subgoal: ``item`` must rest inside ``region`` (a slot name or ``"bin"``)."""

    item: str
    region: str


@dataclass(frozen=True)
class TaskSpec:
    """A task = how to choose subgoals and the instruction family.

    Attributes:
        name: task id.
        instructions: templates; ``{item}`` is replaced by the chosen item's label (single-item tasks).
        time_limit_s: episode time limit (sim seconds).
        long_horizon: True for multi-subgoal tasks.
        num_subgoals: number of subgoals (items to place).
        items: ``"one"`` (one item chosen by seed) or ``"all"`` (every item, in ``ITEM_NAMES`` order).
        destination: ``"matching_slot"`` (each item's own slot) or ``"bin"``.
        default: part of the default curriculum (``default_tasks()``): what pretraining, the fleet, the learner's gate,
            the demo and the benchmarks run unless told otherwise.
    """

    name: str
    instructions: tuple[str, ...]
    time_limit_s: float
    long_horizon: bool
    num_subgoals: int
    items: str = "one"
    destination: str = "matching_slot"
    default: bool = False

    def resolve(self, rng: np.random.Generator, target: str | None = None) -> tuple[tuple[Goal, ...], str]:
        """Draw the subgoals and the instruction text (deterministic given the generator state).

        ``target`` fixes the item of a single-item task (same scene, another instruction)."""
        if self.items == "one":
            drawn = ITEM_NAMES[int(rng.integers(len(ITEM_NAMES)))]
            if target is not None and target not in ITEMS:
                raise ValueError(f"unknown item {target!r}; known: {', '.join(ITEMS)}")
            names: tuple[str, ...] = (target or drawn,)
        elif self.items == "all":
            names = ITEM_NAMES
        else:
            raise ValueError(f"task {self.name!r}: unknown item selection {self.items!r}")
        if target is not None and self.items != "one":
            raise ValueError(f"task {self.name!r} has no single target to choose")
        goals = tuple(Goal(n, ITEMS[n].slot if self.destination == "matching_slot" else "bin") for n in names)
        template = self.instructions[int(rng.integers(len(self.instructions)))]
        return goals, template.format(item=ITEMS[names[0]].label)


TASKS: dict[str, TaskSpec] = {
    "pick_place": TaskSpec(
        name="pick_place",
        instructions=(
            "put the {item} on the shelf",
            "place the {item} on its shelf slot",
            "move the {item} from the bin to the shelf",
        ),
        time_limit_s=15.0,
        long_horizon=False,
        num_subgoals=1,
        items="one",
        default=True,
    ),
    "restock3": TaskSpec(
        name="restock3",
        instructions=(
            "restock the shelf: first the can, then the box, then the bottle",
            "put the can, the box and the bottle from the bin onto their matching shelf slots, in that order",
            "move the can, then the box, then the bottle onto the shelf",
        ),
        time_limit_s=45.0,
        long_horizon=True,
        num_subgoals=3,
        items="all",
        default=True,
    ),
}


def task_names() -> tuple[str, ...]:
    """Names of all registered tasks."""
    return tuple(TASKS)


def default_tasks() -> tuple[str, ...]:
    """The default curriculum: registered tasks flagged ``default``, in registry order. Every default task list (CLI,
    launch files, teleop, pretraining, learner gate, demo, benchmarks) is derived from this one."""
    return tuple(name for name, spec in TASKS.items() if spec.default)


def get_task(name: str) -> TaskSpec:
    """Look up a task by name.

    Raises:
        ValueError: unknown task name.
    """
    try:
        return TASKS[name]
    except KeyError:
        raise ValueError(f"unknown task {name!r}; known: {', '.join(TASKS)}") from None
