"""The built-in synthetic scene: determinism, motion, and that fusion is needed."""

from __future__ import annotations

import numpy as np
import pytest

from thermal_visible_fusion.data.synthetic import SyntheticScene, THERMAL16_OFFSET, THERMAL16_SPAN

# Frames sampled over the walk; several figures cross smoke, dark and clear areas.
SAMPLE = range(0, 400, 20)


@pytest.fixture(scope="module")
def scene() -> SyntheticScene:
    return SyntheticScene(seed=0)


def _gray(rgb: np.ndarray) -> np.ndarray:
    return rgb.astype(np.float32) @ np.array([0.114, 0.587, 0.299], np.float32)


def test_shapes_and_dtypes(scene):
    thermal, rgb = scene.frame(0)
    assert thermal.shape == (480, 640) and thermal.dtype == np.uint8
    assert rgb.shape == (480, 640, 3) and rgb.dtype == np.uint8
    assert thermal.flags.c_contiguous and rgb.flags.c_contiguous
    small = SyntheticScene(width=160, height=120, seed=3)
    t, c = small.frame(7)
    assert t.shape == (120, 160) and c.shape == (120, 160, 3)
    assert small.figure_mask(7).shape == (120, 160)


def test_deterministic_for_seed_and_index(scene):
    other = SyntheticScene(seed=0)
    for index in (12, 3, 12):                       # any order, repeated
        t1, c1 = scene.frame(index)
        t2, c2 = other.frame(index)
        np.testing.assert_array_equal(t1, t2)
        np.testing.assert_array_equal(c1, c2)
    t3, c3 = SyntheticScene(seed=1).frame(12)
    assert not np.array_equal(t3, t1) and not np.array_equal(c3, c1)


def test_frames_differ_with_motion(scene):
    t0, c0 = scene.frame(0)
    t1, c1 = scene.frame(10)
    assert np.mean(np.abs(t0.astype(int) - t1.astype(int))) > 1.0
    assert np.mean(np.abs(c0.astype(int) - c1.astype(int))) > 1.0
    assert not np.array_equal(scene.figure_mask(0), scene.figure_mask(10))
    shakes = {scene.shake(i) for i in range(60)}
    assert len(shakes) > 3
    assert all(abs(dx) <= 3 and abs(dy) <= 3 for dx, dy in shakes)


def test_figure_ground_truth(scene):
    assert 3 <= scene.num_figures <= 4
    for index in (0, 100):
        mask = scene.figure_mask(index)
        boxes = scene.figure_boxes(index)
        assert 1 <= len(boxes) <= scene.num_figures
        assert mask.sum() > 1000
        covered = np.zeros_like(mask)
        for x0, y0, x1, y1 in boxes:
            assert 0 <= x0 < x1 <= 640 and 0 <= y0 < y1 <= 480
            covered[y0:y1, x0:x1] = True
        assert not (mask & ~covered).any()


def test_figures_warm_in_thermal(scene):
    for index in (0, 50, 150):
        thermal, _ = scene.frame(index)
        empty, _ = scene.frame(index, figures=False)
        mask = scene.figure_mask(index)
        inside = thermal[mask].astype(np.float32)
        assert inside.mean() > thermal[~mask].mean() + 60
        # Against the very background they hide: a strong, consistent difference.
        assert np.mean(inside - empty[mask]) > 60


def test_figures_hidden_in_rgb_where_smoke_or_dark(scene):
    hidden_rgb, hidden_thermal, clear_rgb = [], [], []
    for index in SAMPLE:
        thermal, rgb = scene.frame(index)
        thermal0, rgb0 = scene.frame(index, figures=False)
        mask = scene.figure_mask(index)
        vis = scene.rgb_visibility(index)
        d_rgb = np.abs(_gray(rgb) - _gray(rgb0))
        d_thermal = np.abs(thermal.astype(np.float32) - thermal0)
        hidden = mask & (vis < 0.1)
        clear = mask & (vis > 0.6)
        hidden_rgb.append(d_rgb[hidden])
        hidden_thermal.append(d_thermal[hidden])
        clear_rgb.append(d_rgb[clear])
    hidden_rgb = np.concatenate(hidden_rgb)
    hidden_thermal = np.concatenate(hidden_thermal)
    clear_rgb = np.concatenate(clear_rgb)
    # The sampled walk does put people in smoke/darkness and in the clear.
    assert hidden_rgb.size > 2000 and clear_rgb.size > 2000
    assert hidden_rgb.mean() < 8            # (nearly) invisible in RGB ...
    assert hidden_thermal.mean() > 60       # ... yet plain in thermal
    assert clear_rgb.mean() > 25            # and visible in RGB where it is clear


def test_rgb_visibility_has_smoke_and_dark(scene):
    vis = scene.rgb_visibility(0)
    assert vis.shape == (480, 640) and vis.dtype == np.float32
    assert 0.0 <= vis.min() and vis.max() <= 1.0
    assert (vis < 0.1).mean() > 0.1 and (vis > 0.6).mean() > 0.2


def test_thermal16(scene):
    t16 = scene.thermal16(5)
    assert t16.shape == (480, 640) and t16.dtype == np.uint16
    lo, hi = np.percentile(t16, (1, 99))
    assert 6900 <= lo and hi <= 9100 and hi - lo > 800
    t8, _ = scene.frame(5)
    back = (t16.astype(np.float32) - THERMAL16_OFFSET) / THERMAL16_SPAN * 255.0
    assert np.abs(back - t8)[(t8 > 2) & (t8 < 253)].max() <= 1.5

    scene16 = SyntheticScene(seed=0, thermal_dtype="uint16")
    thermal, rgb = scene16.frame(5)
    np.testing.assert_array_equal(thermal, t16)
    np.testing.assert_array_equal(rgb, scene.frame(5)[1])


def test_bad_arguments():
    with pytest.raises(ValueError):
        SyntheticScene(thermal_dtype="float32")
    with pytest.raises(ValueError):
        SyntheticScene(width=10, height=10)
