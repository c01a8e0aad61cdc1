"""teleop: the operator station of one robot — starts/ends episodes, takes over and corrects, marks outcomes.

Backends: ``scripted`` (sim: a scripted operator watching a mirror of the world, see lwd.sim.operator),
``keyboard`` (a human at a terminal: n = new episode, t = take over, r = release, s = success, f = failure,
j/k = select joint, +/- = jog it), ``none`` (episodes driven from outside). Takeover always wins: the arm's mux
switches to ``teleop/joint_trajectory`` on its next tick.

When episodes start and end (the plan, synchronous rounds, the recorder gate) is decided by
:class:`lwd.control.episodes.EpisodeScheduler`; this node feeds it and logs why it waits.
"""

from __future__ import annotations

import select
import sys
import time
from dataclasses import asdict

import numpy as np
from rclpy.node import Node
from sensor_msgs.msg import JointState
from std_msgs.msg import Bool, Float32, Float64MultiArray, String
from trajectory_msgs.msg import JointTrajectory

from lwd.config import from_params, param_defaults
from lwd.control.episodes import EpisodeScheduler
from lwd.control.health import OK, WARN, Rejected, check_finite_vector, reorder_joints
from lwd.nodes.common import (
    LATCHED_QOS,
    LEARNER_STATUS_TOPIC,
    RECORDER_STATUS_TOPIC,
    RELIABLE_QOS,
    SENSOR_QOS,
    HealthPublisher,
    json_msg,
    numpy_to_trajectory,
    parse_json,
    run_node,
)
from lwd.robot import CONTROL_DT, JOINT_NAMES
from lwd.sim.operator_config import OperatorConfig
from lwd.sim.tasks import default_tasks


class Teleop(Node):
    def __init__(self) -> None:
        super().__init__("teleop")
        self.robot = self.declare_parameter("robot", self.get_namespace().strip("/") or "robot0").value
        self.backend = self.declare_parameter("backend", "scripted").value
        self.tasks = list(self.declare_parameter("tasks", list(default_tasks())).value)
        episodes_per_round = int(self.declare_parameter("episodes_per_round", 0).value)
        rounds = int(self.declare_parameter("rounds", 0).value)
        sync_rounds = bool(self.declare_parameter("sync_rounds", True).value)
        self.base_seed = int(self.declare_parameter("seed", 0).value)
        self.time_limit_scale = float(self.declare_parameter("time_limit_scale", 1.0).value)
        settle_s = float(self.declare_parameter("settle_s", 0.5).value)
        self.intervene = bool(self.declare_parameter("intervene", True).value)
        wait_subscribers = int(self.declare_parameter("wait_for_subscribers", 4).value)
        require_recorder = bool(self.declare_parameter("require_recorder", True).value)
        recorder_timeout_s = float(self.declare_parameter("recorder_timeout_s", 5.0).value)
        # every OperatorConfig field is a parameter with the dataclass default (one source of defaults)
        operator_cfg = from_params(OperatorConfig, {name: self.declare_parameter(name, default).value
                                                    for name, default in param_defaults(OperatorConfig).items()})
        if self.backend not in ("scripted", "keyboard", "none"):
            raise ValueError(f"backend must be scripted, keyboard or none, got {self.backend!r}")
        self.scheduler = EpisodeScheduler(
            self.robot, self.tasks, seed=self.base_seed, episodes_per_round=episodes_per_round, rounds=rounds,
            sync=sync_rounds, min_subscribers=wait_subscribers, require_recorder=require_recorder,
            recorder_timeout_s=recorder_timeout_s, settle_s=settle_s)
        if self.backend == "scripted":
            from lwd.sim.tasks import TASKS

            unknown = [t for t in self.tasks if t not in TASKS]
            if unknown:  # fail at start-up, not mid-fleet inside a timer callback
                raise ValueError(f"unknown sim tasks {unknown}; known: {sorted(TASKS)}")
        self.joint_names = list(JOINT_NAMES)

        self.event_pub = self.create_publisher(String, "episode/event", RELIABLE_QOS)
        self.instr_pub = self.create_publisher(String, "task/instruction", LATCHED_QOS)
        self.engaged_pub = self.create_publisher(Bool, "teleop/engaged", LATCHED_QOS)
        self.traj_pub = self.create_publisher(JointTrajectory, "teleop/joint_trajectory", RELIABLE_QOS)
        self.create_subscription(Float32, "episode/reward", self._on_reward, RELIABLE_QOS)
        self.create_subscription(String, "policy/status", self._on_status, LATCHED_QOS)
        self.create_subscription(String, LEARNER_STATUS_TOPIC, self._on_learner, LATCHED_QOS)
        self.create_subscription(JointState, "joint_states", self._on_joints, SENSOR_QOS)
        self.create_subscription(String, RECORDER_STATUS_TOPIC, self._on_recorder, RELIABLE_QOS)
        self.diag = HealthPublisher(self)
        self.diag.health.set_value("backend", self.backend)

        self.world = self.operator = None
        self.sim_state: np.ndarray | None = None
        if self.backend == "scripted":
            from lwd.sim.expert import ScriptedExpert
            from lwd.sim.operator import ScriptedOperator
            from lwd.sim.world import SimWorld

            self.world = SimWorld(render=False)
            self.world.reset(self.tasks[0], 0)
            self.expert = ScriptedExpert(self.world, noise=0.0, seed=self.base_seed)
            self.operator = ScriptedOperator(self.world, self.expert, **asdict(operator_cfg))
            self.create_subscription(Float64MultiArray, "sim/state", self._on_sim_state, SENSOR_QOS)

        self.episode: dict | None = None
        self.engaged = False
        self.qpos: np.ndarray | None = None
        self.jog_joint = 0
        self.wait_logged: tuple[str, float] | None = None
        self.engaged_pub.publish(Bool(data=False))
        self.create_timer(CONTROL_DT, self._tick)
        self.get_logger().info(f"teleop up: backend={self.backend} robot={self.robot} tasks={self.tasks}")

    # -- inputs -------------------------------------------------------------------------------------------------
    @property
    def policy_version(self) -> int:
        return self.scheduler.policy_version

    def _on_reward(self, msg: Float32) -> None:
        self.scheduler.on_reward(time.monotonic(), float(msg.data))

    def _on_status(self, msg: String) -> None:
        try:
            self.scheduler.on_policy_version(int(parse_json(msg).get("version", -1)))
        except (ValueError, TypeError) as e:
            self.diag.reject("bad_status", f"policy/status: {e}")

    def _on_learner(self, msg: String) -> None:
        try:
            d = parse_json(msg)
            self.scheduler.on_learner(int(d["round"]), int(d["version"]))
        except (ValueError, KeyError, TypeError) as e:
            self.diag.reject("bad_status", f"learner status: {e}")

    def _on_recorder(self, msg: String) -> None:
        try:
            self.scheduler.on_recorder(time.monotonic(), parse_json(msg))
        except ValueError as e:
            self.diag.reject("bad_status", f"recorder status: {e}")

    def _on_joints(self, msg: JointState) -> None:
        try:
            self.qpos = reorder_joints(msg.name, msg.position, self.joint_names)
        except Rejected as e:
            self.diag.reject(e.reason, f"joint_states: {e}")

    def _on_sim_state(self, msg: Float64MultiArray) -> None:
        try:
            n = len(msg.data)  # any scene's state (the store-scene tasks run on a second model)
            size = n if n in self.world.scene_state_sizes() else self.world.state_size
            self.sim_state = check_finite_vector(msg.data, size, what="state")
        except Rejected as e:
            self.diag.reject(e.reason, f"sim/state: {e}")

    # -- episode lifecycle --------------------------------------------------------------------------------------
    def _wait_reason(self, now: float) -> str | None:
        reason = self.scheduler.wait_reason(now, self.event_pub.get_subscription_count())
        if reason is None and self.backend == "scripted" and self.sim_state is None:
            reason = "waiting for sim/state from the arm driver"
        # Say why the robot waits: when the reason changes, and every 30 s while it lasts.
        if reason is not None and (self.wait_logged is None or self.wait_logged[0] != reason
                                   or (now - self.wait_logged[1] > 30.0 and not self.scheduler.finished)):
            self.get_logger().info(f"not starting an episode: {reason}")
            self.wait_logged = (reason, now)
        self.diag.health.set_status(OK if reason is None else WARN, reason or "ready")
        return reason

    def start_episode(self) -> bool:
        now = time.monotonic()
        if self._wait_reason(now) is not None:
            return False
        spec = self.scheduler.next_episode()
        if self.world is not None:
            self.world.reset(spec.task, spec.seed)
            instruction = self.world.instruction
            self.operator.reset()
            time_limit = self.world.task.time_limit_s * self.time_limit_scale
        else:
            from lwd.sim.tasks import TASKS

            task = TASKS.get(spec.task)
            instruction = task.instructions[0] if task is not None else spec.task.replace("_", " ")
            time_limit = (task.time_limit_s if task is not None else 120.0) * self.time_limit_scale
        self.scheduler.start(spec, now, time_limit)
        self.episode = {"episode_id": spec.episode_id, "robot": self.robot, "task": spec.task,
                        "instruction": instruction, "seed": spec.seed, "policy_version": self.policy_version}
        self.wait_logged = None
        self.sim_state = None
        self.instr_pub.publish(String(data=instruction))
        self.event_pub.publish(json_msg(event="start", **self.episode))
        self.diag.health.count("episodes_started")
        self.diag.health.set_value("episode", spec.episode_id)
        self.get_logger().info(
            f"episode {spec.episode_id} start: {spec.task!r} seed={spec.seed} v{self.policy_version}")
        return True

    def end_episode(self, outcome: str, why: str = "") -> None:
        if self.engaged:
            self._set_engaged(False, announce=False)
        self.scheduler.end(outcome)
        self.event_pub.publish(json_msg(event="end", outcome=outcome, episode_id=self.episode["episode_id"]))
        text = f"episode {self.episode['episode_id']} end: {outcome}" + (f" ({why})" if why else "")
        # One call site per severity: rclpy raises "Logger severity cannot be changed between calls" when the same
        # line logs at another severity (an aborted episode followed by a normal one killed teleop).
        if outcome == "aborted":
            self.get_logger().warning(text)
        else:
            self.get_logger().info(text)
        self.diag.health.count(f"episodes_{outcome}")
        self.diag.health.set_value("episode", "")
        self.episode = None

    def _set_engaged(self, engaged: bool, announce: bool = True) -> None:
        self.engaged = engaged
        self.engaged_pub.publish(Bool(data=engaged))
        if announce and self.episode is not None:
            self.event_pub.publish(json_msg(event="takeover" if engaged else "release"))

    def _send(self, target: np.ndarray) -> None:
        self.traj_pub.publish(numpy_to_trajectory(np.asarray(target)[None], CONTROL_DT, self.joint_names, "teleop",
                                                  self.get_clock().now().to_msg()))

    # -- the control-rate tick ----------------------------------------------------------------------------------
    def _tick(self) -> None:
        if self.backend == "keyboard":
            self._keyboard()
            if self.episode is not None:
                end = self.scheduler.check_end(time.monotonic())
                if end is not None and end[0] == "aborted":  # the human marks success/failure, not the clock
                    self.end_episode(*end)
        if self.backend != "scripted":
            return
        if self.episode is None:
            self.start_episode()
            return
        now = time.monotonic()
        t = self.scheduler.elapsed(now)
        end = self.scheduler.check_end(now)
        if end is not None:
            self.end_episode(*end)
            return
        if self.sim_state is None or not self.intervene or self.scheduler.rewarded:
            return
        try:
            self.world.set_state(self.sim_state)
        except ValueError:
            return
        decision = self.operator.step(t)
        if decision.event == "takeover":
            self.get_logger().info(f"operator takes over at {t:.1f} s: {getattr(decision, 'reason', '')}")
            self._set_engaged(True)
        elif decision.event == "release":
            self._set_engaged(False)
        if decision.engaged and decision.action is not None:
            if not self.engaged:
                self._set_engaged(True)
            self._send(decision.action)

    def _keyboard(self) -> None:
        if not sys.stdin.isatty() or not select.select([sys.stdin], [], [], 0)[0]:
            return
        key = sys.stdin.read(1)
        if key == "n" and self.episode is None:
            if not self.start_episode():
                self.get_logger().warning("cannot start an episode yet (see the reason above)")
        elif key == "t" and not self.engaged:
            self._set_engaged(True)
            if self.qpos is not None:
                self._send(self.qpos)
        elif key == "r" and self.engaged:
            self._set_engaged(False)
        elif key in ("s", "f") and self.episode is not None:
            self.end_episode("success" if key == "s" else "failure")
        elif key in ("j", "k"):
            self.jog_joint = (self.jog_joint + (1 if key == "k" else -1)) % len(self.joint_names)
            self.get_logger().info(f"jog joint: {self.joint_names[self.jog_joint]}")
        elif key in ("+", "-") and self.engaged and self.qpos is not None:
            target = self.qpos.copy()
            target[self.jog_joint] += 0.05 if key == "+" else -0.05
            self._send(target)

    def close(self) -> None:
        if self.world is not None:
            self.world.close()


def main(args=None) -> int:
    return run_node(Teleop, args, threads=1)


if __name__ == "__main__":
    raise SystemExit(main())
