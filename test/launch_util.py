"""Helpers shared by the multi-process launch tests (the test directory is on sys.path in pytest's prepend mode)."""

from __future__ import annotations

import os
import signal
import subprocess


def interrupt(proc: subprocess.Popen, wait_s: float) -> bool:
    """Ctrl-C a launch process group as a user would; SIGKILL it if it is not gone within ``wait_s``. Returns
    whether it stopped on SIGINT (True also when it had already exited)."""
    if proc.poll() is not None:
        return True
    os.killpg(proc.pid, signal.SIGINT)
    try:
        proc.wait(wait_s)
        return True
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
        return False


def assert_none_left(pids, wait_s: float = 10.0) -> None:
    """Every process in ``pids`` (a launch's children) exits, or is a zombie, within ``wait_s``."""
    import time

    import psutil

    def alive(p: int) -> bool:
        try:
            return psutil.Process(p).status() != "zombie"
        except psutil.NoSuchProcess:
            return False

    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.2)
    left = [p for p in pids if alive(p)]
    assert not left, f"processes left behind: {left}"
