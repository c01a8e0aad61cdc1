"""Writing one episode bag: :class:`EpisodeBagWriter` (rosbag2 directory, MCAP, version 9).

Fed raw CDR bytes by the recorder node (``write_raw``, no re-serialization) or rosbags messages (``write_msg``).
``finish`` stores the metadata as bag custom data, closes the bag, then writes ``episode.json`` last.

Crash safety without touching rosbags' storage internals: its MCAP writer emits each completed chunk (~1 MiB) as
one write larger than Python's file buffer, which goes straight to the OS, so a killed recorder loses only the
chunk still being filled; :func:`lwd.data.recovery.recover_bag` salvages the rest (test_recover_bag_of_killed_process).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from .errors import BagError, BagExistsError
from .events import TRACKED, EventTracker, canonical_topic
from .metadata import CUSTOM_DATA_KEY, write_sidecar
from .schema import TOPICS, EpisodeMeta, typestore

log = logging.getLogger("lwd.data")

HEARTBEAT_S = 2.0  # an open writer bumps its directory mtime at least this often while messages arrive

__all__ = ["EpisodeBagWriter", "HEARTBEAT_S"]


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
        self._tracker = EventTracker()
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
            if key in TRACKED:
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
        if key in TRACKED:
            self._tracker.feed(key, t_ns, msg)
        else:
            self._tracker.feed(key, t_ns, None)
        now = time.monotonic()
        if now - self._last_touch > HEARTBEAT_S:
            self.touch(now)

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
