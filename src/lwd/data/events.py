"""Event tracking: the EpisodeMeta an episode's own messages imply (start/end events, takeovers, policy versions).

Shared by the bag writer (metadata of a live recording), the reader (grid bounds of a bag without episode.json)
and crash recovery (metadata of a salvaged bag). No rclpy, no I/O.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from .schema import SOURCE_POLICY, TOPICS, EpisodeMeta, parse_frame_id

log = logging.getLogger("lwd.data")

__all__ = ["EventTracker", "TRACKED", "canonical_topic"]

# topics whose messages the tracker decodes; the others only extend the episode's time span
TRACKED = ("episode/event", "cmd/joint_trajectory", "task/instruction", "teleop/engaged")


def canonical_topic(topic: str) -> str:
    """Map a recorded topic name to its key in TOPICS ('/robot0/joint_states' -> 'joint_states')."""
    t = topic.lstrip("/")
    if t in TOPICS:
        return t
    for key in TOPICS:
        if t.endswith("/" + key):
            return key
    return t


class EventTracker:
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
        self.subgoals: list[int] = []

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
            elif kind == "subgoal":
                self.subgoals.append(t_ns)
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
        if self.subgoals or base is None:
            d["subgoal_ns"] = sorted(self.subgoals)
        return EpisodeMeta.from_dict(d)
