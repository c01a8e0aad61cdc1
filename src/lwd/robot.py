"""The robot every lwd layer agrees on: a dual-arm, 14-D joint-position interface at a fixed control rate.

2 arms x (6 joints + gripper), left arm first; one action (joint-position target) per CONTROL_DT.
"""

N_JOINTS = 14
CONTROL_DT = 0.1
CONTROL_DT_NS = 100_000_000  # == round(CONTROL_DT * 1e9); integer grid arithmetic avoids float drift
ARMS = ("left", "right")
JOINT_NAMES: tuple[str, ...] = tuple(
    f"{side}_{j}" for side in ARMS
    for j in ("waist", "shoulder", "elbow", "forearm_roll", "wrist_angle", "wrist_rotate", "gripper")
)
assert len(JOINT_NAMES) == N_JOINTS

CAMERAS: tuple[str, ...] = ("overview", "left_wrist", "right_wrist")
"""The robot's RGB cameras: a static overview of the workspace and one on each hand. Each has its own
sensor_msgs/Image topic (:func:`camera_topic`); a policy names the ones it sees (``PolicyConfig.cameras``)."""


def camera_topic(name: str) -> str:
    """The (namespace-relative) image topic of camera ``name``: ``camera/image_raw`` for the overview (the topic
    every earlier bag and node uses), ``<name>/image_raw`` for the others."""
    if name not in CAMERAS:
        raise ValueError(f"unknown camera {name!r}; known: {', '.join(CAMERAS)}")
    return "camera/image_raw" if name == "overview" else f"{name}/image_raw"


def check_cameras(cameras) -> tuple[str, ...]:
    """Validate a camera list: known names, no repeats, in :data:`CAMERAS` order (views are laid side by side in
    that order, so one list has one layout)."""
    cams = tuple(cameras)
    if not cams:
        raise ValueError("at least one camera is needed")
    for c in cams:
        camera_topic(c)
    if len(set(cams)) != len(cams) or list(cams) != sorted(cams, key=CAMERAS.index):
        raise ValueError(f"cameras {cams} must be distinct and in the order {CAMERAS}")
    return cams


__all__ = ["N_JOINTS", "CONTROL_DT", "CONTROL_DT_NS", "ARMS", "JOINT_NAMES", "CAMERAS", "camera_topic",
           "check_cameras"]
