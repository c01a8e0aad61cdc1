"""EXP: does an exponential moving average (EMA) of the learner's weights publish a better policy than the raw
weights? Replays round 1 of a bench algorithm's store (its v0, demos and the round-0 fleet episodes, the bench's
learner settings and seed) while keeping EMA copies of the whole VLA, then writes the raw v1 and each EMA v1 and
evaluates them on the same held-out seeds. The raw v1 should equal the bench's own v1 (same sha256).
Usage: ema_round.py BENCH_STORE OUT DECAYS(comma) [EVAL_EPISODES [SEED0_OFFSET [ALGO [SEED]]]]
(ALGO: bc or pretrain_more, the learners that train the published VLA in place)"""
import json
import shutil
import sys
import time
from pathlib import Path

import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from lwd.policy.checkpoint import load_checkpoint, save_checkpoint
from lwd.policy.inference import VLAPolicy
from lwd.rl.learner import Learner, LearnerConfig
from lwd.sim.evaluate import EVAL_SEED0, evaluate
from lwd.sim.world import SimWorld


def evaluate_all(policies: dict[str, Path], res: dict, path: Path) -> None:
    """Autonomous pick_place success of each policy on the same seeds (``res``: seed0, episodes), per-seed
    outcomes kept for paired comparisons; ``res`` is rewritten to ``path`` after each policy."""
    res["sha256"] = {k: json.loads((p / "manifest.json").read_text())["sha256"] for k, p in policies.items()}
    torch.set_num_threads(1)
    with SimWorld(image_size=load_checkpoint(next(iter(policies.values()))).model.cfg.image_size) as world:
        for k, p in policies.items():
            policy = VLAPolicy(load_checkpoint(p).model.eval(), 0, seed=0, exec_steps=5)
            outcomes: list[int] = []
            r = evaluate(world, policy, ["pick_place"], res["episodes"], seed0=res["seed0"],
                         on_episode=lambda _t, _i, ok, o=outcomes: o.append(int(ok)))["pick_place"].to_dict()
            res[k] = {**r, "outcomes": outcomes}
            print(f"{k}: {r['successes']}/{r['episodes']} = {r['success']:.0%} [{r['ci_low']:.0%}, {r['ci_high']:.0%}]",
                  flush=True)
            path.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    torch.set_num_threads(1)
    src, out = Path(sys.argv[1]), Path(sys.argv[2])
    decays = [float(d) for d in sys.argv[3].split(",")]
    n_eval = int(sys.argv[4]) if len(sys.argv) > 4 else 200
    seed0 = EVAL_SEED0 + (int(sys.argv[5]) if len(sys.argv) > 5 else 100)
    algo = sys.argv[6] if len(sys.argv) > 6 else "bc"
    seed = int(sys.argv[7]) if len(sys.argv) > 7 else 0
    t0 = time.time()
    store = out / "store"
    if store.exists():
        shutil.rmtree(store)
    (store / "policies").mkdir(parents=True)
    shutil.copytree(src / "policies" / "v0", store / "policies" / "v0")
    shutil.copytree(src / "episodes" / "demo", store / "episodes" / "demo")
    if algo not in ("bc", "pretrain_more"):
        raise SystemExit("ALGO: bc or pretrain_more")
    learner = Learner(store, LearnerConfig(
        algo=algo, min_new_episodes=100, updates_per_round=5000, offline_updates=300, background_updates=0,
        gate="none", tasks=("pick_place",), exec_steps=5, seed=seed, takeover_terminal=True,
        algo_overrides={"images": True}))
    learner.poll()  # the offline phase on the demos, as in the bench
    emas = {d: AveragedModel(learner.model, multi_avg_fn=get_ema_multi_avg_fn(d), use_buffers=True) for d in decays}
    update = learner.algo.update

    def update_and_average(buffer, rng):
        stats = update(buffer, rng)
        for e in emas.values():
            e.update_parameters(learner.model)
        return stats

    learner.algo.update = update_and_average
    (store / "episodes" / "bench").mkdir(parents=True)
    for ep in sorted((src / "episodes" / "bench").glob("bench-r0-*")):
        shutil.copytree(ep, store / "episodes" / "bench" / ep.name)
    v = learner.poll()
    print(f"published raw v{v} at {time.time() - t0:.0f} s", flush=True)
    policies = {"raw": store / "policies" / f"v{v}"}
    for d, e in emas.items():
        m = load_checkpoint(policies["raw"]).model
        m.load_state_dict(e.module.state_dict())
        policies[f"ema{d}"] = save_checkpoint(out / f"ema{d}", m.eval(), 1, extra={"ema_decay": d})
    res = {"store": str(src), "algo": algo, "seed": seed, "seed0": seed0, "episodes": n_eval}
    evaluate_all(policies, res, out / "result.json")
