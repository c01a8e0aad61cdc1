"""Data contract between the ROS nodes (writers) and the learner (reader).

Topics are relative to the robot namespace. A JointTrajectory's ``header.frame_id`` tags its source:
``"policy/v<N>"``, ``"teleop"`` or ``"expert"``. Points have ``time_from_start = (j+1)*dt``; the arm starts
executing a trajectory on receipt, point j is the target during ``[tfs_{j-1}, tfs_j)`` after receipt
(``tfs_{-1} = 0``), after the last point it holds the last point.

This module must not import rclpy (nor lwd.sim): it is shared by nodes, learner and offline tools.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field, fields
from functools import lru_cache
from typing import Any

import numpy as np

from lwd.robot import (  # noqa: F401 - re-exported contract
    CAMERAS,
    CONTROL_DT,
    CONTROL_DT_NS,
    JOINT_NAMES,
    N_JOINTS,
    camera_topic,
    check_cameras,
)

TOPICS: dict[str, str] = {
    "joint_states": "sensor_msgs/msg/JointState",
    **{camera_topic(c): "sensor_msgs/msg/Image" for c in CAMERAS},
    "task/instruction": "std_msgs/msg/String",
    "policy/joint_trajectory": "trajectory_msgs/msg/JointTrajectory",
    "teleop/joint_trajectory": "trajectory_msgs/msg/JointTrajectory",
    "cmd/joint_trajectory": "trajectory_msgs/msg/JointTrajectory",
    "teleop/engaged": "std_msgs/msg/Bool",
    "cmd/source": "std_msgs/msg/String",
    "episode/event": "std_msgs/msg/String",
    "episode/reward": "std_msgs/msg/Float32",
    "policy/status": "std_msgs/msg/String",
}


def select_views(images: np.ndarray, have, want) -> np.ndarray:
    """(..., S, S * len(have), 3) side-by-side views -> the ``want`` cameras' views side by side.

    Raises:
        ValueError: a wanted camera is not among ``have``, or the width does not split into ``have``'s views.
    """
    have, want = check_cameras(have), check_cameras(want)
    if have == want:
        return images
    missing = [c for c in want if c not in have]
    if missing:
        raise ValueError(f"no images of camera(s) {missing}: the episode has {list(have)}")
    s = images.shape[-3]
    if images.shape[-2] != s * len(have):
        raise ValueError(f"image width {images.shape[-2]} is not {len(have)} views of {s}")
    return np.concatenate([images[..., :, have.index(c) * s:(have.index(c) + 1) * s, :] for c in want], axis=-2)


# step source codes in EpisodeSteps.source
SOURCE_POLICY = 0
SOURCE_TELEOP = 1  # human / scripted operator intervention
SOURCE_EXPERT = 2  # scripted demonstration
SOURCE_NAMES = {SOURCE_POLICY: "policy", SOURCE_TELEOP: "teleop", SOURCE_EXPERT: "expert"}

OUTCOMES = ("success", "failure", "aborted")
EPISODE_SOURCES = ("fleet", "demo")

_POLICY_RE = re.compile(r"^policy(?:/v(-?\d+))?$")


def parse_frame_id(frame_id: str) -> tuple[int, int]:
    """``header.frame_id`` of a command -> (source code, policy version or -1)."""
    m = _POLICY_RE.match(frame_id.strip())
    if m:
        return SOURCE_POLICY, int(m.group(1)) if m.group(1) is not None else -1
    if frame_id.strip() == "expert":
        return SOURCE_EXPERT, -1
    # "teleop", "operator", anything else: treated as a human intervention
    return SOURCE_TELEOP, -1


def frame_id_for(source: int, version: int = -1) -> str:
    """(source code, version) -> ``header.frame_id`` tag."""
    if source == SOURCE_POLICY:
        return f"policy/v{int(version)}"
    if source == SOURCE_EXPERT:
        return "expert"
    return "teleop"


@lru_cache(maxsize=1)
def typestore():
    """The rosbags typestore used for (de)serialization (ROS 2 Kilted, else the newest available)."""
    from rosbags.typesys import Stores, get_typestore

    for name in ("ROS2_KILTED", "ROS2_JAZZY", "LATEST"):
        store = getattr(Stores, name, None)
        if store is not None:
            return get_typestore(store)
    raise RuntimeError("no usable rosbags typestore")


@dataclass
class EpisodeMeta:
    episode_id: str
    robot: str
    task: str = ""
    instruction: str = ""
    seed: int = 0
    source: str = "fleet"  # "fleet" | "demo"
    outcome: str = "aborted"  # "success" | "failure" | "aborted"
    policy_versions: list[int] = field(default_factory=list)
    start_ns: int = 0
    end_ns: int = 0
    intervention_segments: list[list[int]] = field(default_factory=list)  # [[start_ns, end_ns], ...]
    num_interventions: int = 0
    subgoal_ns: list[int] = field(default_factory=list)
    """When the episode first reached 1, 2, ... achieved subgoals (items placed), from its ``subgoal`` events."""
    recovered: bool = False  # True when rebuilt by recover_bag from a bag killed mid-write

    @property
    def success(self) -> bool:
        return self.outcome == "success"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["policy_versions"] = [int(v) for v in self.policy_versions]
        d["intervention_segments"] = [[int(a), int(b)] for a, b in self.intervention_segments]
        d["subgoal_ns"] = [int(t) for t in self.subgoal_ns]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EpisodeMeta:
        known = {f.name for f in fields(cls)}
        kw = {k: v for k, v in d.items() if k in known}
        if "episode_id" not in kw or "robot" not in kw:
            raise ValueError(f"episode metadata lacks episode_id/robot: {d!r}")
        kw["episode_id"] = str(kw["episode_id"])
        kw["robot"] = str(kw["robot"])
        for k in ("seed", "start_ns", "end_ns", "num_interventions"):
            if k in kw and kw[k] is not None:
                kw[k] = int(kw[k])
        kw["policy_versions"] = [int(v) for v in kw.get("policy_versions") or []]
        kw["intervention_segments"] = [[int(a), int(b)] for a, b in kw.get("intervention_segments") or []]
        kw["subgoal_ns"] = sorted(int(t) for t in kw.get("subgoal_ns") or [])
        return cls(**kw)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> EpisodeMeta:
        return cls.from_dict(json.loads(text))


@dataclass
class EpisodeSteps:
    """One episode on the control grid t_k = start + k*CONTROL_DT (the learner's view).

    images (T,S,S*V,3) uint8, the V ``cameras``' views side by side (S may be 0 when the bag had no camera),
    qpos (T,14) float32 observation at step start, actions (T,14) float32 target executed during [t_k, t_k+dt),
    source (T,) int8 (SOURCE_*), policy_version (T,) int32 (-1 where not policy), t_ns (T,) int64.
    """

    images: np.ndarray
    qpos: np.ndarray
    actions: np.ndarray
    source: np.ndarray
    policy_version: np.ndarray
    t_ns: np.ndarray
    meta: EpisodeMeta
    cameras: tuple[str, ...] = ("overview",)

    def __post_init__(self) -> None:
        self.cameras = check_cameras(self.cameras)
        self.images = np.asarray(self.images, dtype=np.uint8)
        self.qpos = np.asarray(self.qpos, dtype=np.float32)
        self.actions = np.asarray(self.actions, dtype=np.float32)
        self.source = np.asarray(self.source, dtype=np.int8)
        self.policy_version = np.asarray(self.policy_version, dtype=np.int32)
        self.t_ns = np.asarray(self.t_ns, dtype=np.int64)
        T = len(self.t_ns)
        for name in ("images", "qpos", "actions", "source", "policy_version"):
            if len(getattr(self, name)) != T:
                raise ValueError(f"EpisodeSteps.{name} has length {len(getattr(self, name))}, t_ns has {T}")

    def __len__(self) -> int:
        return len(self.t_ns)

    def views(self, cameras) -> np.ndarray:
        """The images of ``cameras`` (a subset of this episode's, in ``lwd.robot.CAMERAS`` order) side by side."""
        return select_views(self.images, self.cameras, cameras)

    @property
    def success(self) -> bool:
        return self.meta.outcome == "success"

    @property
    def intervention(self) -> np.ndarray:
        """(T,) bool: steps commanded by the operator."""
        return self.source == SOURCE_TELEOP


def event_json(event: str, **kw: Any) -> str:
    """JSON payload of an ``episode/event`` message."""
    return json.dumps({"event": event, **kw}, sort_keys=True)
