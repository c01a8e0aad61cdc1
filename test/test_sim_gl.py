"""Headless rendering by default: lwd.sim picks MUJOCO_GL (EGL, else OSMesa) before MuJoCo is imported."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from lwd.sim.gl import EGL_LIBS, OSMESA_LIBS, choose_backend, configure_gl

SRC = str(Path(__file__).resolve().parents[1] / "src")


def _loads(*available: tuple[str, ...]):
    return lambda names: names in available


def test_choice_rules() -> None:
    linux = "linux"
    assert choose_backend({}, linux, _loads(EGL_LIBS, OSMESA_LIBS))[0] == "egl"
    assert choose_backend({}, linux, _loads(OSMESA_LIBS))[0] == "osmesa"  # fallback without libEGL
    backend, why = choose_backend({}, linux, _loads())
    assert backend is None and "libegl1" in why
    assert choose_backend({"MUJOCO_GL": "osmesa"}, linux, _loads(EGL_LIBS))[0] is None  # the user's choice wins
    assert choose_backend({"DISPLAY": ":0"}, linux, _loads(EGL_LIBS))[0] is None  # a display: MuJoCo's default
    assert choose_backend({"WAYLAND_DISPLAY": "wayland-0"}, linux, _loads(EGL_LIBS))[0] is None
    assert choose_backend({}, "darwin", _loads(EGL_LIBS))[0] is None


def test_configure_sets_only_an_unset_variable() -> None:
    env: dict[str, str] = {}
    chosen = configure_gl(env)
    assert chosen in ("egl", "osmesa") and env["MUJOCO_GL"] == chosen
    env = {"MUJOCO_GL": "osmesa"}
    assert configure_gl(env) is None and env == {"MUJOCO_GL": "osmesa"}


def test_simworld_renders_without_mujoco_gl() -> None:
    """A fresh process with neither MUJOCO_GL nor a display renders and logs the choice."""
    code = (
        "import logging, os; logging.basicConfig(level=logging.INFO)\n"
        "from lwd.sim.world import SimWorld\n"
        "w = SimWorld(image_size=16); img = w.render(); w.close()\n"
        "assert img.shape == (16, 16, 3) and img.std() > 5, img.std()\n"
        "print('MUJOCO_GL=' + os.environ['MUJOCO_GL'])\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("MUJOCO_GL", "PYOPENGL_PLATFORM", "DISPLAY",
                                                             "WAYLAND_DISPLAY")}
    env["PYTHONPATH"] = SRC
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "MUJOCO_GL=egl" in r.stdout or "MUJOCO_GL=osmesa" in r.stdout
    assert "lwd.sim.gl" in r.stderr and "rendering: MUJOCO_GL=" in r.stderr
