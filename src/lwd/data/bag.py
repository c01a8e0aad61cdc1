"""Episode bags: one rosbag2 directory (MCAP, version 9) per episode + a sidecar ``episode.json``.

Layout of an episode directory (it *is* the rosbag2 directory)::

    <episode_dir>/metadata.yaml          rosbag2 metadata; custom_data["lwd/episode"] = EpisodeMeta JSON
    <episode_dir>/<episode_dir>.mcap     messages, CDR, topics relative to the robot namespace
    <episode_dir>/episode.json           EpisodeMeta, written LAST (temp + rename): marks a complete episode

Writers: :class:`EpisodeBagWriter` (fed raw CDR bytes by the recorder node, or rosbags messages) and
:func:`write_steps_bag` (scripted demonstrations). Reader: :func:`read_episode` (resamples onto the control grid).
Repair: :func:`recover_bag` (bag killed mid-write: no metadata.yaml, no MCAP footer).
No rclpy here.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from .errors import BagError, BagExistsError, EpisodeFormatError, IncompleteBagError
from .msgs import bool_msg, float32_msg, image_msg, joint_state_msg, string_msg, trajectory_msg
from .schema import (
    CONTROL_DT_NS,
    JOINT_NAMES,
    N_JOINTS,
    SOURCE_NAMES,
    SOURCE_POLICY,
    SOURCE_TELEOP,
    TOPICS,
    EpisodeMeta,
    EpisodeSteps,
    event_json,
    frame_id_for,
    parse_frame_id,
    typestore,
)

log = logging.getLogger("lwd.data")

SIDECAR = "episode.json"
CUSTOM_DATA_KEY = "lwd/episode"
HEARTBEAT_S = 2.0  # an open writer bumps its directory mtime at least this often while messages arrive

__all__ = ["EpisodeBagWriter", "write_steps_bag", "read_episode", "read_meta", "recover_bag", "write_sidecar",
           "canonical_topic", "SIDECAR", "CUSTOM_DATA_KEY"]


def canonical_topic(topic: str) -> str:
    """Map a recorded topic name to its key in TOPICS ('/robot0/joint_states' -> 'joint_states')."""
    t = topic.lstrip("/")
    if t in TOPICS:
        return t
    for key in TOPICS:
        if t.endswith("/" + key):
            return key
    return t


def write_sidecar(path: Path | str, meta: EpisodeMeta) -> Path:
    """Write ``<path>/episode.json`` atomically (temp file + fsync + rename)."""
    path = Path(path)
    dst = path / SIDECAR
    tmp = path / f".{SIDECAR}.{os.getpid()}.{threading.get_ident()}.tmp"
    with open(tmp, "w", encoding="utf8") as f:
        f.write(json.dumps(meta.to_dict(), indent=1, sort_keys=True))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, dst)
    return dst


# --------------------------------------------------------------------------------------------------- metadata
class _EventTracker:
    """Builds EpisodeMeta from the messages of an episode (events, commands, instruction)."""

    def __init__(self) -> None:
        self.start: dict[str, Any] | None = None
        self.start_ns = 0
        self.end: dict[str, Any] | None = None
        self.end_ns = 0
        self.first_ns: int | None = None
        self.last_ns = 0
        self.segments: list[list[int]] = []
        self._open_seg: int | None = None
        self.versions: list[int] = []
        self.instruction: str | None = None
        self._engaged: bool | None = None
        self._engaged_segments: list[list[int]] = []
        self._engaged_open: int | None = None
        self._saw_takeover_events = False

    def feed(self, topic: str, t_ns: int, msg: Any) -> None:
        self.first_ns = t_ns if self.first_ns is None else min(self.first_ns, t_ns)
        self.last_ns = max(self.last_ns, t_ns)
        if msg is None:
            return
        if topic == "episode/event":
            try:
                ev = json.loads(msg.data)
            except (ValueError, TypeError):
                log.warning("ignoring episode/event that is not JSON: %r", getattr(msg, "data", msg))
                return
            if not isinstance(ev, dict):
                return
            kind = ev.get("event")
            if kind == "start":
                self.start, self.start_ns = ev, t_ns
                if ev.get("policy_version") is not None:
                    self._add_version(ev["policy_version"])
            elif kind == "end":
                self.end, self.end_ns = ev, t_ns
                self._close_seg(t_ns)
            elif kind == "takeover":
                self._saw_takeover_events = True
                if self._open_seg is None:
                    self._open_seg = t_ns
            elif kind == "release":
                self._saw_takeover_events = True
                self._close_seg(t_ns)
        elif topic == "cmd/joint_trajectory":
            src, ver = parse_frame_id(msg.header.frame_id)
            if src == SOURCE_POLICY and ver >= 0:
                self._add_version(ver)
        elif topic == "task/instruction":
            self.instruction = msg.data
        elif topic == "teleop/engaged":
            engaged = bool(msg.data)
            if engaged and not self._engaged:
                self._engaged_open = t_ns
            elif not engaged and self._engaged and self._engaged_open is not None:
                self._engaged_segments.append([self._engaged_open, t_ns])
                self._engaged_open = None
            self._engaged = engaged

    def _add_version(self, v: Any) -> None:
        try:
            v = int(v)
        except (TypeError, ValueError):
            return
        if v >= 0 and v not in self.versions:
            self.versions.append(v)

    def _close_seg(self, t_ns: int) -> None:
        if self._open_seg is not None:
            self.segments.append([self._open_seg, t_ns])
            self._open_seg = None

    def meta(self, base: EpisodeMeta | None, *, robot: str = "", episode_id: str = "",
             default_outcome: str = "aborted") -> EpisodeMeta:
        """Observed facts override ``base`` (which supplies robot, episode_id, source, ...)."""
        d: dict[str, Any] = base.to_dict() if base is not None else {
            "episode_id": episode_id, "robot": robot, "source": "fleet"}
        s = self.start or {}
        for key in ("episode_id", "robot", "task", "instruction", "seed"):
            if s.get(key) not in (None, ""):
                d[key] = s[key]
        if s.get("source") in ("fleet", "demo"):
            d["source"] = s["source"]
        if self.instruction and not d.get("instruction"):
            d["instruction"] = self.instruction
        end_ns = self.end_ns if self.end is not None else self.last_ns
        d["start_ns"] = self.start_ns if self.start is not None else (self.first_ns or d.get("start_ns", 0))
        d["end_ns"] = end_ns
        if self.end is not None and self.end.get("outcome") in ("success", "failure", "aborted"):
            d["outcome"] = self.end["outcome"]
        elif self.end is None:
            d["outcome"] = default_outcome
        segs = [list(x) for x in self.segments]
        if self._open_seg is not None:
            segs.append([self._open_seg, end_ns])
        if not self._saw_takeover_events:  # fall back to teleop/engaged transitions
            segs = [list(x) for x in self._engaged_segments]
            if self._engaged_open is not None:
                segs.append([self._engaged_open, end_ns])
        if segs or self._saw_takeover_events or self._engaged is not None or base is None:
            d["intervention_segments"] = segs
            d["num_interventions"] = len(segs)
        versions = list(d.get("policy_versions") or [])
        for v in self.versions:
            if v not in versions:
                versions.append(v)
        d["policy_versions"] = versions
        return EpisodeMeta.from_dict(d)


_TRACKED = ("episode/event", "cmd/joint_trajectory", "task/instruction", "teleop/engaged")


# --------------------------------------------------------------------------------------------------- writer
class EpisodeBagWriter:
    """Writes one episode bag. Use as a context manager (or ``open()`` ... ``finish()``).

    ``write_raw`` takes CDR bytes from an rclpy ``raw=True`` subscription and writes them without
    re-serialization; ``write_msg`` takes a rosbags message object. Topics of ``TOPICS`` are added on first use.
    ``finish(meta)`` closes the bag, stores the metadata as bag custom data and then writes ``episode.json``
    (last, atomically). Without ``meta`` the metadata is built from the constructor's ``meta`` updated with what
    the episode's messages say (start/end events, takeovers, policy versions). Thread-safe.
    """

    def __init__(self, path: Path | str, meta: EpisodeMeta | None = None) -> None:
        self.path = Path(path)
        if self.path.exists():
            raise BagExistsError(self.path, "exists already, not overwriting")
        self.meta = meta
        self._writer = None
        self._conns: dict[str, Any] = {}
        self._state = "new"  # new -> open -> closed
        self._lock = threading.RLock()
        self._tracker = _EventTracker()
        self._nchunks = 0
        self._last_touch = 0.0
        self.message_count = 0
        self.bytes_written = 0

    # -- lifecycle
    def open(self) -> EpisodeBagWriter:
        from rosbags.rosbag2 import StoragePlugin, Writer, WriterError

        with self._lock:
            if self._state != "new":
                raise BagError(self.path, f"cannot open a writer that is {self._state}")
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                writer = Writer(self.path, version=9, storage_plugin=StoragePlugin.MCAP)
                writer.open()
            except WriterError as exc:
                raise BagExistsError(self.path, str(exc)) from None
            self._writer = writer
            self._state = "open"
        return self

    def __enter__(self) -> EpisodeBagWriter:
        return self.open()

    def __exit__(self, exc_type, exc, tb) -> bool:
        if self._state != "open":
            return False
        if exc_type is None:
            self.finish()
        else:  # keep what was recorded, labelled aborted
            try:
                meta = self.tracked_meta()
                if meta.outcome != "aborted" and self._tracker.end is None:
                    meta = replace(meta, outcome="aborted")
                self.finish(meta)
            except Exception:  # noqa: BLE001 - never mask the original exception
                log.exception("%s: could not finish bag after error", self.path)
                self.abort()
        return False

    @property
    def is_open(self) -> bool:
        return self._state == "open"

    def _check_open(self) -> None:
        if self._state != "open":
            raise BagError(self.path, f"writer is {self._state}, not open")

    # -- topics and messages
    def add_topic(self, topic: str, msgtype: str | None = None):
        """Register a topic (msgtype defaults to the contract's TOPICS entry). Idempotent."""
        with self._lock:
            self._check_open()
            expected = TOPICS.get(canonical_topic(topic))
            msgtype = msgtype or expected
            if expected is not None and msgtype != expected:
                raise BagError(self.path, f"topic {topic!r} carries {expected} by contract, not {msgtype}")
            if msgtype is None:
                raise BagError(self.path, f"unknown topic {topic!r}: pass its msgtype")
            conn = self._conns.get(topic)
            if conn is not None:
                if conn.msgtype != msgtype:
                    raise BagError(self.path, f"topic {topic!r} already added as {conn.msgtype}, not {msgtype}")
                return conn
            ts = typestore()
            if msgtype not in ts.types:
                raise BagError(self.path, f"message type {msgtype!r} not in the typestore")
            conn = self._writer.add_connection(topic, msgtype, typestore=ts)
            self._conns[topic] = conn
            return conn

    def write_raw(self, topic: str, t_ns: int, data: bytes | bytearray | memoryview) -> None:
        """Write already CDR-serialized bytes (log time ``t_ns``) without re-serialization."""
        with self._lock:
            self._check_open()
            conn = self._conns.get(topic) or self.add_topic(topic)
            key = canonical_topic(topic)
            msg = None
            if key in _TRACKED:
                try:
                    msg = typestore().deserialize_cdr(bytes(data), conn.msgtype)
                except Exception as exc:  # noqa: BLE001
                    raise BagError(self.path, f"bytes on {topic!r} are not a valid {conn.msgtype}: {exc}") from None
            self._write(conn, key, int(t_ns), data, msg)

    def write_msg(self, topic: str, t_ns: int, msg: Any) -> None:
        """Serialize a rosbags message with the typestore and write it."""
        with self._lock:
            self._check_open()
            conn = self._conns.get(topic) or self.add_topic(topic, msg.__msgtype__)
            data = typestore().serialize_cdr(msg, conn.msgtype)
            self._write(conn, canonical_topic(topic), int(t_ns), data, msg)

    def _write(self, conn, key: str, t_ns: int, data, msg) -> None:
        if t_ns < 0:
            raise BagError(self.path, f"negative timestamp {t_ns}")
        self._writer.write(conn, t_ns, data)
        self.message_count += 1
        self.bytes_written += len(data)
        if key in _TRACKED:
            self._tracker.feed(key, t_ns, msg)
        else:
            self._tracker.feed(key, t_ns, None)
        now = time.monotonic()
        if now - self._last_touch > HEARTBEAT_S:
            self.touch(now)
        # make every completed MCAP chunk durable so that a killed recorder leaves recoverable data
        storage = self._writer.storage
        chunks = getattr(storage, "chunks", None)
        if chunks is not None and len(chunks) != self._nchunks:
            self._nchunks = len(chunks)
            try:
                storage.bio.flush()
            except Exception:  # noqa: BLE001
                pass

    def touch(self, now: float | None = None) -> None:
        """Heartbeat: bump the bag directory's mtime so ExperienceStore.scan() does not take the open bag for
        a dead one (the MCAP file itself only grows once per ~1 MiB chunk). Called every HEARTBEAT_S by writes;
        a recorder that holds a bag open without writing should call it periodically."""
        self._last_touch = time.monotonic() if now is None else now
        try:
            os.utime(self.path)
        except OSError:
            pass

    # -- finishing
    def tracked_meta(self) -> EpisodeMeta:
        """Metadata as known so far: constructor meta updated with the recorded events."""
        return self._tracker.meta(self.meta, robot=self.path.parent.name, episode_id=self.path.name)

    def finish(self, meta: EpisodeMeta | None = None) -> EpisodeMeta:
        """Close the bag (custom data = meta) and write ``episode.json`` last. Returns the metadata written."""
        with self._lock:
            self._check_open()
            meta = meta if meta is not None else self.tracked_meta()
            self._writer.set_custom_data(CUSTOM_DATA_KEY, meta.to_json())
            try:
                self._writer.close()
            except Exception as exc:
                self.abort()
                raise BagError(self.path, f"closing the bag failed: {exc}") from exc
            self._state = "closed"
            write_sidecar(self.path, meta)
            self.meta = meta
            return meta

    def close(self) -> None:
        if self._state == "open":
            self.finish()

    def abort(self) -> None:
        """Stop without metadata (leaves an incomplete bag, as a crash would)."""
        with self._lock:
            if self._writer is not None and self._state == "open":
                try:
                    self._writer.abort()
                except Exception:  # noqa: BLE001
                    pass
            self._state = "closed"


# --------------------------------------------------------------------------------------------------- demos
def write_steps_bag(path: Path | str, steps: EpisodeSteps, *, trajectory_points: int = 1) -> EpisodeMeta:
    """Write an EpisodeSteps (e.g. a scripted demonstration) as a fleet-format bag.

    Messages are synthesized on the grid t_k = t0 + k*CONTROL_DT (t0 = steps.t_ns[0] or meta.start_ns):
    episode/event start at t0, task/instruction, per step camera/image_raw, joint_states and a
    cmd/joint_trajectory tagged by the step's source (one point = the step's action; with
    ``trajectory_points > 1`` the following actions are appended as later points, which the reader ignores
    because the next command replaces it), cmd/source on change, takeover/release events around teleop steps,
    episode/reward 1.0 and the end event at t0 + T*dt. ``read_episode`` of the result returns the same arrays.
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
    versions = sorted({int(v) for s, v in zip(steps.source, steps.policy_version) if s == SOURCE_POLICY and v >= 0})
    meta = replace(meta, start_ns=t0, end_ns=t_end, intervention_segments=segs, num_interventions=len(segs),
                   policy_versions=sorted(set(meta.policy_versions) | set(versions)))
    has_images = steps.images.ndim == 4 and steps.images.shape[1] > 0
    with EpisodeBagWriter(path, meta) as w:
        w.write_msg("episode/event", t0, string_msg(event_json(
            "start", episode_id=meta.episode_id, robot=meta.robot, task=meta.task, instruction=meta.instruction,
            seed=meta.seed, policy_version=versions[0] if versions else None, source=meta.source)))
        w.write_msg("task/instruction", t0, string_msg(meta.instruction))
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
            if has_images:
                w.write_msg("camera/image_raw", t, image_msg(t, steps.images[k]))
            w.write_msg("joint_states", t, joint_state_msg(t, steps.qpos[k]))
            pts = steps.actions[k:k + max(1, trajectory_points)]
            w.write_msg("cmd/joint_trajectory", t,
                        trajectory_msg(t, pts, frame_id_for(src, int(steps.policy_version[k]))))
        if meta.outcome == "success":
            w.write_msg("episode/reward", t_end, float32_msg(1.0))
        w.write_msg("episode/event", t_end, string_msg(event_json("end", outcome=meta.outcome)))
        return w.finish(meta)


# --------------------------------------------------------------------------------------------------- reader
def _custom_meta(path: Path) -> EpisodeMeta | None:
    try:
        from ruamel.yaml import YAML

        info = YAML(typ="safe").load((path / "metadata.yaml").read_text("utf8"))["rosbag2_bagfile_information"]
        text = (info.get("custom_data") or {}).get(CUSTOM_DATA_KEY)
        return EpisodeMeta.from_json(text) if text else None
    except Exception as exc:  # noqa: BLE001
        log.debug("%s: no usable custom data: %s", path, exc)
        return None


def read_meta(path: Path | str) -> EpisodeMeta:
    """EpisodeMeta of a complete episode: episode.json, else the bag's custom data."""
    path = Path(path)
    side = path / SIDECAR
    if side.exists():
        try:
            return EpisodeMeta.from_json(side.read_text("utf8"))
        except Exception as exc:  # noqa: BLE001
            raise BagError(path, f"unreadable {SIDECAR}: {exc}") from None
    meta = _custom_meta(path)
    if meta is None:
        raise IncompleteBagError(path, f"no {SIDECAR} and no episode metadata in the bag")
    return meta


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


def _reorder_joints(names: list[str], pos: np.ndarray) -> np.ndarray:
    if names and list(names) != list(JOINT_NAMES) and set(names) == set(JOINT_NAMES):
        idx = {n: i for i, n in enumerate(names)}
        return pos[[idx[n] for n in JOINT_NAMES]]
    return pos


def read_episode(path: Path | str, *, meta: EpisodeMeta | None = None) -> EpisodeSteps:
    """Read an episode bag and resample it onto the control grid (see module doc and lwd.data.schema).

    Grid t_k = start + k*CONTROL_DT from the ``start`` event up to (excluding) the ``end`` event (recovered bags
    without an end event: up to the last message). Per step: image = latest frame with log time <= t_k,
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

    wanted = {"camera/image_raw", "joint_states", "cmd/joint_trajectory", "episode/event", "task/instruction",
              "teleop/engaged"}
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
    tracker = _EventTracker()
    for key in ("episode/event", "task/instruction", "teleop/engaged"):
        for t, data in sorted(raw[key], key=lambda x: x[0]):
            tracker.feed(key, t, decode(key, data))
    all_t = [t for lst in raw.values() for t, _ in lst]
    if meta is None:
        meta = _custom_meta(path)
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
    img_t, img_d = _sorted(raw["camera/image_raw"])
    has_cam = len(img_t) > 0
    if len(js_t) == 0:
        raise EpisodeFormatError(path, "no joint_states messages")
    if len(cmd_t) == 0:
        raise EpisodeFormatError(path, "no cmd/joint_trajectory messages")

    # decode commands (all of them, cheap at ~10 Hz); drop malformed ones
    cmds: list[tuple[np.ndarray, np.ndarray, int, int]] = []
    keep_t = []
    for t, d in zip(cmd_t, cmd_d):
        msg = decode("cmd/joint_trajectory", d)
        pts = [p for p in msg.points if len(p.positions) == N_JOINTS]
        if not pts or len(pts) != len(msg.points):
            log.warning("%s: skipping cmd/joint_trajectory at %d with %d points (need %d-D positions)",
                        path, t, len(msg.points), N_JOINTS)
            continue
        pos = np.stack([_reorder_joints(msg.joint_names, np.asarray(p.positions, np.float64)) for p in pts])
        tfs = np.array([p.time_from_start.sec * 1_000_000_000 + p.time_from_start.nanosec for p in pts], np.int64)
        src, ver = parse_frame_id(msg.header.frame_id)
        cmds.append((pos, tfs, src, ver))
        keep_t.append(t)
    cmd_t = np.array(keep_t, dtype=np.int64)

    i_js = np.searchsorted(js_t, grid, side="right") - 1
    i_cmd = np.searchsorted(cmd_t, grid, side="right") - 1
    valid = (i_js >= 0) & (i_cmd >= 0)
    if has_cam:
        i_img = np.searchsorted(img_t, grid, side="right") - 1
        valid &= i_img >= 0
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
            p = _reorder_joints(m.name, np.asarray(m.position, np.float64))
            if len(p) != N_JOINTS:
                raise EpisodeFormatError(path, f"joint_states has {len(p)} positions, expected {N_JOINTS}")
            js_cache[i] = p
        qpos[out] = js_cache[i]
        c = int(i_cmd[k])
        pos, tfs, src, ver = cmds[c]
        e = int(grid[k] - cmd_t[c])
        j = min(int(np.searchsorted(tfs, e, side="right")), len(tfs) - 1)
        actions[out] = pos[j]
        source[out] = src
        version[out] = ver if src == SOURCE_POLICY else -1

    if has_cam and T:
        img_cache: dict[int, np.ndarray] = {}
        first = None
        frames = []
        for k in sel:
            i = int(i_img[k])
            if i not in img_cache:
                img_cache[i] = _image_to_array(decode("camera/image_raw", img_d[i]))
                if first is None:
                    first = img_cache[i].shape
                elif img_cache[i].shape != first:
                    raise EpisodeFormatError(path, f"image size changed from {first} to {img_cache[i].shape}")
            frames.append(img_cache[i])
        images = np.stack(frames)
    else:
        images = np.zeros((T, 0, 0, 3), np.uint8)

    return EpisodeSteps(images=images, qpos=qpos, actions=actions, source=source, policy_version=version,
                        t_ns=grid[sel], meta=meta)


# --------------------------------------------------------------------------------------------------- recovery
def _scan_mcap(file: Path) -> tuple[dict[int, Any], dict[int, Any], list[tuple[int, int, bytes]], str]:
    """Complete schemas, channels and messages of a (possibly truncated) MCAP file; never raises."""
    from mcap.records import Channel, Message, Schema
    from mcap.stream_reader import StreamReader

    schemas: dict[int, Any] = {}
    channels: dict[int, Any] = {}
    messages: list[tuple[int, int, bytes]] = []
    why = "complete"
    try:
        size = file.stat().st_size
        with open(file, "rb") as f:
            reader = StreamReader(f, validate_crcs=False, record_size_limit=max(size, 1))
            for rec in reader.records:
                if isinstance(rec, Schema):
                    schemas[rec.id] = rec
                elif isinstance(rec, Channel):
                    channels[rec.id] = rec
                elif isinstance(rec, Message):
                    messages.append((rec.channel_id, rec.log_time, bytes(rec.data)))
    except Exception as exc:  # noqa: BLE001 - EndOfFile, InvalidMagic, struct/zstd errors, garbage...
        why = f"{type(exc).__name__}: {exc}"
    return schemas, channels, messages, why


def recover_bag(path: Path | str) -> bool:
    """Make an incomplete episode directory a complete, readable episode. Never raises.

    - complete bag without episode.json (killed between close and sidecar): writes episode.json from the bag's
      custom data / events;
    - bag killed mid-write (no metadata.yaml, no MCAP footer): reads the complete MCAP chunks, rewrites a valid
      bag, replaces the broken directory with it and writes episode.json (outcome "aborted" unless an end event
      was recorded; ``recovered: true``).
    Returns False when nothing is recoverable (the caller quarantines the directory).
    """
    path = Path(path)
    try:
        return _recover(path)
    except Exception:  # noqa: BLE001
        log.exception("%s: recovery failed", path)
        return False


def _recover(path: Path) -> bool:
    if not path.is_dir():
        log.warning("%s: not a directory, nothing to recover", path)
        return False
    if (path / "metadata.yaml").exists():
        try:
            steps = read_episode(path)  # validates that the bag is usable
            meta = _custom_meta(path) or steps.meta
            if not (path / SIDECAR).exists():
                write_sidecar(path, meta)
            return True
        except Exception as exc:  # noqa: BLE001
            log.warning("%s: has metadata.yaml but is unreadable (%s); salvaging the MCAP data", path, exc)

    files = sorted(p for p in path.glob("*.mcap") if p.is_file())
    if not files:
        log.warning("%s: no .mcap file to recover", path)
        return False
    ts = typestore()
    entries: list[tuple[str, str, str, str, int, bytes]] = []  # topic, msgtype, msgdef, encoding, t, data
    for file in files:
        schemas, channels, messages, why = _scan_mcap(file)
        log.info("%s: %d complete messages (%s)", file, len(messages), why)
        for cid, t, data in messages:
            ch = channels.get(cid)
            if ch is None or ch.message_encoding != "cdr":
                continue
            sc = schemas.get(ch.schema_id)
            if sc is None:
                continue
            entries.append((ch.topic, sc.name, sc.data.decode("utf8", "replace"), sc.encoding, t, data))
    if not entries:
        log.warning("%s: no complete messages found", path)
        return False

    tmp_root = path.parent / f".recover-{path.name}-{os.getpid()}-{time.time_ns()}"
    tmp_root.mkdir(parents=True)
    try:
        new = tmp_root / path.name
        from rosbags.rosbag2 import StoragePlugin, Writer

        tracker = _EventTracker()
        with Writer(new, version=9, storage_plugin=StoragePlugin.MCAP) as w:
            conns: dict[tuple[str, str], Any] = {}
            for topic, msgtype, msgdef, enc, t, data in sorted(entries, key=lambda e: e[4]):
                key = (topic, msgtype)
                if key not in conns:
                    if msgtype in ts.types:
                        conns[key] = w.add_connection(topic, msgtype, typestore=ts)
                    else:
                        conns[key] = w.add_connection(topic, msgtype, msgdef=msgdef,
                                                      rihs01="RIHS01_" + "0" * 64)
                w.write(conns[key], t, data)
                ctopic = canonical_topic(topic)
                msg = None
                if ctopic in _TRACKED and msgtype in ts.types:
                    try:
                        msg = ts.deserialize_cdr(data, msgtype)
                    except Exception:  # noqa: BLE001
                        msg = None
                tracker.feed(ctopic, t, msg)
            meta = tracker.meta(None, robot=path.parent.name, episode_id=path.name)
            meta = replace(meta, recovered=True)
            w.set_custom_data(CUSTOM_DATA_KEY, meta.to_json())
        old = tmp_root / ".broken"
        os.rename(path, old)
        try:
            os.rename(new, path)
        except OSError:
            os.rename(old, path)  # put the original back; the caller may quarantine it
            raise
        write_sidecar(path, meta)
        log.warning("%s: recovered %d messages, outcome %s", path, len(entries), meta.outcome)
        return True
    finally:
        shutil.rmtree(tmp_root, ignore_errors=True)
