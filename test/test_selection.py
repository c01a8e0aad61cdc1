"""Value-guided chunk selection: the VLAPolicy hook and the critic a checkpoint publishes (lwd.rl.selection)."""

from __future__ import annotations

import json
import shutil
import time

import numpy as np
import pytest
import torch

from lwd.policy.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from lwd.policy.inference import VLAPolicy
from lwd.policy.model import FlowVLA, PolicyConfig
from lwd.rl.divl import DIVL, DIVLConfig
from lwd.rl.selection import attach_scorer, load_scorer, scorer_spec

SMALL = dict(image_size=32, horizon=4, cond_dim=32, hidden=64, vision_channels=8, text_dim=16)


def _obs(cfg: PolicyConfig, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {"image": rng.integers(0, 255, (cfg.image_size, cfg.image_size, 3), dtype=np.uint8),
            "qpos": rng.normal(size=cfg.n_joints).astype(np.float32), "instruction": "pick up the can"}


def _model() -> FlowVLA:
    torch.manual_seed(0)
    return FlowVLA(PolicyConfig(**SMALL)).eval()


def test_one_candidate_or_no_scorer_is_the_plain_policy():
    model = _model()
    obs = _obs(model.cfg)
    plain = VLAPolicy(model, seed=3, noise_scale=1.0).infer(obs)
    calls = []
    one = VLAPolicy(model, seed=3, noise_scale=1.0, candidates=1,
                    scorer=lambda c, x: calls.append(1) or torch.zeros(len(x)))
    assert np.array_equal(one.infer(obs), plain) and not calls  # same draws, scorer never asked
    assert np.array_equal(VLAPolicy(model, seed=3, noise_scale=1.0, candidates=8).infer(obs), plain)
    with pytest.raises(ValueError):
        VLAPolicy(model, candidates=0)


def test_the_scorer_picks_the_chunk_it_values_most():
    model = _model()
    obs = _obs(model.cfg)
    seen = {}

    def score(cond, chunks):  # prefers chunks whose first joint target lies highest
        assert cond.shape == (8, model.cfg.cond_dim) and chunks.shape == (8, model.cfg.action_dim)
        seen["chunks"] = chunks.clone()
        return chunks[:, 0]

    policy = VLAPolicy(model, seed=0, scorer=score, candidates=8, candidate_noise=1.0)
    out = policy.infer(obs)
    best = int(torch.argmax(seen["chunks"][:, 0]))
    plain = VLAPolicy(model, seed=0).infer(obs)
    assert np.allclose(VLAPolicy(model).infer(obs), plain)
    # the first candidate is the plain policy's chunk (noise_scale 0), the executed one the best-scored
    scale = np.asarray(model.cfg.action_scale, dtype=np.float32)
    q0 = obs["qpos"]
    chosen = (out - q0) / scale
    assert np.allclose(chosen.reshape(-1), seen["chunks"][best].clamp(-1, 1).numpy(), atol=1e-5)
    assert policy.picks == [int(best == 0), 1]
    assert best != 0  # 7 random candidates: one beats the mode on joint 0 (fixed seed)


def _published(tmp_path, model: FlowVLA, with_critic: bool = True):
    critic = DIVL(model.cfg.cond_dim, model.cfg.action_dim, DIVLConfig(hidden=(32, 32), ensemble_size=3))
    tensors = {f"critic.{k}": v for k, v in critic.state_dict().items()}
    extra = {"algo": "lwd"} | ({"scorer": scorer_spec("divl", critic)} if with_critic else {})
    return save_checkpoint(tmp_path / "policies", model, 1, extra=extra, extra_tensors=tensors), critic


def test_a_published_critic_round_trips_and_drives_selection(tmp_path):
    model = _model()
    path, critic = _published(tmp_path, model)
    scorer = load_scorer(path)
    cond, act = torch.randn(5, model.cfg.cond_dim), torch.rand(5, model.cfg.action_dim) * 2 - 1
    with torch.no_grad():
        assert torch.allclose(scorer(cond, act), critic.q_pessimistic(cond, act))
    policy = VLAPolicy.from_checkpoint(load_checkpoint(path), seed=0)
    assert attach_scorer(policy, path, 4) and policy.candidates == 4
    policy.infer(_obs(model.cfg))
    assert policy.picks[1] == 1
    plain = VLAPolicy.from_checkpoint(load_checkpoint(path))
    assert not attach_scorer(plain, path, 1) and plain.scorer is None  # 1 = off


def test_versions_without_a_critic_act_plainly(tmp_path):
    model = _model()
    path, _ = _published(tmp_path, model, with_critic=False)  # e.g. bc: tensors but no scorer named
    assert load_scorer(path) is None
    policy = VLAPolicy.from_checkpoint(load_checkpoint(path))
    assert not attach_scorer(policy, path, 8) and policy.scorer is None


def test_a_broken_published_critic_is_a_clear_error(tmp_path):
    model = _model()
    path, _ = _published(tmp_path, model)
    (path / "learner.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(CheckpointError, match="critic"):
        load_scorer(path)
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["scorer"]["obs_dim"] = 7
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match="critic"):
        load_scorer(path)


def test_the_bench_acts_by_selection_only_when_asked_and_where_a_critic_is_published(tmp_path):
    from lwd.app.bench import BenchConfig, _policy

    model = _model()
    path, _ = _published(tmp_path, model)
    assert _policy(model, 1, 0, BenchConfig(), path).scorer is None  # default: off
    assert _policy(model, 1, 0, BenchConfig(select_candidates=4), path).candidates == 4
    assert _policy(model, 0, 0, BenchConfig(select_candidates=4), None).scorer is None  # v0: nothing to load


@pytest.mark.ros
def test_vla_policy_node_selects_with_a_published_critic_and_rejects_a_broken_one(tmp_path):
    rclpy = pytest.importorskip("rclpy")
    from std_msgs.msg import String

    from lwd.nodes.vla_policy import VLAPolicyNode

    model = _model()
    store = tmp_path / "store"
    save_checkpoint(store / "policies", model, 0)
    path, _ = _published(store, model)  # v1 publishes a critic
    rclpy.init(args=["--ros-args", "-p", f"store:={store}", "-p", "select_candidates:=4"])
    node = None
    try:
        node = VLAPolicyNode()
        assert node.version == 1 and node.policy.candidates == 4 and node.policy.scorer is not None
        # v2 names a critic it cannot load: the announcement is rejected and v1 keeps acting
        v2 = store / "policies" / "v2"
        shutil.copytree(path, v2)
        manifest = json.loads((v2 / "manifest.json").read_text())
        (v2 / "manifest.json").write_text(json.dumps({**manifest, "version": 2}))
        (v2 / "learner.safetensors").write_bytes(b"broken")
        node._on_fleet_policy(String(data=json.dumps({"version": 2, "uri": str(v2), "sha256": manifest["sha256"]})))
        deadline = time.monotonic() + 30.0
        while not node.rejected and time.monotonic() < deadline:  # the loader thread reports after it gave up
            time.sleep(0.05)
        node._swap_if_ready()
        assert node.version == 1 and node.rejected[-1]["code"] == "bad_scorer"
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
