"""EXP: held-out pick_place success of a published image-mode lwd version (tilted expert) vs its untilted reference VLA
(the "ref." tensors of learner.safetensors). Usage: tilt_eval.py POLICY_DIR EPISODES"""
import sys, torch, numpy as np
from pathlib import Path
from safetensors.torch import load_file
from lwd.policy.checkpoint import load_checkpoint
from lwd.policy.inference import VLAPolicy
from lwd.policy.flow import sample_euler
from lwd.sim.evaluate import evaluate
from lwd.sim.world import SimWorld
torch.set_num_threads(1)
d = Path(sys.argv[1]); n = int(sys.argv[2])
ck = load_checkpoint(d)
tilted = ck.model.eval()
ref = load_checkpoint(d).model.eval()
st = load_file(str(d / "learner.safetensors"))
ref.load_state_dict({k[4:]: v for k, v in st.items() if k.startswith("ref.")})
# per-joint shift on some states
with SimWorld() as w:
    for name, m in [("tilted", tilted), ("ref", ref)]:
        r = evaluate(w, VLAPolicy(m, 1, seed=0, exec_steps=5), ["pick_place"], n)
        print(name, r["pick_place"].to_dict(), flush=True)
