"""The fleet learner, ROS-free: ingest new episodes from the store, update, gate, publish ``v<N+1>``.

The ROS learner node only calls :meth:`Learner.poll` and announces what it returns; ``lwd`` CLI tools and tests
drive the same object directly.
"""

from __future__ import annotations

import csv
import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from lwd.data.store import ExperienceStore
from lwd.policy.checkpoint import latest_version, load_checkpoint, save_checkpoint, version_dir
from lwd.policy.model import FlowVLA
from lwd.rl.algorithms import ALGORITHMS, make_algorithm
from lwd.rl.dataset import ChunkBuffer

log = logging.getLogger("lwd.learner")

__all__ = ["LearnerConfig", "Learner"]


@dataclass
class LearnerConfig:
    algo: str = "lwd"
    """Update rule: lwd (DIVL + QAM), bc, iql_awr, lwd_no_divl, lwd_no_qam."""
    min_new_episodes: int = 2
    """Fleet episodes to wait for before an update round."""
    updates_per_round: int = 300
    """Gradient steps per update round."""
    offline_updates: int = 0
    """Gradient steps of the offline phase on the demonstrations (critic + actor) before the first round."""
    background_updates: int = 0
    """Gradient steps per poll while waiting for fleet episodes (learning while deploying: the candidate keeps
    improving on all data gathered so far instead of idling while the robots work). 0 = idle between rounds."""
    batch_size: int = 64
    gamma: float = 0.99
    """Per-step discount; a chunk of H steps is discounted by gamma ** H."""
    seed: int = 0
    threads: int = 1
    """torch CPU threads for the learner process."""
    algo_overrides: dict = field(default_factory=dict)
    """Algorithm hyper-parameters (field name -> value) for the chosen algo's config dataclass."""

    def __post_init__(self) -> None:
        if self.algo not in ALGORITHMS:
            raise ValueError(f"unknown algo {self.algo!r}; choose from {sorted(ALGORITHMS)}")
        if self.min_new_episodes < 1 or self.updates_per_round < 1 or self.batch_size < 1:
            raise ValueError("min_new_episodes, updates_per_round and batch_size must be >= 1")
        if self.offline_updates < 0 or self.background_updates < 0:
            raise ValueError("offline_updates and background_updates must be >= 0")


class Learner:
    def __init__(self, store: ExperienceStore | Path | str, cfg: LearnerConfig) -> None:
        self.store = store if isinstance(store, ExperienceStore) else ExperienceStore(Path(store))
        self.cfg = cfg
        self.policies = self.store.root / "policies"
        torch.set_num_threads(cfg.threads)
        torch.manual_seed(cfg.seed)
        self.rng = np.random.default_rng(cfg.seed)
        v = latest_version(self.policies)
        if v is None:
            raise FileNotFoundError(f"no policy in {self.policies}: run `lwd pretrain` first")
        ckpt = load_checkpoint(version_dir(self.policies, v))
        self.version = ckpt.version
        self.model: FlowVLA = ckpt.model
        self.buffer = ChunkBuffer(ckpt.config, gamma=cfg.gamma)
        self.algo = make_algorithm(cfg.algo, self.model, cfg.algo_overrides)
        extra = version_dir(self.policies, v) / "learner.safetensors"
        if extra.exists() and ckpt.manifest.get("algo") == cfg.algo and hasattr(self.algo, "load_extra_state"):
            from safetensors.torch import load_file

            self.algo.load_extra_state(load_file(str(extra)))  # resume critic + behaviour flow after a restart
        self.pending_fleet = 0
        self.total_updates = 0
        self.rounds_done = 0
        self.last_accepted: bool | None = None
        self.metrics_dir = self.store.root / "learner"
        self.metrics_dir.mkdir(parents=True, exist_ok=True)
        self._csv_path = self.metrics_dir / "metrics.csv"
        jsonl = self.metrics_dir / "metrics.jsonl"
        if jsonl.exists():  # rounds survive a learner restart (every round ends with one gate row)
            self.rounds_done = sum('"phase": "gate"' in line for line in jsonl.read_text().splitlines())
        self._tb = None
        self._ingest(self.store.episodes())  # everything already in the store is the starting dataset
        self.store.claim_new("learner")
        self._offline_done = cfg.offline_updates == 0
        log.info("learner: algo=%s from v%d, %d steps in buffer", cfg.algo, self.version, len(self.buffer) if self.buffer.num_episodes else 0)

    # -- data ---------------------------------------------------------------------------------------------------
    def _ingest(self, records) -> int:
        fleet = 0
        for rec in records:
            try:
                steps = self.store.load(rec)
            except Exception as e:  # noqa: BLE001 - one bad bag must not stop the learner
                log.warning("learner: skipping %s: %s", getattr(rec, "path", rec), e)
                continue
            if len(steps) < 2:
                continue
            self.buffer.add_episode(steps)
            fleet += steps.meta.source == "fleet"
        return fleet

    def ingest_new(self) -> int:
        """Scan the store and add episodes this learner has not seen; returns new fleet episodes."""
        self.store.scan()
        n = self._ingest(self.store.claim_new("learner"))
        self.pending_fleet += n
        return n

    # -- learning -----------------------------------------------------------------------------------------------
    def _train(self, steps: int, phase: str) -> dict[str, float]:
        mask = self.algo.sample_mask(self.buffer)
        agg: dict[str, list[float]] = {}
        t0 = time.perf_counter()
        for _ in range(steps):
            idx = self.buffer.sample_indices(self.cfg.batch_size, self.rng, mask)
            stats = self.algo.update(self.buffer.gather(idx))
            self.total_updates += 1
            for k, v in stats.items():
                agg.setdefault(k, []).append(v)
        dt = time.perf_counter() - t0
        out = {k: float(np.mean(v)) for k, v in agg.items()}
        out["perf/updates_per_s"] = steps / max(dt, 1e-9)
        self._log(phase, out)
        return out

    def poll(self) -> int | None:
        """Ingest; when enough new fleet episodes arrived, run an update round and publish. Returns a new version."""
        self.ingest_new()
        if not self._offline_done:
            self._train(self.cfg.offline_updates, "offline")
            self._offline_done = True
        if self.pending_fleet < self.cfg.min_new_episodes:
            if self.cfg.background_updates > 0:
                self._train(self.cfg.background_updates, "background")
            return None
        return self.update_round()

    def update_round(self) -> int | None:
        episodes = self.pending_fleet
        self.pending_fleet = 0
        stats = self._train(self.cfg.updates_per_round, "online")
        accept, evidence = self.algo.gate(self.buffer, self.rng) if hasattr(self.algo, "gate") else (True, {})
        self._log("gate", {"gate/accepted": float(accept), **{f"gate/{k}": float(v) for k, v in evidence.items()}})
        self.rounds_done += 1
        self.last_accepted = accept
        if not accept:
            # The candidate keeps training on the next round's data; the fleet keeps the deployed version.
            log.info("learner: candidate rejected by the gate: %s", evidence)
            return None
        new = self.version + 1
        save_checkpoint(
            self.policies, self.algo.actor(), new,
            extra={"parent": self.version, "algo": self.cfg.algo, "new_episodes": episodes,
                   "buffer_steps": len(self.buffer), "total_updates": self.total_updates,
                   "stats": stats, "gate": evidence},
            extra_tensors=self.algo.extra_state() or None,
        )
        self.version = new
        if hasattr(self.algo, "on_published"):
            self.algo.on_published()
        log.info("learner: published v%d (%d new episodes, %d steps in buffer)", new, episodes, len(self.buffer))
        return new

    def status(self) -> dict:
        """What the learner node publishes on /fleet/learner/status after every round (accepted or not)."""
        return {"round": self.rounds_done, "version": self.version, "accepted": self.last_accepted,
                "algo": self.cfg.algo, "buffer_steps": len(self.buffer) if self.buffer.num_episodes else 0}

    def announcement(self) -> dict:
        """What the learner node publishes on /fleet/policy."""
        path = version_dir(self.policies, self.version)
        manifest = json.loads((path / "manifest.json").read_text())
        return {"version": self.version, "uri": str(path.resolve()), "sha256": manifest["sha256"], "algo": self.cfg.algo}

    # -- metrics ------------------------------------------------------------------------------------------------
    def _log(self, phase: str, stats: dict[str, float]) -> None:
        row = {"time": time.time(), "phase": phase, "version": self.version, "updates": self.total_updates, **stats}
        with open(self.metrics_dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")
        new_file = not self._csv_path.exists()
        with open(self._csv_path, "a", newline="") as f:
            w = csv.writer(f)
            if new_file:
                w.writerow(["time", "phase", "version", "updates", "key", "value"])
            for k, v in stats.items():
                w.writerow([row["time"], phase, self.version, self.total_updates, k, v])
        try:
            if self._tb is None:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(str(self.metrics_dir / "tb"))
            for k, v in stats.items():
                self._tb.add_scalar(k, v, self.total_updates)
            self._tb.add_scalar("policy/version", self.version, self.total_updates)
            self._tb.flush()
        except ImportError:  # tensorboard is optional on robots
            pass

    def config_dict(self) -> dict:
        return asdict(self.cfg)
