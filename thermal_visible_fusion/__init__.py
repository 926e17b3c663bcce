"""Thermal + visible video fusion: a ROS-free core with thin ROS 2 adapters.

Core modules (no ROS needed): ``engine``, ``fusers``, ``image_codec``,
``thermal_normalizer``, ``pairing``, ``metrics``, ``synthetic``, ``sources``.
ROS adapters live in ``thermal_visible_fusion.ros``.
"""

__version__ = "0.1.0"
