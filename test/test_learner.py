"""Chunk dataset semantics and the learner's ingest -> update -> publish cycle on real bags."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from lwd.data.bag import write_steps_bag
from lwd.data.schema import CONTROL_DT_NS, EpisodeMeta, EpisodeSteps
from lwd.data.store import ExperienceStore
from lwd.policy.checkpoint import list_versions, load_checkpoint
from lwd.policy.model import PolicyConfig
from lwd.rl.dataset import SOURCE_POLICY, SOURCE_TELEOP, ChunkBuffer
from lwd.rl.gate import Gate
from lwd.rl.learner import Learner, LearnerConfig
from lwd.rl.selection import load_scorer


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


def test_subgoal_credit_judges_filtered_bc_per_segment(tmp_path):
    from dataclasses import replace

    cfg = PolicyConfig(image_size=8, horizon=4)
    # 12 steps: the policy places an item by step 3 (subgoal event at step 4's time), then needs the operator on
    # steps 6-7, then the policy again; the episode fails in the end.
    ep = _episode(12, success=False, source=[0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0])
    ep = replace(ep, meta=replace(ep.meta, subgoal_ns=[4 * CONTROL_DT_NS]))
    write_steps_bag(tmp_path / "ep", ep)  # the subgoal survives the bag round trip
    from lwd.data.reader import read_episode

    back = read_episode(tmp_path / "ep")
    assert back.meta.subgoal_ns == [4 * CONTROL_DT_NS]
    per_episode = ChunkBuffer(cfg)
    per_episode.add_episode(back)
    assert list(per_episode.filtered_bc_mask()) == [False] * 6 + [True, True] + [False] * 4
    per_segment = ChunkBuffer(cfg, subgoal_credit=True)
    per_segment.add_episode(back)
    # steps 0-3 achieved the subgoal (kept though a later segment needed the operator and the episode failed); 4-5
    # were overruled in their own segment; 8-11 never achieved anything
    assert list(per_segment.filtered_bc_mask()) == [True] * 4 + [False, False, True, True] + [False] * 4
    # the same episode succeeding: its last segment is credited too, and the first is no longer overruled
    ok = replace(back, meta=replace(back.meta, outcome="success"))
    per_segment.add_episode(ok)
    per_episode.add_episode(ok)
    assert list(per_segment.filtered_bc_mask()[12:]) == [True] * 4 + [False, False] + [True] * 6
    assert list(per_episode.filtered_bc_mask()[12:]) == [False] * 6 + [True] * 6
    # a subgoal the operator achieved does not credit the policy steps the takeover overruled
    op = _episode(6, success=False, source=[0, 0, 1, 1, 0, 0])
    op = replace(op, meta=replace(op.meta, subgoal_ns=[4 * CONTROL_DT_NS]))
    buf = ChunkBuffer(cfg, subgoal_credit=True)
    buf.add_episode(op)
    assert list(buf.filtered_bc_mask()) == [False, False, True, True, False, False]


def test_fleet_fraction_sets_the_fleet_share_of_a_batch():
    from lwd.data.schema import SOURCE_EXPERT

    buf = ChunkBuffer(PolicyConfig(image_size=8, horizon=4))
    buf.add_episode(_episode(90, success=True, source=[SOURCE_EXPERT] * 90))  # demos: 90% of the steps
    buf.add_episode(_episode(10, success=True, source=[0] * 6 + [1] * 4))
    rng = np.random.default_rng(0)
    fleet = lambda idx: float((buf.source[idx] != SOURCE_EXPERT).mean())  # noqa: E731
    assert fleet(buf.sample_indices(4000, rng)) < 0.15  # all steps alike
    buf.fleet_fraction = 0.5
    assert fleet(buf.sample_indices(4000, rng)) == 0.5
    mask = buf.filtered_bc_mask() & (np.arange(len(buf)) != 97)  # narrows both pools
    idx = buf.sample_indices(4000, rng, mask)
    assert fleet(idx) == 0.5 and mask[idx].all() and 97 not in idx
    assert len(np.unique(idx[buf.source[idx] != SOURCE_EXPERT])) == 3  # operator steps 96, 98, 99
    only_demos = buf.source == SOURCE_EXPERT  # nothing to mix (pretrain_more's mask): uniform over the pool
    assert fleet(buf.sample_indices(100, rng, only_demos)) == 0.0
    with pytest.raises(ValueError, match="fleet_fraction"):
        LearnerConfig(fleet_fraction=1.0)


def test_gather_from_a_device_copy_of_the_images_matches_host_gather():
    buf = ChunkBuffer(PolicyConfig(image_size=8, horizon=4))
    buf.add_episode(_episode(10, success=True))
    buf.add_episode(_episode(7, success=False, eid="e1"))
    idx = np.array([0, 5, 9, 10, 16])
    host, dev = buf.gather(idx), buf.gather(idx, buf.images_on("cpu"))
    for f in host.__dataclass_fields__:
        assert torch.equal(getattr(host, f), getattr(dev, f)), f
    assert torch.equal(dev.to("cpu").next_image, host.next_image)


def test_takeover_terminal_scores_autonomous_success():
    """RLIF reading: a policy chunk that runs into a takeover ends there with reward 0; operator chunks and the rest
    of the chunk MDP are unchanged."""
    cfg = PolicyConfig(image_size=8, horizon=4)
    ep = _episode(12, success=True, source=[0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0])
    plain, rlif = ChunkBuffer(cfg, gamma=0.9), ChunkBuffer(cfg, gamma=0.9, takeover_terminal=True)
    plain.add_episode(ep)
    rlif.add_episode(ep)
    idx = np.array([0, 1, 4, 8, 10])
    a, b = plain.gather(idx), rlif.gather(idx)
    np.testing.assert_array_equal(a.done.numpy(), [0, 0, 0, 1, 1])
    np.testing.assert_array_equal(a.rew.numpy(), [0, 0, 0, 1, 1])
    # step 1's chunk (1..4) reaches the takeover at 4: terminal, no reward; step 0's (0..3) does not
    np.testing.assert_array_equal(b.done.numpy(), [0, 1, 0, 1, 1])
    np.testing.assert_array_equal(b.rew.numpy(), [0, 0, 0, 1, 1])
    assert torch.equal(a.act, b.act)


class _Gate(Gate):
    """A gate with a scripted decision (the sim gate's decision rules are tested in test_gate.py)."""

    name = "scripted"

    def __init__(self, accept: bool) -> None:
        self.accept = accept
        self.calls = 0

    def decide(self, candidate, deployed, deployed_key):
        self.calls += 1
        return self.accept, {"candidate_success": 0.5, "deployed_success": 0.4, "episodes": 2.0}


def _cfg(**kw) -> LearnerConfig:
    # feature mode (action expert on cached features) unless a test asks for images: it exercises the feature cache
    base = dict(algo="bc", min_new_episodes=2, updates_per_round=3, offline_updates=0, background_updates=0,
                gate="none", select_episodes=0, algo_overrides={"images": False})
    base.update(kw)
    return LearnerConfig(**base)


def _fleet_bags(store, cfg, n: int, tag: str, t: int = 30) -> None:
    for i in range(n):
        eid = f"robot0-{tag}-{i}"
        write_steps_bag(store.episode_path("robot0", eid),
                        _episode(t, success=i == 0, size=cfg.image_size, eid=eid, robot="robot0",
                                 source=[SOURCE_POLICY] * (t - 10) + [SOURCE_TELEOP] * 10))


def test_learner_ingests_once_and_publishes(tiny_store, tmp_path):
    root = tmp_path / "store"
    shutil.copytree(tiny_store, root)
    store = ExperienceStore(root)
    cfg = load_checkpoint(root / "policies" / "v0").config
    learner = Learner(store, _cfg())
    demos = len(learner.buffer)
    assert demos > 0 and learner.poll() is None  # nothing new yet
    assert learner.buffer.num_encoded() == demos  # every step's features are cached
    _fleet_bags(store, cfg, 2, "a")
    assert learner.poll() == 1
    assert list_versions(root / "policies") == [0, 1]
    ck = load_checkpoint(root / "policies" / "v1")
    assert ck.manifest["parent"] == 0 and ck.manifest["new_episodes"] == 2
    steps_after = len(learner.buffer)
    assert steps_after == demos + 60 and learner.buffer.num_encoded() == steps_after
    assert learner.poll() is None and len(learner.buffer) == steps_after  # each episode ingested once
    # The deployed encoder is frozen: only the action expert differs between v0 and v1.
    v0 = load_checkpoint(root / "policies" / "v0").model.state_dict()
    v1 = ck.model.state_dict()
    changed = {k for k in v0 if not (v0[k] == v1[k]).all()}
    assert changed and all(k.startswith("expert.") for k in changed)
    # A restarted learner sees the same data once and continues from v1 with the same round counter.
    again = Learner(ExperienceStore(root), _cfg())
    assert again.version == 1 and len(again.buffer) == steps_after and again.poll() is None
    note = again.announcement()
    assert note["version"] == 1 and note["sha256"] == ck.sha256
    assert again.status()["round"] == 1 and again.pending_fleet == 0
    assert (root / "learner" / "metrics.csv").exists()


def test_restart_mid_round_keeps_pending_episodes(tiny_store, tmp_path):
    """Episodes that arrived before a crash count toward the next round after the restart (no deadlock)."""
    root = tmp_path / "store"
    shutil.copytree(tiny_store, root)
    store = ExperienceStore(root)
    cfg = load_checkpoint(root / "policies" / "v0").config
    learner = Learner(store, _cfg(min_new_episodes=3))
    _fleet_bags(store, cfg, 2, "a")
    assert learner.poll() is None and learner.pending_fleet == 2
    del learner  # "kill -9": nothing but the store and state.json survive
    again = Learner(ExperienceStore(root), _cfg(min_new_episodes=3))
    assert again.pending_fleet == 2 and again.status()["round"] == 0
    _fleet_bags(store, cfg, 1, "b")
    assert again.poll() == 1 and again.pending_fleet == 0
    state = json.loads((root / "learner" / "state.json").read_text())
    assert state == state | {"round": 1, "version": 1, "fleet_counted": 3, "algo": "bc"}


def test_restart_scores_the_critic_only_on_episodes_it_has_not_trained_on(tiny_store, tmp_path):
    """critic/heldout_auc after a restart: the fleet episodes of finished rounds were trained on, pending ones not."""
    root = tmp_path / "store"
    shutil.copytree(tiny_store, root)
    store = ExperienceStore(root)
    cfg = load_checkpoint(root / "policies" / "v0").config
    learner = Learner(store, _cfg(algo="lwd"))
    _fleet_bags(store, cfg, 2, "a")
    assert len(learner._heldout) == 0 and learner.poll() == 1
    _fleet_bags(store, cfg, 1, "b")
    assert learner.ingest_new() == 1 and len(learner._heldout) == 1
    again = Learner(ExperienceStore(root), _cfg(algo="lwd"))
    assert again.pending_fleet == 1 and len(again._heldout) == 1


def test_learner_never_reuses_a_version(tiny_store, tmp_path):
    root = tmp_path / "store"
    shutil.copytree(tiny_store, root)
    store = ExperienceStore(root)
    cfg = load_checkpoint(root / "policies" / "v0").config
    learner = Learner(store, _cfg())
    shutil.copytree(root / "policies" / "v0", root / "policies" / "v1")  # someone else wrote v1 meanwhile
    _fleet_bags(store, cfg, 2, "a")
    assert learner.poll() == 2 and list_versions(root / "policies") == [0, 1, 2]


def test_learner_config_validation():
    with pytest.raises(ValueError, match="unknown algo"):
        LearnerConfig(algo="nope")
    with pytest.raises(ValueError):
        LearnerConfig(min_new_episodes=0)
    with pytest.raises(ValueError):
        LearnerConfig(gate="maybe")
    with pytest.raises(ValueError):
        LearnerConfig(background_updates=-1)


@pytest.mark.parametrize("algo", ["lwd", "iql_awr", "lwd_no_divl", "lwd_no_qam", "pretrain_more"])
def test_algorithms_offline_then_online(tiny_store, tmp_path, algo):
    """Offline phase on the demos, then one online round from new fleet bags, diagnostics and gate logged."""
    root = tmp_path / "store"
    shutil.copytree(tiny_store, root)
    store = ExperienceStore(root)
    cfg = load_checkpoint(root / "policies" / "v0").config
    gate = _Gate(accept=True)
    learner = Learner(store, _cfg(algo=algo, min_new_episodes=1, updates_per_round=4, offline_updates=2), gate=gate)
    _fleet_bags(store, cfg, 1, "rl", t=25)
    assert learner.poll() == 1 and gate.calls == 1
    rows = [json.loads(x) for x in (root / "learner" / "metrics.jsonl").read_text().splitlines()]
    assert [r["phase"] for r in rows][:3] == ["offline", "online", "gate"]
    online, gate_row = rows[1], rows[2]
    assert all(np.isfinite(v) for k, v in online.items() if isinstance(v, float))
    assert gate_row["gate/accepted"] == 1.0 and gate_row["gate/candidate_success"] == 0.5
    assert "actor/shift_from_deployed_rad" in gate_row
    if algo != "pretrain_more":
        assert any(k.startswith("critic/") for k in online) or "loss/actor_bc" in online
    if algo in ("lwd", "lwd_no_divl"):
        assert "actor/q_gain_over_base" in gate_row and "critic/q_candidate" in gate_row
    ck = load_checkpoint(root / "policies" / "v1")
    assert ck.manifest["algo"] == algo
    # Restart resumes the algorithm's state (critic, reference flow) from the checkpoint.
    again = Learner(ExperienceStore(root), _cfg(algo=algo, min_new_episodes=1), gate=_Gate(True))
    assert again.version == 1
    saved = learner.algo.state_dict()
    restored = again.algo.state_dict()
    assert saved.keys() == restored.keys() and all(torch.equal(saved[k], restored[k]) for k in saved)


def test_gate_rejection_keeps_the_deployed_version(tiny_store, tmp_path):
    root = tmp_path / "store"
    shutil.copytree(tiny_store, root)
    store = ExperienceStore(root)
    cfg = load_checkpoint(root / "policies" / "v0").config
    learner = Learner(store, _cfg(algo="lwd", min_new_episodes=1), gate=_Gate(accept=False))
    _fleet_bags(store, cfg, 1, "e", t=20)
    assert learner.poll() is None and list_versions(root / "policies") == [0]
    # The round still counts (a synchronous fleet moves on with the deployed version).
    assert learner.status() | {"buffer_steps": 0} == {"round": 1, "version": 0, "accepted": False, "algo": "lwd",
                                                      "buffer_steps": 0, "quarantined": []}
    gate = [json.loads(x) for x in (root / "learner" / "metrics.jsonl").read_text().splitlines()][-1]
    assert gate["phase"] == "gate" and gate["gate/accepted"] == 0.0


def test_background_updates_while_waiting(tiny_store, tmp_path):
    root = tmp_path / "store"
    shutil.copytree(tiny_store, root)
    learner = Learner(ExperienceStore(root), _cfg(min_new_episodes=5, background_updates=3))
    assert learner.poll() is None and learner.poll() is None
    assert learner.total_updates == 6 and list_versions(root / "policies") == [0]  # trains, publishes nothing
    assert learner.busy and learner.poll_delay(2.0) == 0.0  # learning: the node polls again at once


def test_poll_delay_waits_only_when_there_is_nothing_to_train(tiny_store, tmp_path):
    root = tmp_path / "store"
    shutil.copytree(tiny_store, root)
    learner = Learner(ExperienceStore(root), _cfg(min_new_episodes=5, background_updates=0))
    assert learner.poll() is None and learner.total_updates == 0
    assert not learner.busy and learner.poll_delay(2.0) == 2.0


def test_background_updates_count_toward_the_round(tiny_store, tmp_path):
    """Learning while deploying: updates made while the robots work are part of the round's budget, so the round
    closes with what is left of it instead of idling the fleet for a whole round of updates."""
    root = tmp_path / "store"
    shutil.copytree(tiny_store, root)
    store = ExperienceStore(root)
    cfg = load_checkpoint(root / "policies" / "v0").config
    learner = Learner(store, _cfg(min_new_episodes=2, updates_per_round=5, background_updates=2))
    starts = []
    learner.algo.on_round_start = lambda n: starts.append(n)
    assert learner.poll() is None and learner.poll() is None and learner.total_updates == 4
    _fleet_bags(store, cfg, 2, "a")
    assert learner.poll() == 1 and learner.total_updates == 5  # 4 in the background + the 1 left
    assert learner.poll() is None and learner.poll() is None and learner.poll() is None
    assert learner.total_updates == 11  # past the budget while no round is due: it keeps learning
    _fleet_bags(store, cfg, 2, "b")
    assert learner.poll() == 2 and learner.total_updates == 11  # nothing left: the round closes at once
    assert starts == [5, 5]  # one schedule per round, begun at its first update
    rows = [json.loads(x) for x in (root / "learner" / "metrics.jsonl").read_text().splitlines()]
    assert [r["round/updates"] for r in rows if "round/updates" in r] == [5.0, 6.0]


def test_no_version_reuse_after_quarantine(tiny_store, tmp_path):
    """v1 corrupt -> quarantined, the learner falls back to v0 and publishes v2, never a second v1."""
    root = tmp_path / "store"
    shutil.copytree(tiny_store, root)
    shutil.copytree(root / "policies" / "v0", root / "policies" / "v1")
    (root / "policies" / "v1" / "model.safetensors").write_bytes(b"\xff" * 64)
    store = ExperienceStore(root)
    cfg = load_checkpoint(root / "policies" / "v0").config
    learner = Learner(store, _cfg())
    assert learner.version == 0 and learner.status()["quarantined"]
    _fleet_bags(store, cfg, 2, "a")
    assert learner.poll() == 2 and list_versions(root / "policies") == [0, 2]


def test_episodes_indexed_during_startup_are_not_lost(tiny_store, tmp_path, monkeypatch):
    """A robot's episode indexed between the learner's listing and its claim is ingested, not silently claimed."""
    root = tmp_path / "store"
    shutil.copytree(tiny_store, root)
    store = ExperienceStore(root)
    cfg = load_checkpoint(root / "policies" / "v0").config
    listing = store.episodes

    def racy_listing(*a, **kw):
        out = listing(*a, **kw)
        _fleet_bags(store, cfg, 2, "race")  # arrives right after the listing
        store.scan()
        return out

    monkeypatch.setattr(store, "episodes", racy_listing)
    learner = Learner(store, _cfg(min_new_episodes=2))
    monkeypatch.setattr(store, "episodes", listing)
    assert learner.pending_fleet == 2 and learner.poll() == 1


def test_lwd_round_restarts_the_deployed_field_from_the_reference():
    """QAM tilts pi_base: each round starts the deployed field at the reference flow, then adjoint matching moves it."""
    from lwd.policy.model import ActionExpert
    from lwd.rl.fleet_rl import FleetRL, FleetRLConfig

    torch.manual_seed(0)
    expert = ActionExpert(8, 6, 16)
    algo = FleetRL(expert, 8, 6, FleetRLConfig(images=False))
    with torch.no_grad():
        for p in algo.extractor.base_target.parameters():
            p.add_(0.1)
    algo.on_round_start()
    ref = algo.reference().state_dict()
    assert all(torch.equal(v, ref[k]) for k, v in expert.state_dict().items())
    off = FleetRL(ActionExpert(8, 6, 16), 8, 6, FleetRLConfig(sync_actor=False, images=False))
    with torch.no_grad():
        for p in off.extractor.base_target.parameters():
            p.add_(0.1)
    before = {k: v.clone() for k, v in off.expert.state_dict().items()}
    off.on_round_start()
    assert all(torch.equal(v, before[k]) for k, v in off.expert.state_dict().items())


@pytest.mark.parametrize("algo", ["bc", "pretrain_more"])
def test_image_bc_trains_the_whole_vla(tiny_store, tmp_path, algo):
    """BCConfig.images: the deployed VLA's encoder learns too (no feature cache needed), diagnostics still run."""
    root = tmp_path / "store"
    shutil.copytree(tiny_store, root)
    store = ExperienceStore(root)
    cfg = load_checkpoint(root / "policies" / "v0").config
    learner = Learner(store, _cfg(algo=algo, algo_overrides={"images": True, "image_batch": 8}))
    assert learner.algo.trains_encoder and learner.buffer.num_encoded() == 0
    _fleet_bags(store, cfg, 2, "img")
    assert learner.poll() == 1
    v0 = load_checkpoint(root / "policies" / "v0").model.state_dict()
    v1 = load_checkpoint(root / "policies" / "v1").model.state_dict()
    changed = {k.split(".")[0] for k in v0 if not (v0[k] == v1[k]).all()}
    assert {"vision", "expert"} <= changed
    gate = [json.loads(x) for x in (root / "learner" / "metrics.jsonl").read_text().splitlines()][-1]
    assert gate["actor/shift_from_deployed_rad"] > 0


@pytest.mark.parametrize("algo,features", [("lwd", "frozen"), ("lwd_no_qam", "frozen"), ("lwd", "reference")])
def test_image_rl_tilts_the_image_trained_reference(tiny_store, tmp_path, algo, features):
    """FleetRLConfig.images: the reference VLA learns on images (encoder included), the critic reads features of a
    frozen copy of v0, and the round ends with the deployed VLA = reference + an extractor tilt of its expert."""
    root = tmp_path / "store"
    shutil.copytree(tiny_store, root)
    store = ExperienceStore(root)
    cfg = load_checkpoint(root / "policies" / "v0").config
    learner = Learner(store, _cfg(algo=algo, algo_overrides={
        "images": True, "image_batch": 8, "critic_batch": 8, "actor_batch": 4, "tilt_steps": 3,
        "critic_features": features, "critic_refit": 2, "tilt_guard": False}))
    assert learner.algo.trains_encoder and learner.buffer.num_encoded() == len(learner.buffer)
    frozen = {k: v.clone() for k, v in learner.feature_model.state_dict().items()}
    _fleet_bags(store, cfg, 2, "img")
    assert learner.poll() == 1
    assert learner.buffer.num_encoded() == len(learner.buffer)  # fleet steps got critic features too
    assert all(torch.equal(v, frozen[k]) for k, v in learner.feature_model.state_dict().items())
    scorer = load_scorer(root / "policies" / "v1")
    if features == "reference":  # v1 publishes its critic, which reads v1's own features (value-guided selection)
        idx = np.arange(4)
        b = learner.buffer.gather(idx)
        with torch.no_grad():
            want_q = learner.algo.critic.q_pessimistic(learner.buffer.features(idx), b.act)
            assert torch.allclose(scorer(learner.model.encode(b.image, b.qpos, b.tokens), b.act), want_q, atol=1e-5)
    else:  # a critic on v0's frozen features cannot score v1's chunks
        assert scorer is None
    if features == "reference":  # the cache now holds the deployed (= reference) encoder's features
        b = learner.buffer.gather(np.arange(4))
        with torch.no_grad():
            want = learner.model.encode(b.image, b.qpos, b.tokens)
        assert torch.allclose(learner.buffer.features(np.arange(4)), want, atol=1e-5)
        _fleet_bags(store, cfg, 1, "late")  # and so are later episodes' features
        learner.ingest_new()
        n = len(learner.buffer)
        b = learner.buffer.gather(np.arange(n - 3, n))
        with torch.no_grad():
            want = learner.model.encode(b.image, b.qpos, b.tokens)
        assert torch.allclose(learner.buffer.features(np.arange(n - 3, n)), want, atol=1e-5)
    v0 = load_checkpoint(root / "policies" / "v0").model.state_dict()
    v1 = load_checkpoint(root / "policies" / "v1").model.state_dict()
    changed = {k.split(".")[0] for k in v0 if not (v0[k] == v1[k]).all()}
    assert {"vision", "expert"} <= changed
    ref = learner.algo.ref_bc.model.state_dict()
    dep = learner.model.state_dict()
    assert all(torch.equal(dep[k], ref[k]) for k in dep if not k.startswith("expert."))  # encoder = reference's
    assert any(not torch.equal(dep[k], ref[k]) for k in dep if k.startswith("expert."))  # expert tilted
    rows = [json.loads(x) for x in (root / "learner" / "metrics.jsonl").read_text().splitlines()]
    assert any(r["phase"] == "round_end" for r in rows)
    gate = [r for r in rows if r["phase"] == "gate"][-1]
    assert "critic/q_candidate" in gate and "actor/shift_from_base_rad" in gate
    # the learner state (critic + reference VLA) resumes, and its critic reads the states as it did before
    again = Learner(store, _cfg(algo=algo, algo_overrides={"images": True, "critic_features": features}))
    ref2 = again.algo.ref_bc.model.state_dict()
    assert all(torch.equal(ref2[k], v) for k, v in ref.items())
    view = (again.algo.feature_encoder() or again.feature_model).state_dict()
    want = ref if features == "reference" else frozen  # the refit reference's, or v0's frozen copy
    assert all(torch.equal(view[k], v) for k, v in want.items())
    assert again.version == 1 and again.feature_version == 0  # the VLA it first started from


def test_tilt_guard_publishes_the_reference_when_the_critic_rates_the_tilt_lower(tiny_store, tmp_path, monkeypatch):
    from lwd.rl.fleet_rl import FleetRL

    root = tmp_path / "store"
    shutil.copytree(tiny_store, root)
    store = ExperienceStore(root)
    cfg = load_checkpoint(root / "policies" / "v0").config
    learner = Learner(store, _cfg(algo="lwd", algo_overrides={
        "images": True, "image_batch": 8, "critic_batch": 8, "actor_batch": 4, "tilt_steps": 3}))
    algo = learner.algo
    calls = iter([torch.zeros(1), torch.ones(1)])  # the guard's calls: the tilt's chunks rated 0, the reference's 1
    monkeypatch.setattr(FleetRL, "q_value", lambda self, obs, act: next(calls, torch.ones(len(obs))))
    _fleet_bags(store, cfg, 2, "img")
    assert learner.poll() == 1
    ref = algo.ref_bc.model.state_dict()
    assert all(torch.equal(v, ref[k]) for k, v in learner.model.state_dict().items())
    row = [json.loads(x) for x in (root / "learner" / "metrics.jsonl").read_text().splitlines()
           if '"round_end"' in x][-1]
    assert row["actor/tilt_kept"] == 0.0


@pytest.mark.parametrize("alternative_wins", [False, True])
def test_rollouts_choose_between_the_tilt_and_its_reference(tiny_store, tmp_path, alternative_wins):
    """The critic rates its own tilt higher by construction: success rollouts (the selector) pick what is published."""
    root = tmp_path / "store"
    shutil.copytree(tiny_store, root)
    store = ExperienceStore(root)
    cfg = load_checkpoint(root / "policies" / "v0").config
    selector = _Gate(accept=not alternative_wins)
    learner = Learner(store, _cfg(algo="lwd", select_episodes=2, algo_overrides={
        "images": True, "image_batch": 8, "critic_batch": 8, "actor_batch": 4, "tilt_steps": 3, "critic_refit": 2,
        "tilt_guard": False}), selector=selector)
    _fleet_bags(store, cfg, 2, "img")
    assert learner.poll() == 1 and selector.calls == 1
    ref, dep = learner.algo.ref_bc.model.state_dict(), learner.model.state_dict()
    assert all(torch.equal(dep[k], ref[k]) for k in dep) == alternative_wins
    published = load_checkpoint(root / "policies" / "v1").model.state_dict()
    assert all(torch.equal(published[k], v) for k, v in dep.items())
    row = [json.loads(x) for x in (root / "learner" / "metrics.jsonl").read_text().splitlines()
           if '"round_end"' in x][-1]
    assert row["select/kept_candidate"] == float(not alternative_wins)
    # the round end's cost is split so that selection rollouts are not read as update cost
    parts = [row[f"perf/{k}_s"] for k in ("encode", "refit", "tilt", "select")]
    assert all(p >= 0 for p in parts) and sum(parts) <= row["perf/round_end_s"]
    # bc has nothing to choose between: no rollouts
    bc_root = tmp_path / "bc"
    shutil.copytree(tiny_store, bc_root)
    bc_selector = _Gate(accept=True)
    bc = Learner(ExperienceStore(bc_root), _cfg(algo="bc", select_episodes=2, algo_overrides={
        "images": True, "image_batch": 8}), selector=bc_selector)
    _fleet_bags(ExperienceStore(bc_root), cfg, 2, "img")
    assert bc.poll() == 1 and bc_selector.calls == 0


@pytest.mark.parametrize("ema", [0.0, 0.5])
def test_lwd_reference_replays_bc_draws_so_a_vetoed_tilt_publishes_bc(tiny_store, tmp_path, ema):
    """Common random numbers: lwd's BC reference draws bc's batches, shifts and flow noise although its critic and
    tilt draw in between, so when rollouts keep the reference, lwd publishes bc's VLA bit for bit, round after
    round (an lwd-vs-bc difference in one run is then lwd's own, not a second learner seed's)."""
    lwd_kw = {"images": True, "image_batch": 8, "critic_batch": 8, "actor_batch": 4, "tilt_steps": 3,
              "critic_refit": 2, "tilt_guard": False, "image_ema": ema}
    runs = {}
    for algo, overrides, selector in (("bc", {"images": True, "image_batch": 8, "image_ema": ema}, None),
                                      ("lwd", lwd_kw, _Gate(accept=False))):  # accept=False: keep the reference
        root = tmp_path / algo
        shutil.copytree(tiny_store, root)
        store = ExperienceStore(root)
        cfg = load_checkpoint(root / "policies" / "v0").config
        learner = Learner(store, _cfg(algo=algo, select_episodes=2 if selector else 0, algo_overrides=overrides),
                          selector=selector)
        for r, tag in enumerate("ab", start=1):
            _fleet_bags(store, cfg, 2, tag)
            assert learner.poll() == r
        runs[algo] = [load_checkpoint(root / "policies" / f"v{v}").model.state_dict() for v in (1, 2)]
    for bc, lwd in zip(runs["bc"], runs["lwd"], strict=True):
        for k in bc:
            torch.testing.assert_close(lwd[k], bc[k], rtol=0, atol=0, msg=k)
    v0 = load_checkpoint(tiny_store / "policies" / "v0").model.state_dict()
    assert any(not torch.equal(v0[k], runs["bc"][1][k]) for k in v0)  # they learned, alike


def test_replayed_streams_fork_at_each_reseed_and_leave_the_learner_streams_alone():
    from lwd.rl.base import ReplayedStreams

    streams = ReplayedStreams()
    with pytest.raises(RuntimeError):
        with streams.torch_stream():
            pass
    torch.manual_seed(7)
    rng = np.random.default_rng(7)
    expected_np, expected_torch = np.random.default_rng(7).integers(0, 100, 3), torch.rand(3)
    torch.manual_seed(7)
    mine = streams.follow(rng)
    rng.integers(0, 100, 5)  # the learner's own draws in between shift nothing of the replayed stream
    torch.rand(5)
    outer = torch.get_rng_state()
    with streams.torch_stream():
        got_torch = torch.rand(3)
    assert torch.equal(torch.get_rng_state(), outer)  # the learner's torch stream continues where it was
    assert streams.follow(rng) is mine and np.array_equal(mine.integers(0, 100, 3), expected_np)
    assert torch.equal(got_torch, expected_torch)
    assert streams.follow(np.random.default_rng(8)) is not mine  # a reseed forks afresh


@pytest.mark.parametrize("algo", ["bc", "lwd"])
def test_image_ema_publishes_the_rounds_weight_average(tiny_store, tmp_path, monkeypatch, algo):
    """``image_ema``: the round ends on the exponential moving average of the weights its image updates passed
    through (what AveragedModel's EMA gives: the first update's weights, then d * avg + (1 - d) * new), for bc the
    VLA it trains in place, for lwd its reference (published as is when the tilt is vetoed); the updates are the
    ones the same learner without the average makes."""
    from lwd.rl.bc import ImageBC

    d, seen = 0.5, []
    update = ImageBC.update

    def recording(self, batch):
        out = update(self, batch)
        seen.append({k: v.detach().clone() for k, v in self.model.state_dict().items()})
        return out

    monkeypatch.setattr(ImageBC, "update", recording)
    extra = {"critic_batch": 8, "actor_batch": 4, "tilt_steps": 0, "critic_refit": 2} if algo == "lwd" else {}
    published = {}
    for ema in (0.0, d):
        root = tmp_path / f"store{ema}"
        shutil.copytree(tiny_store, root)
        store = ExperienceStore(root)
        cfg = load_checkpoint(root / "policies" / "v0").config
        seen.clear()
        learner = Learner(store, _cfg(algo=algo, algo_overrides={"images": True, "image_batch": 8,
                                                                  "image_ema": ema, **extra}))
        _fleet_bags(store, cfg, 2, "a")
        assert learner.poll() == 1
        published[ema] = load_checkpoint(root / "policies" / "v1").model.state_dict()
        if ema == 0.0:
            raw = list(seen)
    assert len(raw) == 3
    for k, last in raw[-1].items():
        torch.testing.assert_close(published[0.0][k], last, rtol=0, atol=0, msg=k)  # without: the last update
        if not last.is_floating_point():
            continue
        avg = raw[0][k].clone()
        for w in raw[1:]:
            avg = d * avg + (1 - d) * w[k]
        torch.testing.assert_close(published[d][k], avg, msg=k)
    assert any(not torch.equal(published[d][k], published[0.0][k]) for k in published[d])


def test_image_bc_needs_its_vla():
    from lwd.policy.model import ActionExpert
    from lwd.rl.bc import BCConfig, FilteredBC

    with pytest.raises(ValueError):
        FilteredBC(ActionExpert(8, 6, 16), 8, 6, BCConfig(images=True))


_RESTART_CASES = {
    "bc": {},  # the whole VLA, as the benchmark trains it
    "bc_ema": {"image_ema": 0.5},  # each round starts from the published average
    "lwd": {"images": True, "image_batch": 8, "critic_batch": 8, "actor_batch": 4, "tilt_steps": 3,
            "critic_refit": 2, "tilt_guard": False},
    "lwd_features": {"images": False, "critic_batch": 8, "actor_batch": 4, "batch_size": 8},
}


@pytest.mark.parametrize("case", sorted(_RESTART_CASES))
def test_restart_between_rounds_reproduces_the_uninterrupted_run(tiny_store, tmp_path, case):
    """A learner resumed after round 1 publishes the v2 an uninterrupted learner publishes (same streams; every
    optimizer's moments restored: bc's, and lwd's critic, reference and actor)."""
    kw = dict(algo=case.split("_")[0], algo_overrides=_RESTART_CASES[case])
    published = []
    for restart in (False, True):
        root = tmp_path / f"store{int(restart)}"
        shutil.copytree(tiny_store, root)
        store = ExperienceStore(root)
        cfg = load_checkpoint(root / "policies" / "v0").config
        learner = Learner(store, _cfg(**kw))
        _fleet_bags(store, cfg, 2, "a")
        assert learner.poll() == 1
        if restart:
            del learner
            learner = Learner(ExperienceStore(root), _cfg(**kw))
        _fleet_bags(store, cfg, 2, "b")
        assert learner.poll() == 2
        published.append(load_checkpoint(root / "policies" / "v2").model.state_dict())
    a, b = published
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)


def test_optimizer_state_that_does_not_fit_is_refused():
    from lwd.rl.bc import load_optimizer_tensors, optimizer_tensors

    big = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(big.parameters())
    big(torch.ones(1, 3)).sum().backward()
    opt.step()
    state = optimizer_tensors(opt, "opt.")
    small = torch.optim.AdamW([torch.nn.Parameter(torch.ones(2))])
    with pytest.raises(ValueError, match="does not fit"):
        load_optimizer_tensors(small, state, "opt.")
    other = torch.optim.AdamW(torch.nn.Linear(4, 2).parameters())  # as many parameters, other shapes
    with pytest.raises(ValueError, match="does not fit"):
        load_optimizer_tensors(other, state, "opt.")
    again = torch.optim.AdamW(big.parameters())
    load_optimizer_tensors(again, state, "opt.")
    torch.testing.assert_close(again.state_dict()["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])
