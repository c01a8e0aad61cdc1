"""Promotion gates: should the learner publish its candidate?

* :class:`SimGate` — for the simulated fleet: autonomous rollouts of the candidate and of the deployed policy on
  fixed gate seeds (disjoint from training and evaluation seeds); the candidate is published unless the rollouts
  show it worse: rejected only when the deployed one's success rate lies above the upper end of the candidate's 95%
  Wilson interval, plus ``tolerance`` (a fraction of the gate episodes). Rejecting whenever the candidate scored
  lower turned coin flips into lost rounds: 1/10 against 2/10 kept a demo fleet on v0 (docs/learning.md rows 37,
  67). With ``must_show_better`` the deployed one is the default instead: the candidate wins only when the lower end
  of its 95% Wilson interval is above the deployed one's success rate (ties and noise keep the deployed one).
* :class:`AcceptAll` — for real fleets until canary deployments exist: every candidate is published.

A gate's decision is evidence about success, not a critic margin: a critic that is still fitting cannot veto or
wave through a policy.
"""

from __future__ import annotations

from collections.abc import Sequence

from lwd.policy.model import FlowVLA

__all__ = ["Gate", "SimGate", "AcceptAll", "make_gate"]


class Gate:
    name = "gate"

    def decide(self, candidate: FlowVLA, deployed: FlowVLA, deployed_key: str) -> tuple[bool, dict[str, float]]:
        raise NotImplementedError

    def close(self) -> None:  # noqa: B027 - most gates hold nothing
        """Release what the gate holds (a simulator's GL context must go before the interpreter does)."""


class AcceptAll(Gate):
    name = "none"

    def decide(self, candidate, deployed, deployed_key):
        return True, {}


class SimGate(Gate):
    """Rollouts of candidate vs deployed on ``episodes`` gate seeds per task (deployed scores cached per key)."""

    name = "sim"

    def __init__(self, tasks: Sequence[str], episodes: int, tolerance: float = 0.0, exec_steps: int = 5,
                 variation: float = 1.0, seed: int = 0, must_show_better: bool = False) -> None:
        if episodes < 1:
            raise ValueError("gate episodes must be >= 1")
        self.tasks = tuple(tasks)
        self.episodes = int(episodes)
        self.tolerance = float(tolerance)
        self.exec_steps = int(exec_steps)
        self.variation = float(variation)
        self.seed = int(seed)
        self.must_show_better = bool(must_show_better)
        self._cache: dict[str, dict[str, int]] = {}
        self._world = None

    def _score(self, model: FlowVLA) -> dict[str, int]:
        from lwd.policy.inference import VLAPolicy
        from lwd.sim.evaluate import GATE_SEED0, evaluate
        from lwd.sim.world import SimWorld

        if self._world is None:
            self._world = SimWorld(image_size=model.cfg.image_size, cameras=model.cfg.cameras)
        policy = VLAPolicy(model, seed=self.seed, exec_steps=self.exec_steps)
        res = evaluate(self._world, policy, self.tasks, self.episodes, seed0=GATE_SEED0, variation=self.variation)
        return {t: r.successes for t, r in res.items()}

    def decide(self, candidate, deployed, deployed_key):
        if deployed_key not in self._cache:
            self._cache[deployed_key] = self._score(deployed)
        dep = self._cache[deployed_key]
        cand = self._score(candidate)
        n = self.episodes * len(self.tasks)
        c, d = sum(cand.values()), sum(dep.values())
        from lwd.sim.evaluate import wilson

        low, high = wilson(c, n)
        if self.must_show_better:
            accept = low > d / n
        else:
            accept = d / n <= high + self.tolerance + 1e-9  # no evidence that the candidate is worse
        evidence = {"candidate_success": c / n, "deployed_success": d / n, "episodes": float(n)}
        evidence.update({f"candidate/{t}": k / self.episodes for t, k in cand.items()})
        evidence.update({f"deployed/{t}": k / self.episodes for t, k in dep.items()})
        return accept, evidence

    def close(self) -> None:
        if self._world is not None:
            self._world.close()
            self._world = None

    def remember(self, key: str, evidence: dict[str, float]) -> None:
        """After publishing: the candidate's gate score becomes the deployed one's (same seeds, no rerun)."""
        self._cache[key] = {t: round(evidence[f"candidate/{t}"] * self.episodes) for t in self.tasks}


def make_gate(kind: str, tasks: Sequence[str], episodes: int, tolerance: float, exec_steps: int, seed: int) -> Gate:
    if kind == "sim":
        return SimGate(tasks, episodes, tolerance, exec_steps, seed=seed)
    if kind == "none":
        return AcceptAll()
    raise ValueError(f"unknown gate {kind!r}; choose 'sim' or 'none'")
