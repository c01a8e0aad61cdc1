"""Dual-arm tabletop MuJoCo world (ROS-free): two 6-joint arms with parallel grippers, a bin, a shelf, 3 items.

Layout (metres, table top at z = 0, +y away from the robot):
  * arms: bases at (-0.28, -0.2) ("left") and (+0.28, -0.2) ("right"), pointing +y at zero waist angle;
  * bin: centred at (0, -0.02), inner half extents 0.14 x 0.10, items start inside it in three shuffled lanes;
  * shelf: board top at z = 0.10 centred at y = 0.2; three slots (coloured pads) at x = -0.13, 0, +0.13 matching the
    red can, green box, blue bottle.

The 14-D joint vector (``JOINT_NAMES``) is left arm 6 joints + left gripper, right arm 6 joints + right gripper. Gripper
values are finger positions in metres (0 = closed, ``GRIPPER_OPEN`` = open), the unit of its position actuator, so
``apply(qpos14())`` holds the current pose.
"""

from __future__ import annotations

import math
from types import TracebackType

import mujoco
import numpy as np

from lwd.robot import ARMS, CONTROL_DT, JOINT_NAMES, N_JOINTS
from lwd.sim.gl import log_choice_once
from lwd.sim.tasks import ITEM_NAMES, ITEMS, Goal, ItemSpec, TaskSpec, get_task

__all__ = [
    "N_JOINTS",
    "JOINT_NAMES",
    "ARM_JOINTS",
    "ARMS",
    "CONTROL_DT",
    "GRIPPER_OPEN",
    "SHELF_TOP",
    "SLOTS",
    "BIN_CENTER",
    "BIN_HALF",
    "SimWorld",
    "build_mjcf",
]

TIMESTEP = 0.002
ARM_JOINTS: tuple[str, ...] = ("waist", "shoulder", "elbow", "forearm_roll", "wrist_angle", "wrist_rotate")
assert JOINT_NAMES == tuple(n for a in ARMS for n in [*(f"{a}_{j}" for j in ARM_JOINTS), f"{a}_gripper"])
GRIPPER_OPEN = 0.045

ARM_BASE = {"left": (-0.28, -0.2), "right": (0.28, -0.2)}
BIN_CENTER = (0.0, -0.02)
BIN_HALF = (0.14, 0.10)  # inner half extents
BIN_WALL_H = 0.05
SHELF_TOP = 0.10
SHELF_Y = 0.18
SLOTS: dict[str, tuple[float, float]] = {
    "slot_red": (-0.13, 0.17),
    "slot_green": (0.0, 0.17),
    "slot_blue": (0.13, 0.17),
}
SLOT_HALF = 0.04
SLOT_RGBA = {"slot_red": "0.9 0.35 0.35 1", "slot_green": "0.35 0.85 0.4 1", "slot_blue": "0.4 0.5 0.95 1"}
ITEM_LANES = (-0.085, 0.0, 0.085)
# Item pose offsets around the lane centres at variation 1.0 (deployment): x, y in metres, box yaw in radians.
# Demonstrations are recorded at a narrower variation (PretrainConfig.demo_variation), as a pretrained VLA meets wider
# conditions on deployment than in its demonstrations; the fleet's experience covers the rest.
ITEM_SPREAD = (0.02, 0.05, 0.6)
SLOT_START_SPREAD = 0.012  # x, y offset of an item starting on its slot (tasks with start="matching_slot"), at 1.0
# home: elbow bent, gripper pointing down, beside the bin (well away from the straight-arm singularity)
HOME_ARM = (0.0, -0.3, 2.2, 0.0, math.pi - 1.9, 0.0)
TCP_DEPTH = 0.09  # hand frame z of the tool centre point (1 cm above the finger tips)

# kp, damping, ctrl range per arm joint
_JOINT_PARAMS = {
    "waist": (400.0, 20.0, (-2.6, 2.6)),
    "shoulder": (600.0, 20.0, (-1.6, 1.7)),
    "elbow": (500.0, 15.0, (-0.3, 2.7)),
    "forearm_roll": (150.0, 4.0, (-3.0, 3.0)),
    "wrist_angle": (200.0, 4.0, (-2.2, 2.2)),
    "wrist_rotate": (80.0, 2.0, (-3.0, 3.0)),
}
_JOINT_AXIS = {
    "waist": "0 0 1",
    "shoulder": "-1 0 0",
    "elbow": "-1 0 0",
    "forearm_roll": "0 0 1",
    "wrist_angle": "-1 0 0",
    "wrist_rotate": "0 0 1",
}


def _arm_xml(a: str) -> str:
    bx, by = ARM_BASE[a]
    col = "0.55 0.55 0.6 1" if a == "left" else "0.6 0.55 0.5 1"
    arm_geom = f'contype="2" conaffinity="1" rgba="{col}"'
    pad = (
        'contype="2" conaffinity="1" condim="4" friction="1.5 0.02 0.001" solref="0.004 1" '
        'rgba="0.15 0.15 0.15 1"'
    )

    def j(name: str) -> str:
        kp, damp, (lo, hi) = _JOINT_PARAMS[name]
        return (
            f'<joint name="{a}_{name}" type="hinge" axis="{_JOINT_AXIS[name]}" range="{lo} {hi}" '
            f'damping="{damp}" armature="0.02"/>'
        )

    return f"""
    <body name="{a}_base" pos="{bx} {by} 0" gravcomp="1">
      <geom type="cylinder" size="0.05 0.05" pos="0 0 0.05" {arm_geom}/>
      <body name="{a}_link1" pos="0 0 0.1" gravcomp="1">
        {j("waist")}
        <geom type="sphere" size="0.035" {arm_geom}/>
        <body name="{a}_upper" gravcomp="1">
          {j("shoulder")}
          <geom type="capsule" fromto="0 0 0 0 0 0.28" size="0.028" {arm_geom}/>
          <body name="{a}_fore" pos="0 0 0.28" gravcomp="1">
            {j("elbow")}
            <geom type="capsule" fromto="0 0 0 0 0 0.14" size="0.024" {arm_geom}/>
            <body name="{a}_fore2" pos="0 0 0.14" gravcomp="1">
              {j("forearm_roll")}
              <geom type="capsule" fromto="0 0 0 0 0 0.14" size="0.021" {arm_geom}/>
              <body name="{a}_wrist" pos="0 0 0.14" gravcomp="1">
                {j("wrist_angle")}
                <geom type="capsule" fromto="0 0 0 0 0 0.03" size="0.019" {arm_geom}/>
                <body name="{a}_hand" pos="0 0 0.04" gravcomp="1">
                  {j("wrist_rotate")}
                  <geom name="{a}_palm" type="box" size="0.016 0.058 0.01" pos="0 0 0.01" {arm_geom}/>
                  <site name="{a}_tcp" pos="0 0 {TCP_DEPTH}" size="0.006" rgba="1 1 0 0.0"/>
                  <body name="{a}_finger_a" pos="0 0 0.02" gravcomp="1">
                    <joint name="{a}_gripper" type="slide" axis="0 1 0" range="0 {GRIPPER_OPEN}" damping="3"
                           armature="0.005"/>
                    <geom type="box" size="0.008 0.004 0.02" pos="0 0.01 0.02" {arm_geom}/>
                    <geom name="{a}_pad_a" type="box" size="0.015 0.006 0.0225" pos="0 0.007 0.0575" {pad}/>
                  </body>
                  <body name="{a}_finger_b" pos="0 0 0.02" gravcomp="1">
                    <joint name="{a}_gripper_b" type="slide" axis="0 -1 0" range="0 {GRIPPER_OPEN}" damping="3"
                           armature="0.005"/>
                    <geom type="box" size="0.008 0.004 0.02" pos="0 -0.01 0.02" {arm_geom}/>
                    <geom name="{a}_pad_b" type="box" size="0.015 0.006 0.0225" pos="0 -0.007 0.0575" {pad}/>
                  </body>
                </body>
              </body>
            </body>
          </body>
        </body>
      </body>
    </body>"""


def _item_xml(it: ItemSpec) -> str:
    rgba = " ".join(f"{c:g}" for c in it.rgba)
    common = f'contype="1" conaffinity="3" condim="4" friction="1.0 0.02 0.001" rgba="{rgba}"'
    r, hy, hz = it.half_size
    if it.shape == "box":
        geoms = f'<geom name="{it.name}" type="box" size="{r} {hy} {hz}" mass="0.15" {common}/>'
    elif it.name == "bottle":
        geoms = (
            f'<geom name="{it.name}" type="cylinder" size="{r} {hz}" mass="0.15" {common}/>'
            f'<geom name="{it.name}_neck" type="cylinder" size="0.011 0.01" pos="0 0 {hz + 0.01}" mass="0.01" '
            f"{common}/>"
        )
    else:
        geoms = f'<geom name="{it.name}" type="cylinder" size="{r} {hz}" mass="0.15" {common}/>'
    return f'<body name="{it.name}" pos="0 0 {hz}"><freejoint name="{it.name}_free"/>{geoms}</body>'


def build_mjcf() -> str:
    """Return the world's MJCF text (built from primitives)."""
    bx, by = BIN_CENTER
    hx, hy = BIN_HALF
    t = 0.005
    hz = BIN_WALL_H / 2
    static = 'contype="1" conaffinity="3"'
    wall = f'{static} rgba="0.55 0.4 0.25 1"'
    shelf = f'{static} rgba="0.7 0.6 0.45 1"'
    slots = "".join(
        f'<geom name="{s}" type="box" size="{SLOT_HALF} {SLOT_HALF} 0.001" pos="{x} {y} {SHELF_TOP + 0.001}" '
        f'contype="0" conaffinity="0" rgba="{SLOT_RGBA[s]}"/>'
        for s, (x, y) in SLOTS.items()
    )
    actuators = []
    for a in ARMS:
        for jn in ARM_JOINTS:
            kp, _, (lo, hi) = _JOINT_PARAMS[jn]
            actuators.append(
                f'<position name="{a}_{jn}" joint="{a}_{jn}" kp="{kp}" ctrlrange="{lo} {hi}" '
                f'forcerange="-{kp * 0.25:g} {kp * 0.25:g}"/>'
            )
        actuators.append(
            f'<position name="{a}_gripper" joint="{a}_gripper" kp="1500" ctrlrange="0 {GRIPPER_OPEN}" '
            f'forcerange="-20 20"/>'
        )
    equalities = "".join(
        f'<joint joint1="{a}_gripper_b" joint2="{a}_gripper" polycoef="0 1 0 0 0" solref="0.004 1"/>' for a in ARMS
    )
    return f"""<mujoco model="lwd_dual_arm">
  <compiler angle="radian" autolimits="true"/>
  <option timestep="{TIMESTEP}" integrator="implicitfast" cone="elliptic" impratio="10"/>
  <visual>
    <quality shadowsize="0" numslices="8" numstacks="4" numquads="1"/>
    <global offwidth="320" offheight="320"/>
    <headlight ambient="0.45 0.45 0.45" diffuse="0.5 0.5 0.5" specular="0.05 0.05 0.05"/>
  </visual>
  <default>
    <!-- Stiff joint limits (timeconst = 2 timesteps, impedance up to 0.99): with MuJoCo's default soft limits
         (0.02 s, 0.9-0.95) a servo slammed into a limit, or a finger pushed by a contact, overshot it by up to
         0.12 rad / 0.26 m under +-1e6 commands; now by a few mrad / mm. -->
    <joint solreflimit="{2 * TIMESTEP:g} 1" solimplimit="0.95 0.99 0.001"/>
  </default>
  <worldbody>
    <light pos="0 -0.3 1.5" dir="0 0.2 -1" castshadow="false" diffuse="0.5 0.5 0.5"/>
    <geom name="floor" type="plane" size="2 2 0.1" pos="0 0 -0.75" rgba="0.3 0.3 0.32 1" {static}/>
    <geom name="table" type="box" size="0.6 0.45 0.02" pos="0 0.05 -0.02" rgba="0.82 0.8 0.75 1" {static}/>
    <geom name="bin_front" type="box" size="{hx + 2 * t} {t} {hz}" pos="{bx} {by - hy - t} {hz}" {wall}/>
    <geom name="bin_back" type="box" size="{hx + 2 * t} {t} {hz}" pos="{bx} {by + hy + t} {hz}" {wall}/>
    <geom name="bin_left" type="box" size="{t} {hy} {hz}" pos="{bx - hx - t} {by} {hz}" {wall}/>
    <geom name="bin_right" type="box" size="{t} {hy} {hz}" pos="{bx + hx + t} {by} {hz}" {wall}/>
    <geom name="shelf_board" type="box" size="0.3 0.07 0.01" pos="0 {SHELF_Y} {SHELF_TOP - 0.01}" {shelf}/>
    <geom type="box" size="0.01 0.07 {(SHELF_TOP - 0.02) / 2}" pos="-0.29 {SHELF_Y} {(SHELF_TOP - 0.02) / 2}" {shelf}/>
    <geom type="box" size="0.01 0.07 {(SHELF_TOP - 0.02) / 2}" pos="0.29 {SHELF_Y} {(SHELF_TOP - 0.02) / 2}" {shelf}/>
    <geom name="shelf_back" type="box" size="0.3 0.006 0.09" pos="0 {SHELF_Y + 0.076} {SHELF_TOP + 0.09}" {shelf}/>
    {slots}
    <camera name="overview" pos="0 -0.45 0.70" xyaxes="1 0 0 0 0.8 0.6" fovy="45"/>
    {"".join(_arm_xml(a) for a in ARMS)}
    {"".join(_item_xml(ITEMS[n]) for n in ITEM_NAMES)}
  </worldbody>
  <equality>{equalities}</equality>
  <actuator>{"".join(actuators)}</actuator>
</mujoco>"""


class SimWorld:
    """One robot's simulated world. Not thread-safe; one process steps it, mirrors only ``set_state``.

    Args:
        image_size: side of the square rendered image.
        render: create an offscreen renderer (headless: ``lwd.sim.gl`` picks ``MUJOCO_GL`` = egl, else osmesa).
    """

    def __init__(self, image_size: int = 64, render: bool = True) -> None:
        if image_size <= 0:
            raise ValueError(f"image_size must be positive, got {image_size}")
        self.image_size = int(image_size)
        self.model = mujoco.MjModel.from_xml_string(build_mjcf())
        self.data = mujoco.MjData(self.model)
        m = self.model
        self._n_substeps = max(1, round(CONTROL_DT / m.opt.timestep))
        self.joint_ids = np.array([m.joint(n).id for n in JOINT_NAMES])
        self.qpos_adr = m.jnt_qposadr[self.joint_ids].copy()
        self.dof_adr = m.jnt_dofadr[self.joint_ids].copy()
        self.act_ids = np.array([m.actuator(n).id for n in JOINT_NAMES])
        self.joint_low = m.actuator_ctrlrange[self.act_ids, 0].copy()
        self.joint_high = m.actuator_ctrlrange[self.act_ids, 1].copy()
        self.home_qpos = np.array(list(HOME_ARM) + [GRIPPER_OPEN] + list(HOME_ARM) + [GRIPPER_OPEN], dtype=np.float64)
        self.tcp_site = {a: m.site(f"{a}_tcp").id for a in ARMS}
        self.item_body = {n: m.body(n).id for n in ITEM_NAMES}
        self.item_qadr = {n: int(m.jnt_qposadr[m.joint(f"{n}_free").id]) for n in ITEM_NAMES}
        self.item_vadr = {n: int(m.jnt_dofadr[m.joint(f"{n}_free").id]) for n in ITEM_NAMES}
        self.item_geoms = {
            n: {i for i in range(m.ngeom) if m.geom_bodyid[i] == self.item_body[n]} for n in ITEM_NAMES
        }
        self.pad_geoms = {a: (m.geom(f"{a}_pad_a").id, m.geom(f"{a}_pad_b").id) for a in ARMS}
        body_names = [m.body(int(m.geom_bodyid[i])).name for i in range(m.ngeom)]
        self.arm_geoms = {
            a: {i for i, b in enumerate(body_names) if b.startswith(f"{a}_") and b != f"{a}_base"} for a in ARMS
        }
        self.static_geoms = {i for i in range(m.ngeom) if m.geom_bodyid[i] == 0 and m.geom_contype[i]}
        self.camera_id = m.camera("overview").id
        self._renderer: mujoco.Renderer | None = None
        if render:
            log_choice_once()
            self._renderer = mujoco.Renderer(m, self.image_size, self.image_size)
        self.task: TaskSpec = get_task("pick_place")
        self.goals: tuple[Goal, ...] = ()
        self.instruction = ""
        self.seed = 0
        self.reset("pick_place", 0)

    # ------------------------------------------------------------------ episode
    def reset(self, task: str, seed: int, variation: float = 1.0, target: str | None = None) -> None:
        """Arms to home (small jitter), items shuffled into bin lanes with random offsets and yaw (a task that starts
        on the shelf then moves its goal items onto their own slots); deterministic per (task, seed, variation).
        ``variation`` scales the item pose offsets (``ITEM_SPREAD``; 1.0 = deployment);
        ``target`` names the item of a single-item task (the same scene with another instruction).
        Sets ``task``, ``goals`` and ``instruction``."""
        if not 0.0 <= variation <= 1.5:
            raise ValueError(f"variation must be in [0, 1.5], got {variation}")
        spec = get_task(task)
        rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, 0x1D])
        m, d = self.model, self.data
        mujoco.mj_resetData(m, d)
        q = self.home_qpos.copy()
        arm_mask = np.ones(N_JOINTS, dtype=bool)
        arm_mask[[6, 13]] = False
        q[arm_mask] += rng.uniform(-0.03, 0.03, arm_mask.sum())
        d.qpos[self.qpos_adr] = q
        d.qpos[[m.jnt_qposadr[m.joint(f"{a}_gripper_b").id] for a in ARMS]] = GRIPPER_OPEN
        d.ctrl[self.act_ids] = q
        lanes = rng.permutation(len(ITEM_LANES))
        for k, n in enumerate(ITEM_NAMES):
            it = ITEMS[n]
            sx, sy, syaw = (variation * v for v in ITEM_SPREAD)
            x = ITEM_LANES[lanes[k]] + rng.uniform(-sx, sx)
            y = BIN_CENTER[1] + rng.uniform(-sy, sy)
            yaw = rng.uniform(-syaw, syaw) if it.shape == "box" else rng.uniform(-math.pi, math.pi)
            adr = self.item_qadr[n]
            d.qpos[adr : adr + 3] = (x, y, it.half_height + 0.0005)
            d.qpos[adr + 3 : adr + 7] = (math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2))
        self.goals, self.instruction = spec.resolve(rng, target)
        if spec.start == "matching_slot":  # goal items start on their own slots (draws after the original ones)
            for g in self.goals:
                it = ITEMS[g.item]
                sx, sy = SLOTS[it.slot]
                off = variation * SLOT_START_SPREAD
                yaw = rng.uniform(-ITEM_SPREAD[2], ITEM_SPREAD[2]) * variation if it.shape == "box" else (
                    rng.uniform(-math.pi, math.pi))
                adr = self.item_qadr[g.item]
                d.qpos[adr : adr + 3] = (sx + rng.uniform(-off, off), sy + rng.uniform(-off, off),
                                         SHELF_TOP + it.half_height + 0.0005)
                d.qpos[adr + 3 : adr + 7] = (math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2))
        elif spec.start != "bin":
            raise ValueError(f"task {spec.name!r}: unknown start {spec.start!r}")
        self.task = spec
        self.seed = int(seed)
        self.variation = float(variation)
        mujoco.mj_forward(m, d)

    @property
    def num_subgoals(self) -> int:
        return len(self.goals)

    @property
    def time(self) -> float:
        return float(self.data.time)

    # ------------------------------------------------------------------ control
    def apply(self, target: np.ndarray, duration: float = CONTROL_DT) -> None:
        """Clip a 14-D joint-position target to the limits, set it as actuator ctrl, step ``duration`` seconds.

        Raises:
            ValueError: wrong shape or non-finite entries.
        """
        tgt = np.asarray(target, dtype=np.float64).reshape(-1)
        if tgt.shape != (N_JOINTS,):
            raise ValueError(f"target must have {N_JOINTS} entries, got shape {np.shape(target)}")
        if not np.all(np.isfinite(tgt)):
            raise ValueError("target contains NaN or inf")
        self.data.ctrl[self.act_ids] = np.clip(tgt, self.joint_low, self.joint_high)
        n = max(1, round(duration / self.model.opt.timestep))
        mujoco.mj_step(self.model, self.data, nstep=n)

    def qpos14(self) -> np.ndarray:
        return self.data.qpos[self.qpos_adr].astype(np.float64)

    def qvel14(self) -> np.ndarray:
        return self.data.qvel[self.dof_adr].astype(np.float64)

    # ------------------------------------------------------------------ state mirroring
    @property
    def state_size(self) -> int:
        m = self.model
        return 1 + m.nq + m.nv + m.na + m.nu

    def get_state(self) -> np.ndarray:
        """Flat float64 ``[time, qpos, qvel, act, ctrl]``."""
        d = self.data
        return np.concatenate([[d.time], d.qpos, d.qvel, d.act, d.ctrl]).astype(np.float64)

    def set_state(self, state: np.ndarray) -> None:
        """Restore a ``get_state()`` vector (same model) and run ``mj_forward``.

        Raises:
            ValueError: wrong size.
        """
        s = np.asarray(state, dtype=np.float64).reshape(-1)
        if s.shape != (self.state_size,):
            raise ValueError(f"state must have {self.state_size} entries, got {s.shape}")
        m, d = self.model, self.data
        i = 0
        d.time = s[0]
        i = 1
        for arr, n in ((d.qpos, m.nq), (d.qvel, m.nv), (d.act, m.na), (d.ctrl, m.nu)):
            arr[:] = s[i : i + n]
            i += n
        mujoco.mj_forward(m, d)

    # ------------------------------------------------------------------ rendering
    def render(self) -> np.ndarray:
        """Render the overview camera as uint8 (S, S, 3).

        Raises:
            RuntimeError: the world was created with ``render=False`` or is closed.
        """
        if self._renderer is None:
            raise RuntimeError("SimWorld has no renderer (created with render=False or closed)")
        self._renderer.update_scene(self.data, camera=self.camera_id)
        return self._renderer.render().copy()

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None

    def __enter__(self) -> SimWorld:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __del__(self) -> None:  # best effort; explicit close() is preferred
        try:
            self.close()
        except Exception:  # noqa: BLE001
            pass

    # ------------------------------------------------------------------ geometry queries
    def tcp_pos(self, arm: str) -> np.ndarray:
        return self.data.site_xpos[self.tcp_site[arm]].copy()

    def tcp_mat(self, arm: str) -> np.ndarray:
        return self.data.site_xmat[self.tcp_site[arm]].reshape(3, 3).copy()

    def gripper(self, arm: str) -> float:
        return float(self.data.qpos[self.qpos_adr[6 if arm == "left" else 13]])

    def item_pos(self, name: str) -> np.ndarray:
        return self.data.xpos[self.item_body[name]].copy()

    def item_mat(self, name: str) -> np.ndarray:
        return self.data.xmat[self.item_body[name]].reshape(3, 3).copy()

    def item_yaw(self, name: str) -> float:
        r = self.item_mat(name)
        return math.atan2(r[1, 0], r[0, 0])

    def item_speed(self, name: str) -> float:
        a = self.item_vadr[name]
        return float(np.linalg.norm(self.data.qvel[a : a + 3]))

    def item_upright(self, name: str) -> bool:
        return bool(self.item_mat(name)[2, 2] > 0.9)

    def item_bottom(self, name: str) -> float:
        return float(self.item_pos(name)[2] - ITEMS[name].half_height)

    def _contacts(self) -> list[tuple[int, int]]:
        d = self.data
        return [(int(d.contact[i].geom1), int(d.contact[i].geom2)) for i in range(d.ncon)]

    def held_by(self, name: str) -> str | None:
        """Arm whose two finger pads both touch the item, else None."""
        geoms = self.item_geoms[name]
        touched: dict[str, set[int]] = {a: set() for a in ARMS}
        for g1, g2 in self._contacts():
            for ga, gb in ((g1, g2), (g2, g1)):
                if ga in geoms:
                    for a in ARMS:
                        if gb in self.pad_geoms[a]:
                            touched[a].add(gb)
        for a in ARMS:
            if len(touched[a]) == 2:
                return a
        return None

    def touching_arm(self, name: str) -> bool:
        geoms = self.item_geoms[name]
        arm = self.arm_geoms["left"] | self.arm_geoms["right"]
        return any((g1 in geoms and g2 in arm) or (g2 in geoms and g1 in arm) for g1, g2 in self._contacts())

    def arm_static_contact(self, arm: str) -> bool:
        """True if a link of ``arm`` touches the table, bin or shelf."""
        ag = self.arm_geoms[arm]
        return any(
            (g1 in ag and g2 in self.static_geoms) or (g2 in ag and g1 in self.static_geoms)
            for g1, g2 in self._contacts()
        )

    def in_region(self, name: str, region: str, *, resting: bool = True) -> bool:
        """Item inside a region. ``resting`` additionally requires upright, slow and not touched by an arm."""
        p = self.item_pos(name)
        if region == "bin":
            ok = abs(p[0] - BIN_CENTER[0]) < BIN_HALF[0] and abs(p[1] - BIN_CENTER[1]) < BIN_HALF[1]
            ok = ok and self.item_bottom(name) < 0.02
        else:
            sx, sy = SLOTS[region]
            ok = abs(p[0] - sx) < SLOT_HALF + 0.005 and abs(p[1] - sy) < SLOT_HALF + 0.005
            ok = ok and abs(self.item_bottom(name) - SHELF_TOP) < 0.015
        if ok and resting:
            ok = self.item_upright(name) and self.item_speed(name) < 0.05 and not self.touching_arm(name)
        return bool(ok)

    def goal_done(self, goal: Goal, *, resting: bool = True) -> bool:
        return self.in_region(goal.item, goal.region, resting=resting)

    # ------------------------------------------------------------------ task outcome
    def progress(self) -> int:
        """Number of subgoals currently achieved (items resting in their target region)."""
        return sum(self.goal_done(g) for g in self.goals)

    def success(self) -> bool:
        return self.progress() == len(self.goals)
