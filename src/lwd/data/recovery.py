"""Crash recovery: make an episode directory whose recorder died a complete, readable episode (or say it cannot).

A recorder killed mid-write leaves an MCAP file without footer and no metadata.yaml; the complete MCAP chunks are
read with the ``mcap`` stream reader and rewritten as a valid bag (``recovered: true``).
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from .events import TRACKED, EventTracker, canonical_topic
from .metadata import CUSTOM_DATA_KEY, SIDECAR, read_custom_meta, write_sidecar
from .reader import read_episode
from .schema import typestore

log = logging.getLogger("lwd.data")

__all__ = ["recover_bag"]


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
            meta = read_custom_meta(path) or steps.meta
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

        tracker = EventTracker()
        with Writer(new, version=9, storage_plugin=StoragePlugin.MCAP) as w:
            conns: dict[tuple[str, str], Any] = {}
            for topic, msgtype, msgdef, _enc, t, data in sorted(entries, key=lambda e: e[4]):
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
                if ctopic in TRACKED and msgtype in ts.types:
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
