"""`lwd bench learning`: the learner algorithms compared on an in-process simulated fleet (no ROS, same core).

Every algorithm starts from the same pretrained v0 and demonstrations and runs R rounds of: deploy the latest
version on E fleet episodes (same seeds for every algorithm; the scripted operator intervenes as in the ROS fleet)
-> write each episode as a rosbag2 bag into the algorithm's store -> ``Learner.poll()`` ingests the bags, runs the
round's updates, gates and publishes. After every round the deployed version is evaluated autonomously (no operator)
on fixed held-out seeds never used for training or gating, with 95% Wilson intervals.

Algorithms run in parallel worker processes (one algorithm per worker); a single algorithm's fleet episodes and
evaluations run in the worker processes instead (the same numbers: noise-free chunks, per-episode seeds). Results
are saved after every round, so an interrupted run resumes after its last finished round, and a finished one
continues with more ``--rounds`` (``--resume``, the default); the learner restarts from its saved state as a
restarted learner node does.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import platform
import shutil
import subprocess
import textwrap
import time
from dataclasses import dataclass, fields, replace
from pathlib import Path

import numpy as np

from lwd.data.store import ExperienceStore
from lwd.policy.checkpoint import latest_version, load_checkpoint, version_dir
from lwd.rl.fleet_rl import FleetRLConfig
from lwd.rl.learner import LearnerConfig
from lwd.rl.pretrain import CONVERGED_STEPS, PretrainConfig, pretrain, rollout_to_steps
from lwd.sim.operator_config import OperatorConfig
from lwd.sim.tasks import default_tasks, get_task

__all__ = ["BenchConfig", "QUICK", "run_bench", "deploy_episode", "long_horizon", "plot_curves"]


def long_horizon(tasks) -> list[str]:
    """The long-horizon tasks among ``tasks``, as the task registry marks them."""
    return [t for t in tasks if get_task(t).long_horizon]


@dataclass
class BenchConfig:
    out: Path = Path("runs/bench")
    """Working directory: v0, one store per algorithm, partial results."""
    results: Path | None = None
    """Where bench_learning.json, learning_curves.png and README.md go (default: <out>/results)."""
    algos: tuple[str, ...] = ("lwd", "bc", "iql_awr", "lwd_no_divl", "lwd_no_qam", "pretrain_more")
    rounds: int = 3
    episodes_per_round: int = 40
    """Fleet episodes per round (robot time is the same for every algorithm)."""
    updates_per_round: int = 1500
    offline_updates: int = 1000
    eval_episodes: int = 50
    """Autonomous evaluation episodes per task per measured version, on held-out seeds."""
    tasks: tuple[str, ...] = default_tasks()
    seed: int = 0
    pretrained: Path | None = None
    """A store holding v0 and its demos (default: pretrain one in <out>/pretrained)."""
    demos_per_task: int = PretrainConfig.demos_per_task
    pretrain_steps: int = CONVERGED_STEPS
    """v0's pretraining steps, when the bench pretrains one: trained until more steps stop helping, so that
    pretrain_more (the same compute without fleet data) measures what the demos alone would still give."""
    exec_steps: int = 5
    gate: str = "sim"
    gate_episodes: int = LearnerConfig.gate_episodes
    variation: float = 1.0
    """Item pose spread of the fleet's and the evaluation's scenes (1.0 = deployment, lwd.sim.world.ITEM_SPREAD;
    smaller is an easier setting). The gate and rollout selection always run at deployment."""
    workers: int = 2
    resume: bool = True
    image_lr: float | None = None
    """Peak learning rate of each round's whole-VLA schedule, for every algorithm that has one (None: each
    algorithm's default, 1e-3)."""
    fleet_fraction: float = LearnerConfig.fleet_fraction
    """Share of every training batch drawn from fleet steps (LearnerConfig.fleet_fraction; 0 = all steps alike)."""
    takeover_terminal: bool = LearnerConfig.takeover_terminal
    """Critic reward: a policy chunk that runs into a takeover ends with reward 0 (LearnerConfig.takeover_terminal)."""
    subgoal_credit: bool = LearnerConfig.subgoal_credit
    """Filtered BC data judged per subgoal segment (LearnerConfig.subgoal_credit)."""
    critic_features: str = FleetRLConfig.critic_features
    """With ``images``: what the critics of lwd and its variants read (FleetRLConfig.critic_features)."""
    select_candidates: int = 1
    """Value-guided selection (lwd.rl.selection): a version that publishes a critic (lwd and its variants) acts by
    the best of this many candidate chunks, in the fleet and in evaluation; 1 = off (every algorithm acts alike)."""
    misaligned_s: float = OperatorConfig.misaligned_s
    """The scripted operator also takes over when a tool has been low beside the free item, not around it, this
    long (ScriptedOperator.misaligned_s; 0 = off)."""
    images: bool = FleetRLConfig.images
    """Every algorithm trains the whole VLA on images (``images=True`` in BCConfig / FleetRLConfig) instead of its
    action expert on frozen features; critics stay on the features. The head alone did not learn this policy, the
    whole VLA did (docs/learning.md rows 19, 23)."""


QUICK = dict(rounds=2, episodes_per_round=16, updates_per_round=600, offline_updates=300, eval_episodes=16,
             demos_per_task=16, pretrain_steps=1500, gate_episodes=4, algos=("lwd", "bc", "pretrain_more"))
"""--quick: fewer of everything (the issue's budget is 20 min on 2 cores; not timed yet); flags given explicitly
still win."""


def deploy_episode(world, policy, task: str, seed: int, operator=None, time_limit_scale: float = 1.0,
                   variation: float = 1.0):
    """One fleet-like episode in-process; returns the sim rollout."""
    from lwd.sim.rollout import run_episode

    return run_episode(world, task, seed, actor=policy, operator=operator,
                       time_limit_s=get_task(task).time_limit_s * time_limit_scale, variation=variation)


def _prepare_base(cfg: BenchConfig, log) -> Path:
    if cfg.pretrained is not None:
        return Path(cfg.pretrained)
    base = Path(cfg.out) / "pretrained"
    if latest_version(base / "policies") is None:
        if base.exists():
            shutil.rmtree(base)
        log(f"[bench] pretraining v0: {cfg.demos_per_task} demos per task, {cfg.pretrain_steps} steps")
        # the box's share the bench was given (--workers) trains v0 before any worker starts
        pretrain(base, PretrainConfig(tasks=cfg.tasks, demos_per_task=cfg.demos_per_task, steps=cfg.pretrain_steps,
                                      seed=cfg.seed, threads=max(1, cfg.workers)), progress=False)
    return base


def _policy(model, version: int, seed: int, cfg: BenchConfig, ckpt: Path | None = None):
    """The acting policy of a version; with ``select_candidates`` > 1, value-guided by the critic ``ckpt`` publishes."""
    from lwd.policy.inference import VLAPolicy
    from lwd.rl.selection import attach_scorer

    policy = VLAPolicy(model, version, seed=seed, exec_steps=cfg.exec_steps)
    if ckpt is not None:
        attach_scorer(policy, Path(ckpt), cfg.select_candidates)
    return policy


def _eval(world, model, version: int, cfg: BenchConfig, ckpt: Path | None = None) -> dict:
    from lwd.sim.evaluate import evaluate

    policy = _policy(model, version, cfg.seed, cfg, ckpt)
    res = evaluate(world, policy, cfg.tasks, cfg.eval_episodes, variation=cfg.variation)
    return {t: r.to_dict() for t, r in res.items()}


def _mean_success(per_task: dict) -> float:
    return float(np.mean([v["success"] for v in per_task.values()]))


def _algo_paths(cfg: BenchConfig, algo: str) -> tuple[Path, Path]:
    d = Path(cfg.out) / algo
    return d / "store", d / "rows.json"


def run_algo(cfg: BenchConfig, algo: str, base: Path, v0_eval: dict, pool=None) -> list[dict]:
    """All rounds of one algorithm (resumable); returns one row per measured version. With ``pool`` (worker
    processes), its fleet episodes and evaluations run there, each from the version's checkpoint."""
    import torch

    from lwd.data.bag import write_steps_bag
    from lwd.rl.learner import Learner
    from lwd.sim.evaluate import FLEET_SEED0
    from lwd.sim.expert import ScriptedExpert
    from lwd.sim.operator import ScriptedOperator
    from lwd.sim.world import SimWorld

    torch.set_num_threads(1)
    root, rows_path = _algo_paths(cfg, algo)
    rows: list[dict] = json.loads(rows_path.read_text()) if cfg.resume and rows_path.exists() else []
    if len(rows) >= cfg.rounds + 1:
        return rows[:cfg.rounds + 1]  # finished earlier
    done_rounds = _resumable(root, rows)
    if done_rounds is None:  # nothing to resume from: start over from v0
        rows = []
        if root.exists():
            shutil.rmtree(root)
        shutil.copytree(base / "policies" / "v0", root / "policies" / "v0")
        shutil.copytree(base / "episodes" / "demo", root / "episodes" / "demo")
        done_rounds = 0
    store = ExperienceStore(root)
    store.scan()
    if done_rounds:  # the fleet episodes of the round that was cut short are recorded again, by the same version
        store.discard([e for e in store.episodes(robot="bench") if _bench_round(e.path.name) >= done_rounds])
        print(f"[bench] {algo}: resuming after round {done_rounds} (v{rows[-1]['version']})", flush=True)
    learner = Learner(store, LearnerConfig(
        algo=algo, min_new_episodes=cfg.episodes_per_round, updates_per_round=cfg.updates_per_round,
        offline_updates=cfg.offline_updates, background_updates=0, gate=cfg.gate, gate_episodes=cfg.gate_episodes,
        tasks=cfg.tasks, exec_steps=cfg.exec_steps, seed=cfg.seed, takeover_terminal=cfg.takeover_terminal,
        subgoal_credit=cfg.subgoal_credit, fleet_fraction=cfg.fleet_fraction, algo_overrides=_overrides(cfg, algo)))
    t_algo = time.time()
    robot_s = rows[-1]["robot_s"] if rows else 0.0
    with SimWorld(image_size=learner.model.cfg.image_size, cameras=learner.model.cfg.cameras) as world:
        operator = ScriptedOperator(world, ScriptedExpert(world, noise=0.0, seed=cfg.seed),
                                    misaligned_s=cfg.misaligned_s)
        if not rows:
            rows.append({"algo": algo, "round": 0, "version": 0, "eval": v0_eval,
                         "eval_success": _mean_success(v0_eval), "robot_s": 0.0, "learner_updates": 0, "wall_s": 0.0})
            rows_path.write_text(json.dumps(rows, indent=1))
        for r in range(done_rounds, cfg.rounds):
            t0 = time.time()
            v = learner.version
            policy = _policy(learner.deployed_model, v, cfg.seed + 1 + r, cfg, version_dir(root / "policies", v))
            jobs = [(cfg.tasks[i % len(cfg.tasks)], FLEET_SEED0 + 1000 * r + i)  # identical across algorithms
                    for i in range(cfg.episodes_per_round)]
            if pool is not None:
                ckpt = str(version_dir(root / "policies", v))
                done = pool.imap(_fleet_job, [(ckpt, cfg, task, seed, cfg.seed + 1 + r) for task, seed in jobs])
            else:
                done = ((deploy_episode(world, policy, task, seed, operator, variation=cfg.variation), world.time)
                        for task, seed in jobs)
            fleet = []
            for i, (ro, sim_s) in enumerate(done):
                robot_s += sim_s
                fleet.append(ro)
                eid = f"bench-r{r}-{i:03d}"
                write_steps_bag(store.episode_path("bench", eid),
                                rollout_to_steps(ro, "bench", eid, time.time_ns(), source="fleet", version=v))
            t_fleet = time.time() - t0
            t1 = time.time()
            new = learner.poll()
            t_learn = time.time() - t1
            gate_row = _last_row(root, "gate")
            # where the round's learner time went beyond its updates (lwd: re-encoding, critic refit, tilt, and the
            # rollouts that choose between tilt and reference)
            round_end = {k[5:]: round(v, 1) for k, v in _last_row(root, "round_end", t1).items()
                         if k.startswith("perf/")}
            if new is None:
                ev = rows[-1]["eval"]
            elif pool is not None:
                ev = _pool_eval(pool, version_dir(root / "policies", learner.version), cfg)
            else:
                ev = _eval(world, learner.deployed_model, learner.version, cfg,
                           version_dir(root / "policies", learner.version))
            n = len(fleet)
            row = {
                "algo": algo, "round": r + 1, "version": learner.version, "published": new,
                "eval": ev, "eval_success": _mean_success(ev),
                "fleet": {"episodes": n, "success_with_operator": sum(x.success for x in fleet) / n,
                          "autonomous": sum(x.success and x.interventions == 0 for x in fleet) / n,
                          "interventions_per_episode": sum(x.interventions for x in fleet) / n},
                "robot_s": round(robot_s, 1), "learner_updates": learner.total_updates,
                "learn_s": round(t_learn, 1), "fleet_s": round(t_fleet, 1),
                "wall_s": round(rows[-1]["wall_s"] + time.time() - t0, 1),
                "gate": {k[5:]: v for k, v in gate_row.items() if k.startswith("gate/")},
                "diagnostics": {k: v for k, v in gate_row.items() if k.startswith(("critic/", "actor/"))},
                "updates_per_s": _last_row(root, "online").get("perf/updates_per_s"),
                "round_end": round_end,
            }
            rows.append(row)
            rows_path.write_text(json.dumps(rows, indent=1))
            per_round = (time.time() - t_algo) / (r + 1 - done_rounds)
            eta = per_round * (cfg.rounds - r - 1)
            print(f"[bench] {algo:>13s} round {r + 1}/{cfg.rounds}: v{learner.version} eval "
                  + ", ".join(f"{t} {x['success']:.0%} [{x['ci_low']:.0%}-{x['ci_high']:.0%}]" for t, x in ev.items())
                  + f" | fleet {row['fleet']['success_with_operator']:.0%} with operator, "
                  f"{row['fleet']['interventions_per_episode']:.2f} interventions/ep | gate "
                  f"{'accepted' if new is not None else 'rejected'} | {time.time() - t0:.0f}s, {algo} done in "
                  f"~{eta / 60:.0f} min", flush=True)
    return rows


def _bench_round(episode_id: str) -> int:
    return int(episode_id.split("-")[1][1:])  # bench-r<round>-<i>


def _resumable(root: Path, rows: list[dict]) -> int | None:
    """The number of finished rounds an algorithm's working directory can continue from, or None. A round counts
    only when both its row and the learner's state (state.json, written with the checkpoint it names) record it;
    a round cut short between the learner's publish and its row cannot be replayed faithfully."""
    state_path = root / "learner" / "state.json"
    if len(rows) < 2 or not state_path.exists():
        return None
    state = json.loads(state_path.read_text())
    last = rows[-1]
    if state.get("round") != last["round"] or state.get("version") != last["version"]:
        return None
    return int(last["round"])


def _overrides(cfg: BenchConfig, algo: str) -> dict:
    from lwd.rl.algorithms import algorithm_config

    conf = algorithm_config(algo)
    out = {"images": cfg.images}
    if conf is FleetRLConfig:
        out["critic_features"] = cfg.critic_features
    if cfg.image_lr is not None:
        out["image_lr"] = cfg.image_lr
    return out


def _last_row(root: Path, phase: str, since: float = 0.0) -> dict:
    """The learner's last metrics row of ``phase`` logged at or after ``since`` (epoch seconds)."""
    path = root / "learner" / "metrics.jsonl"
    last: dict = {}
    for line in path.read_text().splitlines() if path.exists() else []:
        d = json.loads(line)
        if d["phase"] == phase and d["time"] >= since:
            last = d
    return last


def _eval_v0_task(args) -> dict:
    import torch

    from lwd.sim.world import SimWorld

    torch.set_num_threads(1)
    cfg, base, tasks = args
    model = load_checkpoint(version_dir(base / "policies", 0)).model
    with SimWorld(image_size=model.cfg.image_size, cameras=model.cfg.cameras) as world:
        return _eval(world, model, 0, replace(cfg, tasks=tuple(tasks)))


_ROLLOUT: dict = {}
"""A rollout worker's simulator, operator and the last policy it loaded (kept across jobs)."""


def _rollout_state(ckpt: str) -> dict:
    import torch

    from lwd.sim.world import SimWorld

    torch.set_num_threads(1)
    st = _ROLLOUT
    if st.get("ckpt") != ckpt:
        c = load_checkpoint(Path(ckpt))
        st.update(ckpt=ckpt, model=c.model, version=c.version)
    size = (st["model"].cfg.image_size, st["model"].cfg.cameras)
    if st.get("size") != size:
        if "world" in st:
            st["world"].close()
        st["world"] = SimWorld(image_size=size[0], cameras=size[1])
        st["size"] = size
        st.pop("operator", None)
    return st


def _fleet_job(args):
    """One fleet episode of the policy at ``ckpt``, with the scripted operator; (rollout, simulated seconds)."""
    from lwd.sim.expert import ScriptedExpert
    from lwd.sim.operator import ScriptedOperator

    ckpt, cfg, task, seed, policy_seed = args
    st = _rollout_state(ckpt)
    world = st["world"]
    if st.get("operator") is None:
        st["operator"] = ScriptedOperator(world, ScriptedExpert(world, noise=0.0, seed=cfg.seed),
                                          misaligned_s=cfg.misaligned_s)
    policy = _policy(st["model"], st["version"], policy_seed, cfg, Path(ckpt))
    ro = deploy_episode(world, policy, task, seed, st["operator"], variation=cfg.variation)
    return ro, world.time


def _eval_job(args) -> dict:
    """Autonomous evaluation of the policy at ``ckpt`` on evaluation seeds ``start .. start + n - 1`` of ``task``."""
    from lwd.sim.evaluate import EVAL_SEED0, evaluate

    ckpt, cfg, task, start, n = args
    st = _rollout_state(ckpt)
    policy = _policy(st["model"], st["version"], cfg.seed, cfg, Path(ckpt))
    r = evaluate(st["world"], policy, (task,), n, seed0=EVAL_SEED0 + start, variation=cfg.variation)[task]
    return {"task": task, "successes": r.successes, "episodes": r.episodes, "robot_s": r.robot_s,
            "progress_sum": r.progress * r.episodes}


def _pool_eval(pool, ckpt: Path, cfg: BenchConfig) -> dict:
    """:func:`_eval` with each task's seeds split into contiguous blocks over ``pool``; the same numbers."""
    from lwd.sim.evaluate import TaskResult

    n, k = cfg.eval_episodes, max(1, pool._processes)  # noqa: SLF001 (multiprocessing exposes no public size)
    blocks = [(i * n // k, (i + 1) * n // k) for i in range(k)]
    parts = pool.map(_eval_job, [(str(ckpt), cfg, t, a, b - a) for t in cfg.tasks for a, b in blocks if b > a],
                     chunksize=1)
    out = {}
    for t in cfg.tasks:
        mine = [p for p in parts if p["task"] == t]
        eps = sum(p["episodes"] for p in mine)
        out[t] = TaskResult(t, sum(p["successes"] for p in mine), eps, sum(p["robot_s"] for p in mine),
                            sum(p["progress_sum"] for p in mine) / max(1, eps)).to_dict()
    return out


def run_eta(elapsed_s: float, done: int, total: int) -> float:
    """Seconds left for ``total`` algorithms when ``done`` of them took ``elapsed_s`` on the worker pool: the pool
    stays as busy as it was (each worker's own log gives only its algorithm's remaining rounds)."""
    if not 0 < done <= total:
        raise ValueError(f"need 0 < done <= total, got {done} of {total}")
    return elapsed_s * (total - done) / done


def _worker(args) -> tuple[str, list[dict]]:
    cfg, algo, base, v0_eval = args
    return algo, run_algo(cfg, algo, base, v0_eval)


def _git_commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
                              cwd=Path(__file__).parent).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


# fields that do not change what a run measures (more rounds extend a run: its earlier rounds stay valid)
_RUN_ONLY = ("out", "results", "workers", "resume", "rounds")
# fields that only say how to pretrain a v0: they do not describe a run given its v0 (``pretrained``)
_PRETRAIN_ONLY = ("demos_per_task", "pretrain_steps")


def _measured(key: dict) -> dict:
    drop = _RUN_ONLY + (_PRETRAIN_ONLY if key.get("pretrained") is not None else ())
    return {k: v for k, v in key.items() if k not in drop}


def _run_key(cfg: BenchConfig) -> dict:
    return {f.name: str(v) if isinstance(v := getattr(cfg, f.name), Path) else (list(v) if isinstance(v, tuple) else v)
            for f in fields(cfg) if f.name not in _RUN_ONLY}


def _check_resume(cfg: BenchConfig, out: Path) -> None:
    """Resume only the run that ``out`` holds: partial results of another configuration would be mixed into this
    one's (a v0 evaluated on other tasks, rows of other budgets). ``out/bench_config.json`` names the run."""
    key_path = out / "bench_config.json"
    key = _run_key(cfg)
    if cfg.resume and (out / "v0_eval.json").exists():
        old = json.loads(key_path.read_text()) if key_path.exists() else None
        if old is not None:  # fields added since that run was started count at their defaults
            old = _measured({**_run_key(BenchConfig()), **old})
        new = _measured(key)
        if old != new:
            diff = sorted(k for k in new if old is None or old.get(k) != new[k])
            raise ValueError(f"{out} holds a bench run of another configuration (differs in: "
                             f"{', '.join(diff) if old else 'unknown, it predates bench_config.json'}); "
                             "pass --fresh to discard it, or --out for a new working directory")
    key_path.write_text(json.dumps(key, indent=1))


def run_bench(cfg: BenchConfig, log=print, command: str | None = None) -> dict:
    import torch

    torch.set_num_threads(1)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    results_dir = Path(cfg.results) if cfg.results else out / "results"
    results_dir.mkdir(parents=True, exist_ok=True)
    t_start = time.time()
    _check_resume(cfg, out)
    base = _prepare_base(cfg, log)
    v0_path = out / "v0_eval.json"
    if cfg.resume and v0_path.exists():
        v0_eval = json.loads(v0_path.read_text())
    else:
        log(f"[bench] evaluating v0 on {cfg.eval_episodes} held-out seeds per task")
        if cfg.workers > 1 and len(cfg.tasks) > 1:  # chunks are deterministic (noise 0): one process's numbers
            with mp.get_context("spawn").Pool(min(cfg.workers, len(cfg.tasks))) as pool:
                parts = pool.map(_eval_v0_task, [(cfg, base, (t,)) for t in cfg.tasks], chunksize=1)
        else:  # one model load and one simulator for every task
            parts = [_eval_v0_task((cfg, base, cfg.tasks))]
        v0_eval = {t: r for part in parts for t, r in part.items()}
        v0_path.write_text(json.dumps(v0_eval, indent=1))
    log("[bench] v0: " + ", ".join(f"{t} {x['success']:.0%} [{x['ci_low']:.0%}-{x['ci_high']:.0%}] of "
                                   f"{x['episodes']}" for t, x in v0_eval.items()))
    jobs = [(cfg, algo, base, v0_eval) for algo in cfg.algos]
    log(f"[bench] {len(jobs)} algorithms x {cfg.rounds} rounds x {cfg.episodes_per_round} fleet episodes, "
        f"{cfg.updates_per_round} updates/round, {cfg.workers} worker(s)")
    if cfg.workers > 1 and len(jobs) == 1:  # one algorithm: the workers run its fleet episodes and evaluations
        with mp.get_context("spawn").Pool(cfg.workers) as pool:
            results = {cfg.algos[0]: run_algo(cfg, cfg.algos[0], base, v0_eval, pool)}
    elif cfg.workers > 1:
        results = {}
        t_algos = time.time()
        with mp.get_context("spawn").Pool(min(cfg.workers, len(jobs))) as pool:
            for algo, rows in pool.imap_unordered(_worker, jobs):
                results[algo] = rows
                elapsed = time.time() - t_algos
                log(f"[bench] {len(results)}/{len(jobs)} algorithms done after {elapsed / 60:.0f} min"
                    + (f", ETA ~{run_eta(elapsed, len(results), len(jobs)) / 60:.0f} min" if len(results) < len(jobs)
                       else ""))
    else:
        results = dict(_worker(j) for j in jobs)
    results = {a: results[a] for a in cfg.algos}
    summary = {
        "command": command, "commit": _git_commit(), "machine": f"{platform.node()} {platform.machine()} "
        f"{mp.cpu_count()} cpu, {platform.python_version()}", "wall_s": round(time.time() - t_start, 1),
        "config": {f.name: (str(getattr(cfg, f.name)) if isinstance(getattr(cfg, f.name), Path)
                            else getattr(cfg, f.name)) for f in fields(cfg)},
        "long_horizon_tasks": long_horizon(cfg.tasks),
        "results": results,
    }
    table = results_table(results, cfg.tasks)
    summary["table"] = table
    (results_dir / "bench_learning.json").write_text(json.dumps(summary, indent=1))
    plot_curves(results, cfg.tasks, results_dir / "learning_curves.png")
    (results_dir / "README.md").write_text(
        f"# Learning benchmark\n\n`{command or 'lwd bench learning'}` at commit `{summary['commit']}` on "
        f"{summary['machine']}, {summary['wall_s'] / 60:.0f} min wall.\n\n"
        f"Autonomous success (no operator) on {cfg.eval_episodes} held-out seeds per task per version, 95% Wilson "
        f"intervals; {cfg.episodes_per_round} fleet episodes per round (scripted operator intervening), "
        f"{cfg.updates_per_round} learner updates per round, same v0 and seeds for every algorithm.\n\n{table}\n")
    log(table)
    log(f"[bench] wrote {results_dir / 'bench_learning.json'}, learning_curves.png and README.md "
        f"({(time.time() - t_start) / 60:.0f} min)")
    return summary


def results_table(results: dict, tasks) -> str:
    head = "| algo | round | version | robot h | updates | " + " | ".join(tasks) + " | mean | fleet interventions/ep |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for algo, rows in results.items():
        for r in rows:
            cells = [f"{r['eval'][t]['success']:.0%} [{r['eval'][t]['ci_low']:.0%}, {r['eval'][t]['ci_high']:.0%}]"
                     for t in tasks]
            fl = r.get("fleet", {}).get("interventions_per_episode")
            lines.append(f"| {algo} | {r['round']} | v{r['version']} | {r['robot_s'] / 3600:.2f} | "
                         f"{r['learner_updates']} | " + " | ".join(cells) + f" | {r['eval_success']:.0%} | "
                         f"{'-' if fl is None else f'{fl:.2f}'} |")
    return "\n".join(lines)


def plot_curves(results: dict, tasks, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    long = long_horizon(tasks)
    groups = [("short-horizon", [t for t in tasks if t not in long]), ("long-horizon", long)]
    groups = [g for g in groups if g[1]]
    fig, axes = plt.subplots(1, len(groups), figsize=(6 * len(groups), 4.2), squeeze=False)
    for ax, (title, ts) in zip(axes[0], groups, strict=True):
        for algo, rows in results.items():
            x = [r["robot_s"] / 3600 for r in rows]
            k = np.array([[r["eval"][t]["successes"] for t in ts] for r in rows]).sum(1)
            n = np.array([[r["eval"][t]["episodes"] for t in ts] for r in rows]).sum(1)
            from lwd.sim.evaluate import wilson

            ci = np.array([wilson(int(a), int(b)) for a, b in zip(k, n, strict=True)])
            line, = ax.plot(x, k / n, "o-", label=algo)
            ax.fill_between(x, ci[:, 0], ci[:, 1], color=line.get_color(), alpha=0.12)
        ax.set(xlabel="fleet robot-hours (simulated)", ylabel="autonomous success (held-out seeds)",
               ylim=(-0.02, 1.02))
        ax.set_title(textwrap.fill(f"{title}: {', '.join(ts)}", 60), fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def config_from_args(quick: bool, **explicit) -> BenchConfig:
    """Defaults <- QUICK (if ``quick``) <- explicit flags (never overridden by --quick)."""
    kw = dict(QUICK) if quick else {}
    kw.update({k: v for k, v in explicit.items() if v is not None})
    return BenchConfig(**kw)


