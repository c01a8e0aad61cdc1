"""Episode scheduler of one robot (ROS-free): the episode plan, round synchronisation, and the recorder gate.

The teleop node feeds it what it hears (policy version, learner round, recorder heartbeats, rewards) and asks two
questions each tick: *may the next episode start, and if not, why not?* (:meth:`EpisodeScheduler.wait_reason`) and
*must the running episode end, and how?* (:meth:`EpisodeScheduler.check_end`).

Rules:
  * Plan: episode ``seq`` runs ``tasks[seq % len(tasks)]`` with :func:`episode_seed` (reproducible per robot).
  * Rounds (``episodes_per_round > 0``): after each round the robot waits until the learner finished that round and
    the robot runs the learner's current version (the same one if the gate rejected the update). With ``rounds > 0``
    the plan ends after ``rounds * episodes_per_round`` episodes. Asynchronous (``sync=False``): the robot never
    waits for the learner; it keeps working and hot-swaps each version the learner publishes.
  * Recorder gate: an episode starts only while the episode recorder's heartbeat is fresh and it reports itself
    ready; an episode is aborted when the recorder does not confirm it is recording it, or falls silent, within
    ``recorder_timeout_s``, or stops recording it after it had confirmed (a recorder restarted within the timeout)
    — the fleet never runs experience nobody records.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

__all__ = ["episode_seed", "EpisodeSpec", "EpisodeScheduler"]


def episode_seed(base_seed: int, robot: str, seq: int) -> int:
    """Distinct, reproducible seeds per robot and episode."""
    return (base_seed * 1_000_003 + sum(ord(c) * 31**i for i, c in enumerate(robot)) * 7919 + seq) % (2**31 - 1)


@dataclass(frozen=True)
class EpisodeSpec:
    seq: int
    episode_id: str
    task: str
    seed: int


@dataclass
class _Running:
    spec: EpisodeSpec
    t0: float
    time_limit_s: float
    rewarded_at: float | None = None
    recorder_confirmed: bool = False
    recorder_lost: str | None = None  # what the recorder said it records after it had confirmed this episode


class EpisodeScheduler:
    """Decides when this robot's episodes start and end.

    Args:
        robot: robot name (episode ids and seeds).
        tasks: task cycle.
        seed: base seed.
        episodes_per_round: synchronous rounds of this many episodes (0 = no rounds).
        rounds: stop after this many rounds (0 = never; needs ``episodes_per_round``).
        sync: wait for the learner at each round's end (False: keep working; rounds only bound the plan).
        min_subscribers: listeners on ``episode/event`` (arm, camera, policy, recorder) required before a start.
        require_recorder: gate starts on the recorder's heartbeat (turn off only when nothing records on purpose).
        recorder_timeout_s: a heartbeat older than this means the recorder is gone.
        settle_s: a rewarded episode ends as a success this long after the reward.
        clock: wall-clock ``strftime`` source for episode ids (injectable for tests).
    """

    def __init__(self, robot: str, tasks: Sequence[str], *, seed: int = 0, episodes_per_round: int = 0,
                 rounds: int = 0, sync: bool = True, min_subscribers: int = 4, require_recorder: bool = True,
                 recorder_timeout_s: float = 5.0, settle_s: float = 0.5,
                 clock: Callable[[str], str] = time.strftime) -> None:
        if not tasks:
            raise ValueError("tasks must name at least one task")
        if episodes_per_round < 0 or rounds < 0:
            raise ValueError("episodes_per_round and rounds must be >= 0")
        if recorder_timeout_s <= 0:
            raise ValueError("recorder_timeout_s must be positive")
        self.robot = robot
        self.tasks = list(tasks)
        self.base_seed = int(seed)
        self.episodes_per_round = int(episodes_per_round)
        self.rounds = int(rounds)
        self.sync = bool(sync)
        self.min_subscribers = int(min_subscribers)
        self.require_recorder = bool(require_recorder)
        self.recorder_timeout_s = float(recorder_timeout_s)
        self.settle_s = float(settle_s)
        self.clock = clock
        self.seq = 0
        self.policy_version = -1
        self.learner_round = 0
        self.learner_version = -1
        self.recorder_seen_at: float | None = None
        self.recorder_ready = False
        self.recorder_recording = ""
        self.recorder_error = ""
        self.running: _Running | None = None
        self.aborted = 0

    # -- inputs -------------------------------------------------------------------------------------------------
    def on_policy_version(self, version: int) -> None:
        self.policy_version = int(version)

    def on_learner(self, round_: int, version: int) -> None:
        self.learner_round, self.learner_version = int(round_), int(version)

    def on_recorder(self, now: float, status: dict) -> None:
        """A recorder heartbeat: ``{"ready": bool, "recording": episode_id or "", "error": str}``."""
        self.recorder_seen_at = now
        self.recorder_ready = bool(status.get("ready", False))
        self.recorder_recording = str(status.get("recording") or "")
        self.recorder_error = str(status.get("error") or "")
        if self.running is not None:
            if self.recorder_recording == self.running.spec.episode_id:
                self.running.recorder_confirmed = True
            elif self.running.recorder_confirmed and self.running.recorder_lost is None:
                # It recorded this episode and no longer does: a recorder restarted faster than its heartbeat
                # timeout has lost the episode's bag (the rest of the episode would run unrecorded).
                self.running.recorder_lost = self.recorder_recording

    def on_reward(self, now: float, reward: float) -> None:
        if self.running is not None and reward > 0 and self.running.rewarded_at is None:
            self.running.rewarded_at = now

    # -- starting -----------------------------------------------------------------------------------------------
    @property
    def finished(self) -> bool:
        """All planned rounds are done (never with ``rounds == 0``)."""
        return self.rounds > 0 and self.episodes_per_round > 0 and self.seq >= self.rounds * self.episodes_per_round

    def recorder_alive(self, now: float) -> bool:
        return self.recorder_seen_at is not None and now - self.recorder_seen_at <= self.recorder_timeout_s

    def wait_reason(self, now: float, subscribers: int) -> str | None:
        """None if the next episode may start now, else why not (for the log and the diagnostics)."""
        if self.running is not None:
            return f"episode {self.running.spec.episode_id} is running"
        if self.finished:
            return f"all {self.rounds} rounds done"
        if self.require_recorder:
            if self.recorder_seen_at is None:
                return "waiting for the episode recorder (no heartbeat yet)"
            if not self.recorder_alive(now):
                return f"waiting for the episode recorder (silent for {now - self.recorder_seen_at:.0f} s)"
            if not self.recorder_ready:
                return f"the episode recorder cannot record: {self.recorder_error or 'not ready'}"
        if subscribers < self.min_subscribers:
            return f"waiting for {self.min_subscribers} listeners on episode/event (have {subscribers})"
        if self.policy_version < 0:
            return "waiting for the policy to load a checkpoint"
        if self.sync and self.episodes_per_round > 0 and self.seq > 0 and self.seq % self.episodes_per_round == 0:
            done = self.seq // self.episodes_per_round
            if self.learner_round < done:
                return f"round {done} done: waiting for the learner to finish it (learner at {self.learner_round})"
            if self.policy_version < self.learner_version:
                return f"waiting for policy v{self.learner_version} (running v{self.policy_version})"
        return None

    def next_episode(self) -> EpisodeSpec:
        """The episode the plan runs next (does not start it)."""
        task = self.tasks[self.seq % len(self.tasks)]
        episode_id = f"{self.robot}-{self.clock('%Y%m%d-%H%M%S')}-{self.seq:04d}"
        if self.aborted:  # a retry of an aborted episode never reuses an id
            episode_id += f"-r{self.aborted}"
        return EpisodeSpec(self.seq, episode_id, task, episode_seed(self.base_seed, self.robot, self.seq))

    def start(self, spec: EpisodeSpec, now: float, time_limit_s: float) -> None:
        if self.running is not None:
            raise RuntimeError(f"episode {self.running.spec.episode_id} is still running")
        if spec.seq != self.seq:
            raise ValueError(f"episode seq {spec.seq} is not the next one ({self.seq})")
        self.running = _Running(spec, now, float(time_limit_s),
                                recorder_confirmed=self.recorder_recording == spec.episode_id)
        self.seq += 1

    # -- ending -------------------------------------------------------------------------------------------------
    def elapsed(self, now: float) -> float:
        return now - self.running.t0 if self.running is not None else 0.0

    @property
    def rewarded(self) -> bool:
        return self.running is not None and self.running.rewarded_at is not None

    def check_end(self, now: float) -> tuple[str, str] | None:
        """``(outcome, why)`` if the running episode must end now, else None."""
        r = self.running
        if r is None:
            return None
        if self.require_recorder:
            if not self.recorder_alive(now):
                silent = now - (self.recorder_seen_at if self.recorder_seen_at is not None else r.t0)
                return "aborted", f"the episode recorder fell silent ({silent:.0f} s)"
            if not r.recorder_confirmed and now - r.t0 > self.recorder_timeout_s:
                return "aborted", f"the episode recorder is not recording {r.spec.episode_id}"
            if r.recorder_lost is not None:
                return "aborted", (f"the episode recorder stopped recording {r.spec.episode_id} (restarted?); "
                                   f"it records {r.recorder_lost or 'nothing'}")
        if r.rewarded_at is not None and now - r.rewarded_at >= self.settle_s:
            return "success", "task completed"
        if now - r.t0 > r.time_limit_s:
            return "failure", f"time limit {r.time_limit_s:.0f} s"
        return None

    def end(self, outcome: str) -> EpisodeSpec:
        """Finish the running episode. An aborted episode does not count: the plan runs it again (same task and
        seed, a new id), so a round still gets its ``episodes_per_round`` recorded episodes."""
        if self.running is None:
            raise RuntimeError("no episode is running")
        spec, self.running = self.running.spec, None
        if outcome == "aborted":
            self.aborted += 1
            self.seq = spec.seq
        return spec
