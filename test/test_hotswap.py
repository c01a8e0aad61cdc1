"""Hot-swap ordering: one loader worker, versions only go up, a newer announcement supersedes an older load."""

import threading

import pytest

from lwd.policy.hotswap import Announcement, PolicyLoader


class _GatedLoad:
    """load(ann) blocks until the test releases that version; records concurrency."""

    def __init__(self, fail: tuple[int, ...] = ()) -> None:
        self.gates: dict[int, threading.Event] = {}
        self.started: list[int] = []
        self.fail = fail
        self.active = 0
        self.max_active = 0
        self.lock = threading.Lock()
        self.started_cv = threading.Condition()

    def gate(self, v: int) -> threading.Event:
        return self.gates.setdefault(v, threading.Event())

    def __call__(self, ann: Announcement) -> str:
        with self.lock:
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        with self.started_cv:
            self.started.append(ann.version)
            self.started_cv.notify_all()
        try:
            assert self.gate(ann.version).wait(10.0), f"v{ann.version} never released"
            if ann.version in self.fail:
                raise ValueError(f"v{ann.version}: bad sha256")
            return f"policy-v{ann.version}"
        finally:
            with self.lock:
                self.active -= 1

    def wait_started(self, v: int) -> None:
        with self.started_cv:
            assert self.started_cv.wait_for(lambda: v in self.started, 10.0)


def _ann(v: int) -> Announcement:
    return Announcement(v, f"policies/v{v}", "0" * 64)


def test_newer_announcement_supersedes_a_load_in_progress():
    load = _GatedLoad()
    superseded = []
    loader = PolicyLoader(load, current_version=1, on_superseded=lambda a: superseded.append(a.version))
    try:
        assert loader.announce(_ann(2))
        load.wait_started(2)
        assert loader.announce(_ann(3))  # v3 arrives while v2 is still loading
        load.gate(2).set()  # v2 finishes after v3 was announced ...
        load.wait_started(3)
        assert loader.take() is None  # ... and is never offered
        load.gate(3).set()
        assert loader.wait_idle(10.0)
        ann, policy = loader.take()
        assert (ann.version, policy) == (3, "policy-v3")
        assert loader.take() is None and superseded == [2] and loader.superseded == 1
        assert load.max_active == 1  # one worker: loads never overlap
    finally:
        loader.close()


def test_queued_announcements_collapse_to_the_newest():
    load = _GatedLoad()
    loader = PolicyLoader(load, current_version=0)
    try:
        loader.announce(_ann(1))
        load.wait_started(1)
        for v in (2, 3, 4):  # arrive while v1 loads: only v4 is loaded next
            assert loader.announce(_ann(v))
        load.gate(1).set()
        load.wait_started(4)
        load.gate(4).set()
        assert loader.wait_idle(10.0)
        assert loader.take()[0].version == 4 and load.started == [1, 4]
    finally:
        loader.close()


def test_old_or_repeated_announcements_are_ignored():
    load = _GatedLoad()
    loader = PolicyLoader(load, current_version=3)
    try:
        assert not loader.announce(_ann(3)) and not loader.announce(_ann(2))
        load.gate(5).set()
        assert loader.announce(_ann(5))
        assert not loader.announce(_ann(4))  # older than the one announced
        assert loader.wait_idle(10.0) and loader.take()[0].version == 5
        assert load.started == [5] and loader.newest == 5
    finally:
        loader.close()


def test_failed_load_is_reported_and_the_worker_lives_on():
    load = _GatedLoad(fail=(2,))
    errors = []
    loader = PolicyLoader(load, current_version=1, on_error=lambda a, e: errors.append((a.version, str(e))))
    try:
        load.gate(2).set()
        loader.announce(_ann(2))
        assert loader.wait_idle(10.0)
        assert loader.take() is None and errors == [(2, "v2: bad sha256")] and loader.failed == 1
        load.gate(3).set()
        loader.announce(_ann(3))
        assert loader.wait_idle(10.0) and loader.take()[0].version == 3
    finally:
        loader.close()


def test_rejected_bogus_version_does_not_block_older_real_ones():
    load = _GatedLoad(fail=(99,))
    loader = PolicyLoader(load, current_version=0)
    try:
        load.gate(99).set()
        loader.announce(_ann(99))  # e.g. a bogus notice with a wrong sha256
        assert loader.wait_idle(10.0) and loader.take() is None
        assert not loader.announce(_ann(99))  # the same bad notice again: ignored
        load.gate(1).set()
        assert loader.announce(_ann(1))
        assert loader.wait_idle(10.0) and loader.take()[0].version == 1
    finally:
        loader.close()


def test_close_stops_the_worker_and_discards_a_load_in_flight():
    load = _GatedLoad()
    loader = PolicyLoader(load, current_version=0)
    loader.announce(_ann(1))
    load.wait_started(1)
    closer = threading.Thread(target=loader.close, kwargs={"timeout": 10.0})
    closer.start()
    load.gate(1).set()
    closer.join(10.0)
    assert not closer.is_alive() and not loader._thread.is_alive()
    assert loader.take() is None and not loader.announce(_ann(2))
    loader.close()  # idempotent


@pytest.mark.parametrize("n", [20])
def test_many_announcements_from_threads_end_on_the_newest(n):
    load = _GatedLoad()
    for v in range(1, n + 1):
        load.gate(v).set()
    loader = PolicyLoader(load, current_version=0)
    try:
        threads = [threading.Thread(target=loader.announce, args=(_ann(v),)) for v in range(1, n + 1)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert loader.wait_idle(10.0)
        assert loader.take()[0].version == n and load.max_active == 1
        assert load.started == sorted(load.started)  # loads happen in increasing version order
    finally:
        loader.close()
