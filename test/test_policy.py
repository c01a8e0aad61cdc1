"""Flow VLA, flow matching, checkpoints."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from lwd.policy.checkpoint import CheckpointError, load_checkpoint, save_checkpoint, sha256_file
from lwd.policy.flow import FlowTime, interpolate, sample_euler
from lwd.policy.inference import VLAPolicy
from lwd.policy.model import FlowVLA, PolicyConfig, denormalize_chunk, normalize_chunk, tokenize

SMALL = dict(image_size=32, horizon=4, cond_dim=32, hidden=64, vision_channels=8, text_dim=16)


def _batch(cfg: PolicyConfig, b: int = 16, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    img = torch.randint(0, 255, (b, cfg.image_size, cfg.image_size, 3), dtype=torch.uint8, generator=g)
    q = torch.randn(b, cfg.n_joints, generator=g)
    tok = torch.from_numpy(np.stack([tokenize("put the red can on the shelf", cfg.vocab_size, cfg.max_tokens)] * b))
    x1 = torch.tanh(torch.randn(b, cfg.action_dim, generator=g))
    return img, q, tok, x1


def test_time_convention_endpoints():
    x0, x1 = torch.zeros(2, 3), torch.ones(2, 3)
    assert torch.equal(interpolate(x0, x1, torch.full((2,), FlowTime.NOISE.value)), x0)
    assert torch.equal(interpolate(x0, x1, torch.full((2,), FlowTime.ACTION.value)), x1)


def test_euler_sampler_follows_constant_field():
    field = lambda c, x, t: torch.full_like(x, 0.5)  # noqa: E731
    out = sample_euler(field, torch.zeros(3, 1), dim=2, steps=10, noise=torch.zeros(3, 2))
    assert torch.allclose(out, torch.full((3, 2), 0.5), atol=1e-6)


def test_flow_matching_loss_decreases():
    torch.manual_seed(0)
    cfg = PolicyConfig(**SMALL)
    model = FlowVLA(cfg)
    img, q, tok, x1 = _batch(cfg)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)

    def held_out_loss() -> float:  # same noise and times before and after training
        with torch.no_grad():
            return model.loss(model.encode(img, q, tok), x1, generator=torch.Generator().manual_seed(1)).item()

    before = held_out_loss()
    for _ in range(150):
        loss = model.loss(model.encode(img, q, tok), x1)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert held_out_loss() < 0.8 * before


def test_normalize_roundtrip_and_tokenizer():
    rng = np.random.default_rng(0)
    q0 = rng.normal(size=14)
    scale = np.full(14, 0.5)
    a = q0 + rng.uniform(-0.4, 0.4, size=(10, 14))
    x = normalize_chunk(a, q0, scale)
    assert x.shape == (140,) and np.abs(x).max() <= 1
    np.testing.assert_allclose(denormalize_chunk(x, q0, scale, 14), a, atol=1e-5)
    t1 = tokenize("Put the RED can", 1024, 8)
    assert np.array_equal(t1, tokenize("put the red can", 1024, 8)) and (t1[:4] > 0).all() and (t1[4:] == 0).all()


def test_checkpoint_roundtrip_and_rejections(tmp_path):
    cfg = PolicyConfig(**SMALL)
    model = FlowVLA(cfg)
    path = save_checkpoint(tmp_path, model, 3, extra={"algo": "test"})
    ck = load_checkpoint(path)
    assert ck.version == 3 and ck.manifest["algo"] == "test" and ck.sha256 == sha256_file(path / "model.safetensors")
    for k, v in model.state_dict().items():
        assert torch.equal(v, ck.model.state_dict()[k])
    with pytest.raises(CheckpointError):  # versions are immutable
        save_checkpoint(tmp_path, model, 3)
    with pytest.raises(CheckpointError, match="announced"):
        load_checkpoint(path, expected_sha256="0" * 64)
    with pytest.raises(CheckpointError, match="hidden"):
        load_checkpoint(path, expected_config=PolicyConfig(**{**SMALL, "hidden": 128}))
    # Corrupt the weights: the manifest's sha256 catches it.
    data = bytearray((path / "model.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (path / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="sha256"):
        load_checkpoint(path)


def test_checkpoint_shape_mismatch_rejected(tmp_path):
    path = save_checkpoint(tmp_path, FlowVLA(PolicyConfig(**SMALL)), 1)
    cfg = json.loads((path / "config.json").read_text())
    cfg["hidden"] = 96  # config no longer matches the tensors
    (path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="shape"):
        load_checkpoint(path)


def test_policy_infer_shapes_and_validation():
    cfg = PolicyConfig(**SMALL)
    policy = VLAPolicy(FlowVLA(cfg), version=2, seed=0, exec_steps=2)
    obs = {"image": np.zeros((32, 32, 3), np.uint8), "qpos": np.zeros(14, np.float32), "instruction": "restock"}
    chunk = policy.infer(obs)
    assert chunk.shape == (4, 14) and np.isfinite(chunk).all()
    assert policy.act(obs).shape == (2, 14)
    with pytest.raises(ValueError):
        policy.infer({**obs, "qpos": np.full(14, np.nan, np.float32)})
    with pytest.raises(ValueError):
        policy.infer({**obs, "image": np.zeros((16, 16, 3), np.uint8)})


@pytest.mark.parametrize("mode,sees", [("full", list(range(14))), ("gripper", [6, 13]), ("none", [])])
def test_proprio_modes_feed_only_their_joints(mode, sees):
    torch.manual_seed(0)
    model = FlowVLA(PolicyConfig(image_size=16, proprio=mode)).eval()
    img = torch.randint(0, 255, (1, 16, 16, 3), dtype=torch.uint8)
    tok = torch.from_numpy(tokenize("pick the red can", 1024, 16))[None]
    base = model.encode(img, torch.zeros(1, 14), tok)
    for j in range(14):
        q = torch.zeros(1, 14)
        q[0, j] = 1.0
        changed = not torch.allclose(model.encode(img, q, tok), base)
        assert changed == (j in sees), (mode, j)


def test_proprio_mode_of_older_configs():
    d = PolicyConfig().to_dict()
    del d["proprio"]
    assert PolicyConfig.from_dict(d).proprio == "full"  # saved before the option: the network saw every joint
    assert PolicyConfig.from_dict({**d, "proprio": False}).proprio == "none"
    with pytest.raises(ValueError):
        FlowVLA(PolicyConfig(image_size=16, proprio="elbow"))
