"""
Thermal + visible video fusion: a ROS-free core with thin ROS 2 adapters.

Core (no ROS needed): ``stream`` (the input front end), ``engine``, ``fusers``,
``learned`` (the network), ``metrics``, ``data`` (frame sources), ``training``, ``tools``.
ROS adapters live in ``thermal_visible_fusion.ros``.
"""

__version__ = "0.1.0"
