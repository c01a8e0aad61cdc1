"""Policy checkpoints: ``<policies>/v<N>/`` = model.safetensors + config.json + manifest.json (version, sha256).

Written atomically (temp dir + rename) so a reader never sees half a checkpoint; loading verifies the sha256,
the config and every tensor's shape before anything is swapped in. Never pickle: safetensors only.

Identity and trust: a checkpoint is identified by (version, sha256). A robot adopts an announced checkpoint only if
its path resolves (symlinks followed) to ``<policies>/v<version>`` of its own store (:func:`resolve_announced`).
Fallback: :func:`latest_valid_checkpoint` walks versions newest first and moves a corrupt one to
``<store>/quarantine/policies/`` with a reason file, so learner and robots start from the newest valid version.
Every :class:`CheckpointError` carries a short ``reason`` code (``sha256_mismatch``, ``outside_store`` …) that
nodes count per reason on ``/diagnostics``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import torch
from safetensors.torch import load_file, save_file

from lwd.policy.model import FlowVLA, PolicyConfig

__all__ = [
    "CheckpointError", "Checkpoint", "save_checkpoint", "load_checkpoint", "sha256_file",
    "list_versions", "latest_version", "version_dir", "resolve_announced", "Quarantined", "ValidCheckpoint",
    "latest_valid_checkpoint", "quarantine_checkpoint", "quarantined_versions", "fallback_report",
    "QUARANTINE_SUBDIR",
]

log = logging.getLogger("lwd.checkpoint")

MODEL_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
MANIFEST_FILE = "manifest.json"
LEARNER_FILE = "learner.safetensors"
"""The learner's algorithm state at publishing (critic, reference VLA): resumes the learner; a critic there may score
the version's chunks at deployment (lwd.rl.selection)."""
_VERSION_DIR = re.compile(r"^v(\d+)$")
_QUARANTINED_DIR = re.compile(r"^v(\d+)__(\d+)")
QUARANTINE_SUBDIR = Path("quarantine") / "policies"  # relative to the store root (the parent of policies/)


class CheckpointError(RuntimeError):
    """A checkpoint is missing, corrupt, untrusted, or does not match what was announced.

    ``reason`` is a short code for counters: ``missing_file``, ``bad_manifest``, ``sha256_mismatch`` (weights differ
    from the manifest), ``announced_sha256_mismatch``, ``config_mismatch``, ``unreadable_weights``,
    ``tensor_mismatch``, ``non_finite_weights``, ``version_mismatch``, ``outside_store``, ``bad_uri``,
    ``exists`` (a version directory that is already there).
    """

    def __init__(self, message: str, reason: str = "bad_checkpoint") -> None:
        super().__init__(message)
        self.reason = reason


@dataclass
class Checkpoint:
    model: FlowVLA
    config: PolicyConfig
    version: int
    sha256: str
    manifest: dict
    path: Path


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def version_dir(policies: Path, version: int) -> Path:
    return Path(policies) / f"v{version}"


def list_versions(policies: Path) -> list[int]:
    p = Path(policies)
    if not p.is_dir():
        return []
    return sorted(int(m.group(1)) for d in p.iterdir() if (m := _VERSION_DIR.match(d.name)) and d.is_dir())


def latest_version(policies: Path) -> int | None:
    v = list_versions(policies)
    return v[-1] if v else None


def save_checkpoint(
    policies: Path,
    model: FlowVLA,
    version: int,
    extra: dict | None = None,
    extra_tensors: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Write ``v<version>`` atomically and return its path; refuses to overwrite an existing version."""
    policies = Path(policies)
    policies.mkdir(parents=True, exist_ok=True)
    final = version_dir(policies, version)
    if final.exists():
        raise CheckpointError(f"{final} already exists; versions are immutable", "exists")
    tmp = Path(tempfile.mkdtemp(prefix=f".v{version}.", dir=policies))
    try:
        state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        save_file(state, str(tmp / MODEL_FILE))
        if extra_tensors:
            save_file({k: v.detach().cpu().contiguous() for k, v in extra_tensors.items()},
                      str(tmp / LEARNER_FILE))
        (tmp / CONFIG_FILE).write_text(json.dumps(model.cfg.to_dict(), indent=1))
        manifest = {
            "version": version,
            "sha256": sha256_file(tmp / MODEL_FILE),
            "created_unix": time.time(),
            **(extra or {}),
        }
        (tmp / MANIFEST_FILE).write_text(json.dumps(manifest, indent=1))
        for f in tmp.iterdir():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def load_checkpoint(path: Path, expected_sha256: str | None = None,
                    expected_config: PolicyConfig | None = None) -> Checkpoint:
    """Load and verify a checkpoint directory.

    Raises:
        CheckpointError: on a missing file, a sha256 that differs from the manifest or ``expected_sha256``,
            an invalid config, a config that differs from ``expected_config`` in architecture, or tensor shapes
            that do not fit the model.
    """
    path = Path(path)
    try:
        manifest = json.loads((path / MANIFEST_FILE).read_text())
        cfg = PolicyConfig.from_dict(json.loads((path / CONFIG_FILE).read_text()))
    except FileNotFoundError as e:
        raise CheckpointError(f"{path}: missing {Path(e.filename).name}", "missing_file") from None
    except (ValueError, TypeError, AttributeError) as e:
        raise CheckpointError(f"{path}: bad config/manifest: {e}", "bad_manifest") from None
    except OSError as e:
        raise CheckpointError(f"{path}: unreadable config/manifest: {e}", "missing_file") from None
    if not isinstance(manifest, dict):
        raise CheckpointError(f"{path}: manifest is not a JSON object", "bad_manifest")
    model_file = path / MODEL_FILE
    if not model_file.is_file():
        raise CheckpointError(f"{path}: missing {MODEL_FILE}", "missing_file")
    digest = sha256_file(model_file)
    if digest != manifest.get("sha256"):
        raise CheckpointError(
            f"{path}: sha256 {digest[:12]} does not match manifest {str(manifest.get('sha256'))[:12]}",
            "sha256_mismatch")
    if expected_sha256 is not None and digest != expected_sha256:
        raise CheckpointError(f"{path}: sha256 {digest[:12]} does not match announced {expected_sha256[:12]}",
                              "announced_sha256_mismatch")
    if expected_config is not None:
        for name in ("image_size", "cameras", "n_joints", "horizon", "cond_dim", "hidden", "vocab_size",
                     "max_tokens"):
            if getattr(cfg, name) != getattr(expected_config, name):
                raise CheckpointError(
                    f"{path}: config.{name}={getattr(cfg, name)} != running {getattr(expected_config, name)}",
                    "config_mismatch")
    try:
        state = load_file(str(model_file))
    except Exception as e:  # safetensors raises several types on corrupt headers
        raise CheckpointError(f"{path}: unreadable weights: {e}", "unreadable_weights") from None
    try:
        model = FlowVLA(cfg)
    except Exception as e:  # noqa: BLE001 - a config that parses but builds no model
        raise CheckpointError(f"{path}: config builds no model: {e}", "bad_manifest") from None
    expected = model.state_dict()
    missing = set(expected) - set(state)
    unexpected = set(state) - set(expected)
    if missing or unexpected:
        raise CheckpointError(
            f"{path}: tensor names differ (missing {sorted(missing)[:3]}, unexpected {sorted(unexpected)[:3]})",
            "tensor_mismatch")
    for k, v in state.items():
        if tuple(v.shape) != tuple(expected[k].shape):
            raise CheckpointError(
                f"{path}: tensor {k} has shape {tuple(v.shape)}, model needs {tuple(expected[k].shape)}",
                "tensor_mismatch")
        if v.is_floating_point() and not torch.isfinite(v).all():
            raise CheckpointError(f"{path}: tensor {k} has non-finite values", "non_finite_weights")
    model.load_state_dict(state, strict=True)
    model.eval()
    try:
        version = int(manifest.get("version", -1))
    except (TypeError, ValueError):
        raise CheckpointError(f"{path}: manifest version {manifest.get('version')!r} is not a number",
                              "bad_manifest") from None
    return Checkpoint(model, cfg, version, digest, manifest, path)


# -- trust: announced checkpoints must live in the store's policies/ ------------------------------------------------
def resolve_announced(policies: Path, uri: str, version: int) -> Path:
    """The real path of an announced checkpoint, which must be ``<policies>/v<version>`` itself.

    ``uri`` is a path or a ``file://`` URI; a relative path is taken relative to the store root (the parent of
    ``policies``). Symlinks are resolved on both sides, so a link inside ``policies/`` that points elsewhere is
    outside. Load from the returned path (not from ``uri``), so what was checked is what is read.

    Raises:
        CheckpointError: ``bad_uri`` (another URI scheme, an empty path), ``outside_store`` (anywhere but the store's
            ``policies/`` directory), ``version_mismatch`` (inside it, but not the announced version's directory).
    """
    text = str(uri)
    if text.startswith("file://"):
        text = text.removeprefix("file://")
    elif "://" in text:
        raise CheckpointError(f"announced uri {uri!r}: only local paths or file:// URIs are accepted", "bad_uri")
    if not text or "\x00" in text:
        raise CheckpointError(f"announced uri {uri!r} is empty or malformed", "bad_uri")
    policies = Path(policies)
    path = Path(text).expanduser()
    if not path.is_absolute():
        path = policies.parent / path
    try:
        real = path.resolve(strict=False)
        root = policies.resolve(strict=False)
    except (OSError, RuntimeError) as e:  # a symlink loop, an unreadable component
        raise CheckpointError(f"announced uri {uri!r} cannot be resolved: {e}", "bad_uri") from None
    if real.parent != root:
        raise CheckpointError(f"announced uri {uri!r} resolves to {real}, outside this store's {root}",
                              "outside_store")
    if real.name != f"v{int(version)}":
        raise CheckpointError(f"announced uri {uri!r} resolves to {real.name}, not v{version}", "version_mismatch")
    return real


# -- fallback on corruption ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Quarantined:
    """A checkpoint moved out of ``policies/`` (``to`` is None when someone else moved it first)."""

    version: int
    reason: str
    detail: str
    to: Path | None = None

    def to_dict(self) -> dict:
        return {"version": self.version, "reason": self.reason, "detail": self.detail,
                "to": str(self.to) if self.to is not None else None}


class ValidCheckpoint(NamedTuple):
    checkpoint: Checkpoint | None
    """The newest version that loads and verifies, or None when there is none."""
    quarantined: list[Quarantined]
    """Newer versions found corrupt on the way (newest first)."""


def quarantine_checkpoint(policies: Path, version: int, reason: str, detail: str = "") -> Path | None:
    """Move ``<policies>/v<version>`` to ``<store>/quarantine/policies/`` with a ``.reason.txt``; logged.

    Atomic (one rename on the same file system), so several processes may race: the loser finds the directory gone
    and gets None. Returns the new path.
    """
    policies = Path(policies)
    src = version_dir(policies, version)
    qdir = policies.parent / QUARANTINE_SUBDIR
    qdir.mkdir(parents=True, exist_ok=True)
    dst = qdir / f"v{version}__{time.time_ns()}_{os.getpid()}"
    try:
        os.rename(src, dst)
    except FileNotFoundError:
        return None  # another process quarantined (or removed) it meanwhile
    (qdir / f"{dst.name}.reason.txt").write_text(f"{reason}: {detail}\n" if detail else f"{reason}\n", "utf8")
    log.warning("checkpoint v%d quarantined to %s (%s: %s)", version, dst, reason, detail)
    return dst


def latest_valid_checkpoint(policies: Path, quarantine: bool = True) -> ValidCheckpoint:
    """Load the newest checkpoint that verifies, walking versions newest first.

    A version that fails to load (:class:`CheckpointError`: truncated weights, a sha256 that differs from its
    manifest, a missing file …) or whose manifest names another version is quarantined (``quarantine=True``) and
    the walk goes on to the previous one. Returns the checkpoint (None if no version is valid) and what was
    quarantined, so the caller can say so in its status.
    """
    policies = Path(policies)
    bad: list[Quarantined] = []
    for v in reversed(list_versions(policies)):
        path = version_dir(policies, v)
        try:
            ckpt = load_checkpoint(path)
            if ckpt.version != v:
                raise CheckpointError(f"{path}: manifest says version {ckpt.version}", "version_mismatch")
            return ValidCheckpoint(ckpt, bad)
        except CheckpointError as e:
            if not path.exists():
                continue  # quarantined by another process while we read it
            log.warning("checkpoint v%d is not valid (%s): falling back to an older version", v, e)
            to = quarantine_checkpoint(policies, v, e.reason, str(e)) if quarantine else None
            bad.append(Quarantined(v, e.reason, str(e), to))
    return ValidCheckpoint(None, bad)


def quarantined_versions(policies: Path, newer_than: int = -1) -> list[Quarantined]:
    """Checkpoints newer than ``newer_than`` that sit in ``<store>/quarantine/policies/``, moved there by any process
    (now or on an earlier start): newest version first, one entry per version (its latest move), with the reason
    from its ``.reason.txt`` (``unknown`` while that is not written yet)."""
    qdir = Path(policies).parent / QUARANTINE_SUBDIR
    latest: dict[int, tuple[int, Path]] = {}
    try:
        entries = list(qdir.iterdir()) if qdir.is_dir() else []
    except OSError:
        entries = []
    for d in entries:
        m = _QUARANTINED_DIR.match(d.name)
        if m is None or int(m.group(1)) <= newer_than or not d.is_dir():
            continue
        v, t = int(m.group(1)), int(m.group(2))
        if v not in latest or t > latest[v][0]:
            latest[v] = (t, d)
    out = []
    for v in sorted(latest, reverse=True):
        d = latest[v][1]
        try:
            text = (qdir / f"{d.name}.reason.txt").read_text("utf8").strip()
        except OSError:
            text = ""
        reason, _, detail = text.partition(": ")
        out.append(Quarantined(v, reason or "unknown", detail, d))
    return out


def fallback_report(policies: Path, found: ValidCheckpoint) -> list[Quarantined]:
    """What a process that started from ``found`` must report as quarantined: the corrupt versions its own walk
    found, plus newer versions another process quarantined first (robots and the learner start together and race to
    move the same corrupt checkpoint; the loser used to start on the older version without a word). Newest first."""
    running = found.checkpoint.version if found.checkpoint is not None else -1
    mine = {q.version for q in found.quarantined}
    others = [q for q in quarantined_versions(policies, running) if q.version not in mine]
    return sorted([*found.quarantined, *others], key=lambda q: -q.version)
