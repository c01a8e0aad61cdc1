"""Task catalogue: items, goal regions and data-driven task specs (ROS-free, MuJoCo-free).

A task is a list of *subgoals* ``Goal(item, region)`` ("this item must rest in that region"), resolved from a seed
together with the language instruction. ``TASKS`` is the registry, the single source of task names and of the default
curriculum (``default_tasks()``, the tasks flagged ``default``). The world (``lwd.sim.world``) owns geometry, initial
states and success detection, the expert (``lwd.sim.expert``) executes subgoals in order; a new task is a new
``TaskSpec`` entry, not new code, as long as it is expressible as "move items into regions".
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
    "CATALOGUE",
    "CATEGORIES",
    "TASKS",
    "SLOT_NAMES",
    "SLOT_COLOUR",
    "SLOT_SIDE",
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
    "box": ItemSpec("box", "green box", "box", (0.03, 0.018, 0.04), (0.15, 0.7, 0.2, 1.0), "slot_green", "snack"),
    "bottle": ItemSpec(
        "bottle", "blue bottle", "cylinder", (0.022, 0.022, 0.035), (0.15, 0.3, 0.9, 1.0), "slot_blue", "drink"
    ),
}
ITEM_NAMES: tuple[str, ...] = tuple(ITEMS)  # also the colour order red < green < blue of "colour_order" tasks

# The grocery catalogue of the "store" scene (the tasks of issue 7 beyond the shelf-and-bin ones): the three items above
# plus seven more, in three categories (drinks, fruit, snacks) for semantic instructions, and two long packs for the
# two-arm handover. ``ITEMS`` / ``ITEM_NAMES`` stay the three items of the original ("base") scene.
CATALOGUE: dict[str, ItemSpec] = {
    **ITEMS,
    "juice": ItemSpec("juice", "orange juice carton", "box", (0.02, 0.02, 0.045), (0.95, 0.6, 0.1, 1.0), "", "drink"),
    "apple": ItemSpec("apple", "apple", "cylinder", (0.027, 0.027, 0.024), (0.75, 0.1, 0.15, 1.0), "", "fruit"),
    "orange": ItemSpec("orange", "orange", "cylinder", (0.028, 0.028, 0.025), (1.0, 0.5, 0.05, 1.0), "", "fruit"),
    "lemon": ItemSpec("lemon", "lemon", "cylinder", (0.022, 0.022, 0.022), (0.95, 0.9, 0.15, 1.0), "", "fruit"),
    "crackers": ItemSpec("crackers", "cracker box", "box", (0.042, 0.032, 0.018), (0.85, 0.7, 0.35, 1.0), "", "snack"),
    "cookies": ItemSpec("cookies", "cookie box", "box", (0.04, 0.03, 0.015), (0.45, 0.25, 0.12, 1.0), "", "snack"),
    "spaghetti": ItemSpec("spaghetti", "spaghetti pack", "box", (0.08, 0.016, 0.016), (0.9, 0.85, 0.6, 1.0), "",
                          "pantry"),
    "baguette": ItemSpec("baguette", "baguette", "box", (0.08, 0.019, 0.019), (0.8, 0.55, 0.25, 1.0), "", "pantry"),
}
CATEGORIES: dict[str, tuple[str, ...]] = {
    "drink": ("can", "bottle", "juice"),
    "fruit": ("apple", "orange", "lemon"),
    "snack": ("box", "crackers", "cookies"),
}
# instruction words per category: (plural, singular)
CATEGORY_WORDS = {"drink": ("drinks", "drink"), "fruit": ("fruit", "piece of fruit"), "snack": ("snacks", "snack")}
HANDOVER_ITEMS = ("spaghetti", "baguette")
STACK_BASES = ("crackers", "cookies")
STACK_TOPS = ("can", "juice", "apple", "orange", "lemon", "box")
DRAWER_ITEMS = ("apple", "orange", "lemon")
# semantic destinations: region -> phrasings of "where"
SEMANTIC_DEST = {"top_shelf": ("on the top shelf", "onto the upper shelf"), "bin": ("in the bin", "into the bin")}

# Shelf slots left to right as the robot and its camera see them (-x is left), with the words instructions use.
SLOT_NAMES: tuple[str, ...] = ("slot_red", "slot_green", "slot_blue")
SLOT_COLOUR = {"slot_red": "red", "slot_green": "green", "slot_blue": "blue"}
SLOT_SIDE = {"slot_red": "left", "slot_green": "middle", "slot_blue": "right"}


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
        items: ``"one"`` (one item chosen by seed), ``"pair"`` (two distinct items, in a drawn order) or ``"all"``
            (every item, in ``ITEM_NAMES`` order).
        destination: ``"matching_slot"`` (each item's own slot), ``"bin"``, ``"named_slot"`` (one slot drawn by the
            seed and named in the instruction: ``{slot_colour}``, ``{slot_side}``) or ``"colour_order"`` (two items
            onto the two end slots in red < green < blue order from the side named by ``{order}``).
        start: where the goal items start: ``"bin"`` (every item in the bin) or ``"matching_slot"`` (each goal
            item resting on its own shelf slot, the others in the bin).
        carry_slowdown: scripted expert (1/s): the carry speed eases to this gain times the distance left to the drop
            point (0 = constant speed up to it, the original expert, kept for the default tasks so their demos and
            operator corrections stay as they were). A long carry across the robot (the left arm to the middle slot)
            flung items out of the fingers when it stopped abruptly.
        default: part of the default curriculum (``default_tasks()``): what pretraining, the fleet, the learner's gate,
            the demo and the benchmarks run unless told otherwise.
        scene: ``"base"`` (the original table, bin, shelf and three items) or ``"store"`` (the base layout plus a
            two-level shelf, a drawer cabinet and the whole ``CATALOGUE``; see ``lwd.sim.world``).

    Store-scene item selections (each draws its own goals; ``destination`` is unused):
        ``"handover"``: a long pack lies on one end of the shelf; the arm on that side (the giver) must hand it to the
            other arm, which puts it on the other end. Goals: held by the giver, then by the receiver, then resting on
            the receiver's end (``hand:<arm>``, ``shelf_<side>``).
        ``"drawer"``: open the drawer, put a piece of fruit from the bin in it, close it. Goals ``drawer:open``,
            ``drawer``, ``drawer:closed`` (all on the fruit).
        ``"stack"``: put one item (``{top}``) on a flat box (``{bottom}``). Goal region ``on:<bottom>``.
        ``"semantic"``: all three items of a category (drinks, fruit, snacks), on the lower shelf among two distractors
            of other categories, go to the top shelf or the bin (``{cats}``, ``{dest}``); distractors must stay put.
    """

    name: str
    instructions: tuple[str, ...]
    time_limit_s: float
    long_horizon: bool
    num_subgoals: int
    items: str = "one"
    destination: str = "matching_slot"
    start: str = "bin"
    carry_slowdown: float = 0.0
    default: bool = False
    scene: str = "base"

    @property
    def targets(self) -> tuple[str, ...]:
        """What ``resolve``'s ``target`` can name: an item (``"one"``: ``ITEM_NAMES``; ``drawer``: the fruit; ``stack``:
        the top item) or a category (``semantic``); empty for tasks whose goals the instruction does not single out
        by one choice (``all``, ``pair``, ``handover``)."""
        return _TARGETS.get(self.items, ())

    def accepts(self, target: str, item: str) -> bool:
        """Whether going for ``item`` follows an instruction naming ``target`` (an item, or ``item``'s category)."""
        return CATALOGUE[item].category == target if self.items == "semantic" else item == target

    def resolve(self, rng: np.random.Generator, target: str | None = None) -> tuple[tuple[Goal, ...], str]:
        """Draw the subgoals and the instruction text (deterministic given the generator state).

        ``target`` fixes the item of a single-item task (same scene, another instruction), the fruit of ``drawer``,
        the top item of ``stack`` or the category of ``semantic`` (``targets`` lists them); every draw is made
        either way, so the rest of the scene and goals do not depend on it. The draws of the tasks
        that existed first (pick_place, restock3) are kept in their original order: their scenes and instructions
        per seed must not change (a pretrained policy and benchmark results depend on them)."""
        if target is not None and not self.targets:
            raise ValueError(f"task {self.name!r} has no single target to choose")
        if self.items in _STORE_KINDS:
            return _STORE_KINDS[self.items](self, rng, target)
        if self.items == "one":
            drawn = ITEM_NAMES[int(rng.integers(len(ITEM_NAMES)))]
            if target is not None and target not in ITEMS:
                raise ValueError(f"unknown item {target!r}; known: {', '.join(ITEMS)}")
            names: tuple[str, ...] = (target or drawn,)
        elif self.items == "all":
            names = ITEM_NAMES
        elif self.items == "pair":
            names = tuple(ITEM_NAMES[int(i)] for i in rng.choice(len(ITEM_NAMES), 2, replace=False))
        else:
            raise ValueError(f"task {self.name!r}: unknown item selection {self.items!r}")
        words: dict[str, str] = {"item": ITEMS[names[0]].label}
        if len(names) > 1:
            words["item2"] = ITEMS[names[1]].label
        if self.destination == "matching_slot":
            regions = tuple(ITEMS[n].slot for n in names)
        elif self.destination == "bin":
            regions = ("bin",) * len(names)
        elif self.destination == "named_slot":  # one item onto a slot drawn by the seed (its own one or another)
            slot = SLOT_NAMES[int(rng.integers(len(SLOT_NAMES)))]
            regions = (slot,)
            words.update(slot_colour=SLOT_COLOUR[slot], slot_side=SLOT_SIDE[slot])
        elif self.destination == "colour_order":
            # two items onto the two end slots, ordered along red < green < blue from the named side
            forward = bool(rng.integers(2))
            rank = {n: ITEM_NAMES.index(n) for n in names}  # ITEM_NAMES is in colour order: red, green, blue
            first, last = (SLOT_NAMES[0], SLOT_NAMES[-1]) if forward else (SLOT_NAMES[-1], SLOT_NAMES[0])
            low = min(names, key=rank.__getitem__)
            regions = tuple(first if n == low else last for n in names)
            words["order"] = "left to right" if forward else "right to left"
        else:
            raise ValueError(f"task {self.name!r}: unknown destination {self.destination!r}")
        goals = tuple(Goal(n, r) for n, r in zip(names, regions, strict=True))
        template = self.instructions[int(rng.integers(len(self.instructions)))]
        return goals, template.format(**words)


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
    # Tasks below are not in the default curriculum (yet): v0 and the committed benchmarks know only the two above.
    "place_slot": TaskSpec(
        name="place_slot",
        instructions=(
            "put the {item} on the {slot_colour} slot",
            "place the {item} on the {slot_side} shelf slot",
            "move the {item} from the bin to the {slot_colour} pad on the shelf",
            "put the {item} on the shelf, in the {slot_side} slot",
        ),
        time_limit_s=15.0,
        long_horizon=False,
        num_subgoals=1,
        items="one",
        destination="named_slot",
        carry_slowdown=2.5,
    ),
    "sort_colour": TaskSpec(
        name="sort_colour",
        instructions=(
            "sort the {item} and the {item2} onto the two end slots by colour, red to blue from {order}",
            "put the {item} and the {item2} on the outer shelf slots in colour order (red, green, blue) from {order}",
            "place the {item} and the {item2} on the end slots of the shelf, ordered red, green, blue from {order}",
        ),
        time_limit_s=30.0,
        long_horizon=False,
        num_subgoals=2,
        items="pair",
        destination="colour_order",
        carry_slowdown=2.5,
    ),
    "unstock": TaskSpec(
        name="unstock",
        instructions=(
            "put the {item} back in the bin",
            "take the {item} off the shelf and drop it in the bin",
            "move the {item} from the shelf to the bin",
            "return the {item} to the bin",
        ),
        time_limit_s=15.0,
        long_horizon=False,
        num_subgoals=1,
        items="one",
        destination="bin",
        start="matching_slot",
        carry_slowdown=2.5,
    ),
    # Store-scene tasks (issue 7): a second scene (lwd.sim.world, scene "store") so that the base scene of the tasks
    # above stays exactly as it was.
    "handover": TaskSpec(
        name="handover",
        instructions=(
            "hand the {item} from the {giver} arm to the {receiver} arm and put it on the {receiver} end of the shelf",
            "pass the {item} to the {receiver} hand, then set it down on the {receiver} side of the shelf",
            "the {giver} arm picks up the {item} and hands it over; the {receiver} arm puts it on its end of the shelf",
            "move the {item} to the {receiver} end of the shelf, handing it from the {giver} gripper to the "
            "{receiver} one",
        ),
        time_limit_s=25.0,
        long_horizon=False,
        num_subgoals=3,
        items="handover",
        carry_slowdown=2.5,
        scene="store",
    ),
    "drawer": TaskSpec(
        name="drawer",
        instructions=(
            "open the drawer, put the {item} inside and close it",
            "put the {item} in the drawer and shut the drawer",
            "store the {item} in the drawer, then close the drawer",
            "pull the drawer open, place the {item} in it and push it closed",
            "put the {item} away in the drawer; leave the drawer closed",
            "the {item} goes in the drawer, and the drawer must end up shut",
        ),
        time_limit_s=30.0,
        long_horizon=False,
        num_subgoals=3,
        items="drawer",
        carry_slowdown=2.5,
        scene="store",
    ),
    "stack": TaskSpec(
        name="stack",
        instructions=(
            "stack the {top} on the {bottom}",
            "put the {top} on top of the {bottom}",
            "place the {top} onto the {bottom}",
            "set the {top} down on the {bottom}",
        ),
        time_limit_s=15.0,
        long_horizon=False,
        num_subgoals=1,
        items="stack",
        carry_slowdown=2.5,
        scene="store",
    ),
    "semantic": TaskSpec(
        name="semantic",
        instructions=(
            "put the {cats} {dest}",
            "move all the {cats} {dest}",
            "take every {cat} off the lower shelf and put it {dest}",
            "restock: the {cats} go {dest}, leave everything else where it is",
        ),
        time_limit_s=50.0,
        long_horizon=True,
        num_subgoals=3,
        items="semantic",
        carry_slowdown=2.5,
        scene="store",
    ),
}


def _pick(rng: np.random.Generator, options: tuple[str, ...], target: str | None = None) -> str:
    drawn = options[int(rng.integers(len(options)))]
    if target is not None and target not in options:
        raise ValueError(f"item {target!r} is not one of {', '.join(options)}")
    return target or drawn


def _template(spec: TaskSpec, rng: np.random.Generator, **words: str) -> str:
    return spec.instructions[int(rng.integers(len(spec.instructions)))].format(**words)


def _resolve_handover(spec: TaskSpec, rng: np.random.Generator, target: str | None) -> tuple[tuple[Goal, ...], str]:
    item = _pick(rng, HANDOVER_ITEMS)
    giver = ("left", "right")[int(rng.integers(2))]
    receiver = "right" if giver == "left" else "left"
    goals = (Goal(item, f"hand:{giver}"), Goal(item, f"hand:{receiver}"), Goal(item, f"shelf_{receiver}"))
    return goals, _template(spec, rng, item=CATALOGUE[item].label, giver=giver, receiver=receiver)


def _resolve_drawer(spec: TaskSpec, rng: np.random.Generator, target: str | None) -> tuple[tuple[Goal, ...], str]:
    item = _pick(rng, DRAWER_ITEMS, target)
    goals = (Goal(item, "drawer:open"), Goal(item, "drawer"), Goal(item, "drawer:closed"))
    return goals, _template(spec, rng, item=CATALOGUE[item].label)


def _resolve_stack(spec: TaskSpec, rng: np.random.Generator, target: str | None) -> tuple[tuple[Goal, ...], str]:
    top = _pick(rng, STACK_TOPS, target)
    bottom = STACK_BASES[int(rng.integers(len(STACK_BASES)))]
    return (Goal(top, f"on:{bottom}"),), _template(spec, rng, top=CATALOGUE[top].label, bottom=CATALOGUE[bottom].label)


def _resolve_semantic(spec: TaskSpec, rng: np.random.Generator, target: str | None) -> tuple[tuple[Goal, ...], str]:
    cats = tuple(CATEGORIES)
    cat = _pick(rng, cats, target)
    dest = tuple(SEMANTIC_DEST)[int(rng.integers(len(SEMANTIC_DEST)))]
    order = rng.permutation(len(CATEGORIES[cat]))
    goals = tuple(Goal(CATEGORIES[cat][int(i)], dest) for i in order)
    where = SEMANTIC_DEST[dest][int(rng.integers(len(SEMANTIC_DEST[dest])))]
    plural, single = CATEGORY_WORDS[cat]
    return goals, _template(spec, rng, cats=plural, cat=single, dest=where)


_TARGETS: dict[str, tuple[str, ...]] = {
    "one": ITEM_NAMES,
    "drawer": DRAWER_ITEMS,
    "stack": STACK_TOPS,
    "semantic": tuple(CATEGORIES),
}

_STORE_KINDS = {
    "handover": _resolve_handover,
    "drawer": _resolve_drawer,
    "stack": _resolve_stack,
    "semantic": _resolve_semantic,
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
