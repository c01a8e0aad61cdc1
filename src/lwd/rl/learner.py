"""The fleet learner, ROS-free: ingest new episodes from the store, update, gate, publish ``v<N+1>``.

Every stored step is encoded once into a feature cache by a frozen encoder, and critics learn on those features: a
critic update costs milliseconds, so critics get thousands of updates per round. By default the actor side (reference
flow, deployed action expert) learns on the same features, which protects the deployed policy from encoder drift.
Algorithms with ``trains_encoder`` (``images=True``: bc, pretrain_more, lwd and its variants) train the whole VLA on
images instead; their critics keep reading the features of a frozen copy of the VLA the learner started from. The
head alone could not learn this policy, the whole VLA could (docs/learning.md rows 19, 21).

Crash consistency: ``learner/state.json`` (round counter, fleet episodes counted into rounds, current version,
algorithm name) is rewritten atomically after each round together with the checkpoint it describes, and the
algorithm's state (critic, reference flow) is saved beside each published version. A restart at any point resumes
from the newest state without double counting: episodes not yet counted into a round stay pending.

The ROS learner node only calls :meth:`Learner.poll` and announces what it returns; ``lwd`` CLI tools and tests
drive the same object directly.
"""

from __future__ import annotations

import copy
import csv
import json
import logging
import os
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from lwd.data.store import ExperienceStore
from lwd.policy.checkpoint import (
    LEARNER_FILE,
    fallback_report,
    latest_valid_checkpoint,
    latest_version,
    load_checkpoint,
    save_checkpoint,
    version_dir,
)
from lwd.policy.flow import sample_euler
from lwd.policy.model import FlowVLA
from lwd.rl.algorithms import ALGORITHMS, make_algorithm
from lwd.rl.dataset import SOURCE_TELEOP, ChunkBuffer
from lwd.rl.gate import Gate, SimGate, make_gate
from lwd.sim.tasks import default_tasks

log = logging.getLogger("lwd.learner")

__all__ = ["LearnerConfig", "Learner", "roc_auc"]


@dataclass
class LearnerConfig:
    algo: str = "lwd"
    """Update rule: lwd (DIVL + QAM), bc, iql_awr, lwd_no_divl, lwd_no_qam, pretrain_more (control)."""
    min_new_episodes: int = 8
    """Fleet episodes to wait for before an update round."""
    updates_per_round: int = 1500
    """Learner updates per round, counted from the end of the previous round: background updates made while the
    robots work count toward it, so a round closes with only what is left of its budget (no idle barrier)."""
    offline_updates: int = 1000
    """Updates of the offline phase on the demonstrations before the first round (fits the critic)."""
    background_updates: int = 50
    """Updates per poll while waiting for fleet episodes (learning while deploying: the candidate keeps improving on
    all data gathered so far instead of idling while the robots work); they count toward ``updates_per_round``, and
    continue past it (at the schedule's final learning rate) while the robots still work. 0 = idle between rounds."""
    gamma: float = 0.998
    """Per-step discount (a 10-step chunk: 0.98). Long tasks run 150-450 steps; 0.99 per step left a restock solved
    near its time limit with a start value below one critic bin."""
    takeover_terminal: bool = True
    """Critic reward, sparse either way: True (default) = a policy chunk that runs into a takeover ends with reward 0
    (RLIF), so the critic estimates autonomous success, what the fleet is evaluated on; False = the paper's episode
    success, where a success reached with the operator's help counts for the policy's chunks before the takeover
    too. With the operator rescuing ~82% of episodes that critic could not tell good from bad (held-out AUC 0.50 vs
    0.62: docs/learning.md rows 24, 25)."""
    subgoal_credit: bool = False
    """Filtered BC data (bc, and the reference of lwd and its variants) judged per subgoal segment (an item placed):
    a policy segment that achieved a subgoal is cloned even if a later segment needed the operator or the episode
    failed; False = only the non-overruled policy steps of successful episodes (lwd.rl.dataset.ChunkBuffer)."""
    fleet_fraction: float = 0.0
    """Share of every training batch (critic, BC, actor) drawn from fleet steps while demonstrations are in the
    buffer too; 0 = every step equally likely, so 10 fleet episodes per task are a small share beside 72 demos."""
    gate: str = "sim"
    """Promotion gate: 'sim' (rollouts of candidate vs deployed on gate seeds) or 'none' (publish every round)."""
    gate_episodes: int = 30
    """Gate rollouts per task and policy (the deployed one's are cached: each round rolls out its candidate)."""
    select_episodes: int = 30
    """Rollouts per task and policy (on the gate seeds, in simulation) that choose between the round's candidate and
    the algorithm's alternative by autonomous success (lwd: the tilted policy vs its untilted reference; the
    reference unless the tilt's 95% Wilson lower bound is above the reference's success rate); 0 = keep
    the algorithm's candidate (real fleets, like gate 'none'). The critic rates its own tilt higher by construction:
    on the same 100 held-out seeds a kept tilt scored 20% against its reference's 41% (docs/learning.md row 33)."""
    gate_tolerance: float = 0.0
    """Extra slack of the sim gate: reject only when the deployed one's gate success is above the upper end of the
    candidate's 95% Wilson interval by more than this fraction."""
    tasks: tuple[str, ...] = default_tasks()
    """Tasks the gate evaluates."""
    exec_steps: int = 5
    """Actions executed per chunk by the robots (the gate runs the policy the same way)."""
    seed: int = 0
    threads: int = 1
    """torch CPU threads for the learner process."""
    algo_overrides: dict = field(default_factory=dict)
    """Algorithm hyper-parameters (field name -> value) for the chosen algo's config dataclass."""

    def __post_init__(self) -> None:
        if self.algo not in ALGORITHMS:
            raise ValueError(f"unknown algo {self.algo!r}; choose from {sorted(ALGORITHMS)}")
        if self.min_new_episodes < 1 or self.updates_per_round < 1:
            raise ValueError("min_new_episodes and updates_per_round must be >= 1")
        if self.offline_updates < 0 or self.background_updates < 0 or self.select_episodes < 0:
            raise ValueError("offline_updates, background_updates and select_episodes must be >= 0")
        if not 0.0 <= self.fleet_fraction < 1.0:
            raise ValueError(f"fleet_fraction must be in [0, 1), got {self.fleet_fraction}")
        if not 0.0 < self.gamma <= 1.0:
            raise ValueError(f"gamma must be in (0, 1], got {self.gamma}")
        if self.gate not in ("sim", "none"):
            raise ValueError(f"unknown gate {self.gate!r}; choose 'sim' or 'none'")
        self.tasks = tuple(self.tasks.split(",")) if isinstance(self.tasks, str) else tuple(self.tasks)


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float | None:
    """Probability that a random positive scores above a random negative (ties count half); None if one class."""
    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels, dtype=bool)
    pos, neg = scores[labels], scores[~labels]
    if len(pos) == 0 or len(neg) == 0:
        return None
    order = np.argsort(np.concatenate([pos, neg]), kind="mergesort")
    ranks = np.empty(len(order))
    allv = np.concatenate([pos, neg])[order]
    ranks[order] = np.arange(1, len(order) + 1)
    # average ranks of ties
    _, inv, counts = np.unique(allv, return_inverse=True, return_counts=True)
    sums = np.bincount(inv, weights=ranks[order])
    ranks[order] = (sums / counts)[inv]
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def _atomic_write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as f:
        json.dump(data, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class Learner:
    def __init__(self, store: ExperienceStore | Path | str, cfg: LearnerConfig, gate: Gate | None = None,
                 selector: Gate | None = None) -> None:
        self.store = store if isinstance(store, ExperienceStore) else ExperienceStore(Path(store))
        self.cfg = cfg
        self.policies = self.store.root / "policies"
        torch.set_num_threads(cfg.threads)
        torch.manual_seed(cfg.seed)  # network initialization; each round's streams are set by _reseed
        # The newest *valid* version: corrupt newer ones are quarantined (status() lists them).
        found = latest_valid_checkpoint(self.policies)
        ckpt = found.checkpoint
        # Its own walk's finds plus newer versions a robot quarantined first (they race to move the same one).
        quarantined = fallback_report(self.policies, found)
        self.quarantined = [q.to_dict() for q in quarantined]
        for q in quarantined:
            log.error("learner: v%d is corrupt (%s); quarantined to %s; falling back", q.version, q.detail, q.to)
        if ckpt is None:
            raise FileNotFoundError(f"no valid policy in {self.policies}: run `lwd pretrain` first")
        v = ckpt.version
        self.version = ckpt.version
        self.sha256 = ckpt.sha256
        self.model: FlowVLA = ckpt.model.eval()
        self.model.requires_grad_(False)
        self.model.expert.requires_grad_(True)  # the only part of the deployed VLA that learns
        self.deployed_model = load_checkpoint(version_dir(self.policies, v)).model.eval()
        mc = self.model.cfg
        self.buffer = ChunkBuffer(mc, gamma=cfg.gamma, takeover_terminal=cfg.takeover_terminal,
                                  subgoal_credit=cfg.subgoal_credit)
        self.buffer.fleet_fraction = cfg.fleet_fraction
        self.algo = make_algorithm(cfg.algo, self.model.expert, mc.cond_dim, mc.action_dim, cfg.algo_overrides,
                                   model=self.model)
        # The feature cache: the deployed VLA's frozen encoder, or, when the algorithm trains the encoder, a frozen
        # copy of the VLA this learner started from (so critics keep one view of the states while the VLA moves).
        self.feature_model: FlowVLA | None = self.model
        self.metrics_dir = self.store.root / "learner"
        self.metrics_dir.mkdir(parents=True, exist_ok=True)
        self.state_path = self.metrics_dir / "state.json"
        state = self._load_state()
        self.feature_version = v
        extra = version_dir(self.policies, v) / LEARNER_FILE
        if extra.exists() and ckpt.manifest.get("algo") == cfg.algo:
            from safetensors.torch import load_file

            self.algo.load_state_dict(load_file(str(extra)))  # resume critic + reference flow after a restart
        if self.algo.trains_encoder:
            self.model.requires_grad_(True)
            fv = int(state.get("feature_version", v))
            if not self.algo.needs_features:
                self.feature_model = None
            elif self.algo.feature_encoder() is not None:  # restored with its state: no other VLA to load
                self.feature_model, self.feature_version = self.algo.feature_encoder(), fv
            else:
                self.feature_model = self._feature_vla(fv, v)
        self.gate = gate or make_gate(cfg.gate, cfg.tasks, cfg.gate_episodes, cfg.gate_tolerance, cfg.exec_steps,
                                      cfg.seed)
        self._selector = selector  # built on first use: it loads a simulator
        self.rounds_done = int(state.get("round", 0))
        self.busy = False  # whether the last poll trained (poll_delay)
        self._reseed()
        self.fleet_counted = int(state.get("fleet_counted", 0))
        self._offline_done = bool(state.get("offline_done", False)) or cfg.offline_updates == 0
        self.total_updates = int(state.get("total_updates", 0))
        self.last_accepted: bool | None = state.get("accepted")
        self.fleet_ingested = 0
        self._round_updates: int | None = None  # updates made in the current round; None = not begun
        self._heldout: list[tuple[np.ndarray, bool]] = []  # (V of each step, success) of not-yet-trained episodes
        self._csv_path = self.metrics_dir / "metrics.csv"
        self._tb = None
        # Everything already in the store is the starting dataset. Episodes indexed (by a robot or another scanner)
        # between listing and claiming are claimed too: ingest them now, or they would be lost to this learner.
        records = self.store.episodes()
        known = {r.id for r in records}
        records += [r for r in self.store.claim_new("learner") if r.id not in known]
        self._ingest(records)
        log.info("learner: algo=%s from v%d, %d steps in buffer, round %d, %d fleet episodes pending", cfg.algo,
                 self.version, self._buffer_steps(), self.rounds_done, self.pending_fleet)

    # -- state --------------------------------------------------------------------------------------------------
    def _reseed(self) -> None:
        """Random streams keyed by (seed, round), so a learner restarted between rounds draws what an uninterrupted
        one would."""
        ss = np.random.SeedSequence([self.cfg.seed, self.rounds_done])
        self.rng = np.random.default_rng(ss)
        torch.manual_seed(int(ss.generate_state(1)[0]))

    def _feature_vla(self, fv: int, v: int) -> FlowVLA:
        """The frozen VLA the critics read: the one this learner first started from (``fv``), also after a restart,
        so a critic resumed from a checkpoint keeps the view of the states it was trained on; if that version is
        gone or unreadable, the deployed one (its critic then refits to the new view)."""
        if fv != v:
            try:
                model = load_checkpoint(version_dir(self.policies, fv)).model.eval().requires_grad_(False)
                self.feature_version = fv
                return model
            except Exception as e:  # noqa: BLE001 - any unreadable checkpoint: fall back, say so
                log.warning("learner: critic features of v%d unavailable (%s); reading v%d's", fv, e, v)
        return copy.deepcopy(self.deployed_model).requires_grad_(False)

    def _load_state(self) -> dict:
        if not self.state_path.exists():
            return {}
        try:
            state = json.loads(self.state_path.read_text())
        except (OSError, ValueError) as e:
            log.warning("learner: ignoring unreadable %s: %s", self.state_path, e)
            return {}
        if state.get("algo") not in (None, self.cfg.algo):
            log.warning("learner: state.json was written by algo %s, now %s", state.get("algo"), self.cfg.algo)
        return state

    def _save_state(self) -> None:
        _atomic_write_json(self.state_path, {
            "round": self.rounds_done, "version": self.version, "sha256": self.sha256, "algo": self.cfg.algo,
            "fleet_counted": self.fleet_counted, "offline_done": self._offline_done,
            "total_updates": self.total_updates, "accepted": self.last_accepted,
            "feature_version": self.feature_version})

    @property
    def pending_fleet(self) -> int:
        """Fleet episodes in the dataset not yet counted toward a finished round."""
        return max(0, self.fleet_ingested - self.fleet_counted)

    def _buffer_steps(self) -> int:
        return len(self.buffer) if self.buffer.num_episodes else 0

    # -- data ---------------------------------------------------------------------------------------------------
    def _ingest(self, records) -> int:
        fleet = 0
        added = []
        for rec in records:
            try:
                steps = self.store.load(rec)
            except Exception as e:  # noqa: BLE001 - one bad bag must not stop the learner
                log.warning("learner: skipping %s: %s", getattr(rec, "path", rec), e)
                continue
            if len(steps) < 2:
                continue
            self.buffer.add_episode(steps)
            is_fleet = steps.meta.source == "fleet"
            fleet += is_fleet
            # what the critic's V should predict: (autonomous, with takeover_terminal) success; after a restart the
            # fleet episodes already counted into rounds were trained on, so they are not held-out evidence
            if is_fleet and self.fleet_ingested + fleet > self.fleet_counted:
                ok = bool(steps.success) and not (self.cfg.takeover_terminal and (steps.source == SOURCE_TELEOP).any())
                added.append((self.buffer.num_episodes - 1, ok))
        if self.buffer.num_episodes and self.feature_model is not None:
            self.buffer.encode_features((self.algo.feature_encoder() or self.feature_model).encode)
        if added and self.algo.v_value(torch.zeros(1, self.model.cfg.cond_dim)) is not None:
            ep = self.buffer.episode
            for e, ok in added:  # the critic has not trained on these yet: held-out evidence of its fit
                idx = np.flatnonzero(ep == e)
                self._heldout.append((self.algo.v_value(self.buffer.features(idx)).numpy(), ok))
        self.fleet_ingested += fleet
        return fleet

    def ingest_new(self) -> int:
        """Scan the store and add episodes this learner has not seen; returns new fleet episodes."""
        self.store.scan()
        return self._ingest(self.store.claim_new("learner"))

    # -- learning -----------------------------------------------------------------------------------------------
    def _train(self, steps: int, phase: str) -> dict[str, float]:
        agg: dict[str, list[float]] = {}
        t0 = time.perf_counter()
        for _ in range(steps):
            stats = self.algo.update(self.buffer, self.rng)
            self.total_updates += 1
            for k, v in stats.items():
                agg.setdefault(k, []).append(v)
        dt = time.perf_counter() - t0
        out = {k: float(np.mean(v)) for k, v in agg.items()}
        out["perf/updates_per_s"] = steps / max(dt, 1e-9)
        out["perf/train_s"] = dt
        self._log(phase, out)
        return out

    def poll(self) -> int | None:
        """Ingest; when enough new fleet episodes arrived, run an update round and publish. Returns a new version.

        Sets ``busy``: whether this poll trained. A caller that polls on a timer should poll again at once while
        it is set (see :meth:`poll_delay`): the background updates are the learning done while the robots work."""
        self.busy = False
        if not self._offline_done and self.buffer.num_episodes:
            # Before ingesting fleet data: the offline phase fits the demos, and the first fleet episodes then score
            # a trained critic on held-out data (ingesting first scored the untrained one: AUC 0.56 for every critic).
            self._train(self.cfg.offline_updates, "offline")
            self._offline_done = True
            self.busy = True
            self._save_state()
        self.ingest_new()
        if self.pending_fleet < self.cfg.min_new_episodes:
            if self.cfg.background_updates > 0 and self.buffer.num_episodes:
                self._begin_round()
                self._train(self.cfg.background_updates, "background")
                self._round_updates += self.cfg.background_updates
                self.busy = True
            return None
        self.busy = True
        return self.update_round()

    def poll_delay(self, poll_s: float) -> float:
        """Seconds to wait before the next :meth:`poll`: none while learning (a wait after each batch of background
        updates left the learner idle ~45% of the ROS demo: 8-10 updates/s beside the robots against ~20 alone,
        docs/learning.md row 67), ``poll_s`` while it waits for episodes with nothing to train."""
        return 0.0 if self.busy else poll_s

    def _begin_round(self) -> None:
        """Start the round's budget (and the algorithm's per-round schedule) once, at its first update."""
        if self._round_updates is None:
            self.algo.on_round_start(self.cfg.updates_per_round)
            self._round_updates = 0

    @torch.no_grad()
    def diagnostics(self, states: int = 256) -> dict[str, float]:
        """What the round did: critic fit on held-out episodes, how far the deployed actor moved, the Q it gained."""
        out: dict[str, float] = {}
        if self._heldout:
            v = np.concatenate([x for x, _ in self._heldout])
            y = np.concatenate([np.full(len(x), ok) for x, ok in self._heldout])
            auc = roc_auc(v, y)
            if auc is not None:
                out["critic/heldout_auc"] = auc
            out["critic/heldout_episodes"] = float(len(self._heldout))
        idx = self.buffer.sample_indices(min(states, len(self.buffer)), np.random.default_rng(12345))
        if self.algo.trains_encoder:  # each VLA sees the states through its own encoder
            b = self.buffer.gather(idx)
            obs = self.model.encode(b.image, b.qpos, b.tokens)
            obs_dep = self.deployed_model.encode(b.image, b.qpos, b.tokens)
        else:
            obs = obs_dep = self.buffer.features(idx)
        # critics read the cached features (the frozen encoder's view), whichever encoder the actor uses
        cobs = self.buffer.features(idx) if self.feature_model is not None else obs
        mc = self.model.cfg
        noise = torch.zeros(len(idx), mc.action_dim)
        scale = torch.tensor(mc.action_scale).repeat(mc.horizon)
        a_new = sample_euler(self.model.expert, obs, mc.action_dim, mc.flow_steps, noise=noise)
        a_dep = sample_euler(self.deployed_model.expert, obs_dep, mc.action_dim, mc.flow_steps, noise=noise)
        out["actor/shift_from_deployed_rad"] = float(((a_new - a_dep).abs() * scale).mean())
        ref = self.algo.reference()
        if ref is not None:
            a_ref = sample_euler(ref, obs, mc.action_dim, mc.flow_steps, noise=noise)
            out["actor/shift_from_base_rad"] = float(((a_new - a_ref).abs() * scale).mean())
        q_new = self.algo.q_value(cobs, a_new)
        if q_new is not None:
            out["critic/q_candidate"] = float(q_new.mean())
            out["critic/q_deployed"] = float(self.algo.q_value(cobs, a_dep).mean())
            if ref is not None:
                out["actor/q_gain_over_base"] = float((q_new - self.algo.q_value(cobs, a_ref)).mean())
        return out

    def update_round(self) -> int | None:
        episodes = self.pending_fleet
        self._begin_round()
        left = max(0, self.cfg.updates_per_round - self._round_updates)  # what background updates did not do
        stats = self._train(left, "online") if left else {}
        stats["round/updates"] = float(self._round_updates + left)
        self._round_updates = None
        t0 = time.perf_counter()
        end = self.algo.on_round_end(self.buffer, self.rng)
        alternative = self.algo.alternative()
        if alternative is not None and self.cfg.select_episodes > 0:
            end.update(self._select(alternative))
        if end:
            end["perf/round_end_s"] = time.perf_counter() - t0
            self._log("round_end", end)
            stats.update(end)
        diag = self.diagnostics()
        self._heldout.clear()
        t0 = time.perf_counter()
        accept, evidence = self.gate.decide(self.model, self.deployed_model, f"v{self.version}:{self.sha256}")
        self.gate.close()  # its simulator's GL context belongs to this thread: release it here, not at exit
        evidence["gate_s"] = time.perf_counter() - t0
        self._log("gate", {"gate/accepted": float(accept), "round/updates": stats["round/updates"],
                           **{f"gate/{k}": float(v) for k, v in evidence.items()},
                           **diag})
        self.rounds_done += 1
        self._reseed()
        self.fleet_counted += episodes
        self.last_accepted = accept
        if not accept:
            # The candidate keeps training on the next round's data; the fleet keeps the deployed version.
            log.info("learner: candidate rejected by the gate: %s", evidence)
            self._save_state()
            return None
        new = self._next_version()
        path = save_checkpoint(
            self.policies, self.model, new,
            extra={"parent": self.version, "algo": self.cfg.algo, "new_episodes": episodes,
                   "buffer_steps": len(self.buffer), "total_updates": self.total_updates,
                   "stats": stats, "gate": evidence, "diagnostics": diag,
                   **({"scorer": spec} if (spec := self.algo.scorer_spec()) else {})},
            extra_tensors=self.algo.state_dict() or None,
        )
        self.version = new
        self.sha256 = json.loads((path / "manifest.json").read_text())["sha256"]
        self.deployed_model.load_state_dict(self.model.state_dict())
        if isinstance(self.gate, SimGate):
            self.gate.remember(f"v{self.version}:{self.sha256}", evidence)
        self.algo.on_published()
        self._save_state()
        log.info("learner: published v%d (%d new episodes, %d steps in buffer, gate %s)", new, episodes,
                 len(self.buffer), {k: round(v, 3) for k, v in evidence.items()})
        return new

    def _select(self, alternative: nn.Module) -> dict[str, float]:
        """Roll out the candidate and the candidate with the alternative's action expert on the gate seeds; keep
        the candidate only when the rollouts show it better (its Wilson lower bound above the alternative's rate),
        else switch its expert to the alternative's. The untilted reference is the default: 30 rollouts each
        cannot tell a 10-point difference from noise, and kept tilts moved held-out success by -21 (kept by the
        critic's guard), -14 and +8 (kept by such rollouts) against their references (learning.md rows 33, 53)."""
        if self._selector is None:
            self._selector = SimGate(self.cfg.tasks, self.cfg.select_episodes, 0.0, self.cfg.exec_steps,
                                     seed=self.cfg.seed, must_show_better=True)
        t0 = time.perf_counter()
        other = copy.deepcopy(self.model).eval()
        other.expert.load_state_dict(alternative.state_dict())
        keep, ev = self._selector.decide(self.model, other, f"alternative-{self.rounds_done}-{self.total_updates}")
        self._selector.close()
        if not keep:
            self.model.expert.load_state_dict(alternative.state_dict())
        log.info("learner: candidate %.2f vs alternative %.2f on %d gate rollouts each: kept the %s",
                 ev.get("candidate_success", float("nan")), ev.get("deployed_success", float("nan")),
                 int(ev.get("episodes", 0)), "candidate" if keep else "alternative")
        return {"select/candidate_success": ev.get("candidate_success", float("nan")),
                "select/alternative_success": ev.get("deployed_success", float("nan")),
                "select/kept_candidate": float(keep), "perf/select_s": time.perf_counter() - t0}

    def _next_version(self) -> int:
        """One above every version ever used here: published, quarantined, or recorded in state.json."""
        used = [self.version, latest_version(self.policies) or 0, int(self._load_state().get("version", 0))]
        qdir = self.store.root / "quarantine" / "policies"
        if qdir.is_dir():
            used += [int(m.group(1)) for d in qdir.iterdir() if (m := re.match(r"^v(\d+)__", d.name))]
        return max(used) + 1

    def status(self) -> dict:
        """What the learner node publishes on /fleet/learner/status after every round (accepted or not)."""
        return {"round": self.rounds_done, "version": self.version, "accepted": self.last_accepted,
                "algo": self.cfg.algo, "buffer_steps": self._buffer_steps(),
                "quarantined": self.quarantined}

    def announcement(self) -> dict:
        """What the learner node publishes on /fleet/policy."""
        path = version_dir(self.policies, self.version)
        manifest = json.loads((path / "manifest.json").read_text())
        return {"version": self.version, "uri": str(path.resolve()), "sha256": manifest["sha256"],
                "algo": self.cfg.algo}

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

    def close(self) -> None:
        """Flush and close the TensorBoard writer and the gates' simulators (the node calls this on shutdown)."""
        if self._tb is not None:
            self._tb.close()
            self._tb = None
        for gate in (self.gate, self._selector):
            if gate is not None:
                gate.close()
        self._selector = None

    def config_dict(self) -> dict:
        return asdict(self.cfg)
