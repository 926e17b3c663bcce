"""Thin ROS 2 adapters over the ROS-free core (the only modules importing rclpy)."""
