"""`lwd pretrain`: scripted demonstrations -> bags in the store -> flow-matching BC -> checkpoint v0.

Demonstrations go through the same bag format and reader as fleet data, so the pretrained policy and every
later version learn from one data path.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from lwd.data.bag import write_steps_bag
from lwd.data.schema import CONTROL_DT_NS, SOURCE_POLICY, EpisodeMeta, EpisodeSteps
from lwd.data.store import ExperienceStore
from lwd.policy.checkpoint import latest_version, save_checkpoint
from lwd.policy.model import FlowVLA, PolicyConfig
from lwd.rl.bc import BCConfig, ImageBC
from lwd.rl.dataset import ChunkBuffer, fit_action_scale
from lwd.sim.tasks import default_tasks

log = logging.getLogger("lwd.pretrain")

__all__ = ["PretrainConfig", "CONVERGED_STEPS", "demo_jobs", "collect_demos", "pretrain", "rollout_to_steps"]

CONVERGED_STEPS = 36_000
"""Pretraining steps after which more pretraining on the default demos stops helping (v0 8% / 28% / 33% after 6000 /
18000 / 36000 steps on pick_place, docs/learning.md row 73): the benchmark's v0, so that the same-compute control
stays at v0's level and a rise is the fleet's. ``PretrainConfig.steps`` stays the demo's shorter recipe."""


@dataclass
class PretrainConfig:
    tasks: tuple[str, ...] = default_tasks()
    """Tasks to demonstrate (one policy serves all)."""
    demos_per_task: int = 40
    demo_noise: float | None = None
    """Scripted-expert imperfection; None = lwd.sim.expert.DEFAULT_DEMO_NOISE."""
    demo_variation: float = 0.6
    """Item pose spread of the demonstration scenes (deployment is 1.0, see lwd.sim.world.ITEM_SPREAD): the
    demonstrations cover a narrow slice of what the fleet meets, so v0 is imperfect in a way fleet data can fix
    and more pretraining on the same demos cannot."""
    steps: int = 6000
    """Gradient steps (measured: 3000 -> 1/10 pick_place, 6000 -> 2/10; the policy is still learning there)."""
    batch_size: int = 64
    lr: float = 1e-3
    augment_pad: int = 0
    """Random-shift augmentation in pixels. 0: the camera is fixed, and a shift moves the scene by up to ~1.4 cm/px,
    more than the grasp tolerance, so it corrupts exactly the absolute positions the policy must read."""
    image_size: int = PolicyConfig.image_size
    cameras: tuple[str, ...] = PolicyConfig.cameras
    """Cameras the demos record and the policy sees (``lwd.robot.CAMERAS``; e.g. the overview and both wrists)."""
    proprio: str = PolicyConfig.proprio
    """Joint state the network sees (PolicyConfig.proprio: full, gripper or none; docs/learning.md rows 16-17)."""
    horizon: int = PolicyConfig.horizon
    flow_steps: int = PolicyConfig.flow_steps
    vision_channels: int = PolicyConfig.vision_channels
    cond_dim: int = PolicyConfig.cond_dim
    hidden: int = PolicyConfig.hidden
    """Network widths (PolicyConfig); smaller ones make a small policy for fast tests."""
    seed: int = 0
    threads: int = 1
    """torch CPU threads (1 is the robust choice on a shared 2-core machine)."""
    device: str = "cpu"
    """torch device of the training (``cuda`` where a GPU is lent); the checkpoint is saved on the CPU either way."""
    workers: int = 1
    """Processes that roll out the scripted demos (each with its own simulator)."""
    time_budget_s: float | None = None
    """If set, ``steps`` is replaced by as many steps as fit this many seconds of training, timed on a throwaway
    copy of the model before training, re-timed on the real run at a tenth of it (the schedule shortens if the run
    is slower than the probe), and training stops at the budget whatever the count: a lent GPU's call has a hard
    limit, and a run killed there saves nothing (docs/learning.md row 56)."""
    keep_failed: bool = False
    """Keep demos the noisy expert failed (they are stored either way; BC trains on successes only)."""


def rollout_to_steps(ro, robot: str, episode_id: str, t0_ns: int, source: str = "demo",
                     version: int = -1) -> EpisodeSteps:
    """A sim rollout as an episode on the control grid (write_steps_bag derives the intervention segments)."""
    t = len(ro.actions)
    meta = EpisodeMeta(
        episode_id=episode_id, robot=robot, task=ro.task, instruction=ro.instruction, seed=int(ro.seed),
        source=source, outcome="success" if ro.success else "failure", start_ns=t0_ns,
        end_ns=t0_ns + t * CONTROL_DT_NS, policy_versions=[version] if version >= 0 else [],
        subgoal_ns=[t0_ns + (k + 1) * CONTROL_DT_NS for k in ro.subgoal_steps],
    )
    return EpisodeSteps(
        images=ro.images, qpos=ro.qpos, actions=ro.actions, source=ro.source,
        policy_version=np.where(np.asarray(ro.source) == SOURCE_POLICY, version, -1).astype(np.int32),
        t_ns=t0_ns + CONTROL_DT_NS * np.arange(t, dtype=np.int64), meta=meta,
        cameras=getattr(ro, "cameras", ("overview",)),
    )


def demo_jobs(task: str, n: int, seed0: int) -> list[tuple[int, str | None]]:
    """``n`` (seed, target) demo scenes, balanced across goals and item identities (see :mod:`lwd.sim.mix`): each
    scene is shown with every target in turn, so only the instruction tells those demos apart and the policy must
    read it (with scenes drawn at random, v0 headed for the named item 11-14 times in 30, chance 10)."""
    from lwd.sim.mix import demo_jobs as balanced

    return balanced(task, n, seed0)


def collect_demos(store: ExperienceStore, cfg: PretrainConfig, progress: bool = True) -> int:
    """Roll out the scripted expert and write each demo as a bag under ``episodes/demo``; returns successes."""
    t0 = time.time_ns()
    scenes = [(task, seed, target) for task in cfg.tasks
              for seed, target in demo_jobs(task, cfg.demos_per_task, cfg.seed * 100_000)]
    jobs = [(store.episode_path("demo", _demo_id(task, seed, target)), cfg, n, task, seed, target, t0)
            for n, (task, seed, target) in enumerate(scenes)]
    ok = 0
    bar = tqdm(total=len(jobs), desc="scripted demos", disable=not progress, unit="ep")
    if cfg.workers > 1:
        import multiprocessing as mp

        with mp.get_context("spawn").Pool(min(cfg.workers, len(jobs))) as pool:
            for n, success in enumerate(pool.imap_unordered(_demo_job, jobs)):
                ok += success
                bar.update()
                bar.set_postfix(success=f"{ok}/{n + 1}")
    else:
        from lwd.sim.world import SimWorld

        with SimWorld(image_size=cfg.image_size, cameras=cfg.cameras) as world:
            for n, job in enumerate(jobs):
                ok += _demo_job(job, world)
                bar.update()
                bar.set_postfix(success=f"{ok}/{n + 1}")
    bar.close()
    store.scan()
    return ok


_WORLD = None  # a demo worker process's simulator, made at its first job


def _demo_job(job, world=None) -> bool:
    """Roll out one scripted demo and write its bag (unless an earlier, interrupted collection did)."""
    from lwd.sim.expert import DEFAULT_DEMO_NOISE
    from lwd.sim.rollout import run_episode
    from lwd.sim.world import SimWorld

    global _WORLD
    path, cfg, n, task, seed, target, t0 = job
    if world is None:
        if _WORLD is None:
            _WORLD = SimWorld(image_size=cfg.image_size, cameras=cfg.cameras)
        world = _WORLD
    noise = DEFAULT_DEMO_NOISE if cfg.demo_noise is None else cfg.demo_noise
    ro = run_episode(world, task, seed, actor=None, operator=None, expert_noise=noise,
                     variation=cfg.demo_variation, target=target)
    if not path.exists():
        write_steps_bag(path, rollout_to_steps(ro, "demo", path.name, t0 + n * 10**11))
    return bool(ro.success)


def _step_seconds(model: FlowVLA, bc_cfg: BCConfig, buffer: ChunkBuffer, batch_size: int,
                  device: torch.device, images: torch.Tensor | None, warmup: int = 10, timed: int = 40) -> float:
    """Wall seconds of one training step (sampling included), measured on a copy so the model is untouched."""
    algo = ImageBC(copy.deepcopy(model), bc_cfg)
    rng = np.random.default_rng(12345)
    for k in range(warmup + timed):
        if k == warmup:
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            t = time.perf_counter()
        algo.update(buffer.gather(buffer.sample_indices(batch_size, rng), images).to(device))
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - t) / timed


def cosine_factor(step: int, total: int, floor: float = 0.1) -> float:
    """Cosine decay from 1 to ``floor`` over ``total`` steps (the lr multiplier; ``total`` may shrink mid-run)."""
    frac = min(1.0, step / max(1, total))
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * frac))


def _demo_id(task: str, seed: int, target: str | None) -> str:
    return f"demo-{task}-{seed:07d}" + (f"-{target}" if target else "")


def pretrain(store_root: Path | str, cfg: PretrainConfig | None = None, progress: bool = True) -> Path:
    """Collect demos (if the store has none), fit normalization, train, write ``policies/v0``."""
    cfg = cfg or PretrainConfig()
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    store = ExperienceStore(Path(store_root))
    if latest_version(store.root / "policies") is not None:
        raise FileExistsError(f"{store.root / 'policies'} already has checkpoints; pretrain writes v0 only")
    if not store.episodes(source="demo"):
        collect_demos(store, cfg, progress)
    episodes = [store.load(r) for r in store.episodes(source="demo")]
    good = [e for e in episodes if e.success or cfg.keep_failed]
    if not good:
        raise RuntimeError("no successful demonstrations to pretrain on")
    qpos = np.concatenate([e.qpos for e in good])
    pcfg = PolicyConfig(
        image_size=cfg.image_size, cameras=tuple(cfg.cameras), horizon=cfg.horizon, flow_steps=cfg.flow_steps,
        proprio=cfg.proprio,
        vision_channels=cfg.vision_channels, cond_dim=cfg.cond_dim, hidden=cfg.hidden,
        action_scale=tuple(float(x) for x in fit_action_scale(good, cfg.horizon)),
        qpos_mean=tuple(float(x) for x in qpos.mean(0)),
        qpos_std=tuple(float(x) for x in np.maximum(qpos.std(0), 1e-2)),
    )
    device = torch.device(cfg.device)
    model = FlowVLA(pcfg).to(device)
    buffer = ChunkBuffer(pcfg)
    for e in good:
        buffer.add_episode(e)
    bc_cfg = BCConfig(lr=cfg.lr, augment_pad=cfg.augment_pad)
    images = buffer.images_on(device) if device.type != "cpu" else None
    steps = cfg.steps
    if cfg.time_budget_s is not None:
        step_s = _step_seconds(model, bc_cfg, buffer, cfg.batch_size, device, images)
        steps = max(1, int(cfg.time_budget_s / step_s))
        log.info("%.2f ms per step: %d steps fit %.0f s", step_s * 1e3, steps, cfg.time_budget_s)
    algo = ImageBC(model, bc_cfg)
    planned = steps
    sched = torch.optim.lr_scheduler.LambdaLR(algo.opt, lambda k: cosine_factor(k, steps))
    rng = np.random.default_rng(cfg.seed)
    losses: list[float] = []
    bar = tqdm(total=steps, desc="pretrain (flow matching)", disable=not progress, unit="step")
    t0 = time.perf_counter()
    while len(losses) < steps:
        stats = algo.update(buffer.gather(buffer.sample_indices(cfg.batch_size, rng), images).to(device))
        sched.step()
        losses.append(stats["loss/actor"])
        bar.update(1)
        if len(losses) % 50 == 0:
            bar.set_postfix(loss=f"{np.mean(losses[-50:]):.4f}")
        if cfg.time_budget_s is not None:
            elapsed = time.perf_counter() - t0
            if len(losses) == max(1, planned // 10):
                steps = min(steps, max(len(losses) + 1, int(cfg.time_budget_s * len(losses) / elapsed)))
                if steps < planned:
                    log.info("re-timed at %d steps: %.2f ms per step, %d steps fit", len(losses),
                             elapsed / len(losses) * 1e3, steps)
                    bar.total = steps
            if elapsed > cfg.time_budget_s:
                log.warning("time budget spent after %d of %d steps; saving", len(losses), steps)
                break
    bar.close()
    path = save_checkpoint(
        store.root / "policies", model.cpu(), 0,
        extra={"parent": None, "algo": "pretrain", "demos": len(good), "steps": len(losses),
               "final_loss": float(np.mean(losses[-50:])), "pretrain_config": dataclasses.asdict(cfg)},
    )
    log.info("pretrained v0 on %d demos (%d steps): %s", len(good), len(buffer), path)
    return path
