"""Output sharpness calibration: the ``ModelConfig.detail_gain`` that gives the fused
frames their training target's edge strength.

A network trained with L1 towards a target it cannot fully recover from degraded input
learns a soft estimate (what it is unsure of, it blurs), and edge-strength metrics such
as Qabf count every softened edge.  Training a sharpening would not help (the same loss
would undo it), so the gain of a fixed unsharp mask (``model.output_detail``) is measured
after training instead: on degraded *training* clips, the gain g at which the mean Sobel
magnitude of ``fused + g * output_detail(fused)`` equals that of the loss's target (the
reference fusion of the clean frames).  No evaluation clip has a say in it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import torch

from thermal_visible_fusion.model import StreamingFusionNet, output_detail
from thermal_visible_fusion.training import losses

MAX_GAIN = 4.0  # a softer output than this restores is left partly soft


@dataclass(frozen=True)
class Calibration:
    gain: float          # the detail gain to store in ModelConfig.detail_gain
    edge_ratio: float    # the unmasked fused frames' mean Sobel magnitude / the target's
    frames: int


@torch.no_grad()
def calibrate_detail_gain(model: StreamingFusionNet, batches: Iterable[dict[str, torch.Tensor]],
                          fusion_target: str = "multiscale") -> Calibration:
    """Run ``model`` (memory on, from an empty memory per clip) on training batches
    (``training.data`` layout: (B,T,C,H,W), clean and degraded) and measure the gain.

    The model's own ``detail_gain`` is ignored while it runs (the unmasked frames are
    measured) and left as it was: the caller stores the result."""
    fused_frames, details, target_energy = [], [], 0.0
    was_training, saved_gain = model.training, model.config.detail_gain
    model.eval()
    model.config.detail_gain = 0.0
    try:
        for batch in batches:
            ir_d, vis_d = batch["ir_degraded"], losses.clip_luma(batch["vis_degraded"])
            ir_c, vis_c = batch["ir"], losses.clip_luma(batch["vis"])
            state = None
            for t in range(ir_d.shape[1]):
                out, state = model(ir_d[:, t], vis_d[:, t], state, restored=False)
                fused_frames.append(out.fused.float())
                details.append(output_detail(out.fused).float())
                target = losses.fusion_reference(ir_c[:, t], vis_c[:, t], fusion_target)
                target_energy += float(losses.sobel_magnitude(target.clamp(0, 1)).sum())
    finally:
        model.config.detail_gain = saved_gain
        model.train(was_training)
    if not fused_frames:
        raise ValueError("calibration needs at least one batch")

    def energy(gain: float) -> float:  # what the fuser shows: clamped to [0, 1]
        return sum(float(losses.sobel_magnitude((f + gain * d).clamp(0, 1)).sum())
                   for f, d in zip(fused_frames, details))

    ratio = energy(0.0) / max(target_energy, 1e-12)
    if ratio >= 1.0:
        gain = 0.0  # never blur: a sharper output than the target keeps gain 0
    elif energy(MAX_GAIN) <= target_energy:
        gain = MAX_GAIN
    else:  # the energy grows with the gain: bisection
        gain, high = 0.0, MAX_GAIN
        for _ in range(20):
            mid = 0.5 * (gain + high)
            if energy(mid) < target_energy:
                gain = mid
            else:
                high = mid
    return Calibration(round(gain, 4), ratio, sum(f.shape[0] for f in fused_frames))
