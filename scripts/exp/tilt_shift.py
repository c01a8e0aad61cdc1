"""EXP: per-joint, per-step |tilted - reference| chunk difference (rad) of an image-mode lwd version on 256 fleet states.
Usage: tilt_shift.py POLICY_DIR"""
import sys, torch, numpy as np
from pathlib import Path
from safetensors.torch import load_file
from lwd.policy.checkpoint import load_checkpoint
from lwd.policy.flow import sample_euler
from lwd.data.store import ExperienceStore
from lwd.rl.dataset import ChunkBuffer
torch.set_num_threads(1)
d = Path(sys.argv[1])
tilted = load_checkpoint(d).model.eval(); ref = load_checkpoint(d).model.eval()
st = load_file(str(d / "learner.safetensors"))
ref.load_state_dict({k[4:]: v for k, v in st.items() if k.startswith("ref.")})
store = ExperienceStore(d.parent.parent)
recs = [r for r in store.episodes(source="fleet")][:20]
buf = ChunkBuffer(ref.cfg)
for r in recs: buf.add_episode(store.load(r))
idx = np.random.default_rng(0).integers(0, len(buf), 256)
b = buf.gather(idx)
mc = ref.cfg
with torch.no_grad():
    c = ref.encode(b.image, b.qpos, b.tokens)
    noise = torch.zeros(len(idx), mc.action_dim)
    ar = sample_euler(ref.expert, c, mc.action_dim, mc.flow_steps, noise=noise)
    at = sample_euler(tilted.expert, c, mc.action_dim, mc.flow_steps, noise=noise)
scale = np.array(mc.action_scale)
diff = ((at - ar).abs().numpy().reshape(-1, mc.horizon, mc.n_joints) * scale).mean(0)
np.set_printoptions(precision=3, suppress=True, linewidth=200)
print("mean |tilted-ref| rad per step x joint:\n", diff)
print("normalized tilted mean abs", at.abs().mean().item(), "ref", ar.abs().mean().item())
print("signed mean per joint (last step):", ((at - ar).numpy().reshape(-1, mc.horizon, mc.n_joints)[:, -1] * scale).mean(0))
