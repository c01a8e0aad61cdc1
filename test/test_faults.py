"""Fault injection on the ROS-free parts: checkpoint trust (containment in the store's policies/, identity =
(version, sha256)) and fallback from a corrupt newest checkpoint (quarantine), for the learner and the robot side.

The learner restarting mid-round with pending episodes is covered in test_learner.py; the robots rejecting an
announcement from outside the store over DDS in test_fleet_launch.py.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
from pathlib import Path

import pytest

from lwd.policy.checkpoint import (
    MANIFEST_FILE,
    MODEL_FILE,
    CheckpointError,
    latest_valid_checkpoint,
    list_versions,
    load_checkpoint,
    quarantine_checkpoint,
    resolve_announced,
    save_checkpoint,
    sha256_file,
)
from lwd.policy.hotswap import Announcement, PolicyLoader
from lwd.policy.model import FlowVLA, PolicyConfig

SMALL = dict(image_size=32, horizon=4, cond_dim=32, hidden=64, vision_channels=8, text_dim=16)


@pytest.fixture
def store(tmp_path) -> Path:
    """A store root with policies v0, v1, v2 of a small model."""
    root = tmp_path / "store"
    for v in range(3):
        save_checkpoint(root / "policies", FlowVLA(PolicyConfig(**SMALL)), v)
    return root


def _reason(excinfo) -> str:
    return excinfo.value.reason


# -- containment: only <store>/policies/v<N> is trusted --------------------------------------------------------------
def test_announced_checkpoint_inside_policies_resolves(store):
    real = (store / "policies" / "v1").resolve()
    assert resolve_announced(store / "policies", str(store / "policies" / "v1"), 1) == real
    assert resolve_announced(store / "policies", f"file://{store / 'policies' / 'v1'}", 1) == real
    assert resolve_announced(store / "policies", "policies/v1", 1) == real  # relative to the store root


def test_copy_outside_the_store_is_rejected(store, tmp_path):
    outside = tmp_path / "tmp" / "v1"
    shutil.copytree(store / "policies" / "v1", outside)
    load_checkpoint(outside)  # a perfectly valid checkpoint ...
    with pytest.raises(CheckpointError) as e:  # ... but not from this store
        resolve_announced(store / "policies", str(outside), 1)
    assert _reason(e) == "outside_store"
    with pytest.raises(CheckpointError) as e:  # another store's policies/ is outside too
        resolve_announced(store / "policies", str(tmp_path / "tmp"), 1)
    assert _reason(e) == "outside_store"


@pytest.mark.parametrize("uri", ["policies/../../tmp/v1", "policies/v1/../../../tmp/v1", "/tmp/v1", "policies",
                                 "policies/v1/model.safetensors", "."])
def test_traversal_and_non_checkpoint_paths_are_outside(store, uri):
    with pytest.raises(CheckpointError) as e:
        resolve_announced(store / "policies", uri, 1)
    assert _reason(e) == "outside_store"


def test_symlink_escape_is_rejected(store, tmp_path):
    outside = tmp_path / "elsewhere" / "v7"
    shutil.copytree(store / "policies" / "v2", outside)
    os.symlink(outside, store / "policies" / "v7")  # looks like policies/v7, lives in /elsewhere
    with pytest.raises(CheckpointError) as e:
        resolve_announced(store / "policies", str(store / "policies" / "v7"), 7)
    assert _reason(e) == "outside_store"
    os.symlink(store / "policies" / "v0", store / "policies" / "v8")  # an alias of another version
    with pytest.raises(CheckpointError) as e:
        resolve_announced(store / "policies", str(store / "policies" / "v8"), 8)
    assert _reason(e) == "version_mismatch"


def test_wrong_version_dir_and_foreign_schemes(store):
    with pytest.raises(CheckpointError) as e:
        resolve_announced(store / "policies", str(store / "policies" / "v0"), 3)
    assert _reason(e) == "version_mismatch"
    for uri in ("http://evil.example/v1", "s3://bucket/v1", ""):
        with pytest.raises(CheckpointError) as e:
            resolve_announced(store / "policies", uri, 1)
        assert _reason(e) == "bad_uri"


def test_store_reached_through_a_symlink_is_still_inside(store, tmp_path):
    link = tmp_path / "store_link"
    os.symlink(store, link)  # e.g. the store root lives on another disk
    real = (store / "policies" / "v2").resolve()
    assert resolve_announced(link / "policies", str(store / "policies" / "v2"), 2) == real
    assert resolve_announced(store / "policies", str(link / "policies" / "v2"), 2) == real


# -- identity: (version, sha256) -------------------------------------------------------------------------------------
def test_same_version_with_another_sha256_is_loaded_not_ignored():
    loaded = []
    loader = PolicyLoader(lambda a: loaded.append(a) or a.sha256, current_version=3, current_sha256="a" * 64)
    try:
        assert not loader.announce(Announcement(3, "policies/v3", "a" * 64))  # what is running: ignored
        assert loader.announce(Announcement(3, "policies/v3", "b" * 64))  # same number, other weights
        assert loader.wait_idle(10.0)
        ann, policy = loader.take()
        assert (ann.version, policy) == (3, "b" * 64)
        assert not loader.announce(Announcement(3, "policies/v3", "b" * 64))  # now running: ignored
        assert not loader.announce(Announcement(2, "policies/v2", "c" * 64))  # older: ignored
    finally:
        loader.close()


def test_rejected_outside_copy_does_not_block_the_real_one():
    """A notice rejected for where it points does not blacklist the same (version, sha256) from the store."""
    sha = "d" * 64

    def load(ann: Announcement) -> str:
        if not ann.uri.startswith("policies/"):
            raise CheckpointError("outside", "outside_store")
        return ann.uri

    errors = []
    loader = PolicyLoader(load, current_version=0, on_error=lambda a, e: errors.append(e.reason))
    try:
        assert loader.announce(Announcement(1, "/tmp/v1", sha))
        assert loader.wait_idle(10.0) and loader.take() is None and errors == ["outside_store"]
        assert not loader.announce(Announcement(1, "/tmp/v1", sha))  # the same bad notice again: ignored
        assert loader.announce(Announcement(1, "policies/v1", sha))
        assert loader.wait_idle(10.0) and loader.take()[1] == "policies/v1"
    finally:
        loader.close()


# -- fallback on corruption ------------------------------------------------------------------------------------------
def _garble_header(path: Path) -> None:
    """Truncate the weights and garble the header length (safetensors: "header too large"), as a torn write does;
    the manifest is rewritten to match, so only reading the weights finds it."""
    data = (path / MODEL_FILE).read_bytes()
    (path / MODEL_FILE).write_bytes(struct.pack("<Q", 1 << 40) + data[8:len(data) // 3])
    manifest = json.loads((path / MANIFEST_FILE).read_text())
    manifest["sha256"] = sha256_file(path / MODEL_FILE)
    (path / MANIFEST_FILE).write_text(json.dumps(manifest))


def _bad_manifest_sha(path: Path) -> None:
    manifest = json.loads((path / MANIFEST_FILE).read_text())
    manifest["sha256"] = "0" * 64
    (path / MANIFEST_FILE).write_text(json.dumps(manifest))


def _quarantine(root: Path) -> list[Path]:
    q = root / "quarantine" / "policies"
    return sorted(p for p in q.iterdir() if not p.name.endswith(".reason.txt")) if q.is_dir() else []


@pytest.mark.parametrize("corrupt, reason, message", [
    (_garble_header, "unreadable_weights", "header too large"),
    (_bad_manifest_sha, "sha256_mismatch", "does not match manifest"),
])
def test_corrupt_newest_checkpoint_falls_back_and_is_quarantined(store, corrupt, reason, message):
    corrupt(store / "policies" / "v2")
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(store / "policies" / "v2")
    ckpt, bad = latest_valid_checkpoint(store / "policies")
    assert ckpt is not None and ckpt.version == 1 and ckpt.path == store / "policies" / "v1"
    assert [(q.version, q.reason) for q in bad] == [(2, reason)] and message in bad[0].detail
    assert list_versions(store / "policies") == [0, 1]  # v2 moved out of policies/ ...
    (moved,) = _quarantine(store)
    assert moved == bad[0].to and moved.name.startswith("v2__") and (moved / MODEL_FILE).exists()
    why = (moved.parent / f"{moved.name}.reason.txt").read_text()  # ... with its reason beside it
    assert why.startswith(reason) and message in why
    assert bad[0].to_dict()["to"] == str(moved)
    # The next start finds nothing to quarantine.
    again = latest_valid_checkpoint(store / "policies")
    assert again.checkpoint.version == 1 and again.quarantined == []


def test_several_corrupt_versions_and_none_valid(store):
    _bad_manifest_sha(store / "policies" / "v2")
    (store / "policies" / "v1" / "config.json").unlink()
    ckpt, bad = latest_valid_checkpoint(store / "policies")
    assert ckpt.version == 0 and [(q.version, q.reason) for q in bad] == [(2, "sha256_mismatch"),
                                                                          (1, "missing_file")]
    _garble_header(store / "policies" / "v0")
    ckpt, bad = latest_valid_checkpoint(store / "policies")
    assert ckpt is None and [q.version for q in bad] == [0] and list_versions(store / "policies") == []
    assert len(_quarantine(store)) == 3


def test_manifest_naming_another_version_is_quarantined(store):
    shutil.rmtree(store / "policies" / "v2")
    shutil.copytree(store / "policies" / "v0", store / "policies" / "v2")  # v0's weights posing as v2
    ckpt, bad = latest_valid_checkpoint(store / "policies")
    assert ckpt.version == 1 and [(q.version, q.reason) for q in bad] == [(2, "version_mismatch")]


def test_without_quarantine_nothing_moves(store):
    _bad_manifest_sha(store / "policies" / "v2")
    ckpt, bad = latest_valid_checkpoint(store / "policies", quarantine=False)
    assert ckpt.version == 1 and bad[0].to is None and list_versions(store / "policies") == [0, 1, 2]


def test_quarantine_race_loser_gets_none(store):
    """Two processes find the same corrupt version: one moves it, the other finds it gone and moves on."""
    assert quarantine_checkpoint(store / "policies", 2, "sha256_mismatch") is not None
    assert quarantine_checkpoint(store / "policies", 2, "sha256_mismatch") is None
    assert len(_quarantine(store)) == 1


def test_store_lists_quarantined_checkpoints(store):
    from lwd.data.store import ExperienceStore

    _bad_manifest_sha(store / "policies" / "v2")
    latest_valid_checkpoint(store / "policies")
    names = [p.name for p in ExperienceStore(store).quarantined()]
    assert len(names) == 1 and names[0].startswith("v2__")


def test_learner_starts_from_the_newest_valid_checkpoint(tiny_store, tmp_path):
    """A corrupt newest checkpoint no longer stops the learner: it starts from the previous one and says so."""
    from lwd.rl.learner import Learner, LearnerConfig

    root = tmp_path / "store"
    shutil.copytree(tiny_store, root)
    v1 = root / "policies" / "v1"
    shutil.copytree(root / "policies" / "v0", v1)
    manifest = json.loads((v1 / MANIFEST_FILE).read_text())
    (v1 / MANIFEST_FILE).write_text(json.dumps({**manifest, "version": 1}))
    _garble_header(v1)
    cfg = LearnerConfig(algo="bc", min_new_episodes=2, updates_per_round=3, offline_updates=0,
                        background_updates=0, gate="none")
    learner = Learner(root, cfg)
    assert learner.version == 0 and learner.sha256 == load_checkpoint(root / "policies" / "v0").sha256
    (q,) = learner.status()["quarantined"]
    assert q["version"] == 1 and q["reason"] == "unreadable_weights" and "header too large" in q["detail"]
    assert list_versions(root / "policies") == [0] and Path(q["to"]).is_dir()
    assert learner.announcement()["version"] == 0


# -- the robot side, in-process (no DDS traffic needed) --------------------------------------------------------------
@pytest.mark.ros
def test_vla_policy_falls_back_and_rejects_announcements_from_outside(store, tmp_path):
    rclpy = pytest.importorskip("rclpy")
    from std_msgs.msg import String

    from lwd.control.health import OK, WARN
    from lwd.nodes.vla_policy import VLAPolicyNode

    _bad_manifest_sha(store / "policies" / "v2")
    outside = tmp_path / "tmp" / "v5"
    shutil.copytree(store / "policies" / "v1", outside)
    manifest = json.loads((outside / MANIFEST_FILE).read_text())
    (outside / MANIFEST_FILE).write_text(json.dumps({**manifest, "version": 5}))  # a valid v5, outside the store
    rclpy.init(args=["--ros-args", "-p", f"store:={store}"])
    node = None
    try:
        node = VLAPolicyNode()
        assert node.version == 1 and [q["version"] for q in node.quarantined] == [2]
        report = node.diag.health.report()
        assert report.level == WARN and "quarantined v2" in report.message
        assert dict(report.values)["quarantined"] == "v2:sha256_mismatch"
        # A valid copy announced from outside the store: rejected before anything is read, counted per reason.
        note = {"version": 5, "uri": str(outside), "sha256": manifest["sha256"]}
        node._on_fleet_policy(String(data=json.dumps(note)))
        node._on_fleet_policy(String(data="{not json"))
        assert node.diag.rejected_counts() == {"outside_store": 1, "bad_notice": 1}
        assert node.rejected[-1]["code"] == "outside_store" and node.loader.newest == 1 and node.loader.idle()
        # The same weights from inside the store are adopted.
        shutil.copytree(outside, store / "policies" / "v5")
        node._on_fleet_policy(String(data=json.dumps({**note, "uri": str(store / "policies" / "v5")})))
        assert node.loader.wait_idle(30.0) and node.loader.loaded == 1
        node._swap_if_ready()  # (the inference thread may have swapped already)
        assert node.version == 5 and node.sha256 == manifest["sha256"]
        node._update_health()  # past the quarantined version: healthy again
        assert node.diag.health.level == OK and node.diag.health.message == "running v5"
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
