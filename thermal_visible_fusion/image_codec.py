"""Raw ``sensor_msgs/Image`` fields <-> numpy, without cv_bridge or rclpy.

The ROS node passes the message fields straight through::

    thermal = decode_thermal(msg.encoding, msg.height, msg.width, msg.step,
                             msg.is_bigendian, msg.data)

Memory: when no conversion is needed (native byte order, no row padding, and
an encoding already in the output layout, e.g. ``bgr8`` or ``mono16``) the
result is a zero-copy view of ``data``.  It is then read-only if ``data`` is
immutable (``bytes``) and changes if ``data`` is later mutated; call
``.copy()`` before writing into it or keeping it past the message's lifetime.
Every other result is a fresh array.  Results are always C-contiguous.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

__all__ = [
    "ImageFormatError",
    "THERMAL_ENCODINGS",
    "RGB_ENCODINGS",
    "decode_thermal",
    "decode_rgb",
    "decode_image",
    "encode_image",
]


class ImageFormatError(ValueError):
    """An image message's fields are inconsistent or its encoding is unsupported."""


@dataclass(frozen=True)
class _Layout:
    dtype: np.dtype  # element type, byte order not yet applied
    channels: int

    @property
    def bytes_per_pixel(self) -> int:
        return self.dtype.itemsize * self.channels


_U8 = np.dtype(np.uint8)
_LAYOUTS: dict[str, _Layout] = {
    "mono8": _Layout(_U8, 1),
    "8UC1": _Layout(_U8, 1),
    "mono16": _Layout(np.dtype(np.uint16), 1),
    "16UC1": _Layout(np.dtype(np.uint16), 1),
    "32FC1": _Layout(np.dtype(np.float32), 1),
    "bgr8": _Layout(_U8, 3),
    "rgb8": _Layout(_U8, 3),
    "bgra8": _Layout(_U8, 4),
    "rgba8": _Layout(_U8, 4),
    "bayer_rggb8": _Layout(_U8, 1),
    "bayer_bggr8": _Layout(_U8, 1),
    "bayer_gbrg8": _Layout(_U8, 1),
    "bayer_grbg8": _Layout(_U8, 1),
}

THERMAL_ENCODINGS: tuple[str, ...] = ("mono8", "8UC1", "mono16", "16UC1", "32FC1")
RGB_ENCODINGS: tuple[str, ...] = (
    "bgr8",
    "rgb8",
    "bgra8",
    "rgba8",
    "mono8",
    "bayer_rggb8",
    "bayer_bggr8",
    "bayer_gbrg8",
    "bayer_grbg8",
)

# OpenCV names a Bayer pattern after the 2x2 block starting at the second row,
# second column, so every ROS name maps to a "shifted" OpenCV code (the same
# table cv_bridge uses).  Verified by the synthetic mosaic tests.
_BAYER_TO_BGR: dict[str, int] = {
    "bayer_rggb8": cv2.COLOR_BayerBG2BGR,
    "bayer_bggr8": cv2.COLOR_BayerRG2BGR,
    "bayer_gbrg8": cv2.COLOR_BayerGR2BGR,
    "bayer_grbg8": cv2.COLOR_BayerGB2BGR,
}
_COLOR_TO_BGR: dict[str, int] = {
    "rgb8": cv2.COLOR_RGB2BGR,
    "bgra8": cv2.COLOR_BGRA2BGR,
    "rgba8": cv2.COLOR_RGBA2BGR,
    "mono8": cv2.COLOR_GRAY2BGR,
}


def decode_thermal(
    encoding: str,
    height: int,
    width: int,
    step: int,
    is_bigendian: bool | int,
    data: Any,
    *,
    max_pixels: int | None = None,
) -> np.ndarray:
    """Decode a thermal image to (H, W): uint8 (mono8/8UC1), uint16 (mono16/16UC1)
    or float32 (32FC1), native byte order.  NaN/inf in 32FC1 are kept as they are."""
    _check_encoding(encoding, THERMAL_ENCODINGS, "thermal")
    return _decode_pixels(encoding, height, width, step, is_bigendian, data, max_pixels)[..., 0]


def decode_rgb(
    encoding: str,
    height: int,
    width: int,
    step: int,
    is_bigendian: bool | int,
    data: Any,
    *,
    max_pixels: int | None = None,
) -> np.ndarray:
    """Decode a colour (or mono/Bayer) image to (H, W, 3) uint8 in BGR order."""
    _check_encoding(encoding, RGB_ENCODINGS, "rgb")
    pixels = _decode_pixels(encoding, height, width, step, is_bigendian, data, max_pixels)
    if encoding == "bgr8":
        return np.ascontiguousarray(pixels)
    if encoding in _BAYER_TO_BGR:
        if height < 2 or width < 2:
            raise ImageFormatError(
                f"Bayer image {encoding!r} must be at least 2x2, got width={width} height={height}"
            )
        return cv2.cvtColor(pixels[..., 0], _BAYER_TO_BGR[encoding])
    if encoding == "mono8":
        pixels = pixels[..., 0]
    return cv2.cvtColor(pixels, _COLOR_TO_BGR[encoding])


def decode_image(
    encoding: str,
    height: int,
    width: int,
    step: int,
    is_bigendian: bool | int,
    data: Any,
    *,
    max_pixels: int | None = None,
) -> np.ndarray:
    """Inverse of :func:`encode_image`: thermal encodings (incl. mono8) give (H, W),
    colour encodings give (H, W, 3) BGR."""
    decode = decode_thermal if encoding in THERMAL_ENCODINGS else decode_rgb
    return decode(encoding, height, width, step, is_bigendian, data, max_pixels=max_pixels)


def encode_image(array: np.ndarray) -> tuple[str, int, bytes]:
    """Return (encoding, step, data) for publishing ``array`` with is_bigendian=False.

    (H, W, 3) uint8 -> "bgr8"; (H, W) uint8 -> "mono8"; (H, W) uint16 -> "mono16";
    (H, W) float32 -> "32FC1".  Rows are unpadded; multi-byte data is little-endian.
    """
    array = np.asarray(array)
    kind = (array.ndim, array.dtype.kind, array.dtype.itemsize)
    if array.ndim == 3 and array.shape[2] == 3 and array.dtype == np.uint8:
        encoding = "bgr8"
    elif kind == (2, "u", 1):
        encoding = "mono8"
    elif kind == (2, "u", 2):
        encoding = "mono16"
    elif kind == (2, "f", 4):
        encoding = "32FC1"
    else:
        raise ImageFormatError(
            f"cannot encode array of shape {array.shape} and dtype {array.dtype}; expected "
            "(H, W, 3) uint8, or (H, W) uint8, uint16 or float32"
        )
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ImageFormatError(f"cannot encode empty image of shape {array.shape}")
    little = array.astype(array.dtype.newbyteorder("<"), copy=False)
    step = array.shape[1] * _LAYOUTS[encoding].bytes_per_pixel
    return encoding, step, little.tobytes()


# --- internals ---------------------------------------------------------------


def _check_encoding(encoding: str, supported: tuple[str, ...], what: str) -> None:
    if encoding not in supported:
        raise ImageFormatError(
            f"unsupported {what} encoding {_short(encoding)}; supported: {', '.join(supported)}"
        )


def _short(text: Any, limit: int = 32) -> str:
    """``repr`` of a field taken from a message, cut so logs stay one short line."""
    shown = repr(text)
    return shown if len(shown) <= limit else f"{shown[:limit]}... ({len(str(text))} chars)"


def _as_int(value: Any, name: str) -> int:
    if isinstance(value, bool):
        raise ImageFormatError(f"{name} must be an integer, got {value!r}")
    try:
        return operator.index(value)
    except TypeError:
        raise ImageFormatError(f"{name} must be an integer, got {value!r}") from None


def _as_byte_array(data: Any) -> np.ndarray:
    """View ``data`` as a flat uint8 array, without copying where the type allows."""
    if isinstance(data, np.ndarray):
        if data.dtype != np.uint8:
            raise ImageFormatError(f"data array must be uint8, got {data.dtype}")
        return data.reshape(-1)  # a view unless data is non-contiguous
    try:
        view = memoryview(data)
    except TypeError:
        raise ImageFormatError(
            f"data must be bytes-like or a uint8 numpy array, got {type(data).__name__}"
        ) from None
    if view.itemsize != 1:
        raise ImageFormatError(f"data must hold bytes, got items of {view.itemsize} bytes")
    if not view.c_contiguous:
        view = memoryview(view.tobytes())
    return np.frombuffer(view.cast("B"), dtype=np.uint8)


def _decode_pixels(
    encoding: str,
    height: Any,
    width: Any,
    step: Any,
    is_bigendian: bool | int,
    data: Any,
    max_pixels: int | None,
) -> np.ndarray:
    """Validate the fields and return (H, W, C) in native byte order (maybe a view)."""
    layout = _LAYOUTS[encoding]
    height = _as_int(height, "height")
    width = _as_int(width, "width")
    step = _as_int(step, "step")
    if height < 0 or width < 0:
        raise ImageFormatError(f"negative image size width={width} height={height}")
    if height == 0 or width == 0:
        raise ImageFormatError(f"empty image width={width} height={height}")
    if max_pixels is not None and height * width > max_pixels:
        raise ImageFormatError(
            f"image {width}x{height} ({height * width} pixels) exceeds max_pixels={max_pixels}"
        )
    row_bytes = width * layout.bytes_per_pixel
    if step < row_bytes:
        raise ImageFormatError(
            f"step {step} < width*bytes_per_pixel {row_bytes} "
            f"({width}*{layout.bytes_per_pixel} for {encoding!r})"
        )
    buffer = _as_byte_array(data)
    if buffer.size != step * height:
        raise ImageFormatError(
            f"data is {buffer.size} bytes but step*height = {step}*{height} = {step * height}"
        )

    rows = buffer.reshape(height, step)
    if step != row_bytes:
        rows = np.ascontiguousarray(rows[:, :row_bytes])  # drop padding (copies)
    # A big-endian flag means nothing for 1-byte elements, so it is ignored there.
    source = layout.dtype.newbyteorder(">" if is_bigendian and layout.dtype.itemsize > 1 else "<")
    pixels = rows.view(source).reshape(height, width, layout.channels)
    if not source.isnative:
        pixels = pixels.astype(layout.dtype.newbyteorder("="))
    return pixels
