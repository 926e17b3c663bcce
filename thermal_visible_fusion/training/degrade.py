"""
On-the-fly degradations of clean clips (torch, [0, 1] floats).

They follow the protocol of the M3SVD degraded clips: infrared gets Gaussian noise drawn
anew every frame plus column-stripe noise fixed for the whole clip; visible gets a
Gaussian blur fixed for the clip.  Infrared also gets a tone change fixed for the clip
(contrast scaled about a pivot level, as a thermal camera's gain control does).  Visible
may also get low light (darkening, gamma, sensor noise) or haze (atmospheric
scattering), each fixed for the clip.  Results are
quantised to 8 bits like real frames.  The clean clips stay the training targets (under
low light, the clean clip at the same light level).

The ranges were checked against ``m3svd/clips/*/{ir,vis}_degraded`` (the evaluation
inputs), which differ from the nominal protocol: their IR column stripes are not zero-mean
(every column is brightened by ~N(31, 8..12)/255, i.e. a ~+0.12 DC offset), the per-pixel
IR noise is sigma ~11..18/255, and the blurred visible frames are ~4..9/255 brighter
(gain ~0.96..0.98).  Their IR tone is not the clean one plus an offset either: the mean
error falls from ~+40/255 in the dark to ~0 at white, a contrast gain of ~0.8 about white.
The defaults cover both the nominal protocol and those measurements.
"""

from __future__ import annotations

from dataclasses import dataclass
import math

import torch
import torch.nn.functional as F


@dataclass
class DegradeConfig:
    ir_noise: tuple[float, float] = (9 / 255, 20 / 255)    # per-frame Gaussian sigma
    ir_stripe: tuple[float, float] = (5 / 255, 15 / 255)   # column-stripe sigma (per clip)
    ir_stripe_mean: tuple[float, float] = (0.0, 40 / 255)  # column-stripe DC offset
    ir_gain: tuple[float, float] = (0.7, 1.05)   # IR contrast gain (per clip) ...
    ir_pivot: tuple[float, float] = (0.5, 1.0)   # ... about this level, which it keeps
    vis_blur: tuple[float, float] = (0.5, 3.5)             # Gaussian blur sigma, pixels
    vis_gain: tuple[float, float] = (0.94, 1.02)           # brightness change of the blurred
    vis_offset: tuple[float, float] = (-2 / 255, 10 / 255)  # visible frames
    p_clean: float = 0.05        # clip left clean (training raises it: TrainConfig.p_clean)
    p_low_light: float = 0.15
    # Low light stays tellable from a dim but clean frame (darker, and always noisy), and
    # its target is the dark clean frame (see degrade_vis): weights trained to brighten it
    # brightened the dark parts of real night scenes by up to ~100 grey levels.
    low_light_gain: tuple[float, float] = (0.08, 0.3)
    low_light_gamma: tuple[float, float] = (1.0, 1.8)
    low_light_noise: tuple[float, float] = (4 / 255, 12 / 255)
    p_haze: float = 0.15
    haze_transmission: tuple[float, float] = (0.45, 0.85)
    haze_airlight: tuple[float, float] = (0.7, 1.0)


def _uniform(lo_hi: tuple[float, float], gen: torch.Generator | None) -> float:
    lo, hi = lo_hi
    return lo + (hi - lo) * torch.rand((), generator=gen).item()


def _quantise(x: torch.Tensor) -> torch.Tensor:
    return torch.round(x.clamp(0, 1) * 255) / 255


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (N,C,H,W) with replicated borders."""
    if sigma <= 0:
        return x
    radius = max(1, math.ceil(3 * sigma))
    coords = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-coords ** 2 / (2 * sigma ** 2))
    k = k / k.sum()
    n, c, h, w = x.shape
    y = F.pad(x.reshape(n * c, 1, h, w), (radius,) * 4, mode="replicate")
    y = F.conv2d(F.conv2d(y, k.view(1, 1, 1, -1)), k.view(1, 1, -1, 1))
    return y.reshape(n, c, h, w)


def degrade_ir(ir: torch.Tensor, cfg: DegradeConfig, gen: torch.Generator | None = None
               ) -> torch.Tensor:
    """
    Degrade a (T,1,H,W) clean IR clip.

    (T,1,H,W) clean IR clip -> clip-fixed tone change, per-frame Gaussian noise and
    clip-fixed column stripes.
    """
    t, _, h, w = ir.shape
    pivot = _uniform(cfg.ir_pivot, gen)
    ir = pivot + _uniform(cfg.ir_gain, gen) * (ir - pivot)
    sigma = _uniform(cfg.ir_noise, gen)
    stripe_sigma = _uniform(cfg.ir_stripe, gen)
    stripes = torch.randn((1, 1, 1, w), generator=gen) * stripe_sigma
    stripes = stripes + _uniform(cfg.ir_stripe_mean, gen)
    noise = torch.randn(ir.shape, generator=gen) * sigma
    return _quantise(ir + noise.to(ir) + stripes.to(ir))


def degrade_vis(vis: torch.Tensor, cfg: DegradeConfig, gen: torch.Generator | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """
    (T,3,H,W) clean visible clip -> [haze] -> blur, gain/offset -> [low light], all fixed per clip.

    Returns (degraded, target): the target is the clean clip, except under low light,
    where it is the clean clip at the same light level (dark, sharp, noise-free).
    Light is part of the scene: a network taught to brighten dark frames brightens the
    dark parts of every real night scene, inventing what no camera saw; where the
    visible frame is dark, the thermal one should show the scene.
    """
    x, target = vis, vis
    if torch.rand((), generator=gen).item() < cfg.p_haze:
        t_top = _uniform(cfg.haze_transmission, gen)
        t_bottom = _uniform(cfg.haze_transmission, gen)
        h = x.shape[-2]
        trans = torch.linspace(t_top, t_bottom, h).view(1, 1, h, 1).to(x)  # depth-like gradient
        airlight = _uniform(cfg.haze_airlight, gen)
        x = x * trans + airlight * (1 - trans)
    x = gaussian_blur(x, _uniform(cfg.vis_blur, gen))
    x = x * _uniform(cfg.vis_gain, gen) + _uniform(cfg.vis_offset, gen)
    if torch.rand((), generator=gen).item() < cfg.p_low_light:
        gain, gamma = _uniform(cfg.low_light_gain, gen), _uniform(cfg.low_light_gamma, gen)
        sigma = _uniform(cfg.low_light_noise, gen)
        x = x.clamp(0, 1) ** gamma * gain
        x = x + torch.randn(x.shape, generator=gen).to(x) * sigma
        target = vis.clamp(0, 1) ** gamma * gain
    return _quantise(x), target


def degrade_clip(ir: torch.Tensor, vis: torch.Tensor, cfg: DegradeConfig,
                 gen: torch.Generator | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """
    Degrade one clip pair (T,1,H,W) IR and (T,3,H,W) visible; the inputs are untouched.

    Returns (degraded IR, degraded visible, visible target); see ``degrade_vis``.
    """
    if torch.rand((), generator=gen).item() < cfg.p_clean:
        return ir.clone(), vis.clone(), vis
    return (degrade_ir(ir, cfg, gen), *degrade_vis(vis, cfg, gen))
