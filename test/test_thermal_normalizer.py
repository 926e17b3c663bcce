"""ThermalNormalizer: robust, temporally smoothed thermal -> uint8 mapping."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from thermal_visible_fusion.stream.thermal_normalizer import ThermalNormalizer


def scene(height: int = 120, width: int = 160, low: int = 3000, high: int = 5000) -> np.ndarray:
    """Make a smooth uint16 gradient from ``low`` to ``high`` counts."""
    ramp = np.linspace(low, high, width)
    return np.tile(ramp, (height, 1)).astype(np.uint16)


def own_range(frame: np.ndarray) -> tuple[float, float]:
    """Return the frame's range measured on its own (no history, no smoothing)."""
    reference = ThermalNormalizer(smoothing=0.0)
    reference.normalize(frame)
    return reference.range


# --- mapping ------------------------------------------------------------------


def test_16bit_stretches_percentile_range_to_full_scale() -> None:
    out = ThermalNormalizer().normalize(scene())
    assert out.dtype == np.uint8 and out.shape == (120, 160)
    assert out[:, 0].max() == 0 and out[:, -1].min() == 255  # beyond 1 %/99 %: clipped
    assert np.all(np.diff(out[0].astype(int)) >= 0)  # monotonic with temperature
    assert 120 <= out[:, 80].mean() <= 135  # mid-range lands mid-grey


def test_hot_outlier_pixels_do_not_compress_the_scene() -> None:
    frame = scene()
    frame[::40, ::40] = 65535  # a handful of dead/saturated pixels (< 0.1 %)
    out = ThermalNormalizer().normalize(frame)
    assert np.ptp(out[1:, 1:]) >= 250  # the real scene still uses the full scale


def test_uint8_passes_through_unchanged() -> None:
    normalizer = ThermalNormalizer()
    frame = np.random.default_rng(1).integers(0, 256, (48, 64), dtype=np.uint8)
    out = normalizer.normalize(frame)
    np.testing.assert_array_equal(out, frame)
    assert out.dtype == np.uint8
    assert normalizer.range is None  # 8-bit frames do not touch the smoothed range


def test_float_input_is_normalized() -> None:
    frame = scene().astype(np.float32) / 100.0 - 20.0  # e.g. degrees Celsius
    out = ThermalNormalizer().normalize(frame)
    expected = ThermalNormalizer().normalize(scene())
    assert np.abs(out.astype(int) - expected).max() <= 1  # float32 rounding only


def test_rejects_non_2d_frames() -> None:
    with pytest.raises(ValueError, match="2-D"):
        ThermalNormalizer().normalize(np.zeros((4, 4, 3), np.uint16))


# --- non-finite and degenerate input -------------------------------------------


def test_non_finite_values_are_ignored_and_become_zero() -> None:
    clean = scene().astype(np.float32)
    dirty = clean.copy()
    dirty[::3, ::5] = np.nan
    dirty[1::7, ::2] = np.inf
    dirty[2::9, 1::2] = -np.inf
    bad = ~np.isfinite(dirty)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = ThermalNormalizer(smoothing=0.0).normalize(dirty)
    assert np.all(out[bad] == 0)
    expected = ThermalNormalizer(smoothing=0.0).normalize(clean)
    # Finite pixels map as if the non-finite ones were absent (same range, up to sampling).
    assert np.abs(out[~bad].astype(int) - expected[~bad]).max() <= 3


@pytest.mark.parametrize("fill", [np.nan, np.inf, -np.inf, "mixed"])
def test_all_non_finite_frame_gives_zeros_quietly(fill) -> None:
    frame = np.full((30, 40), np.nan, dtype=np.float32)
    if fill == "mixed":
        frame[::2] = np.inf
        frame[1::4] = -np.inf
    else:
        frame[:] = fill
    normalizer = ThermalNormalizer()
    normalizer.normalize(scene().astype(np.float32))
    before = normalizer.range
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = normalizer.normalize(frame)
    assert out.dtype == np.uint8 and out.shape == (30, 40) and not out.any()
    assert normalizer.range == before  # a blank frame does not disturb the range


@pytest.mark.parametrize("dtype", [np.uint16, np.float32])
def test_flat_image_does_not_divide_by_zero(dtype) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        normalizer = ThermalNormalizer()
        out = normalizer.normalize(np.full((20, 20), 4000, dtype=dtype))
        assert out.dtype == np.uint8 and not out.any()
        # A later frame with contrast still maps sensibly (hotter than the flat level is bright).
        out = normalizer.normalize(np.array([[3000, 5000]] * 4, dtype=dtype))
    assert out[0, 0] < out[0, 1]


def test_flat_float_image_with_non_finite_pixels() -> None:
    frame = np.full((20, 20), 36.6, dtype=np.float32)
    frame[0, :3] = (np.inf, -np.inf, np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = ThermalNormalizer().normalize(frame)
    assert not out.any()


# --- temporal behaviour ---------------------------------------------------------


def test_smoothing_suppresses_flicker() -> None:
    """
    Smoothing suppresses the flicker of a jittering hot object.

    A small hot object whose reading jitters +-3 % per frame sets the 99th
    percentile; stretching each frame on its own makes the whole image pump.
    """
    rng = np.random.default_rng(7)
    base = scene().astype(np.float64)
    base += rng.normal(0.0, 15.0, base.shape)  # sensor noise
    hot = (slice(10, 34), slice(20, 44))  # 3 % of the frame, hotter than everything else
    gains = rng.uniform(0.97, 1.03, size=40)

    def flicker(smoothing: float) -> float:
        normalizer = ThermalNormalizer(smoothing=smoothing)
        means = []
        for gain in gains:
            frame = base.copy()
            frame[hot] = 9000.0 * gain
            means.append(normalizer.normalize(frame.astype(np.uint16)).mean())
        return float(np.abs(np.diff(means)).mean())

    raw, smoothed = flicker(0.0), flicker(0.9)
    assert raw > 1.0  # the setup really flickers without smoothing
    assert smoothed < 0.3 * raw


def test_bounds_follow_an_exponential_moving_average() -> None:
    first, second = scene(low=3000, high=5000), scene(low=3500, high=5500)
    (low1, high1), (low2, high2) = own_range(first), own_range(second)

    normalizer = ThermalNormalizer(smoothing=0.75)
    normalizer.normalize(first)
    assert normalizer.range == pytest.approx((low1, high1))  # first frame: taken directly
    normalizer.normalize(second)
    expected = (0.75 * low1 + 0.25 * low2, 0.75 * high1 + 0.25 * high2)
    assert normalizer.range == pytest.approx(expected)


def test_reset_reinitializes_from_next_frame() -> None:
    normalizer = ThermalNormalizer(smoothing=0.9)
    for _ in range(5):
        normalizer.normalize(scene(low=3000, high=5000))
    normalizer.reset()
    assert normalizer.range is None
    fresh = scene(low=4000, high=6000)  # overlaps the old range: would be blended
    normalizer.normalize(fresh)
    assert normalizer.range == pytest.approx(own_range(fresh))


def test_disjoint_range_jump_reinitializes() -> None:
    normalizer = ThermalNormalizer(smoothing=0.9)
    for _ in range(5):
        normalizer.normalize(scene(low=3000, high=5000))
    jumped = scene(low=20000, high=30000)  # e.g. another camera
    out = normalizer.normalize(jumped)
    assert normalizer.range == pytest.approx(own_range(jumped))
    assert out[:, 0].max() == 0 and out[:, -1].min() == 255  # full contrast immediately


def test_overlapping_range_change_is_smoothed_not_reset() -> None:
    normalizer = ThermalNormalizer(smoothing=0.9)
    normalizer.normalize(scene(low=3000, high=5000))
    normalizer.normalize(scene(low=4500, high=7000))
    low, high = normalizer.range
    assert 3000 < low < 3300 and 5000 < high < 5300


# --- construction and speed --------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"low_percentile": 50, "high_percentile": 50}, "low_percentile < high_percentile"),
        ({"low_percentile": 60, "high_percentile": 40}, "low_percentile < high_percentile"),
        ({"low_percentile": -1}, "0 <= low_percentile"),
        ({"high_percentile": 101}, "high_percentile <= 100"),
        ({"smoothing": 1.0}, r"smoothing must be in \[0, 1\)"),
        ({"smoothing": -0.1}, r"smoothing must be in \[0, 1\)"),
        ({"smoothing": float("nan")}, "smoothing must be finite"),
        ({"low_percentile": "1"}, "low_percentile must be a real number"),
        ({"smoothing": True}, "smoothing must be a real number"),
    ],
)
def test_constructor_validates_arguments(kwargs: dict, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        ThermalNormalizer(**kwargs)
