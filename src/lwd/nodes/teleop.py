"""teleop: the operator station of one robot — starts/ends episodes, takes over and corrects, marks outcomes.

Backends: ``scripted`` (sim: a scripted operator watching a mirror of the world, see lwd.sim.operator),
``keyboard`` (a human at a terminal: n = new episode, t = take over, r = release, s = success, f = failure,
j/k = select joint, +/- = jog it), ``none`` (episodes driven from outside). Takeover always wins: the arm's mux
switches to ``teleop/joint_trajectory`` on its next tick.
"""

from __future__ import annotations

import select
import sys
import time

import numpy as np
from rclpy.node import Node
from sensor_msgs.msg import JointState
from std_msgs.msg import Bool, Float32, Float64MultiArray, String
from trajectory_msgs.msg import JointTrajectory

from lwd.nodes.common import (
    LATCHED_QOS,
    LEARNER_STATUS_TOPIC,
    RELIABLE_QOS,
    SENSOR_QOS,
    json_msg,
    numpy_to_trajectory,
    parse_json,
    run_node,
)
from lwd.robot import CONTROL_DT, JOINT_NAMES


def episode_seed(base_seed: int, robot: str, seq: int) -> int:
    """Distinct, reproducible seeds per robot and episode."""
    return (base_seed * 1_000_003 + sum(ord(c) * 31**i for i, c in enumerate(robot)) * 7919 + seq) % (2**31 - 1)


class Teleop(Node):
    def __init__(self) -> None:
        super().__init__("teleop")
        self.robot = self.declare_parameter("robot", self.get_namespace().strip("/") or "robot0").value
        self.backend = self.declare_parameter("backend", "scripted").value
        self.tasks = list(self.declare_parameter("tasks", ["pick_place", "restock3"]).value)
        self.episodes_per_round = int(self.declare_parameter("episodes_per_round", 0).value)
        self.rounds = int(self.declare_parameter("rounds", 0).value)
        self.base_seed = int(self.declare_parameter("seed", 0).value)
        self.time_limit_scale = float(self.declare_parameter("time_limit_scale", 1.0).value)
        self.settle_s = float(self.declare_parameter("settle_s", 0.5).value)
        self.intervene = bool(self.declare_parameter("intervene", True).value)
        self.wait_subscribers = int(self.declare_parameter("wait_for_subscribers", 4).value)
        stall_s = float(self.declare_parameter("stall_s", 3.0).value)
        max_corr = float(self.declare_parameter("max_correction_s", 5.0).value)
        max_int = int(self.declare_parameter("max_interventions", 3).value)
        if self.backend not in ("scripted", "keyboard", "none"):
            raise ValueError(f"backend must be scripted, keyboard or none, got {self.backend!r}")
        if not self.tasks:
            raise ValueError("tasks must name at least one task")
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

        self.world = self.operator = None
        self.sim_state: np.ndarray | None = None
        if self.backend == "scripted":
            from lwd.sim.expert import ScriptedExpert
            from lwd.sim.operator import ScriptedOperator
            from lwd.sim.world import SimWorld

            self.world = SimWorld(render=False)
            self.world.reset(self.tasks[0], 0)
            self.expert = ScriptedExpert(self.world, noise=0.0, seed=self.base_seed)
            self.operator = ScriptedOperator(self.world, self.expert, stall_s=stall_s, max_correction_s=max_corr,
                                             max_interventions=max_int)
            self.create_subscription(Float64MultiArray, "sim/state", self._on_sim_state, SENSOR_QOS)

        self.seq = 0
        self.episode: dict | None = None
        self.engaged = False
        self.policy_version = -1
        self.learner_round = 0
        self.learner_version = -1
        self.rewarded_at: float | None = None
        self.qpos: np.ndarray | None = None
        self.jog_joint = 0
        self.finished = False
        self.engaged_pub.publish(Bool(data=False))
        self.create_timer(CONTROL_DT, self._tick)
        self.get_logger().info(f"teleop up: backend={self.backend} robot={self.robot} tasks={self.tasks}")

    # -- inputs -------------------------------------------------------------------------------------------------
    def _on_reward(self, msg: Float32) -> None:
        if self.episode is not None and msg.data > 0 and self.rewarded_at is None:
            self.rewarded_at = time.monotonic()

    def _on_status(self, msg: String) -> None:
        try:
            self.policy_version = int(parse_json(msg).get("version", -1))
        except (ValueError, TypeError):
            pass

    def _on_learner(self, msg: String) -> None:
        try:
            d = parse_json(msg)
            self.learner_round, self.learner_version = int(d["round"]), int(d["version"])
        except (ValueError, KeyError, TypeError):
            pass

    def _on_joints(self, msg: JointState) -> None:
        try:
            idx = [list(msg.name).index(n) for n in self.joint_names]
            self.qpos = np.asarray(msg.position)[idx]
        except (ValueError, IndexError):
            pass

    def _on_sim_state(self, msg: Float64MultiArray) -> None:
        self.sim_state = np.asarray(msg.data)

    # -- episode lifecycle --------------------------------------------------------------------------------------
    def _ready(self) -> bool:
        if self.event_pub.get_subscription_count() < self.wait_subscribers or self.policy_version < 0:
            return False
        if self.backend == "scripted" and self.sim_state is None:
            return False
        if self.episodes_per_round > 0 and self.seq > 0 and self.seq % self.episodes_per_round == 0:
            # Synchronous rounds: the next round starts once the learner finished the round this robot contributed
            # to, and this robot runs the learner's current version (the same one if the gate rejected the update).
            done = self.seq // self.episodes_per_round
            return self.learner_round >= done and self.policy_version >= self.learner_version
        return True

    def start_episode(self) -> None:
        if self.rounds > 0 and self.episodes_per_round > 0 and self.seq >= self.rounds * self.episodes_per_round:
            if not self.finished:
                self.finished = True
                self.get_logger().info(f"all {self.rounds} rounds done")
            return
        task = self.tasks[self.seq % len(self.tasks)]
        seed = episode_seed(self.base_seed, self.robot, self.seq)
        if self.world is not None:
            self.world.reset(task, seed)
            instruction = self.world.instruction
            self.operator.reset()
            self.time_limit = self.world.task.time_limit_s * self.time_limit_scale
        else:
            from lwd.sim.tasks import TASKS

            spec = TASKS.get(task)
            instruction = spec.instructions[0] if spec is not None else task.replace("_", " ")
            self.time_limit = (spec.time_limit_s if spec is not None else 120.0) * self.time_limit_scale
        episode_id = f"{self.robot}-{time.strftime('%Y%m%d-%H%M%S')}-{self.seq:04d}"
        self.episode = {"episode_id": episode_id, "robot": self.robot, "task": task, "instruction": instruction,
                        "seed": seed, "policy_version": self.policy_version, "t0": time.monotonic()}
        self.seq += 1
        self.rewarded_at = None
        self.sim_state = None
        self.instr_pub.publish(String(data=instruction))
        self.event_pub.publish(json_msg(event="start", **{k: v for k, v in self.episode.items() if k != "t0"}))
        self.get_logger().info(f"episode {episode_id} start: {task!r} seed={seed} v{self.policy_version}")

    def end_episode(self, outcome: str) -> None:
        if self.engaged:
            self._set_engaged(False, announce=False)
        self.event_pub.publish(json_msg(event="end", outcome=outcome, episode_id=self.episode["episode_id"]))
        self.get_logger().info(f"episode {self.episode['episode_id']} end: {outcome}")
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
        if self.backend != "scripted":
            return
        if self.episode is None:
            if self._ready():
                self.start_episode()
            return
        now = time.monotonic()
        t = now - self.episode["t0"]
        if self.rewarded_at is not None and now - self.rewarded_at >= self.settle_s:
            self.end_episode("success")
            return
        if t > self.time_limit:
            self.end_episode("failure")
            return
        if self.sim_state is None or not self.intervene or self.rewarded_at is not None:
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
            self.start_episode()
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
