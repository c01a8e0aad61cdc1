"""Chunk dataset semantics and the learner's ingest -> update -> publish cycle on real bags."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from lwd.data.bag import write_steps_bag
from lwd.data.schema import CONTROL_DT_NS, EpisodeMeta, EpisodeSteps
from lwd.data.store import ExperienceStore
from lwd.policy.checkpoint import list_versions, load_checkpoint
from lwd.policy.model import PolicyConfig
from lwd.rl.dataset import SOURCE_POLICY, SOURCE_TELEOP, ChunkBuffer
from lwd.rl.learner import Learner, LearnerConfig


def _episode(t: int, success: bool, source=None, size: int = 8, eid: str = "e0", robot: str = "r0") -> EpisodeSteps:
    rng = np.random.default_rng(t)
    src = np.zeros(t, np.int8) if source is None else np.asarray(source, np.int8)
    return EpisodeSteps(
        images=rng.integers(0, 255, (t, size, size, 3), dtype=np.uint8),
        qpos=np.cumsum(rng.normal(0, 0.01, (t, 14)), 0).astype(np.float32),
        actions=(np.arange(t)[:, None] * 0.01 + np.zeros((t, 14))).astype(np.float32),
        source=src, policy_version=np.where(src == 0, 0, -1), t_ns=np.arange(t) * CONTROL_DT_NS,
        meta=EpisodeMeta(episode_id=eid, robot=robot, task="pick_place", instruction="put the red can on the shelf",
                         outcome="success" if success else "failure", source="fleet"),
    )


def test_chunk_buffer_rewards_done_and_padding():
    cfg = PolicyConfig(image_size=8, horizon=4)
    buf = ChunkBuffer(cfg, gamma=0.9)
    buf.add_episode(_episode(10, success=True))
    buf.add_episode(_episode(6, success=False, source=[0, 0, 1, 1, 0, 0]))
    b = buf.gather(np.array([0, 6, 8, 10, 12]))
    # step 0: mid-episode; 6 and 8 are within 4 of the end of the successful episode (length 10).
    np.testing.assert_array_equal(b.done.numpy(), [0, 1, 1, 0, 1])
    np.testing.assert_array_equal(b.rew.numpy(), [0, 1, 1, 0, 0])  # failure ends without reward
    assert np.isclose(b.discount[0].item(), 0.9**4)
    np.testing.assert_array_equal(b.intervention.numpy(), [0, 0, 0, 1, 1])  # chunks overlapping the takeover
    # chunk from step 8 of a 10-step episode holds the last action for the padded steps
    x = b.act[2].numpy().reshape(4, 14)
    assert np.allclose(x[2], x[3]) and np.allclose(x[1], x[2])
    # next observation of a chunk that does not end the episode is H steps later
    assert np.array_equal(b.next_image[0].numpy(), buf._image[4])
    mask = buf.filtered_bc_mask()
    assert mask[:10].all() and list(mask[10:]) == [False, False, True, True, False, False]
    # In a successful episode, policy steps before a takeover were overruled by the operator: not cloned.
    buf.add_episode(_episode(6, success=True, source=[0, 0, 1, 1, 0, 0]))
    assert list(buf.filtered_bc_mask()[16:]) == [False, False, True, True, True, True]


def test_learner_ingests_once_and_publishes(tiny_store, tmp_path):
    root = tmp_path / "store"
    shutil.copytree(tiny_store, root)
    store = ExperienceStore(root)
    cfg = load_checkpoint(root / "policies" / "v0").config
    learner = Learner(store, LearnerConfig(algo="bc", min_new_episodes=2, updates_per_round=3, batch_size=8))
    demos = len(learner.buffer)
    assert demos > 0 and learner.poll() is None  # nothing new yet
    for i in range(2):
        eid = f"robot0-test-{i}"
        write_steps_bag(store.episode_path("robot0", eid),
                        _episode(30, success=i == 0, size=cfg.image_size, eid=eid, robot="robot0",
                                 source=[SOURCE_POLICY] * 20 + [SOURCE_TELEOP] * 10))
    assert learner.poll() == 1
    assert list_versions(root / "policies") == [0, 1]
    ck = load_checkpoint(root / "policies" / "v1")
    assert ck.manifest["parent"] == 0 and ck.manifest["new_episodes"] == 2
    steps_after = len(learner.buffer)
    assert steps_after == demos + 60
    assert learner.poll() is None and len(learner.buffer) == steps_after  # each episode ingested once
    # A restarted learner sees the same data once and continues from v1.
    again = Learner(ExperienceStore(root), LearnerConfig(algo="bc", min_new_episodes=2, updates_per_round=3))
    assert again.version == 1 and len(again.buffer) == steps_after and again.poll() is None
    note = again.announcement()
    assert note["version"] == 1 and note["sha256"] == ck.sha256
    assert again.status()["round"] == 1  # the round counter survives a restart
    assert (root / "learner" / "metrics.csv").exists()


def test_learner_config_validation():
    with pytest.raises(ValueError, match="unknown algo"):
        LearnerConfig(algo="nope")
    with pytest.raises(ValueError):
        LearnerConfig(min_new_episodes=0)


@pytest.mark.parametrize("algo", ["lwd", "iql_awr", "lwd_no_divl", "lwd_no_qam"])
def test_rl_algorithms_offline_then_online(tiny_store, tmp_path, algo):
    """Offline phase on the demos, then one online round from new fleet bags, gate evidence logged."""
    import json

    root = tmp_path / "store"
    shutil.copytree(tiny_store, root)
    store = ExperienceStore(root)
    cfg = load_checkpoint(root / "policies" / "v0").config
    learner = Learner(store, LearnerConfig(algo=algo, min_new_episodes=1, updates_per_round=2, offline_updates=2,
                                           batch_size=8, algo_overrides={"gate_tolerance": 10.0}))
    eid = "robot0-rl-0"
    write_steps_bag(store.episode_path("robot0", eid),
                    _episode(25, success=True, size=cfg.image_size, eid=eid, robot="robot0",
                             source=[SOURCE_POLICY] * 15 + [SOURCE_TELEOP] * 10))
    assert learner.poll() == 1
    rows = [json.loads(x) for x in (root / "learner" / "metrics.jsonl").read_text().splitlines()]
    phases = [r["phase"] for r in rows]
    assert phases[:3] == ["offline", "online", "gate"]
    online = rows[1]
    assert any(k.startswith("critic/") for k in online) and any(k.startswith("actor/") for k in online)
    assert all(np.isfinite(v) for k, v in online.items() if isinstance(v, float))
    gate = rows[2]
    assert gate["gate/accepted"] == 1.0 and "gate/q_candidate" in gate and "gate/q_deployed" in gate
    ck = load_checkpoint(root / "policies" / "v1")
    assert ck.manifest["algo"] == algo and (root / "policies" / "v1" / "learner.safetensors").exists()
    # Restart resumes the critic + behaviour flow from the checkpoint.
    again = Learner(ExperienceStore(root), LearnerConfig(algo=algo, min_new_episodes=1, updates_per_round=2))
    assert again.version == 1


def test_gate_rejects_a_worse_candidate(tiny_store, tmp_path):
    """With a negative tolerance no candidate can pass: nothing is published, the evidence is logged."""
    import json

    root = tmp_path / "store"
    shutil.copytree(tiny_store, root)
    store = ExperienceStore(root)
    cfg = load_checkpoint(root / "policies" / "v0").config
    learner = Learner(store, LearnerConfig(algo="lwd", min_new_episodes=1, updates_per_round=2, batch_size=8,
                                           algo_overrides={"gate_tolerance": -10.0}))
    write_steps_bag(store.episode_path("robot0", "e"), _episode(20, True, size=cfg.image_size, eid="e", robot="robot0"))
    assert learner.poll() is None and list_versions(root / "policies") == [0]
    # The round still counts (a synchronous fleet moves on with the deployed version).
    assert learner.status() | {"buffer_steps": 0} == {"round": 1, "version": 0, "accepted": False, "algo": "lwd",
                                                      "buffer_steps": 0}
    gate = [json.loads(x) for x in (root / "learner" / "metrics.jsonl").read_text().splitlines()][-1]
    assert gate["phase"] == "gate" and gate["gate/accepted"] == 0.0


def test_background_updates_while_waiting(tiny_store, tmp_path):
    root = tmp_path / "store"
    shutil.copytree(tiny_store, root)
    learner = Learner(ExperienceStore(root), LearnerConfig(algo="bc", min_new_episodes=5, updates_per_round=2,
                                                           batch_size=8, background_updates=3))
    assert learner.poll() is None and learner.poll() is None
    assert learner.total_updates == 6 and list_versions(root / "policies") == [0]  # trains, publishes nothing
    with pytest.raises(ValueError):
        LearnerConfig(background_updates=-1)
