"""
Temporal-consistency metrics of fused video.

flowD (TemCoCo): the mean per-pixel L2 distance, on the 0-255 scale, between
the fused frame and the previous fused frame warped onto it by the optical flow
of the *visible* stream.  Flow is OpenCV's DIS optical flow (dense inverse
search) computed from the current visible gray frame to the previous one, so
``warped(x) = previous(x + flow(x))``.  A video whose changes follow the scene's
motion scores low; flicker, noise and structure that jumps score high.  Colour
frames use the L2 norm over the three channels; gray frames the absolute
difference.

Brightness flicker: the absolute change of mean luminance between frames.

``TemporalMonitor`` is the cheap per-frame form the live node publishes: the
same measure on frames downscaled to ``width`` pixels (DIS ultra-fast preset),
for the fused frame and for each input, so a user sees whether fusion added or
removed temporal noise relative to its sources.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


def to_gray(image: np.ndarray) -> np.ndarray:
    return image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)


def _dis(preset: int) -> cv2.DISOpticalFlow:
    return cv2.DISOpticalFlow_create(preset)


def remap_coordinates(flow: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where each pixel of the current frame comes from in the previous (``cv2.remap`` maps)."""
    h, w = flow.shape[:2]
    grid_x, grid_y = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return grid_x + flow[..., 0], grid_y + flow[..., 1]


def warp_previous(previous: np.ndarray, flow: np.ndarray,
                  coordinates: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """Warp ``previous`` onto the current frame with a current->previous flow."""
    map_x, map_y = remap_coordinates(flow) if coordinates is None else coordinates
    return cv2.remap(previous, map_x, map_y, interpolation=cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REPLICATE)


def warped_distance(previous: np.ndarray, current: np.ndarray, flow: np.ndarray,
                    coordinates: tuple[np.ndarray, np.ndarray] | None = None) -> float:
    """
    Mean L2 distance (0-255) between ``current`` and ``previous`` warped by ``flow``.

    ``coordinates``: the flow's ``remap_coordinates`` when several frames share one flow.
    """
    warped = warp_previous(previous, flow, coordinates)
    diff = current.astype(np.float32) - warped.astype(np.float32)
    if diff.ndim == 3:
        return float(np.sqrt((diff * diff).sum(axis=2)).mean())
    return float(np.abs(diff).mean())


def visible_flow(previous_vis: np.ndarray, current_vis: np.ndarray,
                 preset: int = cv2.DISOPTICAL_FLOW_PRESET_MEDIUM) -> np.ndarray:
    """Dense flow from the current visible frame to the previous one."""
    return _dis(preset).calc(to_gray(current_vis), to_gray(previous_vis), None)


def flow_distance(previous_fused: np.ndarray, fused: np.ndarray,
                  previous_vis: np.ndarray, vis: np.ndarray) -> float:
    """Compute flowD of one frame at full resolution (see module docstring)."""
    return warped_distance(previous_fused, fused, visible_flow(previous_vis, vis))


def sequence_flow_distance(fused_frames, vis_frames) -> list[float]:
    """Compute flowD of every frame after the first; iterables of equally sized frames."""
    values, previous = [], None
    for fused, vis in zip(fused_frames, vis_frames):
        if previous is not None:
            values.append(flow_distance(previous[0], fused, previous[1], vis))
        previous = (fused, vis)
    return values


def brightness_flicker(previous: np.ndarray, current: np.ndarray) -> float:
    return float(abs(to_gray(current).mean() - to_gray(previous).mean()))


@dataclass(frozen=True)
class TemporalSample:
    """Per-frame temporal diagnostics; None on the first frame after a reset."""

    fused_error: float | None
    thermal_error: float | None
    rgb_error: float | None
    flicker: float | None


class TemporalMonitor:
    """Cheap flowD / flicker of the fused frame and of each input, frame by frame."""

    def __init__(self, width: int = 160):
        if width < 16:
            raise ValueError("diagnostics width must be >= 16 pixels")
        self.width = width
        self._dis = _dis(cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST)
        self._previous: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    def reset(self) -> None:
        self._previous = None

    def update(self, fused: np.ndarray, thermal: np.ndarray, rgb: np.ndarray) -> TemporalSample:
        """All frames on the same grid (the engine registers thermal to RGB first)."""
        h, w = fused.shape[:2]
        size = (self.width, max(1, round(h * self.width / w)))
        # grey at full size, then shrink: a third of the pixels to average
        small = tuple(cv2.resize(to_gray(x), size, interpolation=cv2.INTER_AREA)
                      for x in (fused, thermal, rgb))
        previous, self._previous = self._previous, small
        if previous is None or previous[0].shape != small[0].shape:
            return TemporalSample(None, None, None, None)
        flow = self._dis.calc(small[2], previous[2], None)
        coordinates = remap_coordinates(flow)  # one flow warps all three
        errors = [warped_distance(p, c, flow, coordinates) for p, c in zip(previous, small)]
        return TemporalSample(*errors, brightness_flicker(previous[0], small[0]))
