"""EXP: does QAM tilt this VLA's x1-output expert toward a known Q? Q(s,a) = -|a - (a_ref(s) + d)|^2, d = +0.3 on joint 0.
Usage: qam_x1_check.py [mission|next] [LR]   (reads runs/bench/pretrained)"""
import copy, sys, torch, numpy as np
from pathlib import Path
from lwd.policy.checkpoint import load_checkpoint
from lwd.policy.flow import sample_euler
from lwd.data.store import ExperienceStore
from lwd.rl.dataset import ChunkBuffer
from lwd.rl.qam import QAM, QAMConfig
torch.set_num_threads(1); torch.manual_seed(0)
scheme = sys.argv[1] if len(sys.argv) > 1 else "mission"; lr = float(sys.argv[2]) if len(sys.argv) > 2 else 1e-4
m = load_checkpoint(Path("runs/bench/pretrained/policies/v0")).model.eval()
store = ExperienceStore(Path("runs/bench/pretrained"))
buf = ChunkBuffer(m.cfg)
for r in store.episodes(source="demo")[:10]: buf.add_episode(store.load(r))
idx = np.random.default_rng(0).integers(0, len(buf), 32)
b = buf.gather(idx)
mc = m.cfg; A = mc.action_dim
with torch.no_grad():
    obs = m.encode(b.image, b.qpos, b.tokens)
    a_ref = sample_euler(m.expert, obs, A, mc.flow_steps, noise=torch.zeros(32, A))
d = torch.zeros(mc.horizon, mc.n_joints); d[:, 0] = 0.3; d = d.reshape(-1)
target = (a_ref + d).clamp(-1, 1)
q_fn = lambda o, a: -((a - target) ** 2).sum(-1)
base = m.expert; actor = copy.deepcopy(m.expert).train()
qam = QAM(base, actor, q_fn, QAMConfig(beta=10.0, steps=10, lr=lr, bc_weight=0.0, adjoint_scheme=scheme), act_dim=A)
def report(tag):
    with torch.no_grad():
        a = sample_euler(actor, obs, A, mc.flow_steps, noise=torch.zeros(32, A))
    j0 = (a - a_ref).reshape(32, mc.horizon, mc.n_joints)[..., 0].mean().item()
    other = (a - a_ref).reshape(32, mc.horizon, mc.n_joints)[..., 1:].abs().mean().item()
    print(f"{tag}: Q {q_fn(obs, a).mean():.3f} (ref {q_fn(obs, a_ref).mean():.3f}); joint0 shift {j0:+.3f} (want +0.3), other |shift| {other:.3f}", flush=True)
report("start")
for i in range(1, 301):
    st = qam.update(obs, b.act)
    if i % 100 == 0: report(f"step {i} adj_loss {st['adj_loss']:.2f}")
