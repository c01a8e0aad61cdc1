"""ExperienceStore: scan/index, recovery or quarantine of broken bags, exactly-once claim_new."""

from __future__ import annotations

import multiprocessing as mp
import os
import time
from pathlib import Path

import numpy as np

from lwd.data import CONTROL_DT_NS, N_JOINTS, SOURCE_EXPERT, EpisodeMeta, EpisodeSteps, ExperienceStore, write_steps_bag


def make_steps(T=20, S=16, seed=0, episode_id="ep0", robot="r0", outcome="success"):
    rng = np.random.default_rng(seed)
    meta = EpisodeMeta(episode_id=episode_id, robot=robot, task="pick", instruction="pick the can", seed=seed,
                       source="demo", outcome=outcome)
    return EpisodeSteps(images=rng.integers(0, 256, (T, S, S, 3), dtype=np.uint8),
                        qpos=rng.normal(size=(T, N_JOINTS)), actions=rng.normal(size=(T, N_JOINTS)),
                        source=np.full(T, SOURCE_EXPERT), policy_version=np.full(T, -1),
                        t_ns=10**9 + CONTROL_DT_NS * np.arange(T), meta=meta)


def add_episode(store: ExperienceStore, robot: str, ep: str, **kw) -> Path:
    path = store.episode_path(robot, ep)
    write_steps_bag(path, make_steps(episode_id=ep, robot=robot, **kw))
    return path


def make_old(path: Path, age_s: float = 3600):
    t = time.time() - age_s
    for p in [*path.rglob("*"), path] if path.is_dir() else [path]:
        os.utime(p, (t, t))


def test_layout_scan_and_query(tmp_path):
    store = ExperienceStore(tmp_path)
    assert store.episode_path("r0", "e1") == tmp_path / "episodes" / "r0" / "e1"
    assert (tmp_path / "episodes" / "r0").is_dir() and (tmp_path / "policies").is_dir()
    add_episode(store, "r0", "e1")
    add_episode(store, "r1", "e2", outcome="failure")
    assert store.scan() == 2
    assert store.scan() == 0
    recs = store.episodes()
    assert [r.episode_id for r in recs] == ["e1", "e2"]
    assert [r.robot for r in store.episodes(robot="r1")] == ["r1"]
    assert len(store.episodes(source="demo")) == 2 and store.episodes(source="fleet") == []
    r = recs[0]
    assert r.success and r.path == tmp_path / "episodes" / "r0" / "e1" and r.indexed_ns > 0
    steps = store.load(r)
    assert len(steps) == 20 and steps.success
    np.testing.assert_allclose(steps.qpos, make_steps(episode_id="e1").qpos.astype(np.float32))
    with __import__("sqlite3").connect(tmp_path / "index.sqlite") as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_scan_recovers_truncated_and_quarantines_garbage(tmp_path):
    store = ExperienceStore(tmp_path, stale_s=30)
    good = add_episode(store, "r0", "good")
    trunc = add_episode(store, "r0", "trunc", T=200, S=64)  # 2.4 MB: > 1 MiB chunk survives
    mcap = next(trunc.glob("*.mcap"))
    mcap.write_bytes(mcap.read_bytes()[: mcap.stat().st_size // 2])
    (trunc / "metadata.yaml").unlink()
    (trunc / "episode.json").unlink()
    garbage = store.episode_path("r0", "garbage")
    garbage.mkdir()
    (garbage / "garbage.mcap").write_bytes(os.urandom(10000))
    empty = store.episode_path("r1", "empty")
    empty.mkdir()
    stray = tmp_path / "episodes" / "r1" / "notes.txt"
    stray.write_text("hello")
    (tmp_path / "episodes" / "junk.bin").write_bytes(os.urandom(100))
    bad_json = add_episode(store, "r2", "badjson")
    (bad_json / "episode.json").write_text("{not json")
    fresh = store.episode_path("r2", "being_written")  # incomplete but recent: left alone
    fresh.mkdir()
    (fresh / "being_written.mcap").write_bytes(b"\x89MCAP0\r\n")

    # nothing is stale yet: only the good episode is indexed, nothing is moved
    assert store.scan() == 1
    assert trunc.exists() and garbage.exists()
    for p in (trunc, garbage, empty, stray, tmp_path / "episodes" / "junk.bin", bad_json):
        make_old(p)
    assert store.scan() == 2  # the recovered one + the one whose episode.json was rebuilt from custom data
    recs = {r.episode_id: r for r in store.episodes()}
    assert set(recs) == {"good", "trunc", "badjson"}
    assert recs["badjson"].outcome == "success" and not recs["badjson"].recovered
    assert recs["trunc"].outcome == "aborted" and recs["trunc"].recovered
    assert 0 < len(store.load(recs["trunc"])) < 200
    q = {p.name.rsplit("__", 1)[0] for p in store.quarantined()}
    assert q == {"r0__garbage", "r1__empty", "r1__notes.txt", "junk.bin"}
    assert all((tmp_path / "quarantine" / f"{p.name}.reason.txt").exists() for p in store.quarantined())
    assert not garbage.exists() and not empty.exists() and fresh.exists() and good.exists()
    assert store.scan() == 0


def test_claim_new_exactly_once_across_instances(tmp_path):
    a = ExperienceStore(tmp_path)
    b = ExperienceStore(tmp_path)
    for i in range(3):
        add_episode(a, "r0", f"e{i}")
    assert a.scan() == 3 and b.scan() == 0
    got_a = a.claim_new("learner")
    assert [r.episode_id for r in got_a] == ["e0", "e1", "e2"]
    assert b.claim_new("learner") == []
    add_episode(b, "r1", "e3")
    b.scan()
    assert [r.episode_id for r in b.claim_new("learner")] == ["e3"]
    assert a.claim_new("learner") == []
    assert len(a.claim_new("evaluator")) == 4  # consumers are independent
    c = ExperienceStore(tmp_path)  # a restarted process
    assert c.claim_new("learner") == [] and c.claim_new("evaluator") == []


def _claimer(root: str, n_rounds: int, q) -> None:
    store = ExperienceStore(root)
    got = []
    for _ in range(n_rounds):
        got += [r.episode_id for r in store.claim_new("learner")]
        time.sleep(0.002)
    q.put(got)


def test_claim_new_concurrent_processes(tmp_path):
    store = ExperienceStore(tmp_path)
    ctx = mp.get_context("spawn")  # no fork: other tests may have started threads (torch, rclpy)
    q = ctx.Queue()
    procs = [ctx.Process(target=_claimer, args=(str(tmp_path), 40, q)) for _ in range(2)]
    for p in procs:
        p.start()
    n = 30
    for i in range(n):  # index fake episodes while the claimers run
        store.register(tmp_path / "episodes" / "r0" / f"x{i}", EpisodeMeta(episode_id=f"x{i}", robot="r0"))
    results = [q.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    rest = [r.episode_id for r in store.claim_new("learner")]
    claimed = results[0] + results[1] + rest
    assert sorted(claimed) == sorted(f"x{i}" for i in range(n))  # each exactly once


def test_open_bag_with_heartbeat_is_not_recovered(tmp_path):
    from lwd.data import EpisodeBagWriter
    from lwd.data.msgs import joint_state_msg

    store = ExperienceStore(tmp_path, stale_s=30)
    path = store.episode_path("r0", "live")
    w = EpisodeBagWriter(path, EpisodeMeta(episode_id="live", robot="r0")).open()
    w.write_msg("joint_states", 10**9, joint_state_msg(10**9, np.zeros(N_JOINTS)))
    make_old(path)
    w.touch()  # what writes do every HEARTBEAT_S
    assert store.scan() == 0 and path.exists() and store.quarantined() == []
    w.finish()
    assert store.scan() == 1
