"""The rendered scene of the existing tasks is frozen: a pretrained policy and committed benchmark results depend on it.

The hashes were computed before the task registry grew (commit b629adc) with Mesa's EGL (llvmpipe) on the CPU box.
If this test fails, ``build_mjcf`` or ``SimWorld.reset`` changed what pick_place / restock3 look like: revert that, or
retrain v0 and rerun the benchmarks and then update the hashes here.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from lwd.sim.world import SimWorld

# pick_place, seed 900000, variation 1.0, 64 x 64 (the policy's image size), right after reset
IMAGE_SHA256 = "b25e7257068a36e03379b15ef8e340ee5847a03261dc5500cc79b75d530f2bb7"
IMAGE_SUM = 2042047  # sum of all uint8 channel values (a readable check next to the hash)
STATE_SHA256 = "735178fd89930ea9f3cd0b86fc6741388d5c91e429739143a93cf9af58b52ca0"  # get_state() rounded to 1e-9
INSTRUCTION = "move the blue bottle from the bin to the shelf"


@pytest.fixture(scope="module")
def world() -> SimWorld:
    with SimWorld(image_size=64) as w:
        yield w


def test_pick_place_reset_state_is_unchanged(world: SimWorld) -> None:
    world.reset("pick_place", 900000, 1.0)
    assert world.instruction == INSTRUCTION
    assert hashlib.sha256(np.round(world.get_state(), 9).tobytes()).hexdigest() == STATE_SHA256


@pytest.mark.parametrize("task", ["pick_place", "restock3"])  # restock3's scene for this seed is the same picture
def test_rendered_image_is_unchanged(world: SimWorld, task: str) -> None:
    world.reset(task, 900000, 1.0)
    img = world.render()
    assert img.shape == (64, 64, 3) and img.dtype == np.uint8
    assert int(img.astype(np.int64).sum()) == IMAGE_SUM
    assert hashlib.sha256(img.tobytes()).hexdigest() == IMAGE_SHA256
