"""image_codec: raw sensor_msgs/Image fields <-> numpy, built from hand-made bytes."""

from __future__ import annotations

import array
from dataclasses import dataclass
from pathlib import Path
import struct

import cv2
import numpy as np
import pytest

from thermal_visible_fusion.stream.image_codec import (decode_compressed, decode_compressed_rgb,
                                                       decode_compressed_thermal, decode_image,
                                                       decode_rgb, decode_thermal,
                                                       encode_compressed, encode_image, ENCODINGS,
                                                       encodings_markdown, ImageFormatError,
                                                       RGB_ENCODINGS, THERMAL_ENCODINGS)

GARBAGE = 0xAB  # padding filler, so a decoder that reads padding gets wrong pixels


def padded(rows: list[bytes], step: int) -> bytes:
    """Join rows, each padded with garbage up to ``step`` bytes."""
    return b"".join(row + bytes([GARBAGE]) * (step - len(row)) for row in rows)


# --- thermal ------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["mono8", "8UC1"])
def test_decode_thermal_8bit(encoding: str) -> None:
    data = bytes([0, 1, 2, 250, 254, 255])
    out = decode_thermal(encoding, 2, 3, 3, False, data)
    assert out.dtype == np.uint8 and out.shape == (2, 3)
    np.testing.assert_array_equal(out, [[0, 1, 2], [250, 254, 255]])


@pytest.mark.parametrize("encoding", ["mono16", "16UC1"])
@pytest.mark.parametrize("bigendian", [False, True])
def test_decode_thermal_16bit_both_byte_orders(encoding: str, bigendian: bool) -> None:
    values = np.array([[1, 258, 65535], [4096, 0, 31000]])
    order = ">" if bigendian else "<"
    data = values.astype(order + "u2").tobytes()
    out = decode_thermal(encoding, 2, 3, 6, bigendian, data)
    assert out.dtype == np.uint16 and out.dtype.isnative and out.shape == (2, 3)
    np.testing.assert_array_equal(out, values)


@pytest.mark.parametrize("bigendian", [False, True])
def test_decode_thermal_float_keeps_non_finite(bigendian: bool) -> None:
    values = np.array([[21.5, -3.25, np.nan], [np.inf, -np.inf, 1e6]], dtype=np.float32)
    data = values.astype((">" if bigendian else "<") + "f4").tobytes()
    out = decode_thermal("32FC1", 2, 3, 12, int(bigendian), data)
    assert out.dtype == np.float32 and out.dtype.isnative and out.shape == (2, 3)
    np.testing.assert_array_equal(out, values)  # NaN compares equal positionally here


@pytest.mark.parametrize(
    ("encoding", "dtype", "bigendian"),
    [("mono8", "u1", False), ("mono16", ">u2", True), ("16UC1", "<u2", False),
     ("32FC1", ">f4", True)],
)
def test_decode_thermal_strips_row_padding(encoding: str, dtype: str, bigendian: bool) -> None:
    values = np.arange(1, 13).reshape(3, 4).astype(dtype)
    row_bytes = 4 * values.itemsize
    step = row_bytes + 5  # odd padding: misaligns the 16/32-bit rows that follow
    data = padded([row.tobytes() for row in values], step)
    out = decode_thermal(encoding, 3, 4, step, bigendian, data)
    assert out.flags.c_contiguous and out.shape == (3, 4)
    np.testing.assert_array_equal(out, values.astype(values.dtype.newbyteorder("=")))


@pytest.mark.parametrize(
    "make",
    [bytes, bytearray, memoryview, lambda b: array.array("B", b),
     lambda b: np.frombuffer(b, np.uint8)],
    ids=["bytes", "bytearray", "memoryview", "array", "ndarray"],
)
def test_decode_accepts_every_buffer_type(make) -> None:
    values = np.array([[100, 2000], [30000, 65535]], dtype="<u2")
    out = decode_thermal("mono16", 2, 2, 4, False, make(values.tobytes()))
    np.testing.assert_array_equal(out, values)


def test_unpadded_native_decode_is_a_view_of_the_buffer() -> None:
    data = bytearray(np.array([[1, 2], [3, 4]], dtype="<u2").tobytes())
    out = decode_thermal("mono16", 2, 2, 4, False, data)
    data[0] = 9  # documented: no copy when no conversion is needed
    assert out[0, 0] == 9


# --- colour -------------------------------------------------------------------

# Two pixels per row: pure red, then a mixed colour; BGR order.
RED_BGR = (0, 0, 255)
MIX_BGR = (10, 120, 230)
EXPECTED_BGR = np.array([[RED_BGR, MIX_BGR], [MIX_BGR, RED_BGR]], dtype=np.uint8)


def _pixel_bytes(encoding: str, bgr: tuple[int, int, int]) -> bytes:
    b, g, r = bgr
    return bytes({"bgr8": (b, g, r), "rgb8": (r, g, b), "bgra8": (b, g, r, 77),
                  "rgba8": (r, g, b, 77)}[encoding])


@pytest.mark.parametrize("encoding", ["bgr8", "rgb8", "bgra8", "rgba8"])
@pytest.mark.parametrize("extra", [0, 3])
def test_decode_rgb_colour_encodings(encoding: str, extra: int) -> None:
    rows = [b"".join(_pixel_bytes(encoding, tuple(px)) for px in row) for row in EXPECTED_BGR]
    step = len(rows[0]) + extra
    out = decode_rgb(encoding, 2, 2, step, False, padded(rows, step))
    assert out.dtype == np.uint8 and out.shape == (2, 2, 3) and out.flags.c_contiguous
    np.testing.assert_array_equal(out, EXPECTED_BGR)


def test_decode_rgb_mono_replicates_gray() -> None:
    data = padded([bytes([0, 128]), bytes([200, 255])], 4)
    out = decode_rgb("mono8", 2, 2, 4, False, data)
    assert out.shape == (2, 2, 3)
    for channel in range(3):
        np.testing.assert_array_equal(out[..., channel], [[0, 128], [200, 255]])


# ROS pattern meaning: the letters name the top-left 2x2 block in reading order.
BAYER_PATTERNS = {
    "bayer_rggb8": "RGGB",
    "bayer_bggr8": "BGGR",
    "bayer_gbrg8": "GBRG",
    "bayer_grbg8": "GRBG",
}


def mosaic(bgr: np.ndarray, pattern: str) -> np.ndarray:
    """Sample a BGR image through a ROS-named Bayer filter."""
    channel_of = {"B": 0, "G": 1, "R": 2}
    out = np.empty(bgr.shape[:2], dtype=np.uint8)
    for dy in range(2):
        for dx in range(2):
            out[dy::2, dx::2] = bgr[dy::2, dx::2, channel_of[pattern[2 * dy + dx]]]
    return out


@pytest.mark.parametrize("encoding", sorted(BAYER_PATTERNS))
@pytest.mark.parametrize("extra", [0, 6])
def test_decode_rgb_bayer_recovers_flat_colours(encoding: str, extra: int) -> None:
    # Left half one colour, right half another; every channel distinct so a
    # swapped R/B or a one-pixel pattern shift shows up as a wrong colour.
    height, width = 12, 16
    left, right = (40, 90, 220), (200, 150, 20)  # BGR
    scene = np.empty((height, width, 3), dtype=np.uint8)
    scene[:, : width // 2] = left
    scene[:, width // 2:] = right
    raw = mosaic(scene, BAYER_PATTERNS[encoding])
    step = width + extra
    out = decode_rgb(encoding, height, width, step, False,
                     padded([r.tobytes() for r in raw], step))
    assert out.shape == (height, width, 3)
    # Interior of each flat region (away from the colour edge and image border).
    assert np.abs(out[3:-3, 2:5].astype(int) - left).max() <= 2
    assert np.abs(out[3:-3, 11:14].astype(int) - right).max() <= 2


# --- errors -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("decode", "encoding", "kind"),
    [
        (decode_thermal, "nv21", "thermal"),
        (decode_thermal, "64FC1", "thermal"),
        (decode_thermal, "BGR8", "thermal"),  # names are case-sensitive, as in ROS
        (decode_rgb, "32FC1", "rgb"),  # float has no 8-bit scale
        (decode_rgb, "16UC3", "rgb"),
    ],
)
def test_unsupported_encoding(decode, encoding: str, kind: str) -> None:
    with pytest.raises(ImageFormatError, match=f"unsupported {kind} encoding '{encoding}'"):
        decode(encoding, 2, 2, 8, False, bytes(16))


@pytest.mark.parametrize(("height", "width"), [(0, 480), (480, 0)])
def test_empty_image(height: int, width: int) -> None:
    with pytest.raises(ImageFormatError, match=f"empty image width={width} height={height}"):
        decode_thermal("mono8", height, width, width, False, b"")


def test_negative_size() -> None:
    with pytest.raises(ImageFormatError, match="negative image size"):
        decode_rgb("bgr8", -1, 4, 12, False, b"")


@pytest.mark.parametrize("length", [1000, 921599, 921601, 0])
def test_wrong_data_length(length: int) -> None:
    with pytest.raises(ImageFormatError,
                       match=f"data is {length} bytes but step\\*height = .* = 921600"):
        decode_rgb("bgr8", 480, 640, 1920, False, bytes(length))


def test_step_too_small() -> None:
    with pytest.raises(ImageFormatError, match="step 100 < width\\*bytes_per_pixel 1920"):
        decode_rgb("bgr8", 2, 640, 100, False, bytes(200))


def test_step_must_cover_16bit_pixels() -> None:
    with pytest.raises(ImageFormatError, match="step 640 < width\\*bytes_per_pixel 1280"):
        decode_thermal("mono16", 2, 640, 640, False, bytes(1280))


def test_oversize_rejected_before_touching_data() -> None:
    # data is deliberately wrong too: the size check must come first and name max_pixels.
    with pytest.raises(ImageFormatError, match="image 4000x4000 .* exceeds max_pixels=2000000"):
        decode_thermal("mono16", 4000, 4000, 8000, False, b"", max_pixels=2_000_000)


def test_max_pixels_allows_exact_fit() -> None:
    out = decode_thermal("mono8", 2, 3, 3, False, bytes(6), max_pixels=6)
    assert out.shape == (2, 3)


@pytest.mark.parametrize("data", [[1, 2, 3, 4], "abcd", np.zeros(2, np.uint16)])
def test_bad_data_type(data) -> None:
    with pytest.raises(ImageFormatError, match="data"):
        decode_thermal("mono8", 2, 2, 2, False, data)


def test_bayer_too_small() -> None:
    with pytest.raises(ImageFormatError, match="at least 2x2"):
        decode_rgb("bayer_rggb8", 1, 4, 4, False, bytes(4))


def test_errors_are_value_errors() -> None:
    assert issubclass(ImageFormatError, ValueError)


def test_encoding_tables() -> None:
    assert set(THERMAL_ENCODINGS) == set(ENCODINGS)
    assert set(RGB_ENCODINGS) == set(ENCODINGS) - {"32FC1"}


# --- every encoding of the table, from hand-packed bytes ------------------------------
#
# Each builder packs a small scene into the encoding's bytes without the codec and says
# what the thermal input (H, W) and the RGB input (H, W, 3) BGR uint8 must get back.

SCENE_H, SCENE_W = 4, 6  # even width: yuv422 needs it
_rng = np.random.default_rng(5)
BGR16 = _rng.integers(0, 65536, (SCENE_H, SCENE_W, 3)).astype(np.uint16)
BGR8 = (BGR16 >> 8).astype(np.uint8)
GREY16 = BGR16[..., 1]
GREY8 = BGR8[..., 1]


def luma(bgr: np.ndarray) -> np.ndarray:
    """ITU-R BT.601 luma, as float."""
    b, g, r = (bgr[..., i].astype(np.float64) for i in range(3))
    return 0.299 * r + 0.587 * g + 0.114 * b


@dataclass
class Case:
    pixels: np.ndarray  # (H, W, C) as stored, native byte order
    thermal: np.ndarray  # what the thermal input must return
    rgb: np.ndarray | None  # what the RGB input must return; None: rejected
    tolerance: float = 0  # of the thermal result (cv2 rounds luma in fixed point)
    rgb_tolerance: int = 0


def _grey_case(grey: np.ndarray) -> Case:
    rgb = (grey >> 8).astype(np.uint8) if grey.dtype == np.uint16 else grey
    return Case(grey[..., None], grey, np.repeat(rgb[..., None], 3, axis=2))


def _colour_case(order: str, bits: int) -> Case:
    bgr = BGR16 if bits == 16 else BGR8
    channels = {"b": bgr[..., 0], "g": bgr[..., 1], "r": bgr[..., 2],
                "a": np.full_like(bgr[..., 0], 99)}
    pixels = np.dstack([channels[c] for c in order])
    # cv2's fixed-point luma: within 1 (8-bit) or 2 (16-bit) of the exact value
    return Case(pixels, luma(bgr), BGR8, tolerance=bits / 8)


def _bayer_case(pattern: str, bits: int) -> Case:
    # a flat colour: demosaicing recovers it exactly away from the border
    height, width = 8, 10
    colour16 = np.array([9000, 30000, 52000])  # BGR
    colour = colour16 if bits == 16 else colour16 >> 8
    scene = np.broadcast_to(colour,
                            (height, width, 3)).astype(np.uint16 if bits == 16 else np.uint8)
    raw = np.empty((height, width), scene.dtype)
    index = {"B": 0, "G": 1, "R": 2}
    for dy in range(2):
        for dx in range(2):
            raw[dy::2, dx::2] = scene[dy::2, dx::2, index[pattern[2 * dy + dx].upper()]]
    rgb = np.broadcast_to(colour16 >> 8, (height, width, 3)).astype(np.uint8)
    return Case(raw[..., None], luma(scene), rgb, tolerance=bits / 8, rgb_tolerance=1)


def _yuv_case(order: str) -> Case:
    # three 2-pixel groups per row: grey (U = V = 128) and two colours.  BGR is BT.601
    # video range, as OpenCV's (and cv_bridge's) 4:2:2 conversion; the thermal input
    # gets Y itself.
    y = np.array([[60, 61, 150, 152, 200, 90]] * 2, np.uint8)
    u = np.array([[128, 100, 140]] * 2, np.uint8)
    v = np.array([[128, 170, 90]] * 2, np.uint8)
    packed = np.empty((2, 6, 2), np.uint8)
    for group in range(3):
        pair = (y[:, 2 * group], y[:, 2 * group + 1], u[:, group], v[:, group])
        y0, y1, uu, vv = pair
        first, second = ((uu, y0), (vv, y1)) if order == "UYVY" else ((y0, uu), (y1, vv))
        packed[:, 2 * group] = np.stack(first, axis=-1)
        packed[:, 2 * group + 1] = np.stack(second, axis=-1)
    du, dv = (np.repeat(c.astype(float), 2, axis=1) - 128 for c in (u, v))
    yy = 1.164 * (y - 16.0)
    bgr = np.stack([yy + 2.018 * du, yy - 0.813 * dv - 0.391 * du, yy + 1.596 * dv], axis=-1)
    return Case(packed, y, np.clip(np.round(bgr), 0, 255).astype(np.uint8), rgb_tolerance=1)


def _float_case() -> Case:
    values = np.array([[21.5, -3.25, np.nan], [np.inf, 0.0, 1e6]], np.float32)
    return Case(values[..., None], values, None)


CASES = {
    "mono8": lambda: _grey_case(GREY8),
    "8UC1": lambda: _grey_case(GREY8),
    "mono16": lambda: _grey_case(GREY16),
    "16UC1": lambda: _grey_case(GREY16),
    "32FC1": _float_case,
    **{f"{order}{bits}": (lambda order=order, bits=bits: _colour_case(order, bits))
       for order in ("bgr", "rgb", "bgra", "rgba") for bits in (8, 16)},
    "8UC3": lambda: _colour_case("bgr", 8),  # documented: OpenCV order, same as bgr8
    **{f"bayer_{p}{bits}": (lambda p=p, bits=bits: _bayer_case(p, bits))
       for p in ("rggb", "bggr", "gbrg", "grbg") for bits in (8, 16)},
    "yuv422": lambda: _yuv_case("UYVY"),  # ROS's yuv422 is UYVY
    "yuv422_yuy2": lambda: _yuv_case("YUYV"),
}


def test_cases_cover_every_accepted_encoding() -> None:
    assert set(CASES) == set(ENCODINGS)


def _message(case: Case, bigendian: bool, padding: int) -> tuple[int, int, int, bytes]:
    order = ">" if bigendian else "<"
    stored = case.pixels.astype(case.pixels.dtype.newbyteorder(order))
    height, width = stored.shape[:2]
    rows = [row.tobytes() for row in stored]
    step = len(rows[0]) + padding
    return height, width, step, padded(rows, step)


@pytest.mark.parametrize("encoding", sorted(ENCODINGS))
@pytest.mark.parametrize(("bigendian", "padding"), [(False, 0), (True, 3)],
                         ids=["le", "be-padded"])
def test_every_encoding_round_trips(encoding: str, bigendian: bool, padding: int) -> None:
    case = CASES[encoding]()
    height, width, step, data = _message(case, bigendian, padding)
    thermal = decode_thermal(encoding, height, width, step, bigendian, data)
    assert thermal.shape == (height, width) and thermal.flags.c_contiguous
    assert thermal.dtype.isnative
    expected_dtype = np.uint8 if ENCODINGS[encoding].kind == "yuv" else case.pixels.dtype
    assert thermal.dtype == expected_dtype, encoding
    if ENCODINGS[encoding].kind == "bayer":  # the border is interpolated from fewer samples
        thermal, expected = thermal[2:-2, 2:-2], case.thermal[2:-2, 2:-2]
    else:
        expected = case.thermal
    np.testing.assert_allclose(thermal.astype(np.float64), expected, atol=case.tolerance)
    if case.rgb is None:
        with pytest.raises(ImageFormatError, match=f"unsupported rgb encoding '{encoding}'"):
            decode_rgb(encoding, height, width, step, bigendian, data)
        return
    rgb = decode_rgb(encoding, height, width, step, bigendian, data)
    assert rgb.shape == (height, width, 3) and rgb.dtype == np.uint8 and rgb.flags.c_contiguous
    if ENCODINGS[encoding].kind == "bayer":
        rgb, expected_rgb = rgb[2:-2, 2:-2], case.rgb[2:-2, 2:-2]
    else:
        expected_rgb = case.rgb
    np.testing.assert_allclose(rgb.astype(int), expected_rgb.astype(int), atol=case.rgb_tolerance)


@pytest.mark.parametrize("encoding", ["yuv422", "yuv422_yuy2"])
def test_yuv422_needs_even_width(encoding: str) -> None:
    for decode in (decode_thermal, decode_rgb):
        with pytest.raises(ImageFormatError, match="even width"):
            decode(encoding, 2, 5, 10, False, bytes(20))


@pytest.mark.parametrize("encoding", ["bayer_rggb16", "bayer_grbg8"])
def test_bayer_needs_2x2(encoding: str) -> None:
    with pytest.raises(ImageFormatError, match="at least 2x2"):
        decode_thermal(encoding, 1, 4, 8, False, bytes(8))


@pytest.mark.parametrize(
    ("encoding", "decode"),
    [(name, decode_thermal) for name, e in ENCODINGS.items() if e.kind == "grey"]
    + [("bgr8", decode_rgb), ("8UC3", decode_rgb)],
)
def test_zero_copy_where_no_conversion_is_needed(encoding: str, decode) -> None:
    case = CASES[encoding]()
    height, width, step, data = _message(case, False, 0)
    buffer = bytearray(data)
    out = decode(encoding, height, width, step, False, buffer)
    assert np.shares_memory(out, np.frombuffer(buffer, np.uint8))


def test_docs_quote_the_encodings_table() -> None:
    docs = Path(__file__).resolve().parents[1] / "docs" / "encodings.md"
    assert encodings_markdown() in docs.read_text(), \
        "regenerate: python -m thermal_visible_fusion.stream.image_codec"


# --- encode -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("array_", "encoding", "bytes_per_pixel"),
    [
        (np.arange(24, dtype=np.uint8).reshape(2, 4, 3), "bgr8", 3),
        (np.arange(8, dtype=np.uint8).reshape(2, 4), "mono8", 1),
        (np.array([[0, 1, 258, 65535]] * 2, dtype=np.uint16), "mono16", 2),
        (np.array([[0.5, -1.0, np.nan, np.inf]] * 2, dtype=np.float32), "32FC1", 4),
    ],
    ids=["bgr8", "mono8", "mono16", "32FC1"],
)
def test_encode_round_trips(array_: np.ndarray, encoding: str, bytes_per_pixel: int) -> None:
    got_encoding, step, data = encode_image(array_)
    assert (got_encoding, step) == (encoding, 4 * bytes_per_pixel)
    assert isinstance(data, bytes) and len(data) == step * 2
    back = decode_image(got_encoding, 2, 4, step, False, data)
    assert back.dtype == array_.dtype
    np.testing.assert_array_equal(back, array_)


def test_encode_multibyte_is_little_endian() -> None:
    _, _, data = encode_image(np.array([[0x0102]], dtype=">u2"))  # big-endian input
    assert data == b"\x02\x01"


def test_encode_non_contiguous_input() -> None:
    base = np.arange(48, dtype=np.uint8).reshape(4, 4, 3)
    view = base[::2, ::2]
    encoding, step, data = encode_image(view)
    np.testing.assert_array_equal(decode_rgb(encoding, 2, 2, step, False, data), view)


@pytest.mark.parametrize(
    "array_",
    [np.zeros((2, 2), np.int16), np.zeros((2, 2), np.float64), np.zeros((2, 2, 4), np.uint8),
     np.zeros(4, np.uint8)],
)
def test_encode_rejects_unsupported_arrays(array_: np.ndarray) -> None:
    with pytest.raises(ImageFormatError, match="cannot encode"):
        encode_image(array_)


# --- compressed (sensor_msgs/CompressedImage) ------------------------------------


def scene_bgr(height: int = 48, width: int = 64) -> np.ndarray:
    """Flat red left half, flat blue right half: JPEG keeps flat areas near exact."""
    bgr = np.empty((height, width, 3), np.uint8)
    bgr[:, : width // 2] = (20, 30, 230)
    bgr[:, width // 2:] = (220, 40, 10)
    return bgr


def assert_scene(out: np.ndarray, tolerance: int = 6) -> None:
    assert out.dtype == np.uint8 and out.ndim == 3 and out.shape[2] == 3 and out.flags.c_contiguous
    expected = scene_bgr(*out.shape[:2]).astype(int)
    interior = np.s_[4:-4, 4:24]  # away from the colour edge (JPEG rings there)
    assert np.abs(out[interior].astype(int) - expected[interior]).max() <= tolerance
    assert np.abs(out[4:-4, 40:-4].astype(int) - expected[4:-4, 40:-4]).max() <= tolerance


def thermal_ramp(height: int = 40, width: int = 50) -> np.ndarray:
    """16-bit counts using the whole range, so a PNG that drops the high byte shows."""
    return (np.arange(height * width, dtype=np.uint32).reshape(height, width) * 31 +
            7000).astype(np.uint16)


def test_encode_compressed_jpeg_round_trip() -> None:
    format_, data = encode_compressed(scene_bgr(), 95)
    assert format_ == "bgr8; jpeg compressed bgr8"  # image_transport's compressed publisher
    assert isinstance(data, bytes) and data[:2] == b"\xff\xd8"
    assert_scene(decode_compressed_rgb(format_, data))
    assert_scene(decode_compressed(format_, data))


def test_encode_compressed_16bit_png_round_trip_is_exact() -> None:
    ramp = thermal_ramp()
    format_, data = encode_compressed(ramp, 90)
    assert format_ == "mono16; png compressed "  # the plugin names no target for grey PNG
    out = decode_compressed_thermal(format_, data)
    assert out.dtype == np.uint16 and out.shape == ramp.shape
    np.testing.assert_array_equal(out, ramp)
    np.testing.assert_array_equal(decode_compressed(format_, data), ramp)
    # on the RGB input 16-bit grey becomes 8-bit grey (>> 8) in all three channels
    rgb = decode_compressed_rgb(format_, data)
    for channel in range(3):
        np.testing.assert_array_equal(rgb[..., channel], ramp >> 8)


def test_encode_compressed_mono8_jpeg() -> None:
    grey = np.tile(np.linspace(0, 255, 64).astype(np.uint8), (32, 1))
    format_, data = encode_compressed(grey, 100)
    assert format_ == "mono8; jpeg compressed mono8"
    out = decode_compressed_thermal(format_, data)
    assert out.dtype == np.uint8 and out.shape == grey.shape
    assert np.abs(out.astype(int) - grey).max() <= 3


@pytest.mark.parametrize(
    "format_",
    ["jpeg", "bgr8; jpeg compressed bgr8", "rgb8; jpeg compressed bgr8",
     "bgra8; jpeg compressed bgr8",
     "rgb16; jpeg compressed bgr8", "8UC3; jpeg compressed "],
)
def test_decode_compressed_colour_is_bgr(format_: str) -> None:
    # The publisher converts every colour encoding to BGR before imencode, so the
    # pixels are BGR whatever the original encoding says.
    _, jpeg = cv2.imencode(".jpg", scene_bgr(), [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert_scene(decode_compressed_rgb(format_, jpeg.tobytes()))


def test_decode_compressed_rgb_ordered_target_is_swapped() -> None:
    # A publisher that compressed RGB-ordered pixels says so ("compressed rgb8");
    # image_transport's subscriber swaps them back, and so do we.
    _, jpeg = cv2.imencode(".jpg", scene_bgr()[..., ::-1].copy(), [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert_scene(decode_compressed_rgb("bgr8; jpeg compressed rgb8", jpeg.tobytes()))


def test_decode_compressed_colour_on_thermal_is_luma() -> None:
    # colour-mapped thermal cameras publish colour: the thermal input takes its luma
    format_, data = encode_compressed(scene_bgr(), 95)
    out = decode_compressed_thermal(format_, data)
    assert out.dtype == np.uint8 and out.shape == (48, 64)
    red_luma = round(0.299 * 230 + 0.587 * 30 + 0.114 * 20)
    blue_luma = round(0.299 * 10 + 0.587 * 40 + 0.114 * 220)
    assert abs(int(np.median(out[:, :24])) - red_luma) <= 4
    assert abs(int(np.median(out[:, 40:])) - blue_luma) <= 4


@pytest.mark.parametrize(
    ("format_", "channels"),
    [("bgr16; png compressed bgr16", 3), ("bgra8; png compressed bgra8", 4),
     ("bgra16; png compressed bgra16", 4)],
)
def test_decode_compressed_png_colour_depths_and_alpha(format_: str, channels: int) -> None:
    bgr = scene_bgr()
    image = bgr.astype(np.uint16) * 257 if "16" in format_ else bgr
    if channels == 4:
        image = np.dstack([image, np.full(image.shape[:2], 7, image.dtype)])
    _, png = cv2.imencode(".png", image)
    out = decode_compressed_rgb(format_, png.tobytes())
    np.testing.assert_array_equal(out, bgr)  # 16-bit: x * 257 >> 8 == x


def test_decode_compressed_bayer_mosaic_is_demosaiced() -> None:
    height, width = 12, 16
    scene = np.empty((height, width, 3), np.uint8)
    scene[:] = (40, 90, 220)
    _, png = cv2.imencode(".png", mosaic(scene, "RGGB"))
    out = decode_compressed_rgb("bayer_rggb8; png compressed ", png.tobytes())
    assert np.abs(out[2:-2, 2:-2].astype(int) - (40, 90, 220)).max() <= 2


def depth_message(png: bytes, quant_a: float = 0.0, quant_b: float = 0.0) -> bytes:
    """
    Build a ``compressedDepth`` message as image_transport writes it.

    compressed_depth_image_transport's layout: ConfigHeader {int32 format = INV_DEPTH (0),
    float32 depthParam[2]} (12 bytes), then the PNG.
    """
    return struct.pack("<iff", 0, quant_a, quant_b) + png


def test_decode_compressed_depth_16bit() -> None:
    ramp = thermal_ramp()
    _, png = cv2.imencode(".png", ramp)
    message = depth_message(png.tobytes())
    for decode in (decode_compressed, decode_compressed_thermal):
        out = decode("16UC1; compressedDepth png", message)
        assert out.dtype == np.uint16
        np.testing.assert_array_equal(out, ramp)
    # older plugin versions name no codec: png
    np.testing.assert_array_equal(decode_compressed("16UC1; compressedDepth", message), ramp)


def test_decode_compressed_depth_float_inverse_quantisation() -> None:
    # The plugin's 32FC1 coding: q = A / depth + B (uint16), A = z0 (z0 + 1),
    # B = 1 - A / depth_max; q = 0 (beyond depth_max or NaN) decodes to NaN.
    z0, depth_max = 100.0, 10.0
    quant_a = np.float32(z0 * (z0 + 1))
    quant_b = np.float32(1 - quant_a / depth_max)
    depth = np.array([[0.5, 1.0, 2.0], [4.0, 8.0, 20.0]], np.float32)
    quantised = np.where(depth < depth_max, quant_a / depth + quant_b, 0).astype(np.uint16)
    _, png = cv2.imencode(".png", quantised)
    out = decode_compressed_thermal("32FC1; compressedDepth png",
                                    depth_message(png.tobytes(), quant_a, quant_b))
    assert out.dtype == np.float32 and out.shape == (2, 3)
    assert np.isnan(out[1, 2])
    np.testing.assert_allclose(out[~np.isnan(out)], depth[depth < depth_max], rtol=2e-3)


@pytest.mark.parametrize(
    ("format_", "data", "match"),
    [
        ("16UC1; compressedDepth rvl", struct.pack("<iff", 0, 0, 0) + bytes(20), "only png"),
        ("16UC1; compressedDepth png", cv2.imencode(".png", thermal_ramp())[1].tobytes(),
         "12-byte header"),
        ("16UC1; compressedDepth png", b"\x00" * 12, "12-byte header"),
    ],
    ids=["rvl", "no-header", "header-only"],
)
def test_decode_compressed_depth_errors(format_: str, data: bytes, match: str) -> None:
    with pytest.raises(ImageFormatError, match=match):
        decode_compressed(format_, data)


@pytest.mark.parametrize("decode",
                         [decode_compressed, decode_compressed_thermal, decode_compressed_rgb])
@pytest.mark.parametrize(
    ("format_", "data", "match"),
    [
        ("jpeg", b"", "empty"),
        ("bgr8; jpeg compressed bgr8", b"not an image at all" * 20, "cannot decode"),
        ("png", b"\x89PNG\r\n\x1a\n" + bytes(64), "cannot decode"),
        ("h264", b"\x00\x00\x00\x01", "unsupported compressed format"),
        ("", b"\xff\xd8", "unsupported compressed format"),
    ],
    ids=["empty", "garbage", "png-garbage", "h264", "no-format"],
)
def test_decode_compressed_rejects_bad_data(decode, format_: str, data: bytes, match: str) -> None:
    with pytest.raises(ImageFormatError, match=match):
        decode(format_, data)


@pytest.mark.parametrize("kind", ["jpeg", "png16"])
@pytest.mark.parametrize("keep", [0.9, 0.5, 0.1, 30])
def test_decode_compressed_rejects_truncated(kind: str, keep: float) -> None:
    if kind == "jpeg":
        format_, data = encode_compressed(scene_bgr(96, 128), 90)
    else:
        format_, data = encode_compressed(thermal_ramp(96, 128), 90)
    cut = data[: keep if isinstance(keep, int) else int(len(data) * keep)]
    with pytest.raises(ImageFormatError):
        decode_compressed(format_, cut)


def test_decode_compressed_accepts_trailing_zero_padding_after_jpeg() -> None:
    format_, data = encode_compressed(scene_bgr(), 95)
    assert_scene(decode_compressed_rgb(format_, data + bytes(5)))


def _declare_png_size(png: bytes, width: int, height: int) -> bytes:
    return png[:16] + struct.pack(">II", width, height) + png[24:]


def _declare_jpeg_size(jpeg: bytes, width: int, height: int) -> bytes:
    at = jpeg.index(b"\xff\xc0")  # baseline frame header: FF C0, length, precision, H, W
    return jpeg[:at + 5] + struct.pack(">HH", height, width) + jpeg[at + 9:]


@pytest.mark.parametrize("kind", ["png", "jpeg"])
def test_decode_compressed_refuses_huge_declared_size_before_decoding(kind: str) -> None:
    if kind == "png":
        format_, data = encode_compressed(thermal_ramp(), 90)
        huge = _declare_png_size(data, 60000, 60000)
    else:
        format_, data = encode_compressed(scene_bgr(), 90)
        huge = _declare_jpeg_size(data, 60000, 60000)
    with pytest.raises(ImageFormatError, match="image 60000x60000 .* exceeds max_pixels=2000000"):
        decode_compressed(format_, huge, max_pixels=2_000_000)
    # without a limit the lie is still an error (the data does not hold that many pixels)
    with pytest.raises(ImageFormatError):
        decode_compressed(format_, huge)


@pytest.mark.parametrize("decode",
                         [decode_compressed, decode_compressed_thermal, decode_compressed_rgb])
def test_decode_compressed_max_pixels(decode) -> None:
    format_, data = encode_compressed(scene_bgr(48, 64), 90)
    assert decode(format_, data, max_pixels=48 * 64).shape[:2] == (48, 64)
    with pytest.raises(ImageFormatError, match="exceeds max_pixels=3071"):
        decode(format_, data, max_pixels=48 * 64 - 1)


def test_decode_compressed_buffer_types() -> None:
    format_, data = encode_compressed(thermal_ramp(), 90)
    for wrapped in (bytearray(data), memoryview(data), array.array("B", data),
                    np.frombuffer(data, np.uint8)):
        np.testing.assert_array_equal(decode_compressed_thermal(format_, wrapped), thermal_ramp())


def test_decode_compressed_float_depth_is_not_rgb() -> None:
    _, png = cv2.imencode(".png", thermal_ramp())
    with pytest.raises(ImageFormatError, match="32FC1"):
        decode_compressed_rgb("32FC1; compressedDepth png", depth_message(png.tobytes(), 1.0, 0.0))


@pytest.mark.parametrize(
    ("array_", "quality"),
    [
        (np.zeros((4, 4), np.float32), 90),
        (np.zeros((4, 4, 4), np.uint8), 90),
        (np.zeros((0, 4, 3), np.uint8), 90),
        (np.zeros((4, 4, 3), np.uint8), 0),
        (np.zeros((4, 4, 3), np.uint8), 101),
        (np.zeros((4, 4, 3), np.uint8), 9.5),
    ],
    ids=["float", "4-channel", "empty", "quality-0", "quality-101", "quality-float"],
)
def test_encode_compressed_rejects(array_: np.ndarray, quality) -> None:
    with pytest.raises(ImageFormatError):
        encode_compressed(array_, quality)
