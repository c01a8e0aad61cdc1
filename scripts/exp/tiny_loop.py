"""EXP: can one learner round on recorded fleet bags raise held-out success, fast, for a small policy in an easy
setting? (the issue's learning regression test). Pretrains a small v0 on few demos, measures it, records a round of
operator-corrected fleet episodes as bags, runs one Learner round, measures again; prints timings.
Usage: tiny_loop.py OUT [key=value ...]   (keys: see CFG below)"""
import json
import sys
import time
from pathlib import Path

import torch

CFG = dict(demos=6, variation=0.0, steps=1500, image=32, channels=8, hidden=128, cond=128, fleet=30,
           updates=1500, algo="bc", evals=40, seed=0, task="pick_place", images=1, lr=1e-3, defect=0, warmup=0)


def main():
    out = Path(sys.argv[1])
    cfg = dict(CFG)
    for a in sys.argv[2:]:
        k, v = a.split("=")
        cfg[k] = type(CFG[k])(v)
    torch.set_num_threads(1)
    import lwd.rl.pretrain as pre
    from lwd.data.bag import write_steps_bag
    from lwd.data.store import ExperienceStore
    from lwd.policy.inference import VLAPolicy
    from lwd.rl.learner import Learner, LearnerConfig
    from lwd.sim.evaluate import EVAL_SEED0, FLEET_SEED0, evaluate
    from lwd.sim.expert import ScriptedExpert
    from lwd.sim.operator import ScriptedOperator
    from lwd.sim.rollout import run_episode
    from lwd.sim.world import SimWorld

    if cfg["defect"]:  # demos whose gripper targets never close: v0 never grasps, the operator's corrections do
        import numpy as np

        from lwd.sim.world import GRIPPER_OPEN
        orig = pre.rollout_to_steps

        def opened(ro, *a, **k):
            if k.get("source", "demo") == "demo":
                ro.actions = np.array(ro.actions, copy=True)
                ro.actions[:, [6, 13]] = GRIPPER_OPEN
            return orig(ro, *a, **k)
        pre.rollout_to_steps = opened
    t = time.time()
    pre.pretrain(out, pre.PretrainConfig(tasks=(cfg["task"],), demos_per_task=cfg["demos"],
                                         demo_variation=cfg["variation"], steps=cfg["steps"],
                                         image_size=cfg["image"], seed=cfg["seed"], lr=cfg["lr"],
                                         vision_channels=cfg["channels"], hidden=cfg["hidden"],
                                         cond_dim=cfg["cond"]), progress=False)
    t_pre = time.time() - t
    store = ExperienceStore(out)
    store.scan()
    learner = Learner(store, LearnerConfig(algo=cfg["algo"], min_new_episodes=cfg["fleet"],
                                           updates_per_round=cfg["updates"], offline_updates=0, background_updates=0,
                                           gate="none", select_episodes=0, tasks=(cfg["task"],), seed=cfg["seed"],
                                           algo_overrides={"images": bool(cfg["images"]),
                                                           "image_warmup": cfg["warmup"]}))
    res = {"cfg": cfg, "pretrain_s": round(t_pre, 1)}
    with SimWorld(image_size=cfg["image"]) as world:
        def ev(tag):
            t = time.time()
            r = evaluate(world, VLAPolicy(learner.deployed_model, 0, seed=0, exec_steps=5), [cfg["task"]],
                         cfg["evals"], variation=cfg["variation"])[cfg["task"]]
            res[tag] = f"{r.successes}/{r.episodes}"
            res[tag + "_s"] = round(time.time() - t, 1)
            print(tag, res[tag], flush=True)

        ev("v0")
        op = ScriptedOperator(world, ScriptedExpert(world, noise=0.0, seed=cfg["seed"]))
        policy = VLAPolicy(learner.deployed_model, 0, seed=1, exec_steps=5)
        t = time.time()
        ok = iv = 0
        for i in range(cfg["fleet"]):
            ro = run_episode(world, cfg["task"], FLEET_SEED0 + i, actor=policy, operator=op,
                             variation=cfg["variation"])
            ok += bool(ro.success)
            iv += ro.interventions
            eid = f"fleet-{i:03d}"
            write_steps_bag(store.episode_path("fleet", eid),
                            pre.rollout_to_steps(ro, "fleet", eid, time.time_ns(), source="fleet", version=0))
        res["fleet_s"] = round(time.time() - t, 1)
        res["fleet_success_with_op"] = f"{ok}/{cfg['fleet']}"
        res["interventions"] = iv
        t = time.time()
        learner.poll()
        res["learn_s"] = round(time.time() - t, 1)
        ev("v1")
    assert EVAL_SEED0 != FLEET_SEED0
    print(json.dumps(res), flush=True)


if __name__ == "__main__":
    main()
