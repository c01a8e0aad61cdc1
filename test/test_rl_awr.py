"""Advantage-weighted flow matching: weight clipping, and the extracted policy moves toward high-advantage modes."""

from __future__ import annotations

import math

import pytest
import torch

from lwd.rl.awr import AWR, AWRConfig, awr_weights
from lwd.rl.nets import VelocityMLP


class AdvantageIsAction:
    """Stub critic: A(s, a) = a[0] (right mode better)."""

    def advantage(self, obs, act):
        return act[:, 0]


def test_awr_weights_clip():
    w = awr_weights(torch.tensor([-1.0, 0.0, 1.0, 100.0]), beta=2.0, max_weight=5.0)
    assert w[0].item() == pytest.approx(math.exp(-2.0))
    assert w[1].item() == pytest.approx(1.0)
    assert w[2].item() == pytest.approx(5.0) and w[3].item() == pytest.approx(5.0)
    assert torch.isfinite(w).all()


def test_awr_flow_extraction_prefers_high_advantage_mode():
    torch.set_num_threads(1)
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    field = VelocityMLP(0, 1, (32, 32))
    awr = AWR(field, AdvantageIsAction(), AWRConfig(beta=1.0, max_weight=20.0, lr=3e-3), act_dim=1)
    for _ in range(500):
        m = torch.tensor([-1.0, 1.0])[torch.randint(0, 2, (256,), generator=g)]
        act = (m + 0.15 * torch.randn(256, generator=g)).unsqueeze(-1)
        stats = awr.update(torch.zeros(256, 0), act)
    assert stats["awr_weight_max"] <= 20.0 + 1e-4
    a = awr.sample(torch.zeros(4000, 0), noise=torch.randn(4000, 1, generator=g))
    right = float((a > 0).float().mean())
    # weights e^{+-1}: exact data-support target mass e/(e + 1/e) = 0.88
    assert right > 0.75, right
