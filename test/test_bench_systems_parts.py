"""`lwd bench systems`: the pure parts of the recorder, ingest and scaling figures (no timing thresholds)."""

import subprocess
import sys

import pytest

from lwd.app.bench_io import (
    bag_keys,
    bag_messages,
    count_drops,
    episode_bags,
    ingest_ratio,
    merge_drops,
    recorder_write,
    summarize_ticks,
)
from lwd.app.bench_ros import camera_rate_hz, with_camera_rate
from lwd.app.bench_scaling import cpu_busy, cpu_delta, parse_stat, proc_kind, scaling_rows, snapshot


def test_camera_rate_is_reduced_to_the_fleet_budget():
    assert [camera_rate_hz(n, 40.0) for n in (1, 2, 4, 8, 16)] == [10.0, 10.0, 10.0, 5.0, 2.5]
    assert camera_rate_hz(16, 0.0) == 10.0  # no budget: never reduced
    params = {"/**/camera_driver": {"ros__parameters": {"rate_hz": 10.0, "image_size": 64}}, "/**/arm_driver": {}}
    out = with_camera_rate(params, 5)
    assert out["/**/camera_driver"]["ros__parameters"] == {"rate_hz": 5.0, "image_size": 64}
    assert params["/**/camera_driver"]["ros__parameters"]["rate_hz"] == 10.0  # the input is left alone


def test_count_drops_per_topic():
    # the subscriber's clock: an episode from t = 10 (start event) to 20 s (end event), a joint state every second;
    # the recorder logs everything 2 s late (starved), lacks joint state #3 and one of two identical rewards, and
    # replays the instruction (published at t = 5) at the start of the bag
    lag = 2.0
    seen = {"joint_states": [(10.0 + i, f"js{i}") for i in range(11)] + [(25.0, "between episodes")],
            "episode/event": [(10.0, "start"), (20.0, "end")], "episode/reward": [(12.0, "r0"), (13.0, "r0")],
            "task/instruction": [(5.0, "instr")]}
    bag = {"joint_states": [(10.0 + i + lag, f"js{i}") for i in range(11) if i != 3],
           "episode/event": [(10.0 + lag, "start"), (20.0 + lag, "end")], "episode/reward": [(12.0 + lag, "r0")],
           "task/instruction": [(10.0 + lag, "instr")]}
    out = count_drops(seen, [bag])  # window 10.5 .. 19.5 on the subscriber's clock
    assert out["joint_states"] == {"published": 9, "recorded": 8, "dropped": 1}
    assert out["episode/reward"] == {"published": 2, "recorded": 1, "dropped": 1}
    assert out["episode/event"]["published"] == 0 and out["task/instruction"]["dropped"] == 0
    # a message the subscriber never saw is not counted, nor is a bag none of whose messages it saw
    assert count_drops({}, [bag]) == {}
    assert count_drops({"joint_states": [(1.0, "x")]}, [{"joint_states": [(1.0, "y"), (9.0, "z")]}]) == {}
    total = merge_drops([out, out])
    assert total["per_topic"]["joint_states"]["dropped"] == 2 and total["dropped"] == 4
    assert total["drop_rate"] == pytest.approx(4 / total["published"])
    assert merge_drops([])["drop_rate"] is None


def _write_bag(path, n=20):
    from lwd.data.bag import EpisodeBagWriter
    from lwd.data.schema import EpisodeMeta, typestore

    ts = typestore()
    String, Float32 = ts.types["std_msgs/msg/String"], ts.types["std_msgs/msg/Float32"]
    sent = []
    with EpisodeBagWriter(path, EpisodeMeta(episode_id=path.name, robot=path.parent.name)) as w:
        for i in range(n):
            t = 1_000_000_000 + i * 100_000_000
            msg = Float32(data=float(i)) if i % 2 else String(data=f"m{i}")
            topic = "episode/reward" if i % 2 else "cmd/source"
            w.write_msg(topic, t, msg)
            sent.append((topic, t, bytes(ts.serialize_cdr(msg, msg.__msgtype__))))
    return sent


def test_bag_messages_round_trip_and_drop_count(tmp_path):
    bag = tmp_path / "episodes" / "robot0" / "ep0"
    sent = _write_bag(bag)
    assert bag_messages(bag) == sent
    assert episode_bags(tmp_path / "episodes") == [bag]
    # what a subscriber saw: everything but message 7 was also in the bag -> 0 drops; a message it saw that the bag
    # lacks -> 1 drop
    seen: dict = {}
    for topic, t, data in sent:
        seen.setdefault(topic, []).append((t * 1e-9, hash(data)))
    assert sum(c["dropped"] for c in count_drops(seen, [bag_keys(bag)], margin_s=0.2).values()) == 0
    seen["cmd/source"].append((1.5, hash(b"never recorded")))
    drops = count_drops(seen, [bag_keys(bag)], margin_s=0.2)
    assert drops["cmd/source"]["dropped"] == 1 and drops["episode/reward"]["dropped"] == 0


def test_summarize_ticks_counts_late_ticks():
    stamps = [0.02 * i for i in range(51)]
    stamps = stamps[:10] + stamps[12:]  # two ticks missing: one gap of 3 periods
    s = summarize_ticks(stamps, 0.0, 1.0, 0.02)
    assert s["ticks"] == 49 and s["missed_ticks"] == 1 and s["max_gap_ms"] == pytest.approx(60.0)
    assert s["control_rate_hz"] == pytest.approx(48.0)
    assert summarize_ticks([0.5], 0.0, 1.0, 0.02)["control_rate_hz"] is None


def test_proc_stat_parsing_and_cpu_accounting():
    line = "4242 (py (x) y) S 17 4242 4200 0 -1 4194304 100 0 0 0 150 25 3 4 20 0 1 0 1018831 3133440 414"
    s = parse_stat(line)
    assert s == {"pid": 4242, "comm": "py (x) y", "ppid": 17, "session": 4200, "ticks": 175}
    assert proc_kind("/v/bin/python /v/lib/lwd/vla_policy --ros-args -r __ns:=/robot0") == "vla_policy"
    assert proc_kind("python -m lwd.app.launch_runner robot.launch.py") == "launch"
    assert proc_kind("bash") == "other"
    before = {1: ("arm_driver", 100), 2: ("vla_policy", 1000), 3: ("teleop", 50)}
    after = {1: ("arm_driver", 300), 2: ("vla_policy", 1400), 4: ("teleop", 20)}  # 3 exited, 4 started
    d = cpu_delta(before, after, hz=100)
    assert d["by_kind"] == {"arm_driver": 2.0, "teleop": 0.2, "vla_policy": 4.0}
    assert d["cpu_s"] == pytest.approx(6.2) and d["started"] == 1 and d["exited"] == 1 and d["processes"] == 3
    # a reused pid running something else counts as a new process
    assert cpu_delta({5: ("teleop", 500)}, {5: ("arm_driver", 30)}, hz=100)["cpu_s"] == pytest.approx(0.3)
    assert cpu_busy("cpu  100 5 20 800 10 0 3 2 0 0") == (130, 940)
    rows = scaling_rows([{"robots": 1, "cpu_s_per_robot_s": 0.5}, {"robots": 2, "error": "x"},
                         {"robots": 4, "cpu_s_per_robot_s": 0.6}])
    assert rows[0]["cost_vs_first"] == 1.0 and rows[2]["cost_vs_first"] == pytest.approx(1.2)
    assert "cost_vs_first" not in rows[1]


def test_snapshot_follows_a_process_tree():
    # a shell in its own session with a child: both are found from the shell's pid
    p = subprocess.Popen(["bash", "-c", f"{sys.executable} -c 'import time; time.sleep(30)' & wait"],
                         start_new_session=True)
    try:
        import time

        for _ in range(100):
            snap = snapshot([p.pid])
            if len(snap) >= 2:
                break
            time.sleep(0.05)
        assert p.pid in snap and len(snap) == 2 and all(t >= 0 for _, t in snap.values())
    finally:
        import os
        import signal

        os.killpg(p.pid, signal.SIGKILL)
        p.wait(10)


def test_recorder_write_and_ingest_on_a_stores_bags(tiny_store):
    from lwd.policy.checkpoint import version_dir

    bags = episode_bags(tiny_store / "episodes")
    assert bags
    w = recorder_write(bags[:2], repeats=1)
    assert w["bags"] == 2 and w["mb"] > 0 and w["recorder_mb_s"] > 0 and w["raw_mcap_mb_s"] > 0
    assert w["ratio"] == pytest.approx(w["recorder_mb_s"] / w["raw_mcap_mb_s"])
    g = ingest_ratio(bags[:2], version_dir(tiny_store / "policies", 0), 0, algo="bc")
    assert g["bags"] == 2 and g["episodes"] == 2 and g["transitions"] > 0
    assert g["ingest_ratio"] == pytest.approx(g["learner_transitions_s"] / g["raw_read_transitions_s"])
    assert (tiny_store / "policies" / "v0").is_dir()  # the store itself is only read


def test_stall_reasons_reads_the_teleops_last_reason(tmp_path):
    from lwd.app.bench_scaling import stall_reasons

    (tmp_path / "robot0.log").write_text("[teleop-4] x: not starting an episode: waiting for the episode recorder "
                                         "(no heartbeat yet)\n")
    (tmp_path / "robot1.log").write_text("[teleop-4] x: not starting an episode: waiting for the episode recorder "
                                         "(no heartbeat yet)\n[teleop-4] y: not starting an episode: waiting for 4 "
                                         "listeners on episode/event (have 3)\n")
    assert stall_reasons(tmp_path, ["robot0", "robot1", "robot2"]) == {
        "waiting for the episode recorder": 1, "waiting for 4 listeners on episode/event": 1}
