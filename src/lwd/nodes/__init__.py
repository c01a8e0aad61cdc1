"""Thin rclpy adapters: each node translates topics <-> calls into the ROS-free core. Import needs rclpy."""
