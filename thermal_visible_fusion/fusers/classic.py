"""
Non-learned fusers: need no weights, serve as the fallback and as baselines.

All of them fuse luminance only and keep colour from the RGB image (YCrCb), so
the fused image looks like the RGB camera with thermal structure added.
"""

from __future__ import annotations

import cv2
import numpy as np


def split_luma(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """BGR uint8 -> (Y uint8, YCrCb image whose Y channel will be replaced)."""
    ycrcb = cv2.cvtColor(rgb, cv2.COLOR_BGR2YCrCb)
    return ycrcb[..., 0], ycrcb


def merge_luma(luma: np.ndarray, ycrcb: np.ndarray) -> np.ndarray:
    """Put a fused luminance back with the RGB image's chroma; returns BGR uint8."""
    ycrcb[..., 0] = luma
    return cv2.cvtColor(ycrcb, cv2.COLOR_YCrCb2BGR)


class AverageFuser:
    """Mean of thermal and visible luminance: the simplest baseline."""

    name = "average"

    def fuse(self, thermal: np.ndarray, rgb: np.ndarray) -> np.ndarray:
        luma, ycrcb = split_luma(rgb)
        return merge_luma(cv2.addWeighted(thermal, 0.5, luma, 0.5, 0.0), ycrcb)

    def reset(self) -> None:
        pass


class MaxFuser:
    """Per-pixel maximum: keeps warm targets and bright visible detail."""

    name = "max"

    def fuse(self, thermal: np.ndarray, rgb: np.ndarray) -> np.ndarray:
        luma, ycrcb = split_luma(rgb)
        return merge_luma(np.maximum(thermal, luma), ycrcb)

    def reset(self) -> None:
        pass


class MultiScaleFuser:
    """
    Laplacian-pyramid fusion of thermal and visible luminance.

    Detail bands take, per pixel, the source with more local energy (smoothed
    into a soft weight so choices do not speckle); the coarsest band is a
    saliency-weighted average, which is what lifts warm figures out of smoke
    or darkness while the visible scene keeps its texture.
    """

    name = "multiscale"

    def __init__(self, levels: int = 4):
        if levels < 1:
            raise ValueError("levels must be >= 1")
        self.levels = levels

    def fuse(self, thermal: np.ndarray, rgb: np.ndarray) -> np.ndarray:
        luma, ycrcb = split_luma(rgb)
        return merge_luma(self.fuse_luma(thermal, luma), ycrcb)

    def fuse_luma(self, thermal: np.ndarray, luma: np.ndarray) -> np.ndarray:
        """Two gray frames (uint8, or float32 grey levels) -> fused uint8 gray frame."""
        ir_pyr = _laplacian_pyramid(np.asarray(thermal, np.float32), self.levels)
        vis_pyr = _laplacian_pyramid(np.asarray(luma, np.float32), self.levels)
        fused = [_fuse_detail(a, b) for a, b in zip(ir_pyr[:-1], vis_pyr[:-1])]
        fused.append(_fuse_base(ir_pyr[-1], vis_pyr[-1]))
        return np.clip(_collapse(fused) + 0.5, 0, 255).astype(np.uint8)

    def reset(self) -> None:
        pass


def _laplacian_pyramid(image: np.ndarray, levels: int) -> list[np.ndarray]:
    pyramid = []
    current = image
    for _ in range(levels):
        down = cv2.pyrDown(current)
        up = cv2.pyrUp(down, dstsize=(current.shape[1], current.shape[0]))
        pyramid.append(current - up)
        current = down
    pyramid.append(current)
    return pyramid


def _collapse(pyramid: list[np.ndarray]) -> np.ndarray:
    image = pyramid[-1]
    for band in reversed(pyramid[:-1]):
        image = cv2.pyrUp(image, dstsize=(band.shape[1], band.shape[0])) + band
    return image


def _fuse_detail(ir: np.ndarray, vis: np.ndarray) -> np.ndarray:
    ir_energy = cv2.GaussianBlur(cv2.multiply(ir, ir), (5, 5), 0)
    vis_energy = cv2.GaussianBlur(cv2.multiply(vis, vis), (5, 5), 0)
    weight = ir_energy / (ir_energy + vis_energy + 1e-6)
    return _blend(weight, ir, vis)


def _fuse_base(ir: np.ndarray, vis: np.ndarray) -> np.ndarray:
    # Saliency = distance from the band's mean; warm targets stand out in ir.
    ir_sal = cv2.GaussianBlur(np.abs(ir - ir.mean()), (5, 5), 0)
    vis_sal = cv2.GaussianBlur(np.abs(vis - vis.mean()), (5, 5), 0)
    weight = (ir_sal + 1.0) / (ir_sal + vis_sal + 2.0)
    return _blend(weight, ir, vis)


def _blend(weight: np.ndarray, ir: np.ndarray, vis: np.ndarray) -> np.ndarray:
    """Return weight * ir + (1 - weight) * vis: three passes, no (1 - weight) temporary."""
    out = ir - vis
    out *= weight
    out += vis
    return out
