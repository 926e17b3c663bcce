"""sensor_msgs/Image <-> numpy without cv_bridge, and QoS by name."""

from __future__ import annotations

from array import array as byte_array

import numpy as np
from rclpy.qos import QoSProfile, qos_profile_sensor_data
from rclpy.qos import HistoryPolicy, ReliabilityPolicy, DurabilityPolicy
from sensor_msgs.msg import Image

from thermal_visible_fusion.image_codec import decode_rgb, decode_thermal, encode_image


def qos_by_name(name: str, depth: int = 5) -> QoSProfile:
    """'sensor_data' = best effort, keep last (the camera convention); 'reliable'."""
    if name == "sensor_data":
        return qos_profile_sensor_data
    if name == "reliable":
        return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth,
                          reliability=ReliabilityPolicy.RELIABLE,
                          durability=DurabilityPolicy.VOLATILE)
    raise ValueError(f"unknown QoS {name!r}")


def stamp_ns(msg) -> int:
    return msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec


def thermal_array(msg: Image, max_pixels: int | None = None) -> np.ndarray:
    return decode_thermal(msg.encoding, msg.height, msg.width, msg.step, bool(msg.is_bigendian),
                          msg.data, max_pixels=max_pixels)


def rgb_array(msg: Image, max_pixels: int | None = None) -> np.ndarray:
    return decode_rgb(msg.encoding, msg.height, msg.width, msg.step, bool(msg.is_bigendian),
                      msg.data, max_pixels=max_pixels)


def image_message(array: np.ndarray, header=None) -> Image:
    msg = Image()
    if header is not None:
        msg.header = header
    msg.height, msg.width = array.shape[:2]
    msg.encoding, msg.step, data = encode_image(array)
    msg.is_bigendian = 0
    # array.array takes the generated setter's fast path on every distro (Humble checks
    # bytes element by element: ~0.1 s for one VGA frame).
    msg.data = byte_array("B", data)
    return msg
