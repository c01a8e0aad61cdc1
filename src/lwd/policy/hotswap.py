"""Ordered background loading of announced checkpoints (ROS-free): the hot-swap logic of ``vla_policy``.

One worker thread per robot loads and verifies what the learner announces, one checkpoint at a time. Versions only
go up: an announcement not newer than everything announced before is ignored, and a newer announcement supersedes
an older one that is still queued or loading (the older result is discarded when it finishes, so v2 finishing
after v3 was announced never swaps in). A rejected checkpoint does not raise the bar: after a bogus v99 fails
verification, v1 is still accepted (the same bogus notice again is ignored). The inference thread ``take()``s a
verified policy between chunks.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

__all__ = ["Announcement", "PolicyLoader"]

T = TypeVar("T")


@dataclass(frozen=True)
class Announcement:
    """One ``/fleet/policy`` notice."""

    version: int
    uri: str
    sha256: str


class PolicyLoader(Generic[T]):
    """Loads announced checkpoints on one worker thread, newest wins.

    Args:
        load: ``load(announcement) -> policy``; raises on a checkpoint that must be rejected. Runs on the worker.
        current_version: version already running (announcements up to it are ignored).
        on_error: ``on_error(announcement, exception)`` after a failed load (worker thread).
        on_superseded: ``on_superseded(announcement)`` when a finished load was discarded for a newer one.
    """

    def __init__(self, load: Callable[[Announcement], T], current_version: int = -1,
                 on_error: Callable[[Announcement, BaseException], None] | None = None,
                 on_superseded: Callable[[Announcement], None] | None = None, name: str = "policy-loader") -> None:
        self._load = load
        self._on_error = on_error
        self._on_superseded = on_superseded
        self._cv = threading.Condition()
        self._newest = int(current_version)  # highest version running, loaded, queued or loading
        self._good = int(current_version)  # highest version running or loaded
        self._rejected: set[tuple[int, str]] = set()
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
        return self._newest

    def announce(self, ann: Announcement) -> bool:
        """Queue ``ann`` if it is newer than every earlier announcement; returns whether it was queued."""
        with self._cv:
            if self._closed or ann.version <= self._newest or (ann.version, ann.sha256) in self._rejected:
                return False
            self._newest = ann.version
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
                stale = self._closed or ann.version < self._newest
                if stale and error is None:
                    self.superseded += 1
                elif error is not None:
                    self.failed += 1
                    self._rejected.add((ann.version, ann.sha256))
                    if self._queued is None:  # nothing newer pending: older versions are welcome again
                        self._newest = self._good
                else:
                    self.loaded += 1
                    self._good = max(self._good, ann.version)
                    self._ready = (ann, result)
                self._cv.notify_all()
            if error is not None and self._on_error is not None:
                self._on_error(ann, error)
            elif stale and self._on_superseded is not None:
                self._on_superseded(ann)
