"""
StreamingFusionNet and LearnedFuser.

Shapes, the restorations and their memory, the streaming runner, weights files.

The network restores, then fuses by the multi-scale rule, and each restoration is meant
to be the identity on clean input.  Tests that need a working network use a *fresh* one
(``make_model``), whose initialisation is that identity up to a small temporal gain, with
a few parameters set by hand where a test needs the memory to matter.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from thermal_visible_fusion.data.synthetic import SyntheticScene
from thermal_visible_fusion.fusers.classic import MultiScaleFuser
from thermal_visible_fusion.fusers.learned import LearnedFuser
from thermal_visible_fusion.learned.model import (_rate, alignment_key, block_flow, column_offsets,
                                                  deblur_kernel, ModelConfig, multiscale_fuse,
                                                  noise_level, shift, shift_pixels,
                                                  StreamingFusionNet)
from thermal_visible_fusion.learned.runtime import (_restore, FrozenStep, FULL, fuse_sequence,
                                                    Mode, StreamingRunner)
from thermal_visible_fusion.learned.weights import (load_model, load_weights, save_weights,
                                                    WEIGHTS_FORMAT, WeightsError)
from thermal_visible_fusion.training.degrade import gaussian_blur

torch.set_num_threads(1)


# ----------------------------------------------------------------------------- helpers

def make_model(config: ModelConfig | None = None, *, blur: int | None = 0,
               gain: float | None = None, seed: int = 0) -> StreamingFusionNet:
    """
    Make a fresh network in eval mode.

    ``blur=k`` forces the blur classifier to class k (0: "none", so the visible frame
    passes unchanged); None leaves it as initialised. ``gain`` sets the logit of the
    IR filter's temporal gain (the fresh value is -4, a gain of 0.018; 0 gives 0.5, so
    the memory visibly matters).
    """
    torch.manual_seed(seed)
    model = StreamingFusionNet(config).eval()
    with torch.no_grad():
        if blur is not None:
            last = model.blur_classifier[-1]
            last.weight.zero_()
            last.bias.zero_()
            last.bias[blur] = 30.0
        if gain is not None:
            model.denoiser[-1].bias[4:] = gain
    return model


def smooth(h: int, w: int, seed: int = 0, scales=(4, 8, 16, 32)) -> torch.Tensor:
    """(1,1,h,w) smooth random texture in [0, 1], detail at the given scales (px)."""
    g = torch.Generator().manual_seed(seed)
    x = sum(F.interpolate(torch.rand(1, 1, h // s + 2, w // s + 2, generator=g), size=(h, w),
                          mode="bicubic", align_corners=False) for s in scales) / len(scales)
    return x.clamp(0, 1)


def scene_image(h: int, w: int, seed: int = 0) -> torch.Tensor:
    """
    Return a clean camera's view, (1,1,h,w).

    Smooth shading and objects with soft edges (real frames' statistics: no column
    structure beyond what objects bring).
    """
    rng = np.random.default_rng(seed)
    image = smooth(h, w, seed, scales=(32, 64))[0, 0].numpy() * 0.6 + 0.2
    for _ in range(12):
        oh, ow = rng.integers(4, max(5, h // 3)), rng.integers(4, max(5, w // 4))
        y, x = rng.integers(0, h - oh + 1), rng.integers(0, w - ow + 1)
        image[y:y + oh, x:x + ow] = rng.uniform(0.05, 0.95)
    return torch.from_numpy(cv2.GaussianBlur(image.astype(np.float32), (0, 0), 0.8))[None, None]


def clean_stream(n: int, h: int, w: int, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Make (ir, vis) tensors of a clean camera panning over a scene by one pixel per frame."""
    ir, vis = scene_image(h, w + n, seed), scene_image(h, w + n, seed + 1)
    return [(ir[..., t:t + w].contiguous(), vis[..., t:t + w].contiguous()) for t in range(n)]


def random_frames(n: int, h: int, w: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return [(torch.rand(1, 1, h, w, generator=g), torch.rand(1, 1, h, w, generator=g))
            for _ in range(n)]


def luma_of(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(rgb, cv2.COLOR_BGR2YCrCb)[..., 0]


def u8(x: torch.Tensor) -> np.ndarray:
    return (x[0, 0].clamp(0, 1) * 255).round().byte().numpy()


def tensor(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(a).float()[None, None] / 255


def clean_bgr_stream(n: int, h: int = 240, w: int = 320) -> list[tuple[np.ndarray, np.ndarray]]:
    """
    Make (thermal uint8, BGR uint8) frames of a clean camera.

    A panning IR scene with a warm figure walking across it (no noise, no column
    pattern), and the synthetic street scene's RGB frames.
    """
    scene = SyntheticScene(w, h, seed=1)
    pairs = []
    for t, (ir, _) in enumerate(clean_stream(n, h, w, seed=4)):
        thermal = (ir[0, 0].numpy() * 160 + 30).astype(np.uint8)
        x = 20 + 3 * t
        thermal[h // 3:h // 3 + 30, x:x + 12] = 230
        pairs.append((thermal, scene.frame(t)[1]))
    return pairs


# ----------------------------------------------------------------------------- shapes

@pytest.mark.parametrize("size", [(1, 1), (2, 2), (3, 300), (37, 53), (480, 640)])
def test_shapes_any_size_with_and_without_memory(size):
    model = make_model(blur=None, gain=0.0)
    h, w = size
    (ir0, vis0), (ir1, vis1) = random_frames(2, h, w)
    with torch.no_grad():
        first, state0 = model(ir0, vis0)
        second, state = model(ir1, vis1, state0)
        bare, _ = model(ir1, vis1, state0, fuse=False)
    for out in (first, second):
        for t in (out.fused, out.restored_ir, out.restored_vis):
            assert t.shape == (1, 1, h, w)
            assert torch.isfinite(t).all()
        assert out.flow.shape == (1, 2, h, w)
    # the memory lives at the padded size: a multiple of 8, at least 16
    hp, wp = max(16, -(-h // 8) * 8), max(16, -(-w // 8) * 8)
    assert state.ir.shape == (1, 1, hp, wp) and state.stripes.shape == (1, 1, 1, wp)
    assert state.key.shape == (1, 2, hp // 2, wp // 2)
    assert state.blur.shape == (1, len(model.config.deblur_sigmas) + 1)
    assert state.count.tolist() == [[2.0]]
    # fuse=False skips only the torch fusion
    assert bare.fused is None
    assert torch.equal(bare.restored_ir, second.restored_ir)
    assert torch.equal(bare.restored_vis, second.restored_vis)


def test_batch_items_do_not_interact():
    """
    A batch is several independent streams.

    Each item's outputs and memory are what it gets on its own (every image-wide
    statistic is per item).
    """
    model = make_model(blur=None, gain=0.0)
    frames = [random_frames(2, 40, 56, seed=s) for s in range(3)]
    with torch.no_grad():
        alone = []
        for seq in frames:
            state = None
            for ir, vis in seq:
                out, state = model(ir, vis, state)
            alone.append((out, state))
        state = None
        for t in range(2):
            ir = torch.cat([seq[t][0] for seq in frames])
            vis = torch.cat([seq[t][1] for seq in frames])
            batched, state = model(ir, vis, state)
    for i, (out, single_state) in enumerate(alone):
        for a, b in zip(batched, out):
            assert torch.allclose(a[i:i + 1], b, atol=1e-5)
        for a, b in zip(state, single_state):
            assert torch.allclose(a[i:i + 1], b, atol=1e-5)


# ----------------------------------------------------------------------------- clean input

def test_multiscale_fuse_is_the_multiscale_fuser():
    """
    The training's fusion (torch) is the multi-scale fuser (OpenCV).

    The training's fusion (torch) is what ``--fuser multiscale`` and the learned fuser
    (OpenCV) make of the same frames, to a grey level.
    """
    for w, h in ((320, 240), (97, 83)):  # odd sizes too; >= 64 px keeps all 4 levels
        thermal, rgb = SyntheticScene(w, h, seed=2).frame(5)
        luma = luma_of(rgb)
        expected = MultiScaleFuser().fuse_luma(thermal, luma).astype(int)
        got = u8(multiscale_fuse(tensor(thermal), tensor(luma))).astype(int)
        diff = np.abs(got - expected)
        assert diff.mean() < 0.2 and diff.max() <= 3, (w, h, diff.mean(), diff.max())
    # and it is not the average (which a broken rule would give)
    average = (thermal.astype(int) + luma.astype(int)) // 2
    assert np.abs(average - expected).mean() > 5


def test_fresh_network_leaves_a_clean_camera_alone(tmp_path):
    """
    Restore-then-fuse is the identity on clean input.

    A fresh network whose blur estimate says "none" fuses a clean stream as the
    multi-scale fuser does.
    """
    weights = save_weights(make_model(), tmp_path / "w.pt")
    fuser = LearnedFuser(weights, device="cpu", jit=False)
    rule = MultiScaleFuser()
    for thermal, rgb in clean_bgr_stream(8):
        out, expected = fuser.fuse(thermal, rgb), rule.fuse(thermal, rgb)
        diff = np.abs(luma_of(out).astype(int) - luma_of(expected).astype(int))
        assert diff.mean() < 1.0, diff.mean()


def test_clean_frames_pass_the_stripe_gate_unchanged():
    """
    Clean frames pass the stripe gate unchanged.

    With the IR filter's learned part off (residual 0, gain 0), the destriping leaves
    a clean camera's frames exactly as they are, and faint column patterns (below
    ``stripe_floor``, the level of real scene content) too.
    """
    model = make_model(gain=-30.0)
    faint = 0.5 / 255 * torch.randn(1, 1, 1, 320, generator=torch.Generator().manual_seed(0))
    for pattern in (0.0, faint):
        state = None
        with torch.no_grad():
            for ir, vis in clean_stream(4, 240, 320):
                out, state = model(ir + pattern, vis, state)
                assert torch.allclose(out.restored_ir, ir + pattern, atol=1e-6)
                assert torch.equal(out.restored_vis, vis)  # blur class "none": untouched


# ----------------------------------------------------------------------------- IR stripes

def test_stripe_memory_learns_and_removes_fixed_column_stripes():
    h, w, n = 96, 128, 30
    g = torch.Generator().manual_seed(5)
    stripes = 8 / 255 * torch.randn(1, 1, 1, w, generator=g)
    stripes -= stripes.mean()
    model = make_model()
    state = None
    with torch.no_grad():
        for ir, vis in clean_stream(n, h, w, seed=7):
            noisy = ir + stripes + 3 / 255 * torch.randn(ir.shape, generator=g)
            out, state = model(noisy, vis, state)
    learned = state.stripes[..., :w]
    corr = torch.corrcoef(torch.stack([learned.flatten(), stripes.flatten()]))[0, 1]
    assert corr > 0.9

    def column_energy(x: torch.Tensor) -> float:  # of the error to the clean frame, grey levels
        columns = (x - ir).mean(-2)
        return 255 * float((columns - columns.mean()).std())

    before, after = column_energy(noisy), column_energy(out.restored_ir)
    assert before > 7 and after < 0.4 * before, (before, after)


def test_real_clean_cameras_pass_and_real_stripes_are_removed(shared_data):
    """
    Real clean cameras pass the stripe gate and real stripes are removed.

    The M3SVD evaluation clips: the stripe gate leaves every clean clip's IR frames
    exactly as they are, and removes the bulk of the degraded clips' column stripes
    (the fresh network: the memory does this, not training).
    """
    clips = sorted(p for p in (shared_data / "m3svd" / "clips").iterdir() if p.is_dir())
    assert clips
    model = make_model(gain=-30.0)
    for clip in clips:
        clean_state = degraded_state = None
        with torch.no_grad():
            for i in range(3):
                name = f"{i:04d}.png"
                ir = tensor(cv2.imread(str(clip / "ir" / name), cv2.IMREAD_GRAYSCALE))
                degraded = tensor(cv2.imread(str(clip / "ir_degraded" / name),
                                             cv2.IMREAD_GRAYSCALE))
                vis = tensor(luma_of(cv2.imread(str(clip / "vis" / name))))
                out, clean_state = model(ir, vis, clean_state, fuse=False)
                assert torch.allclose(out.restored_ir, ir, atol=1e-6), clip.name
                restored, degraded_state = model(degraded, vis, degraded_state, fuse=False)

        def column_energy(x: torch.Tensor) -> float:
            columns = (x - ir).mean(-2)
            return 255 * float((columns - columns.mean()).std())
        before, after = column_energy(degraded), column_energy(restored.restored_ir)
        assert before > 5 and after < 0.6 * before, (clip.name, before, after)


def test_noise_level_measures_gaussian_noise_and_ignores_stripes():
    image = smooth(240, 320, seed=3, scales=(16, 32, 64))
    g = torch.Generator().manual_seed(0)
    stripes = 8 / 255 * torch.randn(1, 1, 1, 320, generator=g)
    for sigma in (3 / 255, 6 / 255, 12 / 255):
        noisy = image + sigma * torch.randn(image.shape, generator=g)
        estimate = float(noise_level(noisy))
        assert estimate == pytest.approx(sigma, rel=0.15)
        assert float(noise_level(noisy + stripes)) == pytest.approx(estimate, rel=1e-3)
    assert noise_level(torch.rand(3, 1, 20, 30)).shape == (3, 1)


# ----------------------------------------------------------------------------- alignment

def _translated(image: str, dy: int, dx: int, h: int = 192, w: int = 256):
    """
    Make (previous, current) (ir, vis) pairs.

    The current frame is the previous one seen by a camera moved by (dy, dx) px, so
    current(p) = previous(p + (dy, dx)).  ``image``: "street" (the synthetic scene: flat
    sky and road, sharp edges), "texture" (detail everywhere) or "smooth" (slow shading
    only).
    """
    if image == "street":
        thermal, rgb = SyntheticScene(w + 96, h + 96, seed=4).frame(0)
        ir, vis = tensor(thermal), tensor(luma_of(rgb))
    else:
        scales = (4, 8, 16) if image == "texture" else (16, 32)
        ir, vis = smooth(h + 96, w + 96, 1, scales), smooth(h + 96, w + 96, 2, scales)

    def crop(x, oy, ox):
        return x[..., 48 + oy:48 + oy + h, 48 + ox:48 + ox + w]
    return (crop(ir, 0, 0), crop(vis, 0, 0)), (crop(ir, dy, dx), crop(vis, dy, dx))


@pytest.mark.parametrize("image", ["street", "texture", "smooth"])
def test_a_still_camera_does_not_move_its_memory(image):
    """
    Identical frames give zero flow, so the memory stays in place.

    Identical frames: zero flow everywhere, so the remembered frame stays in place
    (a wrong whole-pixel flow would blend content from up to 8 px away into a still
    scene).
    """
    (ir, vis), _ = _translated(image, 0, 0)
    key = alignment_key(ir, vis)
    flow = block_flow(key, key, ModelConfig().search)
    moved = float((flow.abs().sum(1) > 0).float().mean())
    assert moved == 0.0, f"{moved:.1%} of the pixels move, up to {float(flow.abs().max())} px"


@pytest.mark.parametrize("dy,dx", [(0, 8), (8, -16), (-16, 24), (-4, 4)])
def test_block_flow_and_shift_recover_a_translation(dy, dx):
    (ir0, vis0), (ir1, vis1) = _translated("texture", dy, dx)
    cells = block_flow(alignment_key(ir1, vis1), alignment_key(ir0, vis0), ModelConfig().search)
    assert cells.shape == (1, 2, 48, 64)  # one vector per 4x4-pixel cell
    assert torch.equal(cells, 4 * (cells / 4).round())  # whole cells
    inner = (..., slice(32, -32), slice(32, -32))
    assert float(((cells[:, :1] == dx) & (cells[:, 1:] == dy))[..., 8:-8, 8:-8].float()
                 .mean()) > 0.6
    # the memory moves each pixel by the cell flow interpolated to it, in whole pixels;
    # the moved previous frame lands on the current one exactly where the flow is right,
    # and most of the misalignment is gone overall
    moved = shift_pixels(ir0, cells)
    flow = F.interpolate(cells, size=ir0.shape[-2:], mode="bilinear").round()
    assert torch.equal(moved, shift(ir0, flow))
    right = (flow[:, :1] == dx) & (flow[:, 1:] == dy)
    moved, right = moved[inner], right[inner]
    assert torch.equal(moved[right], ir1[inner][right])
    error = float((moved - ir1[inner]).abs().mean())
    assert error < 0.25 * float((ir0 - ir1)[inner].abs().mean())


def test_shift_pixels_clamps_at_the_borders_and_leaves_no_seam_between_cells():
    x = torch.arange(64.0).view(1, 1, 8, 8)
    cells = torch.zeros(1, 2, 2, 2)
    cells[:, 0] = 400.0  # far to the right: every pixel takes the last column
    assert torch.equal(shift_pixels(x, cells), x[..., 7:].expand(-1, -1, -1, 8))
    # the left cells still, the right ones 4 px to the right: across their border the
    # move grows by at most 2 px a pixel (whole cells jumped by 4 at it)
    x = torch.arange(16.0).view(1, 1, 1, 16).expand(1, 1, 8, 16).contiguous()
    cells = torch.zeros(1, 2, 2, 4)
    cells[:, 0, :, 2:] = 4.0
    steps = shift_pixels(x, cells)[0, 0, 4].diff()  # 1 where a pixel moves as its neighbour
    assert float(steps.max()) <= 3 and torch.equal(shift_pixels(x, cells * 0), x)


def test_shift_by_whole_pixels_never_blurs():
    x = torch.rand(1, 1, 37, 53)
    y = x
    zero = torch.zeros(1, 2, 37, 53)
    for _ in range(100):
        y = shift(y, zero)
    assert torch.equal(y, x)
    flow = torch.zeros(1, 2, 37, 53)
    flow[:, 0], flow[:, 1] = 3, -2  # sample 3 px right, 2 px up
    assert torch.equal(shift(x, flow)[..., 2:, :-3], x[..., :-2, 3:])


# ----------------------------------------------------------------------------- deblur

def _separable(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    r = kernel.numel() // 2
    x = F.pad(x, (r, r, r, r), mode="replicate")
    return F.conv2d(F.conv2d(x, kernel.view(1, 1, 1, -1)), kernel.view(1, 1, -1, 1))


@pytest.mark.parametrize("sigma", [1.0, 1.75, 2.5, 3.5])
def test_deblur_kernel_inverts_its_gaussian_blur(sigma):
    sharp = smooth(96, 128, seed=5, scales=(2, 4, 8, 16))
    blurred = gaussian_blur(sharp, sigma)
    restored = _separable(blurred, deblur_kernel(sigma).float())
    inner = (..., slice(12, -12), slice(12, -12))
    before = float((blurred - sharp)[inner].abs().mean())
    after = float((restored - sharp)[inner].abs().mean())
    assert after < 0.9 * before, (before, after)
    flat = torch.full((1, 1, 24, 24), 0.3)
    assert torch.allclose(_separable(flat, deblur_kernel(sigma).float()), flat, atol=1e-5)


def test_deblur_applies_the_filter_of_the_blur_class():
    model = make_model()
    vis = torch.rand(2, 1, 37, 53)
    k = len(model.config.deblur_sigmas)
    none = F.one_hot(torch.tensor([0, 0]), k + 1).float()
    assert torch.equal(model.deblur(vis, none), vis)  # class "none": the identity, exactly
    for c, sigma in enumerate(model.config.deblur_sigmas, start=1):
        onehot = F.one_hot(torch.tensor([c, 0]), k + 1).float()
        out = model.deblur(vis, onehot)
        kernel = deblur_kernel(sigma, radius=model.config.deblur_radius).float()
        assert torch.allclose(out[:1], _separable(vis[:1], kernel), atol=1e-5)
        assert torch.equal(out[1:], vis[1:])  # each image gets its own filter


def test_blur_memory_picks_the_deblur_filter_of_a_blurred_camera():
    """
    Forced to a blur class, the network deblurs a blurred camera's frames.

    Forced to a blur class, the network restores a blurred camera's frames towards the
    sharp ones (the memory keeps that class).
    """
    sharp = smooth(96, 128, seed=6, scales=(2, 4, 8, 16))
    model = make_model(blur=1)  # sigma 1.0
    state = None
    with torch.no_grad():
        for _ in range(3):
            out, state = model(sharp, gaussian_blur(sharp, 1.0), state)
    inner = (..., slice(12, -12), slice(12, -12))
    assert float(state.blur[0, 1]) == pytest.approx(1.0)
    error_in = float((gaussian_blur(sharp, 1.0) - sharp)[inner].abs().mean())
    assert float((out.restored_vis - sharp)[inner].abs().mean()) < 0.5 * error_in


# ----------------------------------------------------------------------------- memories

def test_rate_is_a_running_mean_then_exponential():
    rate = _rate(torch.tensor([[1.0], [2.0], [4.0], [10.0], [300.0]]), 8)
    assert rate.flatten().tolist() == pytest.approx([1.0, 0.5, 0.25, 0.125, 0.125])


def test_stripe_and_blur_memories_are_running_means_of_the_frames():
    """
    The stripe and blur memories are running means of the frames.

    Over the first ``stripe_frames`` / ``blur_frames`` frames the memories are the plain
    means of the per-frame estimates, exponential after; ``count`` is the frames seen.
    """
    config = ModelConfig(stripe_frames=3, blur_frames=64, stripe_floor=100.0, stripe_full=101.0)
    model = make_model(config, blur=None)  # gate off: the estimates never change the frame
    frames = random_frames(6, 32, 48, seed=2)
    state, stripes, probs = None, None, []
    with torch.no_grad():
        for n, (ir, vis) in enumerate(frames, start=1):
            seen = column_offsets(ir)
            stripes = seen if stripes is None else stripes + max(1 / n, 1 / 3) * (seen - stripes)
            _, state = model(ir, vis, state)
            probs.append(model(ir, vis)[1].blur)  # one frame on its own: its estimate
    assert torch.allclose(state.stripes[..., :48], stripes, atol=1e-6)
    assert torch.allclose(state.blur, torch.cat(probs).mean(0, keepdim=True), atol=1e-6)
    assert not torch.allclose(probs[0], probs[1], atol=1e-4)  # the mean is not trivial
    assert state.count.tolist() == [[6.0]]


def test_after_the_dense_frames_an_estimate_stands_for_the_frames_up_to_it():
    """
    After ``dense`` frames, only every k-th frame is estimated.

    Each of those estimates weighs as the k frames up to it in the running means, which
    turn exponential after stripe_frames / blur_frames frames; the frames between
    reuse the memories.
    """
    config = ModelConfig(stripe_frames=16, blur_frames=64, stripe_floor=100.0,
                         stripe_full=101.0)
    model = make_model(config, blur=None)
    frames = random_frames(17, 32, 48, seed=3)
    runner = StreamingRunner(model, estimate_every=4, dense=4)
    expected = None
    with torch.no_grad():
        for t, (ir, vis) in enumerate(frames):
            runner.push(ir, vis)
            count = t + 1
            if t < 4 or t % 4 == 0:  # estimated: 0, 1, 2, 3, then 4, 8, 12, 16
                every = 1 if t < 4 else 4
                seen = column_offsets(ir)
                rate = max(every / count, every / 16)
                expected = seen if expected is None else expected + rate * (seen - expected)
            assert torch.allclose(runner.state.stripes[..., :48], expected, atol=1e-6), t
    dense = StreamingRunner(model, estimate_every=4, dense=20)  # every frame, as before
    plain = StreamingRunner(model)
    with torch.no_grad():
        for ir, vis in frames:
            assert torch.equal(dense.push(ir, vis), plain.push(ir, vis))


def test_the_traced_step_estimates_as_the_eager_one(weights):
    frames = random_frames(9, 40, 56, seed=4)
    eager = StreamingRunner(load_model(weights), estimate_every=4, dense=4)
    model = load_model(weights)
    traced = StreamingRunner(model, step=FrozenStep(model), estimate_every=4, dense=4)
    with torch.no_grad():
        for ir, vis in frames:
            assert torch.allclose(eager.push(ir, vis), traced.push(ir, vis), atol=1e-5)
    assert torch.allclose(eager.state.stripes, traced.state.stripes, atol=1e-6)


def test_a_clean_camera_skips_the_idle_restorations_with_the_same_output(weights):
    """
    A clean camera skips the idle restorations, with the same output.

    With ``skip_idle`` a step leaves out the restorations that are the identity on its
    frame: the IR's alignment and denoiser on a clean IR camera (a noisy one runs them),
    and the deblur while the remembered blur is "none", on the frames that do not
    estimate it.  The output is the full step's, bit for bit, eager and traced, with the
    noise measured once, to decide.
    """
    model = make_model(blur=0)  # the blur classifier says "none": a sharp camera
    clean = clean_stream(14, 48, 64)
    g = torch.Generator().manual_seed(0)
    noisy = [(ir + 12 / 255 * torch.randn(ir.shape, generator=g), vis) for ir, vis in clean]
    for frames, is_clean in ((clean, True), (noisy, False)):
        for traced in (False, True):
            inner = FrozenStep(model) if traced else (lambda *a: _restore(model, *a))
            modes, noises = [], []

            def step(ir, vis, state, mode=FULL, noise=None, inner=inner, modes=modes,
                     noises=noises):
                modes.append(mode)
                noises.append(noise)
                return inner(ir, vis, state, mode, noise)
            skipping = StreamingRunner(model, step=step, estimate_every=2, dense=4,
                                       skip_idle=True)
            full = StreamingRunner(model, estimate_every=2, dense=4)
            with torch.no_grad():
                for ir, vis in frames:
                    assert torch.equal(skipping.push(ir, vis), full.push(ir, vis))
            assert modes[0] == FULL  # the first frame: no memory to judge by
            # the noise measured to decide is handed to the step, not measured again
            assert noises[0] is None and all(n is not None for n in noises[1:])
            assert all(m.restore_ir != is_clean for m in modes[1:])
            # a sharp visible camera: deblurred only on the frames that estimate its blur
            assert [m.deblur for m in modes[1:]] == [m.estimate for m in modes[1:]]
            assert Mode(False, 2, not is_clean, False) in modes


def test_a_flat_frame_in_half_precision_stays_finite():
    """
    A flat frame in half precision stays finite.

    A lens cap or a shutter frame measures no noise at all.  On a GPU the network runs in
    half precision, where the temporal filter's tolerance once overflowed, and the NaN
    it made stayed in the memory for good.
    """
    model = make_model(gain=0.0).half()
    flat = torch.full((1, 1, 48, 64), 0.5, dtype=torch.float16)
    state = None
    with torch.no_grad():
        for _ in range(3):
            out, state = model(flat, flat, state)
            assert torch.isfinite(out.restored_ir).all() and torch.isfinite(state.ir).all()
            assert torch.equal(out.restored_ir, flat)  # no noise: passed as it is


def test_memories_settle_on_a_still_camera():
    """
    A still striped camera with fresh noise every frame.

    The stripe and blur memories settle (their steps shrink as 1/frames), the stripe
    memory on the stripes.
    """
    model = make_model(blur=None, gain=0.0)
    ir, vis = clean_stream(1, 96, 128)[0]
    g = torch.Generator().manual_seed(1)
    stripes = 8 / 255 * torch.randn(1, 1, 1, 128, generator=g)
    stripes -= stripes.mean()
    state, history = None, []
    with torch.no_grad():
        for _ in range(25):
            noisy = ir + stripes + 4 / 255 * torch.randn(ir.shape, generator=g)
            _, state = model(noisy, vis + 4 / 255 * torch.randn(ir.shape, generator=g), state)
            history.append(state)

    def step(field: str, t: int) -> float:
        return float((getattr(history[t], field) - getattr(history[t - 1], field)).abs().max())

    for field in ("stripes", "blur"):
        assert step(field, 24) < 0.2 * step(field, 1), field
    corr = torch.corrcoef(torch.stack([state.stripes[..., :128].flatten(), stripes.flatten()]))
    assert corr[0, 1] > 0.8  # a still scene's own columns stay in it (panning: > 0.9)


def test_memory_of_another_size_is_refused_and_the_fuser_resets(tmp_path):
    model = make_model()
    (ir, vis), = random_frames(1, 32, 32)
    (ir2, vis2), = random_frames(1, 48, 64)
    with torch.no_grad():
        _, state = model(ir, vis)
        with pytest.raises((ValueError, RuntimeError)):
            model(ir2, vis2, state)
    weights = save_weights(make_model(gain=0.0), tmp_path / "w.pt")
    fuser = LearnedFuser(weights, device="cpu", jit=False)
    small, large = bgr_pairs(3, 32, 32), bgr_pairs(2, 48, 64, seed=1)
    for thermal, rgb in small:
        fuser.fuse(thermal, rgb)
    # a new size restarts the memory: what a fresh fuser gives, and back again too
    fresh = LearnedFuser(weights, device="cpu", jit=False)
    assert np.array_equal(fuser.fuse(*large[0]), fresh.fuse(*large[0]))
    assert np.array_equal(fuser.fuse(*small[0]),
                          LearnedFuser(weights, device="cpu", jit=False).fuse(*small[0]))


@pytest.mark.parametrize("fresh", [True, False])
def test_gradients_reach_every_parameter(fresh):
    """
    Through the fused frame of a short, noisy stream (the temporal filter is on).

    A fresh network's IR filter ends in a zero layer: its gradient starts there and
    reaches the layers before once that layer has left zero.
    """
    model = make_model(blur=None).train()
    if not fresh:
        torch.nn.init.normal_(model.denoiser[-1].weight, std=0.01)
    state, loss = None, 0.0
    for ir, vis in clean_stream(3, 32, 48):
        out, state = model(ir + 0.05 * torch.randn_like(ir), gaussian_blur(vis, 1.5), state)
        loss = loss + (out.fused - 0.5).square().mean()
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())
    zero = [n for n, p in model.named_parameters() if not p.grad.any()]
    if fresh:
        assert not [n for n in zero if not n.startswith("denoiser.")]
        assert model.denoiser[-1].weight.grad.any()
    else:
        assert not zero


# ----------------------------------------------------------------------------- streaming

def _manual(model, frames, t: int, last: int) -> torch.Tensor:
    """
    Return the restored pair of frame t.

    Forward memory of frames 0..t-1, averaged with a memory run from frame
    ``last`` down to t+1 when there are frames after t.
    """
    with torch.no_grad():
        state = None
        for ir, vis in frames[:t + 1]:
            out, state = model(ir, vis, state, fuse=False)
        forward = torch.cat([out.restored_ir, out.restored_vis], 1)
        if last <= t:
            return forward
        state = None
        for ir, vis in frames[last:t:-1]:
            _, state = model(ir, vis, state, fuse=False)
        out, _ = model(*frames[t], state, fuse=False)
        return 0.5 * (forward + torch.cat([out.restored_ir, out.restored_vis], 1))


@pytest.mark.parametrize("lookahead", [0, 1, 3])
def test_streaming_runner_returns_each_restored_pair_in_order(lookahead):
    model = make_model(blur=None, gain=0.0)
    frames = random_frames(6, 24, 32)
    runner = StreamingRunner(model, lookahead=lookahead)
    pushed = [runner.push(ir, vis) for ir, vis in frames]
    flushed = runner.flush()
    assert all(p.shape == (1, 2, 24, 32) for p in pushed + flushed)
    assert len(flushed) == lookahead and runner.flush() == []
    # call i returns frame max(0, i - k), with the frames pushed so far after it
    for i, p in enumerate(pushed):
        t = max(0, i - lookahead)
        assert torch.allclose(p, _manual(model, frames, t, i), atol=1e-5), i
    for j, p in enumerate(flushed):
        t = len(frames) - lookahead + j
        assert torch.allclose(p, _manual(model, frames, t, len(frames) - 1), atol=1e-5), t
    if lookahead:  # the look-ahead changes the output of frames that have a future
        assert not torch.allclose(pushed[lookahead], _manual(model, frames, 0, 0), atol=1e-4)


@pytest.mark.parametrize("lookahead,n", [(0, 5), (1, 5), (3, 5), (3, 2)])
def test_fuse_sequence_gives_one_fused_frame_per_input_in_order(lookahead, n):
    model = make_model(blur=None, gain=0.0)
    frames = random_frames(n, 24, 32, seed=3)
    fused = fuse_sequence(model, *zip(*frames), lookahead=lookahead)
    assert len(fused) == n
    for t, f in enumerate(fused):
        pair = _manual(model, frames, t, min(t + lookahead, n - 1))
        assert torch.allclose(f, multiscale_fuse(pair[:, :1], pair[:, 1:]), atol=1e-5), t


def test_runner_without_memory_runs_every_frame_alone():
    model = make_model(blur=None, gain=0.0)
    frames = random_frames(4, 24, 32)
    runner = StreamingRunner(model, use_memory=False, lookahead=2)
    assert runner.lookahead == 0
    with torch.no_grad():
        for ir, vis in frames:
            out, _ = model(ir, vis)
            assert torch.equal(runner.push(ir, vis),
                               torch.cat([out.restored_ir, out.restored_vis], 1))
    assert runner.flush() == []
    with pytest.raises(ValueError):
        StreamingRunner(model, lookahead=-1)


# ----------------------------------------------------------------------------- weights files

@pytest.fixture
def weights(tmp_path):
    return save_weights(make_model(gain=0.0), tmp_path / "streaming_fusion.pt", {"steps": 3})


def _same_model(a: StreamingFusionNet, b: StreamingFusionNet) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_weights_round_trip(tmp_path, suffix):
    if suffix == ".safetensors":
        pytest.importorskip("safetensors")
    model = make_model(gain=0.0)
    path = save_weights(model, tmp_path / f"w{suffix}", {"steps": 3, "note": "x"})
    config, state, meta = load_weights(path)
    assert config == model.config and meta == {"steps": 3, "note": "x"}
    loaded = load_model(path)
    assert _same_model(loaded, model) and not loaded.training


def test_pt_weights_load_with_weights_only(weights):
    data = torch.load(weights, map_location="cpu", weights_only=True)
    assert data["format"] == WEIGHTS_FORMAT and data["config"] == ModelConfig().to_dict()
    assert set(data["state_dict"]) == set(StreamingFusionNet().state_dict())


def test_config_travels_with_the_weights(tmp_path):
    config = ModelConfig(channels=8, layers=3, search=2, deblur_sigmas=(1.5, 3.0),
                         deblur_radius=5, blur_hidden=16)
    model = make_model(config, blur=None, gain=0.0)
    loaded = load_model(save_weights(model, tmp_path / "small.pt"))
    assert loaded.config == config
    frames = random_frames(2, 24, 32)
    assert [t.shape for t in fuse_sequence(loaded, *zip(*frames))] == [(1, 1, 24, 32)] * 2
    assert all(torch.equal(a, b) for a, b in zip(fuse_sequence(loaded, *zip(*frames)),
                                                 fuse_sequence(model, *zip(*frames))))


def test_weights_of_the_previous_network_are_refused(tmp_path):
    old = tmp_path / "old.pt"
    torch.save({"format": WEIGHTS_FORMAT, "version": 1,
                "config": {"channels": 24, "semantic_channels": 16, "colour": True},
                "state_dict": {"head.weight": torch.zeros(3)}}, old)
    with pytest.raises(WeightsError, match="another version") as err:
        load_model(old)
    assert err.value.path == old and "old.pt" in str(err.value)
    with pytest.raises(WeightsError, match="another version"):
        LearnedFuser(old, device="cpu")


def test_missing_corrupt_and_foreign_weights_name_the_file(tmp_path, weights):
    missing = tmp_path / "nope.pt"
    with pytest.raises(WeightsError) as err:
        LearnedFuser(missing, device="cpu")
    assert err.value.path == missing and "nope.pt" in str(err.value)

    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(WeightsError, match="corrupt.pt"):
        LearnedFuser(corrupt, device="cpu")

    try:
        import safetensors  # noqa: F401
    except ImportError:
        pass
    else:
        bad = tmp_path / "bad.safetensors"
        bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not a header")
        with pytest.raises(WeightsError, match="bad.safetensors"):
            load_weights(bad)

    other = tmp_path / "other.pt"
    torch.save({"weight": torch.zeros(3)}, other)
    with pytest.raises(WeightsError, match="other.pt"):
        load_weights(other)

    mismatched = tmp_path / "mismatched.pt"
    data = torch.load(weights, weights_only=True)
    data["config"]["channels"] = 8
    torch.save(data, mismatched)
    with pytest.raises(WeightsError, match="do not match"):
        load_model(mismatched)


@pytest.mark.parametrize("change", [{"channels": -1}, {"typo_field": 1},
                                    {"stripe_floor": 3.0}, {"deblur_sigmas": []},
                                    {"channels": 10 ** 6}, {"search": 10 ** 4},
                                    {"deblur_sigmas": [1.0] * 10 ** 4}])
def test_bad_config_in_a_file_is_refused_naming_the_file(tmp_path, weights, change):
    data = torch.load(weights, weights_only=True)
    data["config"].update(change)
    path = tmp_path / "badconfig.pt"
    torch.save(data, path)
    with pytest.raises(WeightsError, match="bad model config") as err:
        load_weights(path)
    assert "badconfig.pt" in str(err.value)
    if "typo_field" in change:
        assert "typo_field" in str(err.value)


@pytest.mark.parametrize("bad", [
    {"channels": -1}, {"channels": 0}, {"channels": "24"}, {"channels": 2.0},
    {"channels": True}, {"layers": 1}, {"search": 0}, {"stripe_frames": 0},
    {"stripe_floor": 2.0, "stripe_full": 2.0}, {"stripe_floor": 3.0},
    {"stripe_floor": -1.0}, {"stripe_floor": math.nan}, {"stripe_full": math.nan},
    {"deblur_sigmas": ()}, {"deblur_sigmas": (0.0,)}, {"deblur_sigmas": (9.0,)},
    {"deblur_sigmas": (math.nan,)}])
def test_invalid_model_config_values_raise(bad):
    with pytest.raises(ValueError):
        ModelConfig(**bad)


def test_unknown_model_config_fields_are_refused():
    with pytest.raises(ValueError, match="colour"):
        ModelConfig.from_dict({"colour": True})
    assert ModelConfig.from_dict(ModelConfig().to_dict()) == ModelConfig()


# ----------------------------------------------------------------------------- LearnedFuser

def bgr_pairs(n: int, h: int = 36, w: int = 52, seed: int = 0):
    rng = np.random.default_rng(seed)
    return [(rng.integers(0, 256, (h, w), dtype=np.uint8),
             rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for _ in range(n)]


def test_the_fuser_says_what_the_cameras_need_restored(tmp_path):
    weights = save_weights(make_model(blur=0), tmp_path / "w.pt")  # a sharp visible camera
    fuser = LearnedFuser(weights, device="cpu")
    assert fuser.restoring is None  # nothing judged yet
    clean = clean_bgr_stream(4, 48, 64)
    for thermal, rgb in clean:
        fuser.fuse(thermal, rgb)
    assert fuser.restoring == "none"
    noise = np.random.default_rng(0).normal(0, 12, clean[0][0].shape)
    for thermal, rgb in clean:
        fuser.fuse(np.clip(thermal + noise, 0, 255).astype(np.uint8), rgb)
    assert fuser.restoring == "thermal"
    fuser.reset()
    assert fuser.restoring is None


def test_learned_fuser_output_is_bgr_of_the_input_size(weights):
    fuser = LearnedFuser(weights, device="cpu", jit=False)
    assert fuser.name == "learned"
    for thermal, rgb in bgr_pairs(2) + bgr_pairs(1, 1, 1) + bgr_pairs(1, 37, 53):
        before = (thermal.copy(), rgb.copy())
        out = fuser.fuse(thermal, rgb)
        assert out.shape == rgb.shape and out.dtype == np.uint8
        assert np.array_equal(thermal, before[0]) and np.array_equal(rgb, before[1])
    thermal, rgb = bgr_pairs(1)[0]
    for bad in ((thermal, rgb[:10]), (thermal.astype(np.float32), rgb), (thermal, rgb[..., 0])):
        with pytest.raises(ValueError):
            fuser.fuse(*bad)


def test_learned_fuser_takes_colour_from_the_rgb_frame(weights):
    fuser = LearnedFuser(weights, device="cpu", jit=False)
    thermal, _ = clean_bgr_stream(1)[0]
    h, w = thermal.shape
    rgb = np.full((h, w, 3), 128, np.uint8)
    rgb[:, : w // 2] = (60, 60, 170)  # a red left half (BGR), a grey right half
    out = fuser.fuse(thermal, rgb)
    cr_cb_in = cv2.cvtColor(rgb, cv2.COLOR_BGR2YCrCb)[..., 1:].astype(int)
    cr_cb_out = cv2.cvtColor(out, cv2.COLOR_BGR2YCrCb)[..., 1:].astype(int)
    assert np.median(np.abs(cr_cb_out - cr_cb_in)) <= 1
    assert np.ptp(out[:, w // 2:].astype(int), axis=2).max() <= 2  # grey stays grey
    assert np.abs(luma_of(out).astype(int) - 128).mean() > 5  # the thermal frame shows


def test_learned_fuser_reset_and_use_memory(weights):
    (t0, c0), (t1, c1) = bgr_pairs(2)

    def fresh(**kw):
        return LearnedFuser(weights, device="cpu", jit=False, **kw)
    fuser = fresh()
    fuser.fuse(t0, c0)
    with_memory = fuser.fuse(t1, c1)
    alone = fresh().fuse(t1, c1)
    assert not np.array_equal(with_memory, alone)  # the memory matters
    fuser.reset()
    assert np.array_equal(fuser.fuse(t1, c1), alone)
    # no memory: every frame fused alone
    off = fresh(use_memory=False)
    off.fuse(t0, c0)
    assert np.array_equal(off.fuse(t1, c1), alone)
    # switched at runtime (the engine flips the attribute on a parameter change)
    fuser = fresh(lookahead=2)
    fuser.fuse(t0, c0)
    fuser.use_memory = False
    assert not fuser.use_memory and fuser.lookahead == 0
    fuser.fuse(t0, c0)
    assert np.array_equal(fuser.fuse(t1, c1), alone)
    fuser.use_memory = True
    assert fuser.use_memory and fuser.lookahead == 2
    with pytest.raises(ValueError):
        fresh(use_memory=False, lookahead=1)


def test_learned_fuser_lookahead_flush_and_warmup(weights):
    seq = bgr_pairs(5, 24, 32)
    plain = LearnedFuser(weights, device="cpu", jit=False)
    expected = [plain.fuse(t, c) for t, c in seq]
    streams = []
    for warm in (True, False):
        fuser = LearnedFuser(weights, device="cpu", lookahead=2, jit=False)
        if warm:
            fuser.warmup(24, 32)  # must leave no memory and nothing held back
        outputs = [fuser.fuse(t, c) for t, c in seq]
        flushed = fuser.flush()
        assert len(flushed) == 2 and fuser.flush() == []
        streams.append(outputs[2:] + flushed)  # call i returns frame i - 2 (0 while filling)
    stream = streams[0]
    assert all(np.array_equal(a, b) for a, b in zip(*streams))
    assert len(stream) == len(seq) and all(o.shape == (24, 32, 3) for o in stream)
    for t, ((_, rgb), out) in enumerate(zip(seq, stream)):
        # each frame keeps its own colour ...
        cr_in = cv2.cvtColor(rgb, cv2.COLOR_BGR2YCrCb)[..., 1].astype(int)
        cr_out = cv2.cvtColor(out, cv2.COLOR_BGR2YCrCb)[..., 1].astype(int)
        assert np.median(np.abs(cr_out - cr_in)) <= 2
        # ... and is its own frame's fusion, not a neighbour's
        errors = [np.abs(luma_of(out).astype(int) - luma_of(e).astype(int)).mean()
                  for e in expected]
        assert int(np.argmin(errors)) == t
    assert np.array_equal(stream[-1], expected[-1])  # no future: the plain output
    assert not np.array_equal(stream[0], expected[0])  # it used the frames after it


@pytest.mark.parametrize("lookahead", [0, 2])
def test_warmup_traces_every_step_a_stream_runs(weights, lookahead):
    fuser = LearnedFuser(weights, device="cpu", lookahead=lookahead)
    fuser.warmup(48, 64)
    traced = len(fuser._step.graphs)
    # the first frame, and dense, sparse estimating and sparse steps, each with the IR
    # restoration or without it, the sparse ones with the deblur or without it
    assert traced == 1 + len(fuser.runner.modes()) == 9
    # past the dense start, a clean camera and then a noisy one (random frames)
    for thermal, rgb in clean_bgr_stream(70, 48, 64) + bgr_pairs(70, 48, 64):
        fuser.fuse(thermal, rgb)
    assert len(fuser._step.graphs) == traced  # no trace on a live frame


def test_traced_fuser_matches_eager(weights):
    traced = LearnedFuser(weights, device="cpu", jit=True)
    eager = LearnedFuser(weights, device="cpu", jit=False)
    for t, c in bgr_pairs(3, 40, 60):
        a, b = traced.fuse(t, c), eager.fuse(t, c)
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 1
    graphs = traced.runner.step.graphs  # really traced (no silent eager fallback)
    assert len(graphs) == 2 and all(g is not None for g in graphs.values())
