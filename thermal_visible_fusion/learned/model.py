"""
StreamingFusionNet: streaming thermal/visible video fusion, in one file.

One call fuses one frame: ``forward(ir, vis_y, state) -> (FusionOutput, new_state)``.
Inputs are float tensors in [0, 1] of shape (B, 1, H, W), any H, W (padded internally to
a multiple of 8, outputs cropped back and *not* clamped: callers clamp when they
quantise).  The network fuses luminance; the caller re-attaches the RGB frame's chroma.

Restore, then fuse by the multi-scale rule.  Fusion of two *clean* frames is done well by
a classical rule (``fusers.classic.MultiScaleFuser``, ported here as ``multiscale_fuse``);
what a classical rule cannot do is see through a noisy, striped thermal frame or a blurred
visible one.  So the network restores each input, and each restoration is built to be the
identity on clean input: on a clean camera the output *is* the multi-scale rule's, and on a
degraded one it is the rule applied to what the memory and the network recover.  Where a
restoration is the identity, a step may leave it out (``needed`` says which, before the
step): a clean camera costs a fraction of a degraded one, with the same output.

Per frame, with the memory (``MemoryState``) of the frames before:

1. **Column stripes** (the fixed-pattern noise of thermal cores) are fixed per camera, so
   the memory learns them: each frame's estimate, the median over rows of the frame minus
   its horizontal blur, is averaged into ``stripes`` (a running mean over the first
   ``stripe_frames`` frames, then an exponential one), which is subtracted, gated by its
   own energy (``stripe_floor``..``stripe_full`` grey levels: real scenes give < 0.2, the
   noise this removes 5-15), so clean cameras are left alone.
2. **Alignment**: the previous restored IR frame is moved onto the current one by a flow
   found per 4x4-pixel cell by block matching, coarse to fine (1/16, 1/8, 1/4 resolution;
   normalised visible and IR, the IR weighed by its noise), kept only where a move clearly
   beats none, and interpolated between cells: a still camera's memory stays put, cells
   that move apart leave no seam, and whole-pixel moves never blur a frame carried
   forward through thousands of steps.
3. **IR denoiser** (TemCoCo's temporal cooperation): a small CNN at half resolution sees
   the destriped frame, the aligned previous restored frame, the visible frame (edges
   that are real) and the frame's noise level (median absolute diagonal difference).  It
   predicts a spatial residual and a per-pixel gain g of a recurrent temporal filter:
   restored = spatial + g * (aligned previous - spatial).  Both act only on a noisy
   camera: the residual is scaled from 0 at ``noise_floor`` to 1 at ``noise_full``, so a
   clean camera's frame passes bit for bit.  g is a noise-adaptive prior
   (trust the past where it agrees with the present within ``exp(log_tolerance)`` noise
   sigmas; off below ``noise_floor``, so never on a clean camera) times the CNN's own
   correction.  A convex blend of the present and a remembered frame cannot drift.
4. **Visible deblur**: an MLP on the image-wide energies of the two frames' pyramid bands
   (blur takes energy from the fine bands, the same way in any scene) classifies the
   blur among ``deblur_sigmas`` and "none"; the memory averages those probabilities over
   ``blur_frames`` (a camera's blur is fixed) and one least-squares inverse filter, their
   mix, restores the frame (under 1 % on the blur classes, it is left as it is).
   Image-wide: no block or seam artefacts.
5. **Fusion**: ``multiscale_fuse`` of the restored frames.

``learned.runtime.StreamingRunner`` carries the memory across a stream (with an optional
look-ahead); ``learned.runtime.fuse_sequence`` does it offline.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
import math
from typing import NamedTuple

import torch
from torch import nn
import torch.nn.functional as F

STRIDE = 8  # inputs are padded to a multiple of this
CELL = 4  # the alignment finds one flow vector per 4x4-pixel cell


@dataclass
class ModelConfig:
    channels: int = 12             # width of the IR denoiser (half resolution)
    layers: int = 3                # its 3x3 conv layers
    search: int = 2                # coarse alignment search radius, 1/16-res cells (32 px)
    stripe_frames: int = 256       # time constant of the stripe memory, frames
    stripe_floor: float = 1.0      # stripe energy (grey levels) below which none is removed
    stripe_full: float = 2.0       # ... and above which the estimate is removed whole
    noise_floor: float = 3.0       # IR noise sigma (grey levels) below which the temporal
    noise_full: float = 6.0        # filter is off, and above which it is fully on
    blur_frames: int = 64          # time constant of the blur estimate, frames
    deblur_sigmas: tuple[float, ...] = (1.0, 1.75, 2.5, 3.5)  # blurs the filters invert
    deblur_radius: int = 8         # their half size, pixels
    blur_hidden: int = 32          # width of the blur classifier

    def __post_init__(self) -> None:
        self.deblur_sigmas = tuple(float(s) for s in self.deblur_sigmas)
        # upper bounds too: a weights file's config must not make the node allocate GBs
        ints = {"channels": 256, "layers": 32, "search": 8, "stripe_frames": 1_000_000,
                "blur_frames": 1_000_000, "deblur_radius": 32, "blur_hidden": 1024}
        for name, most in ints.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= most:
                raise ValueError(f"{name} must be an integer in 1..{most}, got {value!r}")
        if self.layers < 2:
            raise ValueError(f"layers must be >= 2, got {self.layers}")
        if not 0 <= self.stripe_floor < self.stripe_full:  # also rejects NaN
            raise ValueError("need 0 <= stripe_floor < stripe_full")
        if not 0 <= self.noise_floor < self.noise_full:
            raise ValueError("need 0 <= noise_floor < noise_full")
        sigmas = self.deblur_sigmas
        if not 1 <= len(sigmas) <= 16 or not all(0 < s <= 8 for s in sigmas):
            raise ValueError(f"deblur_sigmas must be in (0, 8], got {self.deblur_sigmas}")

    @classmethod
    def from_dict(cls, data: dict) -> "ModelConfig":
        unknown = set(data) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown ModelConfig fields: {sorted(unknown)}")
        return cls(**data)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["deblur_sigmas"] = list(self.deblur_sigmas)
        return data


class MemoryState(NamedTuple):
    """What one frame hands to the next (padded size)."""

    ir: torch.Tensor       # (B,1,H,W) restored IR
    key: torch.Tensor      # (B,2,H/2,W/2) the frames at half res, for alignment
    stripes: torch.Tensor  # (B,1,1,W) column offsets of the IR camera
    blur: torch.Tensor     # (B,K+1) mean blur-class probabilities ("none" first)
    count: torch.Tensor    # (B,1) frames seen (sets the running means' step)


class FusionOutput(NamedTuple):
    fused: torch.Tensor | None  # (B,1,H,W) fused luminance, unclamped
    restored_ir: torch.Tensor   # (B,1,H,W)
    restored_vis: torch.Tensor  # (B,1,H,W)
    flow: torch.Tensor          # (B,2,H,W) current -> previous, whole pixels


class StreamingFusionNet(nn.Module):

    def __init__(self, config: ModelConfig | None = None):
        super().__init__()
        self.config = cfg = config or ModelConfig()
        c = cfg.channels
        convs = [nn.Conv2d(13, c, 3, padding=1)]
        convs += [nn.Conv2d(c, c, 3, padding=1) for _ in range(cfg.layers - 2)]
        convs += [nn.Conv2d(c, 8, 3, padding=1)]  # 4 residual + 4 gain maps (2x2 phases)
        self.denoiser = nn.ModuleList(convs)
        nn.init.zeros_(convs[-1].weight)  # starts as no residual and the prior's gain
        with torch.no_grad():
            convs[-1].bias.copy_(torch.tensor([0.0] * 4 + [4.0] * 4))
        # the temporal filter trusts the past where it differs from the present by less
        # than about this many noise sigmas
        self.log_tolerance = nn.Parameter(torch.tensor(math.log(1.5)))
        k = len(cfg.deblur_sigmas)
        self.blur_classifier = nn.Sequential(
            nn.Linear(2 * PYRAMID_LEVELS + 1, cfg.blur_hidden), nn.ReLU(),
            nn.Linear(cfg.blur_hidden, cfg.blur_hidden), nn.ReLU(),
            nn.Linear(cfg.blur_hidden, k + 1))
        kernels = [deblur_kernel(s, radius=cfg.deblur_radius) for s in cfg.deblur_sigmas]
        # derived from the config, not learned: kept out of the weights file
        self.register_buffer("deblur_kernels", torch.stack(kernels).float(), persistent=False)
        # class "none": the 1-D identity filter (a buffer: no host copy per frame on a GPU)
        self.register_buffer("identity_tap", F.one_hot(torch.tensor(cfg.deblur_radius),
                                                       2 * cfg.deblur_radius + 1).float(),
                             persistent=False)

    def forward(self, ir: torch.Tensor, vis: torch.Tensor, state: MemoryState | None = None,
                fuse: bool = True, estimate: bool = True, every: int = 1,
                restore_ir: bool = True, deblur: bool = True,
                noise: torch.Tensor | None = None) -> tuple[FusionOutput, MemoryState]:
        """
        Restore one frame pair (and fuse it).

        ``fuse=False`` leaves ``fused`` as None: the caller fuses the restored frames
        (``fusers.learned`` runs the same rule in OpenCV, several times faster on a CPU).
        The camera's stripes and blur are fixed, so a stream may estimate them on some
        frames only: ``estimate=False`` reuses the memory's, and ``every`` is the number
        of frames an estimate stands for (the memory's time constants stay in frames).
        ``restore_ir=False`` skips the IR's alignment and denoiser, ``deblur=False`` the
        visible deblur: for a frame on which they are the identity anyway (``needed``
        says which), so the restored frames are the same at a fraction of the cost (the
        ``flow`` output is then zero: the memory was not moved).  ``noise``: the frame's
        ``measure_noise``, where the caller measured it already (to decide ``needed``).
        """
        cfg = self.config
        h, w = ir.shape[-2:]
        ir, vis = _pad(ir), _pad(vis)
        if state is not None and state.ir.shape != ir.shape:
            raise ValueError(f"the memory is of frames {tuple(state.ir.shape)} (padded), this "
                             f"frame is {tuple(ir.shape)}: reset the memory when the size "
                             "changes")
        count = state.count + 1 if state is not None else ir.new_ones(ir.shape[0], 1)
        estimate = estimate or state is None
        # a running mean in which each estimate stands for the ``every`` frames up to it
        scaled = count / every

        # 1. stripes: a running mean of per-frame estimates, removed when they are strong
        if state is None:
            stripes = column_offsets(ir)
        elif estimate:
            stripes = state.stripes + _rate(scaled, cfg.stripe_frames / every).view(
                -1, 1, 1, 1) * (column_offsets(ir) - state.stripes)
        else:
            stripes = state.stripes
        energy = 255 * stripes.square().mean(-1, keepdim=True).sqrt()
        gate = ((energy - cfg.stripe_floor) / (cfg.stripe_full - cfg.stripe_floor)).clamp(0, 1)
        ir_d = ir - gate * stripes
        if noise is None:  # (B,1); blind to the stripes, so ``needed`` can tell first
            noise = noise_level(ir)

        # 2.-3. the remembered frame aligned, and the IR restored with it
        frames = torch.cat([vis, ir_d], 1)  # visible, IR: alignment and blur features
        key = _half(frames)  # alignment_key(ir_d, vis)
        restored_ir, cells = ir_d, None  # cells: the memory's flow, None where not moved
        if restore_ir:
            restored_ir, cells = self._restore_ir(ir_d, vis, noise, key, state)

        # 4. visible: the blur class, averaged over the stream, picks the inverse filter
        if estimate:
            probs = torch.softmax(self.blur_classifier(blur_features(frames, noise, key)), -1)
            blur = probs if state is None else state.blur + _rate(
                scaled, cfg.blur_frames / every) * (probs - state.blur)
        else:
            blur = state.blur
        restored_vis = self.deblur(vis, blur) if deblur else vis

        # 5. fuse
        crop = (..., slice(0, h), slice(0, w))
        fused = multiscale_fuse(restored_ir[crop], restored_vis[crop]) if fuse else None
        flow = ir.new_zeros(ir.shape[0], 2, *ir.shape[-2:]) if cells is None else \
            pixel_flow(cells, ir.shape[-2:]).to(ir.dtype)  # the move the memory made
        out = FusionOutput(fused, restored_ir[crop], restored_vis[crop], flow[crop])
        return out, MemoryState(restored_ir, key, stripes, blur, count)

    def _restore_ir(self, ir_d: torch.Tensor, vis: torch.Tensor, noise: torch.Tensor,
                    key: torch.Tensor, state: MemoryState | None
                    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Restore the destriped IR frame with the remembered one: (restored, cell flow)."""
        cfg = self.config
        # 2. align the remembered frame
        if state is None:
            cells, past = None, ir_d
        else:
            cells = block_flow(key, state.key, cfg.search, noise)
            past = shift_pixels(state.ir, cells)

        # 3. IR: spatial residual + recurrent temporal filter
        # the input: the 2x2 phases of each frame (pixel_unshuffle's channel order) and
        # the noise level, stacked channels-last, the layout the convolutions run in
        # (building it NCHW cost a conversion copy as long as the network)
        h2, w2 = ir_d.shape[-2] // 2, ir_d.shape[-1] // 2
        planes = [image[:, 0, p::2, q::2] for image in (ir_d - 0.5, past - ir_d, vis - 0.5)
                  for p in (0, 1) for q in (0, 1)]
        planes.append((20 * noise).view(-1, 1, 1).expand(-1, h2, w2))
        # in the convolutions' own dtype: a CPU may run them in bfloat16 (``LearnedFuser``)
        x = torch.stack(planes, -1).permute(0, 3, 1, 2).to(self.denoiser[0].weight.dtype)
        for conv in self.denoiser[:-1]:
            x = F.relu(conv(x))
        residual, gain = _pixel_shuffle(self.denoiser[-1](x).to(ir_d.dtype)).chunk(2, 1)
        # both parts act only where there is noise to remove: below noise_floor (a clean
        # camera) the IR passes bit for bit, so the output is the multi-scale rule's
        sigma = noise.view(-1, 1, 1, 1)
        on = noise_gate(noise, cfg).view(-1, 1, 1, 1)
        spatial = torch.addcmul(ir_d, on, residual)
        if state is None:
            return spatial, cells
        # the prior: a noise-adaptive recursive filter (trust the past where it agrees
        # with the present within the noise); the CNN's gain refines it where it knows
        # better (moving edges, occlusions)
        # exp(-(|box5(past - spatial)| / (tolerance * sigma))^2); 1 / tolerance, not its
        # square: 1e-4 ** -2 overflows half precision, and 0 * inf is NaN on a flat frame
        change = past - spatial
        inverse = 1.0 / (self.log_tolerance.exp() * sigma + 1e-4)
        prior = (0.95 * on) * torch.exp((_box5(change) * inverse).square_().neg_())
        return torch.addcmul(spatial, prior * torch.sigmoid(gain), change), cells

    @staticmethod
    def measure_noise(ir: torch.Tensor) -> torch.Tensor:
        """Return the (B,1) noise sigma of an IR frame, as ``forward`` measures it."""
        return noise_level(_pad(ir))

    @torch.no_grad()
    def needed(self, noise: torch.Tensor, state: MemoryState | None) -> tuple[bool, bool]:
        """
        Return whether a frame of this ``measure_noise`` needs (IR restoration, deblur).

        Each is the identity where it is not needed: the IR's on a clean camera (noise
        under ``noise_floor``, in every image of the batch), the deblur while the
        remembered blur is under 1 % on the blur classes (a frame that estimates the
        blur updates that memory first, so it deblurs whatever this says).
        """
        if noise.dim() != 2:
            raise ValueError(f"needed takes measure_noise's (B,1) noise, got {tuple(noise.shape)}")
        if state is None:
            return True, True
        ir_needed = bool(noise_gate(noise, self.config).max() > 0)
        return ir_needed, bool(_blur_mass(state.blur).sum(1).max() > 0)

    def deblur(self, vis: torch.Tensor, blur: torch.Tensor) -> torch.Tensor:
        """
        Deblur each image by its mix of the 1-D inverse filters.

        Each image filtered, rows then columns, by its mix of the 1-D inverse filters
        (class 0, no blur: the identity).  Less than 1 % on the blur classes is no blur.
        """
        r = self.config.deblur_radius
        # under 1 % on the blur classes (a sharp camera): the identity, bit for bit
        mass = _blur_mass(blur)
        kernel = mass @ self.deblur_kernels  # (B, 2r+1)
        kernel = kernel + (1 - mass.sum(1, keepdim=True)) * self.identity_tap
        # as shifted sums: on a CPU faster than a grouped 1-D convolution
        taps = kernel.view(-1, 2 * r + 1, 1, 1, 1).unbind(1)  # each (B,1,1,1)
        x = F.pad(vis, (r, r, r, r), mode="replicate")
        w = vis.shape[-1]
        rows = taps[0] * x[..., :w]
        for i in range(1, 2 * r + 1):
            rows = torch.addcmul(rows, taps[i], x[..., i:i + w])
        h = vis.shape[-2]
        out = taps[0] * rows[..., :h, :]
        for i in range(1, 2 * r + 1):
            out = torch.addcmul(out, taps[i], rows[..., i:i + h, :])
        return out


# --------------------------------------------------------------------------- parts

def noise_gate(noise: torch.Tensor, cfg: ModelConfig) -> torch.Tensor:
    """(B,1) how much the IR denoiser acts: 0 under ``noise_floor``, 1 over ``noise_full``."""
    return ((255 * noise - cfg.noise_floor) / (cfg.noise_full - cfg.noise_floor)).clamp(0, 1)


def _blur_mass(blur: torch.Tensor) -> torch.Tensor:
    """(B,K) the blur classes' probabilities, zero where they sum under 1 % (sharp)."""
    return blur[:, 1:] * (blur[:, 1:].sum(1, keepdim=True) >= 0.01)


def _pixel_shuffle(x: torch.Tensor) -> torch.Tensor:
    """``F.pixel_shuffle(x, 2)`` in one copy from a channels-last tensor too."""
    n, c, h, w = x.shape
    x = x.view(n, c // 4, 2, 2, h, w).permute(0, 1, 4, 2, 5, 3)
    return x.reshape(n, c // 4, 2 * h, 2 * w)


def _rate(count: torch.Tensor, frames: float) -> torch.Tensor:
    """Step of a running mean over the first ``frames`` frames, exponential after."""
    return torch.clamp(1.0 / count, min=1.0 / frames)


def _box_x(x: torch.Tensor, radius: int) -> torch.Tensor:
    """Horizontal box mean, replicated borders, as shifted sums (4x faster than a pool)."""
    padded = F.pad(x, (radius, radius, 0, 0), mode="replicate")
    w = x.shape[-1]
    out = padded[..., :w]
    for i in range(1, 2 * radius + 1):
        out = out + padded[..., i:i + w]
    return out / (2 * radius + 1)


def column_offsets(ir: torch.Tensor) -> torch.Tensor:
    """
    Return the (B,1,1,W) per-column offset of one frame.

    The median over rows of the frame minus its horizontal blur (robust to objects
    that fill less than half a column), over every 4th row: the memory averages the
    estimate over hundreds of frames, and the median is the costly part.
    """
    rows = ir[..., ::4, :]  # the blur is horizontal: blurring only the rows used is exact
    seen = (rows - _box_x(rows, 4)).median(dim=-2, keepdim=True).values
    return seen - seen.mean(-1, keepdim=True)


def noise_level(x: torch.Tensor) -> torch.Tensor:
    """
    Estimate the (B,1) Gaussian noise sigma.

    (B,1) Gaussian noise sigma from the median absolute diagonal difference (blind to
    column stripes and to smooth content), of the 2x2 cells of every other cell row.
    """
    x = x[..., :x.shape[-2] // 4 * 4, :x.shape[-1] // 2 * 2]
    d = 0.5 * (x[..., 1::4, 1::2] - x[..., 1::4, ::2] - x[..., ::4, 1::2] + x[..., ::4, ::2])
    return d.abs().flatten(1).median(dim=1).values.unsqueeze(1) / 0.6745


def alignment_key(ir: torch.Tensor, vis: torch.Tensor) -> torch.Tensor:
    """(B,2,H/2,W/2): the visible and IR frames at half resolution (the memory keeps it)."""
    return _half(torch.cat([vis, ir], 1))


def _half(x: torch.Tensor) -> torch.Tensor:
    """
    Return the 2x2 means (an odd last row or column is averaged with itself).

    As strided sums: on a CPU several times faster than ``avg_pool2d``.
    """
    if x.shape[-2] % 2 or x.shape[-1] % 2:
        x = F.pad(x, (0, x.shape[-1] % 2, 0, x.shape[-2] % 2), mode="replicate")
    rows = x[..., ::2, :] + x[..., 1::2, :]
    return (rows[..., ::2] + rows[..., 1::2]) * 0.25


def _normalise(x: torch.Tensor, floor: torch.Tensor) -> torch.Tensor:
    """
    Remove local mean and contrast.

    Where the contrast is not well above ``floor`` (B,C,1,1: the noise), values stay
    small, so flat, noisy regions do not decide the motion.
    """
    x = x - _box5(x)
    return x / (_box5(x * x).sqrt() + floor)


def _box5(x: torch.Tensor) -> torch.Tensor:
    """
    Compute a 5x5 mean with replicated borders, as shifted sums.

    Shifted sums are several times faster on a CPU than a stride-1 average pool or a
    depthwise convolution.
    """
    x = F.pad(x, (2, 2, 2, 2), mode="replicate")
    x = x[..., :-4] + x[..., 1:-3] + x[..., 2:-2] + x[..., 3:-1] + x[..., 4:]
    return (x[..., :-4, :] + x[..., 1:-3, :] + x[..., 2:-2, :] + x[..., 3:-1, :]
            + x[..., 4:, :]) / 25


def _step(key: torch.Tensor, prev: torch.Tensor, radius: int) -> torch.Tensor:
    """
    Find the whole-cell offset of the best match of ``key`` in ``prev``.

    (B,2,h,w) whole-cell offset (dx, dy) of the best match of ``key`` in ``prev`` within
    +-radius cells: least squared difference over 5x5 cells, kept only where it beats no
    motion clearly, so a still camera and flat regions mean no motion.
    """
    h, w = key.shape[-2:]
    k = 2 * radius + 1
    prev = F.pad(prev, (radius,) * 4, mode="replicate")
    cost = torch.stack([(key - prev[..., i:i + h, j:j + w]).square().sum(1)
                        for i in range(k) for j in range(k)], 1)
    cost = _box5(cost)  # twice the mean over the two channels
    best, index = cost.min(1, keepdim=True)
    # move only where the best match is clearly better than none: noise makes every
    # offset of a flat region about equally good
    still = cost[:, k * k // 2:k * k // 2 + 1]
    moved = (best < 0.7 * still) & (best < still - 0.2)
    offset = torch.cat([index % k - radius, index // k - radius], 1).to(key.dtype)
    return offset * moved


def block_flow(key: torch.Tensor, prev_key: torch.Tensor, radius: int,
               noise: torch.Tensor | None = None) -> torch.Tensor:
    """
    Return current -> previous flow of each 4x4-pixel cell, (B,2,H/4,W/4).

    In full-res pixels, multiples of 4 (``shift_pixels`` interpolates it between cells).

    Block matching, coarse to fine: at 1/16 resolution over +-radius cells, then at 1/8
    and 1/4 over +-1 cell around the coarser flow (each level halves the uncertainty of
    the one before).  A 1/2-resolution level cost a third of the network's time and
    changed no quality figure (model card).  ``noise`` (B,1): the IR frame's noise sigma
    at full resolution; the IR channel counts less the noisier it is.
    """
    ir_noise = noise if noise is not None else key.new_zeros(key.shape[0], 1)
    pyramid = [(_half(key), _half(prev_key))]  # 1/4, 1/8, 1/16 resolution
    for _ in range(2):
        pyramid.append(tuple(_half(k) for k in pyramid[-1]))
    flow = None
    for (cur, prev), factor, search in zip(pyramid[::-1], (8, 4, 2), (radius, 1, 1)):
        sigma = ir_noise / (2 * factor)  # averaging n x n pixels divides the noise by n
        floor = 8.0 / 255 + 3 * torch.cat([torch.zeros_like(sigma), sigma], 1)[..., None, None]
        cur, prev = _normalise(cur, floor), _normalise(prev, floor)
        if flow is None:
            flow = torch.zeros_like(cur[:, :2])
        else:  # the coarser flow, in this level's cells
            scale = cur.shape[-1] / flow.shape[-1]
            flow = scale * F.interpolate(flow, size=cur.shape[-2:], mode="nearest")
            prev = shift(prev, flow)
        flow = flow + _step(cur, prev, search)
    return CELL * flow  # 1/4-res cells: CELL full-res pixels each


def pixel_flow(cells: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Return the (B,2,H,W) per-pixel flow ``shift_pixels`` moves by: whole pixels, float32."""
    # float32 whatever the network runs in: it counts pixel indices exactly to 2 ** 24
    return F.interpolate(cells.float(), size=size, mode="bilinear",
                         align_corners=False).round_()


def shift_pixels(x: torch.Tensor, cells: torch.Tensor) -> torch.Tensor:
    """
    Move each pixel of x by the cell flow interpolated to it, rounded to whole pixels.

    ``cells``: ``block_flow``'s (B,2,H/4,W/4) flow; sources are clamped at the borders.
    Across the border of two cells that move differently the move changes pixel by pixel:
    moving whole cells left a seam there, a 4-pixel grid that the temporal filter carried
    into the output.  Whole pixels: no resampling blur.
    """
    b, c, h, w = x.shape
    flow = pixel_flow(cells, (h, w))
    xs = torch.arange(w, device=x.device, dtype=flow.dtype)
    ys = torch.arange(h, device=x.device, dtype=flow.dtype).view(h, 1)
    source = (flow[:, 1] + ys).clamp_(0, h - 1).mul_(w).add_((flow[:, 0] + xs).clamp_(0, w - 1))
    source = source.long().view(b, 1, h * w).expand(-1, c, -1)
    return x.reshape(b, c, h * w).gather(2, source).view(b, c, h, w)


def shift(x: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Sample x at (pixel + flow), whole-pixel flow: no resampling blur."""
    _, _, h, w = x.shape
    ys = torch.arange(h, device=x.device, dtype=x.dtype).view(1, h, 1)
    xs = torch.arange(w, device=x.device, dtype=x.dtype).view(1, 1, w)
    gx = (xs + flow[:, 0]) * (2.0 / w) + (1.0 / w - 1.0)
    gy = (ys + flow[:, 1]) * (2.0 / h) + (1.0 / h - 1.0)
    return F.grid_sample(x, torch.stack([gx, gy], -1), mode="nearest", padding_mode="border",
                         align_corners=False)


PYRAMID_LEVELS = 4


def blur_features(frames: torch.Tensor, noise: torch.Tensor,
                  half: torch.Tensor | None = None) -> torch.Tensor:
    """
    Return the blur features of the (B,2,H,W) visible and IR frames, (B, 2*PYRAMID_LEVELS+1).

    Log energies of each frame's Laplacian bands relative to its coarsest one (blur shows
    as missing fine-band energy), the visible frame's coarse contrast, and the IR noise
    level.  ``half``: their 2x2 means (``alignment_key``) if at hand (the first pyramid
    level, not computed twice).
    """
    x = frames
    energies = []
    for level in range(PYRAMID_LEVELS):  # a box pyramid: cheap, and blur shows the same
        down = half if level == 0 and half is not None else _half(x)
        up = F.interpolate(down, size=x.shape[-2:], mode="bilinear", align_corners=False)
        energies.append((x - up).square().mean((2, 3)))  # (B,2): visible, IR
        x = down
    logs = torch.log(torch.stack(energies, 2) + 1e-7)  # (B,2,levels)
    feats = torch.cat([logs[..., :-1] - logs[..., -1:], logs[..., -1:] + 7.0], 2)
    return torch.cat([feats.flatten(1), torch.log(noise + 1e-3)], 1)


def deblur_kernel(sigma: float, nsr: float = 0.01, radius: int = 8, grid: int = 256
                  ) -> torch.Tensor:
    """
    Return the (2r+1,) least-squares inverse of a 1-D Gaussian blur of ``sigma``.

    Minimises sum_f |G(f) K(f) - 1|^2 + nsr |K(f)|^2 over a frequency grid, with K
    supported on the kernel; unit DC gain.  ``nsr`` bounds the noise gain.  Applied
    along rows and columns it inverts the 2-D blur, which is separable.
    """
    f = torch.fft.fftfreq(grid, dtype=torch.float64)[:, None]
    blur = torch.exp(-2 * math.pi ** 2 * sigma ** 2 * f ** 2)
    phase = 2 * math.pi * f * torch.arange(-radius, radius + 1, dtype=torch.float64)
    cos, sin = torch.cos(phase), torch.sin(phase)  # K(f) = sum_m k_m (cos - i sin)
    a = torch.cat([blur * cos, -blur * sin, math.sqrt(nsr) * cos, -math.sqrt(nsr) * sin])
    b = torch.cat([torch.ones(grid, 1, dtype=torch.float64),
                   torch.zeros(3 * grid, 1, dtype=torch.float64)])
    k = torch.linalg.lstsq(a, b).solution[:, 0]
    return k / k.sum()


# --------------------------------------------------------------------------- multi-scale rule

_BINOMIAL = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0]) / 16  # cv2.pyrDown/pyrUp kernel
_KERNELS: dict = {}


def _binomial(x: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
    """Separable 5-tap binomial filter, mirrored borders (cv2's BORDER_REFLECT_101)."""
    key = (x.dtype, x.device)  # cached: no host copy per call (CUDA graphs)
    if key not in _KERNELS:
        _KERNELS[key] = _BINOMIAL.to(x)
    k = _KERNELS[key] * gain
    n, c, h, w = x.shape
    x = x.reshape(n * c, 1, h, w)
    x = F.pad(x, (2, 2, 2, 2), mode="reflect" if min(h, w) > 2 else "replicate")
    return F.conv2d(F.conv2d(x, k.view(1, 1, 1, 5)), k.view(1, 1, 5, 1)).view(n, c, h, w)


def _pyr_down(x: torch.Tensor) -> torch.Tensor:
    return _binomial(x)[..., ::2, ::2]


def _pyr_up(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    n, c, h, w = x.shape
    up = x.new_zeros((n, c, 2 * h, 2 * w))
    up[..., ::2, ::2] = x
    return _binomial(up[..., :size[0], :size[1]], gain=2.0)


def multiscale_fuse(ir: torch.Tensor, vis: torch.Tensor, levels: int = 4) -> torch.Tensor:
    """
    ``fusers.classic.MultiScaleFuser`` on (N,1,H,W) [0, 1] tensors.

    Laplacian pyramids; each detail band takes the source with more local energy (a soft
    weight), the base is a saliency-weighted average.  Not clamped.  Small images get
    fewer levels (the base stays at least 4 pixels wide).
    """
    while levels > 0 and min(ir.shape[-2:]) < 4 * 2 ** levels:
        levels -= 1

    def pyramid(x: torch.Tensor) -> list[torch.Tensor]:
        bands = []
        for _ in range(levels):
            down = _pyr_down(x)
            bands.append(x - _pyr_up(down, x.shape[-2:]))
            x = down
        return bands + [x]

    fused = []
    for a, b in zip(pyramid(ir * 255), pyramid(vis * 255)):
        if len(fused) < levels:  # detail band
            ea, eb = _binomial(a * a), _binomial(b * b)
            wa = ea / (ea + eb + 1e-6)
        else:  # base: distance from the band's mean, per image
            sa = _binomial((a - a.mean((2, 3), keepdim=True)).abs())
            sb = _binomial((b - b.mean((2, 3), keepdim=True)).abs())
            wa = (sa + 1.0) / (sa + sb + 2.0)
        fused.append(wa * a + (1 - wa) * b)
    out = fused[-1]
    for band in reversed(fused[:-1]):
        out = _pyr_up(out, band.shape[-2:]) + band
    return out / 255


def _pad(x: torch.Tensor) -> torch.Tensor:
    """Replicate-pad to a multiple of STRIDE, and to at least 2 * STRIDE."""
    h, w = x.shape[-2:]
    ph, pw = max(-h % STRIDE, 2 * STRIDE - h), max(-w % STRIDE, 2 * STRIDE - w)
    return F.pad(x, (0, pw, 0, ph), mode="replicate") if ph or pw else x
