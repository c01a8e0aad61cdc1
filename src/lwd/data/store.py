"""The experience store: episode bags on disk + a SQLite index for the learner.

Layout::

    <root>/episodes/<robot>/<episode_id>/   rosbag2 directory + episode.json (see lwd.data.bag)
    <root>/policies/                        checkpoints (written by the learner, not here)
    <root>/quarantine/                      unrecoverable episode directories / stray files (+ .reason.txt)
    <root>/quarantine/policies/             corrupt checkpoints (lwd.policy.checkpoint.latest_valid_checkpoint)
    <root>/index.sqlite                     index (WAL mode; several processes may use it at once)

``scan()`` registers complete episodes (those with episode.json); incomplete ones older than ``stale_s`` are
recovered (``recover_bag``) or quarantined. ``claim_new(consumer)`` hands each episode to each consumer exactly
once, atomically (one IMMEDIATE transaction), across processes and restarts.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .bag import SIDECAR, read_episode, read_meta, recover_bag
from .schema import EpisodeMeta, EpisodeSteps

log = logging.getLogger("lwd.data")

__all__ = ["ExperienceStore", "EpisodeRecord"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS episodes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    relpath TEXT NOT NULL UNIQUE,
    robot TEXT NOT NULL,
    episode_id TEXT NOT NULL,
    source TEXT NOT NULL,
    task TEXT NOT NULL,
    outcome TEXT NOT NULL,
    start_ns INTEGER NOT NULL,
    end_ns INTEGER NOT NULL,
    num_interventions INTEGER NOT NULL,
    meta_json TEXT NOT NULL,
    indexed_ns INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS episodes_source ON episodes(source);
CREATE INDEX IF NOT EXISTS episodes_robot ON episodes(robot);
CREATE TABLE IF NOT EXISTS ingested (
    consumer TEXT NOT NULL,
    episode INTEGER NOT NULL REFERENCES episodes(id),
    ingested_ns INTEGER NOT NULL,
    PRIMARY KEY (consumer, episode)
);
"""


@dataclass
class EpisodeRecord:
    """One indexed episode (``path`` is absolute; the index stores it relative to the store root)."""

    id: int
    path: Path
    episode_id: str
    robot: str
    task: str
    instruction: str
    seed: int
    source: str
    outcome: str
    policy_versions: list[int]
    start_ns: int
    end_ns: int
    intervention_segments: list[list[int]]
    num_interventions: int
    recovered: bool
    indexed_ns: int
    meta: EpisodeMeta = field(repr=False, default=None)  # type: ignore[assignment]

    @property
    def success(self) -> bool:
        return self.outcome == "success"


class ExperienceStore:
    def __init__(self, root: Path | str, *, stale_s: float = 30.0) -> None:
        self.root = Path(root)
        self.stale_s = float(stale_s)
        self.episodes_dir = self.root / "episodes"
        self.policies_dir = self.root / "policies"
        self.quarantine_dir = self.root / "quarantine"
        for d in (self.episodes_dir, self.policies_dir, self.quarantine_dir):
            d.mkdir(parents=True, exist_ok=True)
        self.db_path = self.root / "index.sqlite"
        with self._db() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(_SCHEMA)

    # ------------------------------------------------------------------ plumbing
    @contextlib.contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        """A short-lived connection (safe across threads, forks and processes); autocommit unless BEGIN."""
        db = sqlite3.connect(self.db_path, timeout=60.0, isolation_level=None)
        try:
            db.execute("PRAGMA busy_timeout=60000")
            db.execute("PRAGMA synchronous=NORMAL")
            yield db
        finally:
            db.close()

    @contextlib.contextmanager
    def _scan_lock(self) -> Iterator[None]:
        """Serializes scan() (recovery/quarantine moves) between processes."""
        with open(self.root / ".scan.lock", "a+") as f:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)

    def _rel(self, path: Path) -> str:
        return str(Path(path).resolve().relative_to(self.root.resolve()))

    def _record(self, row: tuple) -> EpisodeRecord:
        rid, relpath, meta_json, indexed_ns = row
        meta = EpisodeMeta.from_json(meta_json)
        return EpisodeRecord(
            id=rid, path=self.root / relpath, episode_id=meta.episode_id, robot=meta.robot, task=meta.task,
            instruction=meta.instruction, seed=meta.seed, source=meta.source, outcome=meta.outcome,
            policy_versions=list(meta.policy_versions), start_ns=meta.start_ns, end_ns=meta.end_ns,
            intervention_segments=[list(s) for s in meta.intervention_segments],
            num_interventions=meta.num_interventions, recovered=meta.recovered, indexed_ns=indexed_ns, meta=meta)

    # ------------------------------------------------------------------ paths
    def episode_path(self, robot: str, episode_id: str) -> Path:
        """Directory for a new episode bag (parents created; the bag writer creates the directory itself)."""
        for name in (robot, episode_id):
            if not name or "/" in name or name.startswith(".") or name in ("..",):
                raise ValueError(f"invalid robot/episode name {name!r}")
        d = self.episodes_dir / robot
        d.mkdir(parents=True, exist_ok=True)
        return d / episode_id

    # ------------------------------------------------------------------ indexing
    def register(self, path: Path | str, meta: EpisodeMeta | None = None) -> bool:
        """Index one complete episode directory. Returns True if newly added."""
        path = Path(path)
        meta = meta if meta is not None else read_meta(path)
        with self._db() as db:
            cur = db.execute(
                "INSERT OR IGNORE INTO episodes(relpath, robot, episode_id, source, task, outcome, start_ns, end_ns,"
                " num_interventions, meta_json, indexed_ns) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (self._rel(path), meta.robot, meta.episode_id, meta.source, meta.task, meta.outcome,
                 int(meta.start_ns), int(meta.end_ns), int(meta.num_interventions), meta.to_json(),
                 time.time_ns()))
            return cur.rowcount > 0

    def _indexed(self) -> set[str]:
        with self._db() as db:
            return {r[0] for r in db.execute("SELECT relpath FROM episodes")}

    def scan(self) -> int:
        """Register complete episodes not yet indexed; recover or quarantine stale incomplete ones.

        Never raises for bad data on disk (each problem is logged). Returns the number of newly indexed episodes.
        """
        added = 0
        with self._scan_lock():
            indexed = self._indexed()
            now = time.time()
            for robot_dir in sorted(self._listdir(self.episodes_dir)):
                if robot_dir.name.startswith("."):
                    continue
                if not robot_dir.is_dir():
                    self._stray(robot_dir, now, "stray file in episodes/")
                    continue
                for ep in sorted(self._listdir(robot_dir)):
                    if ep.name.startswith("."):
                        self._cleanup_tmp(ep, now)
                        continue
                    try:
                        if self._rel(ep) in indexed:
                            continue
                        added += self._scan_one(ep, now)
                    except Exception:  # noqa: BLE001 - never crash the scanner
                        log.exception("%s: scan failed", ep)
        if added:
            log.info("%s: indexed %d new episode(s)", self.root, added)
        return added

    @staticmethod
    def _listdir(d: Path) -> list[Path]:
        try:
            return list(d.iterdir())
        except OSError as exc:
            log.warning("%s: cannot list: %s", d, exc)
            return []

    def _age(self, path: Path, now: float) -> float:
        """Seconds since anything under ``path`` was modified."""
        try:
            mtimes = [path.lstat().st_mtime]
            if path.is_dir():
                mtimes += [p.lstat().st_mtime for p in path.iterdir()]
            return now - max(mtimes)
        except OSError:
            return 0.0

    def _scan_one(self, ep: Path, now: float) -> int:
        if not ep.is_dir():
            self._stray(ep, now, "stray file in episodes/<robot>/")
            return 0
        complete = (ep / SIDECAR).exists() and (ep / "metadata.yaml").exists()
        if complete:
            try:
                meta = read_meta(ep)
            except Exception as exc:  # noqa: BLE001
                if self._age(ep, now) < self.stale_s:
                    return 0
                log.warning("%s: %s; rebuilding it from the bag", ep, exc)
                try:
                    os.replace(ep / SIDECAR, ep / f"{SIDECAR}.bad")
                except OSError:
                    pass
                if recover_bag(ep):
                    return int(self.register(ep))
                self._quarantine(ep, f"unreadable {SIDECAR} and unrecoverable bag: {exc}")
                return 0
            return int(self.register(ep, meta))
        if self._age(ep, now) < self.stale_s:
            return 0  # probably still being written
        if recover_bag(ep):
            log.warning("%s: incomplete episode recovered", ep)
            return int(self.register(ep))
        self._quarantine(ep, "incomplete episode, nothing recoverable")
        return 0

    def _stray(self, path: Path, now: float, why: str) -> None:
        if self._age(path, now) >= self.stale_s:
            self._quarantine(path, why)

    def _cleanup_tmp(self, path: Path, now: float) -> None:
        """Leftovers of an interrupted recovery (``.recover-*``) older than the grace period."""
        if path.name.startswith(".recover-") and self._age(path, now) >= max(self.stale_s, 60.0):
            broken = path / ".broken"
            if broken.exists():
                self._quarantine(broken, "left over by an interrupted recovery", name=path.name)
            shutil.rmtree(path, ignore_errors=True)

    def _quarantine(self, path: Path, reason: str, name: str | None = None) -> Path | None:
        try:
            rel = "__".join(path.relative_to(self.episodes_dir).parts) if name is None else name.lstrip(".")
        except ValueError:
            rel = path.name
        dst = self.quarantine_dir / f"{rel}__{time.time_ns()}"
        try:
            shutil.move(str(path), str(dst))
            (self.quarantine_dir / f"{dst.name}.reason.txt").write_text(reason + "\n", "utf8")
            log.warning("%s: quarantined to %s (%s)", path, dst, reason)
            return dst
        except Exception:  # noqa: BLE001
            log.exception("%s: could not quarantine (%s)", path, reason)
            return None

    # ------------------------------------------------------------------ queries
    def claim_new(self, consumer: str, limit: int | None = None) -> list[EpisodeRecord]:
        """Episodes not yet ingested by ``consumer``; marks them ingested in the same transaction."""
        with self._db() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                sql = ("SELECT id, relpath, meta_json, indexed_ns FROM episodes e WHERE NOT EXISTS "
                       "(SELECT 1 FROM ingested i WHERE i.consumer = ? AND i.episode = e.id) ORDER BY id")
                args: tuple = (consumer,)
                if limit is not None:
                    sql += " LIMIT ?"
                    args += (int(limit),)
                rows = db.execute(sql, args).fetchall()
                now = time.time_ns()
                db.executemany("INSERT INTO ingested(consumer, episode, ingested_ns) VALUES (?,?,?)",
                               [(consumer, r[0], now) for r in rows])
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return [self._record(r) for r in rows]

    def episodes(self, source: str | None = None, robot: str | None = None,
                 outcome: str | None = None) -> list[EpisodeRecord]:
        sql = "SELECT id, relpath, meta_json, indexed_ns FROM episodes WHERE 1=1"
        args: list = []
        for col, val in (("source", source), ("robot", robot), ("outcome", outcome)):
            if val is not None:
                sql += f" AND {col} = ?"
                args.append(val)
        with self._db() as db:
            rows = db.execute(sql + " ORDER BY id", args).fetchall()
        return [self._record(r) for r in rows]

    def discard(self, records: list[EpisodeRecord]) -> None:
        """Delete episodes from the index and from disk: for a run rolled back to an earlier point (the bench's
        resume), never for data a learner may still need."""
        with self._db() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                db.executemany("DELETE FROM ingested WHERE episode = ?", [(r.id,) for r in records])
                db.executemany("DELETE FROM episodes WHERE id = ?", [(r.id,) for r in records])
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        for r in records:
            shutil.rmtree(r.path, ignore_errors=True)

    def __len__(self) -> int:
        with self._db() as db:
            return db.execute("SELECT COUNT(*) FROM episodes").fetchone()[0]

    def load(self, record: EpisodeRecord | Path | str) -> EpisodeSteps:
        path = record.path if isinstance(record, EpisodeRecord) else Path(record)
        meta = record.meta if isinstance(record, EpisodeRecord) else None
        return read_episode(path, meta=meta)

    def quarantined(self) -> list[Path]:
        """Quarantined episodes and stray files, and checkpoints (``quarantine/policies/``, see lwd.policy)."""
        policies = self.quarantine_dir / "policies"
        entries = [p for p in self._listdir(self.quarantine_dir) if p != policies]
        if policies.is_dir():
            entries += self._listdir(policies)
        return sorted(p for p in entries if not p.name.endswith(".reason.txt"))

    def __repr__(self) -> str:
        return f"ExperienceStore({str(self.root)!r})"


