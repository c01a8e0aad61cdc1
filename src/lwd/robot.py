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

__all__ = ["N_JOINTS", "CONTROL_DT", "CONTROL_DT_NS", "ARMS", "JOINT_NAMES"]
