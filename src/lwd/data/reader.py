"""Reading an episode bag and resampling it onto the control grid: :func:`read_episode` -> EpisodeSteps."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from lwd.control.health import Rejected, joint_order

from .errors import BagError, EpisodeFormatError, IncompleteBagError
from .events import EventTracker, canonical_topic
from .metadata import SIDECAR, read_custom_meta, read_meta
from .schema import (
    CAMERAS,
    CONTROL_DT_NS,
    JOINT_NAMES,
    N_JOINTS,
    SOURCE_POLICY,
    EpisodeMeta,
    EpisodeSteps,
    camera_topic,
    parse_frame_id,
)

log = logging.getLogger("lwd.data")

__all__ = ["read_episode"]


def _image_to_array(msg: Any) -> np.ndarray:
    h, w, enc = int(msg.height), int(msg.width), msg.encoding
    data = np.asarray(msg.data, dtype=np.uint8)
    step = int(msg.step) or 3 * w
    if enc in ("rgb8", "bgr8"):
        img = data[: h * step].reshape(h, step)[:, : 3 * w].reshape(h, w, 3)
        return img[..., ::-1] if enc == "bgr8" else img
    if enc == "mono8":
        img = data[: h * step].reshape(h, step)[:, :w]
        return np.repeat(img[..., None], 3, axis=2)
    raise ValueError(f"unsupported image encoding {enc!r}")


def read_episode(path: Path | str, *, meta: EpisodeMeta | None = None) -> EpisodeSteps:
    """Read an episode bag and resample it onto the control grid (see module doc and lwd.data.schema).

    Grid t_k = start + k*CONTROL_DT from the ``start`` event up to (excluding) the ``end`` event (recovered bags
    without an end event: up to the last message). Per step: image = latest frame with log time <= t_k of each
    camera the bag has (their views side by side, ``EpisodeSteps.cameras``),
    qpos = latest joint_states <= t_k, action = point of the latest cmd/joint_trajectory (log time r <= t_k)
    being executed at elapsed e = t_k - r (point j with tfs_{j-1} <= e < tfs_j, else the last point),
    source/version from its frame_id. Leading steps without a command (or observation) are dropped.
    """
    from rosbags.highlevel import AnyReader, AnyReaderError
    from rosbags.rosbag2 import ReaderError

    path = Path(path)
    if not path.exists():
        raise BagError(path, "does not exist")
    if not path.is_dir() or not (path / "metadata.yaml").exists():
        raise IncompleteBagError(path, "no metadata.yaml: not a complete rosbag2 directory (try recover_bag)")
    if meta is None and (path / SIDECAR).exists():
        meta = read_meta(path)

    wanted = {*(camera_topic(c) for c in CAMERAS), "joint_states", "cmd/joint_trajectory", "episode/event",
              "task/instruction", "teleop/engaged"}
    raw: dict[str, list[tuple[int, bytes]]] = {k: [] for k in wanted}
    types: dict[str, str] = {}
    try:
        with AnyReader([path]) as reader:
            conns = [c for c in reader.connections if canonical_topic(c.topic) in wanted]
            for c in conns:
                types[canonical_topic(c.topic)] = c.msgtype
            for conn, t, data in reader.messages(connections=conns) if conns else ():
                raw[canonical_topic(conn.topic)].append((t, data))
            deser = reader.deserialize

            def decode(key: str, data: bytes) -> Any:
                return deser(data, types[key])

            return _resample(path, raw, decode, meta)
    except (AnyReaderError, ReaderError, OSError, KeyError, ValueError, TypeError, AssertionError) as exc:
        if isinstance(exc, BagError):
            raise
        raise BagError(path, f"cannot read bag: {type(exc).__name__}: {exc}") from None


def _sorted(items: list[tuple[int, bytes]]) -> tuple[np.ndarray, list[bytes]]:
    items = sorted(items, key=lambda x: x[0])
    return np.array([t for t, _ in items], dtype=np.int64), [d for _, d in items]


def _resample(path: Path, raw: dict[str, list[tuple[int, bytes]]], decode, meta: EpisodeMeta | None) -> EpisodeSteps:
    tracker = EventTracker()
    for key in ("episode/event", "task/instruction", "teleop/engaged"):
        for t, data in sorted(raw[key], key=lambda x: x[0]):
            tracker.feed(key, t, decode(key, data))
    all_t = [t for lst in raw.values() for t, _ in lst]
    if meta is None:
        meta = read_custom_meta(path)
    # grid bounds: start/end events, else metadata, else message times
    if tracker.start is not None:
        start = tracker.start_ns
    elif meta is not None and meta.start_ns > 0:
        start = meta.start_ns
    elif raw["cmd/joint_trajectory"]:
        start = min(t for t, _ in raw["cmd/joint_trajectory"])
    else:
        raise EpisodeFormatError(path, "no start event and no commands")
    if tracker.end is not None:
        end_excl = tracker.end_ns
    elif meta is not None and meta.end_ns > start:
        end_excl = meta.end_ns
    else:
        end_excl = (max(all_t) + 1) if all_t else start
    if meta is None:
        meta = tracker.meta(None, robot=path.parent.name, episode_id=path.name)

    n = max(0, -(-(end_excl - start) // CONTROL_DT_NS))  # ceil
    grid = start + CONTROL_DT_NS * np.arange(n, dtype=np.int64)

    js_t, js_d = _sorted(raw["joint_states"])
    cmd_t, cmd_d = _sorted(raw["cmd/joint_trajectory"])
    cams = [(c, *_sorted(raw[camera_topic(c)])) for c in CAMERAS if raw[camera_topic(c)]]
    if len(js_t) == 0:
        raise EpisodeFormatError(path, "no joint_states messages")
    if len(cmd_t) == 0:
        raise EpisodeFormatError(path, "no cmd/joint_trajectory messages")

    # decode commands (all of them, cheap at ~10 Hz); drop malformed ones
    cmds: list[tuple[np.ndarray, np.ndarray, int, int]] = []
    keep_t = []
    for t, d in zip(cmd_t, cmd_d, strict=True):
        msg = decode("cmd/joint_trajectory", d)
        try:  # the arm driver's rule for commands: exactly the arm's joints, in any order
            order = joint_order(msg.joint_names, JOINT_NAMES, extra="reject")
        except Rejected as e:
            log.warning("%s: skipping cmd/joint_trajectory at %d: %s", path, t, e)
            continue
        pts = [p for p in msg.points if len(p.positions) == N_JOINTS]
        if not pts or len(pts) != len(msg.points):
            log.warning("%s: skipping cmd/joint_trajectory at %d with %d points (need %d-D positions)",
                        path, t, len(msg.points), N_JOINTS)
            continue
        pos = np.stack([np.asarray(p.positions, np.float64)[order] for p in pts])
        tfs = np.array([p.time_from_start.sec * 1_000_000_000 + p.time_from_start.nanosec for p in pts], np.int64)
        src, ver = parse_frame_id(msg.header.frame_id)
        cmds.append((pos, tfs, src, ver))
        keep_t.append(t)
    cmd_t = np.array(keep_t, dtype=np.int64)

    i_js = np.searchsorted(js_t, grid, side="right") - 1
    i_cmd = np.searchsorted(cmd_t, grid, side="right") - 1
    valid = (i_js >= 0) & (i_cmd >= 0)
    i_imgs = []
    for _, img_t, _ in cams:
        i_imgs.append(np.searchsorted(img_t, grid, side="right") - 1)
        valid &= i_imgs[-1] >= 0
    sel = np.nonzero(valid)[0]
    T = len(sel)

    qpos = np.zeros((T, N_JOINTS), np.float32)
    actions = np.zeros((T, N_JOINTS), np.float32)
    source = np.zeros(T, np.int8)
    version = np.full(T, -1, np.int32)
    js_cache: dict[int, np.ndarray] = {}
    for out, k in enumerate(sel):
        i = int(i_js[k])
        if i not in js_cache:
            m = decode("joint_states", js_d[i])
            if len(m.position) != len(m.name):
                raise EpisodeFormatError(path, f"joint_states has {len(m.position)} positions for {len(m.name)} names")
            try:  # extra joints ignored, as the nodes read joint_states
                order = joint_order(m.name, JOINT_NAMES)
            except Rejected as e:
                raise EpisodeFormatError(path, f"joint_states: {e}") from None
            js_cache[i] = np.asarray(m.position, np.float64)[order]
        qpos[out] = js_cache[i]
        c = int(i_cmd[k])
        pos, tfs, src, ver = cmds[c]
        e = int(grid[k] - cmd_t[c])
        j = min(int(np.searchsorted(tfs, e, side="right")), len(tfs) - 1)
        actions[out] = pos[j]
        source[out] = src
        version[out] = ver if src == SOURCE_POLICY else -1

    if cams and T:
        first = None
        views = []
        for (name, _, img_d), i_img in zip(cams, i_imgs, strict=True):
            topic = camera_topic(name)
            img_cache: dict[int, np.ndarray] = {}
            frames = []
            for k in sel:
                i = int(i_img[k])
                if i not in img_cache:
                    img_cache[i] = _image_to_array(decode(topic, img_d[i]))
                    if first is None:
                        first = img_cache[i].shape
                    elif img_cache[i].shape != first:
                        raise EpisodeFormatError(path, f"{topic}: image size {img_cache[i].shape}, expected {first}")
                frames.append(img_cache[i])
            views.append(np.stack(frames))
        images = views[0] if len(views) == 1 else np.concatenate(views, axis=2)
    else:
        images = np.zeros((T, 0, 0, 3), np.uint8)
    cameras = tuple(c for c, _, _ in cams) or ("overview",)
    return EpisodeSteps(images=images, qpos=qpos, actions=actions, source=source, policy_version=version,
                        t_ns=grid[sel], meta=meta, cameras=cameras)
