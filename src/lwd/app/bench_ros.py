"""ROS-graph figures of `lwd bench systems`: N simulated robots (robot.launch.py each, no learner) over local DDS.

* ``obs_to_cmd_ms``: the stamp of the observation a chunk was computed from (the older of its camera frame and joint
  state) -> the arm driver's mux accepting it (the stamp of its ``cmd/joint_trajectory``). A chunk is paired with its
  command by the last point (never dropped), and only chunks whose time base is such a stamp count (the first chunk
  after a hold is re-based to its arrival);
* ``control_rate_hz`` and ``missed_ticks`` (consecutive ``joint_states`` stamps more than 1.5 periods apart) per
  robot, while idle-running episodes and during a hot-swap;
* ``hotswap_s``: a ``/fleet/policy`` announcement -> every robot reporting the new version on ``policy/status``;
* ``recorder``: every recorded topic is also subscribed here (raw, with the recorder's QoS); after the robots stop,
  each message seen during an episode is looked up in that episode's bag (:func:`lwd.app.bench_io.count_drops`).

At large N the camera rate may be reduced (``camera_hz``, via a copy of the package's ``config/robot.yaml``); the
result records the rate used. The measuring node runs in this process; clocks are shared (one machine), so stamps
compare directly. :func:`start_robots` / :func:`stop_robots` are shared with :mod:`lwd.app.bench_scaling`.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from lwd.app.bench_io import bag_keys, count_drops, episode_bags, merge_drops, summarize_ticks

__all__ = ["measure_fleet", "camera_rate_hz", "with_camera_rate", "start_robots", "stop_robots"]

BASE_CAMERA_HZ = 10.0  # config/robot.yaml's camera_driver rate_hz


def _pct(xs) -> dict:
    a = np.asarray(list(xs), dtype=np.float64)
    if a.size == 0:
        return {"n": 0}
    return {"p50": float(np.percentile(a, 50)), "p99": float(np.percentile(a, 99)), "n": int(a.size)}


def camera_rate_hz(robots: int, budget_hz: float = 0.0, base_hz: float = BASE_CAMERA_HZ) -> float:
    """Per-robot camera rate: ``base_hz``, reduced so the fleet renders at most ``budget_hz`` frames/s in all
    (``budget_hz`` <= 0: never reduced)."""
    if budget_hz <= 0:
        return base_hz
    return min(base_hz, budget_hz / max(1, robots))


def with_camera_rate(params: dict, hz: float) -> dict:
    """A copy of a robot.yaml parameter dict with ``camera_driver``'s ``rate_hz`` set to ``hz``."""
    out = json.loads(json.dumps(params))
    cam = out.setdefault("/**/camera_driver", {}).setdefault("ros__parameters", {})
    cam["rate_hz"] = float(hz)
    return out


def _robot_config(work: Path, camera_hz: float, env: dict) -> Path:
    """A copy of the installed package's config/robot.yaml (found on ``env``'s AMENT_PREFIX_PATH, as launch finds
    it) with the camera rate set."""
    import yaml

    prefixes = [p for p in env.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
    found = [Path(p, "share", "lwd", "config", "robot.yaml") for p in prefixes]
    base = next((f for f in found if f.is_file()), None)
    if base is None:
        raise RuntimeError(f"no share/lwd/config/robot.yaml under AMENT_PREFIX_PATH {prefixes} (run make package)")
    path = work / "robot.yaml"
    path.write_text(yaml.safe_dump(with_camera_rate(yaml.safe_load(base.read_text()), camera_hz)))
    return path


def start_robots(root: Path, names: list[str], work: Path, env: dict, camera_hz: float = BASE_CAMERA_HZ,
                 extra: tuple[str, ...] = ()) -> tuple[list[subprocess.Popen], list]:
    """One ``robot.launch.py`` process group per robot on store ``root`` (no learner), camera at ``camera_hz``."""
    config = _robot_config(work, camera_hz, env)
    procs, logs = [], []
    for i, r in enumerate(names):
        logs.append(open(work / f"{r}.log", "w"))
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "lwd.app.launch_runner", "robot.launch.py", f"robot:={r}", f"store:={root}",
             "intervene:=false", "tasks:=pick_place", f"seed:={1000 * i}", f"config:={config}", *extra],
            env=env, stdout=logs[-1], stderr=subprocess.STDOUT, start_new_session=True))
    return procs, logs


def stop_robots(procs: list[subprocess.Popen], logs: list) -> None:
    """SIGINT each robot's process group (nodes close their bags), SIGKILL after 40 s."""
    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGINT)
    for p in procs:
        try:
            p.wait(40)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(10)
    for f in logs:
        f.close()


class RosSession:
    """rclpy context + one node + a single-threaded executor on ``domain`` (ROS_DOMAIN_ID restored on close)."""

    def __init__(self, domain: int, name: str) -> None:
        import rclpy
        from rclpy.node import Node

        self.old_domain = os.environ.get("ROS_DOMAIN_ID")
        os.environ["ROS_DOMAIN_ID"] = str(domain)
        self.ctx = rclpy.Context()
        rclpy.init(context=self.ctx, args=[])
        self.node = Node(name, context=self.ctx)
        self.ex = rclpy.executors.SingleThreadedExecutor(context=self.ctx)
        self.ex.add_node(self.node)

    def spin_until(self, cond, timeout: float) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end and not cond():
            self.ex.spin_once(timeout_sec=0.05)
        return cond()

    def close(self) -> None:
        import rclpy

        self.ex.shutdown()
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.ctx)
        if self.old_domain is None:
            os.environ.pop("ROS_DOMAIN_ID", None)
        else:
            os.environ["ROS_DOMAIN_ID"] = self.old_domain


def measure_fleet(store: Path, version: int, robots: int, work: Path, window_s: float = 10.0,
                  control_rate_hz: float = 50.0, camera_hz: float = BASE_CAMERA_HZ, log=print) -> dict:
    """Launch ``robots`` sim robots on a copy of ``store``'s ``v<version>``, measure, announce v<version+1>.

    The robots' bags stay in ``<work>/store/episodes`` (the caller may measure them, then remove ``work``)."""
    from rclpy.serialization import deserialize_message
    from rosidl_runtime_py.utilities import get_message
    from sensor_msgs.msg import Image, JointState
    from std_msgs.msg import String
    from trajectory_msgs.msg import JointTrajectory

    from lwd.app.demo import ros_env
    from lwd.data.schema import TOPICS
    from lwd.nodes.common import FLEET_POLICY_TOPIC, LATCHED_QOS, RELIABLE_QOS
    from lwd.nodes.episode_recorder import _QOS as RECORDER_QOS
    from lwd.policy.checkpoint import load_checkpoint, save_checkpoint, version_dir

    if work.exists():
        shutil.rmtree(work)
    root = work / "store"
    shutil.copytree(version_dir(Path(store) / "policies", version), root / "policies" / f"v{version}")
    new = version + 1
    staged = save_checkpoint(work / "staged", load_checkpoint(root / "policies" / f"v{version}").model, new)
    domain = random.Random(os.getpid() + robots).randint(101, 200)
    env = ros_env(work, domain_id=domain)
    names = [f"robot{i}" for i in range(robots)]
    procs, logs = start_robots(root, names, work, env, camera_hz)
    ros = RosSession(domain, "lwd_bench_systems")
    node = ros.node

    def now() -> float:
        return time.time()

    def stamp(h) -> float:
        return h.stamp.sec + 1e-9 * h.stamp.nanosec

    def stamp_us(h) -> int:
        return (h.stamp.sec * 1_000_000_000 + h.stamp.nanosec) // 1000

    version_of: dict[str, int] = {}
    swapped_at: dict[str, float] = {}
    images: dict[str, set] = {r: set() for r in names}  # observation stamps (us): camera frames and joint states
    chunks: dict[str, dict] = {r: {} for r in names}  # last point bytes -> (time base s, us)
    obs_to_cmd: list[tuple[float, float]] = []  # (receipt time, ms)
    js: dict[str, list[float]] = {r: [] for r in names}
    seen: dict[str, dict[str, list]] = {r: {t: [] for t in TOPICS} for r in names}  # (receipt time, hash of bytes)

    def on_status(m, r):
        v = json.loads(m.data).get("version")
        version_of[r] = v
        if v == new and r not in swapped_at:
            swapped_at[r] = now()

    def on_chunk(m, r):
        if m.points:
            chunks[r][bytes(np.asarray(m.points[-1].positions).tobytes())] = (stamp(m.header), stamp_us(m.header))

    def on_cmd(m, r):
        if not m.header.frame_id.startswith("policy/") or not m.points:
            return
        base = chunks[r].pop(bytes(np.asarray(m.points[-1].positions).tobytes()), None)
        # the time base went through float seconds in vla_policy: match a frame's stamp to +-1 us
        if base is not None and any(base[1] + k in images[r] for k in (-1, 0, 1)):
            obs_to_cmd.append((now(), 1e3 * (stamp(m.header) - base[0])))

    def on_js(m, r):
        js[r].append(stamp(m.header))
        images[r].add(stamp_us(m.header))

    handlers = {"policy/status": (String, on_status), "policy/joint_trajectory": (JointTrajectory, on_chunk),
                "cmd/joint_trajectory": (JointTrajectory, on_cmd), "joint_states": (JointState, on_js),
                "camera/image_raw": (Image, lambda m, r: images[r].add(stamp_us(m.header)))}

    # One raw subscription per recorded topic, with the recorder's QoS: counted for the drop figure, and decoded for
    # the handlers above.
    def on_raw(data, r, topic):
        seen[r][topic].append((now(), hash(data)))
        h = handlers.get(topic)
        if h is not None:
            h[1](deserialize_message(data, h[0]), r)

    for r in names:
        for topic, msgtype in TOPICS.items():
            node.create_subscription(get_message(msgtype), f"/{r}/{topic}",
                                     lambda data, r=r, t=topic: on_raw(data, r, t),
                                     RECORDER_QOS.get(topic, RELIABLE_QOS), raw=True)
    announce = node.create_publisher(String, FLEET_POLICY_TOPIC, LATCHED_QOS)
    period = 1.0 / control_rate_hz

    def ticks(t0: float, t1: float) -> dict:
        return {r: summarize_ticks(js[r], t0, t1, period) for r in names}

    res: dict = {"robots": robots, "domain_id": domain, "camera_hz": camera_hz}
    stopped = False
    try:
        up = ros.spin_until(lambda: all(version_of.get(r) == version for r in names)
                            and len(obs_to_cmd) >= 3 * robots, 60.0 + 30.0 * robots)
        if not up:
            raise RuntimeError(f"robots did not come up acting: versions {version_of}, {len(obs_to_cmd)} commands")
        t0 = now()
        obs_to_cmd.clear()
        ros.spin_until(lambda: False, window_s)
        t1 = now()
        res["obs_to_cmd_ms"] = _pct(ms for _, ms in obs_to_cmd)
        res["idle"] = ticks(t0, t1)
        shutil.copytree(staged, root / "policies" / f"v{new}")
        sha = json.loads((root / "policies" / f"v{new}" / "manifest.json").read_text())["sha256"]
        t_ann = now()
        announce.publish(String(data=json.dumps({"version": new, "uri": f"policies/v{new}", "sha256": sha})))
        done = ros.spin_until(lambda: len(swapped_at) == robots, 30.0)
        ros.spin_until(lambda: False, 1.0)
        res["hotswap_s"] = max(swapped_at.values()) - t_ann if done else None
        res["hotswap_per_robot_s"] = {r: round(t - t_ann, 3) for r, t in swapped_at.items()}
        res["during_hotswap"] = ticks(t_ann, now())
        log(f"[systems] ROS fleet of {robots}: {json.dumps(res)}")
        ros.close()
        stopped = True
        stop_robots(procs, logs)
        res["recorder"] = recorder_drops(root / "episodes", seen)
        log(f"[systems] recorder drops, N = {robots}: {json.dumps(res['recorder'])}")
    finally:
        if not stopped:
            ros.close()
        stop_robots(procs, logs)
    return res


def recorder_drops(episodes: Path, seen: dict[str, dict[str, list]]) -> dict:
    """:func:`lwd.app.bench_io.count_drops` per robot (its bags vs what the bench saw), summed over robots."""
    per_robot, bags_read = [], 0
    for r, topics in seen.items():
        bags = [bag_keys(b) for b in episode_bags(episodes) if b.parent.name == r]
        bags_read += len(bags)
        per_robot.append(count_drops(topics, bags))
    out = merge_drops(per_robot)
    out["bags"] = bags_read
    return out
