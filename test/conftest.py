"""Shared test setup: headless MuJoCo, local-only DDS, a small pretrained store built once per session."""

from __future__ import annotations

import os
import random

import pytest

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
# A test-unique DDS domain so parallel runs on one machine never see each other.
os.environ.setdefault("ROS_DOMAIN_ID", str(random.Random(os.getpid()).randint(1, 200)))


@pytest.fixture(scope="session")
def tiny_store(tmp_path_factory):
    """A store with a few scripted demos per task and a quickly pretrained v0 (not a good policy)."""
    from lwd.rl.pretrain import PretrainConfig, pretrain

    root = tmp_path_factory.mktemp("store")
    pretrain(root, PretrainConfig(demos_per_task=2, steps=30, batch_size=16, threads=1), progress=False)
    return root
