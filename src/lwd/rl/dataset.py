"""Fleet episodes -> chunk-level samples for learning.

Chunk MDP: the state is the observation at a chunk's first step, the action the next H executed targets
(normalized relative to the joints at chunk start), the reward 1 when a successful episode ends inside the chunk,
the discount ``gamma ** H`` per chunk. Episodes are kept as flat per-step arrays; a chunk is gathered on demand,
so every step can start a chunk without copying images H times.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from lwd.data.schema import SOURCE_EXPERT, SOURCE_POLICY, SOURCE_TELEOP, select_views
from lwd.policy.model import PolicyConfig, normalize_chunk, tokenize

__all__ = ["SOURCE_POLICY", "SOURCE_TELEOP", "SOURCE_EXPERT", "ChunkBuffer", "Batch", "FeatureBatch",
           "fit_action_scale"]


@dataclass
class Batch:
    image: torch.Tensor  # [B, S, S, 3] uint8
    qpos: torch.Tensor  # [B, J]
    tokens: torch.Tensor  # [B, L]
    act: torch.Tensor  # [B, H*J] normalized chunk
    rew: torch.Tensor  # [B]
    done: torch.Tensor  # [B]
    discount: torch.Tensor  # [B]
    next_image: torch.Tensor
    next_qpos: torch.Tensor
    next_tokens: torch.Tensor
    source: torch.Tensor  # [B] source of the chunk's first step
    intervention: torch.Tensor  # [B] 1 if any step of the chunk came from the operator
    episode_success: torch.Tensor  # [B]

    def to(self, device: torch.device | str) -> Batch:
        """The same batch on ``device`` (a no-op on the CPU)."""
        return Batch(**{f: getattr(self, f).to(device, non_blocking=True) for f in self.__dataclass_fields__})


@dataclass
class FeatureBatch:
    """A batch of chunk transitions on cached encoder features (what the learner's heads train on)."""

    obs: torch.Tensor  # [B, D] features of the chunk's first observation
    act: torch.Tensor  # [B, H*J] normalized chunk
    rew: torch.Tensor  # [B]
    done: torch.Tensor  # [B]
    discount: torch.Tensor  # [B]
    next_obs: torch.Tensor  # [B, D]
    source: torch.Tensor  # [B]
    intervention: torch.Tensor  # [B]
    episode_success: torch.Tensor  # [B]


class ChunkBuffer:
    """Per-step arrays of many episodes plus the bookkeeping to cut chunks out of them."""

    def __init__(self, cfg: PolicyConfig, gamma: float = 0.99, takeover_terminal: bool = False,
                 subgoal_credit: bool = False) -> None:
        """``takeover_terminal``: a policy chunk that runs into an operator takeover ends its episode with reward 0
        (the RLIF reading of an intervention: the policy failed there), so Q and V estimate *autonomous* success;
        off, a success reached with the operator's help rewards the policy's chunks before it alike.

        ``subgoal_credit``: for :meth:`filtered_bc_mask`, an episode is cut at its ``subgoal`` events (an item
        placed); a policy segment that achieved a subgoal is kept even if the episode failed later, and a takeover
        overrules only the policy steps of its own segment. Off: only successful episodes count, and a takeover
        overrules every policy step before it (on restock3 that dropped 96% of the fleet's policy steps)."""
        self.cfg = cfg
        self.gamma = gamma
        self.takeover_terminal = takeover_terminal
        self.subgoal_credit = subgoal_credit
        self._parts: list[dict[str, np.ndarray]] = []
        self._dirty = True
        self.num_episodes = 0
        self.episode_ids: list[str] = []
        self._feat: np.ndarray | None = None  # cached encoder features of the first len(_feat) steps
        self._masks: dict[str, np.ndarray] = {}
        self.fleet_fraction = 0.0
        """Share of each sampled batch drawn from fleet steps (policy and operator) when the eligible steps hold
        both fleet and demonstration steps; 0 = every eligible step equally likely."""

    def add_episode(self, steps, episode_id: str | None = None) -> int:
        """Add an :class:`lwd.data.schema.EpisodeSteps`-like object; returns the number of steps added."""
        t = len(steps.actions)
        if t == 0:
            return 0
        images = np.asarray(steps.images, dtype=np.uint8)
        have = getattr(steps, "cameras", ("overview",))
        if images.shape[1] > 0:
            images = select_views(images, have, self.cfg.cameras)  # a bag may hold cameras the policy does not use
        if images.shape[1:] != self.cfg.image_shape:
            raise ValueError(f"episode images {images.shape[1:]} do not match the policy's {self.cfg.image_shape} "
                             f"(image size {self.cfg.image_size}, cameras {list(self.cfg.cameras)})")
        tokens = tokenize(steps.meta.instruction, self.cfg.vocab_size, self.cfg.max_tokens)
        source = np.asarray(steps.source)
        overruled, credited = self._credit(steps, source)
        self._parts.append({
            "image": images,
            "qpos": np.asarray(steps.qpos, dtype=np.float32),
            "action": np.asarray(steps.actions, dtype=np.float32),
            "source": np.asarray(steps.source, dtype=np.int8),
            "tokens": np.repeat(tokens[None], t, axis=0),
            "episode": np.full(t, self.num_episodes, dtype=np.int32),
            "success": np.full(t, bool(steps.success)),
            "overruled": overruled,
            "credited": credited,
        })
        self.num_episodes += 1
        self.episode_ids.append(episode_id or getattr(steps.meta, "episode_id", str(self.num_episodes)))
        self._dirty = True
        return t

    def _credit(self, steps, source: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per step: ``overruled`` (a policy step with a takeover later in its segment) and ``credited`` (its
        segment ends in an achieved subgoal, or is the last segment of a successful episode). Without
        ``subgoal_credit`` the whole episode is one segment."""
        t = len(source)
        bounds = np.zeros(0, dtype=np.int64)
        sub_ns = getattr(steps.meta, "subgoal_ns", None) or []
        t_ns = getattr(steps, "t_ns", None)
        if self.subgoal_credit and sub_ns and t_ns is not None and len(t_ns) == t:
            bounds = np.searchsorted(np.asarray(t_ns), np.asarray(sub_ns, dtype=np.int64), side="left")
        seg = np.searchsorted(bounds, np.arange(t), side="right")  # segment k ends at bounds[k] (exclusive)
        seg_end = np.append(bounds, t)[seg]
        tel_from = np.append(np.flip(np.cumsum(np.flip(source == SOURCE_TELEOP))), 0)  # teleop steps at >= i
        overruled = (source == SOURCE_POLICY) & (tel_from[:t] - tel_from[seg_end] > 0)
        credited = (seg < len(bounds)) | bool(steps.success)
        return overruled, credited

    def _build(self) -> None:
        if not self._dirty:
            return
        if not self._parts:
            raise ValueError("ChunkBuffer is empty")
        cat = {k: np.concatenate([p[k] for p in self._parts]) for k in self._parts[0]}
        self.__dict__.update({f"_{k}": v for k, v in cat.items()})
        self._parts = [cat]
        ep = cat["episode"]
        n = len(ep)
        starts = np.r_[0, np.flatnonzero(np.diff(ep)) + 1]
        ends = np.r_[starts[1:], n]
        lengths = ends - starts
        self._ep_end = np.repeat(ends, lengths)  # exclusive end of each step's episode
        self._dirty = False

    def __len__(self) -> int:
        self._build()
        return len(self._episode)

    @property
    def source(self) -> np.ndarray:
        self._build()
        return self._source

    @property
    def success(self) -> np.ndarray:
        self._build()
        return self._success

    @property
    def episode(self) -> np.ndarray:
        self._build()
        return self._episode

    def cached_mask(self, key: str, fn) -> np.ndarray:
        """``fn(self)`` (a per-step boolean mask), recomputed only when steps were added."""
        self._build()
        hit = self._masks.get(key)
        if hit is None or len(hit) != len(self._episode):
            hit = self._masks[key] = np.asarray(fn(self), dtype=bool)
        return hit

    def num_encoded(self) -> int:
        return 0 if self._feat is None else len(self._feat)

    @torch.no_grad()
    def encode_features(self, encode, batch_size: int = 256, refresh: bool = False) -> int:
        """Cache ``encode(image, qpos, tokens) -> [B, D]`` for every step not cached yet (all steps if ``refresh``).

        Steps are only ever appended, so the cache stays aligned with the flat step arrays. Returns steps encoded.
        """
        self._build()
        start = 0 if refresh else self.num_encoded()
        n = len(self._episode)
        if start >= n:
            return 0
        out = []
        for i in range(start, n, batch_size):
            j = min(n, i + batch_size)
            f = encode(torch.from_numpy(self._image[i:j]), torch.from_numpy(self._qpos[i:j]),
                       torch.from_numpy(self._tokens[i:j]))
            out.append(f.float().numpy())
        new = np.concatenate(out)
        self._feat = new if start == 0 or self._feat is None else np.concatenate([self._feat, new])
        return n - start

    def features(self, idx: np.ndarray) -> torch.Tensor:
        if self._feat is None or int(np.max(idx)) >= len(self._feat):
            raise RuntimeError("features requested for steps that are not encoded: call encode_features() first")
        return torch.from_numpy(self._feat[idx])

    def _chunks(self, idx: np.ndarray) -> dict[str, torch.Tensor | np.ndarray]:
        """The chunk MDP at global step indices ``idx``: normalized chunk, reward, done, next index, intervention."""
        self._build()
        h = self.cfg.horizon
        end = self._ep_end[idx]
        chunk_idx = np.minimum(idx[:, None] + np.arange(h)[None], end[:, None] - 1)  # past the end: hold the last
        x = normalize_chunk(self._action[chunk_idx], self._qpos[idx], np.asarray(self.cfg.action_scale, np.float32))
        nxt = idx + h
        ends = nxt >= end
        interv = (self._source[chunk_idx] == SOURCE_TELEOP).any(axis=1)
        takeover = (self._source[idx] == SOURCE_POLICY) & interv if self.takeover_terminal else np.zeros_like(ends)
        done = ends | takeover
        tt = torch.from_numpy
        return {
            "act": tt(x), "rew": tt((ends & ~takeover & self._success[idx]).astype(np.float32)),
            "done": tt(done.astype(np.float32)), "next_idx": np.where(ends, end - 1, nxt),
            "discount": torch.full((len(idx),), self.gamma**h, dtype=torch.float32),
            "source": tt(self._source[idx].astype(np.int64)), "intervention": tt(interv.astype(np.float32)),
            "episode_success": tt(self._success[idx].astype(np.float32)),
        }

    def gather_features(self, idx: np.ndarray) -> FeatureBatch:
        """Chunks starting at ``idx`` on cached features (see :meth:`gather` for the chunk MDP)."""
        c = self._chunks(idx)
        nxt = c.pop("next_idx")
        return FeatureBatch(obs=self.features(idx), next_obs=self.features(nxt), **c)

    def filtered_bc_mask(self) -> np.ndarray:
        """HG-DAgger-style data: operator corrections, plus the steps of successful episodes that no later takeover
        overruled (a policy segment that ended in a takeover is what the operator judged wrong, even if the episode
        then succeeded under the operator's correction); with ``subgoal_credit``, judged per subgoal segment."""
        self._build()
        return (self._source == SOURCE_TELEOP) | (self._credited & ~self._overruled)

    def sample_indices(self, batch_size: int, rng: np.random.Generator, mask: np.ndarray | None = None) -> np.ndarray:
        self._build()
        pool = np.flatnonzero(mask) if mask is not None else None
        if pool is not None and len(pool) == 0:
            raise ValueError("no steps match the sampling mask")
        if self.fleet_fraction > 0:
            # Without it, a few fleet episodes among hundreds of demos are a small share of every batch.
            demo = (self._source if pool is None else self._source[pool]) == SOURCE_EXPERT
            n_demo = int(demo.sum())
            if 0 < n_demo < len(demo):
                steps = np.arange(len(self._episode)) if pool is None else pool
                k = int(round(batch_size * self.fleet_fraction))
                fleet, demos = steps[~demo], steps[demo]
                return np.concatenate([fleet[rng.integers(0, len(fleet), k)],
                                       demos[rng.integers(0, len(demos), batch_size - k)]])
        if pool is not None:
            return pool[rng.integers(0, len(pool), batch_size)]
        return rng.integers(0, len(self._episode), batch_size)

    def gather(self, idx: np.ndarray, images: torch.Tensor | None = None) -> Batch:
        """Chunks starting at global step indices ``idx``; ``images`` (from :meth:`images_on`) takes the image
        crops from a copy on the training device instead of host memory, where gathering them bounds a GPU step."""
        c = self._chunks(idx)
        nxt = c.pop("next_idx")
        tt = torch.from_numpy
        if images is None:
            image, next_image = tt(self._image[idx]), tt(self._image[nxt])
        else:
            image, next_image = images[tt(idx).to(images.device)], images[tt(nxt).to(images.device)]
        return Batch(image=image, qpos=tt(self._qpos[idx]), tokens=tt(self._tokens[idx]), next_image=next_image,
                     next_qpos=tt(self._qpos[nxt]), next_tokens=tt(self._tokens[nxt]), **c)

    def images_on(self, device: torch.device | str) -> torch.Tensor:
        """Every step's image as one uint8 tensor on ``device`` (for :meth:`gather`)."""
        self._build()
        return torch.from_numpy(self._image).to(device)


def fit_action_scale(episodes: Sequence, horizon: int, floor: float = 0.02, q: float = 99.0) -> np.ndarray:
    """Per-joint scale so that (target - q0) over a chunk maps mostly into [-1, 1]."""
    deltas = []
    for ep in episodes:
        a, qp = np.asarray(ep.actions), np.asarray(ep.qpos)
        t = len(a)
        for k in range(0, t, max(1, horizon // 2)):
            idx = np.minimum(np.arange(k, k + horizon), t - 1)
            deltas.append(np.abs(a[idx] - qp[k]).max(axis=0))
    if not deltas:
        raise ValueError("no episodes to fit the action scale on")
    return np.maximum(np.percentile(np.stack(deltas), q, axis=0), floor).astype(np.float32)

