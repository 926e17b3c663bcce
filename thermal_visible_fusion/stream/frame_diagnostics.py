"""
The per-frame temporal-consistency record, shared by the node and ``tvf evaluate``.

One definition of the keys, their text format and the whole status, so a bag evaluated
offline carries exactly the ``fused/temporal_consistency`` the live node would have
published.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from thermal_visible_fusion.engine import FusionResult

TEMPORAL_KEYS = ("temporal_error_fused", "temporal_error_thermal", "temporal_error_rgb",
                 "brightness_flicker", "frames_since_reset", "latency_ms", "fuse_ms",
                 "stamp_skew_ms", "memory_reset")
OK = 0  # diagnostic_msgs/DiagnosticStatus.OK


def frame_values(result: FusionResult, latency_s: float, skew_ns: int) -> dict:
    """
    Return the frame's numbers under ``TEMPORAL_KEYS``.

    None where not measured (the first frame after a reset has no previous frame).
    """
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
    """Diagnostic values are strings: 4 decimals for floats."""
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def diagnostic_values(values: Mapping[str, Any]) -> dict[str, str]:
    """
    Values as diagnostic strings.

    An unknown value (None) is left out rather than sent as "nan" or as text among
    numbers, so a plotting tool (PlotJuggler) parses every value of a numeric key.
    """
    return {key: format_value(value) for key, value in values.items() if value is not None}


@dataclass(frozen=True)
class FrameStatus:
    """One ``diagnostic_msgs/DiagnosticStatus`` of ``fused/temporal_consistency``."""

    name: str
    message: str
    hardware_id: str
    values: dict[str, str]
    level: int = OK


def temporal_status(result: FusionResult, latency_s: float, skew_ns: int, node_name: str,
                    frame_id: str, values: Mapping[str, Any] | None = None) -> FrameStatus:
    """
    Return the status published with a fused frame.

    Named after the node (its fully qualified name), ``hardware_id`` the fused image's
    (the RGB camera's) frame_id.  ``values``: the frame's :func:`frame_values` when the
    caller has them already (``tvf evaluate`` keeps them for its table too).
    """
    if values is None:
        values = frame_values(result, latency_s, skew_ns)
    return FrameStatus(name=f"{node_name}: temporal consistency",
                       message=status_message(result), hardware_id=frame_id or node_name,
                       values=diagnostic_values(values))
