"""The per-frame temporal-consistency record, shared by the node and ``tvf evaluate``.

One definition of the keys and their text format, so a bag evaluated offline
carries exactly the diagnostics the live node would have published.
"""

from __future__ import annotations

from thermal_visible_fusion.engine import FusionResult

TEMPORAL_KEYS = ("temporal_error_fused", "temporal_error_thermal", "temporal_error_rgb",
                 "brightness_flicker", "frames_since_reset", "latency_ms", "fuse_ms",
                 "stamp_skew_ms", "memory_reset")


def frame_values(result: FusionResult, latency_s: float, skew_ns: int) -> dict:
    sample = result.temporal
    return {
        "temporal_error_fused": sample.fused_error,
        "temporal_error_thermal": sample.thermal_error,
        "temporal_error_rgb": sample.rgb_error,
        "brightness_flicker": sample.flicker,
        "frames_since_reset": result.frames_since_reset,
        "latency_ms": latency_s * 1000,
        "fuse_ms": result.fuse_seconds * 1000,
        "stamp_skew_ms": skew_ns / 1e6,
        "memory_reset": result.reset_reason,
    }


def status_message(result: FusionResult) -> str:
    return f"memory reset: {result.reset_reason}" if result.reset_reason else "ok"


def format_value(value) -> str:
    """Diagnostic values are strings: 4 decimals for floats, 'nan' for 'not measured'."""
    if value is None:
        return "nan"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)
