"""vla_policy: image + instruction + joint state -> action chunks, on its own inference thread; hot-swaps.

Callbacks only cache the latest observation. The inference thread publishes a chunk (JointTrajectory tagged
``policy/v<N>`` in header.frame_id) whenever the previous one is about to run out, and swaps a newly announced
checkpoint (``/fleet/policy``) only between chunks, after it was loaded and verified in the background.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
from rclpy.node import Node
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Bool, String
from trajectory_msgs.msg import JointTrajectory

from lwd.nodes.common import (
    FLEET_POLICY_TOPIC,
    LATCHED_QOS,
    RELIABLE_QOS,
    SENSOR_QOS,
    image_to_numpy,
    json_msg,
    numpy_to_trajectory,
    parse_json,
    run_node,
)
from lwd.policy.checkpoint import CheckpointError, latest_version, load_checkpoint, version_dir
from lwd.policy.inference import VLAPolicy
from lwd.robot import CONTROL_DT, JOINT_NAMES


class VLAPolicyNode(Node):
    def __init__(self) -> None:
        super().__init__("vla_policy")
        self.store = Path(self.declare_parameter("store", "lwd_store").value).expanduser()
        checkpoint = self.declare_parameter("checkpoint", "").value
        self.exec_steps = int(self.declare_parameter("exec_steps", 5).value)
        self.dt = float(self.declare_parameter("control_dt", CONTROL_DT).value)
        self.max_obs_age = float(self.declare_parameter("max_obs_age_s", 0.5).value)
        seed = int(self.declare_parameter("seed", 0).value)
        self.joint_names = list(JOINT_NAMES)
        self.policy: VLAPolicy | None = None
        self.pending: VLAPolicy | None = None
        self.rejected: list[dict] = []
        self.lock = threading.Lock()
        self.image: tuple[float, np.ndarray] | None = None
        self.qpos: tuple[float, np.ndarray] | None = None
        self.instruction = ""
        self.active = False
        self.engaged = False
        self.episode_start = 0.0
        self.chunks = 0
        self.infer_ms: list[float] = []
        self.torch_seed = seed

        path = Path(checkpoint) if checkpoint else None
        if path is None and (v := latest_version(self.store / "policies")) is not None:
            path = version_dir(self.store / "policies", v)
        if path is not None:
            try:
                self.policy = VLAPolicy.from_checkpoint(load_checkpoint(path), exec_steps=self.exec_steps)
            except CheckpointError as e:
                self.get_logger().error(f"initial checkpoint rejected: {e}")

        self.traj_pub = self.create_publisher(JointTrajectory, "policy/joint_trajectory", RELIABLE_QOS)
        self.status_pub = self.create_publisher(String, "policy/status", LATCHED_QOS)
        self.create_subscription(Image, "camera/image_raw", self._on_image, SENSOR_QOS)
        self.create_subscription(JointState, "joint_states", self._on_joints, SENSOR_QOS)
        self.create_subscription(String, "task/instruction", self._on_instruction, LATCHED_QOS)
        self.create_subscription(String, "episode/event", self._on_event, RELIABLE_QOS)
        self.create_subscription(Bool, "teleop/engaged", self._on_engaged, LATCHED_QOS)
        self.create_subscription(String, FLEET_POLICY_TOPIC, self._on_fleet_policy, LATCHED_QOS)
        self.create_timer(1.0, self._publish_status)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="inference", daemon=True)
        self.thread.start()
        self._publish_status()
        self.get_logger().info(f"vla_policy up: version={self.version}")

    @property
    def version(self) -> int:
        return self.policy.version if self.policy is not None else -1

    # -- cached observations ----------------------------------------------------------------------------------
    def _on_image(self, msg: Image) -> None:
        try:
            self.image = (time.monotonic(), image_to_numpy(msg))
        except ValueError as e:
            self.get_logger().warning(f"dropped image: {e}", throttle_duration_sec=5.0)

    def _on_joints(self, msg: JointState) -> None:
        try:
            idx = [list(msg.name).index(n) for n in self.joint_names]
            q = np.asarray(msg.position, dtype=np.float32)[idx]
        except (ValueError, IndexError):
            self.get_logger().warning("joint_states do not carry lwd's joints", throttle_duration_sec=5.0)
            return
        if np.isfinite(q).all():
            self.qpos = (time.monotonic(), q)

    def _on_instruction(self, msg: String) -> None:
        self.instruction = msg.data

    def _on_event(self, msg: String) -> None:
        try:
            ev = parse_json(msg)
        except ValueError:
            return
        if ev.get("event") == "start":
            self.instruction = str(ev.get("instruction", self.instruction))
            self.episode_start = time.monotonic()
            self.engaged = False
            self.active = True
            if self.policy is not None:
                self.policy.reset()
        elif ev.get("event") == "end":
            self.active = False

    def _on_engaged(self, msg: Bool) -> None:
        self.engaged = bool(msg.data)

    # -- hot-swap ---------------------------------------------------------------------------------------------
    def _on_fleet_policy(self, msg: String) -> None:
        try:
            note = parse_json(msg)
            version, uri, sha = int(note["version"]), str(note["uri"]), str(note["sha256"])
        except (ValueError, KeyError, TypeError) as e:
            self.get_logger().warning(f"bad /fleet/policy notice: {e}")
            return
        if version <= self.version:
            return
        threading.Thread(target=self._load, args=(version, uri, sha), daemon=True).start()

    def _load(self, version: int, uri: str, sha: str) -> None:
        path = Path(uri.removeprefix("file://"))
        if not path.is_absolute():
            path = self.store / path
        try:
            expected = self.policy.cfg if self.policy is not None else None
            ckpt = load_checkpoint(path, expected_sha256=sha, expected_config=expected)
            if ckpt.version != version:
                raise CheckpointError(f"{path}: manifest version {ckpt.version} != announced {version}")
        except CheckpointError as e:
            self.get_logger().error(f"rejected policy v{version}: {e}; keeping v{self.version}")
            self.rejected.append({"version": version, "reason": str(e)})
            self._publish_status()
            return
        with self.lock:
            self.pending = VLAPolicy.from_checkpoint(ckpt, exec_steps=self.exec_steps)
        self.get_logger().info(f"policy v{version} verified; swapping at the next chunk boundary")

    # -- inference thread -------------------------------------------------------------------------------------
    def _loop(self) -> None:
        import torch

        torch.set_num_threads(1)
        torch.manual_seed(self.torch_seed)
        next_due = 0.0
        while not self.stop.is_set():
            now = time.monotonic()
            with self.lock:
                if self.pending is not None:  # chunk boundary: nothing in flight from this thread
                    old, self.policy, self.pending = self.version, self.pending, None
                    self.get_logger().info(f"hot-swapped policy v{old} -> v{self.version}")
                    self._publish_status()
            obs = self._fresh_obs(now)
            if not self.active or self.engaged:
                next_due = 0.0  # act as soon as the episode starts or the operator hands back
                time.sleep(0.01)
                continue
            if self.policy is None or obs is None or now < next_due:
                time.sleep(0.01)
                continue
            t0 = time.perf_counter()
            try:
                chunk = self.policy.infer(obs)
            except ValueError as e:
                self.get_logger().warning(f"inference skipped: {e}", throttle_duration_sec=5.0)
                time.sleep(0.05)
                continue
            self.infer_ms.append(1e3 * (time.perf_counter() - t0))
            self.infer_ms = self.infer_ms[-100:]
            if not self.active or self.engaged:
                continue  # takeover while thinking: the chunk is stale, drop it
            msg = numpy_to_trajectory(chunk, self.dt, self.joint_names, f"policy/v{self.version}",
                                      self.get_clock().now().to_msg())
            self.traj_pub.publish(msg)
            self.chunks += 1
            # Replan before the executed part runs out; the rest of the chunk is a buffer against latency.
            next_due = time.monotonic() + self.exec_steps * self.dt - 0.02

    def _fresh_obs(self, now: float) -> dict | None:
        img, q = self.image, self.qpos
        if img is None or q is None or not self.instruction:
            return None
        # Only observations taken after the episode reset, and not stale.
        if img[0] < self.episode_start + 0.15 or now - img[0] > self.max_obs_age or now - q[0] > self.max_obs_age:
            return None
        return {"image": img[1], "qpos": q[1], "instruction": self.instruction}

    def _publish_status(self) -> None:
        ms = float(np.mean(self.infer_ms)) if self.infer_ms else None
        self.status_pub.publish(json_msg(
            version=self.version, sha256=getattr(self.policy, "sha256", None), chunks=self.chunks,
            inference_ms=ms, active=self.active, engaged=self.engaged, rejected=self.rejected[-3:],
        ))

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=2.0)


def main(args=None) -> int:
    return run_node(VLAPolicyNode, args, threads=2)


if __name__ == "__main__":
    raise SystemExit(main())
