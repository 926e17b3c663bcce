"""
FusionEngine behaviour a robot relies on.

Grid, registration, input types and when the temporal memory is (and is not)
reset.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from thermal_visible_fusion.engine import EngineConfig, FusionEngine, FusionResult
from thermal_visible_fusion.stream.thermal_normalizer import ThermalNormalizer

PERIOD_NS = 33_333_333  # 30 Hz
H, W = 120, 160


class RecordingFuser:
    """Test double for the fuser (implements the Fuser protocol) that logs calls."""

    name = "recording"

    def __init__(self) -> None:
        self.events: list[str] = []
        self.use_memory = True

    @property
    def resets(self) -> int:
        return self.events.count("reset")

    def fuse(self, thermal: np.ndarray, rgb: np.ndarray) -> np.ndarray:
        assert thermal.dtype == np.uint8 and thermal.shape == rgb.shape[:2]
        self.events.append("fuse")
        out = rgb.copy()
        out[..., 2] = thermal
        return out

    def reset(self) -> None:
        self.events.append("reset")


def textured(h: int = H, w: int = W, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Make a static, textured thermal/RGB pair (smooth blobs so optical flow is well posed)."""
    rng = np.random.default_rng(seed)
    base = cv2.GaussianBlur(rng.uniform(0, 255, (h, w)).astype(np.float32), (0, 0), 3)
    base = cv2.normalize(base, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    thermal = base
    rgb = np.dstack([base, 255 - base, np.roll(base, 7, axis=1)])
    return thermal, np.ascontiguousarray(rgb)


def multiscale_engine(**config) -> FusionEngine:
    return FusionEngine(EngineConfig(fuser="multiscale", **config))


def recording_engine(**config) -> tuple[FusionEngine, RecordingFuser]:
    fuser = RecordingFuser()
    return FusionEngine(EngineConfig(fuser="multiscale", **config), fuser=fuser), fuser


def run(engine: FusionEngine, n: int, start_ns: int = 0, thermal=None,
        rgb=None) -> list[FusionResult]:
    default_t, default_rgb = textured()
    thermal = default_t if thermal is None else thermal
    rgb = default_rgb if rgb is None else rgb
    return [engine.process(thermal, rgb, start_ns + i * PERIOD_NS) for i in range(n)]


# ---------------------------------------------------------------- construction


def test_engine_builds_the_requested_classic_fuser_without_warning():
    engine = multiscale_engine()
    assert engine.fuser.name == "multiscale"
    assert engine.fuser_warning is None
    assert "multiscale" in engine.describe()


# ---------------------------------------------------------------- no reset on a normal stream


def test_normal_30hz_sequence_never_resets_and_counts_up():
    engine, fuser = recording_engine()
    results = run(engine, 8)
    assert [r.frames_since_reset for r in results] == list(range(8))
    assert all(r.reset_reason == "" for r in results)
    assert fuser.resets == 0
    assert fuser.events == ["fuse"] * 8


def test_gap_just_below_max_stamp_gap_does_not_reset():
    engine, fuser = recording_engine(max_stamp_gap=0.5)
    t, rgb = textured()
    engine.process(t, rgb, 0)
    engine.process(t, rgb, PERIOD_NS)
    r = engine.process(t, rgb, PERIOD_NS + 490_000_000)
    assert r.reset_reason == ""
    assert r.frames_since_reset == 2
    assert fuser.resets == 0


def test_repeated_stamp_is_not_a_reset():
    engine, fuser = recording_engine()
    t, rgb = textured()
    engine.process(t, rgb, 10 * PERIOD_NS)
    r = engine.process(t, rgb, 10 * PERIOD_NS)
    assert r.reset_reason == "" and r.frames_since_reset == 1
    assert fuser.resets == 0


# ---------------------------------------------------------------- reset rules


def _assert_reset(result: FusionResult, fuser: RecordingFuser, resets_before: int, *words: str):
    assert result.frames_since_reset == 0
    assert result.reset_reason, "reset_reason must say why memory was reset"
    for word in words:
        assert word in result.reset_reason.lower()
    assert fuser.resets == resets_before + 1
    # The fuser forgot its memory before fusing the frame, not after.
    assert fuser.events[-2:] == ["reset", "fuse"]
    # The temporal monitor was reset too: no previous frame to compare with.
    assert result.temporal.fused_error is None


def test_stamp_gap_beyond_max_stamp_gap_resets_memory():
    engine, fuser = recording_engine(max_stamp_gap=0.5)
    results = run(engine, 5)
    assert results[-1].frames_since_reset == 4
    t, rgb = textured()
    r = engine.process(t, rgb, 4 * PERIOD_NS + 600_000_000)
    _assert_reset(r, fuser, 0, "gap")
    # ...and counting starts again afterwards, without another reset.
    r2 = engine.process(t, rgb, 4 * PERIOD_NS + 600_000_000 + PERIOD_NS)
    assert r2.frames_since_reset == 1 and r2.reset_reason == ""
    assert fuser.resets == 1


def test_max_stamp_gap_is_honoured_when_configured_small():
    engine, fuser = recording_engine(max_stamp_gap=0.05)
    t, rgb = textured()
    engine.process(t, rgb, 0)
    assert engine.process(t, rgb, 40_000_000).reset_reason == ""       # 40 ms: fine
    _assert_reset(engine.process(t, rgb, 140_000_000), fuser, 0, "gap")  # 100 ms: reset


def test_stamps_going_backwards_reset_memory():
    engine, fuser = recording_engine()
    run(engine, 6, start_ns=10**9)
    t, rgb = textured()
    r = engine.process(t, rgb, 10**9 + 2 * PERIOD_NS)  # earlier than the last frame: bag loop
    _assert_reset(r, fuser, 0, "backward")


@pytest.mark.parametrize("which", ["thermal", "rgb"])
def test_input_size_change_resets_memory(which):
    engine, fuser = recording_engine()
    run(engine, 4)
    t, rgb = textured()
    if which == "thermal":
        t, _ = textured(H // 2, W // 2)
    else:
        _, rgb = textured(H + 8, W + 8)
    r = engine.process(t, rgb, 4 * PERIOD_NS)
    _assert_reset(r, fuser, 0, "size")
    assert r.fused.shape == rgb.shape
    # Same new size again: no further reset.
    r2 = engine.process(t, rgb, 5 * PERIOD_NS)
    assert r2.reset_reason == "" and r2.frames_since_reset == 1
    assert fuser.resets == 1


def test_reset_call_resets_before_next_frame_with_its_reason():
    engine, fuser = recording_engine()
    run(engine, 4)
    engine.reset("operator asked")
    t, rgb = textured()
    r = engine.process(t, rgb, 4 * PERIOD_NS)
    assert r.frames_since_reset == 0
    assert r.reset_reason == "operator asked"
    assert fuser.resets == 1
    assert r.temporal.fused_error is None


def test_reset_default_reason_is_not_empty():
    engine, _ = recording_engine()
    run(engine, 3)
    engine.reset()
    t, rgb = textured()
    r = engine.process(t, rgb, 3 * PERIOD_NS)
    assert r.frames_since_reset == 0 and r.reset_reason


def test_reset_also_forgets_the_smoothed_thermal_range():
    """
    A reset forgets the smoothed thermal range.

    After a reset a radiometric frame is stretched by its own range, not a blend
    with the range of the frames before the reset.
    """
    ramp = np.linspace(0.0, 1.0, H * W, dtype=np.float64).reshape(H, W)
    frame_a = (1000 + 1000 * ramp).astype(np.uint16)
    frame_b = (1500 + 1000 * ramp).astype(np.uint16)   # overlaps A: smoothing would blend
    rgb = textured()[1]
    expected = ThermalNormalizer(1.0, 99.0, 0.9).normalize(frame_b)

    def last_thermal(gap_ns: int) -> np.ndarray:
        engine = multiscale_engine(thermal_smoothing=0.9)
        for i in range(5):
            engine.process(frame_a, rgb, i * PERIOD_NS)
        return engine.process(frame_b, rgb, 4 * PERIOD_NS + gap_ns).thermal

    np.testing.assert_array_equal(last_thermal(2 * 10**9), expected)   # gap: reset
    assert not np.array_equal(last_thermal(PERIOD_NS), expected)      # no gap: smoothed


# ---------------------------------------------------------------- grid and registration


def test_output_is_on_the_rgb_grid_when_thermal_has_another_size():
    engine = multiscale_engine()
    thermal = textured(256, 320)[0]
    rgb = textured(480, 640)[1]
    r = engine.process(thermal, rgb, 0)
    assert r.fused.shape == (480, 640, 3) and r.fused.dtype == np.uint8
    assert r.thermal.shape == (480, 640) and r.thermal.dtype == np.uint8


def _square_thermal(h: int, w: int, x0: int, y0: int, size: int = 20) -> np.ndarray:
    thermal = np.zeros((h, w), np.uint8)
    thermal[y0:y0 + size, x0:x0 + size] = 255
    return thermal


def test_translation_homography_moves_thermal_content():
    dx, dy = 60, 30
    engine = multiscale_engine(homography=[1, 0, dx, 0, 1, dy, 0, 0, 1])
    rgb = np.full((H, W, 3), 90, np.uint8)
    r = engine.process(_square_thermal(H, W, 20, 20), rgb, 0)
    ys, xs = np.nonzero(r.thermal > 128)
    assert (ys.min(), xs.min(), ys.max(), xs.max()) == (20 + dy, 20 + dx, 39 + dy, 39 + dx)
    assert r.thermal[30, 30] == 0  # the original place is empty now


def test_homography_maps_thermal_pixels_onto_a_larger_rgb_grid():
    # Thermal 320x256 -> RGB 640x480: scale 2 and shift by (10, 5) RGB pixels.
    engine = multiscale_engine(homography=[2, 0, 10, 0, 2, 5, 0, 0, 1])
    thermal = _square_thermal(256, 320, 100, 80, size=20)
    r = engine.process(thermal, np.full((480, 640, 3), 90, np.uint8), 0)
    assert r.thermal.shape == (480, 640)
    ys, xs = np.nonzero(r.thermal > 128)
    assert abs(xs.mean() - (2 * 109.5 + 10)) < 2
    assert abs(ys.mean() - (2 * 89.5 + 5)) < 2


def test_without_homography_thermal_is_resized_to_rgb():
    engine = multiscale_engine()
    thermal = _square_thermal(H // 2, W // 2, 10, 10, size=10)
    r = engine.process(thermal, np.full((H, W, 3), 90, np.uint8), 0)
    ys, xs = np.nonzero(r.thermal > 128)
    assert abs(xs.mean() - 29.5) < 1.5 and abs(ys.mean() - 29.5) < 1.5


# ---------------------------------------------------------------- thermal input types


def test_uint16_thermal_is_accepted():
    engine = multiscale_engine()
    ramp = np.tile(np.linspace(7000, 9000, W), (H, 1)).astype(np.uint16)
    r = engine.process(ramp, textured()[1], 0)
    assert r.thermal.dtype == np.uint8 and r.thermal.shape == (H, W)
    assert r.fused.shape == (H, W, 3) and r.fused.dtype == np.uint8
    # The radiometric range is stretched over the 8-bit range.
    assert r.thermal[:, 0].max() < 10 and r.thermal[:, -1].min() > 245


def test_float32_thermal_with_nan_is_accepted():
    engine = multiscale_engine()
    ramp = np.tile(np.linspace(280.0, 320.0, W, dtype=np.float32), (H, 1))
    ramp[10:30, 50:90] = np.nan
    r = engine.process(ramp, textured()[1], 0)
    assert r.thermal.dtype == np.uint8 and r.thermal.shape == (H, W)
    assert (r.thermal[10:30, 50:90] == 0).all()   # invalid pixels carry no heat
    assert r.thermal[:, -1].min() > 245
    assert r.fused.dtype == np.uint8 and r.fused.shape == (H, W, 3)


# ---------------------------------------------------------------- temporal diagnostics


def test_first_temporal_sample_is_empty_and_later_ones_are_floats():
    engine = multiscale_engine()
    results = run(engine, 3)
    first = results[0].temporal
    assert (first.fused_error, first.thermal_error, first.rgb_error, first.flicker) == (None,) * 4
    for r in results[1:]:
        values = (r.temporal.fused_error, r.temporal.thermal_error, r.temporal.rgb_error,
                  r.temporal.flicker)
        assert all(isinstance(v, float) and math.isfinite(v) for v in values)


def test_static_scene_has_near_zero_error_and_thermal_flicker_raises_it():
    thermal, rgb = textured()
    static = run(multiscale_engine(), 5, thermal=thermal, rgb=rgb)
    static_err = max(r.temporal.fused_error for r in static[1:])
    assert static_err < 0.5

    engine = multiscale_engine()
    inverted = 255 - thermal
    flicker = [engine.process(inverted if i % 2 else thermal, rgb, i * PERIOD_NS)
               for i in range(5)]
    flicker_err = min(r.temporal.fused_error for r in flicker[1:])
    assert flicker_err > 5.0
    assert flicker_err > 10 * static_err + 1.0
    # The thermal input error shows where it came from; RGB stayed still.
    assert min(r.temporal.thermal_error for r in flicker[1:]) > 20.0
    assert max(r.temporal.rgb_error for r in flicker[1:]) < 0.5


# ---------------------------------------------------------------- runtime changes


def test_update_config_homography_is_applied_and_can_be_removed():
    engine = multiscale_engine()
    rgb = np.full((H, W, 3), 90, np.uint8)
    square = _square_thermal(H, W, 20, 20)
    r = engine.process(square, rgb, 0)
    assert r.thermal[30, 30] == 255
    engine.update_config(homography=[1, 0, 50, 0, 1, 40, 0, 0, 1])
    r = engine.process(square, rgb, PERIOD_NS)
    assert r.thermal[30, 30] == 0 and r.thermal[70, 80] == 255
    engine.update_config(homography=[])
    r = engine.process(square, rgb, 2 * PERIOD_NS)
    assert r.thermal[30, 30] == 255 and r.thermal[70, 80] == 0


def test_update_config_use_memory_false_resets_fuser_every_frame():
    engine, fuser = recording_engine()
    run(engine, 3)
    assert fuser.resets == 0
    engine.update_config(use_memory=False)
    assert fuser.use_memory is False
    t, rgb = textured()
    for i in range(3, 6):
        engine.process(t, rgb, i * PERIOD_NS)
    assert fuser.events[-6:] == ["reset", "fuse"] * 3
    engine.update_config(use_memory=True)
    assert fuser.use_memory is True
    engine.process(t, rgb, 6 * PERIOD_NS)
    assert fuser.events[-2:] == ["fuse", "fuse"]


def test_update_config_max_stamp_gap_is_applied():
    engine, fuser = recording_engine(max_stamp_gap=0.5)
    t, rgb = textured()
    engine.process(t, rgb, 0)
    engine.update_config(max_stamp_gap=0.1)
    r = engine.process(t, rgb, 200_000_000)
    assert r.frames_since_reset == 0 and "gap" in r.reset_reason


# ---------------------------------------------------------------- warmup


def test_warmup_leaves_no_memory_on_a_fresh_engine():
    engine, fuser = recording_engine()
    seconds = engine.warmup(H, W)
    assert seconds >= 0.0
    assert fuser.events == ["fuse", "reset"]   # the blank frame was forgotten
    r = run(engine, 1)[0]
    assert r.frames_since_reset == 0
    assert r.temporal.fused_error is None


def test_warmup_after_frames_leaves_no_memory():
    engine, fuser = recording_engine()
    run(engine, 4)
    engine.warmup(48, 64)                      # another size than the stream
    assert fuser.events[-2:] == ["fuse", "reset"]
    t, rgb = textured()
    r = engine.process(t, rgb, 4 * PERIOD_NS)
    assert r.frames_since_reset == 0
    assert r.temporal.fused_error is None
    assert fuser.events[-1] == "fuse"


def test_warmup_with_real_fuser_then_process():
    engine = multiscale_engine()
    engine.warmup(H, W)
    r = run(engine, 2)
    assert [x.frames_since_reset for x in r] == [0, 1]
    assert r[0].temporal.fused_error is None and r[1].temporal.fused_error is not None
