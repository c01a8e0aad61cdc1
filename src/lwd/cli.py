"""The `lwd` command: pretrain, demo (the simulated fleet loop), bench, replay, info."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path


def _cmd_pretrain(a: argparse.Namespace) -> int:
    from lwd.rl.pretrain import PretrainConfig, pretrain

    path = pretrain(a.store, PretrainConfig(tasks=tuple(a.tasks.split(",")), demos_per_task=a.demos, steps=a.steps,
                                            batch_size=a.batch_size, seed=a.seed, image_size=a.image_size,
                                            cameras=tuple(a.cameras.split(",")), demo_noise=a.noise,
                                            device=a.device, workers=a.workers, threads=a.threads,
                                            **({} if a.variation is None else {"demo_variation": a.variation})))
    manifest = json.loads((path / "manifest.json").read_text())
    print(f"pretrained {path} sha256={manifest['sha256'][:16]} loss={manifest['final_loss']:.4f}")
    return 0


def _cmd_demo(a: argparse.Namespace) -> int:
    from lwd.app.demo import DemoConfig, run_demo

    kw = dict(out=Path(a.out), robots=a.robots, rounds=a.rounds, episodes_per_round=a.episodes, algo=a.algo,
              updates_per_round=a.updates, seed=a.seed, timeout_min=a.timeout_min, overwrite=a.overwrite,
              pretrained=Path(a.pretrained) if a.pretrained else None, tasks=a.tasks,
              pretrain_tasks=a.pretrain_tasks, eval_episodes=a.eval_episodes, offline_updates=a.offline_updates,
              sync=a.sync)
    cfg = DemoConfig.quick_defaults(**kw) if a.quick else DemoConfig(**{k: v for k, v in kw.items() if v is not None})
    summary = run_demo(cfg)
    return 1 if summary.get("error") else 0


def _cmd_bench(a: argparse.Namespace) -> int:
    from lwd.app.bench import config_from_args, run_bench

    cfg = config_from_args(
        a.quick, out=Path(a.out) if a.out else None, results=Path(a.results) if a.results else None,
        algos=tuple(a.algos.split(",")) if a.algos else None, rounds=a.rounds, episodes_per_round=a.episodes,
        updates_per_round=a.updates, offline_updates=a.offline_updates, eval_episodes=a.eval_episodes,
        tasks=tuple(a.tasks.split(",")) if a.tasks else None, seed=a.seed, workers=a.workers,
        pretrained=Path(a.pretrained) if a.pretrained else None, demos_per_task=a.demos,
        pretrain_steps=a.pretrain_steps, gate=a.gate, gate_episodes=a.gate_episodes, variation=a.variation,
        resume=False if a.fresh else None, images=a.images, takeover_terminal=a.takeover_terminal,
        subgoal_credit=a.subgoal_credit, critic_features=a.critic_features, image_lr=a.image_lr,
        fleet_fraction=a.fleet_fraction, select_candidates=a.select, misaligned_s=a.misaligned_s)
    run_bench(cfg, command=" ".join(["lwd", *sys.argv[1:]]))
    return 0


def _cmd_bench_chunking(a: argparse.Namespace) -> int:
    from lwd.app.bench_chunking import ChunkBenchConfig, run_chunk_bench

    cfg = ChunkBenchConfig(store=Path(a.store), out=Path(a.out), episodes=a.episodes, tasks=tuple(a.tasks.split(",")),
                           delays_ms=tuple(int(x) for x in a.delays.split(",")), variants=tuple(a.modes.split(",")),
                           version=a.version, exec_steps=a.exec_steps, time_limit_scale=a.time_limit_scale,
                           noise_scale=a.noise_scale, seed=a.seed)
    run_chunk_bench(cfg)
    return 0


def _cmd_bench_systems(a: argparse.Namespace) -> int:
    from lwd.app.bench_systems import QUICK, SystemsBenchConfig, run_systems_bench

    def sizes(x: str | None):
        return None if x is None else tuple(int(v) for v in x.split(",") if v)

    explicit = dict(version=a.version, inferences=a.inferences, updates=a.updates,
                    algos=tuple(a.algos.split(",")) if a.algos else None, ros_robots=sizes(a.ros),
                    ros_window_s=a.ros_window, camera_budget_hz=a.camera_budget_hz, io_repeats=a.io_repeats,
                    scaling=sizes(a.scaling), scaling_window_s=a.scaling_window)
    kw = dict(QUICK) if a.quick else {}
    kw.update({k: v for k, v in explicit.items() if v is not None})  # explicit flags win over --quick
    run_systems_bench(SystemsBenchConfig(store=Path(a.store), out=Path(a.out), **kw))
    return 0


def _cmd_replay(a: argparse.Namespace) -> int:
    from lwd.app.replay import compare_policy, replay_bag

    if a.policy:
        report = compare_policy(Path(a.bag), Path(a.policy), samples=a.samples)
        print(json.dumps(report, indent=1))
        return 0
    n = replay_bag(Path(a.bag), namespace=a.namespace, rate=a.rate, wait_s=a.wait)
    print(f"replayed {n} messages from {a.bag}")
    return 0


def _cmd_tasks(a: argparse.Namespace) -> int:
    from lwd.app.tasks_sheet import task_rows, write_sheet

    if a.what == "probe":
        return _tasks_probe(a)
    if a.what == "sheet":
        out = write_sheet(Path(a.out), seed=a.seed, scale=a.scale, tasks=tuple(a.tasks.split(",")) if a.tasks else None)
        print(f"wrote {out}")
        return 0
    for r in task_rows():
        flag = "default" if r["default"] else "-"
        speed = ""
        if a.speed:
            from lwd.sim.speed import measure

            m = measure(r["task"])
            speed = f" {m['physics_steps_per_s']:.0f} steps/s ({m['physics_x_realtime']:.0f}x real time)"
        print(f"{r['task']:<12} {flag:<8} subgoals={r['subgoals']} limit={r['time_limit_s']:g}s "
              f"phrasings={r['phrasings']}{speed}  e.g. \"{r['example']}\"")
    return 0


class _ExpertActor:
    """The zero-noise scripted expert as an actor (privileged: it reads the goals, not the image)."""

    def __init__(self, world) -> None:
        from lwd.sim.expert import ScriptedExpert

        self.expert = ScriptedExpert(world, noise=0.0)

    def reset(self) -> None:
        self.expert.reset()

    def act(self, obs):
        return self.expert.act()[None]


def _tasks_probe(a: argparse.Namespace) -> int:
    from lwd.sim.evaluate import EVAL_SEED0, family_probe
    from lwd.sim.world import SimWorld

    tasks = tuple(a.tasks.split(",")) if a.tasks else None
    if a.policy:
        import torch

        from lwd.policy.checkpoint import load_checkpoint
        from lwd.policy.inference import VLAPolicy

        torch.set_num_threads(1)
        ck = load_checkpoint(Path(a.policy))
        with SimWorld(image_size=ck.config.image_size, cameras=ck.config.cameras) as world:
            res = family_probe(world, VLAPolicy(ck.model, ck.version, seed=0, exec_steps=a.exec_steps), tasks,
                               a.scenes, EVAL_SEED0 + a.seed_offset)
    else:
        with SimWorld() as world:
            res = family_probe(world, _ExpertActor(world), tasks, a.scenes, EVAL_SEED0 + a.seed_offset)
    print(json.dumps(res, indent=1))
    return 0


def _cmd_info(a: argparse.Namespace) -> int:
    from lwd.app.info import store_info

    print(json.dumps(store_info(Path(a.store)), indent=1))
    return 0


def build_parser() -> argparse.ArgumentParser:
    from lwd.rl.pretrain import PretrainConfig
    from lwd.sim.tasks import default_tasks

    curriculum = ",".join(default_tasks())

    p = argparse.ArgumentParser(prog="lwd", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)

    s = sub.add_parser("pretrain", help="scripted demos -> flow-matching VLA checkpoint v0")
    s.add_argument("--store", default="lwd_store")
    s.add_argument("--tasks", default=curriculum, help="comma list (default: the registry's default curriculum)")
    s.add_argument("--demos", type=int, default=PretrainConfig.demos_per_task, help="demos per task")
    s.add_argument("--steps", type=int, default=PretrainConfig.steps)
    s.add_argument("--batch-size", type=int, default=PretrainConfig.batch_size)
    s.add_argument("--image-size", type=int, default=PretrainConfig.image_size)
    s.add_argument("--cameras", default=",".join(PretrainConfig.cameras),
                   help="cameras the policy sees, comma list of overview,left_wrist,right_wrist (in that order)")
    s.add_argument("--noise", type=float, default=None, help="scripted expert noise (default: the sim's)")
    s.add_argument("--variation", type=float, default=None,
                   help="item pose spread of the demo scenes (deployment = 1.0; default PretrainConfig.demo_variation)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--device", default=PretrainConfig.device, help="torch device of the training, e.g. cuda")
    s.add_argument("--workers", type=int, default=PretrainConfig.workers, help="demo rollout processes")
    s.add_argument("--threads", type=int, default=PretrainConfig.threads,
                   help="torch CPU threads of the training (2 on an otherwise idle 2-core box: 29 vs 39 ms a step)")
    s.set_defaults(fn=_cmd_pretrain)

    s = sub.add_parser("demo", help="the simulated fleet learning loop through fleet_sim.launch.py")
    s.add_argument("--robots", type=int, default=None)
    s.add_argument("--rounds", type=int, default=None)
    s.add_argument("--episodes", type=int, default=None, help="episodes per robot per round")
    s.add_argument("--updates", type=int, default=None, help="learner gradient steps per round")
    s.add_argument("--offline-updates", type=int, default=None, help="learner steps on the demos before the fleet")
    s.add_argument("--sync", action=argparse.BooleanOptionalAction, default=None,
                   help="robots wait for the learner at each round's end (default: --no-sync, they work on while "
                        "it learns and hot-swap each new version)")
    s.add_argument("--algo", default=None, help="learner update rule (default: config/learner.yaml)")
    s.add_argument("--tasks", default=None, help="tasks the fleet runs and the evaluation measures (default: the "
                                                 "curriculum's short tasks)")
    s.add_argument("--pretrain-tasks", default=None, help="v0's pretraining curriculum (default: the registry's)")
    s.add_argument("--quick", action="store_true", help="small settings: a plumbing check, not a learning result")
    s.add_argument("--out", default="runs/demo")
    s.add_argument("--overwrite", action="store_true", help="replace an earlier run's store in --out")
    s.add_argument("--pretrained", default=None, help="start from this store's v0 instead of pretraining")
    s.add_argument("--seed", type=int, default=None)
    s.add_argument("--timeout-min", type=float, default=None)
    s.add_argument("--eval-episodes", type=int, default=None,
                   help="held-out autonomous episodes per task per version after the run")
    s.set_defaults(fn=_cmd_demo)

    s = sub.add_parser("bench", help="measurements: learning (algorithms on a simulated fleet), chunking, systems")
    what = s.add_subparsers(dest="what", required=True, metavar="{learning,chunking,systems}")
    c = what.add_parser("learning", help="learner algorithms on an in-process simulated fleet (same v0, seeds, "
                                         "robot time and updates); defaults are the full configuration")
    c.add_argument("--quick", action="store_true", help="a small configuration (~20 min); explicit flags still win")
    c.add_argument("--algos", default=None, help="comma list (default: lwd,bc,iql_awr,lwd_no_divl,lwd_no_qam,"
                                                  "pretrain_more)")
    c.add_argument("--rounds", type=int, default=None)
    c.add_argument("--episodes", type=int, default=None, help="fleet episodes per round")
    c.add_argument("--updates", type=int, default=None, help="learner updates per round")
    c.add_argument("--offline-updates", type=int, default=None)
    c.add_argument("--eval-episodes", type=int, default=None, help="held-out episodes per task per version")
    c.add_argument("--tasks", default=None)
    c.add_argument("--gate", default=None, choices=["sim", "none"])
    c.add_argument("--gate-episodes", type=int, default=None)
    c.add_argument("--variation", type=float, default=None,
                   help="item pose spread of fleet and evaluation scenes (default 1.0 = deployment)")
    c.add_argument("--demos", type=int, default=None, help="demos per task when pretraining v0")
    c.add_argument("--pretrain-steps", type=int, default=None)
    c.add_argument("--workers", type=int, default=None,
                   help="parallel worker processes (one algorithm each; with one algorithm, its rollouts)")
    c.add_argument("--seed", type=int, default=None)
    c.add_argument("--pretrained", default=None, help="store holding v0 and its demos (default: pretrain one)")
    c.add_argument("--out", default=None, help="working directory (default runs/bench)")
    c.add_argument("--results", default=None, help="where the JSON, plot and table go (default <out>/results)")
    c.add_argument("--fresh", action="store_true",
                   help="ignore an earlier run's results in --out (by default it resumes, and a larger --rounds "
                        "extends it)")
    c.add_argument("--images", action=argparse.BooleanOptionalAction, default=None,
                   help="every algorithm trains the whole VLA on images, encoder included (critics stay on features; "
                        "the default); --no-images: action experts on frozen features only")
    c.add_argument("--critic-features", default=None, choices=["frozen", "reference"],
                   help="with --images: lwd's critics read the starting VLA's features or the round's reference VLA's")
    c.add_argument("--takeover-terminal", action=argparse.BooleanOptionalAction, default=None,
                   help="critic reward: a policy chunk running into a takeover ends with reward 0 (autonomous success; "
                        "the default); --no-takeover-terminal: the paper's episode success")
    c.add_argument("--subgoal-credit", action=argparse.BooleanOptionalAction, default=None,
                   help="filtered BC data judged per subgoal segment: a policy segment that placed an item is cloned "
                        "even if a later one needed the operator or the episode failed")
    c.add_argument("--image-lr", type=float, default=None,
                   help="peak learning rate of each round's whole-VLA schedule (default: the algorithms', 1e-3)")
    c.add_argument("--fleet-fraction", type=float, default=None,
                   help="share of every training batch drawn from fleet steps (default 0: all steps alike)")
    c.add_argument("--select", type=int, default=None,
                   help="value-guided selection: versions that publish a critic (lwd and variants) act by the best of "
                        "N candidate chunks, in the fleet and in evaluation (default 1: off)")
    c.add_argument("--misaligned-s", type=float, default=None,
                   help="the scripted operator also takes over when a tool has been low beside the free item, not "
                        "around it, this many seconds (0: off)")
    c.set_defaults(fn=_cmd_bench)
    c = what.add_parser("chunking", help="chunk execution modes under injected inference delay (in-process)")
    c.add_argument("--store", required=True, help="store holding policies/v<N>")
    c.add_argument("--version", type=int, default=None, help="policy version (default: the latest)")
    c.add_argument("--delays", default="0,100,200,400", help="injected inference delays, ms")
    c.add_argument("--modes", default="replace@receipt,replace,blend,rtc")
    c.add_argument("--tasks", default=curriculum, help="comma list (default: the registry's default curriculum)")
    c.add_argument("--episodes", type=int, default=4, help="episodes per task, mode and delay")
    c.add_argument("--exec-steps", type=int, default=5)
    c.add_argument("--time-limit-scale", type=float, default=1.0)
    c.add_argument("--noise-scale", type=float, default=None, help="policy's initial flow noise (default: the robots')")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--out", default="runs/bench_chunking")
    c.set_defaults(fn=_cmd_bench_chunking)
    c = what.add_parser("systems", help="systems figures: inference, learner update cost, obs->cmd, control rate, "
                                        "hot-swap, recorder drops and write speed, ingest, scaling with fleet size")
    c.add_argument("--store", required=True, help="store holding policies/v<N> and its episodes")
    c.add_argument("--quick", action="store_true",
                   help="every figure at a small size (--ros 2 --scaling 1,2, short windows); explicit flags win")
    c.add_argument("--version", type=int, default=None)
    c.add_argument("--inferences", type=int, default=None, help="timed chunks per inference variant (default 100)")
    c.add_argument("--updates", type=int, default=None, help="timed learner updates per algorithm (default 30)")
    c.add_argument("--algos", default=None, help="default lwd,bc")
    c.add_argument("--ros", default=None, help="fleet sizes for the ROS-graph figures (obs->cmd, control rate, "
                                               "hot-swap, recorder drops), e.g. 2,4,8 (default: none)")
    c.add_argument("--ros-window", type=float, default=None, help="seconds measured idle per --ros fleet (default 10)")
    c.add_argument("--camera-budget-hz", type=float, default=None,
                   help="frames/s all cameras of a fleet may render: per-robot rate min(10, budget/N); 0 = always 10 "
                        "(default 40)")
    c.add_argument("--io-repeats", type=int, default=None, help="passes (best taken) of the recorder-write and "
                                                                 "ingest measurements (default 3)")
    c.add_argument("--scaling", default=None, help="fleet sizes for CPU per robot-second and control-rate ratio, "
                                                   "e.g. 1,2,4,8,16 (default: none)")
    c.add_argument("--scaling-window", type=float, default=None, help="seconds measured per --scaling fleet "
                                                                      "(default 20)")
    c.add_argument("--out", default="bench/results")
    c.set_defaults(fn=_cmd_bench_systems)

    s = sub.add_parser("replay", help="republish a recorded episode, or re-run a policy on its observations")
    s.add_argument("bag")
    s.add_argument("--namespace", default="/replay")
    s.add_argument("--rate", type=float, default=1.0)
    s.add_argument("--wait", type=float, default=5.0, help="seconds to wait for subscribers")
    s.add_argument("--policy", default=None, help="checkpoint dir: report its actions vs the recorded ones")
    s.add_argument("--samples", type=int, default=4)
    s.set_defaults(fn=_cmd_replay)

    s = sub.add_parser("tasks", help="the task registry: list it, or draw docs/tasks.png (start and goal per task)")
    what = s.add_subparsers(dest="what", required=True, metavar="{list,sheet,probe}")
    lst = what.add_parser("list", help="registered tasks and whether they are in the default curriculum")
    lst.add_argument("--speed", action="store_true",
                     help="also measure in-process sim steps/s per task (expert episodes, physics only; target 10x)")
    c = what.add_parser("sheet", help="contact sheet of each task's start and goal state from the policy's camera")
    c.add_argument("--out", default="docs/tasks.png")
    c.add_argument("--seed", type=int, default=0, help="scene seed (the next one if the expert fails on it)")
    c.add_argument("--scale", type=int, default=4, help="nearest-neighbour upscaling of the 64 px images")
    c.add_argument("--tasks", default=None, help="comma list (default: every registered task)")
    c = what.add_parser("probe", help="instruction-following probe per task family: same seed, each target; does "
                                      "the first grasp go for the named item (semantic: category)?")
    c.add_argument("--policy", default=None, help="checkpoint directory (e.g. store/policies/v0); default: the "
                                                   "zero-noise scripted expert (a check of the probe itself)")
    c.add_argument("--tasks", default=None, help="comma list (default: every registered task)")
    c.add_argument("--scenes", type=int, default=5, help="held-out scenes (seeds) per task")
    c.add_argument("--seed-offset", type=int, default=0, help="first scene: EVAL_SEED0 + this")
    c.add_argument("--exec-steps", type=int, default=5, help="actions of each policy chunk executed")
    s.set_defaults(fn=_cmd_tasks)

    s = sub.add_parser("info", help="summarize an experience store")
    s.add_argument("--store", default="lwd_store")
    s.set_defaults(fn=_cmd_info)
    return p


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except (FileExistsError, FileNotFoundError, ValueError) as e:
        print(f"lwd {args.cmd}: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
