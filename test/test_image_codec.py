"""image_codec: raw sensor_msgs/Image fields <-> numpy, built from hand-made bytes."""

from __future__ import annotations

import array

import numpy as np
import pytest

from thermal_visible_fusion.image_codec import (
    RGB_ENCODINGS,
    THERMAL_ENCODINGS,
    ImageFormatError,
    decode_image,
    decode_rgb,
    decode_thermal,
    encode_image,
)

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
    [("mono8", "u1", False), ("mono16", ">u2", True), ("16UC1", "<u2", False), ("32FC1", ">f4", True)],
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
    [bytes, bytearray, memoryview, lambda b: array.array("B", b), lambda b: np.frombuffer(b, np.uint8)],
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
    return bytes({"bgr8": (b, g, r), "rgb8": (r, g, b), "bgra8": (b, g, r, 77), "rgba8": (r, g, b, 77)}[encoding])


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
    scene[:, width // 2 :] = right
    raw = mosaic(scene, BAYER_PATTERNS[encoding])
    step = width + extra
    out = decode_rgb(encoding, height, width, step, False, padded([r.tobytes() for r in raw], step))
    assert out.shape == (height, width, 3)
    # Interior of each flat region (away from the colour edge and image border).
    assert np.abs(out[3:-3, 2:5].astype(int) - left).max() <= 2
    assert np.abs(out[3:-3, 11:14].astype(int) - right).max() <= 2


# --- errors -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("decode", "encoding", "kind"),
    [
        (decode_thermal, "yuv422", "thermal"),
        (decode_thermal, "bgr8", "thermal"),
        (decode_rgb, "16UC1", "rgb"),
        (decode_rgb, "bayer_rggb16", "rgb"),
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
    with pytest.raises(ImageFormatError, match=f"data is {length} bytes but step\\*height = .* = 921600"):
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
    assert set(THERMAL_ENCODINGS) == {"mono8", "8UC1", "mono16", "16UC1", "32FC1"}
    assert "bgr8" in RGB_ENCODINGS and "bayer_rggb8" in RGB_ENCODINGS and "mono8" in RGB_ENCODINGS


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
    [np.zeros((2, 2), np.int16), np.zeros((2, 2), np.float64), np.zeros((2, 2, 4), np.uint8), np.zeros(4, np.uint8)],
)
def test_encode_rejects_unsupported_arrays(array_: np.ndarray) -> None:
    with pytest.raises(ImageFormatError, match="cannot encode"):
        encode_image(array_)
