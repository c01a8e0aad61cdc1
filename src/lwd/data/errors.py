"""Exceptions of the experience-store data layer. Every message names the offending path."""

from __future__ import annotations

from pathlib import Path


class BagError(Exception):
    """A bag cannot be written or read as an lwd episode."""

    def __init__(self, path: Path | str, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class BagExistsError(BagError):
    """The writer refuses to overwrite an existing path."""


class IncompleteBagError(BagError):
    """The bag has no metadata.yaml / episode.json (killed mid-write or still being written)."""


class EpisodeFormatError(BagError):
    """The bag opens but does not hold a usable episode (no start event, no commands, ...)."""
