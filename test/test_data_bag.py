"""Episode bags: write -> read round trips, raw CDR path, trajectory resampling, writer guards, recovery."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lwd.data import (
    CONTROL_DT_NS,
    N_JOINTS,
    SOURCE_EXPERT,
    SOURCE_POLICY,
    SOURCE_TELEOP,
    BagError,
    BagExistsError,
    EpisodeBagWriter,
    EpisodeMeta,
    EpisodeSteps,
    IncompleteBagError,
    read_episode,
    read_meta,
    recover_bag,
    write_steps_bag,
)
from lwd.data.msgs import image_msg, joint_state_msg, serialize, string_msg, trajectory_msg
from lwd.data.schema import event_json

SRC = str(Path(__file__).resolve().parents[1] / "src")


def make_steps(T=40, S=16, seed=0, episode_id="ep0", robot="r0", outcome="success", sources=None, t0=5 * 10**9):
    rng = np.random.default_rng(seed)
    source = np.full(T, SOURCE_EXPERT, np.int8) if sources is None else np.asarray(sources, np.int8)
    version = np.where(source == SOURCE_POLICY, 7, -1).astype(np.int32)
    meta = EpisodeMeta(episode_id=episode_id, robot=robot, task="pick_place", instruction="put the can in the bin",
                       seed=seed, source="demo" if sources is None else "fleet", outcome=outcome)
    return EpisodeSteps(images=rng.integers(0, 256, (T, S, S, 3), dtype=np.uint8),
                        qpos=rng.normal(size=(T, N_JOINTS)).astype(np.float32),
                        actions=rng.normal(size=(T, N_JOINTS)).astype(np.float32),
                        source=source, policy_version=version, t_ns=t0 + CONTROL_DT_NS * np.arange(T), meta=meta)


def assert_same_steps(a: EpisodeSteps, b: EpisodeSteps):
    assert len(a) == len(b)
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.qpos, b.qpos)
    np.testing.assert_array_equal(a.actions, b.actions)
    np.testing.assert_array_equal(a.source, b.source)
    np.testing.assert_array_equal(a.policy_version, b.policy_version)
    np.testing.assert_array_equal(a.t_ns, b.t_ns)


def test_steps_roundtrip(tmp_path):
    sources = [SOURCE_POLICY] * 10 + [SOURCE_TELEOP] * 5 + [SOURCE_POLICY] * 10 + [SOURCE_TELEOP] * 5
    steps = make_steps(T=30, sources=sources)
    path = tmp_path / "r0" / "ep0"
    meta = write_steps_bag(path, steps)
    assert (path / "metadata.yaml").exists() and (path / "episode.json").exists()
    out = read_episode(path)
    assert_same_steps(out, steps)
    assert out.success and out.meta.outcome == "success"
    assert out.meta.policy_versions == [7]
    t0 = int(steps.t_ns[0])
    assert out.meta.intervention_segments == [[t0 + 10 * CONTROL_DT_NS, t0 + 15 * CONTROL_DT_NS],
                                              [t0 + 25 * CONTROL_DT_NS, t0 + 30 * CONTROL_DT_NS]]
    assert out.meta.num_interventions == 2 and meta == out.meta
    assert out.intervention.sum() == 10
    # metadata is also in the bag's custom data: used when episode.json is absent
    (path / "episode.json").unlink()
    assert read_meta(path) == meta
    assert_same_steps(read_episode(path), steps)
    from lwd.data.bag import CUSTOM_DATA_KEY, read_custom_data

    assert EpisodeMeta.from_json(read_custom_data(path)[CUSTOM_DATA_KEY]) == meta


def test_bag_module_keeps_its_public_names():
    """lwd.data.bag is split into one module per job; the old imports keep working."""
    from lwd.data import bag, events, metadata, reader, recovery, steps_bag, writer

    assert bag.EpisodeBagWriter is writer.EpisodeBagWriter and bag.read_episode is reader.read_episode
    assert bag.recover_bag is recovery.recover_bag and bag.write_steps_bag is steps_bag.write_steps_bag
    assert bag.read_meta is metadata.read_meta and bag.canonical_topic is events.canonical_topic
    assert bag.canonical_topic("/robot0/joint_states") == "joint_states"
    assert bag.SIDECAR == "episode.json"


def test_demo_roundtrip_and_failure(tmp_path):
    steps = make_steps(T=12, outcome="failure")
    write_steps_bag(tmp_path / "ep", steps)
    out = read_episode(tmp_path / "ep")
    assert_same_steps(out, steps)
    assert not out.success and (out.source == SOURCE_EXPERT).all() and (out.policy_version == -1).all()
    assert out.meta.source == "demo"


def _fleet_stream(w: EpisodeBagWriter, t0: int):
    """A fleet-like stream written as raw CDR: joint_states 50 Hz (+7 ms), camera 30 Hz (+1 ms), a 5-point
    policy chunk, a teleop takeover, then a 2-point chunk that runs out (hold last point)."""
    ms = 1_000_000
    raw = lambda topic, t, msg: w.write_raw(topic, t, serialize(msg))  # noqa: E731
    raw("episode/event", t0, string_msg(event_json("start", episode_id="ep9", robot="r3", task="stack",
                                                    instruction="stack the boxes", seed=11, policy_version=4)))
    raw("task/instruction", t0, string_msg("stack the boxes"))
    cmds = [  # (receipt time, frame_id, points)
        (t0 + 50 * ms, "policy/v4", np.arange(5)[:, None] + 100.0 + np.zeros((5, N_JOINTS))),
        (t0 + 320 * ms, "teleop", np.full((1, N_JOINTS), 200.0)),
        (t0 + 420 * ms, "teleop", np.full((1, N_JOINTS), 201.0)),
        (t0 + 600 * ms, "policy/v5", np.arange(2)[:, None] + 300.0 + np.zeros((2, N_JOINTS))),
    ]
    events = [(t0 + 320 * ms, "takeover"), (t0 + 600 * ms, "release")]
    msgs = []
    for i in range(50):
        t = t0 + 7 * ms + 20 * ms * i
        msgs.append((t, "joint_states", joint_state_msg(t, np.full(N_JOINTS, float(i)))))
    for i in range(30):
        t = t0 + ms + 33 * ms * i
        msgs.append((t, "camera/image_raw", image_msg(t, np.full((8, 8, 3), i, np.uint8))))
    for t, fid, pts in cmds:
        msgs.append((t, "cmd/joint_trajectory", trajectory_msg(t, pts, fid)))
    for t, ev in events:
        msgs.append((t, "episode/event", string_msg(event_json(ev))))
    for t, topic, msg in sorted(msgs, key=lambda x: x[0]):
        raw(topic, t, msg)
    raw("episode/event", t0 + 1000 * ms, string_msg(event_json("end", outcome="failure")))


def test_raw_path_and_chunk_resampling(tmp_path):
    t0 = 20 * 10**9
    path = tmp_path / "r3" / "ep9"
    with EpisodeBagWriter(path, EpisodeMeta(episode_id="ep9", robot="r3")) as w:
        _fleet_stream(w, t0)
    meta = json.loads((path / "episode.json").read_text())
    assert meta["outcome"] == "failure" and meta["policy_versions"] == [4, 5] and meta["seed"] == 11
    assert meta["intervention_segments"] == [[t0 + 320_000_000, t0 + 600_000_000]]
    out = read_episode(path)
    # grid t0 + k*100ms for k < 10; k = 0 has no command yet -> dropped
    k = np.arange(1, 10)
    np.testing.assert_array_equal(out.t_ns, t0 + k * CONTROL_DT_NS)
    a = out.actions[:, 0]
    # k=1..3: chunk received at 50 ms, elapsed 50/150/250 ms -> points 0, 1, 2
    # k=4: teleop@320; k=5: teleop@420; k=6: chunk@600 e=0 -> p0; k=7 -> p1; k=8, 9 -> hold p1
    np.testing.assert_array_equal(a, [100, 101, 102, 200, 201, 300, 301, 301, 301])
    np.testing.assert_array_equal(out.source, [0, 0, 0, 1, 1, 0, 0, 0, 0])
    np.testing.assert_array_equal(out.policy_version, [4, 4, 4, -1, -1, 5, 5, 5, 5])
    # qpos: latest joint_states (t0 + 7 + 20 i ms) <= t_k -> i = floor((100k - 7) / 20)
    np.testing.assert_array_equal(out.qpos[:, 0], (100 * k - 7) // 20)
    # image: latest frame (t0 + 1 + 33 i ms) <= t_k
    np.testing.assert_array_equal(out.images[:, 0, 0, 0], (100 * k - 1) // 33)
    assert out.images.shape == (9, 8, 8, 3) and out.qpos.dtype == np.float32


def test_namespaced_topics_are_canonicalized(tmp_path):
    steps = make_steps(T=5)
    path = tmp_path / "ep"
    with EpisodeBagWriter(path, steps.meta) as w:
        t0 = int(steps.t_ns[0])
        w.write_msg("/robot7/episode/event", t0, string_msg(event_json("start", episode_id="ep0", robot="r0")))
        for k in range(5):
            t = int(steps.t_ns[k])
            w.write_msg("/robot7/camera/image_raw", t, image_msg(t, steps.images[k]))
            w.write_msg("/robot7/joint_states", t, joint_state_msg(t, steps.qpos[k]))
            w.write_msg("/robot7/cmd/joint_trajectory", t, trajectory_msg(t, steps.actions[k:k + 1], "expert"))
        w.write_msg("/robot7/episode/event", t0 + 5 * CONTROL_DT_NS, string_msg(event_json("end", outcome="success")))
    assert_same_steps(read_episode(path), steps)


def test_joint_names_reordered_as_the_nodes_do(tmp_path):
    """Recorded joint_states/commands in another joint order read back in JOINT_NAMES order (lwd.control.health.
    joint_order): extra joints in joint_states are ignored, a command naming a joint the arm lacks is skipped."""
    from lwd.data.schema import JOINT_NAMES

    steps = make_steps(T=6)
    perm = np.arange(N_JOINTS)[::-1]  # recorded order: JOINT_NAMES reversed
    names = [JOINT_NAMES[i] for i in perm]
    path = tmp_path / "ep"
    with EpisodeBagWriter(path, steps.meta) as w:
        t0 = int(steps.t_ns[0])
        w.write_msg("episode/event", t0, string_msg(event_json("start", episode_id="ep0", robot="r0")))
        for k in range(6):
            t = int(steps.t_ns[k])
            w.write_msg("camera/image_raw", t, image_msg(t, steps.images[k]))
            w.write_msg("joint_states", t, joint_state_msg(t, [*steps.qpos[k][perm], 99.0],
                                                           names=[*names, "head_pan"]))
            if k != 4:
                w.write_msg("cmd/joint_trajectory", t, trajectory_msg(t, steps.actions[k:k + 1, perm], "expert",
                                                                      names=names))
            if k == 3:  # a command with an unknown joint in place of one of the arm's: skipped, step 3's holds
                bad = [*names[:-1], "head_pan"]
                w.write_msg("cmd/joint_trajectory", t + 1, trajectory_msg(t + 1, np.zeros((1, N_JOINTS)), "expert",
                                                                          names=bad))
        w.write_msg("episode/event", t0 + 6 * CONTROL_DT_NS, string_msg(event_json("end", outcome="success")))
    out = read_episode(path)
    np.testing.assert_array_equal(out.qpos, steps.qpos)
    expected = steps.actions.copy()
    expected[4] = steps.actions[3]
    np.testing.assert_array_equal(out.actions, expected)


def test_writer_guards(tmp_path):
    path = tmp_path / "ep"
    path.mkdir()
    with pytest.raises(BagExistsError, match=str(path)):
        EpisodeBagWriter(path)
    path2 = tmp_path / "ep2"
    w = EpisodeBagWriter(path2, EpisodeMeta(episode_id="ep2", robot="r0"))
    with pytest.raises(BagError, match="not open"):
        w.write_raw("joint_states", 1, serialize(joint_state_msg(1, np.zeros(N_JOINTS))))
    w.open()
    with pytest.raises(BagError, match="unknown topic"):
        w.add_topic("no/such/topic")
    with pytest.raises(BagError, match="by contract"):
        w.add_topic("joint_states", "std_msgs/msg/String")
    w.add_topic("debug/text", "std_msgs/msg/String")
    assert w.add_topic("debug/text", "std_msgs/msg/String") is not None  # idempotent
    with pytest.raises(BagError, match="already added"):
        w.add_topic("debug/text", "std_msgs/msg/Bool")
    with pytest.raises(BagError, match="not a valid"):
        w.write_raw("episode/event", 1, b"\x00\x01garbage")
    w.write_msg("joint_states", 1, joint_state_msg(1, np.zeros(N_JOINTS)))
    meta = w.finish()
    assert meta.outcome == "aborted" and (path2 / "episode.json").exists()
    with pytest.raises(BagError, match="closed"):
        w.write_msg("joint_states", 2, joint_state_msg(2, np.zeros(N_JOINTS)))
    with pytest.raises(BagError):
        w.finish()
    with pytest.raises(BagExistsError):
        EpisodeBagWriter(path2)


def test_exception_in_context_keeps_data_as_aborted(tmp_path):
    path = tmp_path / "ep"
    with pytest.raises(RuntimeError):
        with EpisodeBagWriter(path, EpisodeMeta(episode_id="ep", robot="r0", outcome="success")) as w:
            w.write_msg("episode/event", 1, string_msg(event_json("start", episode_id="ep", robot="r0")))
            raise RuntimeError("boom")
    assert read_meta(path).outcome == "aborted"


def test_read_errors_name_the_path(tmp_path):
    with pytest.raises(BagError, match="does not exist"):
        read_episode(tmp_path / "nope")
    (tmp_path / "half").mkdir()
    with pytest.raises(IncompleteBagError, match=str(tmp_path / "half")):
        read_episode(tmp_path / "half")


def _truncate_bag(path: Path, frac=0.5):
    mcap = next(path.glob("*.mcap"))
    data = mcap.read_bytes()
    mcap.write_bytes(data[: int(len(data) * frac)])
    (path / "metadata.yaml").unlink()
    (path / "episode.json").unlink()


def test_recover_truncated_bag(tmp_path):
    steps = make_steps(T=120, S=64)  # ~1.5 MB of images -> a few 1 MiB chunks
    path = tmp_path / "r0" / "ep0"
    write_steps_bag(path, steps)
    _truncate_bag(path, 0.7)
    with pytest.raises(IncompleteBagError):
        read_episode(path)
    assert recover_bag(path)
    meta = read_meta(path)
    assert meta.outcome == "aborted" and meta.recovered and meta.episode_id == "ep0" and meta.robot == "r0"
    out = read_episode(path)
    assert 0 < len(out) < len(steps)
    n = len(out)
    np.testing.assert_array_equal(out.images, steps.images[:n])
    np.testing.assert_array_equal(out.actions, steps.actions[:n])
    assert not any(p.name.startswith(".recover") for p in path.parent.iterdir())


def test_recover_garbage_returns_false(tmp_path):
    d = tmp_path / "ep"
    d.mkdir()
    (d / "ep.mcap").write_bytes(os.urandom(5000))
    assert recover_bag(d) is False
    (d / "ep.mcap").write_bytes(b"\x89MCAP0\r\n" + os.urandom(5000))
    assert recover_bag(d) is False
    (d / "ep.mcap").write_bytes(b"")
    assert recover_bag(d) is False
    assert recover_bag(tmp_path / "missing") is False
    f = tmp_path / "file.mcap"
    f.write_bytes(b"junk")
    assert recover_bag(f) is False


KILL_SCRIPT = r"""
import os, sys, numpy as np
sys.path.insert(0, {src!r})
from lwd.data import EpisodeBagWriter, EpisodeMeta, N_JOINTS, CONTROL_DT_NS
from lwd.data.msgs import image_msg, joint_state_msg, serialize, string_msg, trajectory_msg
from lwd.data.schema import event_json
w = EpisodeBagWriter({path!r}, EpisodeMeta(episode_id="ep5", robot="r1")).open()
w.write_raw("episode/event", 10**9, serialize(string_msg(event_json("start", episode_id="ep5", robot="r1",
            policy_version=2))))
for k in range(150):
    t = 10**9 + k * CONTROL_DT_NS
    w.write_raw("camera/image_raw", t, serialize(image_msg(t, np.full((64, 64, 3), k % 256, np.uint8))))
    w.write_raw("joint_states", t, serialize(joint_state_msg(t, np.full(N_JOINTS, float(k)))))
    w.write_raw("cmd/joint_trajectory", t, serialize(trajectory_msg(t, np.full((1, N_JOINTS), k + 0.5), "policy/v2")))
os._exit(9)  # killed mid-write: no footer, no metadata.yaml, pending chunk lost
"""


def test_recover_bag_of_killed_process(tmp_path):
    path = tmp_path / "r1" / "ep5"
    rc = subprocess.run([sys.executable, "-c", KILL_SCRIPT.format(src=SRC, path=str(path))]).returncode
    assert rc == 9
    assert not (path / "metadata.yaml").exists()
    assert recover_bag(path)
    out = read_episode(path)
    assert len(out) > 50  # complete chunks were flushed
    k = np.arange(len(out))
    np.testing.assert_array_equal(out.qpos[:, 0], k)
    np.testing.assert_array_equal(out.actions[:, 0], k + 0.5)
    assert (out.policy_version == 2).all() and out.meta.policy_versions == [2]
    assert out.meta.outcome == "aborted"
