"""lwd: Learning While Deploying — a ROS 2 fleet that keeps improving one flow-matching VLA policy.

The core (``lwd.sim``, ``lwd.policy``, ``lwd.rl``, ``lwd.data``) is ROS-free; ``lwd.nodes`` holds thin rclpy adapters.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
