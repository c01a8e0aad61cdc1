"""arm_driver: the command mux + the arm (MuJoCo sim or a ros2_control trajectory controller).

Subscribes ``policy/joint_trajectory``, ``teleop/joint_trajectory``, ``teleop/engaged``, ``episode/event``;
publishes ``joint_states``, ``cmd/joint_trajectory`` (each accepted command, tag in header.frame_id),
``cmd/source`` (on change), and in sim ``sim/state`` (world mirror for camera/operator) + ``episode/reward``.
"""

from __future__ import annotations

import time

import numpy as np
from builtin_interfaces.msg import Duration
from rclpy.node import Node
from sensor_msgs.msg import JointState
from std_msgs.msg import Bool, Float32, Float64MultiArray, String
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory

from lwd.control.health import ERROR, OK, WARN, Rejected, reorder_joints
from lwd.control.mux import CommandError, CommandMux, Source
from lwd.nodes.common import (
    LATCHED_QOS,
    RELIABLE_QOS,
    SENSOR_QOS,
    HealthPublisher,
    joint_state,
    numpy_to_trajectory,
    parse_json,
    run_node,
    trajectory_to_numpy,
)
from lwd.robot import JOINT_NAMES, N_JOINTS


class ArmDriver(Node):
    def __init__(self) -> None:
        super().__init__("arm_driver")
        self.backend = self.declare_parameter("backend", "sim").value
        self.rate = float(self.declare_parameter("control_rate_hz", 50.0).value)
        self.sim_state_every = int(self.declare_parameter("sim_state_every", 2).value)
        v_arm = float(self.declare_parameter("max_velocity_arm", 3.0).value)
        v_grip = float(self.declare_parameter("max_velocity_gripper", 10.0).value)
        image_size = int(self.declare_parameter("image_size", 64).value)
        controller_topic = self.declare_parameter("controller_topic", "arm_controller/joint_trajectory").value
        hw_state_topic = self.declare_parameter("hardware_state_topic", "hardware/joint_states").value
        if self.backend not in ("sim", "real"):
            raise ValueError(f"backend must be 'sim' or 'real', got {self.backend!r}")
        if self.rate <= 0:
            raise ValueError("control_rate_hz must be positive")
        self.dt = 1.0 / self.rate
        self.joint_names = list(JOINT_NAMES)
        vmax = np.array([v_grip if n.endswith("gripper") else v_arm for n in self.joint_names])

        self.world = None
        self.measured = np.zeros(N_JOINTS)
        self.velocity = np.zeros(N_JOINTS)
        if self.backend == "sim":
            from lwd.sim.world import SimWorld

            self.world = SimWorld(image_size=image_size, render=False)
            self.world.reset("pick_place", 0)
            low, high = self.world.joint_low, self.world.joint_high
            self.measured = self.world.qpos14()
            self.state_pub = self.create_publisher(Float64MultiArray, "sim/state", SENSOR_QOS)
            self.reward_pub = self.create_publisher(Float32, "episode/reward", RELIABLE_QOS)
        else:
            low = np.asarray(self.declare_parameter("joint_low", [-3.14] * N_JOINTS).value)
            high = np.asarray(self.declare_parameter("joint_high", [3.14] * N_JOINTS).value)
            self.hw_seen = False
            self.controller_pub = self.create_publisher(JointTrajectory, controller_topic, RELIABLE_QOS)
            self.create_subscription(JointState, hw_state_topic, self._on_hw_state, SENSOR_QOS)
        self.mux = CommandMux(N_JOINTS, low, high, vmax)
        self.mux.reset(self.measured)

        self.low, self.high = np.asarray(low, dtype=np.float64), np.asarray(high, dtype=np.float64)
        self.diag = HealthPublisher(self)
        self.max_excess = 0.0
        self.diag.health.set_value("backend", self.backend)
        if self.backend == "real":
            self.diag.health.set_status(WARN, f"waiting for hardware joint states on {hw_state_topic}")

        self.js_pub = self.create_publisher(JointState, "joint_states", SENSOR_QOS)
        self.cmd_pub = self.create_publisher(JointTrajectory, "cmd/joint_trajectory", RELIABLE_QOS)
        self.source_pub = self.create_publisher(String, "cmd/source", LATCHED_QOS)
        self.create_subscription(JointTrajectory, "policy/joint_trajectory",
                                 lambda m: self._on_cmd(m, Source.POLICY), RELIABLE_QOS)
        self.create_subscription(JointTrajectory, "teleop/joint_trajectory",
                                 lambda m: self._on_cmd(m, Source.TELEOP), RELIABLE_QOS)
        self.create_subscription(Bool, "teleop/engaged", self._on_engaged, LATCHED_QOS)
        self.create_subscription(String, "episode/event", self._on_event, RELIABLE_QOS)
        self.create_service(Trigger, "~/hold", self._on_hold)
        self.episode_active = False
        self.rewarded = False
        self.ticks = 0
        self.last_source: str | None = None
        self.create_timer(self.dt, self._tick)
        self.get_logger().info(f"arm_driver up: backend={self.backend} rate={self.rate:.0f} Hz")

    # -- inputs ---------------------------------------------------------------------------------------------
    def _on_cmd(self, msg: JointTrajectory, source: Source) -> None:
        now = time.monotonic()
        start = self._command_start(msg, source, now)
        try:
            pos, times = trajectory_to_numpy(msg, self.joint_names)
            accepted = self.mux.submit(source, pos, times, msg.header.frame_id or source.value, now, start=start)
        except (ValueError, CommandError) as e:
            self.mux.rejected += 1
            reason = e.reason if isinstance(e, Rejected) else "invalid_command"
            self.diag.reject(reason, f"{source.value} command: {e}")
            return
        if ((pos < self.low) | (pos > self.high)).any():
            # Not an error: targets are clipped into the joint limits (and rate-limited) by the mux.
            self.diag.health.count("clipped_out_of_limits")
        if accepted:
            if start is not None:  # record what is left of it, timed from now like every other command
                _drop_elapsed(msg, now - start)
            msg.header.stamp = self.get_clock().now().to_msg()
            msg.header.frame_id = msg.header.frame_id or source.value
            self.cmd_pub.publish(msg)

    def _command_start(self, msg: JointTrajectory, source: Source, now: float) -> float | None:
        """A policy chunk runs on the time base of its observation (header.stamp, see lwd.control.chunking): that
        stamp on the mux's monotonic clock. None (= from receipt) for teleop and unstamped commands."""
        ns = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        if source != Source.POLICY or ns <= 0:
            return None
        return now - (self.get_clock().now().nanoseconds - ns) * 1e-9

    def _on_engaged(self, msg: Bool) -> None:
        self.mux.set_teleop_engaged(bool(msg.data))

    def _on_event(self, msg: String) -> None:
        try:
            ev = parse_json(msg)
        except ValueError as e:
            self.diag.reject("bad_event", f"episode/event: {e}")
            return
        kind = ev.get("event")
        if kind == "start":
            if self.world is not None:
                try:
                    self.world.reset(str(ev["task"]), int(ev["seed"]))
                except (KeyError, ValueError, TypeError) as e:
                    self.diag.reject("bad_event", f"cannot reset sim for {ev}: {e}")
                    return
                self.measured = self.world.qpos14()
                self._publish_sim_state()
            self.mux.reset(self.measured)
            self.mux.set_teleop_engaged(False)
            self.episode_active, self.rewarded = True, False
        elif kind == "end":
            self.episode_active = False
            self.mux.reset(self.measured)

    def _on_hold(self, request, response):
        self.mux.reset(self.measured)
        response.success, response.message = True, "holding current position"
        return response

    def _on_hw_state(self, msg: JointState) -> None:
        try:
            pos = reorder_joints(msg.name, msg.position, self.joint_names)
            vel = (reorder_joints(msg.name, msg.velocity, self.joint_names, what="velocity")
                   if len(msg.velocity) == len(msg.name) else np.zeros_like(pos))
        except Rejected as e:
            # A NaN or garbled reading must never become the mux's hold position.
            self.diag.reject(e.reason, f"hardware joint_states: {e}")
            return
        self.measured, self.velocity = pos, vel
        if not self.hw_seen:
            self.hw_seen = True
            self.mux.reset(pos)
            self.diag.health.set_status(OK, "hardware joint states received")

    # -- control loop ---------------------------------------------------------------------------------------
    def _publish_sim_state(self) -> None:
        self.state_pub.publish(Float64MultiArray(data=self.world.get_state().tolist()))

    def _tick(self) -> None:
        now = time.monotonic()
        target = self.mux.tick(now, self.measured, self.dt)
        stamp = self.get_clock().now().to_msg()
        if self.world is not None:
            try:
                self.world.apply(target, self.dt)
            except ValueError as e:  # the mux only emits finite, clipped targets; never let the loop die
                self.diag.health.set_status(ERROR, f"sim step failed: {e}")
                return
            self.measured, self.velocity = self.world.qpos14(), self.world.qvel14()
            excess = float(np.max(np.maximum(self.measured - self.high, self.low - self.measured)))
            if excess > self.max_excess:
                self.max_excess = excess
                self.diag.health.set_value("max_limit_excess", f"{excess:.4f}")
            self.ticks += 1
            if self.ticks % self.sim_state_every == 0:
                self._publish_sim_state()
            if self.episode_active and not self.rewarded and self.world.success():
                self.rewarded = True
                self.reward_pub.publish(Float32(data=1.0))
        elif self.hw_seen:
            self.controller_pub.publish(numpy_to_trajectory(target[None], self.dt, self.joint_names, "lwd", stamp))
        self.js_pub.publish(joint_state(self.joint_names, self.measured, self.velocity, stamp))
        src = self.mux.source.value
        if src != self.last_source:
            self.last_source = src
            self.source_pub.publish(String(data=src))
            self.diag.health.set_value("source", src)
        self.diag.health.set_value("episode_active", self.episode_active)
        self.diag.health.set_value("ticks", self.ticks)

    def close(self) -> None:
        if self.world is not None:
            self.world.close()


def _drop_elapsed(msg: JointTrajectory, elapsed: float) -> None:
    """Remove the points whose slot ended ``elapsed`` s after the trajectory's start; time the rest from now."""
    points = []
    for p in msg.points:
        t = p.time_from_start.sec + 1e-9 * p.time_from_start.nanosec - elapsed
        if t > 0:
            ns = round(t * 1e9)
            p.time_from_start = Duration(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)
            points.append(p)
    msg.points = points


def main(args=None) -> int:
    return run_node(ArmDriver, args, threads=1)


if __name__ == "__main__":
    raise SystemExit(main())
