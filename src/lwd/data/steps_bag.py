"""Steps -> bag: an EpisodeSteps (scripted demonstration, bench rollout) written as a fleet-format episode bag."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from .msgs import bool_msg, float32_msg, image_msg, joint_state_msg, string_msg, trajectory_msg
from .schema import (
    CONTROL_DT_NS,
    SOURCE_NAMES,
    SOURCE_POLICY,
    SOURCE_TELEOP,
    EpisodeMeta,
    EpisodeSteps,
    camera_topic,
    event_json,
    frame_id_for,
)
from .writer import EpisodeBagWriter

__all__ = ["write_steps_bag"]


def write_steps_bag(path: Path | str, steps: EpisodeSteps, *, trajectory_points: int = 1) -> EpisodeMeta:
    """Write an EpisodeSteps (e.g. a scripted demonstration) as a fleet-format bag.

    Messages are synthesized on the grid t_k = t0 + k*CONTROL_DT (t0 = steps.t_ns[0] or meta.start_ns):
    episode/event start at t0, task/instruction, per step each camera's image (``lwd.robot.camera_topic``),
    joint_states and a cmd/joint_trajectory tagged by the step's source (one point = the step's action; with
    ``trajectory_points > 1`` the following actions are appended as later points, which the reader ignores
    because the next command replaces it), cmd/source on change, takeover/release events around teleop steps,
    ``subgoal`` events at ``meta.subgoal_ns``, episode/reward 1.0 and the end event at t0 + T*dt. ``read_episode``
    of the result returns the same arrays.
    """
    path = Path(path)
    meta = steps.meta
    T = len(steps)
    t0 = int(steps.t_ns[0]) if T else int(meta.start_ns)
    grid = t0 + CONTROL_DT_NS * np.arange(T, dtype=np.int64)
    t_end = t0 + CONTROL_DT_NS * T
    segs: list[list[int]] = []
    for k in range(T):
        tel = steps.source[k] == SOURCE_TELEOP
        prev = k > 0 and steps.source[k - 1] == SOURCE_TELEOP
        if tel and not prev:
            segs.append([int(grid[k]), t_end])
        if not tel and prev:
            segs[-1][1] = int(grid[k])
    versions = sorted({int(v) for s, v in zip(steps.source, steps.policy_version, strict=True)
                       if s == SOURCE_POLICY and v >= 0})
    meta = replace(meta, start_ns=t0, end_ns=t_end, intervention_segments=segs, num_interventions=len(segs),
                   policy_versions=sorted(set(meta.policy_versions) | set(versions)))
    has_images = steps.images.ndim == 4 and steps.images.shape[1] > 0
    side = steps.images.shape[1] if has_images else 0
    if has_images and steps.images.shape[2] != side * len(steps.cameras):
        raise ValueError(f"images {steps.images.shape[1:]} are not {len(steps.cameras)} square views side by side")
    # one sensor_msgs/Image topic per camera, as the camera drivers publish them
    views = [("camera" if c == "overview" else c, camera_topic(c), v * side)
             for v, c in enumerate(steps.cameras)] if has_images else []
    with EpisodeBagWriter(path, meta) as w:
        w.write_msg("episode/event", t0, string_msg(event_json(
            "start", episode_id=meta.episode_id, robot=meta.robot, task=meta.task, instruction=meta.instruction,
            seed=meta.seed, policy_version=versions[0] if versions else None, source=meta.source)))
        w.write_msg("task/instruction", t0, string_msg(meta.instruction))
        for n, t_sub in enumerate(sorted(meta.subgoal_ns), 1):  # readers order messages by time
            w.write_msg("episode/event", t_sub, string_msg(event_json("subgoal", progress=n)))
        prev_src = None
        for k in range(T):
            t = int(grid[k])
            src = int(steps.source[k])
            if src != prev_src:
                if src == SOURCE_TELEOP:
                    w.write_msg("episode/event", t, string_msg(event_json("takeover")))
                    w.write_msg("teleop/engaged", t, bool_msg(True))
                elif prev_src == SOURCE_TELEOP:
                    w.write_msg("episode/event", t, string_msg(event_json("release")))
                    w.write_msg("teleop/engaged", t, bool_msg(False))
                w.write_msg("cmd/source", t, string_msg(SOURCE_NAMES.get(src, "teleop")))
                prev_src = src
            for name, topic, lo in views:
                w.write_msg(topic, t, image_msg(t, steps.images[k, :, lo:lo + side], frame_id=name))
            w.write_msg("joint_states", t, joint_state_msg(t, steps.qpos[k]))
            pts = steps.actions[k:k + max(1, trajectory_points)]
            w.write_msg("cmd/joint_trajectory", t,
                        trajectory_msg(t, pts, frame_id_for(src, int(steps.policy_version[k]))))
        if meta.outcome == "success":
            w.write_msg("episode/reward", t_end, float32_msg(1.0))
        w.write_msg("episode/event", t_end, string_msg(event_json("end", outcome=meta.outcome)))
        return w.finish(meta)
