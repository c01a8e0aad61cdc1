"""Scripted expert: a state-machine over the *current* world state + damped-least-squares IK (ROS-free).

Every ``act()`` re-derives the phase from the world (which item is unfinished, is it held, where is the tool), so the
expert can take over mid-episode from any state, including on a mirror world driven by ``set_state``:

  held item  -> lift to carry height -> move over its slot -> lower -> open
  free item  -> (rise to travel height) -> above the item -> descend -> close -> (held)
  other arm  -> rise, then go home in joint space

``noise`` scales realistic imperfection: per-subgoal grasp/place offsets, a per-episode speed factor and temporally
correlated joint-target noise. ``noise = 0`` is deterministic.
"""

from __future__ import annotations

import math

import mujoco
import numpy as np

from lwd.sim.tasks import CATALOGUE, Goal
from lwd.sim.world import (
    ARMS,
    BIN_CENTER,
    BIN_WALL_H,
    CONTROL_DT,
    DRAWER_FLOOR,
    DRAWER_HANDLE,
    GRIPPER_OPEN,
    HANDOVER_END_X,
    HANDOVER_POSE,
    ITEM_LANES,
    LOWER_SHELF_Y,
    N_JOINTS,
    SHELF_TOP,
    SLOTS,
    STORE_REGIONS,
    TOP_SHELF_SPOT_Y,
    TOP_SHELF_SPOTS,
    SimWorld,
)

__all__ = ["ScriptedExpert", "DEFAULT_DEMO_NOISE", "arm_slice"]

DEFAULT_DEMO_NOISE = 0.2

GRASP_H = 0.03  # TCP height above the item's bottom when grasping
TRAVEL_Z = 0.22  # TCP height for empty transits
CARRY_BOTTOM = max(SHELF_TOP, BIN_WALL_H) + 0.04  # item bottom height while carrying
V_MAX = 0.35  # m/s Cartesian speed of the commanded tool target
V_SLOW = 0.2  # m/s for the final descent / lowering
V_CREEP = 0.06  # m/s floor of an eased carry (TaskSpec.carry_slowdown)
JOINT_STEP_MAX = 0.35  # rad per control step for joint-space moves
STORE_TRAVEL_Z = 0.28  # store scene: empty transits clear items standing on the top shelf (up to 0.25 m)
STORE_CARRY_BOTTOM = 0.21  # store scene: item bottom while carrying (clears the items on the lower shelf)
STORE_TOP_CARRY = 0.26  # ... and toward the top shelf (clears the items already standing there, up to 0.25 m)
HANDOVER_GRASP = 0.045  # handover: each arm grips the long pack this far from its middle, on its own side
DRAWER_PULL_Q = 0.12  # pull the drawer to this opening (the task counts it open past DRAWER_OPEN_Q)
DRAWER_DROP_Y = -0.04  # item centre in the drawer frame when placed
YAW_SLEW = 0.12  # rad per control step when the wrist turns while carrying


def arm_slice(arm: str) -> slice:
    """Indices of an arm's 6 joints in the 14-D vector (gripper excluded)."""
    return slice(0, 6) if arm == "left" else slice(7, 13)


def _grip_index(arm: str) -> int:
    return 6 if arm == "left" else 13


def _down_frame(yaw: float) -> np.ndarray:
    """Rotation whose z points down and whose y (finger closing axis) has heading ``yaw``."""
    y = np.array([math.cos(yaw), math.sin(yaw), 0.0])
    z = np.array([0.0, 0.0, -1.0])
    x = np.cross(y, z)
    return np.stack([x, y, z], axis=1)


class ScriptedExpert:
    """Joint-position targets for the world's current task, one per ``CONTROL_DT``.

    Args:
        world: the world to read (and whose model is used for IK).
        noise: 0 = clean; ``DEFAULT_DEMO_NOISE`` gives varied, mostly successful demos.
        seed: noise seed.
    """

    def __init__(self, world: SimWorld, noise: float = 0.0, seed: int = 0) -> None:
        if noise < 0:
            raise ValueError(f"noise must be >= 0, got {noise}")
        self.world = world
        self.noise = float(noise)
        self.seed = int(seed)
        self._ik_model = world.model
        self._ik_data = mujoco.MjData(world.model)
        self.home_tcp = self._home_tcp()
        self.phase = "idle"
        self.reset()

    def reset(self) -> None:
        self._rng = np.random.default_rng([self.seed & 0xFFFFFFFF, 0xE7])
        self._offsets: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._jnoise = np.zeros(N_JOINTS)
        self._blocked = 0  # control steps the descent made no headway (finger landed on something)
        self._speed = float(np.clip(1.0 + 0.25 * self.noise * self._rng.standard_normal(), 0.6, 1.4))
        self._spots: dict[int, tuple[float, float]] = {}
        self.phase = "idle"

    # ------------------------------------------------------------------ decisions
    def current_goal(self) -> tuple[int, Goal] | None:
        """(index, goal) of the subgoal to work on: a held unfinished item first, else the first unfinished one."""
        w = self.world
        pending = [(i, g) for i, g in enumerate(w.goals) if not self._goal_done(g)]
        for i, g in pending:
            if w.held_by(g.item) is not None:
                return i, g
        return pending[0] if pending else None

    def _goal_done(self, g: Goal) -> bool:
        w = self.world
        if w.scene != "base":
            if g.region.startswith(("hand:", "drawer:")):
                return w.goal_done(g)
            upright = g.region == "drawer" or w.item_upright(g.item)  # fruit may lie on its side in the drawer
            return (w.goal_done(g, resting=False) and upright and not w.holders(g.item)
                    and not self._releasing(g.item))
        return w.in_region(g.item, g.region, resting=False) and w.item_upright(g.item) and w.held_by(g.item) is None

    def arm_for(self, g: Goal) -> str:
        w = self.world
        held = w.held_by(g.item)
        if held is not None:
            return held
        if w.scene != "base":
            return self._store_arm(g)
        if g.region in SLOTS and abs(SLOTS[g.region][0]) > 0.05:
            return "left" if SLOTS[g.region][0] < 0 else "right"
        return "left" if w.item_pos(g.item)[0] < 0 else "right"

    def _offsets_for(self, idx: int) -> tuple[np.ndarray, np.ndarray]:
        if idx not in self._offsets:
            s = 0.012 * self.noise
            grasp = self._rng.normal(0.0, s, 3) * np.array([1.0, 1.0, 0.5])
            place = self._rng.normal(0.0, s, 2)
            self._offsets[idx] = (grasp, place)
        return self._offsets[idx]

    # ------------------------------------------------------------------ act
    def act(self, obs: object = None) -> np.ndarray:
        """Next 14-D joint-position target computed from the current world state (``obs`` is ignored)."""
        w = self.world
        if w.model is not self._ik_model:  # the world switched scenes
            self._ik_model = w.model
            self._ik_data = mujoco.MjData(w.model)
            self.home_tcp = self._home_tcp()
        q = w.qpos14()
        target = q.copy()
        cur = self.current_goal()
        active: set[str] = set()
        if cur is not None:
            idx, g = cur
            if w.scene != "base":
                active = self._act_store(idx, g, q, target)
            else:
                active = {self.arm_for(g)}
                self._act_arm(self.arm_for(g), idx, g, q, target)
        else:
            self.phase = "done"
        for arm in ARMS:
            if arm not in active:
                self._idle_arm(arm, q, target)
        if self.noise > 0:
            self._jnoise = 0.7 * self._jnoise + 0.3 * self._rng.normal(0.0, 0.05 * self.noise, N_JOINTS)
            self._jnoise[[6, 13]] = 0.0
            target = target + self._jnoise
        return np.clip(target, w.joint_low, w.joint_high)

    def _home_tcp(self) -> dict[str, np.ndarray]:
        w, d = self.world, self._ik_data
        d.qpos[:] = w.data.qpos
        d.qpos[w.qpos_adr] = w.home_qpos
        mujoco.mj_kinematics(w.model, d)
        return {a: d.site_xpos[w.tcp_site[a]].copy() for a in ARMS}

    def _idle_arm(self, arm: str, q: np.ndarray, target: np.ndarray) -> None:
        """Rise to travel height, cross to above the home tool position, then settle home in joint space."""
        w = self.world
        p = w.tcp_pos(arm)
        home = w.home_qpos
        sl = arm_slice(arm)
        target[_grip_index(arm)] = GRIPPER_OPEN
        far = float(np.linalg.norm(p[:2] - self.home_tcp[arm][:2])) > 0.04
        if far and p[2] < self._travel_z - 0.01:
            goal = np.array([p[0], p[1], self._travel_z])
            target[sl] = self._ik_step(arm, q, goal, self._tcp_yaw(arm))
        elif far:
            goal = np.array([*self.home_tcp[arm][:2], self._travel_z])
            target[sl] = self._ik_step(arm, q, goal, self._tcp_yaw(arm))
        else:
            step = np.clip(home[sl] - q[sl], -JOINT_STEP_MAX, JOINT_STEP_MAX)
            target[sl] = q[sl] + step

    def _act_arm(self, arm: str, idx: int, g: Goal, q: np.ndarray, target: np.ndarray) -> None:
        w = self.world
        store = w.scene != "base"
        it = CATALOGUE[g.item]
        grasp_off, place_off = self._offsets_for(idx)
        p = w.tcp_pos(arm)
        c = w.item_pos(g.item)
        bottom = c[2] - it.half_height
        grip = w.gripper(arm)
        gi = _grip_index(arm)
        held = arm in w.holders(g.item) if store else w.held_by(g.item) == arm
        if held:
            off = p - c
            yaw = self._tcp_yaw(arm)
            carry_bottom = CARRY_BOTTOM
            if store:
                dest_xy, rest_bottom, place_yaw = self._store_dest(arm, idx, g)
                dest_xy = dest_xy + place_off
                carry_bottom = STORE_TOP_CARRY if g.region == "top_shelf" else STORE_CARRY_BOTTOM
                if place_yaw is not None:
                    err = _wrap(self._nearest_yaw(place_yaw, yaw) - yaw)
                    aligned = abs(err) < 0.05
                    yaw = yaw + float(np.clip(err, -YAW_SLEW, YAW_SLEW))
            elif g.region in SLOTS:
                dest_xy = np.array(SLOTS[g.region]) + place_off
                rest_bottom = SHELF_TOP
            else:  # "bin"
                dest_xy = self._bin_drop_xy(g.item) + place_off
                rest_bottom = 0.0
            dxy = float(np.linalg.norm(c[:2] - dest_xy))
            lowering = bottom < carry_bottom - 0.01
            over = dxy < (0.02 if lowering else 0.008) and (not store or place_yaw is None or aligned or lowering)
            target[gi] = 0.0
            if not over:
                if bottom < carry_bottom - 0.015 and dxy > 0.03:
                    self.phase = "lift"
                    item_goal = np.array([c[0], c[1], carry_bottom + it.half_height])
                else:
                    self.phase = "carry"
                    item_goal = np.array([dest_xy[0], dest_xy[1], carry_bottom + it.half_height])
                v = V_MAX
                if w.task.carry_slowdown > 0:  # ease into the drop point: an abrupt stop can fling the item out
                    v = min(V_MAX, max(V_CREEP, w.task.carry_slowdown * dxy))
            elif bottom - rest_bottom > 0.006:
                self.phase = "lower"
                item_goal = np.array([dest_xy[0], dest_xy[1], rest_bottom + it.half_height + 0.002])
                v = V_SLOW
            else:
                self.phase = "release"
                item_goal = c
                target[gi] = GRIPPER_OPEN
                v = V_SLOW
            target[arm_slice(arm)] = self._ik_step(arm, q, item_goal + off, yaw, v)
            return
        # free item: approach, descend, close
        if store and self._releasing(g.item) == arm and w.goal_done(g, resting=False):
            self.phase = "release"  # just put down: open fully before moving away
            target[gi] = GRIPPER_OPEN
            target[arm_slice(arm)] = q[arm_slice(arm)]
            return
        yaw = self._grasp_yaw(arm, g.item)
        gc = c
        grasp_h = GRASP_H
        if store:
            gc = self._grasp_centre(arm, g)
            grasp_h = min(GRASP_H, max(0.018, 0.45 * 2 * it.half_height))
        grasp = np.array([gc[0], gc[1], bottom + grasp_h]) + grasp_off
        if store and self._in_air(g.item):
            grasp[2] = c[2] + 0.006  # an item held out by the other arm: grip it around its middle height
        above = np.array([grasp[0], grasp[1], max(self._travel_z, grasp[2] + 0.08)])
        dxy = float(np.linalg.norm(p[:2] - grasp[:2]))
        rel = w.tcp_mat(arm).T @ (gc - p)  # grasp centre in the tool frame (y = closing axis)
        between = abs(rel[0]) < 0.025 and abs(rel[1]) < it.grasp_half_width + 0.012 and -0.06 < rel[2] < 0.03
        if grip < GRIPPER_OPEN - 0.006:
            if between and grip > it.grasp_half_width - 0.008:
                self.phase = "close"
                target[gi] = 0.0
                target[arm_slice(arm)] = self._ik_step(arm, q, p, yaw, V_SLOW)
            else:
                self.phase = "reopen"
                target[gi] = GRIPPER_OPEN
                up = np.array([p[0], p[1], min(p[2] + 0.04, self._travel_z)])
                target[arm_slice(arm)] = self._ik_step(arm, q, up, self._tcp_yaw(arm), V_SLOW)
            return
        self.phase, goal, v = self._reach_down(p, grasp, above, dxy, "close")
        target[gi] = 0.0 if self.phase == "close" else GRIPPER_OPEN
        if self.phase == "descend":
            # a finger resting on the item (or a neighbour) stops the descent: retry with a fresh, smaller offset
            self._blocked = self._blocked + 1 if w.qvel14()[arm_slice(arm)].__abs__().max() < 0.05 else 0
            if self._blocked >= 5:
                self._blocked = 0
                self._offsets[idx] = (0.5 * self._offsets_for(idx)[0] + self._retry_jitter(), self._offsets[idx][1])
                goal, v = np.array([p[0], p[1], above[2]]), V_MAX
        target[arm_slice(arm)] = self._ik_step(arm, q, goal, yaw, v)

    @staticmethod
    def _reach_down(p: np.ndarray, grasp: np.ndarray, above: np.ndarray, dxy: float,
                    close_phase: str) -> tuple[str, np.ndarray, float]:
        """(phase, tool goal, speed) of an open gripper going for ``grasp`` from ``above``: approach at travel
        height, descend once over it, rise first when low and off to the side, ``close_phase`` once there."""
        low = p[2] < above[2] - 0.015
        if dxy < 0.006 and abs(p[2] - grasp[2]) < 0.006:
            return close_phase, grasp, V_SLOW
        if dxy < (0.02 if low else 0.008):
            return "descend", grasp, V_SLOW
        if low and dxy > 0.03:
            return "rise", np.array([p[0], p[1], above[2]]), V_MAX
        return "approach", above, V_MAX

    # ------------------------------------------------------------------ store scene (handover, drawer, stack, semantic)
    @property
    def _travel_z(self) -> float:
        return TRAVEL_Z if self.world.scene == "base" else STORE_TRAVEL_Z

    def _releasing(self, item: str) -> str | None:
        """Store: an arm whose tool is at the item and whose fingers are not open yet (it must open fully before it
        moves away, or a finger drags the item along)."""
        w = self.world
        c = w.item_pos(item)
        for a in ARMS:
            if w.gripper(a) < GRIPPER_OPEN - 0.004 and float(np.linalg.norm(w.tcp_pos(a) - c)) < 0.07:
                return a
        return None

    def _in_air(self, item: str) -> bool:
        return bool(self.world.holders(item))

    def _hands(self) -> tuple[str, str]:
        hands = [g.region[5:] for g in self.world.goals if g.region.startswith("hand:")]
        return hands[0], hands[1]

    def _store_arm(self, g: Goal) -> str:
        w = self.world
        r = g.region
        if r.startswith("hand:"):
            return r[5:]
        if r.startswith("shelf_"):
            return r[6:]
        if r.startswith("drawer"):
            return "right"
        x = float(w.item_pos(g.item)[0])
        if r == "top_shelf":
            # free spots per side, less the other pending items that stand on that side (each arm serves its side)
            room = {a: len(self._free_spots(a, g.item)) for a in ARMS}
            for o in w.goals:
                ox = float(w.item_pos(o.item)[0])
                if o.item != g.item and o.region == "top_shelf" and not self._goal_done(o) and abs(ox) >= 0.05:
                    room["left" if ox < 0 else "right"] -= 1
            side = "left" if x < 0 else "right"
            if abs(x) < 0.05:
                side = "left" if room["left"] > room["right"] else "right"
            return side if room[side] > 0 or abs(x) >= 0.05 else ("right" if side == "left" else "left")
        return "left" if x < 0 else "right"

    def _free_spots(self, arm: str, item: str) -> list[float]:
        w = self.world
        others = [w.item_pos(n) for n in w.present_items() if n != item]
        return [
            x for x in TOP_SHELF_SPOTS[arm]
            if all(float(np.hypot(o[0] - x, o[1] - TOP_SHELF_SPOT_Y)) > 0.06 for o in others)
        ]

    def _store_dest(self, arm: str, idx: int, g: Goal) -> tuple[np.ndarray, float, float | None]:
        """(item centre xy to put it down at, the height its bottom rests at, wrist yaw to turn to or None)."""
        w = self.world
        r = g.region
        if r == "top_shelf":
            if idx not in self._spots:
                free = self._free_spots(arm, g.item) or list(TOP_SHELF_SPOTS[arm])
                self._spots[idx] = (free[0], TOP_SHELF_SPOT_Y)
            return np.array(self._spots[idx]), STORE_REGIONS["top_shelf"][2], None
        if r == "bin":
            if idx not in self._spots:
                self._spots[idx] = tuple(self._store_bin_xy(arm, g.item))
            return np.array(self._spots[idx]), 0.0, None
        if r == "drawer":
            o = w.drawer_origin()
            return np.array([o[0], o[1] + DRAWER_DROP_Y]), DRAWER_FLOOR, 0.0
        if r.startswith("on:"):
            base = r[3:]
            return w.item_pos(base)[:2], float(w.item_pos(base)[2] + CATALOGUE[base].half_height), None
        if r.startswith("shelf_"):
            side = -1.0 if r == "shelf_left" else 1.0
            return np.array([side * HANDOVER_END_X, LOWER_SHELF_Y]), SHELF_TOP, None
        raise ValueError(f"no destination for region {r!r}")

    def _store_bin_xy(self, arm: str, item: str) -> np.ndarray:
        """Store: where to set ``item`` down in the bin, packed from ``arm``'s side: the spot nearest that side's wall
        that clears the items already there (footprints, plus the open fingers along the closing axis)."""
        w = self.world
        ex, ey = w.footprint(item)
        ex, ey = max(ex, 0.016), max(ey, 0.058)  # the open fingers reach 5.8 cm along y (the closing axis)
        others = [(w.item_pos(n), w.footprint(n)) for n in w.present_items()
                  if n != item and w.in_region(n, "bin", resting=False)]
        bx, by = BIN_CENTER
        xs = np.arange(bx - 0.14 + ex + 0.01, bx + 0.14 - ex - 0.01 + 1e-9, 0.005)
        if arm == "right":
            xs = xs[::-1]
        best, best_sep = np.array([bx, by]), -np.inf
        for y in (by, by - 0.015, by + 0.015):
            for x in xs:
                sep = min((max(abs(x - p[0]) - ex - f[0], abs(y - p[1]) - ey - f[1]) for p, f in others),
                          default=1.0)
                if sep >= 0.012:
                    return np.array([x, y])
                if sep > best_sep:
                    best, best_sep = np.array([x, y]), sep
        return best

    def _grasp_centre(self, arm: str, g: Goal) -> np.ndarray:
        """Where to grip: the item's centre, or for the handover pack the half on ``arm``'s side."""
        w = self.world
        c = w.item_pos(g.item)
        if not any(x.region.startswith("hand:") for x in w.goals):
            return c
        u = w.item_mat(g.item)[:, 0]
        side = -1.0 if arm == "left" else 1.0
        if u[0] * side < 0:
            u = -u
        return c + HANDOVER_GRASP * u

    def _act_store(self, idx: int, g: Goal, q: np.ndarray, target: np.ndarray) -> set[str]:
        """One step of the store tasks; returns the arms driven (the others idle)."""
        w = self.world
        r = g.region
        if r.startswith("hand:"):
            giver, receiver = self._hands()
            holders = w.holders(g.item)
            if r[5:] == giver or giver not in holders:
                self._act_arm(giver, idx, g, q, target)  # the giver picks it up at its end
                return {giver}
            at = self._hold_out(giver, g, q, target)
            if at or w.tcp_pos(receiver)[2] < HANDOVER_POSE[2] + 0.1:
                self.phase = "handover"
                self._act_arm(receiver, idx, g, q, target)
            else:
                self._idle_arm(receiver, q, target)
            return {giver, receiver}
        if r.startswith("shelf_") and any(x.region.startswith("hand:") for x in w.goals):
            giver, receiver = self._hands()
            holders = w.holders(g.item)
            if giver in holders and receiver in holders:  # the giver lets go (idle arm opens); receiver holds on
                self.phase = "let_go"
                target[_grip_index(receiver)] = 0.0
                return {receiver}
            self._act_arm(receiver, idx, g, q, target)
            return {receiver}
        if r in ("drawer:open", "drawer:closed"):
            self._drawer("right", r == "drawer:open", q, target)
            return {"right"}
        arm = self.arm_for(g)
        self._act_arm(arm, idx, g, q, target)
        return {arm}

    def _hold_out(self, arm: str, g: Goal, q: np.ndarray, target: np.ndarray) -> bool:
        """Carry the held pack to the handover pose and hold it there; True once it is there and still."""
        w = self.world
        it = CATALOGUE[g.item]
        c = w.item_pos(g.item)
        p = w.tcp_pos(arm)
        hx, hy, hb = HANDOVER_POSE
        goal = np.array([hx, hy, hb + it.half_height])
        target[_grip_index(arm)] = 0.0
        d = float(np.linalg.norm(goal - c))
        if c[2] - it.half_height < hb - 0.015 and float(np.linalg.norm(goal[:2] - c[:2])) > 0.03:
            goal = np.array([c[0], c[1], goal[2]])  # lift first
        v = min(V_MAX, max(V_CREEP, 2.5 * d))
        target[arm_slice(arm)] = self._ik_step(arm, q, goal + (p - c), self._tcp_yaw(arm), v)
        return d < 0.012 and w.item_speed(g.item) < 0.03

    def _drawer(self, arm: str, want_open: bool, q: np.ndarray, target: np.ndarray) -> None:
        """Grip the drawer's handle post from above and pull it open / push it closed."""
        w = self.world
        h = w.handle_pos()
        p = w.tcp_pos(arm)
        grip = w.gripper(arm)
        gi = _grip_index(arm)
        yaw = self._nearest_yaw(0.0, self._tcp_yaw(arm))  # fingers close along x, on the post's sides
        grasp = np.array([h[0], h[1], DRAWER_HANDLE[2] + 0.005])
        above = np.array([grasp[0], grasp[1], self._travel_z])
        dxy = float(np.linalg.norm(p[:2] - grasp[:2]))
        on_handle = dxy < 0.015 and abs(p[2] - grasp[2]) < 0.015
        if grip < GRIPPER_OPEN - 0.006:
            if on_handle and grip > 0.003:
                target[gi] = 0.0
                if grip > 0.016:  # still closing on the post
                    self.phase = "grip_handle"
                    goal, v = p, V_SLOW
                else:
                    q_target = DRAWER_PULL_Q if want_open else -0.02
                    self.phase = "pull" if want_open else "push"
                    goal = p + np.array([0.0, w.drawer_q() - q_target, 0.0])
                    goal[2] = grasp[2]
                    goal[0] = grasp[0]
                    v = V_SLOW
            else:
                self.phase = "reopen"
                target[gi] = GRIPPER_OPEN
                goal, v = np.array([p[0], p[1], min(p[2] + 0.04, self._travel_z)]), V_SLOW
                yaw = self._tcp_yaw(arm)
            target[arm_slice(arm)] = self._ik_step(arm, q, goal, yaw, v)
            return
        self.phase, goal, v = self._reach_down(p, grasp, above, dxy, "grip_handle")
        target[gi] = 0.0 if self.phase == "grip_handle" else GRIPPER_OPEN
        target[arm_slice(arm)] = self._ik_step(arm, q, goal, yaw, v)

    @staticmethod
    def _nearest_yaw(base: float, cur: float) -> float:
        """``base`` or ``base + pi`` (a parallel gripper is symmetric), whichever is nearer ``cur``."""
        a, b = base, base + math.pi
        return a if abs(_wrap(a - cur)) <= abs(_wrap(b - cur)) else b

    def _retry_jitter(self) -> np.ndarray:
        return self._rng.normal(0.0, 0.004, 3) * np.array([1.0, 1.0, 0.0])

    # ------------------------------------------------------------------ geometry helpers
    def _bin_drop_xy(self, item: str) -> np.ndarray:
        """Where to set ``item`` down in the bin: the lane centre farthest from the other items in the bin (the free
        lane), so the fingers do not land on a neighbour."""
        w = self.world
        others = [w.item_pos(n)[:2] for n in w.items if n != item and w.in_region(n, "bin", resting=False)]
        lanes = [np.array([BIN_CENTER[0] + x, BIN_CENTER[1]]) for x in ITEM_LANES]
        if not others:
            return lanes[len(lanes) // 2]
        return max(lanes, key=lambda p: min(float(np.linalg.norm(p - o)) for o in others))

    def _tcp_yaw(self, arm: str) -> float:
        y = self.world.tcp_mat(arm)[:, 1]
        return math.atan2(y[1], y[0])

    def _grasp_yaw(self, arm: str, item: str) -> float:
        """Closing-axis heading for the item, choosing the 180-degree-symmetric option nearest the current one."""
        it = CATALOGUE[item]
        base = self.world.item_yaw(item) + math.pi / 2 if it.shape == "box" else math.pi / 2
        cur = self._tcp_yaw(arm)
        best = base
        for k in (-2, -1, 0, 1, 2):
            cand = base + k * math.pi
            if abs(_wrap(cand - cur)) < abs(_wrap(best - cur)) - 1e-9:
                best = cand
        return cur + _wrap(best - cur)

    def _ik_step(
        self, arm: str, q14: np.ndarray, goal: np.ndarray, yaw: float, v: float = V_MAX
    ) -> np.ndarray:
        """Joint target for the arm: move the tool toward ``goal`` by at most one step of speed ``v``."""
        p = self.world.tcp_pos(arm)
        delta = goal - p
        dist = float(np.linalg.norm(delta))
        max_step = v * self._speed * CONTROL_DT
        cmd = p + delta * (max_step / dist) if dist > max_step else goal.copy()
        return self.solve_ik(arm, q14, cmd, yaw)

    def solve_ik(self, arm: str, q14: np.ndarray, pos: np.ndarray, yaw: float, iters: int = 12) -> np.ndarray:
        """Damped-least-squares IK (mj_jacSite) for the tool pose (position + pointing down with ``yaw``)."""
        w = self.world
        m, d = w.model, self._ik_data
        d.qpos[:] = w.data.qpos
        sl = arm_slice(arm)
        adr = w.qpos_adr[sl]
        dof = w.dof_adr[sl]
        lo, hi = w.joint_low[sl], w.joint_high[sl]
        q = q14[sl].copy()
        rd = _down_frame(yaw)
        site = w.tcp_site[arm]
        jp = np.zeros((3, m.nv))
        jr = np.zeros((3, m.nv))
        lam2 = 1e-3
        for _ in range(iters):
            d.qpos[adr] = q
            mujoco.mj_kinematics(m, d)
            mujoco.mj_comPos(m, d)
            r = d.site_xmat[site].reshape(3, 3)
            ep = pos - d.site_xpos[site]
            er = 0.5 * sum(np.cross(r[:, i], rd[:, i]) for i in range(3))
            err = np.concatenate([ep, 0.5 * er])
            if np.linalg.norm(ep) < 1e-4 and np.linalg.norm(er) < 1e-3:
                break
            mujoco.mj_jacSite(m, d, jp, jr, site)
            jac = np.vstack([jp[:, dof], 0.5 * jr[:, dof]])
            dq = jac.T @ np.linalg.solve(jac @ jac.T + lam2 * np.eye(6), err)
            dq = np.clip(dq, -0.3, 0.3)
            q = np.clip(q + dq, lo, hi)
        return q


def _wrap(a: float) -> float:
    return (a + math.pi) % (2 * math.pi) - math.pi
