"""The instruction-following probe per task family (lwd.sim.evaluate.family_probe), checked with privileged actors."""

from __future__ import annotations

import pytest

from lwd.sim.evaluate import family_probe
from lwd.sim.tasks import Goal, get_task, task_names
from lwd.sim.world import SimWorld

APPLICABLE = ("pick_place", "place_slot", "unstock", "drawer", "stack", "semantic")


class _Expert:
    """The zero-noise scripted expert: reads the goals, so it follows every instruction."""

    def __init__(self, world: SimWorld) -> None:
        from lwd.sim.expert import ScriptedExpert

        self.world = world
        self.expert = ScriptedExpert(world, noise=0.0)

    def reset(self) -> None:
        self.expert.reset()

    def act(self, obs):
        return self.expert.act()[None]


class _Contrary(_Expert):
    """The expert, sent for an item in play that the instruction did not name (nor the base it names)."""

    def reset(self) -> None:
        w = self.world
        spec = w.task
        named = {g.item for g in w.goals} | {g.region.split(":")[1] for g in w.goals if g.region.startswith("on:")}
        if spec.items == "semantic":  # any item of the named category would count: take another category's
            cat = next(c for c in spec.targets if spec.accepts(c, w.goals[0].item))
            named = {n for n in w.present_items() if spec.accepts(cat, n)}
        wrong = next(n for n in w.present_items() if n not in named)
        w.goals = tuple(Goal(wrong, g.region if g.region != "bin" else "slot_red") for g in w.goals)
        super().reset()


@pytest.fixture(scope="module")
def world():
    with SimWorld() as w:
        yield w


def test_expert_follows_every_family(world: SimWorld):
    res = family_probe(world, _Expert(world), scenes=1)
    assert set(res) == set(task_names())
    for task in ("restock3", "sort_colour", "handover"):
        assert res[task]["applicable"] is False and res[task]["why"]
    for task in APPLICABLE:
        r = res[task]
        assert r["applicable"] and r["trials"] == len(get_task(task).targets), task
        assert r["followed"] == r["trials"] and r["no_grasp"] == 0, (task, r)
        assert 0.0 < r["chance"] < 1.0
    assert res["pick_place"]["same_scene"] and res["place_slot"]["same_scene"]
    assert not res["unstock"]["same_scene"]  # the named item starts on its slot
    assert res["pick_place"]["chance"] == pytest.approx(1 / 3)
    assert res["semantic"]["chance"] == pytest.approx(3 / 5)


def test_an_actor_going_for_another_item_scores_low(world: SimWorld):
    res = family_probe(world, _Contrary(world), tasks=APPLICABLE, scenes=1)
    for task in APPLICABLE:
        assert res[task]["followed"] == 0 and res[task]["no_grasp"] == 0, (task, res[task])  # it grasps, wrongly


def test_cli_probe_prints_json(capsys):
    import json

    from lwd.cli import main

    assert main(["tasks", "probe", "--tasks", "pick_place,handover", "--scenes", "1"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["pick_place"]["followed"] == 3 and res["handover"]["applicable"] is False
