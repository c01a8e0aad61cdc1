"""lwd.control: ROS-free arm command handling (trajectory following, limits, the teleop/policy mux)."""
