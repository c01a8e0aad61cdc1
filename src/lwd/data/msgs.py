"""Build rosbags message objects for the lwd topics without rclpy (demos, tests, recovery, tools)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .schema import CONTROL_DT_NS, JOINT_NAMES, typestore


def _types():
    return typestore().types


def stamp(t_ns: int):
    T = _types()
    t_ns = int(t_ns)
    return T["builtin_interfaces/msg/Time"](sec=t_ns // 1_000_000_000, nanosec=t_ns % 1_000_000_000)


def duration(d_ns: int):
    T = _types()
    d_ns = int(d_ns)
    return T["builtin_interfaces/msg/Duration"](sec=d_ns // 1_000_000_000, nanosec=d_ns % 1_000_000_000)


def header(t_ns: int, frame_id: str = ""):
    return _types()["std_msgs/msg/Header"](stamp=stamp(t_ns), frame_id=frame_id)


def string_msg(text: str):
    return _types()["std_msgs/msg/String"](data=text)


def bool_msg(value: bool):
    return _types()["std_msgs/msg/Bool"](data=bool(value))


def float32_msg(value: float):
    return _types()["std_msgs/msg/Float32"](data=float(value))


def joint_state_msg(t_ns: int, position: Sequence[float], velocity: Sequence[float] | None = None,
                    names: Sequence[str] = JOINT_NAMES):
    pos = np.asarray(position, dtype=np.float64)
    vel = np.asarray(velocity, dtype=np.float64) if velocity is not None else np.zeros(0, np.float64)
    return _types()["sensor_msgs/msg/JointState"](
        header=header(t_ns), name=list(names), position=pos, velocity=vel, effort=np.zeros(0, np.float64))


def image_msg(t_ns: int, rgb: np.ndarray, frame_id: str = "camera"):
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"image must be (H,W,3) uint8, got {rgb.shape}")
    h, w, _ = rgb.shape
    return _types()["sensor_msgs/msg/Image"](
        header=header(t_ns, frame_id), height=h, width=w, encoding="rgb8", is_bigendian=0, step=3 * w,
        data=rgb.reshape(-1))


def trajectory_msg(t_ns: int, points: np.ndarray, frame_id: str, dt_ns: int = CONTROL_DT_NS,
                   names: Sequence[str] = JOINT_NAMES):
    """JointTrajectory with points (P,14) at time_from_start (j+1)*dt, tagged by ``frame_id``."""
    T = _types()
    pts = np.atleast_2d(np.asarray(points, dtype=np.float64))
    empty = np.zeros(0, np.float64)
    return T["trajectory_msgs/msg/JointTrajectory"](
        header=header(t_ns, frame_id), joint_names=list(names),
        points=[T["trajectory_msgs/msg/JointTrajectoryPoint"](
            positions=p.copy(), velocities=empty, accelerations=empty, effort=empty,
            time_from_start=duration((j + 1) * dt_ns)) for j, p in enumerate(pts)])


def serialize(msg) -> bytes:
    """CDR bytes as an rclpy raw subscription would deliver them."""
    return bytes(typestore().serialize_cdr(msg, msg.__msgtype__))
