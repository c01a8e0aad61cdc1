"""Episode scheduler (ROS-free): plan, synchronous rounds, the recorder gate, ends."""

from __future__ import annotations

import pytest

from lwd.control.episodes import EpisodeScheduler, episode_seed

READY = {"ready": True, "recording": "", "error": ""}


def make(**kw) -> EpisodeScheduler:
    kw.setdefault("min_subscribers", 4)
    return EpisodeScheduler("robot0", ["pick_place", "restock3"], clock=lambda fmt: "20250101-000000", **kw)


def ready(s: EpisodeScheduler, now: float = 0.0) -> EpisodeScheduler:
    s.on_recorder(now, READY)
    s.on_policy_version(0)
    return s


def run_one(s: EpisodeScheduler, now: float, outcome: str = "success"):
    assert s.wait_reason(now, 4) is None, s.wait_reason(now, 4)
    spec = s.next_episode()
    s.start(spec, now, time_limit_s=30.0)
    s.on_recorder(now + 0.5, {**READY, "recording": spec.episode_id})
    s.end(outcome)
    return spec


def test_plan_cycles_tasks_with_reproducible_seeds():
    s = ready(make())
    specs = [run_one(s, 0.0) for _ in range(3)]
    assert [sp.task for sp in specs] == ["pick_place", "restock3", "pick_place"]
    assert [sp.seq for sp in specs] == [0, 1, 2]
    assert [sp.seed for sp in specs] == [episode_seed(0, "robot0", i) for i in range(3)]
    assert len({sp.seed for sp in specs}) == 3
    assert specs[1].episode_id == "robot0-20250101-000000-0001"
    assert episode_seed(0, "robot1", 0) != episode_seed(0, "robot0", 0)


def test_waits_for_the_recorder_and_says_why():
    s = make(recorder_timeout_s=5.0)
    s.on_policy_version(0)
    assert "no heartbeat" in s.wait_reason(0.0, 4)
    s.on_recorder(1.0, {"ready": False, "recording": "", "error": "/store/episodes/robot0 is not writable"})
    assert "not writable" in s.wait_reason(1.0, 4)
    s.on_recorder(2.0, READY)
    assert s.wait_reason(2.0, 4) is None
    assert "silent" in s.wait_reason(7.5, 4)  # the recorder died: heartbeat too old
    s.on_recorder(8.0, READY)  # respawned
    assert s.wait_reason(8.0, 4) is None


def test_other_wait_reasons():
    s = make()
    s.on_recorder(0.0, READY)
    assert "policy" in s.wait_reason(0.0, 4)
    s.on_policy_version(0)
    assert "listeners" in s.wait_reason(0.0, 3)
    assert s.wait_reason(0.0, 4) is None
    no_rec = make(require_recorder=False)
    no_rec.on_policy_version(0)
    assert no_rec.wait_reason(0.0, 4) is None


def test_synchronous_rounds_follow_the_learner():
    s = ready(make(episodes_per_round=2, rounds=2))
    run_one(s, 0.0)
    assert s.wait_reason(0.0, 4) is None  # mid-round: no wait
    run_one(s, 0.0)
    assert "learner" in s.wait_reason(0.0, 4)  # round 1 done, learner still at round 0
    s.on_learner(1, 1)
    assert "v1" in s.wait_reason(0.0, 4)  # learner published v1, robot still runs v0
    s.on_policy_version(1)
    assert s.wait_reason(0.0, 4) is None
    run_one(s, 0.0)
    run_one(s, 0.0)
    s.on_learner(2, 1)  # the gate rejected round 2's candidate: same version, the plan still ends
    assert s.finished and "rounds done" in s.wait_reason(0.0, 4)


def test_asynchronous_rounds_never_wait_for_the_learner():
    s = ready(make(episodes_per_round=2, rounds=2, sync=False))
    for _ in range(3):
        run_one(s, 0.0)  # past round 1's end with the learner still at round 0: the robot works on
    assert s.wait_reason(0.0, 4) is None
    s.on_learner(1, 1)
    assert s.wait_reason(0.0, 4) is None  # a new version is hot-swapped, never waited for
    run_one(s, 0.0)
    assert s.finished  # rounds still bound the plan


def test_gate_rejection_does_not_stall_the_round():
    s = ready(make(episodes_per_round=1))
    run_one(s, 0.0)
    s.on_learner(1, 0)  # round 1 finished without a new version
    assert s.wait_reason(0.0, 4) is None


def test_episode_ends_success_after_settle_and_failure_at_time_limit():
    s = ready(make(settle_s=0.5))
    spec = s.next_episode()
    s.start(spec, 10.0, time_limit_s=30.0)
    s.on_recorder(10.5, {**READY, "recording": spec.episode_id})
    assert s.wait_reason(10.5, 4).startswith("episode")
    assert s.check_end(11.0) is None
    s.on_reward(12.0, 1.0)
    s.on_reward(12.3, 1.0)  # the first reward counts
    s.on_recorder(12.4, {**READY, "recording": spec.episode_id})
    assert s.check_end(12.4) is None
    assert s.check_end(12.5)[0] == "success"
    s.end("success")
    spec = s.next_episode()
    s.start(spec, 20.0, time_limit_s=3.0)
    for t in (21.0, 22.0, 23.0):
        s.on_recorder(t, {**READY, "recording": spec.episode_id})
    assert s.check_end(23.0) is None
    assert s.check_end(23.1)[0] == "failure"


def test_episode_aborted_when_recorder_dies_and_rerun():
    s = ready(make(recorder_timeout_s=5.0, episodes_per_round=1))
    spec = s.next_episode()
    s.start(spec, 0.0, time_limit_s=100.0)
    s.on_recorder(1.0, {**READY, "recording": spec.episode_id})
    assert s.check_end(6.0) is None
    outcome, why = s.check_end(6.5)  # no heartbeat for 5.5 s
    assert outcome == "aborted" and "silent" in why
    s.end(outcome)
    # The aborted episode does not count: same task and seed again under a new id, no round barrier yet.
    s.on_recorder(7.0, READY)
    assert s.wait_reason(7.0, 4) is None
    again = s.next_episode()
    assert (again.seq, again.task, again.seed) == (spec.seq, spec.task, spec.seed)
    assert again.episode_id != spec.episode_id


def test_episode_aborted_when_a_restarted_recorder_lost_it():
    """A recorder killed and respawned within the heartbeat timeout never looks silent, but its bag is gone: the
    rest of the episode would run unrecorded (found by test_fault_injection.py)."""
    s = ready(make(recorder_timeout_s=5.0))
    spec = s.next_episode()
    s.start(spec, 0.0, time_limit_s=100.0)
    s.on_recorder(1.0, {**READY, "recording": spec.episode_id})
    assert s.check_end(2.0) is None
    s.on_recorder(3.0, READY)  # the respawned recorder: alive, ready, recording nothing
    s.on_recorder(3.5, {**READY, "recording": spec.episode_id})  # (saying the right id again does not undo it)
    outcome, why = s.check_end(3.5)
    assert outcome == "aborted" and "stopped recording" in why
    s.end(outcome)
    again = s.next_episode()
    assert again.seq == spec.seq and again.episode_id != spec.episode_id
    s.start(again, 4.0, time_limit_s=100.0)  # the retry is judged on its own
    s.on_recorder(4.5, {**READY, "recording": again.episode_id})
    assert s.check_end(5.0) is None


def test_episode_aborted_when_recorder_never_confirms():
    s = ready(make(recorder_timeout_s=5.0))
    spec = s.next_episode()
    s.start(spec, 0.0, time_limit_s=100.0)
    for t in range(1, 7):  # alive, but recording nothing (e.g. its bag could not be opened)
        s.on_recorder(float(t), READY)
    assert s.check_end(5.0) is None
    outcome, why = s.check_end(6.0)
    assert outcome == "aborted" and spec.episode_id in why


def test_misuse_raises():
    with pytest.raises(ValueError):
        EpisodeScheduler("r", [])
    s = ready(make())
    spec = s.next_episode()
    s.start(spec, 0.0, 10.0)
    with pytest.raises(RuntimeError):
        s.start(s.next_episode(), 0.0, 10.0)
    s.end("failure")
    with pytest.raises(RuntimeError):
        s.end("failure")
    with pytest.raises(ValueError):
        s.start(spec, 0.0, 10.0)  # stale spec
