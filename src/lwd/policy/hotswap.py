"""Ordered background loading of announced checkpoints (ROS-free): the hot-swap logic of ``vla_policy``.

One worker thread per robot loads and verifies what the learner announces, one checkpoint at a time. A checkpoint's
identity is (version, sha256). Versions only go up: an announcement older than everything announced before is
ignored, and so is the same identity again; the same version with a different sha256 is a different checkpoint and
is loaded (the store's ``v<N>`` was replaced). A newer announcement supersedes an older one that is still queued or
loading (the older result is discarded when it finishes, so v2 finishing after v3 was announced never swaps in).
A rejected checkpoint does not raise the bar: after a bogus v99 fails verification, v1 is still accepted (the same
bogus notice again is ignored). The inference thread ``take()``s a verified policy between chunks.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

__all__ = ["Announcement", "PolicyLoader", "supersedes"]

T = TypeVar("T")


@dataclass(frozen=True)
class Announcement:
    """One ``/fleet/policy`` notice."""

    version: int
    uri: str
    sha256: str


def supersedes(version: int, sha256: str | None, current: tuple[int, str | None]) -> bool:
    """Whether checkpoint (version, sha256) replaces ``current`` = (version, sha256 or None if unknown).

    A higher version does; the same version does when both hashes are known and differ.
    """
    cur_v, cur_sha = current
    if version != cur_v:
        return version > cur_v
    return cur_sha is not None and sha256 is not None and sha256 != cur_sha


class PolicyLoader(Generic[T]):
    """Loads announced checkpoints on one worker thread, newest wins.

    Args:
        load: ``load(announcement) -> policy``; raises on a checkpoint that must be rejected. Runs on the worker.
        current_version: version already running (older announcements are ignored).
        current_sha256: its sha256 (an announcement of the same version with another sha256 is loaded); None:
            unknown, the same version is ignored.
        on_error: ``on_error(announcement, exception)`` after a failed load (worker thread).
        on_superseded: ``on_superseded(announcement)`` when a finished load was discarded for a newer one.
    """

    def __init__(self, load: Callable[[Announcement], T], current_version: int = -1,
                 current_sha256: str | None = None,
                 on_error: Callable[[Announcement, BaseException], None] | None = None,
                 on_superseded: Callable[[Announcement], None] | None = None, name: str = "policy-loader") -> None:
        self._load = load
        self._on_error = on_error
        self._on_superseded = on_superseded
        self._cv = threading.Condition()
        # identities (version, sha256)
        self._newest = (int(current_version), current_sha256)  # newest running, loaded, queued or loading
        self._good = (int(current_version), current_sha256)  # newest running or loaded
        self._rejected: set[Announcement] = set()
        self._queued: Announcement | None = None
        self._loading: Announcement | None = None
        self._ready: tuple[Announcement, T] | None = None
        self._closed = False
        self.loaded = 0
        self.superseded = 0
        self.failed = 0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    @property
    def newest(self) -> int:
        """Highest version announced (or running at start)."""
        return self._newest[0]

    def announce(self, ann: Announcement) -> bool:
        """Queue ``ann`` if it supersedes every earlier announcement; returns whether it was queued."""
        with self._cv:
            if self._closed or ann in self._rejected or not supersedes(ann.version, ann.sha256, self._newest):
                return False
            self._newest = (ann.version, ann.sha256)
            self._queued = ann  # replaces an older one not started yet
            self._cv.notify_all()
            return True

    def take(self) -> tuple[Announcement, T] | None:
        """The newest verified policy not taken yet (call between chunks), or None."""
        with self._cv:
            ready, self._ready = self._ready, None
            return ready

    def idle(self) -> bool:
        """Nothing queued or loading."""
        with self._cv:
            return self._queued is None and self._loading is None

    def wait_idle(self, timeout: float | None = None) -> bool:
        with self._cv:
            return self._cv.wait_for(lambda: self._closed or (self._queued is None and self._loading is None),
                                     timeout)

    def close(self, timeout: float | None = 5.0) -> None:
        """Stop the worker (a load in progress finishes and is discarded); idempotent."""
        with self._cv:
            self._closed = True
            self._queued = None
            self._cv.notify_all()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._cv:
                self._cv.wait_for(lambda: self._closed or self._queued is not None)
                if self._closed:
                    return
                ann, self._queued = self._queued, None
                self._loading = ann
            result: T | None = None
            error: BaseException | None = None
            try:
                result = self._load(ann)
            except Exception as e:  # noqa: BLE001 - any failure rejects this checkpoint, the worker lives on
                error = e
            with self._cv:
                self._loading = None
                stale = self._closed or (ann.version, ann.sha256) != self._newest
                if stale and error is None:
                    self.superseded += 1
                elif error is not None:
                    self.failed += 1
                    self._rejected.add(ann)
                    if self._queued is None:  # nothing newer pending: older versions are welcome again
                        self._newest = self._good
                else:
                    self.loaded += 1
                    self._good = (ann.version, ann.sha256)
                    self._ready = (ann, result)
                self._cv.notify_all()
            if error is not None and self._on_error is not None:
                self._on_error(ann, error)
            elif stale and self._on_superseded is not None:
                self._on_superseded(ann)
