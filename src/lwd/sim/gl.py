"""Headless OpenGL by default: pick ``MUJOCO_GL`` before MuJoCo is imported (MuJoCo reads it once, at import).

``lwd.sim`` calls ``configure_gl()`` first thing, so ``SimWorld`` renders without the user exporting ``MUJOCO_GL``:

* ``MUJOCO_GL`` already set: kept as it is (the user's choice wins);
* a display (``DISPLAY`` / ``WAYLAND_DISPLAY``) or not Linux: left unset (MuJoCo's default, GLFW);
* otherwise ``egl`` when ``libEGL`` loads (Mesa or a GPU driver), else ``osmesa`` when ``libOSMesa`` loads, else left
  unset with a warning that says what to install.

The choice is logged (``lwd.sim.gl``) when made and again by the first ``SimWorld`` that renders, after the
application configured logging. Child processes inherit the variable.
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys
from collections.abc import Callable, Mapping

__all__ = ["EGL_LIBS", "OSMESA_LIBS", "choose_backend", "configure_gl", "describe", "library_loads", "log_choice_once"]

log = logging.getLogger("lwd.sim.gl")

EGL_LIBS = ("libEGL.so.1", "libEGL.so")
OSMESA_LIBS = ("libOSMesa.so.8", "libOSMesa.so.6", "libOSMesa.so")

_choice: tuple[str | None, str] | None = None  # (backend, why) of this process's configure_gl()


def library_loads(names: tuple[str, ...]) -> bool:
    """True if one of the shared libraries can be loaded."""
    for name in names:
        try:
            ctypes.CDLL(name)
            return True
        except OSError:
            continue
    return False


def choose_backend(
    env: Mapping[str, str], platform: str = sys.platform, loads: Callable[[tuple[str, ...]], bool] = library_loads
) -> tuple[str | None, str]:
    """(MUJOCO_GL value to set or None to leave it alone, reason). Pure apart from ``loads``."""
    given = env.get("MUJOCO_GL", "").strip()
    if given:
        return None, f"MUJOCO_GL={given} set by the environment"
    if not platform.startswith("linux"):
        return None, f"{platform}: MuJoCo's default GL"
    if env.get("DISPLAY") or env.get("WAYLAND_DISPLAY"):
        return None, "a display is present: MuJoCo's default (GLFW)"
    if loads(EGL_LIBS):
        return "egl", "no display: EGL (libEGL loads)"
    if loads(OSMESA_LIBS):
        return "osmesa", "no display and no libEGL: OSMesa (software)"
    return None, "no display, neither libEGL nor libOSMesa loads: apt-get install libegl1 (or libosmesa6)"


def configure_gl(env: dict[str, str] | None = None) -> str | None:
    """Set ``MUJOCO_GL`` in ``env`` (default ``os.environ``) when it is unset and no display is present.

    Returns the value chosen, or None when the variable was left alone. Only the first call in a process decides for
    ``os.environ``."""
    global _choice
    target = os.environ if env is None else env
    if env is None and _choice is not None:
        return _choice[0]
    backend, why = choose_backend(target)
    if backend is not None:
        target["MUJOCO_GL"] = backend
    if env is None:
        _choice = (backend, why)
        if backend is None and "neither" in why:
            log.warning("headless rendering unavailable: %s", why)
        else:
            log.debug("rendering: %s", describe())  # logged at INFO by the first SimWorld that renders
    return backend


def describe() -> str:
    """What this process renders with and why, for the log."""
    gl = os.environ.get("MUJOCO_GL", "") or "(unset: MuJoCo's default)"
    why = _choice[1] if _choice is not None else "configure_gl() not called"
    return f"MUJOCO_GL={gl} ({why})"


_logged = False


def log_choice_once() -> None:
    """Log ``describe()`` once per process (``SimWorld`` calls it when it creates a renderer)."""
    global _logged
    if not _logged:
        _logged = True
        log.info("rendering: %s", describe())
