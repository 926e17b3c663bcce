"""StreamingFusionNet: a tiny streaming thermal/visible video-fusion network, in one file.

One call fuses one frame: ``forward(ir, vis_y, state) -> (FusionOutput, new_state)``.
Inputs are float tensors in [0, 1] of shape (B, 1, H, W), any H, W (padded internally to
a multiple of 8, outputs cropped back, *not* clamped: callers clamp when they quantise).
The network fuses luminance; the caller re-attaches the chroma of the RGB frame
(``fusers/learned.py``), restored by ``restore_chroma`` when the weights have a colour
branch (``ModelConfig.colour``, see ``ChromaRestorer``).

Per frame, with every feature map at 1/4 resolution unless said otherwise:

1. **Encoders**, one per modality (IR, visible luminance Y): ``pixel_unshuffle(4)`` folds
   each 4x4 block into 16 channels (lossless, so the head still sees every noisy pixel),
   a 1x1 conv to ``channels``, ``encoder_blocks`` depthwise-separable residual blocks.
2. **Differential reinforcement** (VideoFusion): each modality gets what the other has and
   it lacks, ``f_a + gate(f_a, d) * proj(d)`` with ``d = f_b - f_a``; the gate is a
   per-pixel, per-channel sigmoid times a squeeze-excitation channel attention of ``d``.
3. **Modality-guided fusion**: a per-pixel weight between the two reinforced modalities
   (a two-way softmax) plus a complementary 1x1 mix of both, then ``fusion_blocks``
   residual blocks.
4. **Temporal memory** (the causal form of bi-temporal co-attention): the previous frame's
   state -- hidden features ``h``, an 8-channel key, and the restored IR, restored visible
   and fused frames (unshuffled) -- is **aligned to the current frame** with a learned flow
   (estimated at 1/8 res from the two keys and their local correlation, bounded by
   ``max_flow``) and ``grid_sample``: the features at 1/4 res, the remembered frames at
   full res (``fullres_warp``; sampling their unshuffled grid would smear them by 4 px).
   A depthwise-separable convolutional gated unit (GRU without reset gate) merges the
   aligned ``h`` with the current fused features.
   ``state=None`` is an empty memory: the first frame of a stream, or every frame with
   memory off.
5. **Semantic branch** (1/8 res, ``semantic_channels``, dilated) and **visual branch**
   (1/4-res decoder on memory + current features + upsampled semantics).  Training
   distils them from a pretrained teacher through projection heads that live in the
   training code, never in the shipped weights.
6. **Head**: one 1x1 conv on [visual, IR encoder, visible encoder] features and the
   differences between the aligned previous restored frames and the current inputs
   predicts, for each of the 16 pixels of a 4x4 block: restoration residuals for IR and
   visible, per-pixel temporal gains, the coefficients of a local linear fusion, and
   gains of ``detail_bands`` full-res detail bands of each input (an
   adaptive unsharp mask: it deblurs the visible frame and smooths IR noise at full
   resolution, which 1/4-res features alone do poorly), and gains of ``deblur_filters``
   fixed deconvolutions of the visible frame (least-squares inverses of Gaussian blurs
   of ``DEBLUR_SIGMAS``): the network estimates the blur, the filters invert it, a
   per-pixel mix of them is a spatially varying non-blind deconvolution.
   With ``global_context``, every head map also gets a per-image bias from the image-wide
   means of the visual and encoder features: a clip's blur and brightness lift are the
   same everywhere, and local features alone estimate them poorly.  With
   ``band_statistics`` another per-image bias comes from the log mean energies of the
   inputs' detail bands and deconvolution residuals (``log_energies``): their ratios
   measure blur and noise the same way in any scene, where features learned on a few
   videos misjudge the blur of textures they never saw.
   Restored = input + residual + gain-weighted bands and deconvolutions, then pulled
   towards the aligned previous restored frame by the gain (a learned recurrent temporal
   filter: i.i.d. noise averages out where the past agrees, moving or occluded pixels
   keep the present) -- so a frame's noise and blur are repaired with help from its
   neighbours (TemCoCo's temporal cooperation).
7. **Band fusion** (``band_fusion``, the default): restore, then fuse.  Each restored frame
   is split into its two full-res detail bands and low-pass.  With ``multiscale_fusion``
   (the default) the fusion starts from the multi-scale rule, the training target's fusion
   of clean frames (``multiscale_band_fusion``): each detail band from the modality with
   more local energy, per full-res pixel, and the low-pass from a multi-scale fusion of
   the 1/4-res block means; a per-pixel weight ``w`` for each modality and band adds a
   learned correction ``w * band`` (zero at the start), plus an offset ``b``.  Weights from
   before it mix the bands around the plain average, ``b + sum of (0.5 + w) * band``:
   with weights from 1/4-res features such a mix cannot pick each pixel's stronger edge
   and blurs the details.  The fusion sees the restored frames without gradient, so the
   restoration loss alone shapes them and thermal edges cannot leak into the restored
   visible frame.  Without band fusion (older weights):
   ``fused = (0.5 + a_ir) * restored_ir + (0.5 + a_vis) * restored_vis + b``.
   With ``output_memory`` the fused frame is then pulled towards the aligned previous
   fused frame by its own per-pixel gain, the same recurrent filter as the restoration's:
   fusion weights that change from frame to frame no longer flicker where the scene
   stands still.  With ``output_memory_lowpass`` only the 4x4 block means are pulled:
   the full-res detail stays the current frame's, because a pull of the whole frame
   towards the resampled past blurs edges.  ``output_pull`` scales that gain: after
   training, ``training.steadiness`` sets the weakest pull that still steadies the output
   by a set share on training clips (a stronger pull costs edge strength on scenes the
   network never saw).
   Last, ``detail_gain`` g shows ``fused + g * (fused - L4 fused)``, an unsharp mask
   that is never trained: after training, ``training.sharpness`` sets g so the fused
   frames have their training target's edge strength (an L1-trained estimate of a frame
   it cannot fully restore is softer than the frame).  The memory keeps the unmasked frame.
   All of it is element-wise in the unshuffled 16-channel space; one ``pixel_shuffle(4)``
   brings the result to full size, and full-res edges come straight from the restored
   sources.

Only the (un)shuffles touch full resolution: even the detail bands are computed on the
unshuffled form (``block_low_passes``, exactly the full-size blur).  Feature maps are
channels-last and 1x1 convs run as matrix products over several inputs at once (``PW``):
on a CPU this is several times faster than NCHW convolutions on concatenated tensors.

``StreamingRunner`` carries the memory across a stream, with an optional look-ahead of k
frames (k frames of latency): frame t's output averages the forward-memory output with a
backward-memory output computed from frames t+k down to t (training randomly reverses
clips in time, so the memory works in both directions).  ``fuse_sequence`` does it
offline.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import asdict, dataclass, fields
from typing import Callable, NamedTuple, Sequence

import torch
import torch.nn.functional as F
from torch import nn

STRIDE = 8  # inputs are padded to a multiple of this (1/4-res features, 1/8-res branches)
CHANNELS_LAST = torch.channels_last


@dataclass
class ModelConfig:
    channels: int = 24           # feature width at 1/4 resolution
    semantic_channels: int = 32  # width of the 1/8-resolution semantic branch
    key_channels: int = 8        # per-frame key used to align the memory
    align_channels: int = 24     # width of the flow estimator (1/8 resolution)
    corr_radius: int = 3         # local correlation radius of the flow estimator (0: none)
    encoder_blocks: int = 1      # residual blocks per modality encoder
    fusion_blocks: int = 1       # residual blocks after the modality-guided fusion
    decoder_blocks: int = 1      # residual blocks in the visual branch
    max_flow: float = 16.0       # flow bound, in 1/4-resolution pixels
    detail_bands: int = 2        # full-res detail bands per modality (adaptive sharpening)
    band_fusion: bool = True     # fuse the restored frames band by band (see the head)
    deblur_filters: int = 3      # fixed visible deconvolution filters (DEBLUR_SIGMAS)
    output_memory: bool = True   # the fused frame, too, is pulled towards the aligned past
    output_memory_lowpass: bool = False  # ... only its 4x4 block means (detail stays current)
    global_context: bool = True  # image-wide feature means condition the head (blur level)
    fullres_warp: bool = True    # align remembered frames at full res (not block by block)
    multiscale_fusion: bool = True  # band fusion around the multi-scale rule (else the mean)
    band_statistics: bool = True  # image-wide band energies of the inputs condition the head
    detail_gain: float = 0.0     # output unsharp mask, set after training (training.sharpness)
    output_pull: float = 1.0     # scale of the output filter's gain, set after training
                                 # (training.steadiness; 1: as trained)
    colour: bool = True          # a chroma restorer (ChromaRestorer) for the colour output
    colour_channels: int = 16    # its feature width at 1/4 resolution

    def __post_init__(self) -> None:
        if not 0.0 <= self.output_pull <= 1.0:  # also rejects NaN
            raise ValueError(f"output_pull must be in [0, 1], got {self.output_pull}")

    @classmethod
    def from_dict(cls, data: dict) -> "ModelConfig":
        unknown = set(data) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown ModelConfig fields: {sorted(unknown)}")
        return cls(**data)

    def to_dict(self) -> dict:
        return asdict(self)


class MemoryState(NamedTuple):
    """What one frame hands to the next, all at 1/4 res: hidden features, alignment key,
    and the restored IR / visible and fused frames in unshuffled form (16 channels each)."""
    h: torch.Tensor
    key: torch.Tensor
    ir: torch.Tensor
    vis: torch.Tensor
    fused: torch.Tensor


class FusionOutput(NamedTuple):
    fused: torch.Tensor                  # (B,1,H,W) fused luminance, unclamped
    restored_ir: torch.Tensor | None     # (B,1,H,W) restored IR (None if not asked for)
    restored_vis: torch.Tensor | None    # (B,1,H,W) restored visible Y
    flow: torch.Tensor                   # (B,2,Hp/4,Wp/4) current->previous, 1/4-res px
    visual: torch.Tensor                 # (B,C,Hp/4,Wp/4) visual-branch features
    semantic: torch.Tensor               # (B,Cs,Hp/8,Wp/8) semantic-branch features


# --------------------------------------------------------------------------- blocks

class PW(nn.Module):
    """1x1 conv over the channel concatenation of its inputs, without building it.

    Each input is viewed as a (B*H*W, C_i) matrix (free for channels-last tensors) and
    multiplied by its slice of the weight; the output is channels-last.  An input given
    as None counts as zeros (skipped).
    """

    def __init__(self, cins: int | Sequence[int], cout: int, bias: bool = True):
        super().__init__()
        self.cins = [cins] if isinstance(cins, int) else list(cins)
        fan_in = sum(self.cins)
        bound = 1.0 / math.sqrt(fan_in)
        self.weight = nn.Parameter(torch.empty(cout, fan_in).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(cout).uniform_(-bound, bound)) if bias else None

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        if len(xs) != len(self.cins):
            raise ValueError(f"PW expects {len(self.cins)} inputs, got {len(xs)}")
        n, _, h, w = xs[0].shape
        out, start = None, 0
        for x, c in zip(xs, self.cins):
            if x is None:
                start += c
                continue
            rows = x.permute(0, 2, 3, 1).reshape(-1, c)
            wt = self.weight[:, start:start + c].t()
            if out is None:
                out = rows @ wt if self.bias is None else torch.addmm(self.bias, rows, wt)
            else:
                out = out.addmm_(rows, wt)
            start += c
        return out.view(n, h, w, -1).permute(0, 3, 1, 2)

    def forward_nchw(self, *xs: torch.Tensor | None, bias: torch.Tensor | None = None
                     ) -> torch.Tensor:
        """Same result, but NCHW-contiguous, so channel slices of it are contiguous.
        ``bias`` (B, cout): a per-sample bias on top of the layer's own (no extra pass)."""
        n, _, h, w = next(x for x in xs if x is not None).shape
        out, start = None, 0
        for x, c in zip(xs, self.cins):
            if x is not None:
                if x.is_contiguous():  # NCHW: (n, c, hw) is a view
                    cols = x.view(n, c, h * w)
                else:  # channels-last: (n, hw, c) is a view
                    cols = x.permute(0, 2, 3, 1).reshape(n, h * w, c).transpose(1, 2)
                wt = self.weight[:, start:start + c].expand(n, -1, -1)
                out = torch.bmm(wt, cols) if out is None else out.baddbmm_(wt, cols)
            start += c
        total = None if self.bias is None else self.bias.view(1, -1, 1)
        if bias is not None:
            total = bias.view(n, -1, 1) if total is None else total + bias.view(n, -1, 1)
        if total is not None:
            out = out.add_(total)
        return out.view(n, -1, h, w)


def _dw(c: int, stride: int = 1, dilation: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c, c, 3, stride=stride, padding=dilation, dilation=dilation, groups=c,
                     bias=False)


class DSConv(nn.Module):
    """Depthwise 3x3 then pointwise 1x1, optionally followed by ReLU."""

    def __init__(self, cin: int, cout: int, stride: int = 1, dilation: int = 1, act: bool = True):
        super().__init__()
        self.dw = _dw(cin, stride, dilation)
        self.pw = PW(cin, cout)
        self.act = act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pw(self.dw(x))
        return F.relu(x) if self.act else x


class ResBlock(nn.Module):
    """ReLU(x + DS(DS(x))): two depthwise-separable convs with a skip."""

    def __init__(self, c: int, dilation: int = 1):
        super().__init__()
        self.a = DSConv(c, c, dilation=dilation)
        self.b = DSConv(c, c, dilation=dilation, act=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x + self.b(self.a(x)))


class Encoder(nn.Module):
    """(B,16,H/4,W/4) unshuffled image -> (B,C,H/4,W/4) features."""

    def __init__(self, c: int, blocks: int):
        super().__init__()
        self.stem = PW(16, c)
        self.blocks = nn.Sequential(*[ResBlock(c) for _ in range(blocks)])

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return self.blocks(F.relu(self.stem(u)))


class DifferentialReinforcement(nn.Module):
    """f + gate * proj(other - f): add to one modality what the other has and it lacks."""

    def __init__(self, c: int):
        super().__init__()
        self.proj = DSConv(c, c, act=False)
        self.gate = PW([c, c], c)
        hidden = max(4, c // 4)
        self.se_reduce = PW(c, hidden)
        self.se_expand = PW(hidden, c)

    def forward(self, f: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
        d = other - f
        squeezed = F.relu(self.se_reduce(d.mean((2, 3), keepdim=True)))
        channel = torch.sigmoid(self.se_expand(squeezed))
        gate = torch.sigmoid(self.gate(f, d)) * channel
        return f + gate * self.proj(d)


class GuidedFusion(nn.Module):
    """Both modalities together: a per-pixel modality weight + a complementary 1x1 mix."""

    def __init__(self, c: int, blocks: int):
        super().__init__()
        self.weight = PW([c, c], 1)  # softmax over the two modalities == sigmoid of this
        self.mix = PW([c, c], c)
        self.blocks = nn.Sequential(*[ResBlock(c) for _ in range(blocks)])

    def forward(self, f_ir: torch.Tensor, f_vis: torch.Tensor) -> torch.Tensor:
        w_ir = torch.sigmoid(self.weight(f_ir, f_vis))
        fused = torch.addcmul(f_vis, w_ir, f_ir - f_vis) + self.mix(f_ir, f_vis)
        return self.blocks(F.relu(fused))


def local_correlation(a: torch.Tensor, b: torch.Tensor, radius: int) -> torch.Tensor:
    """Correlation of a with b shifted by up to ``radius`` pixels: (B, (2r+1)^2, H, W)."""
    h, w = a.shape[-2:]
    k = 2 * radius + 1
    b = F.pad(b, (radius,) * 4)
    scale = 1.0 / math.sqrt(a.shape[1])
    return torch.stack([(a * b[..., i:i + h, j:j + w]).sum(1) for i in range(k) for j in range(k)],
                       1) * scale


class Aligner(nn.Module):
    """Learned current -> previous flow, estimated at 1/8 res, returned at 1/4 res."""

    def __init__(self, key_channels: int, c: int, radius: int, max_flow: float):
        super().__init__()
        self.radius = radius
        self.max_flow = max_flow
        ncorr = (2 * radius + 1) ** 2 if radius > 0 else 0
        self.inp = PW([key_channels, key_channels] + ([ncorr] if ncorr else []), c)
        self.body = nn.Sequential(DSConv(c, c), DSConv(c, c, dilation=2), DSConv(c, c, dilation=4))
        self.out = DSConv(c, 2, act=False)
        nn.init.zeros_(self.out.pw.weight)
        nn.init.zeros_(self.out.pw.bias)

    def forward(self, key: torch.Tensor, prev_key: torch.Tensor) -> torch.Tensor:
        k1, k0 = F.avg_pool2d(key, 2), F.avg_pool2d(prev_key, 2)
        parts = [k1, k0]
        if self.radius > 0:
            corr = local_correlation(k1.contiguous(), k0.contiguous(), self.radius)
            parts.append(corr.contiguous(memory_format=CHANNELS_LAST))
        flow = self.out(self.body(F.relu(self.inp(*parts)))).contiguous()
        half = self.max_flow / 2  # bounded, in 1/8-res pixels
        flow = half * torch.tanh(flow / half)
        return 2.0 * F.interpolate(flow, scale_factor=2, mode="bilinear", align_corners=False)


def warp(x: torch.Tensor, flow: torch.Tensor, channels_last: bool = True) -> torch.Tensor:
    """Sample x at (pixel + flow); flow (B,2,H,W) in x's pixels, channels (dx, dy)."""
    _, _, h, w = x.shape
    ys = torch.arange(h, device=x.device, dtype=x.dtype)
    xs = torch.arange(w, device=x.device, dtype=x.dtype)
    gx = (xs.view(1, 1, w) + flow[:, 0]) * (2.0 / w) + (1.0 / w - 1.0)
    gy = (ys.view(1, h, 1) + flow[:, 1]) * (2.0 / h) + (1.0 / h - 1.0)
    out = F.grid_sample(x, torch.stack([gx, gy], -1), mode="bilinear", padding_mode="border",
                        align_corners=False)
    return out.contiguous(memory_format=CHANNELS_LAST if channels_last else torch.contiguous_format)


def warp_blocks(u: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Warp unshuffled frames (B,16k,h,w) by a 1/4-res flow at *full* resolution.

    Bilinear sampling of the unshuffled grid itself mixes each pixel with the pixel of
    the same phase one block (4 px) away: a 1-px shift comes out as a 4-px smear, which
    blurs everything the memory remembers.  Shuffling to full size, warping there with
    the upsampled flow and unshuffling again keeps sub-block motion exact."""
    full_flow = 4.0 * F.interpolate(flow, scale_factor=4, mode="bilinear", align_corners=False)
    return F.pixel_unshuffle(warp(F.pixel_shuffle(u, 4), full_flow, False), 4)


class ConvGRU(nn.Module):
    """Gated update of the aligned memory h with the current features x.

    A minimal gated unit (one update gate, no reset gate) with depthwise-separable
    gates: h' = h + z * (n - h), z = sigmoid(PW(dw x, dw h)), n = tanh(PW(dw x, dw h)).
    """

    def __init__(self, c: int):
        super().__init__()
        self.dw_x, self.dw_h = _dw(c), _dw(c)
        self.z = PW([c, c], c)
        self.n = PW([c, c], c)

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        dx, dh = self.dw_x(x), self.dw_h(h)
        z = torch.sigmoid(self.z(dx, dh))
        n = torch.tanh(self.n(dx, dh))
        return torch.addcmul(h, z, n - h)


class ChromaRestorer(nn.Module):
    """Restores the Cr/Cb planes of a degraded RGB frame (deblur, dehaze) for the output.

    The fused frame takes its colour from the visible camera, so its chroma carries the
    visible frame's blur and haze.  Per frame, without memory, at half resolution (colour
    is seen at low resolution; cameras send 4:2:0 chroma), on the 4x4-unshuffled grid:
    features of the visible Y, Cr and Cb, an image-wide context (the blur is the same
    everywhere), and a head that gives each chroma plane a residual plus per-pixel gains
    of the fixed deconvolutions of the luminance path (``block_deblur_residuals``).  It
    reads the degraded frame only, so it never changes the fused luminance.
    """

    def __init__(self, c: int, deblur_filters: int):
        super().__init__()
        self.deblur_filters = deblur_filters
        self.stem = PW([16, 16, 16], c)
        self.body = ResBlock(c)
        self.context = PW(c, 2 * (1 + deblur_filters) * 16, bias=False)
        self.head = PW(c, 2 * (1 + deblur_filters) * 16)
        for layer in (self.context, self.head):  # starts as the identity
            nn.init.zeros_(layer.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, vis_y: torch.Tensor, crcb: torch.Tensor) -> torch.Tensor:
        """(B,1,H,W) degraded Y and (B,2,H,W) Cr/Cb in [0, 1] -> restored (B,2,H,W)."""
        h, w = crcb.shape[-2:]
        # at half resolution, like 4:2:0 chroma: a quarter of the cost; the correction is
        # upsampled onto the full-res chroma, so an idle branch is the identity
        half = F.avg_pool2d(_pad(torch.cat([vis_y, crcb], 1)), 2)
        u_y, u_cr, u_cb = F.pixel_unshuffle(half, 4).view(half.shape[0], 3, 16, -1,
                                                          half.shape[-1] // 4).unbind(1)
        feats = self.body(F.relu(self.stem(*(t.contiguous(memory_format=CHANNELS_LAST)
                                             for t in (u_y, u_cr, u_cb)))))
        context = self.context.forward_nchw(feats.mean((2, 3), keepdim=True)).flatten(1)
        maps = self.head.forward_nchw(feats, bias=context).split(16, 1)
        per_plane = 1 + self.deblur_filters
        corrections = []
        for i, u in enumerate((u_cr, u_cb)):
            residual, *gains = maps[i * per_plane:(i + 1) * per_plane]
            r = residual
            if gains:
                deblurred = block_deblur_residuals(u.contiguous(), self.deblur_filters)
                for gain, band in zip(gains, deblurred.split(16, 1)):
                    r = torch.addcmul(r, gain, band)
            corrections.append(r)
        correction = F.pixel_shuffle(torch.cat(corrections, 1), 4)
        correction = F.interpolate(correction, scale_factor=2, mode="bilinear",
                                   align_corners=False)
        return crcb + correction[..., :h, :w]


# --------------------------------------------------------------------------- network

class StreamingFusionNet(nn.Module):
    def __init__(self, config: ModelConfig | None = None):
        super().__init__()
        cfg = self.config = config or ModelConfig()
        if not 0 <= cfg.detail_bands <= len(BAND_SCALES):
            raise ValueError(f"detail_bands must be 0..{len(BAND_SCALES)}, got {cfg.detail_bands}")
        if not 0 <= cfg.deblur_filters <= len(DEBLUR_SIGMAS):
            raise ValueError(f"deblur_filters must be 0..{len(DEBLUR_SIGMAS)}, "
                             f"got {cfg.deblur_filters}")
        if cfg.band_fusion and cfg.multiscale_fusion and cfg.detail_bands != len(BAND_SCALES):
            raise ValueError(f"multiscale_fusion needs detail_bands={len(BAND_SCALES)} "
                             f"(got {cfg.detail_bands}) or band_fusion off")
        c, cs = cfg.channels, cfg.semantic_channels
        self.enc_ir = Encoder(c, cfg.encoder_blocks)
        self.enc_vis = Encoder(c, cfg.encoder_blocks)
        self.reinforce_ir = DifferentialReinforcement(c)
        self.reinforce_vis = DifferentialReinforcement(c)
        self.fusion = GuidedFusion(c, cfg.fusion_blocks)
        # temporal memory
        self.key = PW(c, cfg.key_channels)
        self.align = Aligner(cfg.key_channels, cfg.align_channels, cfg.corr_radius, cfg.max_flow)
        self.gru = ConvGRU(c)
        # semantic branch (1/8 res) and visual branch (1/4 res)
        self.semantic = nn.Sequential(DSConv(c, cs, stride=2), ResBlock(cs, dilation=2))
        self.semantic_up = PW(cs, c)
        self.visual_in = PW([c, c], c)
        self.visual = nn.Sequential(*[ResBlock(c) for _ in range(cfg.decoder_blocks)])
        # head: for each pixel of a 4x4 block, values grouped by value: IR and visible
        # restoration residuals, IR and visible temporal gains, the fusion weights of each
        # modality (one per band and one for the low-pass with band_fusion, else one),
        # the fusion offset b; then a gain per input detail band and modality, one per
        # deblur filter, and the fused frame's temporal gain (output_memory).  Inputs:
        # visual, IR and visible encoder features, and the differences between the aligned
        # previous restored frames and the current inputs.
        self.head = PW([c, c, c, 16, 16], self.head_maps() * 16)
        nn.init.normal_(self.head.weight, std=1e-3)
        nn.init.zeros_(self.head.bias)
        with torch.no_grad():
            self.head.bias[32:64] = -1.0  # temporal gains start at sigmoid(-1) = 0.27
            if cfg.output_memory:  # the fused frame's temporal gain (last map): 0.12
                self.head.bias[-16:] = -2.0
        # global context: a per-image bias of every head map from the image-wide means of
        # the visual and encoder features.  A clip's blur and brightness lift are the same
        # everywhere; local features alone estimate them poorly.  Zero at the start.
        self.context = PW([c, c, c], self.head_maps() * 16, bias=False) \
            if cfg.global_context else None
        if self.context is not None:
            nn.init.zeros_(self.context.weight)
        # band statistics: a per-image bias of every head map from the log energies of the
        # inputs' detail bands and deconvolution residuals.  Their ratios measure blur and
        # noise whatever the scene: features learned on a few videos judge the blur of
        # unseen textures poorly (and then hardly deblur).  Zero at the start.
        self.statistics = nn.Linear(self.band_statistic_count(), self.head_maps() * 16,
                                    bias=False) if cfg.band_statistics else None
        if self.statistics is not None:
            nn.init.zeros_(self.statistics.weight)
        # colour output: restores the visible frame's chroma (independent of the rest)
        self.chroma = ChromaRestorer(cfg.colour_channels, max(cfg.deblur_filters, 1)) \
            if cfg.colour else None

    def fusion_weights(self) -> int:
        """Fusion weights per modality: one per restored band plus the low-pass, or one."""
        return self.config.detail_bands + 1 if self.config.band_fusion else 1

    def head_maps(self) -> int:
        """Head outputs per pixel of a 4x4 block (each is 16 channels)."""
        return (5 + 2 * self.fusion_weights() + 2 * self.config.detail_bands
                + self.config.deblur_filters + int(self.config.output_memory))

    def band_statistic_count(self) -> int:
        """Image-wide statistics of the band-statistics bias: one per detail band of each
        input and one per deconvolution residual."""
        return 2 * self.config.detail_bands + self.config.deblur_filters

    def restore_chroma(self, vis_y: torch.Tensor, crcb: torch.Tensor) -> torch.Tensor:
        """Restored Cr/Cb (B,2,H,W) of a degraded frame; unchanged without a colour branch."""
        return crcb if self.chroma is None else self.chroma(vis_y, crcb)

    def param_count(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def forward(self, ir: torch.Tensor, vis_y: torch.Tensor, state: MemoryState | None = None,
                restored: bool = True) -> tuple[FusionOutput, MemoryState]:
        """Fuse one frame.  ``restored=False`` skips the restored IR/visible outputs."""
        if ir.shape != vis_y.shape or ir.dim() != 4 or ir.shape[1] != 1:
            raise ValueError(f"ir and vis_y must both be (B,1,H,W), got {tuple(ir.shape)} "
                             f"and {tuple(vis_y.shape)}")
        h, w = ir.shape[-2:]
        # unshuffled inputs: NCHW for the per-pixel head math, channels-last for the encoders
        x_ir, x_vis = _pad(ir), _pad(vis_y)
        u_ir, u_vis = F.pixel_unshuffle(x_ir, 4), F.pixel_unshuffle(x_vis, 4)
        e_ir = self.enc_ir(u_ir.contiguous(memory_format=CHANNELS_LAST))
        e_vis = self.enc_vis(u_vis.contiguous(memory_format=CHANNELS_LAST))
        f_ir = self.reinforce_ir(e_ir, e_vis)
        f_vis = self.reinforce_vis(e_vis, e_ir)
        g = self.fusion(f_ir, f_vis)

        key = self.key(g)
        if state is None:
            h_prev, p_ir, p_vis, p_fused = torch.zeros_like(g), None, None, None
            flow = g.new_zeros((g.shape[0], 2) + g.shape[-2:])
        else:
            if state.h.shape != g.shape:
                raise ValueError(f"memory state is for features {tuple(state.h.shape)}, this "
                                 f"frame needs {tuple(g.shape)}: reset the memory when the "
                                 "frame size changes")
            flow = self.align(key, state.key)
            h_prev = warp(state.h, flow)
            frames = [state.ir, state.vis] + ([state.fused] if self.config.output_memory else [])
            if self.config.fullres_warp:
                p_ir, p_vis, *p_fused = warp_blocks(torch.cat(frames, 1), flow).split(16, 1)
            else:  # weights from before it: each 4x4 block's phases warped on their own
                p_ir, p_vis, *p_fused = (warp(x, flow, False) for x in frames)
            p_fused = p_fused[0] if p_fused else None
        mem = self.gru(g, h_prev)

        sem = self.semantic(mem)
        up = F.interpolate(self.semantic_up(sem), size=mem.shape[-2:], mode="bilinear",
                           align_corners=False)
        visual = self.visual(F.relu(self.visual_in(mem, g) + up))

        # everything below is per pixel, in the unshuffled space (16 channels = 4x4 block)
        dp_ir = None if p_ir is None else p_ir - u_ir
        dp_vis = None if p_vis is None else p_vis - u_vis
        nw, nb, nd = self.fusion_weights(), self.config.detail_bands, self.config.deblur_filters
        bands_ir, bands_vis = block_detail_bands(u_ir, nb), block_detail_bands(u_vis, nb)
        deblurred = block_deblur_residuals(u_vis, nd).split(16, 1) if nd else []
        context = None
        if self.context is not None:  # a per-image bias of the head
            means = [t.mean((2, 3), keepdim=True) for t in (visual, e_ir, e_vis)]
            context = self.context.forward_nchw(*means).flatten(1)
        if self.statistics is not None:
            energies = log_energies([*bands_ir, *bands_vis, *deblurred]).to(visual.dtype)
            stats = self.statistics(energies)
            context = stats if context is None else context + stats
        # (B,16*k,H/4,W/4)
        maps = self.head.forward_nchw(visual, e_ir, e_vis, dp_ir, dp_vis, bias=context)
        d_ir, d_vis, g_ir, g_vis, *rest = maps.split(16, 1)
        w_ir, w_vis = rest[:nw], rest[nw:2 * nw]
        b, *k = rest[2 * nw:]
        g_fused = k[2 * nb + nd] if self.config.output_memory else None
        r_ir, r_vis = u_ir + d_ir, u_vis + d_vis
        # per-pixel gains of full-res detail bands:
        for gain, band in zip(k[:nb], bands_ir):  # > 0 sharpens
            r_ir = torch.addcmul(r_ir, gain, band)
        for gain, band in zip(k[nb:2 * nb], bands_vis):  # < 0 smooths
            r_vis = torch.addcmul(r_vis, gain, band)
        for gain, residual in zip(k[2 * nb:2 * nb + nd], deblurred):  # per-pixel mix of
            r_vis = torch.addcmul(r_vis, gain, residual)  # fixed deconvolutions
        if state is not None:  # recurrent temporal filter: pull towards the aligned past
            r_ir = torch.addcmul(r_ir, torch.sigmoid(g_ir), p_ir - r_ir)
            r_vis = torch.addcmul(r_vis, torch.sigmoid(g_vis), p_vis - r_vis)
        if self.config.band_fusion and self.config.multiscale_fusion:
            # Restore, then fuse (see below), starting from the multi-scale rule per
            # full-res pixel; the learned weights correct it.
            fused = multiscale_band_fusion(r_ir.detach(), r_vis.detach(), w_ir, w_vis, nb) + b
        elif self.config.band_fusion:
            # Restore, then fuse: the fusion sees the restored frames as given (no gradient),
            # so restoration is trained to restore alone and cannot smuggle one modality's
            # edges into the other; each band and the low-pass get their own weights.
            # sum_j (0.5 + w_j) * band_j, rewritten with the band telescoping as
            # (0.5 + w_0) * x + sum_s (w_s - w_{s-1}) * L_s x: fewer passes
            fused = b
            for weights, r in ((w_ir, r_ir), (w_vis, r_vis)):
                r = r.detach()
                fused = torch.addcmul(fused, 0.5 + weights[0], r)
                for j, low in enumerate(block_low_passes(r, nb)):
                    fused = torch.addcmul(fused, weights[j + 1] - weights[j], low)
        else:
            fused = (0.5 + w_ir[0]) * r_ir + (0.5 + w_vis[0]) * r_vis + b
        if p_fused is not None:  # the same recurrent filter on the output: no flicker from
            # frame-to-frame changes of the fusion weights where the scene stands still
            pull = p_fused - fused
            if self.config.output_memory_lowpass:  # the whole frame pulled towards a warped
                # (resampled, never exactly aligned) past costs edge strength (16-22 % of
                # Qabf in two from-scratch runs); block means carry the flicker
                pull = pull.mean(1, keepdim=True)
            pull_gain = torch.sigmoid(g_fused)
            if self.config.output_pull != 1.0:
                pull_gain = pull_gain * self.config.output_pull
            fused = torch.addcmul(fused, pull_gain, pull)

        def full(x: torch.Tensor) -> torch.Tensor:
            return F.pixel_shuffle(x, 4)[..., :h, :w]

        shown = fused  # the memory keeps the unsharpened frame: the mask never compounds
        if self.config.detail_gain:
            shown = torch.add(fused, block_output_detail(fused), alpha=self.config.detail_gain)
        out = FusionOutput(full(shown), full(r_ir) if restored else None,
                           full(r_vis) if restored else None, flow, visual, sem)
        return out, MemoryState(mem, key, r_ir, r_vis, fused)


BAND_SCALES = (2, 4)  # block sizes of the detail bands' low-pass, full-res pixels
ENERGY_EPS = 1e-6  # detail energy (squared [0, 1] units) below which neither band wins


def multiscale_band_fusion(r_ir: torch.Tensor, r_vis: torch.Tensor,
                           w_ir: Sequence[torch.Tensor], w_vis: Sequence[torch.Tensor],
                           n: int) -> torch.Tensor:
    """Band fusion of two unshuffled (B,16,h,w) frames around the multi-scale fusion rule.

    The rule (``multiscale_fuse``, the training target's fusion of clean frames), in the
    unshuffled space: each of the ``n`` full-res detail bands takes a soft choice of the
    modality with more local energy, ``s_j = E(ir_j^2) / (E(ir_j^2) + E(vis_j^2))`` with
    ``E`` the 4x4 block mean, upsampled (a ~4-px window at full res); the low-pass, the
    4x4 block means upsampled, is the multi-scale fusion of the two 1/4-res block-mean
    images.  The
    learned weights ``w`` (zero: the rule alone) add ``w_ir[j] * ir_j + w_vis[j] * vis_j``
    per band and ``w[n] * low`` per modality.  A per-pixel mix of bands alone, with
    weights from 1/4-res features, cannot pick the stronger edge of each pixel: it blurs
    the details and loses contrast (VIF) even on clean frames."""
    lows_ir, lows_vis = block_low_passes(r_ir, n), block_low_passes(r_vis, n)
    fused = 0.0
    for j, (a, v) in enumerate(zip(block_detail_bands_from(r_ir, lows_ir),
                                   block_detail_bands_from(r_vis, lows_vis))):
        e_a = _upsample_blocks((a * a).mean(1, keepdim=True)) + ENERGY_EPS
        e_v = _upsample_blocks((v * v).mean(1, keepdim=True)) + ENERGY_EPS
        term = torch.addcmul(torch.addcmul(a * w_ir[j], e_a / (e_a + e_v), a - v),
                             1 + w_vis[j], v)
        fused = fused + term
    # 4x4 block means, in float32: the rule squares values in 0..255 (half overflows)
    means = [r.mean(1, keepdim=True).float() for r in (r_ir, r_vis)]
    # the 4 levels of the full-res rule: 2 full-res bands here, 2 levels at 1/4 res
    fused = fused + _upsample_blocks(multiscale_fuse(*means, levels=2).to(r_ir.dtype))
    for w, lows in ((w_ir[n], lows_ir), (w_vis[n], lows_vis)):
        fused = torch.addcmul(fused, w, lows[-1])
    return fused


def log_energies(maps: Sequence[torch.Tensor]) -> torch.Tensor:
    """(B, len(maps)): log of each (B,C,h,w) map's mean square (float32, so that half
    precision neither overflows nor underflows; 1e-8 is far below 8-bit quantisation)."""
    return torch.stack([m.float().square().mean((1, 2, 3)) for m in maps], 1
                       ).clamp_min(1e-8).log()


def _upsample_blocks(m: torch.Tensor) -> torch.Tensor:
    """(B,1,h,w) block means -> (B,16,h,w) unshuffled bilinear x4 upsampling (``L4``)."""
    return F.conv2d(F.pad(m, (1, 1, 1, 1), mode="replicate"), _stencil(4, m))


def block_detail_bands_from(u: torch.Tensor, lows: list[torch.Tensor]) -> list[torch.Tensor]:
    """Detail bands of an unshuffled image from its ``block_low_passes``."""
    return [previous - low for previous, low in zip([u] + lows[:-1], lows)]


def output_detail(x: torch.Tensor) -> torch.Tensor:
    """``x - L4 x`` of (B,1,H,W) frames, any size: what ``ModelConfig.detail_gain`` scales."""
    h, w = x.shape[-2:]
    return F.pixel_shuffle(block_output_detail(F.pixel_unshuffle(_pad(x), 4)), 4)[..., :h, :w]


def block_output_detail(u: torch.Tensor) -> torch.Tensor:
    """``output_detail`` of a (B,16,h,w) unshuffled image, unshuffled (``L4`` straight
    from the block means: the frame's hot path skips ``L2``)."""
    return u - _upsample_blocks(u.mean(1, keepdim=True))


def detail_bands(x: torch.Tensor, n: int) -> list[torch.Tensor]:
    """``x - L2 x, L2 x - L4 x``: n detail bands of (B,1,H,W), finest first (H, W: x4).

    ``Ls`` is the s x s block mean upsampled bilinearly: a blur of about s/2 pixels.
    A per-pixel gain on each band is an adaptive unsharp mask (deblurring where the gain
    is positive, denoising where it is negative) at full resolution.  The network works
    on the unshuffled form (``block_detail_bands``); this is the same at full size."""
    u = F.pixel_unshuffle(x, 4)
    return [F.pixel_shuffle(band, 4) for band in block_detail_bands(u, n)]


def block_detail_bands(u: torch.Tensor, n: int) -> list[torch.Tensor]:
    """``detail_bands`` of a (B,16,h,w) unshuffled image, unshuffled."""
    return block_detail_bands_from(u, block_low_passes(u, n))


def block_low_passes(u: torch.Tensor, n: int) -> list[torch.Tensor]:
    """``L2 x, L4 x`` (the first n) of the image x = pixel_shuffle(u, 4), computed on its
    (B,16,h,w) unshuffled form ``u`` and returned unshuffled.

    Exactly ``pixel_unshuffle(interpolate(avg_pool2d(x, s), scale_factor=s, bilinear), 4)``
    without touching full resolution: the block means are channel means of ``u``, and
    each of the 16 output phases of the bilinear upsampling is a fixed 3x3 stencil on the
    1/4-res grid (border pixels padded so that they clamp like ``interpolate``).  Several
    times cheaper on a CPU than the full-size form."""
    if n <= 0:
        return []
    b, _, h, w = u.shape
    # the 2x2 block means, as (B, a, b, h, w): half-res pixel (2p + a, 2q + b)
    half = u.view(b, 2, 2, 2, 2, h, w).sum(4).sum(2) * 0.25  # sum().sum(): fast on a CPU
    out = [_upsample_half(half)]
    if n > 1:
        out.append(_upsample_blocks(half.sum(2).sum(1).unsqueeze(1) * 0.25))
    return out


def _upsample_half(half: torch.Tensor) -> torch.Tensor:
    """(B,2,2,h,w) half-res phases -> (B,16,h,w) unshuffled x2 bilinear upsampling."""
    b, _, _, h, w = half.shape
    # pad one 1/4-res pixel per side; its outer phase repeats the edge half-res pixel
    left = half[:, :, 0:1, :, 0:1].expand(b, 2, 2, h, 1)
    right = half[:, :, 1:2, :, w - 1:w].expand(b, 2, 2, h, 1)
    half = torch.cat([left, half, right], -1)
    top = half[:, 0:1, :, 0:1].expand(b, 2, 2, 1, w + 2)
    bottom = half[:, 1:2, :, h - 1:h].expand(b, 2, 2, 1, w + 2)
    half = torch.cat([top, half, bottom], -2).reshape(b, 4, h + 2, w + 2)
    return F.conv2d(half, _stencil(2, half))


_STENCILS: dict[tuple, torch.Tensor] = {}


def _stencil(scale: int, like: torch.Tensor) -> torch.Tensor:
    """Fixed conv weights of the bilinear x``scale`` upsampling, per output phase.

    scale 4: (16, 1, 3, 3) on the 1/4-res block means; scale 2: (16, 4, 3, 3) on the
    half-res phases.  Output row phase i samples 1/4-res row p + (2i - 3) / 8 (scale 4)
    or half-res row 2p + (2i - 1) / 4 (scale 2); weights per (row offset, phase)."""
    key = (scale, like.dtype, like.device)
    if key not in _STENCILS:
        if scale == 4:  # rows[i][offset + 1]
            rows = torch.tensor([[3, 5, 0], [1, 7, 0], [0, 7, 1], [0, 5, 3]],
                                dtype=torch.float64).view(4, 1, 3) / 8
        else:  # rows[i][phase][offset + 1]
            rows = torch.zeros(4, 2, 3, dtype=torch.float64)
            rows[0, 1, 0], rows[0, 0, 1] = 0.25, 0.75
            rows[1, 0, 1], rows[1, 1, 1] = 0.75, 0.25
            rows[2, 0, 1], rows[2, 1, 1] = 0.25, 0.75
            rows[3, 1, 1], rows[3, 0, 2] = 0.75, 0.25
        # K[i*4+j, a*P+b, dy, dx] = rows[i][a][dy] * rows[j][b][dx]
        k = torch.einsum("iay,jbx->ijabyx", rows, rows)
        _STENCILS[key] = k.reshape(16, -1, 3, 3).to(like.dtype).to(like.device)
    return _STENCILS[key]


DEBLUR_SIGMAS = (0.8, 1.3, 2.0)  # Gaussian blurs the deconvolution filters invert, px


def block_deblur_residuals(u: torch.Tensor, n: int) -> torch.Tensor:
    """(B,16*n,h,w): ``D_k x - x`` for the first n deconvolution filters ``D_k`` of
    ``deblur_kernel``, on and to the unshuffled form (a 9x9 full-res kernel is exactly a
    3x3 conv on the 4x4-unshuffled grid; borders replicate whole blocks).  With per-pixel
    gains from the head they are a spatially varying non-blind deconvolution: the
    network estimates the blur, these filters invert it."""
    key = ("deblur", n, u.dtype, u.device)
    if key not in _STENCILS:
        residuals = [deblur_kernel(sigma) - _impulse(4) for sigma in DEBLUR_SIGMAS[:n]]
        _STENCILS[key] = torch.cat([_block_kernel(k) for k in residuals]).to(u)
    return F.conv2d(F.pad(u, (1, 1, 1, 1), mode="replicate"), _STENCILS[key])


def _impulse(radius: int) -> torch.Tensor:
    k = torch.zeros(2 * radius + 1, 2 * radius + 1, dtype=torch.float64)
    k[radius, radius] = 1.0
    return k


def _block_kernel(kernel: torch.Tensor) -> torch.Tensor:
    """A 9x9 full-res correlation kernel as (16, 16, 3, 3) weights on the unshuffled grid:
    output phase (i, j) of block (p, q) reads input phase (a, b) of block (p+dy, q+dx),
    which sits at offset (4 dy + a - i, 4 dx + b - j) full-res pixels."""
    phase, block = torch.arange(4), torch.arange(-1, 2)
    offset = 4 * block.view(1, 1, 3) + phase.view(1, 4, 1) - phase.view(4, 1, 1)  # (i, a, dy)
    valid = offset.abs() <= 4
    index = (offset + 4).clamp(0, 8)
    rows = index.view(4, 1, 4, 1, 3, 1).expand(4, 4, 4, 4, 3, 3)  # (i, j, a, b, dy, dx)
    cols = index.view(1, 4, 1, 4, 1, 3).expand(4, 4, 4, 4, 3, 3)
    mask = valid.view(4, 1, 4, 1, 3, 1) & valid.view(1, 4, 1, 4, 1, 3)
    return (kernel[rows, cols] * mask).reshape(16, 16, 3, 3)


def deblur_kernel(sigma: float, nsr: float = 0.01, radius: int = 4, grid: int = 32
                  ) -> torch.Tensor:
    """(2r+1, 2r+1) float64 least-squares inverse of a Gaussian blur of ``sigma``:
    minimises sum_f |G(f) K(f) - 1|^2 + nsr |K(f)|^2 over a frequency grid, with K
    supported on the kernel; unit DC gain.  ``nsr`` bounds the noise gain."""
    f = torch.fft.fftfreq(grid, dtype=torch.float64)
    fy, fx = (t.reshape(-1) for t in torch.meshgrid(f, f, indexing="ij"))
    blur = torch.exp(-2 * math.pi ** 2 * sigma ** 2 * (fx ** 2 + fy ** 2))[:, None]
    o = torch.arange(-radius, radius + 1, dtype=torch.float64)
    oy, ox = (t.reshape(-1) for t in torch.meshgrid(o, o, indexing="ij"))
    phase = 2 * math.pi * (fy[:, None] * oy + fx[:, None] * ox)
    cos, sin = torch.cos(phase), torch.sin(phase)  # K(f) = sum_m k_m (cos - i sin)
    a = torch.cat([blur * cos, -blur * sin, math.sqrt(nsr) * cos, -math.sqrt(nsr) * sin])
    b = torch.cat([torch.ones(len(f) ** 2, 1, dtype=torch.float64),
                   torch.zeros(3 * len(f) ** 2, 1, dtype=torch.float64)])
    k = torch.linalg.lstsq(a, b).solution[:, 0]
    return (k / k.sum()).view(2 * radius + 1, 2 * radius + 1)


_BINOMIAL = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0]) / 16  # cv2.pyrDown/pyrUp kernel


def _binomial(x: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
    """Separable 5-tap binomial filter, mirrored borders (cv2's BORDER_REFLECT_101)."""
    key = ("binomial", x.dtype, x.device)  # cached: no host copy per call (CUDA graphs)
    if key not in _STENCILS:
        _STENCILS[key] = _BINOMIAL.to(x)
    k = _STENCILS[key] * gain
    # reflect needs more than 2 pixels; tiny frames' 1/4-res block means can have fewer
    x = F.pad(x, (2, 2, 2, 2), mode="reflect" if min(x.shape[-2:]) > 2 else "replicate")
    return F.conv2d(F.conv2d(x, k.view(1, 1, 1, 5)), k.view(1, 1, 5, 1))


def _pyr_down(x: torch.Tensor) -> torch.Tensor:
    return _binomial(x)[..., ::2, ::2]


def _pyr_up(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    n, c, h, w = x.shape
    up = x.new_zeros((n, c, 2 * h, 2 * w))
    up[..., ::2, ::2] = x
    return _binomial(up[..., :size[0], :size[1]], gain=2.0)


def multiscale_fuse(ir: torch.Tensor, vis: torch.Tensor, levels: int = 4) -> torch.Tensor:
    """``fusers.classic.MultiScaleFuser`` on (N,1,H,W) [0, 1] tensors.

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


def _padded(n: int) -> int:
    return -(-n // STRIDE) * STRIDE


def _pad(x: torch.Tensor) -> torch.Tensor:
    h, w = x.shape[-2:]
    ph, pw = _padded(h) - h, _padded(w) - w
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph), mode="replicate")
    return x


# --------------------------------------------------------------------------- streaming

class StreamingRunner:
    """Feeds a stream of frames through the model, carrying the memory.

    ``lookahead=0``: ``push`` returns the fused frame of the pair just pushed.
    ``lookahead=k``: the output is delayed by k frames; ``push`` returns the fused frame
    of the pair pushed k calls earlier: call i returns frame max(0, i - k), so frame 0 is
    repeated while the window fills and every call returns exactly one frame; ``flush``
    returns the frames after the last one returned (``fuse_sequence`` does it all offline).
    A delayed frame t is the average of the forward-memory output (memory of frames ..t-1) and a
    backward-memory output (memory run from frame t+k down to t+1, then applied to t).

    Tensors are (1,1,H,W) in [0, 1] on the model's device.  ``use_memory=False`` runs every
    frame with an empty memory (and disables look-ahead, which needs the memory).
    ``step(ir, vis, state) -> (fused, new_state)`` replaces the model call (e.g. a traced
    version of it, see ``fusers/learned.py``).
    """

    def __init__(self, model: StreamingFusionNet, use_memory: bool = True, lookahead: int = 0,
                 step: Callable | None = None):
        if lookahead < 0:
            raise ValueError("lookahead must be >= 0")
        self.model = model
        self.step = step or self._model_step
        self.use_memory = use_memory
        self.lookahead = lookahead if use_memory else 0
        self.reset()

    def _model_step(self, ir: torch.Tensor, vis: torch.Tensor, state: MemoryState | None
                    ) -> tuple[torch.Tensor, MemoryState]:
        out, new_state = self.model(ir, vis, state, restored=False)
        return out.fused, new_state

    def reset(self) -> None:
        self.state: MemoryState | None = None
        self.window: deque = deque()  # (ir, vis, forward output); window[0] was output last

    @torch.no_grad()
    def _step(self, ir: torch.Tensor, vis: torch.Tensor) -> torch.Tensor:
        fused, state = self.step(ir, vis, self.state)
        self.state = state if self.use_memory else None
        return fused

    @torch.no_grad()
    def _with_lookahead(self, index: int) -> torch.Tensor:
        """Output for window[index], using the frames after it in the window."""
        state = None
        for j in range(len(self.window) - 1, index, -1):  # newest down to index+1
            _, state = self.step(self.window[j][0], self.window[j][1], state)
        ir, vis, forward = self.window[index]
        if state is None:
            return forward
        backward, _ = self.step(ir, vis, state)
        return 0.5 * (forward + backward)

    def push(self, ir: torch.Tensor, vis: torch.Tensor) -> torch.Tensor:
        fused = self._step(ir, vis)
        if self.lookahead == 0:
            return fused
        self.window.append((ir, vis, fused))
        if len(self.window) > self.lookahead + 1:
            self.window.popleft()
        # while the window fills, frame 0 is output with the look-ahead available so far
        return self._with_lookahead(0)

    def flush(self) -> list[torch.Tensor]:
        """The frames still held back by the look-ahead (empty when lookahead=0)."""
        outputs = [self._with_lookahead(i) for i in range(1, len(self.window))]
        self.window.clear()
        return outputs


@torch.no_grad()
def fuse_sequence(model: StreamingFusionNet, irs, viss, use_memory: bool = True,
                  lookahead: int = 0) -> list[torch.Tensor]:
    """Offline: exactly one fused (1,1,H,W) tensor per input pair, in order."""
    irs, viss = list(irs), list(viss)
    runner = StreamingRunner(model, use_memory=use_memory, lookahead=lookahead)
    outputs = [runner.push(ir, vis) for ir, vis in zip(irs, viss)]
    outputs += runner.flush()
    return outputs[len(outputs) - len(irs):]  # drop the warm-up repeats of frame 0
