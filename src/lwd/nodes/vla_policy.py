"""vla_policy: image + instruction + joint state -> action chunks, on its own inference thread; hot-swaps.

Callbacks only cache the latest observation (with its header stamp) and queue ``/fleet/policy`` announcements.
The inference thread asks the ROS-free :class:`lwd.control.chunking.ChunkScheduler` when to infer, and publishes each
chunk (JointTrajectory tagged ``policy/v<N>`` in header.frame_id) with ``header.stamp`` = the stamp of the
observation it was computed from: the arm driver executes it on that time base and skips what is already past.
How a new chunk meets the one in flight is the ``chunk_mode`` parameter (replace / blend / rtc, see chunking).
Announced checkpoints are loaded and verified by one :class:`lwd.policy.hotswap.PolicyLoader` worker (a newer
announcement supersedes an older one still loading) and swapped only between chunks. A checkpoint's identity is
(version, sha256), and only checkpoints that resolve to ``<store>/policies/v<version>`` are adopted
(:func:`lwd.policy.checkpoint.resolve_announced`); at start the node runs the newest *valid* version of its store
(:func:`lwd.policy.checkpoint.latest_valid_checkpoint` quarantines corrupt newer ones). Rejections are counted per
reason on ``/diagnostics`` and in ``policy/status``.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
from rclpy.node import Node
from rclpy.time import Time
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Bool, String
from trajectory_msgs.msg import JointTrajectory

from lwd.control.chunking import DEFAULT_MODE, ChunkScheduler, ObservationGate
from lwd.control.health import ERROR, OK, WARN, Rejected, reorder_joints
from lwd.nodes.common import (
    FLEET_POLICY_TOPIC,
    LATCHED_QOS,
    RELIABLE_QOS,
    SENSOR_QOS,
    HealthPublisher,
    image_to_numpy,
    json_msg,
    numpy_to_trajectory,
    parse_json,
    run_node,
)
from lwd.policy.checkpoint import (
    CheckpointError,
    fallback_report,
    latest_valid_checkpoint,
    load_checkpoint,
    resolve_announced,
)
from lwd.policy.hotswap import Announcement, PolicyLoader, supersedes
from lwd.policy.inference import VLAPolicy
from lwd.rl.selection import attach_scorer
from lwd.robot import CAMERAS, CONTROL_DT, JOINT_NAMES, camera_topic


class VLAPolicyNode(Node):
    def __init__(self) -> None:
        super().__init__("vla_policy")
        self.store = Path(self.declare_parameter("store", "lwd_store").value).expanduser()
        self.policies = self.store / "policies"  # the only place announced checkpoints are adopted from
        checkpoint = self.declare_parameter("checkpoint", "").value
        self.exec_steps = int(self.declare_parameter("exec_steps", 5).value)
        # value-guided selection: versions that publish a critic act by the best of N candidate chunks (1 = off)
        self.select_candidates = int(self.declare_parameter("select_candidates", 1).value)
        self.dt = float(self.declare_parameter("control_dt", CONTROL_DT).value)
        defaults = ObservationGate()
        self.gate = ObservationGate(
            max_age_s=float(self.declare_parameter("max_obs_age_s", defaults.max_age_s).value),
            settle_s=float(self.declare_parameter("obs_settle_s", defaults.settle_s).value),
            wait_s=float(self.declare_parameter("obs_wait_s", defaults.wait_s).value),
        )
        mode = str(self.declare_parameter("chunk_mode", DEFAULT_MODE).value)
        self.sched = ChunkScheduler(mode, self.dt, self.exec_steps)  # touched only by the inference thread
        seed = int(self.declare_parameter("seed", 0).value)
        self.joint_names = list(JOINT_NAMES)
        self.policy: VLAPolicy | None = None
        self.rejected: list[dict] = []  # the latest rejected announcements (version, code, reason)
        self.quarantined: list[dict] = []  # corrupt versions moved aside when the initial policy was chosen
        self.diag = HealthPublisher(self)
        self.images: dict[str, tuple[float, np.ndarray]] = {}  # camera -> (stamp s, image)
        self.qpos: tuple[float, np.ndarray] | None = None
        self.instruction = ""
        self.active = False
        self.engaged = False
        self.episode = 0  # bumped at every episode start: the inference thread drops what it had in flight
        self.episode_start = 0.0
        self.infer_ms: list[float] = []
        self.delay_ms: list[float] = []
        self.torch_seed = seed
        self._closed = False

        self._initial_policy(checkpoint)
        self._update_health()
        self.loader: PolicyLoader[VLAPolicy] = PolicyLoader(
            self._load, current_version=self.version, current_sha256=self.sha256, on_error=self._on_load_error,
            on_superseded=lambda a: self.get_logger().info(f"policy v{a.version} superseded while loading"))

        self.traj_pub = self.create_publisher(JointTrajectory, "policy/joint_trajectory", RELIABLE_QOS)
        self.status_pub = self.create_publisher(String, "policy/status", LATCHED_QOS)
        # every camera's topic: the policy chosen at start (or a later restart) decides which it reads
        for cam in CAMERAS:
            self.create_subscription(Image, camera_topic(cam), lambda m, c=cam: self._on_image(c, m), SENSOR_QOS)
        self.create_subscription(JointState, "joint_states", self._on_joints, SENSOR_QOS)
        self.create_subscription(String, "task/instruction", self._on_instruction, LATCHED_QOS)
        self.create_subscription(String, "episode/event", self._on_event, RELIABLE_QOS)
        self.create_subscription(Bool, "teleop/engaged", self._on_engaged, LATCHED_QOS)
        self.create_subscription(String, FLEET_POLICY_TOPIC, self._on_fleet_policy, LATCHED_QOS)
        self.create_timer(1.0, self._on_timer)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="inference", daemon=True)
        self.thread.start()
        self._publish_status()
        self.get_logger().info(f"vla_policy up: version={self.version} chunk_mode={mode}")

    @property
    def version(self) -> int:
        return self.policy.version if self.policy is not None else -1

    @property
    def sha256(self) -> str | None:
        return getattr(self.policy, "sha256", None)

    def _initial_policy(self, checkpoint: str) -> None:
        """The ``checkpoint`` parameter if set (the operator's choice), else the newest valid version of the store."""
        if checkpoint:
            try:
                self.policy = self._policy(load_checkpoint(Path(checkpoint)))
            except CheckpointError as e:
                self.diag.reject(e.reason, f"initial checkpoint {checkpoint}: {e}")
            return
        found = latest_valid_checkpoint(self.policies)
        report = fallback_report(self.policies, found)  # with what the learner or another robot moved first
        self.quarantined = [q.to_dict() for q in report]
        for q in report:
            by = "" if q in found.quarantined else " by another process"
            self.get_logger().error(f"policy v{q.version} is corrupt ({q.reason}: {q.detail}); quarantined{by} to "
                                    f"{q.to or 'elsewhere by another process'}; falling back to an older version")
        if found.checkpoint is not None:
            try:
                self.policy = self._policy(found.checkpoint)
            except CheckpointError as e:  # its critic is unusable: act without it rather than not at all
                self.diag.reject(e.reason, f"policy v{found.checkpoint.version}: {e}; acting without selection")
                self.policy = VLAPolicy.from_checkpoint(found.checkpoint, exec_steps=self.exec_steps)

    def _policy(self, ckpt) -> VLAPolicy:
        policy = VLAPolicy.from_checkpoint(ckpt, exec_steps=self.exec_steps)
        attach_scorer(policy, ckpt.path, self.select_candidates)  # raises CheckpointError for a broken critic
        return policy

    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _stamp(self, header) -> float:
        """A message's stamp (s, ROS clock); its receipt time if unstamped."""
        ns = Time.from_msg(header.stamp).nanoseconds
        return ns * 1e-9 if ns > 0 else self._now()

    # -- cached observations ----------------------------------------------------------------------------------
    def _on_image(self, camera: str, msg: Image) -> None:
        try:
            img = image_to_numpy(msg)
            size = self.policy.cfg.image_size if self.policy is not None else img.shape[0]
            if img.shape != (size, size, 3):  # rejected here, once per frame: the views must stack
                raise ValueError(f"image {img.shape[1]}x{img.shape[0]}, the policy takes {size}x{size}")
            self.images[camera] = (self._stamp(msg.header), img)
        except ValueError as e:
            self.diag.reject("bad_image", f"{camera_topic(camera)}: {e}")

    def _on_joints(self, msg: JointState) -> None:
        try:
            q = reorder_joints(msg.name, msg.position, self.joint_names).astype(np.float32)
        except Rejected as e:
            self.diag.reject(e.reason, f"joint_states: {e}")
            return
        self.qpos = (self._stamp(msg.header), q)

    def _on_instruction(self, msg: String) -> None:
        self.instruction = msg.data

    def _on_event(self, msg: String) -> None:
        try:
            ev = parse_json(msg)
        except ValueError:
            return
        if ev.get("event") == "start":
            self.instruction = str(ev.get("instruction", self.instruction))
            self.episode_start = self._now()
            self.engaged = False
            self.episode += 1
            self.active = True
        elif ev.get("event") == "end":
            self.active = False

    def _on_engaged(self, msg: Bool) -> None:
        self.engaged = bool(msg.data)

    # -- hot-swap ---------------------------------------------------------------------------------------------
    def _on_fleet_policy(self, msg: String) -> None:
        try:
            note = parse_json(msg)
            ann = Announcement(int(note["version"]), str(note["uri"]), str(note["sha256"]))
        except (ValueError, KeyError, TypeError) as e:
            self.diag.reject("bad_notice", f"/fleet/policy notice: {e}")
            return
        try:  # cheap path check before anything is read: only this store's policies/v<N> is trusted
            resolve_announced(self.policies, ann.uri, ann.version)
        except CheckpointError as e:
            self._reject(ann, e)
            return
        if self.loader.announce(ann):
            self.get_logger().info(f"policy v{ann.version} announced; loading in the background")

    def _load(self, ann: Announcement) -> VLAPolicy:
        """Loader worker: load and verify one announced checkpoint (raises CheckpointError to reject it)."""
        path = resolve_announced(self.policies, ann.uri, ann.version)  # again: a link may have changed since
        policy = self.policy
        ckpt = load_checkpoint(path, expected_sha256=ann.sha256,
                               expected_config=policy.cfg if policy is not None else None)
        if ckpt.version != ann.version:
            raise CheckpointError(f"{path}: manifest version {ckpt.version} != announced {ann.version}",
                                  "version_mismatch")
        new = self._policy(ckpt)
        self.get_logger().info(f"policy v{ann.version} verified; swapping at the next chunk boundary")
        return new

    def _on_load_error(self, ann: Announcement, e: BaseException) -> None:
        self._reject(ann, e)

    def _reject(self, ann: Announcement, e: BaseException) -> None:
        """Count (per reason), log (rate-limited per reason) and report a rejected announcement; any thread."""
        code = getattr(e, "reason", type(e).__name__)
        self.diag.reject(code, f"policy v{ann.version} from {ann.uri}: {e}; keeping v{self.version}")
        self.rejected = [*self.rejected[-19:], {"version": ann.version, "code": code, "reason": str(e)}]
        self._publish_status()

    def _swap_if_ready(self) -> None:
        """Between chunks (nothing in flight from the inference thread): adopt a verified newer policy."""
        ready = self.loader.take()
        if ready is not None and supersedes(ready[0].version, ready[0].sha256, (self.version, self.sha256)):
            old, self.policy = self.version, ready[1]
            self.get_logger().info(f"hot-swapped policy v{old} -> v{self.version}")
            self._publish_status()

    # -- inference thread -------------------------------------------------------------------------------------
    def _loop(self) -> None:
        import torch

        torch.set_num_threads(1)
        torch.manual_seed(self.torch_seed)
        episode = self.episode
        while not self.stop.is_set():
            self._swap_if_ready()
            now = self._now()
            if not self.active or self.engaged or episode != self.episode:
                if episode != self.episode and self.policy is not None:
                    self.policy.reset()
                episode = self.episode
                self.sched.reset()  # act as soon as the episode starts or the operator hands back
                self.stop.wait(0.01)
                continue
            due = self.policy is not None and self.sched.request_due(now)
            obs = self._fresh_obs(now) if due else None
            if obs is None:  # poll for an observation, or sleep until the next request is due
                self.stop.wait(0.002 if due else min(0.01, max(0.001, self.sched.next_request_time() - now)))
                continue
            obs, t_obs = obs
            prefix = self.sched.begin(t_obs)
            t0 = time.perf_counter()
            try:
                actions = self.policy.infer(obs) if prefix is None else self.policy.infer(obs, prefix=prefix)
            except ValueError as e:
                self.sched.cancel()
                self.get_logger().warning(f"inference skipped: {e}", throttle_duration_sec=5.0)
                self.stop.wait(0.05)
                continue
            self.infer_ms = [*self.infer_ms[-99:], 1e3 * (time.perf_counter() - t0)]
            if not self.active or self.engaged or episode != self.episode:
                self.sched.cancel()  # takeover or a new episode while thinking: the chunk is stale, drop it
                continue
            now = self._now()
            tag = f"policy/v{self.version}"
            chunk = self.sched.accept(actions, t_obs, now, tag)
            self.delay_ms = [*self.delay_ms[-99:], 1e3 * (now - t_obs)]
            if chunk is None:
                self.get_logger().warning(f"chunk arrived {now - t_obs:.2f} s after its observation: all of it "
                                          "was already due, dropped", throttle_duration_sec=5.0)
                continue
            stamp = Time(nanoseconds=round(chunk.start * 1e9)).to_msg()
            self.traj_pub.publish(numpy_to_trajectory(chunk.actions, self.dt, self.joint_names, tag, stamp))

    def _fresh_obs(self, now: float) -> tuple[dict, float] | None:
        """The cached observation and its time (the oldest of its images' and joint stamps), if the gate accepts it.

        The policy's cameras' latest images, side by side; none until each of them has sent one."""
        policy, q = self.policy, self.qpos
        cams = policy.cfg.cameras if policy is not None else ("overview",)
        views = [self.images.get(c) for c in cams]
        if any(v is None for v in views) or q is None or not self.instruction:
            return None
        t_obs = min(q[0], *(v[0] for v in views))
        if not self.gate.accepts(t_obs, now, self.episode_start, self.sched.next_request_time()):
            return None
        image = views[0][1] if len(views) == 1 else np.concatenate([v[1] for v in views], axis=1)
        return {"image": image, "qpos": q[1], "instruction": self.instruction}, t_obs

    def _on_timer(self) -> None:
        self._update_health()
        self._publish_status()

    def _update_health(self) -> None:
        """The node's view of itself for /diagnostics (executor thread only)."""
        h = self.diag.health
        worst = max((q["version"] for q in self.quarantined), default=-1)
        if self.policy is None:
            h.set_status(ERROR, "no valid policy: waiting for an announcement from the learner")
        elif self.version < worst:
            gone = ", ".join(f"v{q['version']} ({q['reason']})" for q in self.quarantined)
            h.set_status(WARN, f"running v{self.version}: fell back, quarantined {gone}")
        elif self.active and (silent := [c for c in self.policy.cfg.cameras if c not in self.images]):
            # e.g. a wrist-camera policy on a robot whose camera_driver publishes the overview only
            h.set_status(WARN, f"v{self.version} sees {list(self.policy.cfg.cameras)}: no image yet from "
                               f"{', '.join(camera_topic(c) for c in silent)} (camera_driver's cameras parameter)")
        else:
            h.set_status(OK, f"running v{self.version}")
        h.set_value("version", self.version)
        h.set_value("sha256", self.sha256 or "")
        h.set_value("quarantined", ",".join(f"v{q['version']}:{q['reason']}" for q in self.quarantined))
        h.set_value("chunks", self.sched.chunks)
        h.set_value("chunk_mode", self.sched.mode)
        h.set_value("active", self.active)
        h.set_value("cameras", ",".join(self.policy.cfg.cameras) if self.policy is not None else "")

    def _publish_status(self) -> None:
        ms = float(np.mean(self.infer_ms)) if self.infer_ms else None
        delay = float(np.mean(self.delay_ms)) if self.delay_ms else None
        self.status_pub.publish(json_msg(
            version=self.version, sha256=self.sha256, chunks=self.sched.chunks,
            inference_ms=ms, obs_to_chunk_ms=delay, chunk_mode=self.sched.mode, stale_chunks=self.sched.stale,
            active=self.active, engaged=self.engaged, rejected=self.rejected[-3:],
            rejected_counts=self.diag.rejected_counts(), quarantined=self.quarantined,
        ))

    def close(self) -> None:
        """Stop the inference thread and the loader worker; idempotent."""
        if self._closed:
            return
        self._closed = True
        self.stop.set()
        self.thread.join(timeout=2.0)
        self.loader.close(timeout=2.0)

    def destroy_node(self):
        self.close()
        return super().destroy_node()


def main(args=None) -> int:
    # Single-threaded executor: callbacks only cache and queue; inference and loading have their own threads.
    return run_node(VLAPolicyNode, args, threads=1)


if __name__ == "__main__":
    raise SystemExit(main())
