"""Multi-process integration: fleet_sim.launch.py with 2 robots + learner over real DDS on localhost.

Asserts what the nodes did, not only that launch exited (LaunchService returns 0 even when a node crashed).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import psutil
import pytest

from launch_util import assert_none_left, interrupt

rclpy = pytest.importorskip("rclpy")

from lwd.app.demo import ros_env  # noqa: E402
from lwd.data.schema import JOINT_NAMES, TOPICS  # noqa: E402

pytestmark = pytest.mark.ros


def _spin_until(executor, cond, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        executor.spin_once(timeout_sec=0.1)
        if cond():
            return True
    return cond()


@pytest.fixture
def fleet(tiny_store, tmp_path):
    """Launch 2 robots + learner on a copy of the tiny store; yields (store, env, proc); tears down fully."""
    import shutil

    store = tmp_path / "store"
    shutil.copytree(tiny_store, store)
    env = ros_env(tmp_path)
    env["ROS_DOMAIN_ID"] = os.environ["ROS_DOMAIN_ID"]
    args = ["robots:=2", f"store:={store}", "tasks:=pick_place", "episodes_per_round:=1", "rounds:=1",
            "time_limit_scale:=0.6", "updates_per_round:=4", "offline_updates:=3",
            "gate:=none", "select_episodes:=1",
            'algo_overrides:={"tilt_steps": 2, "critic_refit": 4, "image_batch": 8, "actor_batch": 4}']
    log = open(tmp_path / "fleet.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "lwd.app.launch_runner", "fleet_sim.launch.py", *args],
                            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    children: set[int] = set()
    yield store, proc, children, tmp_path / "fleet.log"
    try:
        children.update(c.pid for c in psutil.Process(proc.pid).children(recursive=True))
    except psutil.NoSuchProcess:
        pass
    if not interrupt(proc, 40):
        pytest.fail("launch did not shut down on SIGINT")
    log.close()
    # Clean shutdown: Ctrl-C ends every node without a traceback (arm_driver used to print an RCLError).
    tail = (tmp_path / "fleet.log").read_text()
    assert "Traceback" not in tail and "RCLError" not in tail, tail[-4000:]
    assert_none_left(children)


def test_fleet_round_trip(fleet):
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.node import Node
    from std_msgs.msg import Bool, Float64MultiArray, String
    from trajectory_msgs.msg import JointTrajectory

    from lwd.nodes.common import LATCHED_QOS, RELIABLE_QOS, SENSOR_QOS, numpy_to_trajectory

    store, proc, children, log_path = fleet
    ctx = rclpy.Context()
    rclpy.init(context=ctx, args=[])
    node = Node("fleet_test", context=ctx)
    ex = rclpy.executors.SingleThreadedExecutor(context=ctx)
    ex.add_node(node)
    status: dict[str, dict] = {}
    sources: list[str] = []
    cmds: list[tuple[float, str]] = []
    for r in ("robot0", "robot1"):
        node.create_subscription(String, f"/{r}/policy/status",
                                 lambda m, r=r: status.__setitem__(r, json.loads(m.data)), LATCHED_QOS)
    node.create_subscription(String, "/robot1/cmd/source", lambda m: sources.append(m.data), LATCHED_QOS)
    node.create_subscription(JointTrajectory, "/robot1/cmd/joint_trajectory",
                             lambda m: cmds.append((time.monotonic(), m.header.frame_id)), RELIABLE_QOS)
    engaged = node.create_publisher(Bool, "/robot1/teleop/engaged", LATCHED_QOS)
    teleop = node.create_publisher(JointTrajectory, "/robot1/teleop/joint_trajectory", RELIABLE_QOS)
    policy_in = node.create_publisher(JointTrajectory, "/robot1/policy/joint_trajectory", RELIABLE_QOS)
    diags: dict[str, dict[str, str]] = {}  # "robot0/camera_driver" -> latest key/values (+ "_level")

    def on_diag(msg):
        for st in msg.status:
            diags[st.name] = {**{kv.key: kv.value for kv in st.values}, "_level": str(st.level[0])}

    node.create_subscription(DiagnosticArray, "/diagnostics", on_diag, 50)
    sim_states: list = []
    node.create_subscription(Float64MultiArray, "/robot0/sim/state", lambda m: sim_states.append(list(m.data)),
                             SENSOR_QOS)
    state_in = node.create_publisher(Float64MultiArray, "/robot0/sim/state", SENSOR_QOS)

    def counter(name: str, key: str) -> int:
        return int(diags.get(name, {}).get(key, 0))
    try:
        children.update(c.pid for c in psutil.Process(proc.pid).children(recursive=True))
        # 1. Both robots come up running v0 and start acting.
        assert _spin_until(ex, lambda: all(status.get(r, {}).get("version") == 0 for r in ("robot0", "robot1")), 90), \
            f"robots did not report v0: {status}\n{log_path.read_text()[-3000:]}"
        assert _spin_until(ex, lambda: any(tag.startswith("policy/") for _, tag in cmds), 60), "no policy command seen"
        children.update(c.pid for c in psutil.Process(proc.pid).children(recursive=True))

        # 2a. A bad checkpoint announcement (v99 naming v0's directory, wrong sha256) is rejected; the robot keeps v0.
        bogus = node.create_publisher(String, "/fleet/policy", LATCHED_QOS)
        bogus.publish(String(data=json.dumps(
            {"version": 99, "uri": str(store / "policies" / "v0"), "sha256": "0" * 64})))
        assert _spin_until(
            ex, lambda: any(r.get("version") == 99 for r in status.get("robot0", {}).get("rejected", [])), 30), \
            f"bogus policy not rejected: {status}"
        assert status["robot0"]["version"] == 0

        # 2a'. A valid copy of v0 announced as v50 from outside the store's policies/ (e.g. /tmp) is rejected by every
        # robot before it is read, counted per reason on /diagnostics; the robots stay on v0.
        outside = store.parent / "outside" / "v50"
        shutil.copytree(store / "policies" / "v0", outside)
        manifest = json.loads((outside / "manifest.json").read_text())
        (outside / "manifest.json").write_text(json.dumps({**manifest, "version": 50}))
        bogus.publish(String(data=json.dumps({"version": 50, "uri": str(outside), "sha256": manifest["sha256"]})))
        assert _spin_until(ex, lambda: all(counter(f"{r}/vla_policy", "rejected/outside_store") >= 1
                                           for r in ("robot0", "robot1")), 30), \
            f"outside-store checkpoint not rejected: {diags.get('robot0/vla_policy')} {diags.get('robot1/vla_policy')}"
        assert _spin_until(ex, lambda: all(status[r].get("rejected_counts", {}).get("outside_store", 0) >= 1
                                           for r in ("robot0", "robot1")), 10), status
        assert all(status[r]["version"] == 0 for r in ("robot0", "robot1")), status

        # 2b. A malformed command (NaN) is rejected without killing the driver, and counted on /diagnostics.
        bad = numpy_to_trajectory(np.full((1, 14), np.nan), 0.1, JOINT_NAMES, "policy/v0",
                                  node.get_clock().now().to_msg())
        policy_in.publish(bad)
        assert _spin_until(ex, lambda: counter("robot1/arm_driver", "rejected/nan_command") >= 1, 20), \
            f"NaN command not counted: {diags.get('robot1/arm_driver')}"

        # 2c. A NaN sim/state is rejected and counted by every node that mirrors the world (camera, operator).
        assert _spin_until(ex, lambda: bool(sim_states), 20), "no sim/state seen"
        poisoned = Float64MultiArray(data=sim_states[-1])
        poisoned.data[5] = float("nan")

        def nan_counted() -> bool:
            state_in.publish(poisoned)  # best-effort topic: resend until both have counted it
            return all(counter(f"robot0/{n}", "rejected/nan_state") >= 1 for n in ("camera_driver", "teleop"))

        assert _spin_until(ex, nan_counted, 30), \
            f"NaN sim/state not counted: {diags.get('robot0/camera_driver')} {diags.get('robot0/teleop')}"
        # Every robot node reports its health.
        nodes = ("arm_driver", "camera_driver", "teleop", "episode_recorder", "vla_policy")
        assert _spin_until(ex, lambda: all(f"{r}/{n}" in diags for r in ("robot0", "robot1") for n in nodes), 20), \
            sorted(diags)

        # 3. Takeover: the mux switches to the teleop source, and no policy chunk passes while engaged.
        engaged.publish(Bool(data=True))
        hold = numpy_to_trajectory(np.zeros((1, 14)), 0.1, JOINT_NAMES, "teleop", node.get_clock().now().to_msg())
        t_takeover = time.monotonic()
        teleop.publish(hold)
        assert _spin_until(ex, lambda: sources and sources[-1] == "teleop", 10), f"cmd/source never teleop: {sources}"
        t_switch = time.monotonic()
        _spin_until(ex, lambda: False, 1.0)
        leaked = [tag for t, tag in cmds if t > t_switch + 0.2 and tag.startswith("policy/")]
        assert not leaked, f"policy commands executed during takeover: {leaked}"
        assert any(tag == "teleop" and t >= t_takeover for t, tag in cmds)
        engaged.publish(Bool(data=False))

        # 4. The learner turns the round's episodes into v1, and every robot hot-swaps to it.
        assert _spin_until(ex, lambda: all(status.get(r, {}).get("version") == 1 for r in ("robot0", "robot1")), 150), \
            f"robots did not swap to v1: {status}\n{log_path.read_text()[-4000:]}"
        assert (store / "policies" / "v1" / "manifest.json").exists()
        assert proc.poll() is None, "launch exited early"
    finally:
        ex.shutdown()
        node.destroy_node()
        rclpy.try_shutdown(context=ctx)

    # 5. Bags: one per robot, readable by rosbags AnyReader, with the expected topics and metadata.
    from rosbags.highlevel import AnyReader

    from lwd.data.bag import read_episode

    bags = sorted(p.parent for p in (store / "episodes").glob("robot*/*/episode.json"))
    assert {b.parent.name for b in bags} == {"robot0", "robot1"}, bags
    for bag in bags:
        with AnyReader([bag]) as reader:
            topics = {c.topic.lstrip("/") for c in reader.connections}
            counts = {c.topic.lstrip("/"): c.msgcount for c in reader.connections}
        for t in ("joint_states", "camera/image_raw", "cmd/joint_trajectory", "episode/event", "task/instruction",
                  "policy/joint_trajectory"):
            assert t in topics and counts[t] > 0, (bag, t, counts)
        assert topics <= set(TOPICS)
        meta = json.loads((bag / "episode.json").read_text())
        assert meta["outcome"] in ("success", "failure") and meta["task"] == "pick_place"
        assert 0 in meta["policy_versions"]
        if meta["outcome"] == "success":  # the arm driver's subgoal event (pick_place has one) was recorded
            assert len(meta["subgoal_ns"]) == 1 and meta["start_ns"] <= meta["subgoal_ns"][0] <= meta["end_ns"], meta
        steps = read_episode(bag)
        assert len(steps) > 10 and steps.images.shape[1:] == (64, 64, 3)
    # The default learner (DIVL + QAM) ran its offline phase on the demos, then an online round on these bags.
    manifest = json.loads((store / "policies" / "v1" / "manifest.json").read_text())
    assert manifest["algo"] == "lwd"
    # the whole-VLA default, shortened through the algo_overrides launch argument: the round ended with the tilt
    assert "actor/tilt_kept" in manifest["stats"], sorted(manifest["stats"])
    phases = [json.loads(x)["phase"] for x in (store / "learner" / "metrics.jsonl").read_text().splitlines()]
    # background updates while the robots worked count toward the round's 4; "online" runs whatever is left
    assert [p for p in phases if p not in ("background", "online")][:3] == ["offline", "round_end", "gate"], phases
    assert manifest["stats"]["round/updates"] >= 4
    log_text = log_path.read_text()
    # Any Python-level death fails. A node killed by a signal (a native crash: robot0's arm_driver died with
    # SIGSEGV before it was up in 1 of ~10 runs on this box, cause not yet found) must have been respawned by the
    # supervisor; the rest of this test then checks that the fleet worked regardless.
    died = re.findall(r"\[([\w-]+)\]: process has died \[pid \d+, exit code (-?\d+)", log_text)
    assert not [d for d in died if int(d[1]) >= 0], log_text[-3000:]
    for name, _ in died:
        assert log_text.count(f"[{name}]: process started") >= 2, (name, log_text[-3000:])


def test_asynchronous_robots_work_on_without_waiting_for_the_learner(tiny_store, tmp_path):
    """sync_rounds:=false: with no learner at all, a robot past its round's end keeps working (a synchronous one
    would wait for the learner's round forever)."""
    store = tmp_path / "store"
    shutil.copytree(tiny_store, store)
    env = ros_env(tmp_path)
    env["ROS_DOMAIN_ID"] = os.environ["ROS_DOMAIN_ID"]
    args = ["robots:=1", f"store:={store}", "tasks:=pick_place", "episodes_per_round:=1", "rounds:=0",
            "sync_rounds:=false", "learner:=false", "time_limit_scale:=0.3", "respawn:=false"]
    with open(tmp_path / "fleet.log", "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "lwd.app.launch_runner", "fleet_sim.launch.py", *args],
                                env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.monotonic() + 150
            done: list = []
            while time.monotonic() < deadline and len(done) < 2 and proc.poll() is None:
                time.sleep(1.0)
                done = list((store / "episodes").glob("robot0/*/episode.json"))
            assert len(done) >= 2, f"{len(done)} episodes; log:\n{(tmp_path / 'fleet.log').read_text()[-3000:]}"
            assert all(json.loads(p.read_text())["policy_versions"] == [0] for p in done)
        finally:
            interrupt(proc, 40)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "kill"])
def test_stopping_the_demo_stops_its_fleet(tiny_store, tmp_path, sig):
    """Ctrl-C or ``kill`` on ``lwd demo`` stops the fleet it launched (in its own session, so no signal reaches it
    otherwise) and still writes the summary. SIGTERM used to kill the demo alone and leave the fleet's eleven nodes
    running beside the next job; SIGINT did nothing when the demo was started from a background job (it inherits
    SIGINT ignored: so does this test under a CI runner that starts `make test` in the background)."""
    env = ros_env(tmp_path)
    env["ROS_DOMAIN_ID"] = os.environ["ROS_DOMAIN_ID"]
    out = tmp_path / "demo"
    proc = subprocess.Popen([sys.executable, "-m", "lwd.cli", "demo", "--quick", "--robots", "1",
                             "--pretrained", str(tiny_store), "--out", str(out), "--eval-episodes", "0"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    fleet: list[psutil.Process] = []  # the launch process and its nodes
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:  # robot nodes + learner up
            fleet = psutil.Process(proc.pid).children(recursive=True)
            if sum(any("lwd/" in a for a in c.cmdline()[:2]) for c in fleet) >= 6:
                break
            time.sleep(0.5)
        assert len(fleet) >= 7, f"{len(fleet)} fleet processes up"
        time.sleep(3.0)
        proc.send_signal(sig)
        text, _ = proc.communicate(timeout=90)
        assert proc.returncode == 1 and "error: interrupted" in text, text[-3000:]
        assert (out / "summary.json").exists()
        _, left = psutil.wait_procs(fleet, timeout=10)
        assert not left, f"fleet processes left behind: {[p.pid for p in left]}"
    finally:
        if proc.poll() is None:
            proc.kill()
        for p in fleet:  # whatever happened, leak nothing into the rest of the suite
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
