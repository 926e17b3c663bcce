"""Output steadiness calibration: the ``ModelConfig.output_pull`` that steadies the fused
video by a set share and no more.

The output filter pulls each fused frame towards the aligned previous one by a learned
per-pixel gain.  On the training scenes that pull is free; on scenes the network never
saw it also averages away edge strength (the fusion picks each pixel's stronger detail,
and the time average of a choice that varies with the noise is softer than either
choice).  So after training, the gain is scaled by the smallest ``output_pull`` on a grid
at which the fused frames' flow-warped change on degraded *training* clips is at most
``1 - reduction`` times that of the same network without memory.  No evaluation clip has
a say in it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import torch

from thermal_visible_fusion.model import StreamingFusionNet
from thermal_visible_fusion.training import losses

GRID_STEPS = 20  # output_pull is chosen from 0, 1/20, ..., 1
KEYS = ("ir_degraded", "vis_degraded", "flow", "valid")  # what the measurement reads


@dataclass(frozen=True)
class Steadiness:
    pull: float            # the output_pull to store in ModelConfig.output_pull
    ratio: float           # its flow-warped change / the change without memory
    full_ratio: float      # the same ratio at the trained strength (pull 1)
    frames: int
    reached: bool          # whether the pull steadies the frames by the asked share


def warped_change(fused: list[torch.Tensor], flow: torch.Tensor, valid: torch.Tensor
                  ) -> tuple[float, float]:
    """Sum over valid pixels of |F_t - F_{t-1} warped by the reference flow|, and the pixel
    count; ``fused`` is a clip's frames (B,1,H,W) each, ``flow`` (B,T,2,H,W)."""
    total, count = 0.0, 0.0
    for t in range(1, len(fused)):
        mask = valid[:, t]
        previous = losses.warp(fused[t - 1].clamp(0, 1), flow[:, t])
        total += float(((fused[t].clamp(0, 1) - previous).abs() * mask).sum())
        count += float(mask.sum())
    return total, count


@torch.no_grad()
def _change(model: StreamingFusionNet, batches: list[dict[str, torch.Tensor]], memory: bool
            ) -> float:
    total, count = 0.0, 0.0
    device = next(model.parameters()).device
    for batch in batches:
        batch = {k: batch[k].to(device) for k in KEYS}
        ir_d, vis_d = batch["ir_degraded"], losses.clip_luma(batch["vis_degraded"])
        state, frames = None, []
        for t in range(ir_d.shape[1]):
            out, new_state = model(ir_d[:, t], vis_d[:, t], state, restored=False)
            state = new_state if memory else None
            frames.append(out.fused.float())
        s, n = warped_change(frames, batch["flow"], batch["valid"])
        total, count = total + s, count + n
    return total / max(count, 1.0)


def calibrate_output_pull(model: StreamingFusionNet, batches: Iterable[dict[str, torch.Tensor]],
                          reduction: float) -> Steadiness:
    """Run ``model`` on training batches (``training.data`` layout, clips long enough for
    the memory to settle; kept where they are and moved to the model's device one at a
    time) and measure the pull.  The frames are measured without the unsharp mask (the
    memory keeps the unmasked frame); the model's ``detail_gain``, ``output_pull`` and
    train/eval mode are left as they were: the caller stores the result.  A target the
    full pull misses keeps the full pull (``reached`` False)."""
    if not 0.0 < reduction < 1.0:
        raise ValueError(f"reduction must be in (0, 1), got {reduction}")
    batches = [{k: b[k] for k in KEYS} for b in batches]
    if not batches:
        raise ValueError("calibration needs at least one batch")
    config = model.config
    was_training, saved = model.training, (config.detail_gain, config.output_pull)
    model.eval()
    config.detail_gain = 0.0
    try:
        baseline = max(_change(model, batches, memory=False), 1e-12)

        def ratio(pull: float) -> float:
            config.output_pull = pull
            return _change(model, batches, memory=True) / baseline

        target = 1.0 - reduction
        full_ratio = ratio(1.0)
        pull, found = 1.0, full_ratio
        if full_ratio <= target:
            for step in range(GRID_STEPS):  # the weakest pull that is steady enough
                candidate = step / GRID_STEPS
                candidate_ratio = ratio(candidate)
                if candidate_ratio <= target:
                    pull, found = candidate, candidate_ratio
                    break
    finally:
        config.detail_gain, config.output_pull = saved
        model.train(was_training)
    frames = sum(b["ir_degraded"].shape[0] * b["ir_degraded"].shape[1] for b in batches)
    return Steadiness(pull, found, full_ratio, frames, found <= target)
