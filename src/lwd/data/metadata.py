"""Episode metadata on disk: the ``episode.json`` sidecar (written last, marks a complete episode) and the copy
in the bag's rosbag2 ``custom_data`` (``lwd/episode``), read back from ``metadata.yaml``.

rosbags (0.11) writes custom data (``Writer.set_custom_data``) but has no public getter for it, so it is read from
``metadata.yaml`` as the rosbag2 format defines it (``rosbag2_bagfile_information.custom_data``, bag version >= 6)
with PyYAML, not through rosbags' storage classes.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path

import yaml

from .errors import BagError, IncompleteBagError
from .schema import EpisodeMeta

log = logging.getLogger("lwd.data")

SIDECAR = "episode.json"
CUSTOM_DATA_KEY = "lwd/episode"

__all__ = ["SIDECAR", "CUSTOM_DATA_KEY", "write_sidecar", "read_custom_data", "read_custom_meta", "read_meta"]


def write_sidecar(path: Path | str, meta: EpisodeMeta) -> Path:
    """Write ``<path>/episode.json`` atomically (temp file + fsync + rename)."""
    path = Path(path)
    dst = path / SIDECAR
    tmp = path / f".{SIDECAR}.{os.getpid()}.{threading.get_ident()}.tmp"
    with open(tmp, "w", encoding="utf8") as f:
        f.write(json.dumps(meta.to_dict(), indent=1, sort_keys=True))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, dst)
    return dst


def read_custom_data(path: Path | str) -> dict[str, str]:
    """The rosbag2 ``custom_data`` of a complete bag directory ({} if it has none).

    Raises:
        OSError: no readable metadata.yaml. ValueError: not rosbag2 metadata.
    """
    doc = yaml.safe_load((Path(path) / "metadata.yaml").read_text("utf8"))
    if not isinstance(doc, dict) or not isinstance(doc.get("rosbag2_bagfile_information"), dict):
        raise ValueError("metadata.yaml has no rosbag2_bagfile_information")
    custom = doc["rosbag2_bagfile_information"].get("custom_data") or {}
    if not isinstance(custom, dict):
        raise ValueError("custom_data is not a mapping")
    return {str(k): str(v) for k, v in custom.items()}


def read_custom_meta(path: Path | str) -> EpisodeMeta | None:
    """EpisodeMeta stored in the bag's custom data, or None (no metadata.yaml, no or unusable entry)."""
    try:
        text = read_custom_data(path).get(CUSTOM_DATA_KEY)
        return EpisodeMeta.from_json(text) if text else None
    except Exception as exc:  # noqa: BLE001
        log.debug("%s: no usable custom data: %s", path, exc)
        return None


def read_meta(path: Path | str) -> EpisodeMeta:
    """EpisodeMeta of a complete episode: episode.json, else the bag's custom data."""
    path = Path(path)
    side = path / SIDECAR
    if side.exists():
        try:
            return EpisodeMeta.from_json(side.read_text("utf8"))
        except Exception as exc:  # noqa: BLE001
            raise BagError(path, f"unreadable {SIDECAR}: {exc}") from None
    meta = read_custom_meta(path)
    if meta is None:
        raise IncompleteBagError(path, f"no {SIDECAR} and no episode metadata in the bag")
    return meta
