"""Scripted teleoperator: watches a rollout like a human and intervenes with the scripted expert (ROS-free).

It reads only world state (so it works on a mirror world fed by ``set_state``) and is called once per control step:

* **takeover** when the policy *stalls* (no new subgoal and both tools + grippers nearly still for ``stall_s``), makes
  *no progress* for ``no_progress_s``, or *heads to failure* (a task item lies outside the bin and its target region,
  e.g. dropped or knocked over; an arm joint sits at its limit; an arm link presses on the table/bin/shelf), or,
  with ``misaligned_s``, is about to knock its item over (a tool low beside the free item, not around it);
* drives with the expert until the correction is done: a new subgoal achieved, or (after a drop or a misaligned
  approach) the item grasped and lifted, or ``max_correction_s`` elapsed; then **release**;
* at most ``max_interventions`` takeovers per episode; after a release the stall clocks restart.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from lwd.sim.expert import CARRY_BOTTOM, TRAVEL_Z, ScriptedExpert
from lwd.sim.operator_config import OperatorConfig
from lwd.sim.tasks import CATALOGUE, ITEMS
from lwd.sim.world import ARMS, CONTROL_DT, SimWorld

__all__ = ["OperatorDecision", "ScriptedOperator"]

LIMIT_MARGIN = 0.03  # rad: "at a joint limit"
CONTACT_PERSIST_S = 0.5  # an arm must press on static geometry this long to count
STALL_MOTION_M = 0.01  # tool displacement over the stall window below which the arm counts as still
STALL_GRIP_M = 0.003
CLEAR_Z = TRAVEL_Z - 0.03  # tools above this height are clear of the items
LOW_ABOVE_TOP = 0.01  # "low beside the item": tool centre below the item's top + this, ...
LOW_RADIUS = 0.06  # ... within this x-y distance of its centre, ...
BETWEEN_X = 0.025  # ... and the item not between the fingers (the expert's own pre-close test)
BETWEEN_Y_MARGIN = 0.012


@dataclass
class OperatorDecision:
    """What the operator does this control step."""

    engaged: bool
    action: np.ndarray | None = None  # (14,) joint-position target while engaged
    event: str | None = None  # "takeover" | "release" on transitions
    reason: str | None = None  # why ("stall", "no_progress", "misplaced", "joint_limit", "contact", "misaligned")


class ScriptedOperator:
    """A simulated human operator with a takeover button.

    Args:
        world: the (possibly mirrored) world to watch.
        expert: the expert used to drive while engaged (usually noise 0).
        stall_s: stillness without progress that triggers a takeover.
        max_correction_s: longest single correction.
        max_interventions: takeovers per episode.
        no_progress_s: no new subgoal for this long triggers a takeover (default ``max(6, 2 * stall_s)``: the expert
            needs ~4.5 s per item, and a policy that has not placed one by 6 s rarely does; waiting 10 s left each
            episode few corrective labels on exactly the states that went wrong).
        misaligned_s: take over when a tool has been low beside the free item it should grasp, without the item
            between its fingers, for this long (0 = off; base scene only): the ``misplaced`` takeover comes after a
            knock-over, which the expert rarely recovers from. Off by default: at 0.2 s the fleet's episodes succeeded
            more often but the policy trained on them did worse (docs/learning.md row 60).
    """

    def __init__(
        self,
        world: SimWorld,
        expert: ScriptedExpert,
        stall_s: float = OperatorConfig.stall_s,
        max_correction_s: float = OperatorConfig.max_correction_s,
        max_interventions: int = OperatorConfig.max_interventions,
        no_progress_s: float | None = None,
        misaligned_s: float = OperatorConfig.misaligned_s,
    ) -> None:
        if stall_s <= 0 or max_correction_s <= 0 or max_interventions < 0 or misaligned_s < 0:
            raise ValueError("stall_s and max_correction_s must be > 0, max_interventions and misaligned_s >= 0")
        self.world = world
        self.expert = expert
        self.stall_s = float(stall_s)
        self.max_correction_s = float(max_correction_s)
        self.max_interventions = int(max_interventions)
        self.no_progress_s = float(no_progress_s) if no_progress_s is not None else max(6.0, 2.0 * stall_s)
        self.misaligned_s = float(misaligned_s)
        self.reset()

    def reset(self) -> None:
        self.engaged = False
        self.interventions = 0
        self.reason: str | None = None
        self._t_start: float | None = None
        self._t_last = -np.inf
        self._t_clock = 0.0  # when the stall / no-progress clocks (re)started
        self._t_engaged = 0.0
        self._progress = 0
        self._progress_at_takeover = 0
        self._t_goal: float | None = None
        self._hist: deque[tuple[float, np.ndarray]] = deque()
        self._contact_since: float | None = None
        self._misaligned_since: float | None = None
        self.expert.reset()

    # ------------------------------------------------------------------ main entry
    def step(self, t: float) -> OperatorDecision:
        """Observe the world at time ``t`` (seconds since episode start) and decide."""
        if t < self._t_last:  # a new episode started without reset()
            self.reset()
        if self._t_start is None:
            self._t_start = t
            self._t_clock = t
        self._t_last = t
        w = self.world
        prog = w.progress()
        if prog > self._progress:
            self._t_clock = t  # new subgoal: restart the no-progress clock
        self._progress = prog
        self._record(t)

        if self.engaged:
            if self._correction_done(t, prog):
                self.engaged = False
                self._t_clock = t
                self._misaligned_since = None  # its clock restarts too
                self._hist.clear()
                self._record(t)
                return OperatorDecision(False, None, "release", self.reason)
            return OperatorDecision(True, self.expert.act(), None, self.reason)

        if self.interventions >= self.max_interventions or w.success():
            return OperatorDecision(False)
        reason = self._trigger(t)
        if reason is None:
            return OperatorDecision(False)
        self.engaged = True
        self.reason = reason
        self.interventions += 1
        self._t_engaged = t
        self._progress_at_takeover = prog
        self._t_goal = None
        self.expert.reset()
        return OperatorDecision(True, self.expert.act(), "takeover", reason)

    # ------------------------------------------------------------------ internals
    def _snapshot(self) -> np.ndarray:
        w = self.world
        return np.concatenate([*(w.tcp_pos(a) for a in ARMS), [w.gripper(a) for a in ARMS]])

    def _record(self, t: float) -> None:
        self._hist.append((t, self._snapshot()))
        horizon = max(self.stall_s, 1.0) + 2 * CONTROL_DT
        while self._hist and self._hist[0][0] < t - horizon:
            self._hist.popleft()

    def _stalled(self, t: float) -> bool:
        if t - self._t_clock < self.stall_s - 1e-9:
            return False
        window = [s for (tt, s) in self._hist if tt >= t - self.stall_s - 1e-9]
        if len(window) < 2:
            return False
        arr = np.stack(window)
        tools = arr[:, :6].reshape(len(arr), 2, 3)
        move = np.linalg.norm(tools - tools[-1], axis=2).max()
        grip = np.abs(arr[:, 6:] - arr[-1, 6:]).max()
        return bool(move < STALL_MOTION_M and grip < STALL_GRIP_M)

    def _misplaced(self) -> bool:
        w = self.world
        if w.scene != "base":  # store tasks: a goal item toppled, on the table or on the floor
            return any(w.store_misplaced(n) for n in dict.fromkeys(g.item for g in w.goals))
        for g in w.goals:
            if w.held_by(g.item) is not None or w.item_speed(g.item) > 0.1:
                continue
            if w.in_region(g.item, g.region, resting=False):
                continue
            if w.in_region(g.item, "bin", resting=False) and w.item_upright(g.item):
                continue
            # a task that starts on the shelf: the item still upright on the slot it started on is not misplaced
            on_start = w.task.start == "matching_slot" and w.in_region(g.item, ITEMS[g.item].slot, resting=False)
            if on_start and w.item_upright(g.item):
                continue
            return True
        return False

    def _at_limit(self) -> bool:
        w = self.world
        q = w.qpos14()
        arm = np.ones(len(q), dtype=bool)
        arm[[6, 13]] = False
        near = (q - w.joint_low < LIMIT_MARGIN) | (w.joint_high - q < LIMIT_MARGIN)
        return bool(np.any(near & arm))

    def _pressing(self, t: float) -> bool:
        w = self.world
        if any(w.arm_static_contact(a) for a in ARMS):
            if self._contact_since is None:
                self._contact_since = t
            return t - self._contact_since >= CONTACT_PERSIST_S - 1e-9
        self._contact_since = None
        return False

    def _beside_item(self) -> bool:
        """A tool low beside the free item the expert would grasp next, the item not between its fingers."""
        w = self.world
        cur = self.expert.current_goal() if w.scene == "base" else None
        if cur is None or w.holders(cur[1].item):
            return False
        it = CATALOGUE[cur[1].item]
        c = w.item_pos(it.name)
        for a in ARMS:
            p = w.tcp_pos(a)
            if p[2] >= c[2] + it.half_height + LOW_ABOVE_TOP or np.linalg.norm(p[:2] - c[:2]) >= LOW_RADIUS:
                continue
            rel = w.tcp_mat(a).T @ (c - p)  # item centre in the tool frame (y = closing axis)
            if not (abs(rel[0]) < BETWEEN_X and abs(rel[1]) < it.grasp_half_width + BETWEEN_Y_MARGIN):
                return True
        return False

    def _misaligned(self, t: float) -> bool:
        if self.misaligned_s <= 0 or not self._beside_item():
            self._misaligned_since = None
            return False
        if self._misaligned_since is None:
            self._misaligned_since = t
        return t - self._misaligned_since >= self.misaligned_s - 1e-9

    def _trigger(self, t: float) -> str | None:
        if self._misplaced():
            return "misplaced"
        if self._misaligned(t):
            return "misaligned"
        if self._at_limit():
            return "joint_limit"
        if self._pressing(t):
            return "contact"
        if self._stalled(t):
            return "stall"
        if t - self._t_clock >= self.no_progress_s - 1e-9:
            return "no_progress"
        return None

    def _correction_done(self, t: float, prog: int) -> bool:
        w = self.world
        if w.success():
            return True
        if prog > self._progress_at_takeover:  # new subgoal: hand back once the tools are clear (or after 1 s)
            if self._t_goal is None:
                self._t_goal = t
            clear = all(w.tcp_pos(a)[2] > CLEAR_Z for a in ARMS)
            return clear or t - self._t_goal >= 1.0 - 1e-9
        if t - self._t_engaged >= self.max_correction_s - 1e-9:
            return True
        if self.reason in ("misplaced", "misaligned"):  # done once the item is (back) in hand and lifted
            for g in w.goals:
                if w.held_by(g.item) is not None and w.item_bottom(g.item) > CARRY_BOTTOM - 0.02:
                    return not self._misplaced()
        return False

