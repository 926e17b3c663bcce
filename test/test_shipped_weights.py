"""The shipped weights do their job on a scene they never saw: the synthetic street scene,
degraded with the training protocol (IR noise and stripes, visible blur).  Untrained or
broken weights fail these tests."""

import numpy as np
import pytest
import torch

from thermal_visible_fusion import fusers
from thermal_visible_fusion.fusers.classic import split_luma
from thermal_visible_fusion.metrics.image import ssim
from thermal_visible_fusion.synthetic import SyntheticScene

FRAMES = 8


@pytest.fixture(scope="module")
def clip():
    """(clean thermal, clean rgb, degraded thermal, degraded rgb) per frame, 320x240."""
    from thermal_visible_fusion.training.degrade import DegradeConfig, degrade_clip

    scene = SyntheticScene(320, 240, seed=3)
    clean = [scene.frame(i) for i in range(FRAMES)]
    ir = torch.stack([torch.from_numpy(t).float()[None] / 255 for t, _ in clean])
    vis = torch.stack([torch.from_numpy(c).permute(2, 0, 1).float() / 255 for _, c in clean])
    protocol = DegradeConfig(p_clean=0.0, p_low_light=0.0, p_haze=0.0)
    ir_d, vis_d, _ = degrade_clip(ir, vis, protocol, torch.Generator().manual_seed(0))

    def u8(x):
        return (x.clamp(0, 1) * 255).round().byte().numpy()
    return [(t, c, u8(ir_d[i, 0]), u8(vis_d[i].permute(1, 2, 0)))
            for i, (t, c) in enumerate(clean)]


@pytest.fixture(scope="module")
def shipped():
    path = fusers.default_weights()
    if path is None:
        pytest.skip("no weights shipped")
    return path


def mean_ssim(fuser, clip) -> float:
    return float(np.mean([ssim(fuser.fuse(ir_d, rgb_d), ir, rgb) for ir, rgb, ir_d, rgb_d in clip]))


def test_shipped_network_fuses_degraded_input_closer_to_the_clean_frames(shipped, clip):
    learned, warning = fusers.create_fuser("learned", weights=str(shipped), device="cpu")
    assert warning is None
    best_classic = max(mean_ssim(fusers.create_fuser(name)[0], clip)
                       for name in ("average", "max", "multiscale"))
    assert mean_ssim(learned, clip) > best_classic + 0.05  # fresh weights are the average


def test_shipped_network_restores_the_thermal_frame(shipped, clip):
    from thermal_visible_fusion.fusers.learned import load_model

    model = load_model(shipped)
    state, gains = None, []
    for ir, _, ir_d, rgb_d in clip:
        vis_y = torch.from_numpy(split_luma(rgb_d)[0]).float()
        with torch.no_grad():
            out, state = model(torch.from_numpy(ir_d).float()[None, None] / 255,
                               vis_y[None, None] / 255, state)
        restored = out.restored_ir[0, 0].clamp(0, 1).numpy() * 255
        error_in = np.abs(ir_d.astype(np.float32) - ir).mean()
        gains.append(error_in / np.abs(restored - ir).mean())
    assert np.median(gains) > 1.3  # mean absolute error to the clean frame drops by > 1.3x
