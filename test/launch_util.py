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
