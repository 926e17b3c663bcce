"""
Seeded, streaming degradation of long thermal/visible videos (numpy/OpenCV, no torch).

The evaluation protocol of ``tvf benchmark-quality`` on videos; it follows the M3SVD
degraded clips (``m3svd/clips/*/{ir,vis}_degraded``):

* **IR**: Gaussian noise drawn anew for every frame (sigma fixed per video, drawn
  from ``ir_noise`` = 9..14 grey levels of 255) plus column stripes fixed for the
  whole video (one offset per column, N(0, s) with s drawn per video from
  ``ir_stripe`` = 5..15 of 255).
* **Visible**: a Gaussian blur fixed per video (sigma drawn from ``vis_blur`` =
  0.5..3.5 px, replicated borders).
* Optional, each fixed per video: **haze** (``haze=True``; applied before the blur:
  ``x * t + A * (1 - t)`` with a transmission ``t`` falling linearly from the top
  row to the bottom one, both ends drawn from ``haze_transmission``, airlight
  ``A`` from ``haze_airlight``) and **low light** (``low_light=True``; after the
  blur: ``gain * x ** gamma`` on the 0..1 scale plus per-frame Gaussian sensor
  noise, gain, gamma and the noise sigma drawn from their ranges).
* Every result is rounded and clipped to the input's integer type (uint8; uint16
  thermal keeps 16 bits, the sigmas scaled to its range).

Seeding: a video's generator is seeded with ``(seed, crc32(scene name))``
(:func:`scene_entropy`; never Python's salted ``hash()``), so a run is reproducible
and a video always gets the same degradation, whatever else the run contains.  The
per-video parameters are drawn first, in a fixed order and all of them whether
haze or low light are on or not (turning haze on keeps the noise and blur of a
video); the stripes come from a child generator when the width is first seen, and
each frame's noise from a generator seeded with the video's seed plus the frame
index, so frame ``i`` is degraded the same way whatever order frames come in.
"""

from __future__ import annotations

from dataclasses import dataclass
import zlib

import cv2
import numpy as np

__all__ = ["DegradationConfig", "VideoDegradation", "scene_entropy"]


@dataclass(frozen=True)
class DegradationConfig:
    """Ranges (low, high) of the per-video draws; intensities on the 0..1 scale."""

    ir_noise: tuple[float, float] = (9 / 255, 14 / 255)     # per-frame Gaussian sigma
    ir_stripe: tuple[float, float] = (5 / 255, 15 / 255)    # column-stripe sigma
    vis_blur: tuple[float, float] = (0.5, 3.5)              # Gaussian blur sigma, pixels
    haze: bool = False
    haze_transmission: tuple[float, float] = (0.45, 0.85)
    haze_airlight: tuple[float, float] = (0.7, 1.0)
    low_light: bool = False
    low_light_gain: tuple[float, float] = (0.08, 0.3)
    low_light_gamma: tuple[float, float] = (1.0, 1.8)
    low_light_noise: tuple[float, float] = (4 / 255, 12 / 255)


def scene_entropy(scene: str, seed: int) -> list[int]:
    """Seed material of one video: stable across runs, machines and Python versions."""
    return [int(seed), zlib.crc32(scene.encode("utf-8"))]


def _quantise(x: np.ndarray, dtype: np.dtype) -> np.ndarray:
    top = np.iinfo(dtype).max
    return np.clip(np.rint(x), 0, top).astype(dtype)


class VideoDegradation:
    """The degradation of one video; :meth:`apply` degrades its frames one by one."""

    def __init__(self, scene: str, seed: int = 0, config: DegradationConfig | None = None) -> None:
        self.scene = scene
        self.config = cfg = config or DegradationConfig()
        self._entropy = scene_entropy(scene, seed)
        rng = np.random.default_rng(self._entropy)

        def draw(lo_hi: tuple[float, float]) -> float:
            return float(rng.uniform(*lo_hi))

        # Fixed order, every draw made: enabling an option never shifts the others.
        self.ir_noise = draw(cfg.ir_noise)
        self.ir_stripe = draw(cfg.ir_stripe)
        self.vis_blur = draw(cfg.vis_blur)
        self.haze_top = draw(cfg.haze_transmission)
        self.haze_bottom = draw(cfg.haze_transmission)
        self.airlight = draw(cfg.haze_airlight)
        self.low_gain = draw(cfg.low_light_gain)
        self.low_gamma = draw(cfg.low_light_gamma)
        self.low_noise = draw(cfg.low_light_noise)
        self._stripe_rng = np.random.default_rng([*self._entropy, 1])
        self._stripes: np.ndarray | None = None  # unit-sigma column offsets, drawn once

    def parameters(self) -> dict[str, float]:
        """Return the per-video draws in force (for reports)."""
        out = {"ir_noise": self.ir_noise * 255, "ir_stripe": self.ir_stripe * 255,
               "vis_blur": self.vis_blur}
        if self.config.haze:
            out.update(haze_top=self.haze_top, haze_bottom=self.haze_bottom,
                       airlight=self.airlight)
        if self.config.low_light:
            out.update(low_gain=self.low_gain, low_gamma=self.low_gamma,
                       low_noise=self.low_noise * 255)
        return out

    def stripes(self, width: int) -> np.ndarray:
        """(width,) column offsets in units of the stripe sigma, fixed for the video."""
        if self._stripes is None or self._stripes.size < width:
            # Drawn once for the widest frame seen; a narrower frame uses its prefix.
            self._stripes = self._stripe_rng.standard_normal(width)
        return self._stripes[:width]

    def apply(self, ir: np.ndarray, bgr: np.ndarray, index: int) -> tuple[np.ndarray, np.ndarray]:
        """
        Degrade frame ``index``.

        (H, W) uint8/uint16 IR, (H, W, 3) uint8 BGR; the inputs are not modified.
        """
        frame_rng = np.random.default_rng([*self._entropy, 2, int(index)])
        return self._ir(ir, frame_rng), self._visible(bgr, frame_rng)

    def _ir(self, ir: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        scale = float(np.iinfo(ir.dtype).max)
        noise = rng.standard_normal(ir.shape, dtype=np.float32) * np.float32(self.ir_noise * scale)
        stripes = (self.stripes(ir.shape[1]) * (self.ir_stripe * scale)).astype(np.float32)
        return _quantise(ir.astype(np.float32) + noise + stripes, ir.dtype)

    def _visible(self, bgr: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        cfg = self.config
        x = bgr.astype(np.float32) / 255.0
        if cfg.haze:
            h = x.shape[0]
            trans = np.linspace(self.haze_top, self.haze_bottom, h,
                                dtype=np.float32)[:, None, None]
            x = x * trans + np.float32(self.airlight) * (1 - trans)
        x = cv2.GaussianBlur(x, (0, 0), self.vis_blur, borderType=cv2.BORDER_REPLICATE)
        if cfg.low_light:
            x = np.float32(self.low_gain) * np.clip(x, 0, 1) ** np.float32(self.low_gamma)
            x = x + rng.standard_normal(x.shape, dtype=np.float32) * np.float32(self.low_noise)
        return _quantise(x * 255.0, np.dtype(np.uint8))
