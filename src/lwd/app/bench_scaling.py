"""`scaling` figure of `lwd bench systems`: cost per robot as the simulated fleet grows (N = 1, 2, 4, 8, 16).

For each N, N robots are launched as in :mod:`lwd.app.bench_ros` (``robot.launch.py`` each: arm and camera driver,
vla_policy, teleop, recorder, as separate processes; no learner), run episodes with the policy until every robot is
acting, then, over a window of ``window_s``:

* ``cpu_s_per_robot_s``: CPU time (user + system, from ``/proc/<pid>/stat``) of every process of the robots' launch
  process trees, divided by N x window; also split by process kind (arm_driver, camera_driver, ...). A process that
  exits inside the window loses its share (counted in ``exited``; none expected);
* ``control_rate_ratio``: each robot's ``joint_states`` rate over the window / the nominal 50 Hz (min and mean over
  robots), and missed ticks (gaps over 1.5 periods);
* ``system_busy``: the whole machine's busy fraction over the window (``/proc/stat``): other work on the box shows
  here, and a fleet that wants more than the CPUs can give shows as busy ~1 with a falling control rate.

The camera rate may be reduced at large N (:func:`lwd.app.bench_ros.camera_rate_hz`); each row records it.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import time
from pathlib import Path

from lwd.app.bench_io import summarize_ticks

__all__ = ["measure_scaling", "parse_stat", "proc_kind", "cpu_delta", "cpu_busy", "scaling_rows"]

KINDS = ("arm_driver", "camera_driver", "vla_policy", "teleop", "episode_recorder", "launch_runner")


def parse_stat(text: str) -> dict:
    """One ``/proc/<pid>/stat`` line -> pid, comm, ppid, session, ticks (utime + stime, clock ticks)."""
    head, _, rest = text.rpartition(")")
    pid, _, comm = head.partition(" (")
    f = rest.split()  # f[0] = state (field 3), so field k is f[k - 3]
    return {"pid": int(pid), "comm": comm, "ppid": int(f[1]), "session": int(f[3]), "ticks": int(f[11]) + int(f[12])}


def proc_kind(cmdline: str) -> str:
    """The node (or launch) a process of a robot's tree runs, from its command line."""
    for k in KINDS:
        if k in cmdline:
            return "launch" if k == "launch_runner" else k
    return "other"


def _read(path: str) -> str | None:
    try:
        with open(path, "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return None


def snapshot(roots: list[int]) -> dict[int, tuple[str, int]]:
    """pid -> (kind, CPU ticks) of every live process in the trees (by parent links or session) under ``roots``."""
    stats = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            t = _read(f"/proc/{d}/stat")
            if t:
                s = parse_stat(t)
                stats[s["pid"]] = s
    keep = {p for p in roots if p in stats} | {p for p, s in stats.items() if s["session"] in roots}
    grew = True
    while grew:
        more = {p for p, s in stats.items() if s["ppid"] in keep and p not in keep}
        keep |= more
        grew = bool(more)
    return {p: (proc_kind(_read(f"/proc/{p}/cmdline") or stats[p]["comm"]), stats[p]["ticks"]) for p in keep}


def cpu_delta(before: dict[int, tuple[str, int]], after: dict[int, tuple[str, int]], hz: float) -> dict:
    """CPU seconds between two :func:`snapshot` s: processes in both count their difference, processes only in
    ``after`` (started in between) all of theirs; processes only in ``before`` (exited) are lost and counted."""
    by_kind: dict[str, float] = {}
    for pid, (kind, ticks) in after.items():
        prev = before.get(pid)
        d = ticks - prev[1] if prev is not None and prev[0] == kind else ticks
        by_kind[kind] = by_kind.get(kind, 0.0) + d / hz
    return {"cpu_s": sum(by_kind.values()), "by_kind": dict(sorted(by_kind.items())), "processes": len(after),
            "started": len(after.keys() - before.keys()), "exited": len(before.keys() - after.keys())}


def cpu_busy(first_line: str) -> tuple[int, int]:
    """``/proc/stat``'s ``cpu`` line -> (busy, total) jiffies; busy excludes idle and iowait."""
    v = [int(x) for x in first_line.split()[1:]]
    total = sum(v[:8])  # user nice system idle iowait irq softirq steal (guest is inside user)
    return total - v[3] - v[4], total


def _system() -> tuple[int, int]:
    with open("/proc/stat") as f:
        return cpu_busy(f.readline())


def scaling_rows(rows: list[dict]) -> list[dict]:
    """Adds ``cost_vs_first`` (CPU per robot-second relative to the smallest fleet measured) to each row."""
    ok = [r for r in rows if r.get("cpu_s_per_robot_s")]
    base = ok[0]["cpu_s_per_robot_s"] if ok else None
    for r in rows:
        if base and r.get("cpu_s_per_robot_s"):
            r["cost_vs_first"] = r["cpu_s_per_robot_s"] / base
    return rows


def measure_scaling(store: Path, version: int, fleet_sizes: tuple[int, ...], work: Path, window_s: float = 20.0,
                    settle_s: float = 5.0, camera_budget_hz: float = 0.0, control_rate_hz: float = 50.0,
                    log=print) -> list[dict]:
    """For each N: launch N robots, wait until each is acting (policy chunks flowing), settle, then measure CPU and
    control rate over ``window_s``. Returns one row per N (or ``{"robots": N, "error": ...}``); a fleet's work
    directory (launch logs) is kept when it failed."""
    from lwd.app.bench_ros import camera_rate_hz

    rows = []
    for n in fleet_sizes:
        w = work / f"n{n}"
        row = measure_one(store, version, n, w, window_s, settle_s, camera_rate_hz(n, camera_budget_hz),
                          control_rate_hz)
        log(f"[systems] scaling, N = {n}: {json.dumps(row)}")
        if "error" not in row:
            shutil.rmtree(w, ignore_errors=True)
        rows.append(row)
    return scaling_rows(rows)


def stall_reasons(w: Path, names: list[str]) -> dict[str, int]:
    """How many robots' teleop last logged each reason for not starting an episode (from the launch logs)."""
    out: dict[str, int] = {}
    for r in names:
        try:
            lines = (w / f"{r}.log").read_text(errors="replace").splitlines()
        except OSError:
            continue
        why = [ln.split("not starting an episode: ", 1)[1] for ln in lines if "not starting an episode: " in ln]
        key = why[-1].split(" (")[0] if why else "none logged"
        out[key] = out.get(key, 0) + 1
    return out


def measure_one(store: Path, version: int, n: int, w: Path, window_s: float, settle_s: float, camera_hz: float,
                control_rate_hz: float = 50.0) -> dict:
    """One fleet size of :func:`measure_scaling`."""
    from sensor_msgs.msg import JointState
    from std_msgs.msg import String
    from trajectory_msgs.msg import JointTrajectory

    from lwd.app.bench_ros import RosSession, start_robots, stop_robots
    from lwd.app.demo import ros_env
    from lwd.nodes.common import LATCHED_QOS, RELIABLE_QOS, SENSOR_QOS
    from lwd.policy.checkpoint import version_dir

    hz = os.sysconf("SC_CLK_TCK")
    if w.exists():
        shutil.rmtree(w)
    root = w / "store"
    shutil.copytree(version_dir(Path(store) / "policies", version), root / "policies" / f"v{version}")
    domain = random.Random(os.getpid() + 1000 + n).randint(101, 200)
    names = [f"robot{i}" for i in range(n)]
    t_launch = time.monotonic()
    procs, logs = start_robots(root, names, w, ros_env(w, domain_id=domain), camera_hz)
    ros = RosSession(domain, "lwd_bench_scaling")
    js: dict[str, list[float]] = {r: [] for r in names}
    chunks = dict.fromkeys(names, 0)
    version_of: dict[str, int] = {}

    def on_js(m, r):
        js[r].append(m.header.stamp.sec + 1e-9 * m.header.stamp.nanosec)

    def on_chunk(m, r):
        chunks[r] += 1

    def on_status(m, r):
        version_of[r] = json.loads(m.data).get("version")

    for r in names:
        ros.node.create_subscription(JointState, f"/{r}/joint_states", lambda m, r=r: on_js(m, r), SENSOR_QOS)
        ros.node.create_subscription(JointTrajectory, f"/{r}/policy/joint_trajectory", lambda m, r=r: on_chunk(m, r),
                                     RELIABLE_QOS)
        ros.node.create_subscription(String, f"/{r}/policy/status", lambda m, r=r: on_status(m, r), LATCHED_QOS)
    row: dict = {"robots": n, "camera_hz": camera_hz, "window_s": window_s}
    try:
        up = ros.spin_until(lambda: all(version_of.get(r) == version and chunks[r] >= 3 for r in names),
                            60.0 + 30.0 * n)
        row["startup_s"] = round(time.monotonic() - t_launch, 1)
        if not up:
            row["stalled"] = stall_reasons(w, names)
            raise RuntimeError(f"robots did not come up acting within {row['startup_s']:.0f} s: "
                               f"{sum(v == version for v in version_of.values())} of {n} reported the policy, "
                               f"{sum(c >= 3 for c in chunks.values())} acting")
        ros.spin_until(lambda: False, settle_s)
        roots = [p.pid for p in procs]
        before, sys0, t0, c0 = snapshot(roots), _system(), time.time(), dict(chunks)
        ros.spin_until(lambda: False, window_s)
        after, sys1, t1 = snapshot(roots), _system(), time.time()
        cpu = cpu_delta(before, after, hz)
        wall = t1 - t0
        ticks = [summarize_ticks(js[r], t0, t1, 1.0 / control_rate_hz) for r in names]
        rates = [t["control_rate_hz"] or 0.0 for t in ticks]
        row.update({
            "wall_s": round(wall, 2), "cpu_s": cpu["cpu_s"], "cpu_s_per_robot_s": cpu["cpu_s"] / (n * wall),
            "cpu_s_per_robot_s_by_kind": {k: v / (n * wall) for k, v in cpu["by_kind"].items()},
            "processes": cpu["processes"], "started": cpu["started"], "exited": cpu["exited"],
            "fleet_share_of_machine": cpu["cpu_s"] / (wall * (os.cpu_count() or 1)),
            "system_busy": (sys1[0] - sys0[0]) / max(1, sys1[1] - sys0[1]),
            "control_rate_ratio_min": min(rates) / control_rate_hz,
            "control_rate_ratio_mean": sum(rates) / len(rates) / control_rate_hz,
            "missed_ticks": sum(t["missed_ticks"] for t in ticks), "ticks": sum(t["ticks"] for t in ticks),
            "chunks_per_robot_s": sum(chunks[r] - c0[r] for r in names) / (n * wall)})
    except RuntimeError as e:
        row["error"] = f"{e} (logs in {w})"
    finally:
        ros.close()
        stop_robots(procs, logs)
    return row
