"""`lwd demo`: the simulated fleet learning loop through the real ROS 2 launch files.

pretrain v0 (scripted demos) -> ``fleet_sim.launch.py`` (N robots + learner as separate processes over DDS) ->
R rounds of deploy -> record -> learn -> hot-swap -> ``summary.json`` + ``learning_curve.png``. By default the
rounds are asynchronous: the robots never wait for the learner, which learns while they work, closes a round every
``robots x episodes_per_round`` new episodes, and publishes; the robots hot-swap each version mid-run.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from lwd.data.store import ExperienceStore
from lwd.policy.checkpoint import latest_version
from lwd.rl.pretrain import PretrainConfig, pretrain
from lwd.sim.tasks import default_tasks, get_task

__all__ = ["DemoConfig", "run_demo", "summarize", "plot_curve", "ros_env"]


@dataclass
class DemoConfig:
    out: Path = Path("runs/demo")
    robots: int = 2
    rounds: int = 2
    episodes_per_round: int = 50
    """Episodes per robot per round. A rise needs data: 100 fleet episodes and 5000 whole-VLA updates per round took
    pick_place from 14% to 21% and 40% over two rounds in ``lwd bench learning`` (docs/learning.md row 23)."""
    tasks: str = ",".join(t for t in default_tasks() if not get_task(t).long_horizon)
    """What the fleet runs and the evaluation measures: the curriculum's short tasks, where a demo-sized budget can
    show a change (the long-horizon restock3 is 0% for v0 and needs far more robot time per episode)."""
    pretrain_tasks: str = ",".join(default_tasks())
    """The curriculum v0 is pretrained on (the benchmark's v0 recipe)."""
    algo: str = ""
    """Learner update rule; empty = config/learner.yaml's default."""
    updates_per_round: int | None = 5000
    """Learner updates per round (background updates while the robots work count); None = LearnerConfig's
    default."""
    offline_updates: int | None = 300
    """Learner updates on the demos before the first fleet episode (the bench's setting); None = LearnerConfig's."""
    sync: bool = False
    """Robots wait for the learner at each round's end (the old barrier: ~10 of every 18 min idle, docs/learning.md
    row 32) instead of working on while it learns."""
    demos_per_task: int = PretrainConfig.demos_per_task
    pretrain_steps: int = PretrainConfig.steps
    time_limit_scale: float = 1.0
    seed: int = 0
    timeout_min: float = 120.0
    """Give up on the fleet (and skip the evaluation) after this long. Its two rounds took 18 min on this 2-core box
    (docs/learning.md row 67; 52 min on a slow host before the learner stopped idling between polls)."""
    eval_episodes: int = 200
    """Autonomous evaluation (no operator) of every published version on this many held-out seeds per task. A
    ~15-point rise needs ~200: on 100 the asynchronous demo's v0 14% [9%, 22%] and v2 29% [21%, 39%] still touched,
    on 200 they were 14% [10%, 19%] and 29% [23%, 36%] (docs/learning.md row 35)."""
    eval_workers: int = 2
    gate_episodes: int | None = None
    """Learner gate rollouts per task and policy; None = LearnerConfig's default."""
    overwrite: bool = False
    pretrained: Path | None = None
    """A store whose v0 (and demos) to start from instead of pretraining."""
    quick: bool = False

    @classmethod
    def quick_defaults(cls, **kw) -> DemoConfig:
        base = dict(rounds=2, episodes_per_round=2, updates_per_round=100, offline_updates=20, demos_per_task=12,
                    pretrain_steps=1500,
                    time_limit_scale=0.8, eval_episodes=8, gate_episodes=3, quick=True)
        base.update({k: v for k, v in kw.items() if v is not None})
        return cls(**base)


def ros_env(out: Path, domain_id: int | None = None) -> dict[str, str]:
    """Environment for the fleet processes: local-only DDS, its own domain, the venv as ament prefix."""
    env = dict(os.environ)
    env.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    if domain_id is not None:
        env["ROS_DOMAIN_ID"] = str(domain_id)
    else:
        env.setdefault("ROS_DOMAIN_ID", str(random.Random(os.getpid()).randint(1, 100)))
    env.setdefault("MUJOCO_GL", "egl")
    env["PYTHONUNBUFFERED"] = "1"
    # A node that dies of a native crash (a start-up SIGSEGV was seen in tests) then logs its Python stack.
    env.setdefault("PYTHONFAULTHANDLER", "1")
    env["ROS_LOG_DIR"] = str(out / "ros_log")
    prefix = sys.prefix
    if Path(prefix, "share/ament_index/resource_index/packages/lwd").exists():
        paths = [p for p in env.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
        if prefix not in paths:
            env["AMENT_PREFIX_PATH"] = os.pathsep.join([prefix, *paths])
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def _fleet_episodes(store: ExperienceStore) -> list:
    store.scan()
    return sorted(store.episodes(source="fleet"), key=lambda r: (r.robot, r.start_ns))


def summarize(records, robots: int, episodes_per_round: int, by_version: bool = False) -> list[dict]:
    """Per round: success, autonomous success (no intervention), interventions, policy versions per robot.

    A round is each robot's next ``episodes_per_round`` episodes (synchronous rounds), or with ``by_version`` the
    episodes that started on one policy version (asynchronous robots work on while the learner learns)."""
    rounds: dict[int, list] = {}
    if by_version:
        for r in records:
            rounds.setdefault(r.policy_versions[0] if r.policy_versions else -1, []).append(r)
    else:
        by_robot: dict[str, list] = {}
        for r in sorted(records, key=lambda r: (r.robot, r.start_ns)):
            by_robot.setdefault(r.robot, []).append(r)
        for eps in by_robot.values():
            for i, r in enumerate(eps):
                rounds.setdefault(i // episodes_per_round, []).append(r)
    out = []
    for k in sorted(rounds):
        eps = rounds[k]
        n = len(eps)
        succ = sum(r.success for r in eps)
        auto = sum(r.success and r.num_interventions == 0 for r in eps)
        interventions = sum(r.num_interventions for r in eps)
        versions: dict[str, list[int]] = {}
        for r in eps:
            versions.setdefault(r.robot, [])
            for v in r.policy_versions:
                if v not in versions[r.robot]:
                    versions[r.robot].append(v)
        per_task: dict[str, dict] = {}
        for r in eps:
            t = per_task.setdefault(r.task, {"episodes": 0, "success": 0})
            t["episodes"] += 1
            t["success"] += int(r.success)
        out.append({
            "round": k, "episodes": n, "success_rate": succ / n, "autonomous_success_rate": auto / n,
            "interventions": interventions, "interventions_per_episode": interventions / n,
            "intervention_rate": sum(r.num_interventions > 0 for r in eps) / n,
            "policy_versions": versions, "per_task": per_task,
        })
    return out


def learner_log(store_root: Path) -> list[dict]:
    """One row per learner round: gate decision and evidence, the round's updates and wall time, the learner's
    update rate over them (background updates while the robots work included), the version it served."""
    path = Path(store_root) / "learner" / "metrics.jsonl"
    if not path.exists():
        return []
    rows: list[dict] = []
    prev_updates, n, train_s, t0 = 0, 0, 0.0, None
    for line in path.read_text().splitlines():
        d = json.loads(line)
        t0 = d["time"] if t0 is None else t0
        if "perf/train_s" in d:  # offline, background and online training
            n += d["updates"] - prev_updates
            train_s += d["perf/train_s"]
            prev_updates = d["updates"]
        elif d["phase"] == "gate":
            rows.append({"version_before": d["version"], "accepted": bool(d.get("gate/accepted")),
                         **{k[5:]: v for k, v in d.items() if k.startswith("gate/") and k != "gate/accepted"},
                         "updates": n, "round_s": round(d["time"] - t0, 1),
                         "updates_per_s": round(n / train_s, 2) if train_s > 0 else None})
            n, train_s, t0 = 0, 0.0, d["time"]
    return rows


def _eval_job(args) -> tuple[int, str, dict]:
    store_root, version, task, episodes, exec_steps = args
    import torch

    from lwd.policy.checkpoint import load_checkpoint, version_dir
    from lwd.policy.inference import VLAPolicy
    from lwd.sim.evaluate import evaluate
    from lwd.sim.world import SimWorld

    torch.set_num_threads(1)
    model = load_checkpoint(version_dir(Path(store_root) / "policies", version)).model
    with SimWorld(image_size=model.cfg.image_size, cameras=model.cfg.cameras) as world:
        res = evaluate(world, VLAPolicy(model, version, seed=0, exec_steps=exec_steps), (task,), episodes)
    return version, task, res[task].to_dict()


def evaluate_versions(store_root: Path, versions: list[int], tasks: list[str], episodes: int, workers: int = 2,
                      exec_steps: int = 5) -> dict[int, dict]:
    """Autonomous success of each version on the same held-out seeds per task: {version: {task: result, "all": ..}}."""
    import multiprocessing as mp

    from lwd.sim.evaluate import wilson

    jobs = [(str(store_root), v, t, episodes, exec_steps) for v in versions for t in tasks]
    if workers > 1:
        with mp.get_context("spawn").Pool(min(workers, len(jobs))) as pool:
            done = pool.map(_eval_job, jobs)
    else:
        done = [_eval_job(j) for j in jobs]
    out: dict[int, dict] = {}
    for v, t, r in done:
        out.setdefault(v, {})[t] = r
    for per in out.values():
        k = sum(r["successes"] for r in per.values())
        n = sum(r["episodes"] for r in per.values())
        lo, hi = wilson(k, n)
        per["all"] = {"success": k / max(1, n), "ci_low": lo, "ci_high": hi, "successes": k, "episodes": n}
    return dict(sorted(out.items()))


def plot_curve(rounds: list[dict], path: Path, title: str = "lwd fleet learning curve",
               evals: dict[int, dict] | None = None, by_version: bool = False) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2 if evals else 1, figsize=(11 if evals else 6, 4), squeeze=False)
    ax = axes[0][0]
    x = [r["round"] for r in rounds]
    ax.plot(x, [r["success_rate"] for r in rounds], "o-", label="success (with operator help)")
    ax.plot(x, [r["autonomous_success_rate"] for r in rounds], "s-", label="success without intervention")
    ax.plot(x, [r["intervention_rate"] for r in rounds], "^--", label="episodes with intervention")
    ax.set(xlabel="policy version the episodes started on" if by_version else "round", ylabel="rate",
           ylim=(-0.05, 1.05), title="fleet episodes")
    ax.set_xticks(x, [f"{'v' if by_version else ''}{r['round']}\n{r['episodes']} ep." for r in rounds])
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    if evals:
        ax = axes[0][1]
        vs = list(evals)
        for key in [k for k in next(iter(evals.values())) if k != "all"] + ["all"]:
            y = [evals[v][key]["success"] for v in vs]
            line, = ax.plot(vs, y, "o-" if key == "all" else ".--", lw=2 if key == "all" else 1,
                            label="all tasks" if key == "all" else key)
            if key == "all":
                ax.fill_between(vs, [evals[v][key]["ci_low"] for v in vs], [evals[v][key]["ci_high"] for v in vs],
                                color=line.get_color(), alpha=0.15, label="95% Wilson interval")
        n = evals[vs[0]]["all"]["episodes"]
        ax.set(xlabel="policy version", ylabel="autonomous success", ylim=(-0.05, 1.05),
               title=f"autonomous success, {n} held-out episodes per version")
        ax.set_xticks(vs)
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


class _StatusWatcher:
    """Subscribes to every robot's policy/status (the demo is a ROS 2 participant like any tool)."""

    def __init__(self, robots: int, env: dict[str, str]) -> None:
        os.environ["ROS_DOMAIN_ID"] = env["ROS_DOMAIN_ID"]
        os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = env["ROS_AUTOMATIC_DISCOVERY_RANGE"]
        import rclpy
        from rclpy.node import Node
        from std_msgs.msg import String

        from lwd.nodes.common import LATCHED_QOS, LEARNER_STATUS_TOPIC

        self.rclpy = rclpy
        self.ctx = rclpy.Context()
        rclpy.init(context=self.ctx, args=[])
        self.node = Node("lwd_demo", context=self.ctx)
        self.versions: dict[str, int] = {}
        self.learner: dict = {}
        self.node.create_subscription(String, LEARNER_STATUS_TOPIC, self._on_learner, LATCHED_QOS)
        for i in range(robots):
            name = f"robot{i}"
            self.node.create_subscription(String, f"/{name}/policy/status",
                                          lambda m, n=name: self._on(n, m), LATCHED_QOS)
        self.executor = rclpy.executors.SingleThreadedExecutor(context=self.ctx)
        self.executor.add_node(self.node)

    def _on(self, robot: str, msg) -> None:
        try:
            self.versions[robot] = int(json.loads(msg.data).get("version", -1))
        except (ValueError, TypeError):
            pass

    def _on_learner(self, msg) -> None:
        try:
            self.learner = json.loads(msg.data)
        except ValueError:
            pass

    def spin(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.executor.spin_once(timeout_sec=max(0.0, min(0.2, end - time.monotonic())))

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        self.rclpy.try_shutdown(context=self.ctx)


def _stop(proc: subprocess.Popen, log) -> None:
    if proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGINT, 30), (signal.SIGTERM, 10), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            log(f"fleet did not stop on {sig.name}; escalating")


@contextlib.contextmanager
def _signals_as_interrupt():
    """SIGINT and SIGTERM (Ctrl-C, ``kill``, a CI timeout) unwind the demo, so the fleet's process group is stopped
    instead of left running beside the next job (the fleet runs in its own session: no signal reaches it otherwise).
    SIGINT too, because a demo started in the background by a script inherits it ignored and ``kill -INT`` did
    nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def raise_interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    previous = {sig: signal.signal(sig, raise_interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _policy_cameras(store_root: Path) -> tuple[str, ...]:
    """The cameras v0 of ``store_root`` sees (its saved PolicyConfig)."""
    from lwd.policy.checkpoint import load_checkpoint, version_dir

    return tuple(load_checkpoint(version_dir(store_root / "policies", 0)).config.cameras)


def run_demo(cfg: DemoConfig, log=print) -> dict:
    with _signals_as_interrupt():
        return _run_demo(cfg, log)


def _run_demo(cfg: DemoConfig, log) -> dict:
    out = Path(cfg.out).resolve()
    store_root = out / "store"
    if store_root.exists():
        if not cfg.overwrite:
            raise FileExistsError(f"{store_root} exists; pass --overwrite or another --out")
        shutil.rmtree(store_root)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.time()

    # 1. The pretrained VLA the fleet starts from.
    if cfg.pretrained is not None:
        src = Path(cfg.pretrained)
        shutil.copytree(src / "policies" / "v0", store_root / "policies" / "v0")
        if (src / "episodes" / "demo").is_dir():
            shutil.copytree(src / "episodes" / "demo", store_root / "episodes" / "demo")
        log(f"[demo] starting from the pretrained v0 in {src}")
    else:
        log(f"[demo] pretraining v0 on {cfg.pretrain_tasks}: {cfg.demos_per_task} scripted demos per task, "
            f"{cfg.pretrain_steps} steps")
        pretrain(store_root, PretrainConfig(tasks=tuple(cfg.pretrain_tasks.split(",")),
                                            demos_per_task=cfg.demos_per_task, steps=cfg.pretrain_steps,
                                            seed=cfg.seed))
    t_pretrained = time.time()
    store = ExperienceStore(store_root)

    # 2. The fleet: real launch file, separate processes, DDS on localhost.
    env = ros_env(out)
    # Asynchronous robots run until the demo stops them, once the learner has published its last round.
    args = [f"robots:={cfg.robots}", f"store:={store_root}", f"tasks:={cfg.tasks}",
            f"episodes_per_round:={cfg.episodes_per_round}", f"rounds:={cfg.rounds if cfg.sync else 0}",
            f"sync_rounds:={str(cfg.sync).lower()}", f"seed:={cfg.seed}", f"time_limit_scale:={cfg.time_limit_scale}"]
    if cfg.updates_per_round:
        args.append(f"updates_per_round:={cfg.updates_per_round}")
    if cfg.offline_updates is not None:
        args.append(f"offline_updates:={cfg.offline_updates}")
    if cfg.gate_episodes:
        args.append(f"gate_episodes:={cfg.gate_episodes}")
    if cfg.algo:
        args.append(f"algo:={cfg.algo}")
    cameras = _policy_cameras(store_root)
    if cameras != ("overview",):  # the robots' camera drivers publish every view v0 sees
        args.append(f"cameras:={','.join(cameras)}")
    log(f"[demo] launching fleet_sim.launch.py {' '.join(args)} (ROS_DOMAIN_ID={env['ROS_DOMAIN_ID']}); "
        f"log: {out / 'fleet.log'}")
    fleet_log = open(out / "fleet.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "lwd.app.launch_runner", "fleet_sim.launch.py", *args],
                            env=env, stdout=fleet_log, stderr=subprocess.STDOUT, start_new_session=True)
    watcher = _StatusWatcher(cfg.robots, env)
    total = cfg.robots * cfg.rounds * cfg.episodes_per_round  # synchronous; asynchronous robots run on
    seen: set[str] = set()
    reported_rounds = 0
    deadline = time.monotonic() + cfg.timeout_min * 60
    error = None
    try:
        while True:
            watcher.spin(2.0)
            if proc.poll() is not None:
                error = f"the fleet exited early with code {proc.returncode}; see {out / 'fleet.log'}"
                break
            records = _fleet_episodes(store)
            for r in records:
                if r.episode_id not in seen:
                    seen.add(r.episode_id)
                    n = f"{len(seen):3d}/{total}" if cfg.sync else f"{len(seen):3d}"
                    log(f"[demo] {n} {r.robot} {r.task:<10s} {r.outcome:<8s} "
                        f"v{max(r.policy_versions, default=-1)} interventions={r.num_interventions}")
            rounds = summarize(records, cfg.robots, cfg.episodes_per_round, by_version=not cfg.sync)
            per_round = cfg.robots * cfg.episodes_per_round
            # a round is complete when it has its episodes (sync) or robots have moved past its version (async)
            complete = [r for r in rounds if r["episodes"] == per_round] if cfg.sync else [
                r for r in rounds if r["round"] < min(watcher.versions.values(), default=-1)]
            while reported_rounds < len(complete):
                r = complete[reported_rounds]
                log(f"[demo] {'round' if cfg.sync else 'version'} {r['round']}: success {r['success_rate']:.0%} "
                    f"(autonomous {r['autonomous_success_rate']:.0%}), "
                    f"interventions {r['interventions_per_episode']:.2f}/episode, versions {r['policy_versions']}")
                reported_rounds += 1
            final = latest_version(store_root / "policies") or 0
            lrn = watcher.learner
            swapped = (len(watcher.versions) == cfg.robots
                       and all(v == lrn.get("version") for v in watcher.versions.values()))
            if (len(seen) >= total or not cfg.sync) and lrn.get("round", 0) >= cfg.rounds and swapped:
                log(f"[demo] learner finished round {lrn['round']} (v{lrn['version']}); every robot runs it: "
                    f"{watcher.versions}")
                break
            if time.monotonic() > deadline:
                error = f"timed out after {cfg.timeout_min} min ({len(seen)}/{total} episodes, v{final})"
                break
    except KeyboardInterrupt:
        error = "interrupted"
    finally:
        robot_versions = dict(watcher.versions)
        watcher.close()
        _stop(proc, log)
        fleet_log.close()

    records = _fleet_episodes(store)
    rounds = summarize(records, cfg.robots, cfg.episodes_per_round, by_version=not cfg.sync)
    evals: dict[int, dict] = {}
    if cfg.eval_episodes > 0 and error is None:
        from lwd.policy.checkpoint import list_versions

        versions = list_versions(store_root / "policies")
        log(f"[demo] evaluating versions {versions} autonomously (no operator) on {cfg.eval_episodes} held-out seeds "
            f"per task ...")
        t_eval = time.time()
        evals = evaluate_versions(store_root, versions, cfg.tasks.split(","), cfg.eval_episodes, cfg.eval_workers)
        for v, per in evals.items():
            log(f"[demo]   v{v}: " + ", ".join(f"{t} {r['successes']}/{r['episodes']}" for t, r in per.items()
                                                if t != "all")
                + f" -> {per['all']['success']:.0%} [{per['all']['ci_low']:.0%}, {per['all']['ci_high']:.0%}]")
        log(f"[demo] evaluation took {time.time() - t_eval:.0f} s")
    summary = {
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(cfg).items()},
        "rounds": rounds,
        "learner": learner_log(store_root),
        "autonomous_eval": {str(v): per for v, per in evals.items()},
        "final_policy_version": latest_version(store_root / "policies"),
        "robot_policy_versions_at_end": robot_versions,
        "episodes": len(records),
        "pretrain_s": round(t_pretrained - t_start, 1),
        "total_s": round(time.time() - t_start, 1),
        "error": error,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    if rounds:
        plot_curve(rounds, out / "learning_curve.png", evals=evals or None, by_version=not cfg.sync)
    if evals:
        first, last = evals[min(evals)]["all"], evals[max(evals)]["all"]
        line = (f"autonomous success v{min(evals)} {first['success']:.0%} [{first['ci_low']:.0%}, "
                f"{first['ci_high']:.0%}] -> v{max(evals)} {last['success']:.0%} [{last['ci_low']:.0%}, "
                f"{last['ci_high']:.0%}] on {last['episodes']} held-out episodes each")
        summary["headline"] = line
        (out / "summary.json").write_text(json.dumps(summary, indent=1))
        log(f"[demo] {line}")
    log(f"[demo] wrote {out / 'summary.json'} and {out / 'learning_curve.png'} ({summary['total_s']:.0f} s)")
    if error:
        log(f"[demo] error: {error}")
    return summary
