"""
FusionEngine: numpy in, numpy out; owns the temporal memory.

The node, ``tvf fuse``, ``tvf evaluate`` and the benchmarks all fuse through
this one class, and the node and ``tvf evaluate`` take their inputs through one front
end (``stream.gate.InputGate``: the same checks, drops, counters and looping-bag
restarts), so a bag evaluated offline behaves exactly like the live node.
Per pair it: maps thermal to 8 bits (smoothed percentile range), brings it onto
the RGB grid (resize or calibrated homography), fuses, and measures temporal
consistency.  The memory (fuser state, thermal range, temporal monitor) resets
when the stamp gap exceeds ``max_stamp_gap``, when stamps go backwards (a bag
loop), when the input size changes, or when asked (``reset``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
import time

import cv2
import numpy as np

from thermal_visible_fusion.fusers import create_fuser, Fuser
from thermal_visible_fusion.metrics.temporal import TemporalMonitor, TemporalSample
from thermal_visible_fusion.params import normalized_homography
from thermal_visible_fusion.stream.thermal_normalizer import ThermalNormalizer

# Degenerate geometry is refused before any work: a 1x4000 frame is within max_pixels
# but its diagnostics would be upscaled to 160x640000 (GBs), and OpenCV's remap and
# DIS flow fail or crash on such shapes.
MIN_SIDE = 16      # px, each side of each input image
MAX_ASPECT = 8.0   # longer side / shorter side, each input image
# DIS flow (the temporal diagnostics) crashes on frames under 32 px high: wide frames
# get a wider diagnostics grid instead.
MIN_DIAGNOSTICS_HEIGHT = 32


class GeometryError(ValueError):
    """An input image too small or too elongated to fuse; the frame is dropped."""


def geometry_problem(height: int, width: int) -> str | None:
    """Why an image of this size is not fused, or None."""
    if min(height, width) < MIN_SIDE:
        return f"image {width}x{height} is below the minimum side of {MIN_SIDE} px"
    if max(height, width) > MAX_ASPECT * min(height, width):
        return (f"image {width}x{height} has an aspect ratio of "
                f"{max(height, width) / min(height, width):.0f}:1, more than {MAX_ASPECT:g}:1")
    return None


def diagnostics_width(height: int, width: int, requested: int) -> int:
    """Return the diagnostics grid's width: as asked, or wider so it is at least 32 px high."""
    return max(requested, -(-MIN_DIAGNOSTICS_HEIGHT * width // height))


@dataclass
class EngineConfig:
    fuser: str = "auto"
    weights: str = ""
    device: str = "auto"
    cpu_threads: int = 0  # the learned fuser's most torch threads on a CPU; 0 = all cores
    cpu_bf16: bool = True  # its denoiser in bfloat16 where the CPU has it
    use_memory: bool = True
    lookahead: int = 0
    max_stamp_gap: float = 0.5
    homography: list[float] = field(default_factory=list)
    thermal_low_percentile: float = 1.0
    thermal_high_percentile: float = 99.0
    thermal_smoothing: float = 0.9
    diagnostics_width: int = 160

    @classmethod
    def from_params(cls, params: dict) -> "EngineConfig":
        names = cls.__dataclass_fields__
        return cls(**{k: v for k, v in params.items() if k in names})


@dataclass(frozen=True)
class FusionResult:
    fused: np.ndarray               # (H, W, 3) uint8 BGR on the RGB grid
    thermal: np.ndarray             # (H, W) uint8 thermal as fused (normalised, registered)
    temporal: TemporalSample
    frames_since_reset: int         # 0 on the first frame after a reset
    reset_reason: str               # why memory was reset before this frame, or ""
    fuse_seconds: float


class FusionEngine:

    def __init__(self, config: EngineConfig | None = None, fuser: Fuser | None = None):
        self.config = config or EngineConfig()
        self.fuser_warning: str | None = None
        if fuser is None:
            fuser, self.fuser_warning = create_fuser(
                self.config.fuser, weights=self.config.weights or None, device=self.config.device,
                use_memory=self.config.use_memory, lookahead=self.config.lookahead,
                threads=self.config.cpu_threads or None,
                bf16=None if self.config.cpu_bf16 else False)
        self.fuser = fuser
        self.normalizer = ThermalNormalizer(self.config.thermal_low_percentile,
                                            self.config.thermal_high_percentile,
                                            self.config.thermal_smoothing)
        self.monitor = TemporalMonitor(self.config.diagnostics_width)
        self._homography = _matrix(self.config.homography)
        self._last_stamp_ns: int | None = None
        self._last_shapes: tuple | None = None
        self._frames_since_reset = 0
        self._pending_reset = ""

    @property
    def device(self) -> str:
        return str(getattr(self.fuser, "device", "cpu"))

    def describe(self) -> str:
        threads = getattr(self.fuser, "max_threads", None)
        return f"fuser={self.fuser.name} device={self.device}" + (
            f" torch_threads<={threads}" if threads else "") + (
            " bf16_convolutions" if getattr(self.fuser, "bf16", False) else "")

    def update_config(self, **changes) -> None:
        """Apply runtime parameter changes (already validated by the caller)."""
        for key, value in changes.items():
            setattr(self.config, key, value)
        if "homography" in changes:
            self._homography = _matrix(self.config.homography)
        if set(changes) & {"thermal_low_percentile", "thermal_high_percentile",
                           "thermal_smoothing"}:
            self.normalizer = ThermalNormalizer(self.config.thermal_low_percentile,
                                                self.config.thermal_high_percentile,
                                                self.config.thermal_smoothing)
        if "diagnostics_width" in changes:
            self.monitor = TemporalMonitor(self.config.diagnostics_width)
        if "use_memory" in changes and hasattr(self.fuser, "use_memory"):
            self.fuser.use_memory = self.config.use_memory

    def reset(self, reason: str = "requested") -> None:
        """Forget all temporal memory before the next frame."""
        self._pending_reset = reason
        self._last_stamp_ns = None

    def warmup(self, height: int = 480, width: int = 640) -> float:
        """Fuse blank frames so the first real frames are not slow; returns seconds."""
        start = time.perf_counter()
        if hasattr(self.fuser, "warmup"):  # e.g. several frames: with and without memory
            self.fuser.warmup(height, width)
        else:
            self.fuser.fuse(np.zeros((height, width), np.uint8),
                            np.zeros((height, width, 3), np.uint8))
        self._clear()
        self._pending_reset = ""
        return time.perf_counter() - start

    def process(self, thermal: np.ndarray, rgb: np.ndarray, stamp_ns: int) -> FusionResult:
        """
        Fuse one pair.

        ``thermal`` (H, W) uint8/uint16/float32; ``rgb`` (H, W, 3) BGR uint8. Raises
        ``GeometryError`` (nothing changed) for a degenerate image size.
        """
        for name, shape in (("thermal", thermal.shape), ("rgb", rgb.shape)):
            if problem := geometry_problem(*shape[:2]):
                raise GeometryError(f"{name} {problem}")
        reason = self._reset_reason(thermal.shape, rgb.shape, stamp_ns)
        if reason:
            self._clear()
        self._fit_monitor(*rgb.shape[:2])
        start = time.perf_counter()
        thermal8 = self._register(self.normalizer.normalize(thermal), rgb.shape[:2])
        if not self.config.use_memory:
            self.fuser.reset()
        fused = self.fuser.fuse(thermal8, rgb)
        seconds = time.perf_counter() - start
        sample = self.monitor.update(fused, thermal8, rgb)
        result = FusionResult(fused, thermal8, sample, self._frames_since_reset, reason, seconds)
        self._frames_since_reset += 1
        self._last_stamp_ns = stamp_ns
        return result

    def reset_reason(self, thermal_shape, rgb_shape, stamp_ns: int) -> str:
        """Why the memory will reset before fusing a pair like this, or "" (changes nothing)."""
        shapes, last = (thermal_shape, rgb_shape), self._last_stamp_ns
        if self._pending_reset:
            return self._pending_reset
        if self._last_shapes is not None and shapes != self._last_shapes:
            return "input size changed"
        if last is not None and stamp_ns < last:
            return "stamps went backwards"
        if last is not None and stamp_ns - last > self.config.max_stamp_gap * 1e9:
            return "stamp gap exceeded max_stamp_gap"
        return ""

    def _reset_reason(self, thermal_shape, rgb_shape, stamp_ns: int) -> str:
        reason = self.reset_reason(thermal_shape, rgb_shape, stamp_ns)
        self._pending_reset, self._last_shapes = "", (thermal_shape, rgb_shape)
        return reason

    def _fit_monitor(self, height: int, width: int) -> None:
        width = diagnostics_width(height, width, self.config.diagnostics_width)
        if width != self.monitor.width:  # a new grid: the monitor starts over
            self.monitor = TemporalMonitor(width)

    def _clear(self) -> None:
        self.fuser.reset()
        self.normalizer.reset()
        self.monitor.reset()
        self._frames_since_reset = 0

    def _register(self, thermal8: np.ndarray, rgb_hw: tuple[int, int]) -> np.ndarray:
        height, width = rgb_hw
        if self._homography is not None:
            return cv2.warpPerspective(thermal8, self._homography, (width, height),
                                       flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        if thermal8.shape != (height, width):
            return cv2.resize(thermal8, (width, height), interpolation=cv2.INTER_LINEAR)
        return thermal8


def _matrix(values: list[float]) -> np.ndarray | None:
    if len(values) != 9:
        return None
    return np.asarray(normalized_homography(values), np.float64).reshape(3, 3)
