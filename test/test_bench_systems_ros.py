"""`lwd bench systems`' ROS-graph figures in a short configuration: one robot, seconds-long windows (no timing
thresholds: the structure and the accounting are checked, not the speed)."""

from __future__ import annotations

import pytest

pytest.importorskip("rclpy")

from lwd.app.bench_io import episode_bags  # noqa: E402
from lwd.app.bench_ros import measure_fleet  # noqa: E402
from lwd.app.bench_scaling import measure_scaling  # noqa: E402

pytestmark = pytest.mark.ros


def test_fleet_of_one_counts_recorder_drops(tiny_store, tmp_path):
    work = tmp_path / "fleet"
    res = measure_fleet(tiny_store, 0, 1, work, window_s=2.0, camera_hz=5.0, log=lambda *_: None)
    assert res["camera_hz"] == 5.0 and res["hotswap_s"] is not None
    rec = res["recorder"]
    assert rec["bags"] == len(episode_bags(work / "store" / "episodes")) >= 1
    js = rec["per_topic"]["joint_states"]
    assert js["published"] > 0 and 0 <= js["dropped"] <= js["published"]
    assert rec["published"] == sum(c["published"] for c in rec["per_topic"].values())


def test_scaling_of_one_robot_accounts_every_node(tiny_store, tmp_path):
    (row,) = measure_scaling(tiny_store, 0, (1,), tmp_path / "scaling", window_s=2.0, settle_s=0.0,
                             log=lambda *_: None)
    assert "error" not in row, row
    # the launch process and its five nodes, none restarted or lost in the window
    assert row["processes"] == 6 and row["started"] == 0 and row["exited"] == 0
    assert set(row["cpu_s_per_robot_s_by_kind"]) == {"launch", "arm_driver", "camera_driver", "vla_policy", "teleop",
                                                     "episode_recorder"}
    assert row["cpu_s_per_robot_s"] > 0 and row["cost_vs_first"] == 1.0 and row["control_rate_ratio_min"] > 0
    assert not (tmp_path / "scaling" / "n1").exists()  # a fleet that measured cleans up its work directory
