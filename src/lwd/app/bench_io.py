"""Recorder and ingest figures of `lwd bench systems`: drops, write speed, ingest speed (no rclpy here).

* :func:`count_drops`: messages a subscriber in the bench process saw during an episode vs the messages in that
  episode's bag, per topic. A message is identified by its CDR bytes (the recorder writes the bytes it received), so
  every topic counts, header or not. "Published" is what either side saw: a lower bound on what was published.
* :func:`recorder_write`: MB/s of the recorder's writer (:class:`lwd.data.bag.EpisodeBagWriter.write_raw`, the
  recorder node's path minus DDS) vs a raw ``mcap`` writer (same chunk size, no compression, as rosbags writes) on
  the same messages, read from existing bags.
* :func:`ingest_ratio`: the learner's ingest (``Learner.ingest_new``: scan, index, resample onto the control grid,
  encode features) in transitions/s vs a raw ``rosbags`` read (every message read and deserialized) of the same bags.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import numpy as np

__all__ = ["bag_messages", "count_drops", "recorder_write", "ingest_ratio", "episode_bags"]

Message = tuple[float, int]  # (time s, hash of the CDR bytes)


def episode_bags(episodes: Path) -> list[Path]:
    """Bag directories under ``<store>/episodes`` (any robot), sorted."""
    return sorted(p.parent for p in Path(episodes).glob("*/*/*.mcap"))


def bag_messages(bag: Path) -> list[tuple[str, int, bytes]]:
    """(topic, log time ns, CDR bytes) of every message in the bag's MCAP file, in file order. Reads a bag killed
    mid-write too (stops at the first incomplete record)."""
    from mcap.reader import NonSeekingReader

    out = []
    for f in sorted(Path(bag).glob("*.mcap")):
        with open(f, "rb") as s:
            try:
                for _, channel, msg in NonSeekingReader(s).iter_messages():
                    out.append((channel.topic, int(msg.log_time), bytes(msg.data)))
            except Exception:  # noqa: BLE001 - truncated file: keep what was complete
                pass
    return out


LATCHED_TOPICS = ("task/instruction", "teleop/engaged", "cmd/source", "policy/status")


def count_drops(seen: dict[str, list[Message]], bags: list[dict[str, list[Message]]], margin_s: float = 0.5,
                latched: tuple[str, ...] = LATCHED_TOPICS) -> dict[str, dict]:
    """Per topic: messages an independent subscriber saw during an episode that are missing from its bag.

    ``seen[topic]``: (receipt time, key) of every message the subscriber got; ``bags[i][topic]``: (log time, key) of
    bag i (one robot's bags). A bag's window is taken on the subscriber's clock: from its receipt of the bag's first
    message to its receipt of the bag's last one (latched topics, which the recorder replays at the start of every
    bag, do not count here), shrunk by ``margin_s``. The recorder's log times are not compared with the subscriber's:
    a starved recorder logs late. A message seen inside the window is dropped when its key is missing from the bag
    (keys counted as multisets over the whole bag: identical messages, e.g. repeated rewards, can mask each other).
    Returns ``{topic: {"published", "recorded", "dropped"}}``; published = seen in the windows, recorded = of those,
    found in the bag.
    """
    first: dict[str, dict] = {}
    last: dict[str, dict] = {}
    for topic, msgs in seen.items():
        f, la = first.setdefault(topic, {}), last.setdefault(topic, {})
        for t, k in msgs:
            f.setdefault(k, t)
            la[k] = t
    out: dict[str, dict] = {}
    for bag in bags:
        order = sorted((t, topic, k) for topic, msgs in bag.items() if topic not in latched for t, k in msgs)
        hits = [(first[topic][k], last[topic][k]) for _, topic, k in order if k in first.get(topic, {})]
        if not hits:
            continue
        lo, hi = hits[0][0] + margin_s, hits[-1][1] - margin_s
        if hi <= lo:
            continue
        for topic in set(seen) | set(bag):
            pub = Counter(k for t, k in seen.get(topic, ()) if lo <= t <= hi)
            have = Counter(k for _, k in bag.get(topic, ()))
            dropped = sum(max(0, n - have[k]) for k, n in pub.items())
            row = out.setdefault(topic, {"published": 0, "recorded": 0, "dropped": 0})
            row["published"] += sum(pub.values())
            row["recorded"] += sum(pub.values()) - dropped
            row["dropped"] += dropped
    return out


def merge_drops(rows: Iterable[dict[str, dict]]) -> dict:
    """Sum per-robot :func:`count_drops` results; adds each topic's and the total ``drop_rate``."""
    topics: dict[str, dict] = {}
    for r in rows:
        for topic, c in r.items():
            t = topics.setdefault(topic, {"published": 0, "recorded": 0, "dropped": 0})
            for k in t:
                t[k] += c[k]
    for c in topics.values():
        c["drop_rate"] = c["dropped"] / c["published"] if c["published"] else None
    pub = sum(c["published"] for c in topics.values())
    dropped = sum(c["dropped"] for c in topics.values())
    return {"per_topic": dict(sorted(topics.items())), "published": pub, "dropped": dropped,
            "drop_rate": dropped / pub if pub else None}


def _time_best(fn, repeats: int) -> tuple[float, object]:
    """Best wall time of ``repeats`` calls of ``fn`` and what that call returned."""
    best, ret = float("inf"), None
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        r = fn()
        dt = time.perf_counter() - t0
        if dt < best:
            best, ret = dt, r
    return best, ret


def recorder_write(bags: list[Path], repeats: int = 3, max_mb: float = 64.0) -> dict:
    """Write the bags' messages (up to ``max_mb``) with the recorder's writer and with a raw ``mcap`` writer; best of
    ``repeats`` passes each (open to close, into a temp dir). MB = 1e6 bytes of message payload."""
    from mcap.writer import CompressionType, Writer

    from lwd.data.bag import EpisodeBagWriter
    from lwd.data.schema import TOPICS, typestore

    episodes = []
    total = 0
    for b in bags:
        msgs = [m for m in bag_messages(b) if m[0] in TOPICS]
        if msgs:
            episodes.append(msgs)
            total += sum(len(d) for _, _, d in msgs)
        if total >= max_mb * 1e6:
            break
    if not total:
        return {"error": "no messages in the bags"}
    ts = typestore()
    schemas = {t: ts.generate_msgdef(m)[0].encode() for t, m in TOPICS.items()}
    tmp = Path(tempfile.mkdtemp(prefix="lwd-sys-write-"))

    def recorder() -> float:
        closing = 0.0
        for i, msgs in enumerate(episodes):
            w = EpisodeBagWriter(tmp / f"rec-{i}").open()
            for topic, t, data in msgs:
                w.write_raw(topic, t, data)
            t0 = time.perf_counter()
            w.finish()
            closing += time.perf_counter() - t0
        shutil.rmtree(tmp)
        tmp.mkdir()
        return closing

    def raw() -> None:
        for i, msgs in enumerate(episodes):
            with open(tmp / f"raw-{i}.mcap", "wb") as f:
                w = Writer(f, chunk_size=1 << 20, compression=CompressionType.NONE)
                w.start(profile="ros2", library="lwd-bench")
                channels: dict[str, int] = {}
                for topic, t, data in msgs:
                    c = channels.get(topic)
                    if c is None:
                        sid = w.register_schema(TOPICS[topic], "ros2msg", schemas[topic])
                        c = channels[topic] = w.register_channel(topic, "cdr", sid)
                    w.add_message(c, log_time=t, data=data, publish_time=t)
                w.finish()
        shutil.rmtree(tmp)
        tmp.mkdir()

    try:
        t_rec, closing = _time_best(recorder, repeats)
        t_raw, _ = _time_best(raw, repeats)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    mb = total / 1e6
    return {"bags": len(episodes), "messages": sum(len(m) for m in episodes), "mb": round(mb, 3),
            "recorder_mb_s": mb / t_rec, "raw_mcap_mb_s": mb / t_raw, "ratio": t_raw / t_rec, "repeats": repeats,
            "recorder_close_share": closing / t_rec, "recorder_close_ms_per_bag": 1e3 * closing / len(episodes)}


def ingest_ratio(bags: list[Path], policy_dir: Path, version: int, repeats: int = 1, algo: str = "lwd",
                 threads: int = 1) -> dict:
    """Learner ingest (transitions/s) vs a raw rosbags read of the same bags (transitions / the read's time).

    The bags (with their ``episode.json``) are copied into a fresh store holding only ``policy_dir`` as
    ``v<version>``; ``Learner.ingest_new`` is timed on them. Also timed: ``ExperienceStore.load`` alone (bag ->
    control-grid steps, no indexing or encoding), to show where the learner's time goes. Best of ``repeats``.
    """
    from rosbags.rosbag2 import Reader

    from lwd.data.bag import SIDECAR
    from lwd.data.schema import typestore
    from lwd.data.store import ExperienceStore
    from lwd.rl.learner import Learner, LearnerConfig

    bags = [b for b in bags if (b / SIDECAR).exists() and (b / "metadata.yaml").exists()]
    if not bags:
        return {"error": "no complete bags"}
    ts = typestore()

    def raw_read() -> None:
        for b in bags:
            with Reader(b) as r:
                for conn, _, data in r.messages():
                    ts.deserialize_cdr(data, conn.msgtype)

    best_ingest, best_load, transitions, episodes = float("inf"), float("inf"), 0, 0
    for _ in range(max(1, repeats)):
        with tempfile.TemporaryDirectory(prefix="lwd-sys-ingest-") as tmp:
            root = Path(tmp) / "store"
            shutil.copytree(policy_dir, root / "policies" / f"v{version}")
            learner = Learner(root, LearnerConfig(algo=algo, offline_updates=0, background_updates=0, gate="none",
                                                  threads=threads))
            for b in bags:  # as a recorder leaves them: <store>/episodes/<robot>/<episode>
                shutil.copytree(b, root / "episodes" / b.parent.name / b.name)
            t0 = time.perf_counter()
            learner.ingest_new()
            best_ingest = min(best_ingest, time.perf_counter() - t0)
            transitions, episodes = len(learner.buffer) if learner.buffer.num_episodes else 0, \
                learner.buffer.num_episodes
            store = ExperienceStore(root)
            records = store.episodes()
            t0 = time.perf_counter()
            for rec in records:
                try:
                    store.load(rec)
                except Exception:  # noqa: BLE001 - as the learner does: a bag it cannot use is skipped
                    pass
            best_load = min(best_load, time.perf_counter() - t0)
            learner.close()
    t_raw, _ = _time_best(raw_read, repeats)
    mb = sum(f.stat().st_size for b in bags for f in b.glob("*.mcap")) / 1e6
    if not transitions:
        return {"error": "the learner ingested no transitions", "bags": len(bags)}
    return {"bags": len(bags), "episodes": episodes, "skipped_bags": len(bags) - episodes, "transitions": transitions,
            "mb": round(mb, 3),
            "learner_transitions_s": transitions / best_ingest, "load_only_transitions_s": transitions / best_load,
            "raw_read_transitions_s": transitions / t_raw, "raw_read_mb_s": mb / t_raw,
            "ingest_ratio": t_raw / best_ingest, "load_only_ratio": t_raw / best_load, "repeats": repeats}


def bag_keys(bag: Path) -> dict[str, list[Message]]:
    """:func:`bag_messages` as ``{topic: [(log time s, hash of bytes)]}`` for :func:`count_drops`."""
    out: dict[str, list[Message]] = {}
    for topic, t, data in bag_messages(bag):
        out.setdefault(topic, []).append((t * 1e-9, hash(data)))
    return out


def summarize_ticks(stamps: list[float], t0: float, t1: float, period: float) -> dict:
    """Control rate and missed ticks (consecutive stamps more than 1.5 periods apart) of the stamps in [t0, t1]."""
    s = np.asarray([t for t in stamps if t0 <= t <= t1], dtype=np.float64)
    d = np.diff(s) if s.size > 1 else np.zeros(0)
    return {"control_rate_hz": float((s.size - 1) / (s[-1] - s[0])) if s.size > 1 and s[-1] > s[0] else None,
            "ticks": int(s.size), "missed_ticks": int(np.sum(d > 1.5 * period)),
            "max_gap_ms": float(1e3 * d.max()) if d.size else None}
