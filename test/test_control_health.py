"""Health counters and input checks (ROS-free)."""

from __future__ import annotations

import numpy as np
import pytest

from lwd.control.health import (
    ERROR,
    OK,
    WARN,
    Health,
    Rejected,
    check_finite_vector,
    joint_order,
    reorder_joints,
)


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_rejections_counted_per_reason_and_logged_per_reason():
    clock = FakeClock()
    h = Health(log_every_s=5.0, clock=clock)
    # The first rejection of every reason is logged, even while another reason floods.
    assert h.reject("nan_state") is True
    assert [h.reject("nan_state") for _ in range(10)] == [False] * 10
    assert h.reject("bad_shape") is True
    assert h.reject("nan_command") is True
    clock.t = 5.0
    assert h.reject("nan_state") is True
    assert h.rejected == {"nan_state": 12, "bad_shape": 1, "nan_command": 1}
    assert h.total_rejected == 14


def test_report_warns_on_fresh_rejections_then_recovers():
    h = Health(clock=FakeClock())
    r = h.report()
    assert r.level == OK and ("rejected_total", "0") in r.values
    h.reject("nan_state")
    h.count("frames", 3)
    h.set_value("backend", "sim")
    r = h.report()
    assert r.level == WARN and "nan_state" in r.message
    assert ("rejected/nan_state", "1") in r.values and ("count/frames", "3") in r.values
    assert ("backend", "sim") in r.values
    r = h.report()  # nothing new: back to the node's own status, counters stay cumulative
    assert r.level == OK and ("rejected/nan_state", "1") in r.values
    h.set_status(ERROR, "store not writable")
    h.reject("bad_event")
    r = h.report()
    assert r.level == ERROR and r.message == "store not writable"
    with pytest.raises(ValueError):
        h.set_status(7, "?")


@pytest.mark.parametrize("data,size,reason", [
    ([1.0, float("nan"), 2.0], 3, "nan_state"),
    ([1.0, float("inf"), 2.0], 3, "nan_state"),
    ([1.0, -float("inf")], None, "nan_state"),
    ([1.0, 2.0], 3, "bad_shape"),
    (["a", "b"], 2, "bad_shape"),
])
def test_check_finite_vector_rejects(data, size, reason):
    with pytest.raises(Rejected) as e:
        check_finite_vector(data, size)
    assert e.value.reason == reason
    assert isinstance(e.value, ValueError)


def test_check_finite_vector_accepts_and_copies():
    src = np.arange(4.0)
    v = check_finite_vector(src, 4)
    assert v.dtype == np.float64 and np.array_equal(v, src)
    v[0] = 9
    assert src[0] == 0


def test_reorder_joints():
    names = ["b", "a", "extra"]
    assert np.array_equal(reorder_joints(names, [2.0, 1.0, float("nan")], ["a", "b"]), [1.0, 2.0])  # extra ignored
    cases = [
        ((["a"], [1.0], ["a", "b"]), "bad_joint_names"),
        ((["a", "a", "b"], [1.0, 1.0, 2.0], ["a", "b"]), "bad_joint_names"),
        (([], [1.0, 2.0], ["a", "b"]), "bad_joint_names"),
        ((["a", "b"], [1.0], ["a", "b"]), "bad_shape"),
        ((["a", "b"], [1.0, float("nan")], ["a", "b"]), "nan_state"),
    ]
    for args, reason in cases:
        with pytest.raises(Rejected) as e:
            reorder_joints(*args)
        assert e.value.reason == reason, args
    with pytest.raises(Rejected) as e:
        reorder_joints(["a", "b", "c"], [1.0, 2.0, 3.0], ["a", "b"], extra="reject")
    assert e.value.reason == "bad_joint_names" and "c" in str(e.value)
    with pytest.raises(Rejected) as e:
        reorder_joints(["a", "b"], [1.0, float("inf")], ["a", "b"], what="velocity")
    assert e.value.reason == "nan_velocity"


def test_joint_order_defined_behaviour():
    arm = ["a", "b", "c"]
    assert joint_order(["c", "a", "b"], arm) == [1, 2, 0]  # any order
    assert joint_order(["x", "c", "b", "a"], arm) == [3, 2, 1]  # extra joints ignored by default
    assert joint_order(["c", "b", "a"], arm, extra="reject") == [2, 1, 0]
    refused = [
        ([], {}),  # unnamed: ambiguous
        (["a", "b"], {}),  # missing
        (["a", "b", "c", "a"], {}),  # named twice (even with all present)
        (["a", "b", "c", "x"], {"extra": "reject"}),  # a joint the arm does not have
        (["a", "b", "b"], {"extra": "reject"}),
    ]
    for names, kw in refused:
        with pytest.raises(Rejected) as e:
            joint_order(names, arm, **kw)
        assert e.value.reason == "bad_joint_names", names
    with pytest.raises(ValueError):
        joint_order(arm, arm, extra="keep")
