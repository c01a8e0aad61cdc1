"""`lwd bench chunking`: chunk execution modes under injected inference delay, measured in-process (no ROS).

The sim emulates delay exactly: at a request the observation is taken, the sim keeps executing the chunk in flight
for ``delay`` seconds of control ticks, then the new chunk arrives and goes to the
:class:`lwd.control.chunking.ChunkScheduler` (the same code the ``vla_policy`` node runs). Variants:

* ``replace``, ``blend``, ``rtc``: the scheduler modes, chunks timed from their observation (passed actions skipped);
* ``replace@receipt``: the behaviour before latency-aware execution (chunks timed from their arrival, replayed late).

Per (variant, delay), over the same tasks and seeds: task success, mean absolute jerk of the executed arm targets
(rad/s^3, third difference on the 10 Hz control grid, grippers excluded), the largest and mean target jump at chunk
boundaries (max over arm joints of |q_k - q_{k-1}| at the tick a new chunk takes over from the one before, rad), the
fraction of control ticks with no fresh target (holding), and the inference time per chunk. Writes ``chunking.json``
and ``chunking.md``.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from lwd.control.chunking import MODES, ChunkScheduler
from lwd.robot import CONTROL_DT, N_JOINTS
from lwd.sim.tasks import default_tasks

__all__ = ["ChunkBenchConfig", "EpisodeStats", "run_chunk_episode", "run_chunk_bench", "choose_default",
           "markdown_table"]

BASELINE = "replace@receipt"
ARM = np.array([i for i in range(N_JOINTS) if i not in (6, 13)])  # grippers are in metres, not radians
SEED0 = 7_000_000


@dataclass
class ChunkBenchConfig:
    store: Path
    out: Path = Path("runs/bench_chunking")
    delays_ms: tuple[int, ...] = (0, 100, 200, 400)
    variants: tuple[str, ...] = (BASELINE, *MODES)
    tasks: tuple[str, ...] = default_tasks()
    episodes: int = 4
    """Per task, variant and delay (the same seeds everywhere)."""
    version: int | None = None
    """Policy version in ``store/policies`` (default: the latest)."""
    exec_steps: int = 5
    time_limit_scale: float = 1.0
    noise_scale: float | None = None
    """Initial flow noise of the policy (None: VLAPolicy's default, what the robots run)."""
    seed: int = 0
    threads: int = 1


@dataclass
class EpisodeStats:
    task: str
    seed: int
    success: bool
    ticks: int
    hold_ticks: int
    chunks: int
    jerk: float  # mean |jerk| over arm joints and ticks (rad/s^3)
    max_jump: float  # largest boundary jump (rad)
    mean_jump: float  # mean boundary jump (rad)
    infer_ms: list[float] = field(default_factory=list)


def _variant(name: str) -> tuple[str, str]:
    """variant -> (scheduler mode, time base)."""
    if name == BASELINE:
        return "replace", "receipt"
    if name in MODES:
        return name, "obs"
    raise ValueError(f"unknown chunking variant {name!r} (expected one of {(BASELINE, *MODES)})")


def run_chunk_episode(world, policy, task: str, seed: int, variant: str, delay_s: float, exec_steps: int = 5,
                      time_limit_s: float | None = None) -> EpisodeStats:
    """One autonomous episode with ``delay_s`` between each observation and its chunk's arrival."""
    from lwd.sim.rollout import SETTLE_STEPS, obs
    from lwd.sim.tasks import get_task

    mode, time_base = _variant(variant)
    dt = CONTROL_DT
    limit = get_task(task).time_limit_s if time_limit_s is None else time_limit_s
    n_steps = max(1, round(limit / dt))
    world.reset(task, seed)
    policy.reset()
    sched = ChunkScheduler(mode, dt, exec_steps, time_base=time_base)
    pending: tuple[float, float, np.ndarray] | None = None  # (obs time, arrival time, actions)
    last = world.qpos14()
    targets, boundaries, infer_ms = [], [], []
    holds, success_at = 0, None
    for k in range(n_steps):
        now = k * dt  # the control grid; delays are exact multiples or fractions of it
        if pending is None and sched.request_due(now):
            o = obs(world)
            prefix = sched.begin(now)
            t0 = time.perf_counter()
            actions = policy.infer(o) if prefix is None else policy.infer(o, prefix=prefix)
            infer_ms.append(1e3 * (time.perf_counter() - t0))
            pending = (now, now + delay_s, actions)
        if pending is not None and pending[1] <= now + 1e-9:
            seam = sched.active is not None  # the episode's first chunk follows a hold, not another chunk
            if sched.accept(pending[2], pending[0], now) is not None and seam:
                boundaries.append(k)
            pending = None
        target = sched.target(now)
        if target is None:
            holds += 1
            target = last
        target = np.clip(np.asarray(target, dtype=np.float64), world.joint_low, world.joint_high)
        world.apply(target)
        targets.append(target)
        last = target
        if success_at is None and world.success():
            success_at = k
        if success_at is not None and k >= success_at + SETTLE_STEPS:
            break
    q = np.stack(targets)[:, ARM]
    jerk = np.abs(np.diff(q, n=3, axis=0)) / dt**3 if len(q) > 3 else np.zeros((0, len(ARM)))
    jumps = [float(np.max(np.abs(q[b] - q[b - 1]))) for b in boundaries]
    return EpisodeStats(task=task, seed=seed, success=success_at is not None, ticks=len(q), hold_ticks=holds,
                        chunks=len(boundaries) + 1, jerk=float(jerk.mean()) if jerk.size else 0.0,
                        max_jump=max(jumps, default=0.0), mean_jump=float(np.mean(jumps)) if jumps else 0.0,
                        infer_ms=infer_ms)


def _summarize(variant: str, delay_ms: int, eps: list[EpisodeStats]) -> dict:
    ticks = sum(e.ticks for e in eps)
    ms = [x for e in eps for x in e.infer_ms]
    return {
        "variant": variant, "delay_ms": delay_ms, "episodes": len(eps),
        "success": float(np.mean([e.success for e in eps])),
        "success_per_task": {t: float(np.mean([e.success for e in eps if e.task == t]))
                             for t in dict.fromkeys(e.task for e in eps)},
        "jerk": float(np.sum([e.jerk * e.ticks for e in eps]) / max(ticks, 1)),
        "max_boundary_jump": float(max(e.max_jump for e in eps)),
        "mean_boundary_jump": float(np.mean([e.mean_jump for e in eps])),
        "hold_fraction": sum(e.hold_ticks for e in eps) / max(ticks, 1),
        "infer_ms_p50": float(np.percentile(ms, 50)) if ms else None,
        "ticks": ticks,
    }


def choose_default(rows: list[dict], episodes_per_cell: int) -> tuple[str, str]:
    """The winning scheduler mode and why. Averaged over delays: the highest success wins; modes within one
    episode's worth of it (1 / episodes per cell) are tied, and the tie goes to the lowest mean jerk."""
    modes = [m for m in MODES if any(r["variant"] == m for r in rows)]
    if not modes:
        raise ValueError("no scheduler mode was measured")

    def avg(m: str, key: str) -> float:
        return float(np.mean([r[key] for r in rows if r["variant"] == m]))

    success = {m: avg(m, "success") for m in modes}
    jerk = {m: avg(m, "jerk") for m in modes}
    best = max(success.values())
    tied = [m for m in modes if success[m] >= best - 1.0 / max(episodes_per_cell, 1) + 1e-9]
    winner = min(tied, key=jerk.__getitem__)
    why = ("mean success over delays " + ", ".join(f"{m} {success[m]:.0%}" for m in modes)
           + "; within one episode of the best: " + ", ".join(tied)
           + f"; lowest mean jerk among them: {winner} ("
           + ", ".join(f"{m} {jerk[m]:.1f}" for m in tied) + " rad/s^3)")
    return winner, why


def markdown_table(rows: list[dict]) -> str:
    lines = ["| mode | delay ms | success | mean abs jerk (rad/s³) | max boundary jump (rad) | mean boundary jump "
             "(rad) | ticks without fresh target | inference ms (p50) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        ms = f"{r['infer_ms_p50']:.1f}" if r["infer_ms_p50"] is not None else "–"
        lines.append(f"| {r['variant']} | {r['delay_ms']} | {r['success']:.0%} | {r['jerk']:.1f} | "
                     f"{r['max_boundary_jump']:.3f} | {r['mean_boundary_jump']:.3f} | {r['hold_fraction']:.1%} | "
                     f"{ms} |")
    return "\n".join(lines)


def _git_commit() -> str | None:
    """Short HEAD commit of the checkout this runs from (``+dirty`` with uncommitted changes), if any."""
    here = Path(__file__).resolve().parent
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10,
                              cwd=here).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, timeout=10, cwd=here).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return (head + ("+dirty" if dirty else "")) or None


def run_chunk_bench(cfg: ChunkBenchConfig, log=print) -> dict:
    import torch

    from lwd.policy.checkpoint import latest_version, load_checkpoint, version_dir
    from lwd.policy.inference import VLAPolicy
    from lwd.sim.tasks import get_task
    from lwd.sim.world import SimWorld

    for v in cfg.variants:
        _variant(v)
    if cfg.episodes < 1 or any(d < 0 for d in cfg.delays_ms):
        raise ValueError("episodes must be >= 1 and delays >= 0")
    torch.set_num_threads(cfg.threads)
    policies = Path(cfg.store) / "policies"
    version = cfg.version if cfg.version is not None else latest_version(policies)
    if version is None:
        raise FileNotFoundError(f"no policies/v<N> in {cfg.store} (make one with `lwd pretrain --store ...`)")
    ckpt = load_checkpoint(version_dir(policies, version))
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    t_start = time.time()
    with SimWorld(image_size=ckpt.model.cfg.image_size, cameras=ckpt.model.cfg.cameras) as world:
        for delay_ms in cfg.delays_ms:
            for variant in cfg.variants:
                t0 = time.time()
                eps = []
                for task in cfg.tasks:
                    limit = get_task(task).time_limit_s * cfg.time_limit_scale
                    for i in range(cfg.episodes):
                        seed = SEED0 + 1000 * cfg.seed + i
                        policy = VLAPolicy.from_checkpoint(ckpt, seed=seed, exec_steps=cfg.exec_steps)
                        if cfg.noise_scale is not None:
                            policy.noise_scale = cfg.noise_scale
                        noise_scale = policy.noise_scale
                        eps.append(run_chunk_episode(world, policy, task, seed, variant, delay_ms / 1e3,
                                                     cfg.exec_steps, limit))
                row = _summarize(variant, delay_ms, eps)
                row["wall_s"] = round(time.time() - t0, 1)
                rows.append(row)
                log(f"[chunking] {variant:>15s} delay {delay_ms:3d} ms: success {row['success']:.0%}, jerk "
                    f"{row['jerk']:.1f}, max jump {row['max_boundary_jump']:.3f}, holding {row['hold_fraction']:.1%}"
                    f" ({row['wall_s']:.0f} s)")
    winner, why = choose_default(rows, cfg.episodes * len(cfg.tasks))
    result = {
        "command": "lwd bench chunking", "config": {k: str(v) if isinstance(v, Path) else v
                                                    for k, v in asdict(cfg).items()},
        "policy": {"store": str(cfg.store), "version": version, "sha256": ckpt.sha256, "noise_scale": noise_scale},
        "commit": _git_commit(), "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                                             "torch_threads": cfg.threads},
        "wall_s": round(time.time() - t_start, 1), "rows": rows, "default_mode": winner, "why": why,
    }
    (out / "chunking.json").write_text(json.dumps(result, indent=1))
    md = (f"Policy v{version} of `{cfg.store}` (noise scale {noise_scale}), {cfg.episodes} episodes x "
          f"{len(cfg.tasks)} tasks ({', '.join(cfg.tasks)}) per row, same seeds in every row; "
          f"commit {result['commit']}.\n\n"
          + markdown_table(rows) + f"\n\nDefault: **{winner}** — {why}.\n")
    (out / "chunking.md").write_text(md)
    log(md)
    return result
