"""EXP: how well v0 predicts the demos' chunks along the demos (R^2 of the 10th action), with its own image or
another episode's (--swap): does the policy use the image?  Usage: image_reliance.py STORE [--swap]"""
import sys
from pathlib import Path

import numpy as np
import torch

from lwd.data.store import ExperienceStore
from lwd.policy.checkpoint import load_checkpoint
from lwd.policy.model import denormalize_chunk, tokenize

torch.set_num_threads(1)
root = Path(sys.argv[1])
swap = len(sys.argv) > 2 and sys.argv[2] == "--swap"  # feed another episode's image at the same step
store = ExperienceStore(root)
model = load_checkpoint(root / "policies/v0").model.eval()
cfg = model.cfg; scale = np.array(cfg.action_scale)
eps = [store.load(r) for r in store.episodes(source="demo")]
eps = [e for e in eps if e.success and e.meta.task == "pick_place"]
def image(e, t):
    if not swap:
        return e.images[t]
    o = eps[(next(i for i, x in enumerate(eps) if x is e) + 7) % len(eps)]
    return o.images[min(t, len(o.images) - 1)]


for t in (0, 5, 10, 15, 20):
    P, D = [], []
    for e in eps:
        if len(e.actions) < t + 10: continue
        tok = torch.from_numpy(tokenize(e.meta.instruction, cfg.vocab_size, cfg.max_tokens))[None]
        with torch.no_grad():
            cond = model.encode(torch.from_numpy(image(e, t))[None], torch.from_numpy(e.qpos[t])[None], tok)
            x = model.sample(cond, noise=torch.zeros(1, cfg.action_dim)).numpy()
        pred = denormalize_chunk(x, e.qpos[t][None].astype(np.float64), scale, 14)[0]
        P.append(pred[9] - e.qpos[t]); D.append(e.actions[t + 9] - e.qpos[t])
    P, D = np.array(P), np.array(D)
    arm = list(range(6)) + list(range(7, 13))
    ss_res = ((P - D)[:, arm] ** 2).sum(0); ss_tot = ((D - D.mean(0))[:, arm] ** 2).sum(0)
    r2 = 1 - ss_res.sum() / ss_tot.sum()
    print(f"t={t:2d}: n={len(P)} demo delta std {D[:, arm].std(0).mean():.3f} rad, pred err {np.abs(P - D)[:, arm].mean():.3f}, R2 {r2:.2f}")
