"""Episode bags: one rosbag2 directory (MCAP, version 9) per episode + a sidecar ``episode.json``.

Layout of an episode directory (it *is* the rosbag2 directory)::

    <episode_dir>/metadata.yaml          rosbag2 metadata; custom_data["lwd/episode"] = EpisodeMeta JSON
    <episode_dir>/<episode_dir>.mcap     messages, CDR, topics relative to the robot namespace
    <episode_dir>/episode.json           EpisodeMeta, written LAST (temp + rename): marks a complete episode

One module per job; this one re-exports their public names (``from lwd.data.bag import ...`` keeps working):

* :mod:`lwd.data.events`    — :class:`EventTracker`: the metadata an episode's messages imply; ``canonical_topic``
* :mod:`lwd.data.metadata`  — ``episode.json`` sidecar and the bag's custom data: ``write_sidecar``, ``read_meta``
* :mod:`lwd.data.writer`    — :class:`EpisodeBagWriter` (fed raw CDR bytes by the recorder node, or messages)
* :mod:`lwd.data.reader`    — :func:`read_episode` (resamples onto the control grid)
* :mod:`lwd.data.recovery`  — :func:`recover_bag` (bag killed mid-write: no metadata.yaml, no MCAP footer)
* :mod:`lwd.data.steps_bag` — :func:`write_steps_bag` (EpisodeSteps, e.g. scripted demonstrations -> bag)

No rclpy here.
"""

from __future__ import annotations

from .events import TRACKED, EventTracker, canonical_topic
from .metadata import CUSTOM_DATA_KEY, SIDECAR, read_custom_data, read_custom_meta, read_meta, write_sidecar
from .reader import read_episode
from .recovery import recover_bag
from .steps_bag import write_steps_bag
from .writer import HEARTBEAT_S, EpisodeBagWriter

__all__ = ["EpisodeBagWriter", "write_steps_bag", "read_episode", "read_meta", "recover_bag", "write_sidecar",
           "canonical_topic", "read_custom_data", "read_custom_meta", "EventTracker", "TRACKED", "SIDECAR",
           "CUSTOM_DATA_KEY", "HEARTBEAT_S"]
