"""`lwd bench systems`: systems figures measured side by side in one run (in-process, and over the ROS graph).

Measured so far:

* ``inference``: wall time per chunk of ``VLAPolicy.infer`` on sim observations, plain and with RTC guidance (a
  prefix from the previous chunk), p50/p99, and the p99's ratio to the executed-chunk period
  (``exec_steps * CONTROL_DT``; target <= 0.25);
* ``learner``: wall time per learner update (``Algorithm.update`` on the cached features of the store's episodes)
  for ``lwd`` and ``bc``, and their ratio (target <= 2x).

With ``ros_robots`` (``--ros 2,4,8``): obs -> cmd latency through DDS, control rate and missed ticks, hot-swap time
and recorder drops per fleet size (:mod:`lwd.app.bench_ros`); on the bags of the largest fleet (else the store's
episodes): the recorder's write MB/s vs a raw ``mcap`` writer and the learner's ingest vs a raw ``rosbags`` read
(:mod:`lwd.app.bench_io`). With ``scaling`` (``--scaling 1,2,4,8,16``): CPU seconds per robot-second and control-rate
ratio per fleet size (:mod:`lwd.app.bench_scaling`). The camera rate is reduced at large N when
``camera_budget_hz`` > 0 (at most that many frames/s over the fleet); the table says so.
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

from lwd.app.bench_io import episode_bags, ingest_ratio, recorder_write
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
    camera_budget_hz: float = 40.0
    """Frames/s the whole fleet's cameras may render: per-robot rate min(10, budget / N) (0 = always 10 Hz)."""
    io_repeats: int = 3
    """Passes (best taken) of the recorder-write and ingest measurements."""
    io_max_mb: float = 64.0
    scaling: tuple[int, ...] = ()
    """Fleet sizes for the scaling figure, e.g. (1, 2, 4, 8, 16)."""
    scaling_window_s: float = 20.0


QUICK = dict(inferences=50, updates=20, ros_robots=(2,), ros_window_s=5.0, io_repeats=1, scaling=(1, 2),
             scaling_window_s=10.0)
"""``lwd bench systems --quick``: every figure at a small size (meant to finish within ~10 min on 2 cores)."""


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
    with SimWorld(image_size=ckpt.model.cfg.image_size, cameras=ckpt.model.cfg.cameras) as world:
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


def _io(cfg: SystemsBenchConfig, bags: list[Path], source: str, store: Path, version: int, log) -> dict:
    from lwd.policy.checkpoint import version_dir

    out: dict = {"source": source}
    for name, fn in (("recorder_write", lambda: recorder_write(bags, repeats=cfg.io_repeats, max_mb=cfg.io_max_mb)),
                     ("ingest", lambda: ingest_ratio(bags, version_dir(store / "policies", version), version,
                                                     repeats=cfg.io_repeats, threads=cfg.threads))):
        try:
            out[name] = fn()
        except Exception as e:  # noqa: BLE001 - one figure failing must not lose the run's others
            out[name] = {"error": f"{type(e).__name__}: {e}"}
    log(f"[systems] io: {json.dumps(out)}")
    return out


def _cam(r: dict) -> str:
    hz = r.get("camera_hz")
    return f", camera {hz:g} Hz" if hz is not None and hz != 10.0 else ""


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
            rows.append(f"| obs_to_cmd_ms p50 / p99, N = {n}{_cam(r)} (n = {o['n']}) | {o['p50']:.0f} / "
                        f"{o['p99']:.0f} | p99 ≤ 20 + inference |")
        for phase in ("idle", "during_hotswap"):
            per = r.get(phase, {})
            rates = [x["control_rate_hz"] for x in per.values() if x["control_rate_hz"]]
            missed = sum(x["missed_ticks"] for x in per.values())
            total = sum(x.get("ticks", 0) for x in per.values())
            if rates:
                rows.append(f"| control_rate_hz (min over robots) / missed ticks, {phase.replace('_', ' ')}, "
                            f"N = {n}{_cam(r)} | {min(rates):.1f} / {missed} of {total} | 50 / 0 |")
        hs = r.get("hotswap_s")
        rows.append(f"| hotswap_s, N = {n}{_cam(r)} | {hs:.2f} |" if hs is not None
                    else f"| hotswap_s, N = {n}{_cam(r)} | timed out |")
        rows[-1] += " < 1 s at N = 8 |"
        rows += _drop_rows(n, r)
    rows += _io_rows(res.get("io") or {})
    rows += _scaling_rows(res.get("scaling") or [])
    head = (f"`{res['command']}` at commit {res['commit']} on {res['machine']['platform']} "
            f"({res['machine']['cpus']} CPUs, torch threads {res['machine']['torch_threads']}), policy "
            f"v{res['policy']['version']}.\n\n")
    return head + "\n".join(rows) + "\n"


def _drop_rows(n, r: dict) -> list[str]:
    d = r.get("recorder")
    if not d or d.get("drop_rate") is None:
        return []
    lossy = [f"{t} {c['dropped']}/{c['published']}" for t, c in d["per_topic"].items() if c["dropped"]]
    where = "; ".join(lossy) if lossy else f"none on any of {len(d['per_topic'])} topics"
    return [f"| recorder_drop_rate, N = {n}{_cam(r)}: dropped / published (seen by a bench subscriber during "
            f"episodes), {d['bags']} bags ({where}) | "
            f"{d['dropped']} / {d['published']} ({d['drop_rate']:.4f}) | 0 at N = 8 |"]


def _io_rows(io: dict) -> list[str]:
    rows = []
    w, g = io.get("recorder_write") or {}, io.get("ingest") or {}
    if "ratio" in w:
        rows.append(f"| recorder write MB/s / raw mcap writer MB/s (ratio), {w['mb']:.1f} MB of {io['source']} | "
                    f"{w['recorder_mb_s']:.1f} / {w['raw_mcap_mb_s']:.1f} ({w['ratio']:.2f}x) | – |")
        rows.append(f"| recorder: closing a bag (rosbags writes metadata.yaml), ms per bag (share of write time) | "
                    f"{w['recorder_close_ms_per_bag']:.0f} ({w['recorder_close_share']:.0%}) | – |")
    elif w:
        rows.append(f"| recorder write vs raw mcap | {w.get('error')} | – |")
    if "ingest_ratio" in g:
        rows.append(f"| ingest transitions/s: learner / raw rosbags read (ingest_ratio), {g['transitions']} "
                    f"transitions of {io['source']} | {g['learner_transitions_s']:.0f} / "
                    f"{g['raw_read_transitions_s']:.0f} ({g['ingest_ratio']:.2f}x) | ≥ 0.8x |")
        rows.append(f"| ingest without indexing and feature encoding (bag -> steps only) / raw read | "
                    f"{g['load_only_transitions_s']:.0f} / {g['raw_read_transitions_s']:.0f} "
                    f"({g['load_only_ratio']:.2f}x) | – |")
    elif g:
        rows.append(f"| ingest_ratio | {g.get('error')} | ≥ 0.8x |")
    return rows


def _scaling_rows(scaling: list[dict]) -> list[str]:
    rows = []
    for r in scaling:
        n = r["robots"]
        if "error" in r:
            why = r["error"].split(": versions {")[0].split(" (logs in")[0]
            stalled = "; ".join(f"{k}: {v}" for k, v in (r.get("stalled") or {}).items())
            rows.append(f"| scaling, N = {n}{_cam(r)} | {why}{' (teleop: ' + stalled + ')' if stalled else ''} "
                        "| – |")
            continue
        top = max(r["cpu_s_per_robot_s_by_kind"].items(), key=lambda kv: kv[1])
        rows.append(f"| scaling, N = {n}{_cam(r)}: CPU s per robot-s (vs N = {scaling[0]['robots']}; top: "
                    f"{top[0]} {top[1]:.2f}) / control-rate ratio min, mean / machine busy | "
                    f"{r['cpu_s_per_robot_s']:.2f} ({r.get('cost_vs_first', float('nan')):.2f}x) / "
                    f"{r['control_rate_ratio_min']:.2f}, {r['control_rate_ratio_mean']:.2f} / "
                    f"{r['system_busy']:.0%} | ≤ 1.2x / 1 |")
    return rows


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
    io_bags: list[Path] = []
    io_source = f"{store}/episodes"
    if cfg.ros_robots:
        from lwd.app.bench_ros import camera_rate_hz, measure_fleet

        res["ros"] = {}
        for n in cfg.ros_robots:
            work = Path(tempfile.mkdtemp(prefix=f"lwd-sys-ros{n}-"))
            try:
                res["ros"][str(n)] = measure_fleet(store, version, n, work, cfg.ros_window_s, log=log,
                                                   camera_hz=camera_rate_hz(n, cfg.camera_budget_hz))
            except RuntimeError as e:  # keep the launch logs for a look
                res["ros"][str(n)] = {"error": f"{e} (logs in {work})"}
                log(f"[systems] ROS fleet of {n}: {e}; logs in {work}")
                continue
            if n == max(cfg.ros_robots):  # the recorder's and the learner's speed on the largest fleet's bags
                io_bags = episode_bags(work / "store" / "episodes")
                io_source = f"the {len(io_bags)} bags of the N = {n} fleet"
                res["io"] = _io(cfg, io_bags, io_source, store, version, log)
            shutil.rmtree(work, ignore_errors=True)
    if "io" not in res:
        res["io"] = _io(cfg, episode_bags(store / "episodes"), io_source, store, version, log)
    if cfg.scaling:
        from lwd.app.bench_scaling import measure_scaling

        work = Path(tempfile.mkdtemp(prefix="lwd-sys-scaling-"))
        res["scaling"] = measure_scaling(store, version, cfg.scaling, work, cfg.scaling_window_s,
                                         camera_budget_hz=cfg.camera_budget_hz, log=log)
        if not any("error" in r for r in res["scaling"]):
            shutil.rmtree(work, ignore_errors=True)
    res["wall_s"] = round(time.time() - t0, 1)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "systems.json").write_text(json.dumps(res, indent=1))
    md = _markdown(res)
    (out / "systems.md").write_text(md)
    log(md)
    return res
