"""The sim gate's decision rules on scripted rollout scores (the rollouts themselves run in the bench tests)."""

import pytest

from lwd.rl.gate import SimGate


def _gate(scores: dict[str, int], **kw) -> SimGate:
    gate = SimGate(["pick_place"], 30, **kw)
    gate._score = lambda model: {"pick_place": scores[model]}  # the "models" here are names of scripted scores
    return gate


@pytest.mark.parametrize("cand,dep,tol,accept", [(7, 5, 0.0, True), (5, 5, 0.0, True), (2, 5, 0.0, True),
                                                 (1, 5, 0.0, True), (0, 5, 0.0, False), (2, 10, 0.0, False),
                                                 (0, 5, 0.06, True), (2, 10, 0.1, False), (2, 10, 0.13, True)])
def test_promotion_rejects_a_candidate_only_when_the_rollouts_show_it_worse(cand, dep, tol, accept):
    """Rejected when the deployed rate (of 30) lies above the candidate's 95% Wilson upper bound (+ tolerance):
    0/30 -> 11.3%, 1/30 -> 16.7%, 2/30 -> 21.3%. Rejecting every lower score kept a demo fleet on v0 after 1/10
    against 2/10 (docs/learning.md row 67)."""
    gate = _gate({"c": cand, "d": dep}, tolerance=tol)
    ok, ev = gate.decide("c", "d", "v1")
    assert ok == accept
    assert ev["candidate_success"] == cand / 30 and ev["deployed_success"] == dep / 30 and ev["episodes"] == 30


@pytest.mark.parametrize("cand,dep,accept", [(5, 5, False), (7, 5, False), (5, 3, False), (8, 5, False),
                                             (10, 5, True), (20, 0, True), (0, 0, False)])
def test_must_show_better_keeps_the_deployed_one_unless_the_candidate_is_clearly_better(cand, dep, accept):
    # 7 vs 5 and 5 vs 3 of 30 kept two tilts that then scored -14 and +8 points on held-out seeds (learning.md row 53)
    ok, _ = _gate({"c": cand, "d": dep}, must_show_better=True).decide("c", "d", "v1")
    assert ok == accept


def test_the_deployed_score_is_cached_per_key_and_replaced_on_publish():
    calls = []
    gate = _gate({"c": 9, "d": 5})
    score = gate._score
    gate._score = lambda m: calls.append(m) or score(m)
    gate.decide("c", "d", "v1")
    gate.decide("c", "d", "v1")
    assert calls == ["d", "c", "c"]
    ok, ev = gate.decide("c", "d", "v1")
    gate.remember("v2", ev)
    assert gate._cache["v2"] == {"pick_place": 9}
