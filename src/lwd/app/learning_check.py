"""A learning check small enough for `make test`: one learner round on recorded fleet bags must fix a planted,
fleet-fixable defect of a small v0 (docs/learning.md rows 38, 40 and 47).

v0 is pretrained on scripted demos whose gripper targets were rewritten to stay open: it reaches for the item but
never grasps. The fleet runs v0 with the scripted operator, whose corrections close the gripper; its episodes are
written as bags into the store and the :class:`~lwd.rl.learner.Learner` ingests them like the ROS fleet's. v0 and
v1 are evaluated autonomously on the same held-out seeds. The setting is easy on purpose (one instruction, items at
their lane centres, a 32 px policy), so that the round costs about a minute of one core.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

__all__ = ["CheckConfig", "run_check"]

FLEET_T0_NS = 10**18  # fleet bags start after the demos (their clocks start at 0)


@dataclass
class CheckConfig:
    task: str = "pick_place"
    target: str | None = "can"
    """The item every scene names (demos, fleet, evaluation); None draws it per seed as the tasks do."""
    variation: float = 0.0
    """Item pose spread (lwd.sim.world.ITEM_SPREAD scale) of every scene."""
    demos: int = 20
    defect: bool = True
    """Rewrite the demos' gripper targets to stay open (the planted defect)."""
    pretrain_steps: int = 2000
    image_size: int = 32
    vision_channels: int = 8
    hidden: int = 128
    cond_dim: int = 128
    pretrain_seed: int = 0
    """v0's seed (demos and pretraining): fixed while ``seed`` varies the learner and the operator."""
    fleet_episodes: int = 60
    updates: int = 3000
    algo: str = "bc"
    images: bool = True
    """Train the whole VLA on images, the learner's default (False: the action expert alone on cached features of
    the frozen encoder; it fixed the defect less: 13-26/60 after 10000 updates against 25-44/60,
    docs/learning.md row 47)."""
    image_warmup: int = 0
    lr: float = 1e-3
    """Pretraining learning rate."""
    eval_episodes: int = 60
    seed: int = 0
    workers: int = 2
    """Processes for the evaluations: v0's runs beside the fleet round and the learner, v1's seeds are split. The
    numbers are those of one process (chunks are deterministic)."""


def _write_demos(store, world, cfg: CheckConfig) -> None:
    from lwd.data.bag import write_steps_bag
    from lwd.rl.pretrain import demo_jobs, rollout_to_steps
    from lwd.sim.expert import DEFAULT_DEMO_NOISE
    from lwd.sim.rollout import run_episode
    from lwd.sim.world import GRIPPER_OPEN

    for n, (seed, target) in enumerate(demo_jobs(cfg.task, cfg.demos, cfg.pretrain_seed * 100_000)):
        ro = run_episode(world, cfg.task, seed, expert_noise=DEFAULT_DEMO_NOISE, variation=cfg.variation,
                         target=cfg.target or target)
        if cfg.defect:
            ro.actions = np.array(ro.actions, copy=True)
            ro.actions[:, [6, 13]] = GRIPPER_OPEN
        eid = f"demo-{n:04d}"
        write_steps_bag(store.episode_path("demo", eid), rollout_to_steps(ro, "demo", eid, n * 10**11))


def _evaluate(args) -> int:
    """Autonomous successes of the checkpoint at ``ckpt`` on evaluation seeds ``start .. start + n - 1``."""
    from lwd.policy.checkpoint import load_checkpoint
    from lwd.policy.inference import VLAPolicy
    from lwd.sim.evaluate import EVAL_SEED0
    from lwd.sim.rollout import run_episode
    from lwd.sim.world import SimWorld

    ckpt, cfg, start, n = args
    torch.set_num_threads(1)
    c = load_checkpoint(Path(ckpt))
    policy = VLAPolicy(c.model.eval(), c.version, seed=0, exec_steps=5)
    with SimWorld(image_size=cfg.image_size) as world:
        return sum(run_episode(world, cfg.task, EVAL_SEED0 + i, actor=policy, variation=cfg.variation,
                               target=cfg.target).success for i in range(start, start + n))


def run_check(out: Path | str, cfg: CheckConfig | None = None, log=None) -> dict:
    """Pretrain v0 into the store at ``out``, run one fleet round and one learner round; returns successes and
    timings (``v0``/``v1``: autonomous successes out of ``eval_episodes``)."""
    from lwd.data.bag import write_steps_bag
    from lwd.data.store import ExperienceStore
    from lwd.policy.checkpoint import version_dir
    from lwd.policy.inference import VLAPolicy
    from lwd.rl.learner import Learner, LearnerConfig
    from lwd.rl.pretrain import PretrainConfig, pretrain, rollout_to_steps
    from lwd.sim.evaluate import FLEET_SEED0
    from lwd.sim.expert import ScriptedExpert
    from lwd.sim.operator import ScriptedOperator
    from lwd.sim.rollout import run_episode
    from lwd.sim.world import SimWorld

    cfg = cfg or CheckConfig()
    log = log or (lambda msg: None)
    torch.set_num_threads(1)
    store = ExperienceStore(Path(out))
    res: dict = {"config": asdict(cfg)}
    t_start = time.time()
    pool_cm = mp.get_context("spawn").Pool(cfg.workers) if cfg.workers > 1 else contextlib.nullcontext()
    with pool_cm as pool, SimWorld(image_size=cfg.image_size) as world:
        def evaluate(version: int, blocks: int):
            """v<version>'s autonomous successes, as a list over seed blocks (an AsyncResult with workers)."""
            ckpt, n = str(version_dir(store.root / "policies", version)), cfg.eval_episodes
            jobs = [(ckpt, cfg, i * n // blocks, (i + 1) * n // blocks - i * n // blocks) for i in range(blocks)]
            return pool.map_async(_evaluate, jobs, chunksize=1) if pool else [_evaluate(j) for j in jobs]

        def record(tag: str, result) -> None:
            res[tag] = sum(result.get() if pool else result)
            log(f"{tag}: {res[tag]}/{cfg.eval_episodes} autonomous successes")

        t = time.time()
        _write_demos(store, world, cfg)
        pretrain(store.root, PretrainConfig(tasks=(cfg.task,), demos_per_task=cfg.demos,
                                            demo_variation=cfg.variation, steps=cfg.pretrain_steps,
                                            image_size=cfg.image_size, seed=cfg.pretrain_seed, lr=cfg.lr,
                                            vision_channels=cfg.vision_channels, hidden=cfg.hidden,
                                            cond_dim=cfg.cond_dim), progress=False)
        res["pretrain_s"] = round(time.time() - t, 1)
        v0 = evaluate(0, 1)  # with workers, one of them evaluates v0 while the fleet and the learner work
        if not pool:
            record("v0", v0)
        store.scan()
        learner = Learner(store, LearnerConfig(
            algo=cfg.algo, min_new_episodes=cfg.fleet_episodes, updates_per_round=cfg.updates, offline_updates=0,
            background_updates=0, gate="none", select_episodes=0, tasks=(cfg.task,), seed=cfg.seed,
            algo_overrides={"images": cfg.images, "image_warmup": cfg.image_warmup}))
        t = time.time()
        operator = ScriptedOperator(world, ScriptedExpert(world, noise=0.0, seed=cfg.seed))
        policy = VLAPolicy(learner.deployed_model, 0, seed=1, exec_steps=5)
        res["fleet_success"] = res["interventions"] = 0
        for i in range(cfg.fleet_episodes):
            ro = run_episode(world, cfg.task, FLEET_SEED0 + i, actor=policy, operator=operator,
                             variation=cfg.variation, target=cfg.target)
            res["fleet_success"] += bool(ro.success)
            res["interventions"] += ro.interventions
            eid = f"fleet-{i:03d}"
            write_steps_bag(store.episode_path("fleet", eid),
                            rollout_to_steps(ro, "fleet", eid, FLEET_T0_NS + i * 10**11, source="fleet",
                                             version=0))
        res["fleet_s"] = round(time.time() - t, 1)
        log(f"fleet: {res['fleet_success']}/{cfg.fleet_episodes} succeeded with the operator")
        t = time.time()
        res["published"] = learner.poll()
        res["learn_s"] = round(time.time() - t, 1)
        if pool:
            record("v0", v0)
        if res["published"] is not None:
            record("v1", evaluate(res["published"], max(1, cfg.workers)))
    res["wall_s"] = round(time.time() - t_start, 1)
    return res
