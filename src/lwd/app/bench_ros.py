"""ROS-graph figures of `lwd bench systems`: N simulated robots (robot.launch.py each, no learner) over local DDS.

* ``obs_to_cmd_ms``: the stamp of the observation a chunk was computed from (the older of its camera frame and joint
  state) -> the arm driver's mux accepting it (the stamp of its ``cmd/joint_trajectory``). A chunk is paired with its
  command by the last point (never dropped), and only chunks whose time base is such a stamp count (the first chunk
  after a hold is re-based to its arrival);
* ``control_rate_hz`` and ``missed_ticks`` (consecutive ``joint_states`` stamps more than 1.5 periods apart) per
  robot, while idle-running episodes and during a hot-swap;
* ``hotswap_s``: a ``/fleet/policy`` announcement -> every robot reporting the new version on ``policy/status``.

The measuring node runs in this process; clocks are shared (one machine), so stamps compare directly.
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

__all__ = ["measure_fleet"]


def _pct(xs) -> dict:
    a = np.asarray(list(xs), dtype=np.float64)
    if a.size == 0:
        return {"n": 0}
    return {"p50": float(np.percentile(a, 50)), "p99": float(np.percentile(a, 99)), "n": int(a.size)}


def measure_fleet(store: Path, version: int, robots: int, work: Path, window_s: float = 10.0,
                  control_rate_hz: float = 50.0, log=print) -> dict:
    """Launch ``robots`` sim robots on a copy of ``store``'s ``v<version>``, measure, announce v<version+1>."""
    import rclpy
    from rclpy.node import Node
    from sensor_msgs.msg import Image, JointState
    from std_msgs.msg import String
    from trajectory_msgs.msg import JointTrajectory

    from lwd.app.demo import ros_env
    from lwd.nodes.common import FLEET_POLICY_TOPIC, LATCHED_QOS, RELIABLE_QOS, SENSOR_QOS
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
    procs, logs = [], []
    for i, r in enumerate(names):
        logs.append(open(work / f"{r}.log", "w"))
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "lwd.app.launch_runner", "robot.launch.py", f"robot:={r}", f"store:={root}",
             "intervene:=false", "tasks:=pick_place", f"seed:={1000 * i}"],
            env=env, stdout=logs[-1], stderr=subprocess.STDOUT, start_new_session=True))

    old_domain = os.environ.get("ROS_DOMAIN_ID")
    os.environ["ROS_DOMAIN_ID"] = str(domain)
    ctx = rclpy.Context()
    rclpy.init(context=ctx, args=[])
    node = Node("lwd_bench_systems", context=ctx)
    ex = rclpy.executors.SingleThreadedExecutor(context=ctx)
    ex.add_node(node)

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

    for r in names:
        def on_status(m, r=r):
            v = json.loads(m.data).get("version")
            version_of[r] = v
            if v == new and r not in swapped_at:
                swapped_at[r] = now()

        def on_chunk(m, r=r):
            if m.points:
                chunks[r][bytes(np.asarray(m.points[-1].positions).tobytes())] = (stamp(m.header), stamp_us(m.header))

        def on_cmd(m, r=r):
            if not m.header.frame_id.startswith("policy/") or not m.points:
                return
            base = chunks[r].pop(bytes(np.asarray(m.points[-1].positions).tobytes()), None)
            # the time base went through float seconds in vla_policy: match a frame's stamp to +-1 us
            if base is not None and any(base[1] + k in images[r] for k in (-1, 0, 1)):
                obs_to_cmd.append((now(), 1e3 * (stamp(m.header) - base[0])))

        node.create_subscription(String, f"/{r}/policy/status", on_status, LATCHED_QOS)
        node.create_subscription(JointTrajectory, f"/{r}/policy/joint_trajectory", on_chunk, RELIABLE_QOS)
        node.create_subscription(JointTrajectory, f"/{r}/cmd/joint_trajectory", on_cmd, RELIABLE_QOS)
        node.create_subscription(Image, f"/{r}/camera/image_raw",
                                 lambda m, r=r: images[r].add(stamp_us(m.header)), SENSOR_QOS)
        node.create_subscription(JointState, f"/{r}/joint_states",
                                 lambda m, r=r: (js[r].append(stamp(m.header)), images[r].add(stamp_us(m.header))),
                                 SENSOR_QOS)
    announce = node.create_publisher(String, FLEET_POLICY_TOPIC, LATCHED_QOS)

    def spin_until(cond, timeout: float) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end and not cond():
            ex.spin_once(timeout_sec=0.05)
        return cond()

    def ticks(t0: float, t1: float) -> dict:
        period = 1.0 / control_rate_hz
        out = {}
        for r in names:
            s = np.asarray([t for t in js[r] if t0 <= t <= t1])
            d = np.diff(s) if s.size > 1 else np.zeros(0)
            out[r] = {"control_rate_hz": float((s.size - 1) / (s[-1] - s[0])) if s.size > 1 else None,
                      "ticks": int(s.size), "missed_ticks": int(np.sum(d > 1.5 * period)),
                      "max_gap_ms": float(1e3 * d.max()) if d.size else None}
        return out

    res: dict = {"robots": robots, "domain_id": domain}
    try:
        up = spin_until(lambda: all(version_of.get(r) == version for r in names) and len(obs_to_cmd) >= 3 * robots,
                        60.0 + 30.0 * robots)
        if not up:
            raise RuntimeError(f"robots did not come up acting: versions {version_of}, {len(obs_to_cmd)} commands")
        t0 = now()
        obs_to_cmd.clear()
        spin_until(lambda: False, window_s)
        t1 = now()
        res["obs_to_cmd_ms"] = _pct(ms for _, ms in obs_to_cmd)
        res["idle"] = ticks(t0, t1)
        shutil.copytree(staged, root / "policies" / f"v{new}")
        sha = json.loads((root / "policies" / f"v{new}" / "manifest.json").read_text())["sha256"]
        t_ann = now()
        announce.publish(String(data=json.dumps({"version": new, "uri": f"policies/v{new}", "sha256": sha})))
        done = spin_until(lambda: len(swapped_at) == robots, 30.0)
        spin_until(lambda: False, 1.0)
        res["hotswap_s"] = max(swapped_at.values()) - t_ann if done else None
        res["hotswap_per_robot_s"] = {r: round(t - t_ann, 3) for r, t in swapped_at.items()}
        res["during_hotswap"] = ticks(t_ann, now())
        log(f"[systems] ROS fleet of {robots}: {json.dumps(res)}")
    finally:
        ex.shutdown()
        node.destroy_node()
        rclpy.try_shutdown(context=ctx)
        if old_domain is None:
            os.environ.pop("ROS_DOMAIN_ID", None)
        else:
            os.environ["ROS_DOMAIN_ID"] = old_domain
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
    return res
