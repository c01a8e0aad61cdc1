"""Value-guided chunk selection at deployment: the published critic scores candidate chunks of the published VLA.

IDQL (Hansen-Estruch et al., 2023) extracts a policy from an implicit critic by sampling actions from the behaviour
diffusion policy and letting the critic choose; here the behaviour flow is the published VLA and the critic the
learner's DIVL (or IQL), which reads the VLA's own features (``FleetRLConfig.critic_features = "reference"``: the
critic is refit on the reference VLA's encoder, which the published policy keeps). The choice stays within the flow's
support, where the critic was trained, unlike QAM's gradient tilt (docs/learning.md rows 30-34, 49).

A version that carries such a critic names it in its manifest (``"scorer"``: kind and config) and keeps its tensors
under ``critic.`` in ``learner.safetensors``; :func:`load_scorer` rebuilds it, :func:`attach_scorer` hands it to a
:class:`~lwd.policy.inference.VLAPolicy`.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from functools import lru_cache
from pathlib import Path

import torch
from safetensors import safe_open

from lwd.policy.checkpoint import LEARNER_FILE, MANIFEST_FILE, CheckpointError
from lwd.policy.inference import VLAPolicy
from lwd.rl.divl import DIVL, DIVLConfig, ImplicitCritic
from lwd.rl.iql import IQL, IQLConfig

__all__ = ["CriticScorer", "scorer_spec", "load_scorer", "attach_scorer"]

_KINDS = {"divl": (DIVL, DIVLConfig), "iql": (IQL, IQLConfig)}


class CriticScorer:
    """``score(cond, chunks)`` = the critic's pessimistic Q (ensemble mean - rho * std), as QAM's actor reads it."""

    def __init__(self, critic: ImplicitCritic) -> None:
        self.critic = critic.eval()

    @torch.no_grad()
    def __call__(self, cond: torch.Tensor, chunks: torch.Tensor) -> torch.Tensor:
        return self.critic.q_pessimistic(cond, chunks)


def scorer_spec(kind: str, critic: ImplicitCritic) -> dict:
    """The manifest entry that lets :func:`load_scorer` rebuild ``critic`` (saved under ``critic.``)."""
    if kind not in _KINDS:
        raise ValueError(f"unknown critic kind {kind!r}")
    return {"kind": kind, "obs_dim": critic.obs_dim, "act_dim": critic.act_dim, "config": asdict(critic.cfg)}


def load_scorer(path: Path) -> CriticScorer | None:
    """The critic a checkpoint directory publishes for its own features, or None if it has none.

    Raises CheckpointError when the manifest names one that cannot be rebuilt (missing or mismatched tensors).
    Cached per directory and file stamps: the bench builds a policy per episode, and versions are immutable."""
    path = Path(path)
    stamps = tuple((f.stat().st_mtime_ns, f.stat().st_size) if f.exists() else None
                   for f in (path / MANIFEST_FILE, path / LEARNER_FILE))
    return _load_scorer(str(path), stamps)


@lru_cache(maxsize=8)
def _load_scorer(path_str: str, _stamps: tuple) -> CriticScorer | None:
    path = Path(path_str)
    try:
        spec = json.loads((path / MANIFEST_FILE).read_text()).get("scorer")
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{path}: unreadable manifest: {e}", "bad_manifest") from None
    if not spec:
        return None
    try:
        cls, conf = _KINDS[spec["kind"]]
        c = dict(spec["config"])
        c["hidden"] = tuple(c.get("hidden", ()))
        critic = cls(int(spec["obs_dim"]), int(spec["act_dim"]), conf(**c))
        with safe_open(str(path / LEARNER_FILE), framework="pt") as f:  # the critic only, not the reference VLA
            state = {k[len("critic."):]: f.get_tensor(k) for k in f.keys() if k.startswith("critic.")}
        critic.load_state_dict(state)
    except Exception as e:  # noqa: BLE001 - safetensors raises several types on corrupt files
        raise CheckpointError(f"{path}: its critic (manifest 'scorer') cannot be loaded: {e}", "bad_scorer") from None
    return CriticScorer(critic)


def attach_scorer(policy: VLAPolicy, path: Path, candidates: int) -> bool:
    """Give ``policy`` the critic of checkpoint ``path`` and ``candidates`` per re-plan; False (policy unchanged)
    when ``candidates`` <= 1 or the version publishes no critic (bc, pretrain_more, v0)."""
    if candidates <= 1:
        return False
    scorer = load_scorer(path)
    if scorer is None:
        return False
    if scorer.critic.obs_dim != policy.cfg.cond_dim or scorer.critic.act_dim != policy.cfg.action_dim:
        raise CheckpointError(f"{path}: critic dims ({scorer.critic.obs_dim}, {scorer.critic.act_dim}) do not fit the "
                              f"policy ({policy.cfg.cond_dim}, {policy.cfg.action_dim})", "bad_scorer")
    policy.scorer, policy.candidates = scorer, candidates
    return True
