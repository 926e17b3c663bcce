"""Training losses for the streaming fusion network ([0, 1] luminance tensors, (B,1,H,W)).

* ``intensity``: L1 to a reference fusion of the *clean* sources: ``multiscale_target``,
  the torch form of the multi-scale fuser (per-pixel strongest detail of either modality,
  saliency-weighted base so warm targets stand out), or the element-wise ``max``.  The
  network must restore the degraded inputs *and* fuse them the way the reference fuses
  clean ones.
* ``gradient``: L1 of Sobel magnitudes to the max of the clean sources' magnitudes (keeps
  the sharpest detail of either modality: the Qabf/VIF side).
* ``ssim``: 1 - mean SSIM to each clean source.
* ``restoration``: Charbonnier distance of the restored IR / visible Y to the clean frames.
* ``distillation``: 1 - cosine similarity between student projections and teacher features.
* ``temporal``: with ``flow`` (current -> previous, full-res pixels) and a validity mask,
  the fused frame's change after warping must not exceed the clean sources' change
  (``excess``), and must vanish where the sources do not change (``flicker``).
* ``flow``: L1 between the memory's learned alignment flow (1/4 res) and the reference flow.
* ``colour``: Charbonnier distance, in value and edge strength, of the restored Cr/Cb
  (``ChromaRestorer``: the fused frame's colour) to the clean visible frame's Cr/Cb.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from thermal_visible_fusion.model import multiscale_fuse as multiscale_target
from thermal_visible_fusion.model import warp

_SOBEL_X = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]]) / 4


def rgb_to_y(rgb: torch.Tensor) -> torch.Tensor:
    """(N,3,H,W) RGB -> (N,1,H,W) BT.601 luma (what cv2's YCrCb conversion gives)."""
    r, g, b = rgb[:, 0:1], rgb[:, 1:2], rgb[:, 2:3]
    return 0.299 * r + 0.587 * g + 0.114 * b


def rgb_to_crcb(rgb: torch.Tensor) -> torch.Tensor:
    """(N,3,H,W) RGB -> (N,2,H,W) Cr, Cb in [0, 1], as cv2's 8-bit YCrCb conversion."""
    y = rgb_to_y(rgb)
    mid = 128 / 255  # cv2's chroma offset for 8-bit images
    return torch.cat([(rgb[:, 0:1] - y) * 0.713 + mid, (rgb[:, 2:3] - y) * 0.564 + mid], 1)


def sobel_magnitude(x: torch.Tensor) -> torch.Tensor:
    kx = _SOBEL_X.to(x).view(1, 1, 3, 3)
    xp = F.pad(x, (1, 1, 1, 1), mode="replicate")
    return F.conv2d(xp, kx).abs() + F.conv2d(xp, kx.transpose(2, 3)).abs()


def ssim(x: torch.Tensor, y: torch.Tensor, window: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Mean SSIM of (N,1,H,W) images in [0, 1] with a Gaussian window (valid region)."""
    coords = torch.arange(window, dtype=x.dtype, device=x.device) - window // 2
    g = torch.exp(-coords ** 2 / (2 * sigma ** 2))
    g = (g / g.sum())
    gx, gy = g.view(1, 1, 1, -1), g.view(1, 1, -1, 1)

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.conv2d(t, gx), gy)

    c1, c2 = 0.01 ** 2, 0.03 ** 2
    mx, my = blur(x), blur(y)
    vx, vy = blur(x * x) - mx * mx, blur(y * y) - my * my
    cov = blur(x * y) - mx * my
    num = (2 * mx * my + c1) * (2 * cov + c2)
    den = (mx * mx + my * my + c1) * (vx + vy + c2)
    return (num / den).mean()


def charbonnier(x: torch.Tensor, y: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    return torch.sqrt((x - y) ** 2 + eps * eps).mean()


FUSION_TARGETS = ("multiscale", "max")


def fusion_losses(fused: torch.Tensor, ir: torch.Tensor, vis: torch.Tensor,
                  target: str = "multiscale") -> dict[str, torch.Tensor]:
    """Intensity, gradient and SSIM terms of a fused frame against the clean sources.

    ``target``: the reference fusion of the intensity term, "multiscale" or "max"."""
    return {
        "intensity": F.l1_loss(fused, fusion_reference(ir, vis, target)),
        "gradient": F.l1_loss(sobel_magnitude(fused),
                              torch.maximum(sobel_magnitude(ir), sobel_magnitude(vis))),
        "ssim": 1 - 0.5 * (ssim(fused, ir) + ssim(fused, vis)),
    }


def fusion_reference(ir: torch.Tensor, vis: torch.Tensor, target: str = "multiscale"
                     ) -> torch.Tensor:
    """The frame the intensity term pulls towards: a fusion of the clean sources."""
    if target == "multiscale":
        return multiscale_target(ir, vis)
    if target == "max":
        return torch.maximum(ir, vis)
    raise ValueError(f"unknown fusion target {target!r} (multiscale, max)")


def clip_luma(rgb: torch.Tensor) -> torch.Tensor:
    """(B,T,3,H,W) RGB clips -> (B,T,1,H,W) luma."""
    b, t = rgb.shape[:2]
    return rgb_to_y(rgb.flatten(0, 1)).unflatten(0, (b, t))


def restoration_loss(restored_ir: torch.Tensor, restored_vis: torch.Tensor, ir: torch.Tensor,
                     vis: torch.Tensor) -> torch.Tensor:
    """Fidelity of each restored frame to its clean frame, in value and in edge strength
    (the edge term keeps deblurring from settling for a smooth average)."""
    return sum(charbonnier(r, c) + charbonnier(sobel_magnitude(r), sobel_magnitude(c))
               for r, c in ((restored_ir, ir), (restored_vis, vis)))


def colour_loss(restored_crcb: torch.Tensor, target_rgb: torch.Tensor) -> torch.Tensor:
    """Fidelity of the restored chroma (B,2,H,W) to the clean RGB frame's chroma."""
    target = rgb_to_crcb(target_rgb)
    planes = zip(restored_crcb.split(1, 1), target.split(1, 1))
    return charbonnier(restored_crcb, target) + sum(
        charbonnier(sobel_magnitude(r), sobel_magnitude(c)) for r, c in planes)


def distillation_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """1 - cosine similarity over channels; the student is resized to the teacher's grid."""
    if student.shape[-2:] != teacher.shape[-2:]:
        student = F.interpolate(student, size=teacher.shape[-2:], mode="bilinear",
                                align_corners=False)
    return 1 - F.cosine_similarity(student, teacher.to(student.dtype), dim=1).mean()


def temporal_loss(fused: torch.Tensor, fused_prev: torch.Tensor, ir: torch.Tensor,
                  ir_prev: torch.Tensor, vis: torch.Tensor, vis_prev: torch.Tensor,
                  flow: torch.Tensor, valid: torch.Tensor, tau: float = 0.05
                  ) -> dict[str, torch.Tensor]:
    """Flow-warped temporal consistency of consecutive fused frames.

    ``flow`` (N,2,H,W) maps current pixels to the previous frame; ``valid`` (N,1,H,W) is 1
    where it is trustworthy.  Sources are the clean frames.
    """
    d_fused = fused - warp(fused_prev, flow)
    d_ir = (ir - warp(ir_prev, flow)).abs()
    d_vis = (vis - warp(vis_prev, flow)).abs()
    source_change = torch.maximum(d_ir, d_vis)
    static = torch.exp(-source_change / tau)
    norm = valid.sum().clamp_min(1.0)
    return {
        "excess": (valid * F.relu(d_fused.abs() - source_change)).sum() / norm,
        "flicker": (valid * static * d_fused.abs()).sum() / norm,
    }


def flow_loss(pred_quarter: torch.Tensor, flow: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """L1 between the model's 1/4-res flow (1/4-res pixels) and a full-res reference flow."""
    h, w = pred_quarter.shape[-2:]
    ref = F.adaptive_avg_pool2d(flow, (h, w)) * torch.tensor(
        [w / flow.shape[-1], h / flow.shape[-2]], dtype=flow.dtype, device=flow.device
    ).view(1, 2, 1, 1)
    mask = (F.adaptive_avg_pool2d(valid, (h, w)) > 0.99).to(flow.dtype)
    return (mask * (pred_quarter - ref).abs()).sum() / (2 * mask.sum().clamp_min(1.0))
