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

import logging
import math
from types import TracebackType

import mujoco
import numpy as np

from lwd.robot import ARMS, CONTROL_DT, JOINT_NAMES, N_JOINTS, check_cameras
from lwd.sim.gl import log_choice_once
from lwd.sim.tasks import CATALOGUE, ITEM_NAMES, ITEMS, Goal, ItemSpec, TaskSpec, get_task

_log = logging.getLogger("lwd.sim.world")
_UNSTABLE = (mujoco.mjtWarning.mjWARN_BADQPOS, mujoco.mjtWarning.mjWARN_BADQVEL, mujoco.mjtWarning.mjWARN_BADQACC)

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
    "scene_goals",
    "scene_rng",
    "build_mjcf",
    "SCENES",
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

# ---- the "store" scene (tasks of issue 7: handover, drawer, stack, semantic): the base layout plus a top shelf tier,
# a drawer cabinet right of the shelf and the whole catalogue. A separate model, so the base scene stays bit-identical.
SCENES = ("base", "store")
TOP_SHELF_TOP = 0.16  # the upper tier: a step on the back of the shelf board
TOP_SHELF_Y = (0.215, 0.29)
SHELF_X = (-0.29, 0.29)
# regions (x range, y range, level z of the surface an item rests on)
STORE_REGIONS: dict[str, tuple[tuple[float, float], tuple[float, float], float]] = {
    "top_shelf": ((-0.295, 0.295), (0.222, 0.285), TOP_SHELF_TOP),
    "bottom_shelf": ((-0.295, 0.295), (0.115, 0.208), SHELF_TOP),
    "shelf_left": ((-0.29, -0.06), (0.115, 0.208), SHELF_TOP),
    "shelf_right": ((0.06, 0.29), (0.115, 0.208), SHELF_TOP),
}
TOP_SHELF_SPOTS = {"left": (-0.245, -0.155), "right": (0.245, 0.155)}  # where the expert puts items, outer first
TOP_SHELF_SPOT_Y = 0.25
LOWER_SHELF_LINE = (-0.24, -0.12, 0.0, 0.12, 0.24)  # semantic start positions on the lower shelf, at y below
LOWER_SHELF_Y = 0.145
HANDOVER_END_X = 0.19  # a handover item starts / ends centred this far from the middle, on the lower shelf
HANDOVER_POSE = (0.0, 0.02, 0.20)  # item centre x, y and bottom z where the giver holds it out
DRAWER_POS = (0.44, 0.17)  # drawer body origin when closed (slides toward -y, the robot)
DRAWER_OPEN_Q = 0.10  # open enough to put an item in
DRAWER_CLOSED_Q = 0.005
DRAWER_MAX_Q = 0.13
DRAWER_FLOOR = 0.012  # tray floor top
DRAWER_INNER = (0.074, (-0.094, 0.08))  # tray interior: half x, local y range
DRAWER_HANDLE = (0.0, -0.101, 0.115)  # handle post centre in the drawer frame
STORE_CAMERA = '<camera name="overview" pos="0.1 -0.3 1.15" xyaxes="1 0 0 0 0.94 0.34" fovy="48"/>'
# A camera on each hand, beside the palm, looking along the fingers and tilted toward the grasp (as the wrist
# cameras of ALOHA-style arms): the item's pose between the fingers, which the overview shows in a few pixels.
# Cameras have no dynamics: the state and the overview image are unchanged.
WRIST_CAMERA = ('<camera name="{a}_wrist" pos="0.045 0 -0.005" xyaxes="0 1 0 0.940 0 0.342" fovy="80"/>')
PARK_Y = 0.3  # unused catalogue items rest on the floor under the table (hidden by the table top)

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
                  {WRIST_CAMERA.format(a=a)}
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


def _store_xml() -> str:
    """The store scene's extra static geometry and the drawer (a body with a slide joint)."""
    shelf = 'contype="1" conaffinity="3" rgba="0.7 0.6 0.45 1"'
    cab = 'contype="1" conaffinity="3" rgba="0.5 0.55 0.62 1"'
    tray = 'contype="1" conaffinity="3" rgba="0.62 0.68 0.75 1"'
    y0, y1 = TOP_SHELF_Y
    ry, rh = (y0 + y1) / 2, (y1 - y0) / 2
    hx, hy = DRAWER_POS
    hcx, hcy = hx, hy + 0.005  # housing centre (its front face at y = 0.075)
    fx, fy, fz = DRAWER_HANDLE
    return f"""
    <geom name="shelf_board_back" type="box" size="0.3 0.02 0.01" pos="0 {y1 - 0.02} {SHELF_TOP - 0.01}" {shelf}/>
    <geom name="shelf_top" type="box" size="0.3 {rh} {(TOP_SHELF_TOP - SHELF_TOP) / 2}"
          pos="0 {ry} {(TOP_SHELF_TOP + SHELF_TOP) / 2}" rgba="0.62 0.52 0.38 1" contype="1" conaffinity="3"/>
    <geom name="shelf_lip" type="box" size="0.3 0.006 0.005" pos="0 {y1 + 0.006} {TOP_SHELF_TOP + 0.005}" {shelf}/>
    <geom name="cab_top" type="box" size="0.095 0.1 0.005" pos="{hcx} {hcy} 0.097" {cab}/>
    <geom name="cab_left" type="box" size="0.005 0.1 0.046" pos="{hcx - 0.09} {hcy} 0.046" {cab}/>
    <geom name="cab_right" type="box" size="0.005 0.1 0.046" pos="{hcx + 0.09} {hcy} 0.046" {cab}/>
    <geom name="cab_back" type="box" size="0.095 0.005 0.046" pos="{hcx} {hcy + 0.095} 0.046" {cab}/>
    <body name="drawer" pos="{hx} {hy} 0">
      <joint name="drawer_slide" type="slide" axis="0 -1 0" range="0 {DRAWER_MAX_Q}" damping="4" frictionloss="0.3"
             armature="0.05"/>
      <geom name="drawer_floor" type="box" size="0.078 0.0925 0.004" pos="0 -0.0075 0.008" mass="0.3" {tray}/>
      <geom type="box" size="0.004 0.0925 0.022" pos="-0.078 -0.0075 0.034" mass="0.05" {tray}/>
      <geom type="box" size="0.004 0.0925 0.022" pos="0.078 -0.0075 0.034" mass="0.05" {tray}/>
      <geom type="box" size="0.078 0.004 0.022" pos="0 0.085 0.034" mass="0.05" {tray}/>
      <geom name="drawer_front" type="box" size="0.092 0.006 0.043" pos="0 -0.101 0.047" mass="0.1" {cab}/>
      <geom name="drawer_handle" type="box" size="0.01 0.006 0.025" pos="{fx} {fy} {fz}" mass="0.02"
            contype="1" conaffinity="3" friction="1.5 0.02 0.001" rgba="0.2 0.2 0.22 1"/>
    </body>"""


def build_mjcf(scene: str = "base") -> str:
    """Return the world's MJCF text (built from primitives) for ``scene`` (``SCENES``).

    ``"base"`` is the original scene, unchanged (tests pin its rendered image and state); ``"store"`` adds the
    upper shelf tier, the drawer cabinet and every catalogue item, and looks from a wider camera."""
    if scene not in SCENES:
        raise ValueError(f"unknown scene {scene!r}; known: {', '.join(SCENES)}")
    store = scene == "store"
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
    items = {n: ITEMS[n] for n in ITEM_NAMES} if not store else CATALOGUE
    back = (f'<geom name="shelf_back" type="box" size="0.3 0.006 0.09" pos="0 {SHELF_Y + 0.076} {SHELF_TOP + 0.09}" '
            f'{shelf}/>')
    camera = '<camera name="overview" pos="0 -0.45 0.70" xyaxes="1 0 0 0 0.8 0.6" fovy="45"/>'
    exclude = ""
    if store:
        back = _store_xml()
        camera = STORE_CAMERA
        exclude = '\n  <contact><exclude body1="world" body2="drawer"/></contact>'
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
    {back}
    {slots}
    {camera}
    {"".join(_arm_xml(a) for a in ARMS)}
    {"".join(_item_xml(items[n]) for n in items)}
  </worldbody>{exclude}
  <equality>{equalities}</equality>
  <actuator>{"".join(actuators)}</actuator>
</mujoco>"""


_STATE_SIZES: dict[int, str] = {}


def scene_rng(seed: int) -> np.random.Generator:
    """The generator ``SimWorld.reset`` draws a scene from (arm jitter, item poses, then the task's goals)."""
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, 0x1D])


def _arm_jitter(rng: np.random.Generator) -> np.ndarray:
    """Home-pose jitter of the 12 arm joints (the grippers start open), the first draws of every reset."""
    return rng.uniform(-0.03, 0.03, N_JOINTS - 2)


def _base_layout(rng: np.random.Generator, variation: float) -> dict[str, tuple[float, float, float]]:
    """Base scene: (x, y, yaw) of each item in the bin, drawn in ``ITEM_NAMES`` order (the draws of v0's scenes)."""
    lanes = rng.permutation(len(ITEM_LANES))
    out: dict[str, tuple[float, float, float]] = {}
    for k, n in enumerate(ITEM_NAMES):
        sx, sy, syaw = (variation * v for v in ITEM_SPREAD)
        x = ITEM_LANES[lanes[k]] + rng.uniform(-sx, sx)
        y = BIN_CENTER[1] + rng.uniform(-sy, sy)
        yaw = rng.uniform(-syaw, syaw) if ITEMS[n].shape == "box" else rng.uniform(-math.pi, math.pi)
        out[n] = (x, y, yaw)
    return out


def scene_goals(task: str, seed: int, target: str | None = None) -> tuple[tuple[Goal, ...], str]:
    """The goals and instruction ``SimWorld.reset(task, seed, target=target)`` draws, without building a world:
    the same generator and the same draws before ``TaskSpec.resolve`` (the goals do not depend on ``variation``).
    Cheap enough to scan seeds (the balanced pretraining mix, ``lwd.sim.mix``)."""
    spec = get_task(task)
    rng = scene_rng(seed)
    _arm_jitter(rng)
    if spec.scene != "store":
        _base_layout(rng, 1.0)
    return spec.resolve(rng, target)


class SimWorld:
    """One robot's simulated world. Not thread-safe; one process steps it, mirrors only ``set_state``.

    Args:
        image_size: side of each camera's square rendered image.
        render: create an offscreen renderer (headless: ``lwd.sim.gl`` picks ``MUJOCO_GL`` = egl, else osmesa).
        cameras: the cameras :meth:`render` returns, side by side (``lwd.robot.CAMERAS`` order).
    """

    def __init__(self, image_size: int = 64, render: bool = True, cameras=("overview",)) -> None:
        if image_size <= 0:
            raise ValueError(f"image_size must be positive, got {image_size}")
        self.image_size = int(image_size)
        self.cameras = check_cameras(cameras)
        self._render = bool(render)
        self._scenes: dict[str, dict[str, object]] = {}
        self.scene = ""
        self._use_scene("base")
        self.task: TaskSpec = get_task("pick_place")
        self.goals: tuple[Goal, ...] = ()
        self.instruction = ""
        self.seed = 0
        self.reset("pick_place", 0)

    # ------------------------------------------------------------------ scenes
    _SCENE_ATTRS = (
        "model", "data", "_n_substeps", "joint_ids", "qpos_adr", "dof_adr", "act_ids", "joint_low", "joint_high",
        "home_qpos", "tcp_site", "items", "item_body", "item_qadr", "item_vadr", "item_geoms", "pad_geoms",
        "arm_geoms", "static_geoms", "camera_id", "camera_ids", "_renderer", "drawer_qadr", "drawer_body",
        "handle_geom",
    )

    def _use_scene(self, scene: str) -> None:
        """Make ``scene``'s model current (built on first use, then cached with its renderer)."""
        if scene == self.scene:
            return
        if self.scene:
            self._scenes[self.scene] = {k: getattr(self, k) for k in self._SCENE_ATTRS}
        if scene in self._scenes:
            for k, v in self._scenes[scene].items():
                setattr(self, k, v)
            self.scene = scene
            return
        self.model = mujoco.MjModel.from_xml_string(build_mjcf(scene))
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
        self.items = ITEM_NAMES if scene == "base" else tuple(CATALOGUE)
        self.item_body = {n: m.body(n).id for n in self.items}
        self.item_qadr = {n: int(m.jnt_qposadr[m.joint(f"{n}_free").id]) for n in self.items}
        self.item_vadr = {n: int(m.jnt_dofadr[m.joint(f"{n}_free").id]) for n in self.items}
        self.item_geoms = {
            n: {i for i in range(m.ngeom) if m.geom_bodyid[i] == self.item_body[n]} for n in self.items
        }
        self.pad_geoms = {a: (m.geom(f"{a}_pad_a").id, m.geom(f"{a}_pad_b").id) for a in ARMS}
        body_names = [m.body(int(m.geom_bodyid[i])).name for i in range(m.ngeom)]
        self.arm_geoms = {
            a: {i for i, b in enumerate(body_names) if b.startswith(f"{a}_") and b != f"{a}_base"} for a in ARMS
        }
        self.static_geoms = {i for i in range(m.ngeom) if m.geom_bodyid[i] == 0 and m.geom_contype[i]}
        self.camera_id = m.camera("overview").id
        self.camera_ids = tuple(m.camera(c).id for c in self.cameras)
        if scene == "store":
            self.drawer_qadr = int(m.jnt_qposadr[m.joint("drawer_slide").id])
            self.drawer_body = m.body("drawer").id
            self.handle_geom = m.geom("drawer_handle").id
        else:
            self.drawer_qadr = self.drawer_body = self.handle_geom = -1
        self._renderer = None
        if self._render:
            log_choice_once()
            self._renderer = mujoco.Renderer(m, self.image_size, self.image_size)
        self.scene = scene

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
        self._use_scene(spec.scene)
        rng = scene_rng(seed)
        m, d = self.model, self.data
        mujoco.mj_resetData(m, d)
        self.unstable = False
        """MuJoCo found NaN/huge positions, velocities or accelerations and reset the state since ``reset``."""
        self.held_log: dict[str, list[str]] = {}
        self._prev_holders: dict[str, tuple[str, ...]] = {}
        self.start_pose: dict[str, np.ndarray] = {}
        self.distractors: tuple[str, ...] = ()
        q = self.home_qpos.copy()
        arm_mask = np.ones(N_JOINTS, dtype=bool)
        arm_mask[[6, 13]] = False
        q[arm_mask] += _arm_jitter(rng)
        d.qpos[self.qpos_adr] = q
        d.qpos[[m.jnt_qposadr[m.joint(f"{a}_gripper_b").id] for a in ARMS]] = GRIPPER_OPEN
        d.ctrl[self.act_ids] = q
        if spec.scene == "store":
            self._reset_store(spec, rng, variation, target)
            self.task = spec
            self.seed = int(seed)
            self.variation = float(variation)
            mujoco.mj_forward(m, d)
            self.start_pose = {n: self.item_pos(n) for n in self.items}
            self._track()
            return
        for n, (x, y, yaw) in _base_layout(rng, variation).items():
            it = ITEMS[n]
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

    def _place(self, name: str, x: float, y: float, bottom: float, yaw: float) -> None:
        it = CATALOGUE[name]
        adr = self.item_qadr[name]
        self.data.qpos[adr : adr + 3] = (x, y, bottom + it.half_height + 0.0005)
        self.data.qpos[adr + 3 : adr + 7] = (math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2))

    def _reset_store(self, spec: TaskSpec, rng: np.random.Generator, variation: float, target: str | None) -> None:
        """Store-scene initial state: goals and instruction first, then the items the task uses, the rest parked."""
        self.goals, self.instruction = spec.resolve(rng, target)
        for k, n in enumerate(self.items):  # park everything under the table, out of the camera's view
            self._place(n, -0.55 + 0.1 * k, PARK_Y, -0.75, 0.0)
        v = variation
        goal_items = list(dict.fromkeys(g.item for g in self.goals))
        if spec.items == "handover":
            item = goal_items[0]
            giver = self.goals[0].region.split(":")[1]
            side = -1.0 if giver == "left" else 1.0
            self._place(item, side * HANDOVER_END_X + v * rng.uniform(-0.02, 0.02),
                        LOWER_SHELF_Y + v * rng.uniform(-0.006, 0.006), SHELF_TOP, v * rng.uniform(-0.2, 0.2))
            return
        if spec.items in ("drawer", "stack"):
            # the task's items (and a distractor) in the bin's three lanes, in a drawn order
            if spec.items == "stack":
                bottom = self.goals[0].region.split(":")[1]
                goal_items = [goal_items[0], bottom]
            pool = [n for n in self.items if n not in goal_items and n not in ("spaghetti", "baguette", "crackers",
                                                                               "cookies")]
            names = [*goal_items, pool[int(rng.integers(len(pool)))]]
            lanes = rng.permutation(len(ITEM_LANES))
            for k, n in enumerate(names):
                it = CATALOGUE[n]
                x = ITEM_LANES[lanes[k]] + v * rng.uniform(-0.01, 0.01)
                y = BIN_CENTER[1] + v * rng.uniform(-0.035, 0.035)
                yaw = v * rng.uniform(-0.3, 0.3) if it.shape == "box" else rng.uniform(-math.pi, math.pi)
                self._place(n, x, y, 0.0, yaw)
            self.distractors = (names[-1],)
            return
        if spec.items == "semantic":
            cat = CATALOGUE[goal_items[0]].category
            pool = [n for n in self.items if CATALOGUE[n].category not in (cat, "pantry")]
            distract = [pool[int(i)] for i in rng.choice(len(pool), 2, replace=False)]
            names = [*goal_items, *distract]
            spots = rng.permutation(len(LOWER_SHELF_LINE))
            for k, n in enumerate(names):
                it = CATALOGUE[n]
                x = LOWER_SHELF_LINE[spots[k]] + v * rng.uniform(-0.008, 0.008)
                y = LOWER_SHELF_Y + v * rng.uniform(-0.004, 0.004)
                yaw = v * rng.uniform(-0.15, 0.15) if it.shape == "box" else rng.uniform(-math.pi, math.pi)
                self._place(n, x, y, SHELF_TOP, yaw)
            self.distractors = tuple(distract)
            return
        raise ValueError(f"task {spec.name!r}: unknown store task kind {spec.items!r}")

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
        if not self.unstable and any(self.data.warning[w].number for w in _UNSTABLE):
            # MuJoCo has reset the state mid-episode: what follows is not the episode's physics
            self.unstable = True
            _log.warning("simulation unstable in %s seed %d at t=%.2f s: the episode counts as failed",
                        self.task.name, self.seed, self.time)
        if self.scene != "base":
            self._track()

    def qpos14(self) -> np.ndarray:
        return self.data.qpos[self.qpos_adr].astype(np.float64)

    def qvel14(self) -> np.ndarray:
        return self.data.qvel[self.dof_adr].astype(np.float64)

    # ------------------------------------------------------------------ state mirroring
    @property
    def state_size(self) -> int:
        m = self.model
        return 1 + m.nq + m.nv + m.na + m.nu

    def scene_state_sizes(self) -> dict[int, str]:
        """``get_state()`` size of every scene -> scene (a mirror world follows the scene of the state it is sent)."""
        if not _STATE_SIZES:
            for scene in SCENES:
                m = mujoco.MjModel.from_xml_string(build_mjcf(scene))
                _STATE_SIZES[1 + m.nq + m.nv + m.na + m.nu] = scene
        return dict(_STATE_SIZES)

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
        if s.shape != (self.state_size,) and s.size in self.scene_state_sizes():
            self._use_scene(self.scene_state_sizes()[s.size])
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
        if self.scene != "base":
            self._track()

    # ------------------------------------------------------------------ rendering
    def render(self) -> np.ndarray:
        """Render the world's cameras as uint8 (S, S * len(cameras), 3): the views side by side, in ``cameras``
        order (the overview alone: (S, S, 3)).

        Raises:
            RuntimeError: the world was created with ``render=False`` or is closed.
        """
        if self._renderer is None:
            raise RuntimeError("SimWorld has no renderer (created with render=False or closed)")
        views = []
        for cam in self.camera_ids:
            self._renderer.update_scene(self.data, camera=cam)
            views.append(self._renderer.render().copy())  # the renderer may reuse its buffer
        return views[0] if len(views) == 1 else np.concatenate(views, axis=1)

    def close(self) -> None:
        for cached in self._scenes.values():
            r = cached.get("_renderer")
            if r is not None and r is not self._renderer:
                r.close()
            cached["_renderer"] = None
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
        return float(self.item_pos(name)[2] - CATALOGUE[name].half_height)

    def _contacts(self) -> list[tuple[int, int]]:
        d = self.data
        return [(int(d.contact[i].geom1), int(d.contact[i].geom2)) for i in range(d.ncon)]

    def held_by(self, name: str) -> str | None:
        """Arm whose two finger pads both touch the item (the first in ARMS order if both do), else None."""
        arms = self.holders(name)
        return arms[0] if arms else None

    def present_items(self) -> tuple[str, ...]:
        """Items in play (the store scene parks the ones a task does not use under the table)."""
        return tuple(n for n in self.items if self.data.xpos[self.item_body[n]][2] > -0.3)

    def holders(self, name: str) -> tuple[str, ...]:
        """Every arm whose two finger pads both touch the item (both arms during a handover)."""
        geoms = self.item_geoms[name]
        touched: dict[str, set[int]] = {a: set() for a in ARMS}
        for g1, g2 in self._contacts():
            for ga, gb in ((g1, g2), (g2, g1)):
                if ga in geoms:
                    for a in ARMS:
                        if gb in self.pad_geoms[a]:
                            touched[a].add(gb)
        return tuple(a for a in ARMS if len(touched[a]) == 2)

    def _track(self) -> None:
        """Store scene: log which arms have held each goal item, in order (the handover detector reads it)."""
        for g in self.goals:
            log = self.held_log.setdefault(g.item, [])
            hs = self.holders(g.item)
            prev = self._prev_holders.get(g.item, ())
            log.extend(a for a in hs if a not in prev and (not log or log[-1] != a))  # arms that start holding it
            self._prev_holders[g.item] = hs

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
        """Item inside a region. ``resting`` additionally requires upright, slow and not touched by an arm.

        Regions: ``"bin"``, a slot name, and in the store scene ``STORE_REGIONS`` (a shelf level or end: the item's
        whole footprint on it), ``"drawer"`` (on the tray floor, inside its walls) and ``"on:<item>"`` (resting on
        top of that item, its centre well inside the lower item's top face, both upright, touching each other)."""
        p = self.item_pos(name)
        if region == "bin":
            ok = abs(p[0] - BIN_CENTER[0]) < BIN_HALF[0] and abs(p[1] - BIN_CENTER[1]) < BIN_HALF[1]
            ok = ok and self.item_bottom(name) < 0.02
        elif region in SLOTS:
            sx, sy = SLOTS[region]
            ok = abs(p[0] - sx) < SLOT_HALF + 0.005 and abs(p[1] - sy) < SLOT_HALF + 0.005
            ok = ok and abs(self.item_bottom(name) - SHELF_TOP) < 0.015
        elif region in STORE_REGIONS:
            (x0, x1), (y0, y1), z = STORE_REGIONS[region]
            ex, ey = self.footprint(name)
            ok = x0 <= p[0] - ex and p[0] + ex <= x1 and y0 <= p[1] and p[1] <= y1
            ok = ok and abs(self.item_bottom(name) - z) < 0.015
        elif region == "drawer":
            lx, ly = self.drawer_local(p)
            half, (ly0, ly1) = DRAWER_INNER
            r = CATALOGUE[name].grasp_half_width
            ok = abs(lx) < half - r + 0.004 and ly0 + r - 0.004 < ly < ly1 - r + 0.004
            ok = ok and abs(self.item_bottom(name) - DRAWER_FLOOR) < 0.012
        elif region.startswith("on:"):
            base = region[3:]
            bit = CATALOGUE[base]
            rel = self.item_mat(base).T @ (p - self.item_pos(base))
            ok = abs(rel[0]) < bit.half_size[0] - 0.01 and abs(rel[1]) < bit.half_size[1] - 0.006
            ok = ok and abs(self.item_bottom(name) - (self.item_pos(base)[2] + bit.half_height)) < 0.012
            ok = ok and self.item_upright(base) and self._touching(name, base)
            if resting:
                ok = ok and self.item_speed(base) < 0.05 and not self.touching_arm(base)
        else:
            raise ValueError(f"unknown region {region!r}")
        if ok and resting:
            upright = region == "drawer" or self.item_upright(name)  # a piece of fruit may lie on its side in there
            ok = upright and self.item_speed(name) < 0.05 and not self.touching_arm(name)
        return bool(ok)

    def footprint(self, name: str) -> tuple[float, float]:
        """Half extents of the item's footprint along world x and y (for an upright item)."""
        it = CATALOGUE[name]
        if it.shape != "box":
            return it.half_size[0], it.half_size[0]
        r = self.item_mat(name)
        hx, hy = it.half_size[0], it.half_size[1]
        return abs(r[0, 0]) * hx + abs(r[0, 1]) * hy, abs(r[1, 0]) * hx + abs(r[1, 1]) * hy

    def _touching(self, a: str, b: str) -> bool:
        ga, gb = self.item_geoms[a], self.item_geoms[b]
        return any((g1 in ga and g2 in gb) or (g2 in ga and g1 in gb) for g1, g2 in self._contacts())

    # ------------------------------------------------------------------ drawer (store scene)
    def drawer_q(self) -> float:
        """How far the drawer is pulled out (m; 0 = closed)."""
        return float(self.data.qpos[self.drawer_qadr]) if self.drawer_qadr >= 0 else 0.0

    def drawer_local(self, p: np.ndarray) -> tuple[float, float]:
        o = self.data.xpos[self.drawer_body]
        return float(p[0] - o[0]), float(p[1] - o[1])

    def drawer_origin(self) -> np.ndarray:
        return self.data.xpos[self.drawer_body].copy()

    def handle_pos(self) -> np.ndarray:
        return self.data.geom_xpos[self.handle_geom].copy()

    def drawer_closed(self) -> bool:
        return self.drawer_q() < DRAWER_CLOSED_Q

    # ------------------------------------------------------------------ task outcome
    def handed_over(self, item: str, giver: str, receiver: str) -> bool:
        """The item was held by ``giver`` and then by ``receiver``, who is the last arm to have held it."""
        log = self.held_log.get(item, [])
        return giver in log and log[-1] == receiver and log.index(giver) < len(log) - 1

    def goal_done(self, goal: Goal, *, resting: bool = True) -> bool:
        r = goal.region
        if r.startswith("hand:"):  # store: handover stages (the log of holders)
            hands = [g.region[5:] for g in self.goals if g.region.startswith("hand:")]
            log = self.held_log.get(goal.item, [])
            if r[5:] == hands[0]:
                return hands[0] in log
            return hands[0] in log and r[5:] in log[log.index(hands[0]) + 1 :]
        if r == "drawer:open":
            return self.drawer_q() > DRAWER_OPEN_Q or self.in_region(goal.item, "drawer", resting=False)
        if r == "drawer:closed":
            return self.drawer_closed() and self.in_region(goal.item, "drawer", resting=False)
        ok = self.in_region(goal.item, r, resting=resting)
        if ok and r.startswith("shelf_") and any(g.region.startswith("hand:") for g in self.goals):
            hands = [g.region[5:] for g in self.goals if g.region.startswith("hand:")]
            ok = self.handed_over(goal.item, hands[0], hands[-1]) and not self.holders(goal.item)
        return ok

    def store_misplaced(self, name: str) -> bool:
        """Store scene, for the operator: the item is at rest somewhere the task cannot go on from (toppled outside
        the drawer, on the table outside the bin, on the floor)."""
        if self.holders(name) or self.item_speed(name) > 0.1:
            return False
        if self.in_region(name, "drawer", resting=False):
            return False
        bottom = self.item_bottom(name)
        if not self.item_upright(name) or bottom < -0.05:
            return True
        return bottom < 0.01 and not self.in_region(name, "bin", resting=False)

    def distractors_in_place(self) -> bool:
        """Store: items the instruction did not name are still where they started (within 3 cm), upright."""
        for n in self.distractors:
            p, p0 = self.item_pos(n), self.start_pose[n]
            if float(np.linalg.norm(p[:2] - p0[:2])) > 0.03 or abs(p[2] - p0[2]) > 0.015 or not self.item_upright(n):
                return False
        return True

    def progress(self) -> int:
        """Number of subgoals currently achieved (items resting in their target region)."""
        return sum(self.goal_done(g) for g in self.goals)

    def success(self) -> bool:
        if self.progress() != len(self.goals):
            return False
        return self.task.items != "semantic" or self.distractors_in_place()
