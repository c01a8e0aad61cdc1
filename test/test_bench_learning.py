"""`lwd bench learning` end to end at toy size: a small v0, one round, the JSON rows, the scenes' pose spread."""

from __future__ import annotations

import dataclasses
import json

import pytest


def test_one_round_of_a_small_policy_at_a_chosen_variation(tmp_path, monkeypatch):
    import lwd.sim.evaluate as ev
    import lwd.sim.rollout as ro
    from lwd.app.bench import BenchConfig, run_bench
    from lwd.policy.checkpoint import load_checkpoint
    from lwd.rl.pretrain import PretrainConfig, pretrain

    base = tmp_path / "v0"
    pretrain(base, PretrainConfig(tasks=("pick_place",), demos_per_task=2, steps=5, batch_size=8, image_size=32,
                                  vision_channels=4, cond_dim=32, hidden=32), progress=False)
    cfg = load_checkpoint(base / "policies" / "v0").model.cfg
    assert (cfg.image_size, cfg.vision_channels, cfg.cond_dim, cfg.hidden) == (32, 4, 32, 32)

    seen = []

    def spy(run):
        def f(*a, **k):
            seen.append(k.get("variation"))
            return run(*a, **k)
        return f

    monkeypatch.setattr(ev, "run_episode", spy(ev.run_episode))
    monkeypatch.setattr(ro, "run_episode", spy(ro.run_episode))
    summary = run_bench(BenchConfig(
        out=tmp_path / "bench", algos=("bc",), rounds=1, episodes_per_round=2, updates_per_round=3, offline_updates=0,
        eval_episodes=2, tasks=("pick_place",), pretrained=base, gate="none", variation=0.25, workers=1),
        log=lambda *_: None)
    assert seen and set(seen) == {0.25}  # the v0 evaluation (a 32 px world for a 32 px policy), fleet, v1
    assert len(seen) == 2 + 2 + 2
    v0, v1 = summary["results"]["bc"]
    assert v1["published"] == 1 and v1["learner_updates"] == 3 and v1["fleet"]["episodes"] == 2
    assert v1["eval"]["pick_place"]["episodes"] == 2 and v1["round_end"] == {}  # bc: no round-end work
    saved = json.loads((tmp_path / "bench" / "results" / "bench_learning.json").read_text())
    assert saved["config"]["variation"] == 0.25 and saved["table"] == summary["table"]


def test_horizon_panels_follow_the_task_registry(tmp_path):
    from lwd.app.bench import long_horizon, plot_curves
    from lwd.sim.tasks import get_task

    tasks = ("pick_place", "restock3", "stack", "semantic")
    assert long_horizon(tasks) == [t for t in tasks if get_task(t).long_horizon] == ["restock3", "semantic"]
    ev = {t: {"successes": 1, "episodes": 4} for t in tasks}
    plot_curves({"bc": [{"robot_s": 0.0, "eval": ev}, {"robot_s": 60.0, "eval": ev}]}, tasks, tmp_path / "c.png")
    assert (tmp_path / "c.png").stat().st_size > 0


def test_resume_refuses_partial_results_of_another_configuration(tmp_path):
    """A working directory resumes only the run it holds; --fresh (resume=False) starts a new one there."""
    from lwd.app.bench import BenchConfig, _check_resume

    cfg = BenchConfig(out=tmp_path, tasks=("pick_place",), rounds=2)
    _check_resume(cfg, tmp_path)  # a new directory
    (tmp_path / "v0_eval.json").write_text("{}")
    _check_resume(dataclasses.replace(cfg, workers=1), tmp_path)  # how it runs is not what it measures
    with pytest.raises(ValueError, match="tasks"):
        _check_resume(dataclasses.replace(cfg, tasks=("pick_place", "restock3")), tmp_path)
    _check_resume(dataclasses.replace(cfg, rounds=3), tmp_path)  # more rounds extend the run
    key = json.loads((tmp_path / "bench_config.json").read_text())
    (tmp_path / "bench_config.json").write_text(json.dumps({**key, "rounds": 2}))  # as runs before 0c3a325 wrote
    _check_resume(dataclasses.replace(cfg, rounds=3), tmp_path)
    _check_resume(dataclasses.replace(cfg, eval_episodes=9, resume=False), tmp_path)
    with pytest.raises(ValueError, match="eval_episodes"):
        _check_resume(cfg, tmp_path)
    (tmp_path / "bench_config.json").unlink()  # a run from before the key was written
    with pytest.raises(ValueError, match="predates"):
        _check_resume(cfg, tmp_path)


def test_resume_ignores_pretraining_fields_only_when_v0_is_given(tmp_path):
    """How the bench would pretrain a v0 does not describe a run handed its v0 (--pretrained), so a changed
    pretraining default must not lock that run out; a run that pretrained its own v0 still refuses."""
    from lwd.app.bench import BenchConfig, _check_resume

    given = BenchConfig(out=tmp_path, tasks=("pick_place",), pretrained=tmp_path / "v0", pretrain_steps=6000)
    _check_resume(given, tmp_path)
    (tmp_path / "v0_eval.json").write_text("{}")
    _check_resume(dataclasses.replace(given, pretrain_steps=36000, demos_per_task=7), tmp_path)
    with pytest.raises(ValueError, match="pretrained"):
        _check_resume(dataclasses.replace(given, pretrained=tmp_path / "other"), tmp_path)
    own = tmp_path / "own"
    own.mkdir()
    cfg = BenchConfig(out=own, tasks=("pick_place",), pretrain_steps=6000)
    _check_resume(cfg, own)
    (own / "v0_eval.json").write_text("{}")
    with pytest.raises(ValueError, match="pretrain_steps"):
        _check_resume(dataclasses.replace(cfg, pretrain_steps=36000), own)


def test_v0_evaluation_in_worker_processes_matches_one_process(tmp_path):
    """The v0 evaluation spreads tasks over worker processes; chunks are deterministic, so the numbers match."""
    import multiprocessing as mp

    from lwd.app.bench import BenchConfig, _eval_v0_task
    from lwd.rl.pretrain import PretrainConfig, pretrain

    base = tmp_path / "v0"
    tasks = ("pick_place", "place_slot")
    pretrain(base, PretrainConfig(tasks=tasks, demos_per_task=1, steps=3, batch_size=8, image_size=32,
                                  vision_channels=4, cond_dim=32, hidden=32), progress=False)
    cfg = BenchConfig(out=tmp_path / "bench", tasks=tasks, eval_episodes=2, variation=0.25)
    with mp.get_context("spawn").Pool(2) as pool:
        parallel = pool.map(_eval_v0_task, [(cfg, base, (t,)) for t in tasks])
    assert [list(p) for p in parallel] == [["pick_place"], ["place_slot"]]
    assert {t: r for p in parallel for t, r in p.items()} == _eval_v0_task((cfg, base, tasks))


def test_one_algorithm_runs_its_rollouts_in_the_workers_with_the_same_numbers(tmp_path):
    """One algorithm with 2 workers: fleet episodes and evaluations run in worker processes from the version's
    checkpoint; the bags, the learner and so every number match the serial run."""
    from lwd.app.bench import BenchConfig, run_bench
    from lwd.rl.pretrain import PretrainConfig, pretrain

    base = tmp_path / "v0"
    tasks = ("pick_place", "place_slot")
    pretrain(base, PretrainConfig(tasks=tasks, demos_per_task=1, steps=3, batch_size=8, image_size=32,
                                  vision_channels=4, cond_dim=32, hidden=32), progress=False)
    rows = {}
    for workers in (1, 2):
        summary = run_bench(BenchConfig(
            out=tmp_path / f"w{workers}", algos=("bc",), rounds=1, episodes_per_round=3, updates_per_round=2,
            offline_updates=0, eval_episodes=3, tasks=tasks, pretrained=base, gate="none", variation=0.25,
            workers=workers), log=lambda *_: None)
        rows[workers] = summary["results"]["bc"]
    keys = ("eval", "fleet", "robot_s", "learner_updates", "version")
    assert [{k: r.get(k) for k in keys} for r in rows[2]] == [{k: r.get(k) for k in keys} for r in rows[1]]
    assert rows[2][1]["eval"]["pick_place"]["episodes"] == 3 and rows[2][1]["fleet"]["episodes"] == 3


def test_algorithms_in_the_pool_report_whole_run_progress(tmp_path):
    """Two algorithms on 2 workers: the parent logs each one's end with the run's ETA (a worker's own line knows
    only its algorithm's rounds), and the results keep the requested order."""
    from lwd.app.bench import BenchConfig, run_bench
    from lwd.rl.pretrain import PretrainConfig, pretrain

    base = tmp_path / "v0"
    pretrain(base, PretrainConfig(tasks=("pick_place",), demos_per_task=1, steps=3, batch_size=8, image_size=32,
                                  vision_channels=4, cond_dim=32, hidden=32), progress=False)
    lines = []
    summary = run_bench(BenchConfig(
        out=tmp_path / "b", algos=("pretrain_more", "bc"), rounds=1, episodes_per_round=1, updates_per_round=1,
        offline_updates=0, eval_episodes=1, tasks=("pick_place",), pretrained=base, gate="none", variation=0.25,
        workers=2), log=lines.append)
    done = [x for x in lines if "algorithms done" in x]
    assert len(done) == 2 and "1/2" in done[0] and "ETA" in done[0] and "2/2" in done[1] and "ETA" not in done[1]
    assert list(summary["results"]) == ["pretrain_more", "bc"]


def test_run_eta_scales_the_time_spent_so_far():
    from lwd.app.bench import run_eta

    assert run_eta(600.0, 2, 6) == 1200.0 and run_eta(600.0, 6, 6) == 0.0
    with pytest.raises(ValueError):
        run_eta(10.0, 0, 6)


def test_image_lr_reaches_every_algorithm_and_names_the_run(tmp_path):
    from lwd.app.bench import BenchConfig, _check_resume, _overrides
    from lwd.rl.algorithms import ALGORITHMS, algorithm_config

    cfg = BenchConfig(out=tmp_path, image_lr=3e-4)
    for algo in ALGORITHMS:
        o = _overrides(cfg, algo)
        assert o["image_lr"] == 3e-4 and algorithm_config(algo)(**o).image_lr == 3e-4
    assert "image_lr" not in _overrides(BenchConfig(), "bc")
    _check_resume(BenchConfig(out=tmp_path), tmp_path)
    (tmp_path / "v0_eval.json").write_text("{}")
    with pytest.raises(ValueError, match="image_lr"):
        _check_resume(cfg, tmp_path)
    key = json.loads((tmp_path / "bench_config.json").read_text())
    del key["image_lr"]  # a run started before the field existed resumes at its default
    (tmp_path / "bench_config.json").write_text(json.dumps(key))
    _check_resume(BenchConfig(out=tmp_path), tmp_path)


def test_a_finished_run_continues_with_more_rounds(tmp_path):
    """--rounds 2 on a finished 1-round run keeps round 1's row and continues from the learner's saved state; the
    fleet bags of a round cut short are recorded again, not counted twice; a learner ahead of its rows (published,
    row not written) cannot be continued faithfully and starts over."""
    import shutil

    from lwd.app.bench import BenchConfig, _resumable, run_bench
    from lwd.data.store import ExperienceStore
    from lwd.rl.pretrain import PretrainConfig, pretrain

    base = tmp_path / "v0"
    pretrain(base, PretrainConfig(tasks=("pick_place",), demos_per_task=1, steps=3, batch_size=8, image_size=32,
                                  vision_channels=4, cond_dim=32, hidden=32), progress=False)
    cfg = BenchConfig(out=tmp_path / "b", algos=("bc",), rounds=1, episodes_per_round=2, updates_per_round=2,
                      offline_updates=0, eval_episodes=2, tasks=("pick_place",), pretrained=base, gate="none",
                      variation=0.25, workers=1)
    one = run_bench(cfg, log=lambda *_: None)["results"]["bc"]
    root = tmp_path / "b" / "bc" / "store"
    bags = root / "episodes" / "bench"
    shutil.copytree(bags / "bench-r0-000", bags / "bench-r1-000")  # a round cut short after one bag
    ExperienceStore(root).scan()
    two = run_bench(dataclasses.replace(cfg, rounds=2), log=lambda *_: None)["results"]["bc"]
    assert two[:2] == one and [r["round"] for r in two] == [0, 1, 2] and two[2]["version"] == 2
    assert two[2]["learner_updates"] == 4 and two[2]["fleet"]["episodes"] == 2
    assert sorted(p.name for p in bags.iterdir()) == ["bench-r0-000", "bench-r0-001", "bench-r1-000", "bench-r1-001"]
    assert len(ExperienceStore(root).episodes(robot="bench")) == 4
    state = json.loads((root / "learner" / "state.json").read_text())
    assert state["round"] == 2 and state["fleet_counted"] == 4
    assert _resumable(root, two) == 2 and _resumable(root, two[:2]) is None  # the learner is a round ahead
    assert run_bench(dataclasses.replace(cfg, rounds=1), log=lambda *_: None)["results"]["bc"] == one
