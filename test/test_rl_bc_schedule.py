"""The whole-VLA learner's per-round learning-rate schedule: cosine to a tenth, optional linear warm-up, then hold."""

from __future__ import annotations

import math

import pytest


def _lrs(warmup: int, steps: int, n: int) -> list[float]:
    import torch

    from lwd.rl.bc import BCConfig, ImageBC

    bc = ImageBC(torch.nn.Linear(2, 2), BCConfig(lr=1e-3, image_warmup=warmup))
    bc.begin_schedule(steps)
    out = []
    for _ in range(n):
        out.append(bc.opt.param_groups[0]["lr"])
        bc.opt.step()
        if bc.sched is not None and bc._sched_left > 0:  # as ImageBC.update steps it
            bc.sched.step()
            bc._sched_left -= 1
    return out


def test_cosine_to_a_tenth_then_hold():
    lr = _lrs(0, 10, 14)
    assert lr[0] == pytest.approx(1e-3) and lr[5] == pytest.approx(1e-4 + 0.45e-3 * (1 + math.cos(math.pi / 2)))
    assert lr[10:] == pytest.approx([1e-4] * 4)


def test_warmup_ramps_then_joins_the_cosine():
    warm, cold = _lrs(4, 20, 24), _lrs(0, 20, 24)
    assert warm[:4] == pytest.approx([cold[k] * (k + 1) / 4 for k in range(4)])
    assert warm[4:] == pytest.approx(cold[4:])
    assert warm[0] < warm[1] < warm[2] < warm[3]
