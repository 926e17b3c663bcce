"""
Map decoded thermal frames (uint8 / uint16 / float) to uint8 for fusion.

Radiometric (16-bit or float) frames are stretched between a low and a high
percentile of the frame.  Taken per frame, that range jitters with noise and
with small hot objects coming and going, and the whole fused image flickers;
so the bounds are smoothed over time with an exponential moving average.

Smoothing trades flicker for lag, which is wrong after a real scene change
(another camera, a shutter/FFC glitch, pointing from sky to ground).  When a
frame's range does not overlap the smoothed range at all, the smoothed range
is re-initialized from that frame instead of drifting over many frames.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["ThermalNormalizer"]

# Percentiles come from a strided subsample of at most about this many pixels:
# plenty for a 1 %/99 % estimate, and 640x480 (stride 4) stays well under 3 ms.
_TARGET_SAMPLES = 20_000
# Relative span under which a range counts as flat (float32 has ~7 digits).
_FLAT_SPAN = 1e-6


class ThermalNormalizer:
    """
    Stateful thermal -> uint8 mapper; one instance per thermal stream.

    uint8 input is returned unchanged (8-bit thermal is already gain-controlled
    by the camera) and leaves the smoothed range untouched.  Non-finite values
    are ignored when estimating the range and become 0 in the output.  Values
    at or below the low bound map to 0, at or above the high bound to 255.
    A flat frame (low == high) maps to all zeros rather than dividing by zero.
    """

    def __init__(
        self,
        low_percentile: float = 1.0,
        high_percentile: float = 99.0,
        smoothing: float = 0.9,
    ) -> None:
        low = _as_real(low_percentile, "low_percentile")
        high = _as_real(high_percentile, "high_percentile")
        alpha = _as_real(smoothing, "smoothing")
        if not 0.0 <= low < high <= 100.0:
            raise ValueError(
                "percentiles must satisfy 0 <= low_percentile < high_percentile <= 100, "
                f"got low={low} high={high}"
            )
        if not 0.0 <= alpha < 1.0:
            raise ValueError(
                f"smoothing must be in [0, 1) (0 = no smoothing, weight kept by the old "
                f"range), got {alpha}"
            )
        self._percentiles = (low, high)
        self._smoothing = alpha
        self._range: tuple[float, float] | None = None

    @property
    def range(self) -> tuple[float, float] | None:  # noqa: A003 (public property)
        """Return the current smoothed (low, high) in input units; None before the first frame."""
        return self._range

    def reset(self) -> None:
        """Forget the smoothed range; the next frame initializes it directly."""
        self._range = None

    def normalize(self, frame: np.ndarray) -> np.ndarray:
        """Return ``frame`` (H, W) as uint8 (H, W)."""
        frame = np.asarray(frame)
        if frame.ndim != 2:
            raise ValueError(f"thermal frame must be 2-D (H, W), got shape {frame.shape}")
        if frame.dtype == np.uint8:
            return frame
        if frame.dtype.kind not in "uif":
            raise ValueError(f"unsupported thermal dtype {frame.dtype}")

        measured = self._measure(frame) if frame.size else None
        if measured is None:  # nothing (finite) to measure: no signal
            return np.zeros(frame.shape, dtype=np.uint8)
        low, high = self._update(*measured)
        return _stretch(frame, low, high)

    # --- internals -----------------------------------------------------------

    def _measure(self, frame: np.ndarray) -> tuple[float, float] | None:
        """Percentile range of a strided subsample, ignoring non-finite values."""
        stride = max(1, math.ceil(math.sqrt(frame.size / _TARGET_SAMPLES)))
        sample = frame[::stride, ::stride]
        if frame.dtype.kind == "f":
            sample = sample[np.isfinite(sample)]
            if sample.size == 0:
                return None
        low, high = np.percentile(sample, self._percentiles)
        return float(low), float(high)

    def _update(self, low: float, high: float) -> tuple[float, float]:
        if self._range is not None:
            old_low, old_high = self._range
            # Disjoint ranges mean a new scene or camera: adopt the new range
            # outright rather than creeping towards it over many frames.
            if low <= old_high and high >= old_low:
                a = self._smoothing
                low = a * old_low + (1.0 - a) * low
                high = a * old_high + (1.0 - a) * high
        self._range = (low, high)
        return low, high


def _stretch(frame: np.ndarray, low: float, high: float) -> np.ndarray:
    span = high - low
    invalid = ~np.isfinite(frame) if frame.dtype.kind == "f" else None
    # Spans below float32 resolution count as flat: a step at `low`, no division.
    if span <= _FLAT_SPAN * max(1.0, abs(low), abs(high)):
        out = np.where(frame > low, np.uint8(255), np.uint8(0))
        if invalid is not None:
            out[invalid] = 0  # +inf is "> low"
        return out
    # float32 is exact enough for 8-bit output and faster than float64.
    with np.errstate(invalid="ignore", over="ignore"):
        scaled = frame.astype(np.float32)
        scaled -= np.float32(low)
        scaled *= np.float32(255.0 / span)
        np.clip(scaled, 0.0, 255.0, out=scaled)
        scaled += np.float32(0.5)  # round to nearest on the cast below
    if invalid is not None:
        scaled[invalid] = 0.0  # before the cast: casting NaN is undefined and warns
    return scaled.astype(np.uint8)


def _as_real(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a real number, got {value!r}")
    result = float(value)
    if not math.isfinite(result):
        raise ValueError(f"{name} must be finite, got {result}")
    return result
