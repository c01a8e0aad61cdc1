"""Chunk scheduling on the observation's time base: latency skip, blend weights, the RTC prefix and guidance."""

import math

import numpy as np
import pytest
import torch

from lwd.control.chunking import Chunk, ChunkScheduler, ObservationGate, Prefix, soft_mask
from lwd.policy.flow import sample_euler
from lwd.policy.inference import VLAPolicy
from lwd.policy.model import FlowVLA, PolicyConfig
from lwd.policy.rtc import guidance_weight, sample_guided

DT = 0.1
J = 3


def _ramp(h: int, base: float = 0.0, step: float = 1.0) -> np.ndarray:
    """Chunk whose action k is base + k * step in every joint (easy to read back which slot is executed)."""
    return np.stack([np.full(J, base + k * step) for k in range(h)])


# -- soft mask ---------------------------------------------------------------------------------------------------
def test_soft_mask_frozen_decay_zero():
    w = soft_mask(10, frozen=2, overlap=6)
    assert np.allclose(w[:2], 1.0)
    assert np.all(np.diff(w[2:6]) < 0) and np.all((w[2:6] > 0) & (w[2:6] < 1))
    assert np.allclose(w[6:], 0.0)
    c = 4 / 5  # i = 2: c = (overlap - i) / (overlap - frozen + 1)
    assert w[2] == pytest.approx(c * math.expm1(c) / math.expm1(1.0))


def test_soft_mask_clips_arguments():
    assert np.allclose(soft_mask(4, frozen=0, overlap=0), 0.0)
    assert np.allclose(soft_mask(4, frozen=9, overlap=9), 1.0)  # everything committed
    assert soft_mask(4, frozen=-1, overlap=2)[0] < 1.0


# -- time base ---------------------------------------------------------------------------------------------------
def test_chunk_targets_on_observation_time_base():
    c = Chunk(_ramp(5), start=10.0, dt=DT)
    assert c.action_at(10.0)[0] == 0 and c.action_at(10.05)[0] == 0 and c.action_at(10.1)[0] == 1
    assert c.action_at(9.9)[0] == 0  # before the start: the first action
    assert c.action_at(10.3 + 1e-9)[0] == 3  # float time on the grid lands in its own slot
    assert c.action_at(10.5) is None and c.remaining(10.45) == 1 and c.end == pytest.approx(10.5)


def test_late_chunk_skips_passed_actions_instead_of_replaying_them():
    s = ChunkScheduler("replace", DT, exec_steps=5)
    assert s.request_due(0.0)
    s.begin(0.0)
    assert not s.request_due(0.05)  # one inference in flight at a time
    s.accept(_ramp(10, base=-10.0), obs_time=0.0, now=0.0)
    s.begin(0.5)
    chunk = s.accept(_ramp(10), obs_time=0.5, now=0.75)  # 250 ms of latency while the first chunk kept moving
    assert chunk.start == 0.5
    seen = [s.target(0.75 + k * DT)[0] for k in range(8)]
    assert seen == [2, 3, 4, 5, 6, 7, 8, 9]  # actions 0, 1 were due before arrival: skipped
    assert s.target(1.5) is None  # ran out: no fresh target


def test_time_the_robot_held_still_is_not_skipped():
    s = ChunkScheduler("replace", DT, exec_steps=5)
    s.begin(0.0)
    first = s.accept(_ramp(10), obs_time=0.0, now=0.3)  # nothing in flight: the robot held still
    assert first.start == pytest.approx(0.3) and s.target(0.3)[0] == 0
    s.begin(1.2)  # the first chunk ran out at 1.3 ...
    late = s.accept(_ramp(10, base=20.0), obs_time=1.2, now=1.6)  # ... and the robot held from 1.3 to 1.6
    assert late.start == pytest.approx(1.5) and s.target(1.6)[0] == 21  # only the 0.1 s of motion is skipped


def test_receipt_time_base_replays_from_arrival():
    s = ChunkScheduler("replace", DT, exec_steps=5, time_base="receipt")
    s.begin(0.0)
    s.accept(_ramp(10), obs_time=0.0, now=0.0)
    s.begin(0.5)
    s.accept(_ramp(10), obs_time=0.5, now=0.75)
    assert s.target(0.75)[0] == 0


def test_chunk_that_arrives_after_its_end_is_dropped():
    s = ChunkScheduler("replace", DT, exec_steps=1)
    s.begin(0.0)
    s.accept(_ramp(10), obs_time=0.0, now=0.0)
    s.begin(0.1)
    assert s.accept(_ramp(4), obs_time=0.1, now=0.5) is None and s.stale == 1
    assert s.active.start == 0.0 and s.request_due(0.5)  # the chunk in flight goes on


def test_requests_follow_the_chunk_time_base():
    s = ChunkScheduler("replace", DT, exec_steps=5)
    s.begin(0.5)
    s.accept(_ramp(10), obs_time=0.5, now=0.5)
    s.begin(1.0)
    s.accept(_ramp(10), obs_time=1.0, now=1.2)
    assert not s.request_due(1.49)
    assert s.request_due(1.5)  # exec_steps after the observation, whatever the delay
    s.begin(1.5)
    s.cancel()
    assert s.request_due(1.5)
    s.reset()
    assert s.active is None and s.request_due(0.0)


def test_replace_switches_to_new_chunk_at_once():
    s = ChunkScheduler("replace", DT, exec_steps=5)
    s.begin(0.0)
    s.accept(_ramp(10, base=0.0), 0.0, 0.0)
    s.begin(0.5)
    s.accept(_ramp(10, base=100.0), 0.5, 0.7)
    assert s.target(0.7)[0] == 102  # slot 2 of the new chunk


def test_blend_weights_old_chunk_over_the_overlap():
    s = ChunkScheduler("blend", DT, exec_steps=5)
    s.begin(0.0)
    s.accept(_ramp(10, base=0.0), 0.0, 0.0)
    s.begin(0.5)
    merged = s.accept(_ramp(10, base=100.0), 0.5, 0.7)  # delay 2 slots; old chunk covers new slots 0..4
    w = soft_mask(10, frozen=2, overlap=5)
    old = np.arange(5, 10, dtype=float)
    new = 100.0 + np.arange(10)
    expect = np.concatenate([w[:5] * old + (1 - w[:5]) * new[:5], new[5:]])
    assert np.allclose(merged.actions[:, 0], expect)
    # the seam: the first executed target moves only part of the way (replace would jump 7 -> 102) ...
    assert abs(s.target(0.7)[0] - 7.0) < 0.6 * (102.0 - 7.0)
    # ... then the old chunk's weight decays to 0 where it ends
    assert s.target(1.0)[0] == 105.0


def test_blend_without_overlap_is_the_new_chunk():
    s = ChunkScheduler("blend", DT)
    s.begin(0.0)
    s.accept(_ramp(3), 0.0, 0.0)
    s.begin(0.5)
    assert np.allclose(s.accept(_ramp(3, base=9.0), 0.5, 0.5).actions, _ramp(3, base=9.0))


def test_rtc_prefix_is_the_committed_old_chunk_on_the_new_time_base():
    s = ChunkScheduler("rtc", DT, exec_steps=5)
    assert s.begin(-0.5) is None  # nothing in flight yet
    s.accept(_ramp(10, base=-5.0), -0.5, -0.5)
    s.begin(0.0)
    s.accept(_ramp(10), 0.0, 0.2)  # measured delay 200 ms -> 2 slots frozen next time
    assert s.request_due(0.5)
    p = s.begin(0.5)
    assert isinstance(p, Prefix)
    assert np.allclose(p.actions[:, 0], [5, 6, 7, 8, 9])  # old slots due at 0.5, 0.6, ...
    assert np.allclose(p.weights, soft_mask(10, 2, 5)[:5]) and p.frozen == 2
    new = s.accept(_ramp(10, base=50.0), 0.5, 0.7)
    assert np.allclose(new.actions, _ramp(10, base=50.0))  # the policy inpainted it; the scheduler replaces


def test_modes_and_arguments_are_checked():
    with pytest.raises(ValueError):
        ChunkScheduler("smooth")
    with pytest.raises(ValueError):
        ChunkScheduler(time_base="wall")
    with pytest.raises(ValueError):
        Chunk(np.full((2, J), np.nan), 0.0)


def test_observation_gate():
    g = ObservationGate(max_age_s=0.5, settle_s=0.15)
    assert g.accepts(10.2, 10.3, episode_start=10.0)
    assert not g.accepts(10.1, 10.3, episode_start=10.0)  # rendered before the reset settled
    assert not g.accepts(10.2, 10.8, episode_start=10.0)  # stale


def test_observation_gate_waits_for_the_frame_due_with_the_request():
    g = ObservationGate(max_age_s=0.5, settle_s=0.0, wait_s=0.1)
    assert not g.accepts(1.4, 1.502, episode_start=0.0, due=1.5)  # the frame stamped 1.5 is still in transit
    assert g.accepts(1.5, 1.505, episode_start=0.0, due=1.5)
    assert g.accepts(1.4, 1.6, episode_start=0.0, due=1.5)  # it never came: act on the older one
    assert g.accepts(1.4, 1.41, episode_start=0.0)  # nothing in flight: any fresh observation


# -- RTC guidance ------------------------------------------------------------------------------------------------
def _gaussian_field(sigma: float = 0.5):
    """Exact flow field for data ~ N(0, sigma^2 I): x1_hat = t s^2 / (t^2 s^2 + (1-t)^2) x_t, dims independent."""

    def field(cond, x, t):
        tt = t[:, None]
        x1_hat = tt * sigma**2 / (tt**2 * sigma**2 + (1 - tt) ** 2) * x
        return (x1_hat - x) / (1 - tt)

    return field


def test_guidance_weight_clip():
    assert guidance_weight(0.0) == 5.0 and guidance_weight(0.5, beta=100.0) == pytest.approx(2.0)


def test_guided_sampler_inpaints_weighted_dims_only():
    field = _gaussian_field()
    noise = torch.randn(4, 6, generator=torch.Generator().manual_seed(0))
    cond = torch.zeros(4, 1)
    y = torch.full((6,), 0.4)
    w = torch.tensor([1.0, 1.0, 0.5, 0.0, 0.0, 0.0])
    free = sample_euler(field, cond, 6, steps=10, noise=noise.clone())
    guided = sample_guided(field, cond, y, w, steps=10, noise=noise.clone())
    assert torch.allclose(guided[:, 3:], free[:, 3:], atol=1e-6)  # unweighted dims untouched
    assert (guided[:, :2] - 0.4).abs().mean() < 0.5 * (free[:, :2] - 0.4).abs().mean()
    assert torch.allclose(sample_guided(field, cond, y, torch.zeros(6), noise=noise.clone()), free, atol=1e-6)


def test_vla_policy_prefix_is_optional_and_guides():
    torch.manual_seed(0)
    cfg = PolicyConfig(image_size=32, horizon=4, cond_dim=32, hidden=64, vision_channels=8, text_dim=16)
    model = FlowVLA(cfg)
    obs = {"image": np.full((32, 32, 3), 90, np.uint8), "qpos": np.zeros(14, np.float32), "instruction": "pick"}
    a = VLAPolicy(model, seed=3).infer(obs)
    b = VLAPolicy(model, seed=3).infer(obs, prefix=None)
    assert a.shape == (4, 14) and np.array_equal(a, b)  # default behaviour unchanged
    target = a[:2] + 0.2
    guided = VLAPolicy(model, seed=3).infer(obs, prefix=Prefix(target, np.ones(2)))
    assert guided.shape == (4, 14) and np.isfinite(guided).all()
    assert np.abs(guided[:2] - target).mean() < np.abs(a[:2] - target).mean()
    with pytest.raises(ValueError):
        VLAPolicy(model).infer(obs, prefix=Prefix(np.zeros((2, 5)), np.ones(2)))
