"""Wrist cameras: the camera contract, the sim's side-by-side views, bags with one topic per camera, view selection,
the multi-view FlowVLA, and the shape checks of ChunkBuffer and VLAPolicy."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lwd.data.reader import read_episode
from lwd.data.schema import CONTROL_DT_NS, N_JOINTS, SOURCE_EXPERT, EpisodeMeta, EpisodeSteps, select_views
from lwd.data.steps_bag import write_steps_bag
from lwd.policy.inference import VLAPolicy
from lwd.policy.model import FlowVLA, PolicyConfig, tokenize
from lwd.rl.dataset import ChunkBuffer
from lwd.robot import CAMERAS, camera_topic, check_cameras

S = 16  # per-camera side for data/policy tests
SIM_S = 32  # per-camera side for rendering tests
ALL = ("overview", "left_wrist", "right_wrist")
SMALL = dict(image_size=S, horizon=4, cond_dim=32, hidden=64, vision_channels=8, text_dim=16)
TOPICS = {"overview": "camera/image_raw", "left_wrist": "left_wrist/image_raw", "right_wrist": "right_wrist/image_raw"}


def _steps(t: int = 5, cameras=("overview",), side: int = S, seed: int = 0) -> EpisodeSteps:
    rng = np.random.default_rng(seed)
    meta = EpisodeMeta(episode_id=f"ep{seed}", robot="r0", task="pick_place", instruction="put the can in the bin",
                       seed=seed, source="demo", outcome="success")
    return EpisodeSteps(images=rng.integers(0, 256, (t, side, side * len(cameras), 3), dtype=np.uint8),
                        qpos=rng.normal(size=(t, N_JOINTS)).astype(np.float32),
                        actions=rng.normal(size=(t, N_JOINTS)).astype(np.float32),
                        source=np.full(t, SOURCE_EXPERT, np.int8), policy_version=np.full(t, -1, np.int32),
                        t_ns=5 * 10**9 + CONTROL_DT_NS * np.arange(t), meta=meta, cameras=cameras)


def _view(img: np.ndarray, k: int, side: int) -> np.ndarray:
    return img[..., :, k * side:(k + 1) * side, :]


# ------------------------------------------------------------------ contract (lwd.robot)
def test_camera_names_and_topics():
    assert CAMERAS == ALL
    for cam, topic in TOPICS.items():
        assert camera_topic(cam) == topic
    for bad in ("wrist", "Overview", "", "camera"):
        with pytest.raises(ValueError):
            camera_topic(bad)


@pytest.mark.parametrize("cams", [("overview",), ("left_wrist",), ("overview", "right_wrist"), ALL, list(ALL)])
def test_check_cameras_accepts(cams):
    assert check_cameras(cams) == tuple(cams)


@pytest.mark.parametrize("cams", [(), ("overview", "overview"), ("left_wrist", "overview"),
                                  ("right_wrist", "left_wrist"), ("overview", "head"), ("top",)])
def test_check_cameras_rejects(cams):
    with pytest.raises(ValueError):
        check_cameras(cams)


# ------------------------------------------------------------------ simulation
@pytest.fixture(scope="module")
def worlds():
    from lwd.sim.world import SimWorld

    with SimWorld(image_size=SIM_S) as one, SimWorld(image_size=SIM_S, cameras=ALL) as three:
        yield one, three


def test_sim_world_rejects_bad_cameras():
    from lwd.sim.world import SimWorld

    for bad in ((), ("overview", "overview"), ("right_wrist", "overview"), ("head",)):
        with pytest.raises(ValueError):
            SimWorld(image_size=8, render=False, cameras=bad)


def test_render_views_side_by_side(worlds):
    one, three = worlds
    assert one.cameras == ("overview",) and three.cameras == ALL
    one.reset("pick_place", 3)
    three.reset("pick_place", 3)
    img1, img3 = one.render(), three.render()
    assert img1.shape == (SIM_S, SIM_S, 3)
    assert img3.shape == (SIM_S, 3 * SIM_S, 3) and img3.dtype == np.uint8
    np.testing.assert_array_equal(_view(img3, 0, SIM_S), img1)  # the overview first, unchanged
    views = [_view(img3, k, SIM_S).astype(int) for k in range(3)]
    assert all(v.std() > 5 for v in views)  # each view shows something
    assert np.abs(views[1] - views[0]).mean() > 5
    assert np.abs(views[2] - views[0]).mean() > 5
    assert np.abs(views[1] - views[2]).mean() > 2
    # cameras have no dynamics: same state, before and after stepping
    np.testing.assert_array_equal(three.get_state(), one.get_state())
    target = one.home_qpos.copy()
    target[[0, 7]] += 0.3
    for _ in range(3):
        one.apply(target)
        three.apply(target)
    np.testing.assert_array_equal(three.get_state(), one.get_state())
    np.testing.assert_array_equal(_view(three.render(), 0, SIM_S), one.render())


def test_wrist_cameras_ride_on_the_hands(worlds):
    _, three = worlds
    m = three.model
    assert m.body(m.cam_bodyid[m.camera("left_wrist").id]).name == "left_hand"
    assert m.body(m.cam_bodyid[m.camera("right_wrist").id]).name == "right_hand"

    def after(dq: float) -> np.ndarray:
        three.reset("pick_place", 0)
        q = three.home_qpos.copy()
        q[0] += dq  # left waist
        for _ in range(4):
            three.apply(q)
        return three.render().astype(int)

    held, moved = after(0.0), after(0.5)
    diff = [np.abs(_view(moved, k, SIM_S) - _view(held, k, SIM_S)).mean() for k in range(3)]
    assert diff[1] > 3.0, diff  # the left wrist camera turned with the arm
    assert diff[1] > 2 * diff[0] and diff[1] > 2 * diff[2], diff  # far more than the static and the other hand's view


def test_rollout_records_all_views(worlds):
    from lwd.sim.rollout import obs

    _, three = worlds
    three.reset("pick_place", 1)
    o = obs(three)
    assert o["image"].shape == (SIM_S, 3 * SIM_S, 3)


# ------------------------------------------------------------------ bags
def _bag_topics(path) -> dict[str, str]:
    from rosbags.highlevel import AnyReader

    with AnyReader([path]) as reader:
        return {c.topic.lstrip("/"): c.msgtype for c in reader.connections}


def test_bag_roundtrip_three_cameras(tmp_path):
    steps = _steps(t=6, cameras=ALL, seed=1)
    write_steps_bag(tmp_path / "ep", steps)
    topics = _bag_topics(tmp_path / "ep")
    for topic in TOPICS.values():
        assert topics.get(topic) == "sensor_msgs/msg/Image", topics
    out = read_episode(tmp_path / "ep")
    assert out.cameras == ALL
    assert out.images.shape == (6, S, 3 * S, 3)
    np.testing.assert_array_equal(out.images, steps.images)
    np.testing.assert_array_equal(out.actions, steps.actions)
    np.testing.assert_array_equal(out.views(("left_wrist",)), _view(steps.images, 1, S))


def test_bag_roundtrip_subset_of_cameras(tmp_path):
    steps = _steps(t=4, cameras=("overview", "right_wrist"), seed=2)
    write_steps_bag(tmp_path / "ep", steps)
    topics = _bag_topics(tmp_path / "ep")
    assert "right_wrist/image_raw" in topics and "left_wrist/image_raw" not in topics
    out = read_episode(tmp_path / "ep")
    assert out.cameras == ("overview", "right_wrist")
    np.testing.assert_array_equal(out.images, steps.images)


def test_bag_roundtrip_overview_only(tmp_path):
    steps = _steps(t=4, seed=3)
    assert steps.cameras == ("overview",)
    write_steps_bag(tmp_path / "ep", steps)
    topics = _bag_topics(tmp_path / "ep")
    assert "camera/image_raw" in topics
    assert "left_wrist/image_raw" not in topics and "right_wrist/image_raw" not in topics
    out = read_episode(tmp_path / "ep")
    assert out.cameras == ("overview",) and out.images.shape == (4, S, S, 3)
    np.testing.assert_array_equal(out.images, steps.images)


def test_write_rejects_images_that_do_not_split(tmp_path):
    steps = _steps(t=3, cameras=ALL)
    steps.images = steps.images[:, :, :2 * S]  # two views' worth for three cameras
    with pytest.raises(ValueError):
        write_steps_bag(tmp_path / "ep", steps)


def test_episode_steps_validates_cameras():
    for bad in ((), ("left_wrist", "overview"), ("overview", "nose")):
        with pytest.raises(ValueError):
            _steps(t=2, cameras=bad)


# ------------------------------------------------------------------ view selection
def test_select_views_slices():
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (3, S, 3 * S, 3), dtype=np.uint8)
    ov, lw, rw = (_view(imgs, k, S) for k in range(3))
    np.testing.assert_array_equal(select_views(imgs, ALL, ("overview",)), ov)
    np.testing.assert_array_equal(select_views(imgs, ALL, ("left_wrist",)), lw)
    np.testing.assert_array_equal(select_views(imgs, ALL, ("right_wrist",)), rw)
    np.testing.assert_array_equal(select_views(imgs, ALL, ("overview", "right_wrist")), np.concatenate([ov, rw], 2))
    np.testing.assert_array_equal(select_views(imgs, ALL, ALL), imgs)
    np.testing.assert_array_equal(select_views(imgs[0], ALL, ("left_wrist",)), lw[0])  # one image, no batch axis
    two = np.concatenate([ov, rw], 2)
    np.testing.assert_array_equal(select_views(two, ("overview", "right_wrist"), ("right_wrist",)), rw)


def test_select_views_rejects():
    imgs = np.zeros((2, S, 2 * S, 3), np.uint8)
    with pytest.raises(ValueError):  # a camera the episode lacks
        select_views(imgs, ("overview", "left_wrist"), ("right_wrist",))
    with pytest.raises(ValueError):
        select_views(imgs[:, :, :S], ("overview",), ALL)
    with pytest.raises(ValueError):  # the width is not len(have) views
        select_views(imgs, ALL, ("overview",))
    with pytest.raises(ValueError):  # out of order
        select_views(imgs, ("overview", "left_wrist"), ("left_wrist", "overview"))


# ------------------------------------------------------------------ policy
def _tokens(cfg: PolicyConfig, b: int) -> torch.Tensor:
    return torch.from_numpy(np.stack([tokenize("put the red can on the shelf", cfg.vocab_size, cfg.max_tokens)] * b))


def test_policy_config_cameras():
    cfg = PolicyConfig(**SMALL)
    assert cfg.cameras == ("overview",) and cfg.image_shape == (S, S, 3)
    cfg3 = PolicyConfig(**SMALL, cameras=ALL)
    assert cfg3.image_shape == (S, 3 * S, 3)
    d = cfg3.to_dict()
    back = PolicyConfig.from_dict(d)
    assert back.cameras == ALL and back == cfg3
    import json

    assert PolicyConfig.from_dict(json.loads(json.dumps(d))).cameras == ALL  # lists from JSON become tuples
    old = {k: v for k, v in cfg.to_dict().items() if k != "cameras"}  # a config saved before cameras existed
    assert PolicyConfig.from_dict(old).cameras == ("overview",)
    for bad in (["overview", "head"], ["left_wrist", "overview"], []):
        with pytest.raises(ValueError):
            PolicyConfig.from_dict({**d, "cameras": bad})
    with pytest.raises(ValueError):
        FlowVLA(PolicyConfig(**SMALL, cameras=("head",)))


def test_flowvla_encodes_every_view():
    torch.manual_seed(0)
    cfg = PolicyConfig(**SMALL, cameras=ALL)
    model = FlowVLA(cfg).eval()
    g = torch.Generator().manual_seed(0)
    b = 2
    img = torch.randint(0, 255, (b, S, 3 * S, 3), dtype=torch.uint8, generator=g)
    q, tok = torch.randn(b, N_JOINTS, generator=g), _tokens(cfg, b)
    with torch.no_grad():
        cond = model.encode(img, q, tok)
        assert cond.shape == (b, cfg.cond_dim) and torch.isfinite(cond).all()
        for k in range(3):  # each view is read
            other = img.clone()
            other[:, :, k * S:(k + 1) * S] = 255 - other[:, :, k * S:(k + 1) * S]
            changed = model.encode(other, q, tok)
            assert not torch.allclose(changed, cond, atol=1e-5), k
        # the fuse MLP sees the encoder's features of each square view, concatenated in camera order
        seen = {}
        hook = model.fuse.register_forward_hook(lambda mod, inp, out: seen.setdefault("x", inp[0]))
        model.encode(img, q, tok)
        hook.remove()
        text = model.text(tok)
        per_view = [model.vision(img[:, :, k * S:(k + 1) * S].permute(0, 3, 1, 2).float() / 255.0, text)
                    for k in range(3)]
        vis = torch.cat(per_view, dim=1)
        assert seen["x"].shape[1] == 3 * model.vision.out_dim + cfg.text_dim + 64
        torch.testing.assert_close(seen["x"][:, :vis.shape[1]], vis, rtol=1e-5, atol=1e-5)


def test_flowvla_views_are_per_sample():
    """Changing one sample's wrist view changes only that sample's cond (views are not mixed across the batch)."""
    torch.manual_seed(1)
    cfg = PolicyConfig(**SMALL, cameras=ALL)
    model = FlowVLA(cfg).eval()
    img = torch.randint(0, 255, (3, S, 3 * S, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    q, tok = torch.zeros(3, N_JOINTS), _tokens(cfg, 3)
    with torch.no_grad():
        cond = model.encode(img, q, tok)
        other = img.clone()
        other[1, :, 2 * S:] = 0  # sample 1's right wrist goes dark
        changed = model.encode(other, q, tok)
    assert not torch.allclose(changed[1], cond[1], atol=1e-5)
    torch.testing.assert_close(changed[[0, 2]], cond[[0, 2]])


def test_fuse_input_grows_with_views():
    one, three = FlowVLA(PolicyConfig(**SMALL)), FlowVLA(PolicyConfig(**SMALL, cameras=ALL))
    out_dim = one.vision.out_dim
    assert three.fuse[0].in_features - one.fuse[0].in_features == 2 * out_dim
    assert sum(p.numel() for p in three.vision.parameters()) == sum(p.numel() for p in one.vision.parameters())


def test_policy_checkpoint_keeps_cameras(tmp_path):
    from lwd.policy.checkpoint import load_checkpoint, save_checkpoint

    model = FlowVLA(PolicyConfig(**SMALL, cameras=("overview", "left_wrist")))
    ck = load_checkpoint(save_checkpoint(tmp_path, model, 1))
    assert ck.model.cfg.cameras == ("overview", "left_wrist") and ck.model.n_views == 2


# ------------------------------------------------------------------ ChunkBuffer
def test_chunk_buffer_keeps_the_policys_views():
    ep = _steps(t=6, cameras=ALL, seed=4)
    buf = ChunkBuffer(PolicyConfig(**SMALL))
    assert buf.add_episode(ep) == 6
    assert len(buf) == 6
    np.testing.assert_array_equal(buf._image, _view(ep.images, 0, S))
    b = buf.gather(np.array([0, 3]))
    assert tuple(b.image.shape) == (2, S, S, 3)

    wrist = ChunkBuffer(PolicyConfig(**SMALL, cameras=("overview", "right_wrist")))
    wrist.add_episode(ep)
    wrist._build()
    np.testing.assert_array_equal(wrist._image, np.concatenate([_view(ep.images, 0, S), _view(ep.images, 2, S)], 2))

    full = ChunkBuffer(PolicyConfig(**SMALL, cameras=ALL))
    full.add_episode(ep)
    full._build()
    np.testing.assert_array_equal(full._image, ep.images)


def test_chunk_buffer_rejects_missing_views():
    buf = ChunkBuffer(PolicyConfig(**SMALL, cameras=ALL))
    with pytest.raises(ValueError):
        buf.add_episode(_steps(t=4, seed=5))  # overview only
    with pytest.raises(ValueError):
        buf.add_episode(_steps(t=4, cameras=("overview", "left_wrist"), seed=5))
    with pytest.raises(ValueError):  # right cameras, wrong size
        buf.add_episode(_steps(t=4, cameras=ALL, side=S // 2, seed=5))
    assert buf.num_episodes == 0


def test_chunk_buffer_from_bag_trains_a_three_camera_model(tmp_path):
    """Bag -> EpisodeSteps -> ChunkBuffer -> FlowVLA loss, end to end with three cameras."""
    steps = _steps(t=8, cameras=ALL, seed=6)
    write_steps_bag(tmp_path / "ep", steps)
    cfg = PolicyConfig(**SMALL, cameras=ALL)
    buf = ChunkBuffer(cfg)
    buf.add_episode(read_episode(tmp_path / "ep"))
    b = buf.gather(np.arange(4))
    model = FlowVLA(cfg)
    loss = model.loss(model.encode(b.image, b.qpos, b.tokens), b.act)
    assert torch.isfinite(loss)


# ------------------------------------------------------------------ inference
def test_vla_policy_checks_image_shape():
    cfg = PolicyConfig(**SMALL, cameras=ALL)
    policy = VLAPolicy(FlowVLA(cfg), seed=0)
    obs = {"qpos": np.zeros(N_JOINTS, np.float32), "instruction": "restock"}
    chunk = policy.infer({**obs, "image": np.zeros((S, 3 * S, 3), np.uint8)})
    assert chunk.shape == (cfg.horizon, N_JOINTS) and np.isfinite(chunk).all()
    for shape in ((S, S, 3), (S, 2 * S, 3), (3 * S, S, 3), (S, 3 * S, 4)):
        with pytest.raises(ValueError):
            policy.infer({**obs, "image": np.zeros(shape, np.uint8)})
    single = VLAPolicy(FlowVLA(PolicyConfig(**SMALL)), seed=0)
    with pytest.raises(ValueError):
        single.infer({**obs, "image": np.zeros((S, 3 * S, 3), np.uint8)})
    assert single.infer({**obs, "image": np.zeros((S, S, 3), np.uint8)}).shape == (cfg.horizon, N_JOINTS)


def test_random_shift_moves_each_view_on_its_own():
    from lwd.rl.base import random_shift

    img = torch.zeros(4, 8, 24, 3, dtype=torch.uint8)
    img[:, :, 8:16] = 100  # only the middle view is lit
    out = random_shift(img, pad=3, generator=torch.Generator().manual_seed(0))
    assert out.shape == img.shape
    # edge-replicated shifts keep each view's own pixels: nothing bleeds across a view border
    assert out[:, :, :8].max() == 0 and out[:, :, 16:].max() == 0 and out[:, :, 8:16].min() == 100
    assert torch.equal(random_shift(img, pad=0), img)


def test_hot_swap_rejects_other_cameras(tmp_path):
    from lwd.policy.checkpoint import CheckpointError, load_checkpoint, save_checkpoint

    path = save_checkpoint(tmp_path, FlowVLA(PolicyConfig(**SMALL, cameras=CAMERAS)), 1)
    with pytest.raises(CheckpointError, match="cameras"):
        load_checkpoint(path, expected_config=PolicyConfig(**SMALL))


def test_demo_launches_the_cameras_v0_sees(tmp_path):
    from lwd.app.demo import _policy_cameras
    from lwd.policy.checkpoint import save_checkpoint

    save_checkpoint(tmp_path / "policies", FlowVLA(PolicyConfig(**SMALL, cameras=CAMERAS)), 0)
    assert _policy_cameras(tmp_path) == CAMERAS
