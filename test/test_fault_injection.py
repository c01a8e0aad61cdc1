"""Fault injection over the real multi-process fleet (issue 8, "Tests in make test").

Each test launches ``fleet_sim.launch.py`` (every node its own process, DDS on localhost, this run's
``ROS_DOMAIN_ID``), injects faults from outside as an operator or a crash would, and checks what the fleet did on
its topics and in the store. Every wait is a condition with a deadline; nothing depends on fixed sleeps.

- ``test_learner_crash_mid_round_and_taken_next_version``: ``kill -9`` of the learner after it ingested a round's
  episodes but before it published; launch respawns it and it publishes v1 without counting anything twice; then a
  squatter ``policies/v2`` appears before the next round and the learner publishes v3, which the robots adopt.
- ``test_corrupt_newest_checkpoint_and_recorder_crash``: a truncated newest checkpoint at start: learner and robot
  run v0 and report the quarantine; then ``kill -9`` of the recorder mid-episode: it is respawned, the next episode
  is recorded, and the partial bag is recovered (or quarantined), never indexed half-written.

Slow (about a minute and a half each on an idle 2-core box): ``pytest -m "not slow_fault"`` leaves them out.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from launch_util import interrupt

rclpy = pytest.importorskip("rclpy")

from lwd.app.demo import ros_env  # noqa: E402
from lwd.policy.checkpoint import list_versions  # noqa: E402

pytestmark = [pytest.mark.ros, pytest.mark.slow_fault]

ROUND_UPDATES = 100
"""Learner updates per round in the learner-crash test: enough that a round lasts seconds (the window in which the
test kills it), few enough that the respawned learner's repeat of the round stays quick."""
MIB = 1 << 20


class Fleet:
    """A running fleet launch and a test node that records what the fleet says about itself."""

    def __init__(self, store: Path, proc: subprocess.Popen, log_path: Path, ctx) -> None:
        from rclpy.node import Node
        from std_msgs.msg import String

        from lwd.nodes.common import FLEET_POLICY_TOPIC, LATCHED_QOS, LEARNER_STATUS_TOPIC, RELIABLE_QOS

        self.store, self.proc, self.log_path = store, proc, log_path
        self.seen_pids: set[int] = set()
        self.node = Node("fault_injection_test", context=ctx)
        self.ex = rclpy.executors.SingleThreadedExecutor(context=ctx)
        self.ex.add_node(self.node)
        self.learner_statuses: list[dict] = []
        self.announcements: list[dict] = []
        self.policy_statuses: dict[str, list[dict]] = {}
        self.recorder_status: dict[str, dict] = {}
        self.node.create_subscription(String, LEARNER_STATUS_TOPIC,
                                      lambda m: self.learner_statuses.append(json.loads(m.data)), LATCHED_QOS)
        self.node.create_subscription(String, FLEET_POLICY_TOPIC,
                                      lambda m: self.announcements.append(json.loads(m.data)), LATCHED_QOS)
        for r in ("robot0", "robot1"):
            self.node.create_subscription(
                String, f"/{r}/policy/status",
                lambda m, r=r: self.policy_statuses.setdefault(r, []).append(json.loads(m.data)), LATCHED_QOS)
            self.node.create_subscription(
                String, f"/{r}/recorder/status",
                lambda m, r=r: self.recorder_status.__setitem__(r, json.loads(m.data)), RELIABLE_QOS)

    @property
    def learner(self) -> dict:
        return self.learner_statuses[-1] if self.learner_statuses else {}

    def policy(self, robot: str) -> dict:
        return self.policy_statuses.get(robot, [{}])[-1]

    def log_tail(self, n: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-n:]

    def spin_until(self, cond: Callable[[], object], timeout: float, what: str, step: float = 0.1):
        """Spin the test node until ``cond()`` is truthy (returns it); fails after ``timeout`` s saying ``what``."""
        end = time.monotonic() + timeout
        while True:
            got = cond()
            if got:
                return got
            if time.monotonic() > end:
                pytest.fail(f"timed out after {timeout:.0f} s waiting for: {what}\nlearner: {self.learner}\n"
                            f"robots: { {r: s[-1] for r, s in self.policy_statuses.items()} }\n"
                            f"launch log tail:\n{self.log_tail()}")
            if self.proc.poll() is not None:
                pytest.fail(f"launch exited ({self.proc.returncode}) while waiting for: {what}\n{self.log_tail()}")
            self.ex.spin_once(timeout_sec=step)

    def pid(self, executable: str, robot: str | None = None) -> int | None:
        """The live process running ``lib/lwd/<executable>`` (in ``robot``'s namespace), if any."""
        try:
            procs = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return None
        self.seen_pids.update(p.pid for p in procs)
        for p in procs:
            try:
                if p.status() == psutil.STATUS_ZOMBIE:
                    continue
                cmd = p.cmdline()
            except psutil.NoSuchProcess:
                continue
            if any(c.endswith(f"lib/lwd/{executable}") for c in cmd) and (
                    robot is None or f"__ns:=/{robot}" in cmd):
                return p.pid
        return None


@contextlib.contextmanager
def launch_fleet(store: Path, out: Path, *args: str) -> Iterator[Fleet]:
    """Run ``fleet_sim.launch.py args`` on ``store`` as separate processes; SIGINT on exit, then check that every
    node ended without a traceback and nothing was left behind."""
    env = ros_env(out)
    env["ROS_DOMAIN_ID"] = os.environ["ROS_DOMAIN_ID"]
    log_path = out / "fleet.log"
    ctx = rclpy.Context()
    rclpy.init(context=ctx, args=[])
    fleet = None
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "lwd.app.launch_runner", "fleet_sim.launch.py",
                                 f"store:={store}", *args],
                                env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            fleet = Fleet(store, proc, log_path, ctx)  # listening before the nodes come up: hears every status
            yield fleet
        finally:
            if fleet is not None:
                fleet.pid("learner")  # remember the current children for the leftover check
                fleet.ex.shutdown()
                fleet.node.destroy_node()
            rclpy.try_shutdown(context=ctx)
            if not interrupt(proc, 60):
                pytest.fail("launch did not shut down on SIGINT")
    text = log_path.read_text(errors="replace")
    assert "Traceback" not in text and "RCLError" not in text, text[-4000:]
    deadline = time.monotonic() + 15
    alive = {p for p in fleet.seen_pids if _alive(p)}
    while alive and time.monotonic() < deadline:
        time.sleep(0.2)
        alive = {p for p in alive if _alive(p)}
    assert not alive, f"processes left behind: {alive}"


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


# -- store inspection (read-only; the fleet owns the store) ----------------------------------------------------------
def _db(store: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{store / 'index.sqlite'}?mode=ro", uri=True, timeout=30.0)


def _claimed_fleet_episodes(store: Path) -> int:
    """Fleet episodes the learner has claimed from the index (it claims what it ingests)."""
    if not (store / "index.sqlite").exists():
        return 0
    with contextlib.closing(_db(store)) as db:
        return db.execute("SELECT COUNT(*) FROM ingested i JOIN episodes e ON e.id = i.episode "
                          "WHERE i.consumer = 'learner' AND e.source = 'fleet'").fetchone()[0]


def _indexed(store: Path) -> dict[str, dict]:
    """relpath -> metadata of every indexed episode."""
    with contextlib.closing(_db(store)) as db:
        return {rel: json.loads(meta) for rel, meta in db.execute("SELECT relpath, meta_json FROM episodes")}


def _json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


def _copy_store(tiny_store: Path, tmp_path: Path) -> Path:
    store = tmp_path / "store"
    shutil.copytree(tiny_store, store)
    return store


def _seq(episode_id: str) -> int:
    """Plan position of an episode id ``<robot>-<date>-<time>-<seq>[-r<retry>]``."""
    parts = episode_id.split("-")
    return int(parts[3])


FLEET_ARGS = ("tasks:=pick_place", "gate:=none", "offline_updates:=3", "background_updates:=0", "select_episodes:=0",
              'algo_overrides:={"tilt_steps": 2, "critic_refit": 4, "image_batch": 8, "actor_batch": 4}')


# -- the learner dies mid-round; a version directory it wants is taken ------------------------------------------------
def test_learner_crash_mid_round_and_taken_next_version(tiny_store, tmp_path):
    store = _copy_store(tiny_store, tmp_path)
    policies = store / "policies"
    with launch_fleet(store, tmp_path, "robots:=2", "episodes_per_round:=1", "rounds:=2", "time_limit_scale:=0.4",
                      f"updates_per_round:={ROUND_UPDATES}", *FLEET_ARGS) as f:
        f.spin_until(lambda: f.learner.get("version") == 0, 120, "the learner serving v0")
        victim = f.spin_until(lambda: f.pid("learner"), 10, "the learner's process")

        # 1. kill -9 the learner after it ingested both robots' round-1 episodes, before it published.
        f.spin_until(lambda: _claimed_fleet_episodes(store) >= 2, 240,
                     "the learner ingesting both robots' first episodes", step=0.02)
        os.kill(victim, signal.SIGKILL)
        at_kill = _json(store / "learner" / "state.json")
        assert not (policies / "v1").exists(), f"the round finished before the kill: raise ROUND_UPDATES ({at_kill})"
        assert at_kill.get("round", 0) == 0 and at_kill.get("fleet_counted", 0) == 0, at_kill
        f.spin_until(lambda: f.pid("learner") not in (None, victim), 60, "launch respawning the learner")
        f.spin_until(lambda: (policies / "v1" / "manifest.json").exists(), 180, "the respawned learner publishing v1")

        # 3. Before the next round, someone else's directory takes the version the learner would use next.
        shutil.copytree(policies / "v1", policies / "v2")
        squatter = _json(policies / "v2" / "manifest.json")
        f.spin_until(lambda: all(f.policy(r).get("version") == 1 for r in ("robot0", "robot1")), 120,
                     "both robots adopting v1")
        f.spin_until(lambda: f.learner.get("round") == 2 and f.learner.get("version") == 3, 240,
                     "the learner finishing round 2 as v3 (v2 is taken)")
        f.spin_until(lambda: all(f.policy(r).get("version") == 3 for r in ("robot0", "robot1")), 120,
                     "both robots adopting v3")
        final = dict(f.learner)
        announced = [(a["version"], a["sha256"]) for a in f.announcements]

    # No version reused: announcements only go up, every version has one identity, the squatter is untouched.
    distinct = list(dict.fromkeys(announced))  # a respawned learner re-announces what it serves
    assert [v for v, _ in distinct] == [0, 1, 3], announced
    assert list_versions(policies) == [0, 1, 2, 3]
    m1, m3 = _json(policies / "v1" / "manifest.json"), _json(policies / "v3" / "manifest.json")
    assert (m1["version"], m1["parent"], m3["version"], m3["parent"]) == (1, 0, 3, 1), (m1, m3)
    assert [m1["sha256"], m3["sha256"]] == [sha for v, sha in distinct if v in (1, 3)]
    assert _json(policies / "v2" / "manifest.json") == squatter
    # Nothing ingested twice, nothing lost: each round counted exactly its two episodes, the state on disk agrees with
    # the index, and the learner's buffer holds every indexed episode once.
    assert (m1["new_episodes"], m3["new_episodes"]) == (2, 2), (m1, m3)
    state = _json(store / "learner" / "state.json")
    assert (state["round"], state["version"], state["sha256"], state["fleet_counted"]) == (2, 3, m3["sha256"], 4)
    indexed = _indexed(store)
    fleet = sorted(rel for rel, meta in indexed.items() if meta["source"] == "fleet")
    assert len(fleet) == 4 and {rel.split("/")[1] for rel in fleet} == {"robot0", "robot1"}, fleet
    assert _claimed_fleet_episodes(store) == 4

    from lwd.data.store import ExperienceStore

    es = ExperienceStore(store)
    steps = [len(es.load(rec)) for rec in es.episodes()]
    assert final["buffer_steps"] == sum(n for n in steps if n >= 2), (final, steps)


# -- a corrupt newest checkpoint at start; the recorder dies mid-episode ----------------------------------------------
def test_corrupt_newest_checkpoint_and_recorder_crash(tiny_store, tmp_path):
    store = _copy_store(tiny_store, tmp_path)
    policies = store / "policies"
    v1 = policies / "v1"
    shutil.copytree(policies / "v0", v1)
    (v1 / "manifest.json").write_text(json.dumps({**_json(v1 / "manifest.json"), "version": 1}))
    weights = v1 / "model.safetensors"
    os.truncate(weights, weights.stat().st_size // 2)
    episodes = store / "episodes" / "robot0"

    # Policy-only episodes (no operator) that run to their time limit: long enough to put MCAP chunks on disk.
    with launch_fleet(store, tmp_path, "robots:=1", "episodes_per_round:=0", "rounds:=0", "intervene:=false",
                      "time_limit_scale:=1.0", "updates_per_round:=4", *FLEET_ARGS) as f:
        # 4. Learner and robot both start on v0, and both say v1 was quarantined (whoever moved it).
        def quarantined(status: dict) -> list[int]:
            return [q["version"] for q in status.get("quarantined") or []]

        f.spin_until(lambda: f.learner_statuses and f.policy_statuses.get("robot0") and f.announcements, 120,
                     "the learner's status and announcement and robot0's policy status")
        first_learner, first_robot = f.learner_statuses[0], f.policy_statuses["robot0"][0]
        assert first_learner["version"] == 0 and quarantined(first_learner) == [1], first_learner
        assert first_robot["version"] == 0 and quarantined(first_robot) == [1], first_robot
        assert f.announcements and f.announcements[0]["version"] == 0, f.announcements
        assert 1 not in list_versions(policies)
        moved = [p for p in (store / "quarantine" / "policies").iterdir() if p.is_dir()]
        assert len(moved) == 1 and moved[0].name.startswith("v1__"), moved
        assert (moved[0].parent / f"{moved[0].name}.reason.txt").read_text().strip()

        # 2. kill -9 robot0's recorder while it records an episode that has at least one MCAP chunk on disk.
        def recording_with_data() -> str | None:
            ep = f.recorder_status.get("robot0", {}).get("recording")
            try:
                size = sum(p.stat().st_size for p in (episodes / ep).glob("*.mcap")) if ep else 0
            except FileNotFoundError:
                return None
            return ep if size >= MIB else None

        partial = f.spin_until(recording_with_data, 120, "robot0 recording an episode with an MCAP chunk on disk",
                               step=0.05)
        victim = f.spin_until(lambda: f.pid("episode_recorder", "robot0"), 10, "robot0's recorder process")
        complete_before = {d.name for d in episodes.iterdir() if (d / "episode.json").exists()}
        os.kill(victim, signal.SIGKILL)
        assert not (episodes / partial / "episode.json").exists(), "the episode ended before the kill"

        f.spin_until(lambda: f.pid("episode_recorder", "robot0") not in (None, victim), 60,
                     "launch respawning the recorder")
        def next_recorded() -> str | None:
            new = [d.name for d in episodes.iterdir()
                   if (d / "episode.json").exists() and d.name not in complete_before | {partial}]
            return min(new) if new else None

        # The robot ran no episode its recorder could not record: the killed episode was aborted and the next one
        # recorded is its re-run (same plan position, a new id), not the episode after it.
        rerun = f.spin_until(next_recorded, 180, "the next episode recorded")
        assert _seq(rerun) == _seq(partial) and rerun.rsplit("-", 1)[-1].startswith("r"), (partial, rerun)

        # The partial bag is recovered into the index or quarantined (once stale), never indexed half-written.
        rel = f"episodes/robot0/{partial}"
        quarantine = store / "quarantine"

        def settled() -> str | None:
            meta = _indexed(store).get(rel)
            if meta is not None:
                assert meta.get("recovered"), f"{rel} indexed without recovery: {meta}"
                return "recovered"
            if any(p.name.startswith(f"robot0__{partial}__") for p in quarantine.iterdir()):
                return "quarantined"
            return None

        outcome = f.spin_until(settled, 180, f"the partial episode {partial} recovered or quarantined")

    if outcome == "recovered":
        from lwd.data.reader import read_episode

        meta = _json(episodes / partial / "episode.json")
        assert meta["recovered"] and meta["episode_id"] == partial and meta["source"] == "fleet", meta
        assert len(read_episode(episodes / partial)) > 0
    else:
        (q,) = [p for p in quarantine.iterdir() if p.name.startswith(f"robot0__{partial}__")
                and not p.name.endswith(".reason.txt")]
        assert (quarantine / f"{q.name}.reason.txt").read_text().strip()
    # Every indexed episode is complete: a bag with its metadata and sidecar.
    for rel_path in _indexed(store):
        assert (store / rel_path / "episode.json").exists() and (store / rel_path / "metadata.yaml").exists(), rel_path
