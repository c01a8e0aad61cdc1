"""`lwd bench`: learner algorithms compared in one in-process harness (no ROS, same core, same seeds).

Each algorithm starts from the same pretrained v0 and demos, then runs R rounds: deploy the latest version on E
episodes (scripted operator intervening like in the fleet) -> write them as fleet bags -> ``Learner.poll()``.
The table reports per-round success, autonomous success and interventions; plots go to ``--out``.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from lwd.data.bag import write_steps_bag
from lwd.data.store import ExperienceStore
from lwd.policy.checkpoint import latest_version, load_checkpoint, version_dir
from lwd.policy.inference import VLAPolicy
from lwd.rl.learner import Learner, LearnerConfig
from lwd.rl.pretrain import PretrainConfig, pretrain, rollout_to_steps

__all__ = ["BenchConfig", "run_bench", "deploy_episode"]


@dataclass
class BenchConfig:
    out: Path = Path("runs/bench")
    algos: tuple[str, ...] = ("lwd", "bc")
    rounds: int = 3
    episodes_per_round: int = 8
    updates_per_round: int = 300
    tasks: tuple[str, ...] = ("pick_place", "restock3")
    seed: int = 0
    pretrained: Path | None = None
    demos_per_task: int = 25
    pretrain_steps: int = 6000
    exec_steps: int = 5
    intervene: bool = True
    eval_episodes: int = 8
    """Per task and round: autonomous evaluation episodes (no operator) on fixed held-out seeds."""
    quick: bool = False

    def __post_init__(self) -> None:
        if self.quick:
            self.rounds, self.episodes_per_round, self.updates_per_round = 2, 4, 100
            self.demos_per_task, self.pretrain_steps = 6, 300


def deploy_episode(world, policy: VLAPolicy, task: str, seed: int, operator=None, time_limit_scale: float = 1.0):
    """One fleet-like episode in-process; returns the sim rollout."""
    from lwd.sim.rollout import run_episode
    from lwd.sim.tasks import TASKS

    return run_episode(world, task, seed, actor=policy, operator=operator,
                       time_limit_s=TASKS[task].time_limit_s * time_limit_scale)


def _prepare_base(cfg: BenchConfig) -> Path:
    if cfg.pretrained is not None:
        return Path(cfg.pretrained)
    base = Path(cfg.out) / "pretrained"
    if latest_version(base / "policies") is None:
        if base.exists():
            shutil.rmtree(base)
        pretrain(base, PretrainConfig(tasks=cfg.tasks, demos_per_task=cfg.demos_per_task, steps=cfg.pretrain_steps,
                                      seed=cfg.seed))
    return base


def run_algo(cfg: BenchConfig, algo: str, base: Path, log=print) -> list[dict]:
    from lwd.sim.expert import ScriptedExpert
    from lwd.sim.operator import ScriptedOperator
    from lwd.sim.world import SimWorld

    root = Path(cfg.out) / algo / "store"
    if root.exists():
        shutil.rmtree(root)
    shutil.copytree(base / "policies" / "v0", root / "policies" / "v0")
    shutil.copytree(base / "episodes" / "demo", root / "episodes" / "demo")
    store = ExperienceStore(root)
    store.scan()
    learner = Learner(store, LearnerConfig(algo=algo, min_new_episodes=cfg.episodes_per_round,
                                           updates_per_round=cfg.updates_per_round, seed=cfg.seed))
    rows = []
    with SimWorld(image_size=learner.model.cfg.image_size) as world:
        expert = ScriptedExpert(world, noise=0.0, seed=cfg.seed)
        operator = ScriptedOperator(world, expert) if cfg.intervene else None
        for r in range(cfg.rounds + 1):  # the last round only evaluates the final version
            v = latest_version(root / "policies")
            policy = VLAPolicy.from_checkpoint(load_checkpoint(version_dir(root / "policies", v)), seed=cfg.seed + r,
                                               exec_steps=cfg.exec_steps)
            res = []
            t0 = time.time()
            for i in range(cfg.episodes_per_round):
                task = cfg.tasks[i % len(cfg.tasks)]
                seed = 1_000_000 + 1000 * r + i  # identical across algorithms
                ro = deploy_episode(world, policy, task, seed, operator)
                res.append(ro)
                if r < cfg.rounds:
                    eid = f"bench-r{r}-{i:03d}"
                    write_steps_bag(store.episode_path("bench", eid),
                                    rollout_to_steps(ro, "bench", eid, time.time_ns(), source="fleet", version=v))
            n = len(res)
            evals = {task: [deploy_episode(world, policy, task, 5000 + j).success for j in range(cfg.eval_episodes)]
                     for task in cfg.tasks} if cfg.eval_episodes else {}
            row = {"algo": algo, "round": r, "version": v, "episodes": n,
                   "eval_success": float(np.mean([x for v_ in evals.values() for x in v_])) if evals else None,
                   "eval_success_per_task": {t: float(np.mean(v_)) for t, v_ in evals.items()},
                   "success_rate": sum(x.success for x in res) / n,
                   "autonomous_success_rate": sum(x.success and x.interventions == 0 for x in res) / n,
                   "interventions_per_episode": sum(x.interventions for x in res) / n,
                   "per_task": {t: float(np.mean([x.success and x.interventions == 0 for x in res if x.task == t]))
                                for t in cfg.tasks},
                   "deploy_s": round(time.time() - t0, 1)}
            if r < cfg.rounds:
                t1 = time.time()
                new = learner.poll()
                row["learn_s"] = round(time.time() - t1, 1)
                row["published"] = new
                row["updates_per_s"] = _last_online_rate(root)
            rows.append(row)
            log(f"[bench] {algo:>12s} round {r}: v{v} fleet success {row['success_rate']:.0%} (autonomous "
                f"{row['autonomous_success_rate']:.0%}, interventions/ep {row['interventions_per_episode']:.2f}); "
                f"eval without operator {row['eval_success_per_task']}")
    return rows


def _last_online_rate(root: Path) -> float | None:
    rate = None
    for line in (root / "learner" / "metrics.jsonl").read_text().splitlines():
        d = json.loads(line)
        if d["phase"] == "online":
            rate = d.get("perf/updates_per_s")
    return rate


def run_bench(cfg: BenchConfig, log=print) -> dict:
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    base = _prepare_base(cfg)
    results = {algo: run_algo(cfg, algo, base, log) for algo in cfg.algos}
    table = ["| algo | " + " | ".join(f"round {r}" for r in range(cfg.rounds + 1)) + " | updates/s |",
             "|---|" + "---|" * (cfg.rounds + 2)]
    for algo, rows in results.items():
        ups = [x["updates_per_s"] for x in rows if x.get("updates_per_s")]
        table.append(f"| {algo} | " + " | ".join(
            f"{_pct(x['eval_success'])} / {x['success_rate']:.0%} / {x['interventions_per_episode']:.2f}"
            for x in rows) + (f" | {np.mean(ups):.1f} |" if ups else " | - |"))
    text = "\n".join(table)
    log("per round: autonomous eval success / fleet success with operator / interventions per episode:\n" + text)
    summary = {"config": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(cfg).items()},
               "results": results, "table": text}
    (out / "bench.json").write_text(json.dumps(summary, indent=1))
    _plot(results, out / "bench.png")
    return summary


def _pct(x) -> str:
    return "-" if x is None else f"{x:.0%}"


def _plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 2, figsize=(10, 4))
    for algo, rows in results.items():
        x = [r["round"] for r in rows]
        ax[0].plot(x, [r["eval_success"] if r["eval_success"] is not None else r["autonomous_success_rate"]
                       for r in rows], "o-", label=algo)
        ax[1].plot(x, [r["interventions_per_episode"] for r in rows], "o-", label=algo)
    ax[0].set(xlabel="round", ylabel="success", ylim=(-0.05, 1.05), title="autonomous eval success (no operator)")
    ax[1].set(xlabel="round", ylabel="interventions / episode", title="operator interventions")
    for a in ax:
        a.grid(alpha=0.3)
        a.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
