"""lwd.data: the experience store (episode bags, resampling onto the control grid, SQLite index). No rclpy."""

from .bag import EpisodeBagWriter, read_episode, read_meta, recover_bag, write_steps_bag
from .errors import BagError, BagExistsError, EpisodeFormatError, IncompleteBagError
from .schema import (
                     CONTROL_DT,
                     CONTROL_DT_NS,
                     JOINT_NAMES,
                     N_JOINTS,
                     SOURCE_EXPERT,
                     SOURCE_POLICY,
                     SOURCE_TELEOP,
                     TOPICS,
                     EpisodeMeta,
                     EpisodeSteps,
                     frame_id_for,
                     parse_frame_id,
)
from .store import EpisodeRecord, ExperienceStore

__all__ = [
    "EpisodeBagWriter", "read_episode", "read_meta", "recover_bag", "write_steps_bag",
    "BagError", "BagExistsError", "EpisodeFormatError", "IncompleteBagError",
    "CONTROL_DT", "CONTROL_DT_NS", "JOINT_NAMES", "N_JOINTS", "SOURCE_EXPERT", "SOURCE_POLICY", "SOURCE_TELEOP",
    "TOPICS", "EpisodeMeta", "EpisodeSteps", "frame_id_for", "parse_frame_id",
    "EpisodeRecord", "ExperienceStore",
]
