"""Learning regression: one learner round on recorded, operator-corrected fleet bags fixes a planted defect.

v0 (a small VLA) is pretrained on demos whose gripper never closes, so it never grasps; the fleet's operator
corrections close it. The round must lift held-out autonomous success so that the 95% Wilson intervals of v0 and
v1 do not overlap. Held for learner seeds 0-4 before it was kept, and again once the learner's random streams were
keyed by round (docs/learning.md row 47 and section 4); ~3 min on 2 cores.
"""

from __future__ import annotations

from lwd.app.learning_check import CheckConfig, run_check
from lwd.sim.evaluate import wilson


def test_one_learner_round_on_fleet_bags_fixes_the_planted_defect(tmp_path):
    cfg = CheckConfig()
    res = run_check(tmp_path / "store", cfg)
    n = cfg.eval_episodes
    assert res["published"] == 1, "the learner round did not publish v1"
    # The fleet's episodes went through bags and the store, and carry the operator's corrections.
    assert res["interventions"] > 0
    v0_hi = wilson(res["v0"], n)[1]
    v1_lo = wilson(res["v1"], n)[0]
    assert v1_lo > v0_hi, f"v0 {res['v0']}/{n} -> v1 {res['v1']}/{n}: no rise beyond noise ({res})"
