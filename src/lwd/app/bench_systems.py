"""`lwd bench systems` (first cut): systems figures measured side by side in one run, in-process.

Measured so far:

* ``inference``: wall time per chunk of ``VLAPolicy.infer`` on sim observations, plain and with RTC guidance (a
  prefix from the previous chunk), p50/p99, and the p99's ratio to the executed-chunk period
  (``exec_steps * CONTROL_DT``; target <= 0.25);
* ``learner``: wall time per learner update (``Algorithm.update`` on the cached features of the store's episodes)
  for ``lwd`` and ``bc``, and their ratio (target <= 2x).

Not measured yet (need the ROS graph): obs -> cmd latency through DDS, control rate and missed ticks, hot-swap time at
fleet size, recorder drops and write speed, ingest ratio, scaling with the number of robots.
Writes ``systems.json`` and ``systems.md`` (default ``bench/results``), with the command, commit and machine.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from lwd.robot import CONTROL_DT

__all__ = ["SystemsBenchConfig", "run_systems_bench", "percentiles"]


@dataclass
class SystemsBenchConfig:
    store: Path
    out: Path = Path("bench/results")
    version: int | None = None
    inferences: int = 100
    """Timed chunks per inference variant (after a few warm-up calls)."""
    exec_steps: int = 5
    algos: tuple[str, ...] = ("lwd", "bc")
    updates: int = 30
    """Timed learner updates per algorithm (after a few warm-up updates)."""
    profile: int = 10
    """Learner updates per algorithm run under cProfile afterwards (where the time goes; 0 = skip)."""
    threads: int = 1
    seed: int = 0
    ros_robots: tuple[int, ...] = ()
    """Fleet sizes for the ROS-graph figures (robot.launch.py per robot; needs the installed package), e.g. (2,)."""
    ros_window_s: float = 10.0


def percentiles(xs: list[float]) -> dict[str, float]:
    a = np.asarray(xs, dtype=np.float64)
    return {"p50": float(np.percentile(a, 50)), "p99": float(np.percentile(a, 99)), "mean": float(a.mean()),
            "n": int(a.size)}


def _inference(cfg: SystemsBenchConfig, ckpt) -> dict:
    from lwd.control.chunking import ChunkScheduler
    from lwd.policy.inference import VLAPolicy
    from lwd.sim.rollout import obs
    from lwd.sim.world import SimWorld

    period = cfg.exec_steps * CONTROL_DT
    out = {"executed_chunk_period_ms": 1e3 * period}
    with SimWorld(image_size=ckpt.model.cfg.image_size) as world:
        for variant in ("plain", "rtc"):
            policy = VLAPolicy.from_checkpoint(ckpt, seed=cfg.seed, exec_steps=cfg.exec_steps)
            sched = ChunkScheduler("rtc" if variant == "rtc" else "replace", CONTROL_DT, cfg.exec_steps)
            world.reset("pick_place", cfg.seed)
            ms: list[float] = []
            k = 0
            warmup = 3
            while len(ms) < cfg.inferences:
                now = k * CONTROL_DT
                if sched.request_due(now):
                    if k and k % 150 == 0:
                        world.reset("restock3" if (k // 150) % 2 else "pick_place", cfg.seed + k)
                        sched.reset()
                    o = obs(world)
                    prefix = sched.begin(now)
                    t0 = time.perf_counter()
                    a = policy.infer(o) if prefix is None else policy.infer(o, prefix=prefix)
                    dt = 1e3 * (time.perf_counter() - t0)
                    if warmup:
                        warmup -= 1
                    elif variant == "plain" or prefix is not None:
                        ms.append(dt)
                    sched.accept(a, now, now)
                target = sched.target(now)
                world.apply(target if target is not None else world.qpos14())
                k += 1
            p = percentiles(ms)
            p["p99_over_period"] = p["p99"] / out["executed_chunk_period_ms"]
            out[variant] = p
    return out


def _learner(cfg: SystemsBenchConfig, store: Path, version: int) -> dict:
    from lwd.data.store import ExperienceStore
    from lwd.rl.learner import Learner, LearnerConfig

    out: dict = {}
    for algo in cfg.algos:
        with tempfile.TemporaryDirectory(prefix=f"lwd-sys-{algo}-") as tmp:
            root = Path(tmp) / "store"
            shutil.copytree(store / "policies" / f"v{version}", root / "policies" / f"v{version}")
            shutil.copytree(store / "episodes", root / "episodes")
            st = ExperienceStore(root)
            st.scan()
            try:
                learner = Learner(st, LearnerConfig(algo=algo, offline_updates=0, background_updates=0,
                                                      gate="none", seed=cfg.seed, threads=cfg.threads))
            except (TypeError, ValueError) as e:  # the learner's API moves; report instead of failing the bench
                out[algo] = {"error": f"{type(e).__name__}: {e}"}
                continue
            for _ in range(3):
                learner.algo.update(learner.buffer, learner.rng)
            ms = []
            for _ in range(cfg.updates):
                t0 = time.perf_counter()
                learner.algo.update(learner.buffer, learner.rng)
                ms.append(1e3 * (time.perf_counter() - t0))
            out[algo] = {"update_ms": percentiles(ms), "buffer_steps": len(learner.buffer),
                         "profile": _profile(learner.algo.update, (learner.buffer, learner.rng), cfg.profile)}
    if all("update_ms" in out.get(a, {}) for a in ("lwd", "bc")):
        out["lwd_over_bc"] = out["lwd"]["update_ms"]["mean"] / out["bc"]["update_ms"]["mean"]
    return out


def _profile(fn, args: tuple, calls: int, top: int = 8) -> list[dict]:
    """cProfile of ``calls`` calls ``fn(*args)``: the functions with the most own time (share of the total)."""
    import cProfile
    import pstats

    if calls <= 0:
        return []
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(calls):
        fn(*args)
    prof.disable()
    stats = pstats.Stats(prof).stats  # (file, line, name) -> (cc, nc, tottime, cumtime, callers)
    total = sum(v[2] for v in stats.values()) or 1.0
    rows = sorted(stats.items(), key=lambda kv: kv[1][2], reverse=True)[:top]
    return [{"function": f"{Path(f).name}:{line}({name})", "own_share": round(v[2] / total, 3),
             "calls_per_update": round(v[1] / calls, 1)} for (f, line, name), v in rows]


def _markdown(res: dict) -> str:
    inf, lrn = res["inference"], res["learner"]
    period = inf["executed_chunk_period_ms"]
    rows = ["| figure | measured | target |", "|---|---:|---:|"]
    for v in ("plain", "rtc"):
        p = inf[v]
        rows.append(f"| inference_ms ({v}) p50 / p99 | {p['p50']:.1f} / {p['p99']:.1f} | – |")
        rows.append(f"| inference p99 / executed-chunk period ({period:.0f} ms), {v} | {p['p99_over_period']:.2f} "
                    "| ≤ 0.25 |")
    for a in res["config"]["algos"]:
        d = lrn.get(a, {})
        val = f"{d['update_ms']['mean']:.1f}" if "update_ms" in d else d.get("error", "–")
        rows.append(f"| learner update ms ({a}), mean | {val} | – |")
    if "lwd_over_bc" in lrn:
        rows.append(f"| learner update cost lwd / bc | {lrn['lwd_over_bc']:.2f}x | ≤ 2x |")
    for a in res["config"]["algos"]:
        prof = {p["function"]: p for p in lrn.get(a, {}).get("profile") or []}
        back = next((p for f, p in prof.items() if "run_backward" in f), None)
        lin = next((p for f, p in prof.items() if "_nn.linear" in f), None)
        if back and lin:
            rows.append(f"| {a} update: backward passes / linear-layer calls per update (share of own time) | "
                        f"{back['calls_per_update']:g} ({back['own_share']:.0%}) / {lin['calls_per_update']:g} "
                        f"({lin['own_share']:.0%}) | – |")
    for n, r in res.get("ros", {}).items():
        if "error" in r:
            rows.append(f"| ROS fleet of {n} | {r['error']} | – |")
            continue
        o = r["obs_to_cmd_ms"]
        if o.get("n"):
            rows.append(f"| obs_to_cmd_ms p50 / p99, N = {n} (n = {o['n']}) | {o['p50']:.0f} / {o['p99']:.0f} | "
                        "p99 ≤ 20 + inference |")
        for phase in ("idle", "during_hotswap"):
            per = r.get(phase, {})
            rates = [x["control_rate_hz"] for x in per.values() if x["control_rate_hz"]]
            missed = sum(x["missed_ticks"] for x in per.values())
            total = sum(x.get("ticks", 0) for x in per.values())
            if rates:
                rows.append(f"| control_rate_hz (min over robots) / missed ticks, {phase.replace('_', ' ')}, "
                            f"N = {n} | {min(rates):.1f} / {missed} of {total} | 50 / 0 |")
        hs = r.get("hotswap_s")
        rows.append(f"| hotswap_s, N = {n} | {hs:.2f} |" if hs is not None else f"| hotswap_s, N = {n} | timed out |")
        rows[-1] += " < 1 s at N = 8 |"
    head = (f"`{res['command']}` at commit {res['commit']} on {res['machine']['platform']} "
            f"({res['machine']['cpus']} CPUs, torch threads {res['machine']['torch_threads']}), policy "
            f"v{res['policy']['version']}.\n\n")
    return head + "\n".join(rows) + "\n"


def run_systems_bench(cfg: SystemsBenchConfig, log=print) -> dict:
    import torch

    from lwd.app.bench_chunking import _git_commit
    from lwd.policy.checkpoint import latest_version, load_checkpoint, version_dir

    torch.set_num_threads(cfg.threads)
    store = Path(cfg.store)
    version = cfg.version if cfg.version is not None else latest_version(store / "policies")
    if version is None:
        raise FileNotFoundError(f"no policies/v<N> in {store} (make one with `lwd pretrain --store ...`)")
    ckpt = load_checkpoint(version_dir(store / "policies", version))
    t0 = time.time()
    res = {
        "command": "lwd " + " ".join(sys.argv[1:]) if Path(sys.argv[0]).name == "lwd" else "lwd bench systems",
        "commit": _git_commit(),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch_threads": cfg.threads},
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(cfg).items()},
        "policy": {"store": str(store), "version": version, "sha256": ckpt.sha256},
    }
    res["inference"] = _inference(cfg, ckpt)
    log(f"[systems] inference: {json.dumps(res['inference'])}")
    res["learner"] = _learner(cfg, store, version)
    log(f"[systems] learner: {json.dumps(res['learner'])}")
    if cfg.ros_robots:
        from lwd.app.bench_ros import measure_fleet

        res["ros"] = {}
        for n in cfg.ros_robots:
            work = Path(tempfile.mkdtemp(prefix=f"lwd-sys-ros{n}-"))
            try:
                res["ros"][str(n)] = measure_fleet(store, version, n, work, cfg.ros_window_s, log=log)
                shutil.rmtree(work, ignore_errors=True)
            except RuntimeError as e:  # keep the launch logs for a look
                res["ros"][str(n)] = {"error": f"{e} (logs in {work})"}
                log(f"[systems] ROS fleet of {n}: {e}; logs in {work}")
    res["wall_s"] = round(time.time() - t0, 1)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "systems.json").write_text(json.dumps(res, indent=1))
    md = _markdown(res)
    (out / "systems.md").write_text(md)
    log(md)
    return res
