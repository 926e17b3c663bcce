"""
``sensor_msgs/Image`` and ``CompressedImage`` fields <-> numpy, without cv_bridge or rclpy.

The ROS node passes the message fields straight through::

    thermal = decode_thermal(msg.encoding, msg.height, msg.width, msg.step,
                             msg.is_bigendian, msg.data)
    rgb = decode_compressed_rgb(msg.format, msg.data, max_pixels=...)

What every accepted encoding becomes on each input is one table, :data:`ENCODINGS`
(rendered by :func:`encodings_markdown`, quoted in ``docs/encodings.md``): the thermal
input gets (H, W) grey -- colour (a colour-mapped thermal camera) turns into its luma
at the same bit depth -- and the RGB input gets (H, W, 3) BGR uint8, 16-bit data
shifted down 8 bits.

Memory: when no conversion is needed (native byte order, no row padding, and
an encoding already in the output layout, e.g. ``bgr8`` or ``mono16``) the
result is a zero-copy view of ``data``.  It is then read-only if ``data`` is
immutable (``bytes``) and changes if ``data`` is later mutated; call
``.copy()`` before writing into it or keeping it past the message's lifetime.
Every other result is a fresh array.  Results are always C-contiguous.
"""

from __future__ import annotations

from dataclasses import dataclass
import operator
import struct
from typing import Any

import cv2
import numpy as np

__all__ = [
    "ImageFormatError",
    "OversizeImageError",
    "Encoding",
    "ENCODINGS",
    "THERMAL_ENCODINGS",
    "RGB_ENCODINGS",
    "decode_thermal",
    "decode_rgb",
    "decode_image",
    "encode_image",
    "decode_compressed",
    "decode_compressed_thermal",
    "decode_compressed_rgb",
    "encode_compressed",
    "encodings_markdown",
]


class ImageFormatError(ValueError):
    """An image message's fields are inconsistent or its encoding is unsupported."""


class OversizeImageError(ImageFormatError):
    """An image larger than ``max_pixels`` (declared in its fields or compressed header)."""


@dataclass(frozen=True)
class Encoding:
    """How one ``sensor_msgs/Image`` encoding is stored and what each input makes of it."""

    dtype: np.dtype  # element type, byte order set by is_bigendian
    channels: int  # elements per pixel as stored (yuv422: 2 bytes per pixel)
    kind: str  # "grey", "colour", "bayer" or "yuv": how the thermal luma is found
    to_grey: int | None  # cv2 code to the thermal input's luma; None: already grey
    to_bgr: int | None  # cv2 code to the RGB input's BGR; None: already BGR
    rgb: bool = True  # accepted on the RGB input (float has no 8-bit scale)
    alias_of: str = ""  # an OpenCV-style name for the same layout
    note: str = ""

    @property
    def bytes_per_pixel(self) -> int:
        return self.dtype.itemsize * self.channels


_U8, _U16, _F32 = np.dtype(np.uint8), np.dtype(np.uint16), np.dtype(np.float32)


def _grey(dtype: np.dtype, rgb: bool = True, **kw) -> Encoding:
    return Encoding(dtype, 1, "grey", None, cv2.COLOR_GRAY2BGR if rgb else None, rgb, **kw)


def _colour(dtype: np.dtype, order: str, **kw) -> Encoding:
    to_grey = {"bgr": cv2.COLOR_BGR2GRAY, "rgb": cv2.COLOR_RGB2GRAY,
               "bgra": cv2.COLOR_BGRA2GRAY, "rgba": cv2.COLOR_RGBA2GRAY}[order]
    to_bgr = {"bgr": None, "rgb": cv2.COLOR_RGB2BGR,
              "bgra": cv2.COLOR_BGRA2BGR, "rgba": cv2.COLOR_RGBA2BGR}[order]
    return Encoding(dtype, len(order), "colour", to_grey, to_bgr, **kw)


# OpenCV names a Bayer pattern after the 2x2 block starting at the second row,
# second column, so every ROS name maps to a "shifted" OpenCV code (the same
# table cv_bridge uses).  Verified by the synthetic mosaic tests.
def _bayer(dtype: np.dtype, pattern: str) -> Encoding:
    opencv = {"rggb": "BG", "bggr": "RG", "gbrg": "GR", "grbg": "GB"}[pattern]
    return Encoding(dtype, 1, "bayer", getattr(cv2, f"COLOR_Bayer{opencv}2GRAY"),
                    getattr(cv2, f"COLOR_Bayer{opencv}2BGR"), note="at least 2x2")


def _yuv422(order: str, note: str) -> Encoding:
    return Encoding(_U8, 2, "yuv", getattr(cv2, f"COLOR_YUV2GRAY_{order}"),
                    getattr(cv2, f"COLOR_YUV2BGR_{order}"), note=note)


#: Every accepted ``sensor_msgs/Image`` encoding; the decoders below do exactly what it says.
ENCODINGS: dict[str, Encoding] = {
    "mono8": _grey(_U8),
    "8UC1": _grey(_U8, alias_of="mono8"),
    "mono16": _grey(_U16),
    "16UC1": _grey(_U16, alias_of="mono16"),
    "32FC1": _grey(_F32, rgb=False, note="NaN/inf kept"),
    "bgr8": _colour(_U8, "bgr"),
    # OpenCV's own channel order: what an OpenCV-based driver means by 8UC3
    "8UC3": _colour(_U8, "bgr", alias_of="bgr8", note="OpenCV's channel order"),
    "rgb8": _colour(_U8, "rgb"),
    "bgra8": _colour(_U8, "bgra"),
    "rgba8": _colour(_U8, "rgba"),
    "bgr16": _colour(_U16, "bgr"),
    "rgb16": _colour(_U16, "rgb"),
    "bgra16": _colour(_U16, "bgra"),
    "rgba16": _colour(_U16, "rgba"),
    **{f"bayer_{p}{bits}": _bayer(dtype, p)
       for bits, dtype in ((8, _U8), (16, _U16)) for p in ("rggb", "bggr", "gbrg", "grbg")},
    "yuv422": _yuv422("UYVY", "UYVY byte order; even width"),
    "yuv422_yuy2": _yuv422("YUY2", "YUYV byte order; even width"),
}

THERMAL_ENCODINGS: tuple[str, ...] = tuple(ENCODINGS)
RGB_ENCODINGS: tuple[str, ...] = tuple(name for name, e in ENCODINGS.items() if e.rgb)


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
    """
    Decode a thermal image to (H, W), native byte order.

    Grey encodings as they are (uint8, uint16 or float32; NaN/inf in 32FC1 kept),
    colour, Bayer and YUV as their luma at the same bit depth (see
    :data:`ENCODINGS`).
    """
    _check_encoding(encoding, THERMAL_ENCODINGS, "thermal")
    pixels = _decode_pixels(encoding, height, width, step, is_bigendian, data, max_pixels)
    return _to_thermal(encoding, pixels)


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
    """
    Decode a colour (or grey, Bayer, YUV) image to (H, W, 3) uint8 in BGR order.

    16-bit data is shifted down 8 bits.
    """
    _check_encoding(encoding, RGB_ENCODINGS, "rgb")
    pixels = _decode_pixels(encoding, height, width, step, is_bigendian, data, max_pixels)
    return _to_rgb(encoding, pixels)


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
    """
    Decode an image: the inverse of :func:`encode_image`.

    Grey encodings give (H, W) as :func:`decode_thermal`, the others (H, W, 3)
    BGR as :func:`decode_rgb`.
    """
    grey = encoding in ENCODINGS and ENCODINGS[encoding].kind == "grey"
    decode = decode_thermal if grey else decode_rgb
    return decode(encoding, height, width, step, is_bigendian, data, max_pixels=max_pixels)


def encode_image(array: np.ndarray) -> tuple[str, int, bytes]:
    """
    Return (encoding, step, data) for publishing ``array`` with is_bigendian=False.

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
    step = array.shape[1] * ENCODINGS[encoding].bytes_per_pixel
    return encoding, step, little.tobytes()


# --- compressed ---------------------------------------------------------------

# compressed_depth_image_transport's ConfigHeader before the PNG: int32 format
# (0 = INV_DEPTH) and float32 depthParam[2], native (in practice little-endian) order.
_DEPTH_HEADER = struct.Struct("<iff")
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_CODECS = ("jpeg", "jpg", "png", "tiff", "tif")


def decode_compressed(format: str, data: Any,  # noqa: A002 (the message field's name)
                      max_pixels: int | None = None) -> np.ndarray:
    """
    Decode a ``sensor_msgs/CompressedImage``.

    Decode a ``sensor_msgs/CompressedImage`` of the ``compressed`` or
    ``compressedDepth`` image_transport plugins (or a plain "jpeg"/"png" one).

    Returns what :func:`decode_image` returns for the same image uncompressed: (H, W)
    grey (uint8, uint16 -- 16-bit PNG stays 16-bit -- or float32 for compressedDepth
    32FC1, whose zeros are NaN as the plugin decodes them) or (H, W, 3) BGR uint8
    (16-bit >> 8; alpha dropped, Bayer demosaiced).  The image size is read from the
    PNG/JPEG header and checked against ``max_pixels`` before decoding.
    """
    encoding, pixels = _decompress(format, data, max_pixels)
    grey = ENCODINGS[encoding].kind == "grey"
    return (_to_thermal if grey else _to_rgb)(encoding, pixels)


def decode_compressed_thermal(format: str, data: Any,  # noqa: A002 (the message field's name)
                              max_pixels: int | None = None) -> np.ndarray:
    """Decode a compressed thermal image as :func:`decode_thermal` returns it: (H, W) grey."""
    encoding, pixels = _decompress(format, data, max_pixels)
    return _to_thermal(encoding, pixels)


def decode_compressed_rgb(format: str, data: Any,  # noqa: A002 (the message field's name)
                          max_pixels: int | None = None) -> np.ndarray:
    """Decode a compressed RGB image as :func:`decode_rgb` returns it: (H, W, 3) BGR uint8."""
    encoding, pixels = _decompress(format, data, max_pixels)
    if not ENCODINGS[encoding].rgb:
        raise ImageFormatError(f"compressed {_short(format)} decodes to {encoding}, "
                               "which the rgb input does not accept")
    return _to_rgb(encoding, pixels)


def encode_compressed(bgr: np.ndarray, quality: int) -> tuple[str, bytes]:
    """
    Encode an image as image_transport's ``compressed`` publisher does.

    (format, data) of a ``CompressedImage`` as image_transport's ``compressed``
    publisher writes it: (H, W, 3) uint8 BGR -> JPEG "bgr8; jpeg compressed bgr8";
    (H, W) uint8 -> JPEG "mono8; jpeg compressed mono8"; (H, W) uint16 -> PNG
    "mono16; png compressed " (the plugin names no target for grey PNG; ``quality``
    is then unused: PNG is lossless, written at the plugin's default level 3).
    """
    array = np.asarray(bgr)
    if isinstance(quality, bool) or not isinstance(quality, (int, np.integer)) \
            or not 1 <= quality <= 100:
        raise ImageFormatError(f"JPEG quality must be an integer in 1..100, got {quality!r}")
    if array.ndim < 2 or array.shape[0] == 0 or array.shape[1] == 0:
        raise ImageFormatError(f"cannot compress empty image of shape {array.shape}")
    jpeg = [cv2.IMWRITE_JPEG_QUALITY, int(quality)]
    if array.ndim == 3 and array.shape[2] == 3 and array.dtype == np.uint8:
        fmt, ext, params = "bgr8; jpeg compressed bgr8", ".jpg", jpeg
    elif array.ndim == 2 and array.dtype == np.uint8:
        fmt, ext, params = "mono8; jpeg compressed mono8", ".jpg", jpeg
    elif array.ndim == 2 and array.dtype == np.uint16:
        fmt, ext, params = "mono16; png compressed ", ".png", [cv2.IMWRITE_PNG_COMPRESSION, 3]
    else:
        raise ImageFormatError(
            f"cannot compress array of shape {array.shape} and dtype {array.dtype}; expected "
            "(H, W, 3) uint8 BGR, or (H, W) uint8 or uint16"
        )
    native = np.ascontiguousarray(array.astype(array.dtype.newbyteorder("="), copy=False))
    ok, encoded = cv2.imencode(ext, native, params)
    if not ok:
        raise ImageFormatError(f"OpenCV could not encode {ext} of shape {array.shape}")
    return fmt, encoded.tobytes()


def _parse_format(fmt: Any) -> tuple[str, str, str, bool]:
    """Parse (encoding before ';', codec, target after 'compressed', compressedDepth)."""
    if not isinstance(fmt, str):
        raise ImageFormatError(f"format must be a string, got {type(fmt).__name__}")
    encoding, _, rest = fmt.partition(";") if ";" in fmt else ("", "", fmt)
    encoding, words = encoding.strip(), rest.split()
    if words[:1] == ["compressedDepth"]:
        # "16UC1; compressedDepth png"; older versions name no codec (png then)
        return encoding, (words[1] if len(words) > 1 else "png").lower(), "", True
    if not words or words[0].lower() not in _CODECS:
        raise ImageFormatError(f"unsupported compressed format {_short(fmt)}; supported: "
                               "jpeg, png, tiff ('<encoding>; <codec> compressed <target>'), "
                               "'<encoding>; compressedDepth png'")
    # "bgr8; jpeg compressed bgr8", "mono16; png compressed " (no target), plain "jpeg"
    target = words[2] if len(words) > 2 and words[1] == "compressed" else ""
    return encoding, words[0].lower(), target, False


def _decompress(fmt: str, data: Any, max_pixels: int | None) -> tuple[str, np.ndarray]:
    """Decode to (encoding in ENCODINGS, (H, W, C) pixels) for the shared conversions."""
    encoding, codec, target, depth = _parse_format(fmt)
    buffer = _as_byte_array(data)
    if buffer.size == 0:
        raise ImageFormatError("compressed image data is empty")
    quant = None
    if depth:
        if codec != "png":
            raise ImageFormatError(f"compressedDepth {codec!r} is not supported (only png)")
        if buffer.size <= _DEPTH_HEADER.size or \
                buffer[_DEPTH_HEADER.size:_DEPTH_HEADER.size + 8].tobytes() != _PNG_MAGIC:
            raise ImageFormatError("compressedDepth data is not a 12-byte header and a PNG")
        _, quant_a, quant_b = _DEPTH_HEADER.unpack(buffer[:_DEPTH_HEADER.size].tobytes())
        quant = (quant_a, quant_b)
        buffer = buffer[_DEPTH_HEADER.size:]
    _check_declared_size(buffer, max_pixels)
    if buffer[:2].tobytes() == b"\xff\xd8" and not _ends_with_eoi(buffer):
        # libjpeg (OpenCV 4 on robots) fills a cut-off JPEG with grey and only warns
        raise ImageFormatError(f"truncated JPEG in compressed {_short(fmt)}: "
                               f"no end-of-image marker in {buffer.size} bytes")
    try:
        image = cv2.imdecode(buffer, cv2.IMREAD_UNCHANGED)
    except cv2.error as error:  # e.g. a size over OpenCV's own limit
        raise ImageFormatError(f"cannot decode compressed {_short(fmt)}: "
                               f"{str(error).strip().splitlines()[-1]}") from None
    if image is None or image.size == 0:
        raise ImageFormatError(f"cannot decode compressed {_short(fmt)} "
                               f"({buffer.size} bytes): corrupt, truncated or not an image")
    if max_pixels is not None and image.shape[0] * image.shape[1] > max_pixels:
        _raise_oversize(image.shape[1], image.shape[0], max_pixels)
    channels = 1 if image.ndim == 2 else image.shape[2]
    dtype = image.dtype
    if quant is not None:
        if encoding == "32FC1":
            if dtype != np.uint16 or channels != 1:
                raise ImageFormatError("compressedDepth 32FC1 must hold a 16-bit grey PNG")
            # the plugin's inverse-depth quantisation: depth = A / (q - B), q == 0 -> NaN
            inverse = image.astype(np.float32)
            with np.errstate(divide="ignore", invalid="ignore"):
                image = np.float32(quant[0]) / (inverse - np.float32(quant[1]))
            image[inverse == 0] = np.nan
            return "32FC1", image[..., None]
        return _grey_name(dtype, fmt), image[..., None] if image.ndim == 2 else image
    if channels == 1:
        # a Bayer mosaic stays one when the plugin kept it (jpeg_compress_bayer, or PNG)
        bayer = f"{(target or encoding).rstrip('0123456789')}{8 * dtype.itemsize}"
        if bayer.startswith("bayer_") and bayer in ENCODINGS:
            return bayer, image[..., None]
        return _grey_name(dtype, fmt), image[..., None]
    if channels not in (3, 4) or dtype not in (_U8, _U16):
        raise ImageFormatError(f"compressed {_short(fmt)} decodes to {channels} channels "
                               f"of {dtype}; expected grey, BGR or BGRA of 8 or 16 bits")
    # As image_transport's compressed subscriber: a colour encoding whose target is not
    # "bgr..." was compressed from RGB-ordered pixels (imdecode then returns them as is).
    rgb_order = ";" in fmt and encoding.startswith(("rgb", "bgr")) and \
        not target.startswith("bgr")
    order = ("rgb" if rgb_order else "bgr") + ("a" if channels == 4 else "")
    return f"{order}{8 * dtype.itemsize}", image


def _grey_name(dtype: np.dtype, fmt: str) -> str:
    names = {_U8: "mono8", _U16: "mono16", _F32: "32FC1"}
    if dtype not in names:
        raise ImageFormatError(f"compressed {_short(fmt)} decodes to unsupported {dtype}")
    return names[dtype]


def _check_declared_size(buffer: np.ndarray, max_pixels: int | None) -> None:
    """
    Refuse an image whose PNG/JPEG header declares more than ``max_pixels``.

    Before OpenCV allocates it; other codecs are checked after decoding.
    """
    if max_pixels is None:
        return
    size = _png_size(buffer) if buffer[:8].tobytes() == _PNG_MAGIC else (
        _jpeg_size(buffer) if buffer[:2].tobytes() == b"\xff\xd8" else None)
    if size is not None and size[0] * size[1] > max_pixels:
        _raise_oversize(size[0], size[1], max_pixels)


def _png_size(buffer: np.ndarray) -> tuple[int, int] | None:
    if buffer.size < 24 or buffer[12:16].tobytes() != b"IHDR":
        return None  # imdecode reports the broken file
    return struct.unpack(">II", buffer[16:24].tobytes())


def _jpeg_size(buffer: np.ndarray) -> tuple[int, int] | None:
    """(width, height) from the first SOF marker; only marker segments are walked."""
    data = buffer.tobytes() if buffer.size < 65536 else buffer[:65536].tobytes()
    at = 2
    while at + 4 <= len(data):
        if data[at] != 0xFF:
            return None
        marker = data[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD8)):  # markers without a length
            at += 2
            continue
        (length,) = struct.unpack(">H", data[at + 2:at + 4])
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            if at + 9 > len(data):
                return None
            height, width = struct.unpack(">HH", data[at + 5:at + 9])
            return width, height
        if marker == 0xDA:  # start of scan without a frame header
            return None
        at += 2 + length
    return None


def _ends_with_eoi(buffer: np.ndarray) -> bool:
    """Whether a JPEG ends with its EOI marker (FF D9), zero padding after it allowed."""
    tail = buffer[-4096:]
    nonzero = np.flatnonzero(tail)
    end = int(nonzero[-1]) + 1 if nonzero.size else 0
    return end >= 2 and tail[end - 2] == 0xFF and tail[end - 1] == 0xD9


def _raise_oversize(width: int, height: int, max_pixels: int) -> None:
    raise OversizeImageError(
        f"image {width}x{height} ({width * height} pixels) exceeds max_pixels={max_pixels}"
    )


# --- internals ---------------------------------------------------------------


def _to_thermal(encoding: str, pixels: np.ndarray) -> np.ndarray:
    """(H, W, C) in ``encoding``'s layout -> (H, W) grey at the same bit depth."""
    spec = ENCODINGS[encoding]
    source = pixels[..., 0] if spec.channels == 1 else pixels
    if spec.to_grey is None:
        return np.ascontiguousarray(source)  # no copy when already contiguous
    return cv2.cvtColor(source, spec.to_grey)


def _to_rgb(encoding: str, pixels: np.ndarray) -> np.ndarray:
    """(H, W, C) in ``encoding``'s layout -> (H, W, 3) BGR uint8 (16-bit: >> 8)."""
    spec = ENCODINGS[encoding]
    source = pixels[..., 0] if spec.channels == 1 else pixels
    bgr = source if spec.to_bgr is None else cv2.cvtColor(source, spec.to_bgr)
    if bgr.dtype == np.uint16:
        bgr = (bgr >> 8).astype(np.uint8)
    return np.ascontiguousarray(bgr)


def _check_encoding(encoding: str, supported: tuple[str, ...], what: str) -> None:
    if encoding not in supported:
        raise ImageFormatError(
            f"unsupported {what} encoding {_short(encoding)}; supported: {_families(supported)} "
            "(docs/encodings.md)"
        )


def _families(names: tuple[str, ...]) -> str:
    """
    Return the names without bit depths, so a log line stays short.

    For example 'mono, 8UC1, ..., bayer_*, yuv422'.
    """
    families: list[str] = []
    for name in names:
        family = name if name[0].isdigit() else name.removesuffix("16").removesuffix("8")
        family = family[:6] + "*" if family.startswith(("bayer_", "yuv422")) else family
        if family not in families:
            families.append(family)
    return ", ".join(families)


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
    layout = ENCODINGS[encoding]
    height = _as_int(height, "height")
    width = _as_int(width, "width")
    step = _as_int(step, "step")
    if height < 0 or width < 0:
        raise ImageFormatError(f"negative image size width={width} height={height}")
    if height == 0 or width == 0:
        raise ImageFormatError(f"empty image width={width} height={height}")
    if max_pixels is not None and height * width > max_pixels:
        _raise_oversize(width, height, max_pixels)
    if layout.kind == "yuv" and width % 2:
        raise ImageFormatError(f"{encoding!r} needs an even width (4:2:2 pairs), got {width}")
    if layout.kind == "bayer" and (height < 2 or width < 2):
        raise ImageFormatError(
            f"Bayer image {encoding!r} must be at least 2x2, got width={width} height={height}"
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


# --- documentation ------------------------------------------------------------

_DTYPE_NAMES = {_U8: "uint8", _U16: "uint16", _F32: "float32"}
_HOW_GREY = {"grey": "as is (no copy)", "colour": "luma (BT.601)", "bayer": "demosaiced luma",
             "yuv": "Y plane"}


def _rgb_words(spec: Encoding) -> str:
    if not spec.rgb:
        return "rejected"
    steps = {
        "grey": "grey copied to B, G, R",
        "colour": {None: "as is" if spec.dtype.itemsize == 2 else "as is (no copy)",
                   cv2.COLOR_RGB2BGR: "R and B swapped",
                   cv2.COLOR_BGRA2BGR: "alpha dropped",
                   cv2.COLOR_RGBA2BGR: "R and B swapped, alpha dropped"}.get(spec.to_bgr),
        "bayer": "demosaiced",
        "yuv": "YUV to BGR (BT.601 video range, as cv_bridge)",
    }[spec.kind]
    if spec.dtype.itemsize == 2:
        steps += ", then >> 8"
    return steps


def encodings_markdown() -> str:
    """
    Return :data:`ENCODINGS` as a Markdown table.

    (quoted in ``docs/encodings.md``; print it with ``python -m
    thermal_visible_fusion.stream.image_codec``).
    """
    lines = ["| encoding | bytes/pixel | thermal input gets (H, W) "
             "| RGB input gets (H, W, 3) BGR uint8 | note |",
             "|---|---|---|---|---|"]
    for name, spec in ENCODINGS.items():
        out = _U8 if spec.kind == "yuv" else spec.dtype
        thermal = f"{_HOW_GREY[spec.kind]}, {_DTYPE_NAMES[out]}"
        note = "; ".join(filter(None, [f"same as `{spec.alias_of}`" if spec.alias_of else "",
                                       spec.note]))
        lines.append(f"| `{name}` | {spec.bytes_per_pixel} | {thermal} | {_rgb_words(spec)} "
                     f"| {note} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(encodings_markdown(), end="")
