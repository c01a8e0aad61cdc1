"""Policy checkpoints: ``<policies>/v<N>/`` = model.safetensors + config.json + manifest.json (version, sha256).

Written atomically (temp dir + rename) so a reader never sees half a checkpoint; loading verifies the sha256,
the config and every tensor's shape before anything is swapped in. Never pickle: safetensors only.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from lwd.policy.model import FlowVLA, PolicyConfig

__all__ = [
    "CheckpointError", "Checkpoint", "save_checkpoint", "load_checkpoint", "sha256_file",
    "list_versions", "latest_version", "version_dir",
]

MODEL_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
MANIFEST_FILE = "manifest.json"
_VERSION_DIR = re.compile(r"^v(\d+)$")


class CheckpointError(RuntimeError):
    """A checkpoint is missing, corrupt, or does not match what was announced."""


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
        raise CheckpointError(f"{final} already exists; versions are immutable")
    tmp = Path(tempfile.mkdtemp(prefix=f".v{version}.", dir=policies))
    try:
        state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        save_file(state, str(tmp / MODEL_FILE))
        if extra_tensors:
            save_file({k: v.detach().cpu().contiguous() for k, v in extra_tensors.items()},
                      str(tmp / "learner.safetensors"))
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
        raise CheckpointError(f"{path}: missing {Path(e.filename).name}") from None
    except (ValueError, TypeError) as e:
        raise CheckpointError(f"{path}: bad config/manifest: {e}") from None
    model_file = path / MODEL_FILE
    if not model_file.is_file():
        raise CheckpointError(f"{path}: missing {MODEL_FILE}")
    digest = sha256_file(model_file)
    if digest != manifest.get("sha256"):
        raise CheckpointError(
            f"{path}: sha256 {digest[:12]} does not match manifest {str(manifest.get('sha256'))[:12]}")
    if expected_sha256 is not None and digest != expected_sha256:
        raise CheckpointError(f"{path}: sha256 {digest[:12]} does not match announced {expected_sha256[:12]}")
    if expected_config is not None:
        for name in ("image_size", "n_joints", "horizon", "cond_dim", "hidden", "vocab_size", "max_tokens"):
            if getattr(cfg, name) != getattr(expected_config, name):
                raise CheckpointError(
                    f"{path}: config.{name}={getattr(cfg, name)} != running {getattr(expected_config, name)}")
    try:
        state = load_file(str(model_file))
    except Exception as e:  # safetensors raises several types on corrupt headers
        raise CheckpointError(f"{path}: unreadable weights: {e}") from None
    model = FlowVLA(cfg)
    expected = model.state_dict()
    missing = set(expected) - set(state)
    unexpected = set(state) - set(expected)
    if missing or unexpected:
        raise CheckpointError(
            f"{path}: tensor names differ (missing {sorted(missing)[:3]}, unexpected {sorted(unexpected)[:3]})")
    for k, v in state.items():
        if tuple(v.shape) != tuple(expected[k].shape):
            raise CheckpointError(
                f"{path}: tensor {k} has shape {tuple(v.shape)}, model needs {tuple(expected[k].shape)}")
        if v.is_floating_point() and not torch.isfinite(v).all():
            raise CheckpointError(f"{path}: tensor {k} has non-finite values")
    model.load_state_dict(state, strict=True)
    model.eval()
    return Checkpoint(model, cfg, int(manifest.get("version", -1)), digest, manifest, path)
