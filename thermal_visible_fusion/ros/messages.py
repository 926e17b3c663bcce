"""
ROS message conversions and QoS.

sensor_msgs/Image, CompressedImage and CameraInfo <-> numpy without cv_bridge, and QoS by name.
"""

from __future__ import annotations

from array import array as byte_array

import numpy as np
from rclpy.qos import DurabilityPolicy, HistoryPolicy, ReliabilityPolicy
from rclpy.qos import qos_profile_sensor_data, QoSProfile
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from thermal_visible_fusion.stream import image_codec
from thermal_visible_fusion.stream.image_codec import decode_rgb, decode_thermal, encode_image
from thermal_visible_fusion.stream.registration import scaled_intrinsics, scaled_projection


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


def compressed_thermal_array(msg: CompressedImage, max_pixels: int | None = None) -> np.ndarray:
    return image_codec.decode_compressed_thermal(msg.format, msg.data, max_pixels=max_pixels)


def compressed_rgb_array(msg: CompressedImage, max_pixels: int | None = None) -> np.ndarray:
    return image_codec.decode_compressed_rgb(msg.format, msg.data, max_pixels=max_pixels)


def compressed_message(bgr: np.ndarray, header, quality: int) -> CompressedImage:
    msg = CompressedImage(header=header)
    msg.format, data = image_codec.encode_compressed(bgr, quality)
    msg.data = byte_array("B", data)  # the setter's fast path, as for Image
    return msg


def camera_info_for(info: CameraInfo | None, header, width: int, height: int) -> CameraInfo:
    """
    Return the CameraInfo of an image of ``width`` x ``height``, with ``header``.

    The CameraInfo of an image of ``width`` x ``height`` taken with the camera ``info``
    describes, with ``header``.

    No ``info``: an uncalibrated camera's message (size only, K = P = 0), what camera
    drivers publish before calibration, so consumers that sync image and info still run.
    An ``info`` of another size (binning aside) is rescaled: K and P scaled per axis,
    binning and ROI cleared, so the message describes the image it comes with.
    """
    if info is None:
        return CameraInfo(header=header, width=width, height=height)
    binned = (info.width // max(info.binning_x, 1), info.height // max(info.binning_y, 1))
    out = CameraInfo(header=header, width=info.width, height=info.height,
                     distortion_model=info.distortion_model, d=info.d, k=info.k, r=info.r,
                     p=info.p, binning_x=info.binning_x, binning_y=info.binning_y, roi=info.roi)
    if (width, height) in ((info.width, info.height), binned) or not info.width or not info.height:
        return out
    sizes = (info.width, info.height), (width, height)
    out.k = scaled_intrinsics(info.k, *sizes).reshape(-1)
    out.p = scaled_projection(info.p, *sizes).reshape(-1)
    out.width, out.height = width, height
    out.binning_x = out.binning_y = 0
    out.roi = type(info.roi)()
    return out
