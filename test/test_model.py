"""StreamingFusionNet and LearnedFuser: shapes, memory semantics, weights files."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from thermal_visible_fusion.fusers.learned import (LearnedFuser, WeightsError, load_model,
                                                   load_weights, save_weights)
from thermal_visible_fusion.model import (ModelConfig, StreamingFusionNet, StreamingRunner,
                                          block_deblur_residuals, block_detail_bands,
                                          block_low_passes, log_energies,
                                          multiscale_band_fusion, multiscale_fuse,
                                          deblur_kernel, detail_bands, fuse_sequence,
                                          output_detail, warp, warp_blocks)
from thermal_visible_fusion.training.degrade import gaussian_blur

torch.set_num_threads(1)


def make_model(seed: int = 0, config: ModelConfig | None = None) -> StreamingFusionNet:
    """Random weights, with a head strong enough that the memory visibly matters."""
    torch.manual_seed(seed)
    model = StreamingFusionNet(config).eval()
    torch.nn.init.normal_(model.head.weight, std=0.3)
    torch.nn.init.normal_(model.align.out.pw.weight, std=0.05)
    return model


def frames(n: int, h: int, w: int, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [(torch.rand(1, 1, h, w, generator=g), torch.rand(1, 1, h, w, generator=g))
            for _ in range(n)]


@pytest.mark.parametrize("size", [(5, 7), (37, 51), (48, 64), (120, 90)])
def test_shapes_any_size(size):
    model = make_model()
    h, w = size
    (ir, vis), = frames(1, h, w)
    with torch.no_grad():
        out, state = model(ir, vis)
        out2, state2 = model(ir, vis, state)
    for t in (out.fused, out.restored_ir, out.restored_vis, out2.fused):
        assert t.shape == (1, 1, h, w)
    hp, wp = -(-h // 8) * 8, -(-w // 8) * 8
    assert state.h.shape == (1, model.config.channels, hp // 4, wp // 4)
    assert out2.flow.shape == (1, 2, hp // 4, wp // 4)
    assert out.semantic.shape[-2:] == (hp // 8, wp // 8)
    assert torch.isfinite(out2.fused).all()


def test_batch_and_restored_flag():
    model = make_model()
    ir, vis = torch.rand(3, 1, 24, 40), torch.rand(3, 1, 24, 40)
    with torch.no_grad():
        out, _ = model(ir, vis, restored=False)
        full, _ = model(ir, vis)
    assert out.restored_ir is None and out.restored_vis is None
    assert torch.equal(out.fused, full.fused)
    with pytest.raises(ValueError):
        model(ir, vis[:, :, :20])


def test_initial_output_is_the_multiscale_rule():
    (ir, vis), = frames(1, 32, 32)
    with torch.no_grad():  # fresh init: the head starts near the rule, without corrections
        out, _ = StreamingFusionNet().eval()(ir, vis)
        legacy, _ = StreamingFusionNet(ModelConfig(multiscale_fusion=False)).eval()(ir, vis)
    u_ir, u_vis = F.pixel_unshuffle(ir, 4), F.pixel_unshuffle(vis, 4)
    zero = [torch.zeros_like(u_ir)] * 3
    rule = F.pixel_shuffle(multiscale_band_fusion(u_ir, u_vis, zero, zero, 2), 4)
    assert torch.allclose(out.fused, rule, atol=0.02)
    assert torch.allclose(legacy.fused, 0.5 * (ir + vis), atol=0.02)  # weights before it


def test_multiscale_band_fusion_is_the_multiscale_fuser():
    """The unshuffled-space rule matches the full-res multi-scale fusion (the training
    target's fusion of clean frames), keeps a frame fused with itself, and takes each
    detail from the modality that has it."""
    from thermal_visible_fusion.synthetic import SyntheticScene
    thermal, rgb = SyntheticScene(160, 120, seed=1).frame(0)
    ir = torch.from_numpy(thermal).float()[None, None] / 255
    vis = torch.from_numpy(rgb.mean(2)).float()[None, None] / 255
    zero = [torch.zeros(1, 16, 30, 40)] * 3

    def rule(a, b):
        out = multiscale_band_fusion(F.pixel_unshuffle(a, 4), F.pixel_unshuffle(b, 4),
                                     zero, zero, 2)
        return F.pixel_shuffle(out, 4)
    reference = multiscale_fuse(ir, vis)
    average_error = (0.5 * (ir + vis) - reference).abs().mean()
    assert (rule(ir, vis) - reference).abs().mean() < 0.2 * average_error
    assert torch.allclose(rule(ir, ir), ir, atol=1e-5)
    edge = torch.zeros(1, 1, 120, 160)
    edge[..., 80:] = 1.0
    fused = rule(edge, torch.full_like(edge, 0.5))  # the flat frame adds no detail
    assert float(fused[0, 0, 60, 82] - fused[0, 0, 60, 77]) > 0.8  # the full step survives


def test_memory_changes_output_and_none_is_memory_off():
    model = make_model()
    (ir0, vis0), (ir1, vis1) = frames(2, 40, 56)
    with torch.no_grad():
        _, state = model(ir0, vis0)
        with_memory, _ = model(ir1, vis1, state)
        no_memory, _ = model(ir1, vis1, None)
        again, _ = model(ir1, vis1)
    assert (with_memory.fused - no_memory.fused).abs().max() > 1e-3
    assert (with_memory.restored_ir - no_memory.restored_ir).abs().max() > 1e-3
    assert torch.equal(no_memory.fused, again.fused)  # no hidden state inside the module
    # the memory-off path is a single-frame model: batch items do not interact
    both, _ = model(torch.cat([ir0, ir1]), torch.cat([vis0, vis1]))
    assert torch.allclose(both.fused[1:], no_memory.fused, atol=1e-5)


@pytest.mark.parametrize("size", [(4, 4), (36, 52), (480, 640)])
def test_block_low_passes_equal_the_full_resolution_blur(size):
    # the network blurs on the 4x4-unshuffled form; it must be the full-size blur exactly,
    # borders included (bilinear upsampling clamps there)
    x = torch.rand(2, 1, *size)
    fast = block_low_passes(torch.nn.functional.pixel_unshuffle(x, 4), 2)
    for s, low in zip((2, 4), fast):
        full = torch.nn.functional.interpolate(torch.nn.functional.avg_pool2d(x, s),
                                               scale_factor=s, mode="bilinear",
                                               align_corners=False)
        assert torch.allclose(torch.nn.functional.pixel_shuffle(low, 4), full, atol=1e-6)


def test_detail_bands_split_the_image_and_their_gains_sharpen():
    x = torch.rand(1, 1, 32, 48)
    bands = detail_bands(x, 2)
    low = torch.nn.functional.interpolate(torch.nn.functional.avg_pool2d(x, 4), scale_factor=4,
                                          mode="bilinear", align_corners=False)
    assert torch.allclose(bands[0] + bands[1] + low, x, atol=1e-6)  # they telescope
    assert all(float(b.abs().max()) < 1e-6 for b in detail_bands(torch.full_like(x, 0.4), 2))
    with pytest.raises(ValueError, match="detail_bands"):
        StreamingFusionNet(ModelConfig(detail_bands=3))
    # a positive gain on the finest visible band is an unsharp mask of the visible input
    model = StreamingFusionNet().eval()
    blurry = torch.nn.functional.avg_pool2d(torch.rand(1, 1, 64, 64), 3, 1, 1,
                                            count_include_pad=False)
    with torch.no_grad():
        plain = model(blurry, blurry)[0].restored_vis
        # head maps: 5, the fusion weights of both modalities, b, IR then visible band gains
        first = 5 + 2 * model.fusion_weights() + model.config.detail_bands
        vis_fine = slice(first * 16, (first + 1) * 16)
        model.head.bias[vis_fine] = 1.0
        sharpened = model(blurry, blurry)[0].restored_vis
    def edges(t):
        return float((t[..., 1:] - t[..., :-1]).abs().mean())
    assert edges(sharpened) > 1.3 * edges(plain)


def test_deblur_filters_invert_the_blur_they_are_made_for():
    # a textured image with detail at every scale, blurred as the training protocol does
    torch.manual_seed(0)
    sharp = sum(torch.nn.functional.interpolate(torch.rand(1, 1, 96 // s, 128 // s),
                                                size=(96, 128), mode="bilinear") / 4
                for s in (2, 4, 8, 16))
    u = torch.nn.functional.pixel_unshuffle
    residuals = block_deblur_residuals(u(sharp, 4), 3)
    # on the unshuffled grid it is the 9x9 full-resolution filter (away from the border)
    kernel = deblur_kernel(0.8).float()
    kernel[4, 4] -= 1
    full = torch.nn.functional.conv2d(sharp, kernel[None, None])
    assert torch.allclose(torch.nn.functional.pixel_shuffle(residuals[:, :16], 4)[..., 4:-4, 4:-4],
                          full, atol=1e-5)
    inner = (..., slice(8, -8), slice(8, -8))
    # each filter removes most of the error of its blur (less for stronger blur: more of
    # the detail is below the noise it would have to amplify)
    for k, (sigma, bound) in enumerate(((0.8, 0.3), (1.3, 0.7), (2.0, 0.9))):
        blurred = gaussian_blur(sharp, sigma)
        residual = block_deblur_residuals(u(blurred, 4), 3)[:, 16 * k:16 * (k + 1)]
        restored = blurred + torch.nn.functional.pixel_shuffle(residual, 4)
        before = float((blurred - sharp)[inner].abs().mean())
        after = float((restored - sharp)[inner].abs().mean())
        assert after < bound * before, (sigma, before, after)
    with pytest.raises(ValueError, match="deblur_filters"):
        StreamingFusionNet(ModelConfig(deblur_filters=4))


def test_state_size_mismatch_is_an_error():
    model = make_model()
    (ir, vis), = frames(1, 32, 32)
    (ir2, vis2), = frames(1, 48, 32)
    with torch.no_grad():
        _, state = model(ir, vis)
        with pytest.raises(ValueError, match="reset the memory"):
            model(ir2, vis2, state)


def test_gradients_reach_every_parameter():
    model = make_model().train()
    seq = frames(2, 32, 32)
    state, loss = None, 0.0
    for ir, vis in seq:
        out, state = model(ir, vis, state)
        loss = loss + out.fused.mean() + out.restored_ir.mean() + out.restored_vis.mean() \
            + out.visual.mean() + out.semantic.mean()
    ycrcb = torch.rand(1, 3, 32, 32)
    loss = loss + (model.restore_chroma(ycrcb[:, :1], ycrcb[:, 1:]) ** 2).mean()  # colour
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing


def test_fusion_loss_does_not_reach_the_restoration():
    """Restore, then fuse: the fused frame's gradient leaves the restoration residuals
    (the head's first two maps) alone, so one modality's edges cannot leak into the other's
    restored frame; the fusion weights do get it."""
    model = make_model().train()
    (ir, vis), = frames(1, 32, 32)
    out, _ = model(ir, vis)
    out.fused.mean().backward()
    grad = model.head.weight.grad.abs()
    assert float(grad[:32].sum()) == 0.0
    assert float(grad[64:].sum()) > 0.0
    legacy = StreamingFusionNet(ModelConfig(band_fusion=False)).train()
    legacy(ir, vis)[0].fused.mean().backward()
    assert float(legacy.head.weight.grad[:32].abs().sum()) > 0.0


@pytest.mark.parametrize("lowpass", [False, True])
def test_output_memory_pulls_the_fused_frame_towards_the_aligned_past(lowpass):
    """The fused frame's own temporal gain (the head's last map): fully open, a still scene
    repeats the previous fused frame (zero flow here), or with ``output_memory_lowpass``
    its 4x4 block means under the current frame's detail; closed, it is fused afresh."""
    seq = frames(2, 24, 32)
    fused = {}
    for bias in (20.0, -20.0):
        model = make_model(config=ModelConfig(output_memory_lowpass=lowpass))
        with torch.no_grad():
            model.head.weight[-16:] = 0.0
            model.head.bias[-16:] = bias
            model.align.out.pw.weight.zero_()  # flow 0: the past is where it was
            first, state = model(*seq[0])
            second, _ = model(*seq[1], state)
        fused[bias] = (first.fused, second.fused)
    assert torch.equal(fused[20.0][0], fused[-20.0][0])  # no past on the first frame
    assert not torch.allclose(fused[-20.0][1], fused[-20.0][0], atol=1e-2)
    opened, closed, past = fused[20.0][1], fused[-20.0][1], fused[20.0][0]

    def detail(x: torch.Tensor) -> torch.Tensor:
        return x - F.interpolate(F.avg_pool2d(x, 4), scale_factor=4.0)

    if lowpass:
        assert torch.allclose(F.avg_pool2d(opened, 4), F.avg_pool2d(past, 4), atol=1e-5)
        assert torch.allclose(detail(opened), detail(closed), atol=1e-5)
        assert not torch.allclose(detail(opened), detail(past), atol=1e-2)
    else:
        assert torch.allclose(opened, past, atol=1e-5)


def test_output_pull_scales_the_output_filters_gain():
    """``output_pull`` s scales the fused frame's temporal gain: with the gate fully open
    and zero flow, s = 0.25 gives a quarter of the way from the fresh fusion (s = 0) to the
    past (s = 1); out-of-range values are rejected where the config is made."""
    seq = frames(2, 24, 32)
    second = {}
    for pull in (0.0, 0.25, 1.0):
        model = make_model(config=ModelConfig(output_pull=pull))
        with torch.no_grad():
            model.head.weight[-16:] = 0.0
            model.head.bias[-16:] = 20.0
            model.align.out.pw.weight.zero_()
            _, state = model(*seq[0])
            second[pull] = model(*seq[1], state)[0].fused
    fresh, past = second[0.0], second[1.0]
    assert not torch.allclose(fresh, past, atol=1e-2)
    assert torch.allclose(second[0.25], fresh + 0.25 * (past - fresh), atol=1e-5)
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="output_pull"):
            ModelConfig(output_pull=bad)


def test_detail_gain_sharpens_what_is_shown_not_what_is_remembered():
    """``detail_gain`` g shows ``fused + g * (fused - L4 fused)`` on every frame, while the
    memory keeps the unmasked frame, so the mask never compounds over a stream."""
    seq = frames(3, 32, 48)
    shown, states = {}, {}
    for gain in (0.0, 0.7):
        model = make_model(config=ModelConfig(detail_gain=gain))
        state, outs = None, []
        with torch.no_grad():
            for ir, vis in seq:
                out, state = model(ir, vis, state)
                outs.append(out.fused)
        shown[gain], states[gain] = outs, state
    for plain, masked in zip(shown[0.0], shown[0.7]):
        low = F.interpolate(F.avg_pool2d(plain, 4), scale_factor=4.0, mode="bilinear",
                            align_corners=False)
        assert torch.allclose(masked, plain + 0.7 * (plain - low), atol=1e-5)
        assert torch.allclose(output_detail(plain), plain - low, atol=1e-6)
    assert all(torch.equal(a, b) for a, b in zip(states[0.0], states[0.7]))


def test_remembered_frames_move_by_exactly_the_flow():
    """A 1-px shift (a quarter of a 1/4-res pixel) moves remembered frames by 1 px: warping
    the unshuffled grid directly would smear each pixel with one 4 px away instead."""
    x = torch.rand(1, 1, 32, 48)
    flow = torch.zeros(1, 2, 8, 12)
    flow[:, 0] = 0.25  # current pixel (y, x) sees the previous frame at (y, x + 1)
    moved = F.pixel_shuffle(warp_blocks(F.pixel_unshuffle(x, 4), flow), 4)
    assert torch.allclose(moved[..., :-1], x[..., 1:], atol=1e-5)
    smeared = F.pixel_shuffle(warp(F.pixel_unshuffle(x, 4), flow, False), 4)
    assert (smeared[..., 4:-4] - x[..., 5:-3]).abs().mean() > 0.1


def test_global_context_sees_the_whole_image():
    """Image-wide means bias the head: a change at the far right of a wide frame, out of
    reach of every convolution, changes the output at its far left far more with the
    global context than through the reinforcement's channel attention alone (the
    multi-scale rule, whose base weighs each pixel against the image mean, is off here)."""
    (ir, vis), = frames(1, 32, 1024)
    vis2 = vis.clone()
    vis2[..., 768:] = gaussian_blur(vis2[..., 768:], 2.0)  # blur only the right quarter
    left = {}
    for context in (True, False):
        torch.manual_seed(0)
        model = StreamingFusionNet(ModelConfig(global_context=context,
                                               multiscale_fusion=False)).eval()
        torch.nn.init.normal_(model.head.weight, std=0.3)
        if context:
            torch.nn.init.normal_(model.context.weight, std=0.3)
        with torch.no_grad():
            a, b = model(ir, vis)[0].fused, model(ir, vis2)[0].fused
        left[context] = (a[..., :64] - b[..., :64]).abs().max().item()
    assert left[True] > 1e-2 > 10 * left[False]


def test_band_statistics_measure_blur_whatever_the_contrast():
    """The log band energies are a blur cue that does not depend on the scene's contrast:
    their differences are the same for a frame at half contrast and fall when it is
    blurred.  Zero at the start, they change nothing until training gives them weight,
    then they bias the head of every pixel alike."""
    (ir, vis), = frames(1, 64, 96)
    model = StreamingFusionNet().eval()

    def cues(v):
        u = F.pixel_unshuffle(v, 4)
        bands = block_detail_bands(u, 2)
        return log_energies([*bands, *block_deblur_residuals(u, 3).split(16, 1)])[0]

    sharp, faint, blurred = cues(vis), cues(0.5 * vis), cues(gaussian_blur(vis, 1.5))
    assert torch.allclose(sharp - sharp[0], faint - faint[0], atol=1e-4)
    assert float(blurred[0] - blurred[1]) < float(sharp[0] - sharp[1]) - 0.5
    assert model.band_statistic_count() == 2 * 2 + 3
    plain = StreamingFusionNet(ModelConfig(band_statistics=False)).eval()
    plain.load_state_dict(model.state_dict(), strict=False)
    with torch.no_grad():
        assert torch.equal(model(ir, vis)[0].fused, plain(ir, vis)[0].fused)
        torch.nn.init.normal_(model.statistics.weight, std=0.1)
        changed = model(ir, vis)[0].fused - plain(ir, vis)[0].fused
    half = changed.shape[-1] // 2
    assert changed[..., :half].abs().mean() > 1e-3 and changed[..., half:].abs().mean() > 1e-3


def test_streaming_runner_and_lookahead():
    model = make_model()
    seq = frames(5, 24, 32)
    with torch.no_grad():
        manual, state = [], None
        for ir, vis in seq:
            out, state = model(ir, vis, state)
            manual.append(out.fused)
    causal = fuse_sequence(model, *zip(*seq))
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(manual, causal))

    ahead = fuse_sequence(model, *zip(*seq), lookahead=2)
    assert len(ahead) == len(seq)
    assert torch.allclose(ahead[-1], manual[-1], atol=1e-6)  # no future for the last frame
    assert not torch.allclose(ahead[0], manual[0], atol=1e-4)  # the others use it

    runner = StreamingRunner(model, lookahead=2)
    pushed = [runner.push(ir, vis) for ir, vis in seq]
    assert torch.allclose(pushed[2], ahead[0]) and torch.allclose(pushed[4], ahead[2])
    assert len(runner.flush()) == 2

    short = fuse_sequence(model, *zip(*seq[:2]), lookahead=3)  # shorter than the window
    assert len(short) == 2 and torch.allclose(short[1], manual[1], atol=1e-6)

    no_mem = fuse_sequence(model, *zip(*seq), use_memory=False, lookahead=2)
    with torch.no_grad():
        single = [model(ir, vis)[0].fused for ir, vis in seq]
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(no_mem, single))


def test_param_count_and_weights_size(tmp_path):
    model = StreamingFusionNet()
    n = model.param_count()
    assert 10_000 < n < 500_000
    path = save_weights(model, tmp_path / "w.pt")
    assert path.stat().st_size < 3 * 1024 * 1024


# ----------------------------------------------------------------------------- weights files

@pytest.fixture
def weights(tmp_path):
    return save_weights(make_model(), tmp_path / "streaming_fusion.pt", {"steps": 0})


def test_weights_load_with_weights_only(weights):
    data = torch.load(weights, map_location="cpu", weights_only=True)
    assert data["config"] == ModelConfig().to_dict()
    config, state, meta = load_weights(weights)
    assert config == ModelConfig() and meta == {"steps": 0}
    model = load_model(weights)
    reference = make_model()
    for k, v in reference.state_dict().items():
        assert torch.equal(model.state_dict()[k], v)


def test_config_travels_with_the_weights(tmp_path):
    small = StreamingFusionNet(ModelConfig(channels=16, semantic_channels=16, corr_radius=2))
    path = save_weights(small, tmp_path / "small.pt")
    assert load_model(path).config.channels == 16
    # files from before detail bands existed have no such field: they load without bands
    old = StreamingFusionNet(ModelConfig(detail_bands=0, multiscale_fusion=False))
    data = torch.load(save_weights(old, tmp_path / "old.pt"), weights_only=True)
    del data["config"]["detail_bands"]
    torch.save(data, tmp_path / "old.pt")
    assert load_model(tmp_path / "old.pt").config.detail_bands == 0
    # files from before band fusion: bands on the inputs, one fusion weight per modality
    banded = StreamingFusionNet(ModelConfig(band_fusion=False))
    data = torch.load(save_weights(banded, tmp_path / "banded.pt"), weights_only=True)
    del data["config"]["band_fusion"]
    torch.save(data, tmp_path / "banded.pt")
    loaded = load_model(tmp_path / "banded.pt")
    assert loaded.config.detail_bands == 2 and not loaded.config.band_fusion
    # files from before the deblur filters: none
    plain = StreamingFusionNet(ModelConfig(deblur_filters=0))
    data = torch.load(save_weights(plain, tmp_path / "plain.pt"), weights_only=True)
    del data["config"]["deblur_filters"]
    torch.save(data, tmp_path / "plain.pt")
    assert load_model(tmp_path / "plain.pt").config.deblur_filters == 0
    # files from before the output memory, global context and full-res warping: none
    earlier = StreamingFusionNet(ModelConfig(output_memory=False, global_context=False,
                                             fullres_warp=False))
    data = torch.load(save_weights(earlier, tmp_path / "earlier.pt"), weights_only=True)
    for name in ("output_memory", "global_context", "fullres_warp"):
        del data["config"][name]
    torch.save(data, tmp_path / "earlier.pt")
    loaded = load_model(tmp_path / "earlier.pt").config
    assert not loaded.output_memory and not loaded.global_context and not loaded.fullres_warp
    # files from before the colour branch and the multi-scale rule: the RGB frame's chroma
    # as it comes, band fusion around the mean
    grey = StreamingFusionNet(ModelConfig(colour=False, multiscale_fusion=False))
    data = torch.load(save_weights(grey, tmp_path / "grey.pt"), weights_only=True)
    del data["config"]["colour"], data["config"]["multiscale_fusion"]
    torch.save(data, tmp_path / "grey.pt")
    loaded = load_model(tmp_path / "grey.pt")
    assert loaded.chroma is None and not loaded.config.multiscale_fusion
    # files from before the band statistics: no such bias
    blind = StreamingFusionNet(ModelConfig(band_statistics=False))
    data = torch.load(save_weights(blind, tmp_path / "blind.pt"), weights_only=True)
    del data["config"]["band_statistics"]
    torch.save(data, tmp_path / "blind.pt")
    assert load_model(tmp_path / "blind.pt").statistics is None


def test_missing_and_corrupt_weights_name_the_file(tmp_path, weights):
    missing = tmp_path / "nope.pt"
    with pytest.raises(WeightsError) as err:
        LearnedFuser(missing, device="cpu")
    assert err.value.path == missing and "nope.pt" in str(err.value)

    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(WeightsError) as err:
        LearnedFuser(corrupt, device="cpu")
    assert "corrupt.pt" in str(err.value)

    other = tmp_path / "other.pt"
    torch.save({"weight": torch.zeros(3)}, other)
    with pytest.raises(WeightsError, match="other.pt"):
        load_weights(other)

    mismatched = tmp_path / "mismatched.pt"
    data = torch.load(weights, weights_only=True)
    data["config"]["channels"] = 16
    torch.save(data, mismatched)
    with pytest.raises(WeightsError, match="do not match"):
        load_model(mismatched)


# ----------------------------------------------------------------------------- LearnedFuser

def pairs(n: int, h: int = 36, w: int = 52, seed: int = 0):
    rng = np.random.default_rng(seed)
    return [(rng.integers(0, 256, (h, w), dtype=np.uint8),
             rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for _ in range(n)]


def test_learned_fuser_output_and_reset(weights):
    fuser = LearnedFuser(weights, device="cpu")
    assert fuser.name == "learned"
    (t0, c0), (t1, c1) = pairs(2)
    first = fuser.fuse(t0, c0)
    assert first.shape == c0.shape and first.dtype == np.uint8
    with_memory = fuser.fuse(t1, c1)
    fuser.reset()
    after_reset = fuser.fuse(t1, c1)
    fresh = LearnedFuser(weights, device="cpu").fuse(t1, c1)
    assert np.array_equal(after_reset, fresh)
    assert not np.array_equal(with_memory, after_reset)


def test_learned_fuser_without_memory(weights):
    fuser = LearnedFuser(weights, device="cpu", use_memory=False)
    (t0, c0), (t1, c1) = pairs(2)
    fuser.fuse(t0, c0)
    assert np.array_equal(fuser.fuse(t1, c1), LearnedFuser(weights, device="cpu").fuse(t1, c1))
    ahead = LearnedFuser(weights, device="cpu", lookahead=2, jit=False)
    ahead.use_memory = False
    assert ahead.lookahead == 0
    ahead.use_memory = True
    assert ahead.lookahead == 2


def test_learned_fuser_keeps_colour_and_handles_size_changes(weights):
    fuser = LearnedFuser(weights, device="cpu")
    thermal, _ = pairs(1)[0]
    grey = np.repeat(thermal[..., None], 3, axis=2)
    out = fuser.fuse(thermal, grey)  # grey RGB in: grey out (chroma comes from the RGB)
    assert np.abs(out.astype(int) - out[..., :1].astype(int)).max() <= 2
    t2, c2 = pairs(1, 20, 30)[0]
    assert fuser.fuse(t2, c2).shape == (20, 30, 3)  # new size: memory restarted, no error
    with pytest.raises(ValueError):
        fuser.fuse(t2, c2[:10])


def test_the_output_colour_comes_from_the_colour_branch(tmp_path):
    thermal, rgb = pairs(1, 40, 56)[0]
    ycrcb = cv2.cvtColor(rgb, cv2.COLOR_BGR2YCrCb)
    model = make_model()
    frame = torch.from_numpy(ycrcb).permute(2, 0, 1)[None].float() / 255
    assert torch.equal(model.restore_chroma(frame[:, :1], frame[:, 1:]), frame[:, 1:])  # idle
    with torch.no_grad():
        model.chroma.head.bias[:16] = 0.1  # every Cr phase: +0.1 (about 25 grey levels)
    shifted = LearnedFuser(save_weights(model, tmp_path / "red.pt"), device="cpu")
    cr = cv2.cvtColor(shifted.fuse(thermal, rgb), cv2.COLOR_BGR2YCrCb)[..., 1].astype(int)
    assert np.median(cr - ycrcb[..., 1]) > 15
    model.config.colour = False  # no branch: the RGB frame's own chroma
    plain = LearnedFuser(save_weights(StreamingFusionNet(model.config), tmp_path / "plain.pt"),
                         device="cpu")
    cr = cv2.cvtColor(plain.fuse(thermal, rgb), cv2.COLOR_BGR2YCrCb)[..., 1].astype(int)
    assert abs(np.median(cr - ycrcb[..., 1])) <= 1


def test_learned_fuser_lookahead_and_warmup(weights):
    fuser = LearnedFuser(weights, device="cpu", lookahead=1)
    fuser.warmup(24, 32)
    seq = pairs(3, 24, 32)
    outputs = [fuser.fuse(t, c) for t, c in seq] + fuser.flush()
    assert len(outputs) == 4 and all(o.shape == (24, 32, 3) for o in outputs)
    with pytest.raises(ValueError):
        LearnedFuser(weights, device="cpu", use_memory=False, lookahead=1)


def test_use_memory_can_be_switched_at_runtime(weights):
    fuser = LearnedFuser(weights, device="cpu")
    (t0, c0), (t1, c1) = pairs(2)
    fuser.fuse(t0, c0)
    fuser.use_memory = False  # the engine flips this attribute on parameter changes
    assert not fuser.use_memory
    fuser.fuse(t0, c0)
    assert np.array_equal(fuser.fuse(t1, c1), LearnedFuser(weights, device="cpu").fuse(t1, c1))


def test_traced_fuser_matches_eager(weights):
    traced = LearnedFuser(weights, device="cpu", jit=True)
    eager = LearnedFuser(weights, device="cpu", jit=False)
    for t, c in pairs(3, 40, 60):
        a, b = traced.fuse(t, c), eager.fuse(t, c)
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 1
