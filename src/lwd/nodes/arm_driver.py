"""arm_driver: the command mux + the arm (MuJoCo sim or a ros2_control trajectory controller, both in
:mod:`lwd.control.arm_backend`; this node only translates topics and ticks the mux).

Subscribes ``policy/joint_trajectory``, ``teleop/joint_trajectory``, ``teleop/engaged``, ``episode/event``;
publishes ``joint_states``, ``cmd/joint_trajectory`` (each accepted command, tag in header.frame_id),
``cmd/source`` (on change), and in sim ``sim/state`` (world mirror for camera/operator), ``episode/reward`` and a
``subgoal`` ``episode/event`` whenever the episode reaches one more subgoal (an item placed).
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

from lwd.control.arm_backend import ArmBackend, RealArmBackend, SimArmBackend
from lwd.control.health import ERROR, OK, WARN, Rejected
from lwd.control.mux import CommandError, CommandMux, Source
from lwd.nodes.common import (
    LATCHED_QOS,
    RELIABLE_QOS,
    SENSOR_QOS,
    HealthPublisher,
    joint_state,
    json_msg,
    numpy_to_trajectory,
    parse_json,
    run_node,
    trajectory_to_numpy,
)
from lwd.robot import JOINT_NAMES, N_JOINTS


class ArmDriver(Node):
    def __init__(self) -> None:
        super().__init__("arm_driver")
        backend = self.declare_parameter("backend", "sim").value
        self.rate = float(self.declare_parameter("control_rate_hz", 50.0).value)
        self.sim_state_every = int(self.declare_parameter("sim_state_every", 2).value)
        v_arm = float(self.declare_parameter("max_velocity_arm", 3.0).value)
        v_grip = float(self.declare_parameter("max_velocity_gripper", 10.0).value)
        image_size = int(self.declare_parameter("image_size", 64).value)
        controller_topic = self.declare_parameter("controller_topic", "arm_controller/joint_trajectory").value
        hw_state_topic = self.declare_parameter("hardware_state_topic", "hardware/joint_states").value
        if backend not in ("sim", "real"):
            raise ValueError(f"backend must be 'sim' or 'real', got {backend!r}")
        if self.rate <= 0:
            raise ValueError("control_rate_hz must be positive")
        self.dt = 1.0 / self.rate
        self.joint_names = list(JOINT_NAMES)
        vmax = np.array([v_grip if n.endswith("gripper") else v_arm for n in self.joint_names])

        self.diag = HealthPublisher(self)
        self.diag.health.set_value("backend", backend)
        if backend == "sim":
            self.arm: ArmBackend = SimArmBackend(image_size=image_size)
            self.state_pub = self.create_publisher(Float64MultiArray, "sim/state", SENSOR_QOS)
            self.reward_pub = self.create_publisher(Float32, "episode/reward", RELIABLE_QOS)
            self.event_pub = self.create_publisher(String, "episode/event", RELIABLE_QOS)
        else:
            low = self.declare_parameter("joint_low", [-3.14] * N_JOINTS).value
            high = self.declare_parameter("joint_high", [3.14] * N_JOINTS).value
            self.controller_pub = self.create_publisher(JointTrajectory, controller_topic, RELIABLE_QOS)
            self.arm = RealArmBackend(low, high, self._send_to_controller, self.joint_names)
            self.create_subscription(JointState, hw_state_topic, self._on_hw_state, SENSOR_QOS)
            self.diag.health.set_status(WARN, f"waiting for hardware joint states on {hw_state_topic}")
        self.mux = CommandMux(N_JOINTS, self.arm.low, self.arm.high, vmax)
        self.mux.reset(self.arm.measured()[0])
        self.reported_excess = 0.0

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
        self.get_logger().info(f"arm_driver up: backend={backend} rate={self.rate:.0f} Hz")

    # -- inputs ---------------------------------------------------------------------------------------------
    def _on_cmd(self, msg: JointTrajectory, source: Source) -> None:
        now = time.monotonic()
        start = self._command_start(msg, source, now)
        try:
            pos, times = trajectory_to_numpy(msg, self.joint_names)
            accepted = self.mux.submit(source, pos, times, msg.header.frame_id or source.value, now, start=start)
        except (ValueError, CommandError) as e:
            reason = e.reason if isinstance(e, Rejected) else "invalid_command"
            self.diag.reject(reason, f"{source.value} command: {e}")
            return
        if ((pos < self.arm.low) | (pos > self.arm.high)).any():
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
            try:
                self.arm.reset(ev)
            except Rejected as e:
                self.diag.reject(e.reason, f"episode/event: {e}")
                return
            self._publish_sim_state()
            self.mux.reset(self.arm.measured()[0])
            self.mux.set_teleop_engaged(False)
            self.episode_active, self.rewarded = True, False
        elif kind == "end":
            self.episode_active = False
            self.mux.reset(self.arm.measured()[0])

    def _on_hold(self, request, response):
        self.mux.reset(self.arm.measured()[0])
        response.success, response.message = True, "holding current position"
        return response

    def _on_hw_state(self, msg: JointState) -> None:
        try:
            first = self.arm.update(msg.name, msg.position, msg.velocity)
        except Rejected as e:
            self.diag.reject(e.reason, f"hardware joint_states: {e}")
            return
        if first:
            self.mux.reset(self.arm.measured()[0])
            self.diag.health.set_status(OK, "hardware joint states received")

    def _send_to_controller(self, target: np.ndarray, dt: float) -> None:
        stamp = self.get_clock().now().to_msg()
        self.controller_pub.publish(numpy_to_trajectory(target[None], dt, self.joint_names, "lwd", stamp))

    # -- control loop ---------------------------------------------------------------------------------------
    def _publish_sim_state(self) -> None:
        state = self.arm.state()
        if state is not None:
            self.state_pub.publish(Float64MultiArray(data=state.tolist()))

    def _tick(self) -> None:
        now = time.monotonic()
        target = self.mux.tick(now, self.arm.measured()[0], self.dt)
        try:
            self.arm.apply(target, self.dt)
        except ValueError as e:  # the mux only emits finite, clipped targets; never let the loop die
            self.diag.health.set_status(ERROR, f"{self.arm.name} step failed: {e}")
            return
        position, velocity = self.arm.measured()
        if self.arm.max_limit_excess > self.reported_excess:
            self.reported_excess = self.arm.max_limit_excess
            self.diag.health.set_value("max_limit_excess", f"{self.reported_excess:.4f}")
        self.ticks += 1
        if self.ticks % self.sim_state_every == 0:
            self._publish_sim_state()
        if self.episode_active:
            for k in self.arm.new_subgoals():
                self.event_pub.publish(json_msg(event="subgoal", progress=k))
        if self.episode_active and not self.rewarded and self.arm.success():
            self.rewarded = True
            self.reward_pub.publish(Float32(data=1.0))
        self.js_pub.publish(joint_state(self.joint_names, position, velocity, self.get_clock().now().to_msg()))
        src = self.mux.source.value
        if src != self.last_source:
            self.last_source = src
            self.source_pub.publish(String(data=src))
            self.diag.health.set_value("source", src)
        self.diag.health.set_value("episode_active", self.episode_active)
        self.diag.health.set_value("ticks", self.ticks)
        self.diag.health.set_value("stale_commands", self.mux.stale)

    def close(self) -> None:
        self.arm.close()


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
