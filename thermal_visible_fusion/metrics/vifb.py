"""
VIFB-compatible fusion metrics: a faithful numpy/OpenCV port of the VIFB toolbox.

VIFB (Zhang, Ye, Xiao, "VIFB: A Visible and Infrared Image Fusion Benchmark",
CVPRW 2020, github.com/xingchenzhang/VIFB, folder ``metrics/``) computes its
metrics with MATLAB scripts that differ from the textbook definitions in many
small ways.  This module reproduces those scripts *including their quirks* so
numbers can be compared with tables produced by the toolbox; it is validated
against the toolbox's own values in ``test/test_metrics_vifb.py``.  For the
conventional (paper-style) metrics use :mod:`thermal_visible_fusion.metrics.image`.

How VIFB calls them: ``metricsX(imgVI, imgIR, fused)`` on the ``uint8`` arrays
returned by MATLAB ``imread``.  Channel handling (identical in every script):

* fused has 1 channel -> one value; 3-channel sources are turned into gray by
  MATLAB ``rgb2gray`` inside the metric (rounded to uint8 where the script hands
  it a uint8 array, unrounded where the script converted to double first);
* fused has 3 channels -> the metric is computed per channel ``k`` with
  ``vis[..., k]`` and ``ir[..., k]`` (a 1-channel IR is used for every channel)
  and the three values are averaged.

Quirks reproduced (all verified against the toolbox values):

* ``Entropy``: 256-bin histogram of the fused channel, log2.
* ``Mutinf``: MI(VI,F) + MI(IR,F) with *natural* log, each image min-max
  normalised to [0, 1], then ``int16(x*255)`` (round half away from zero) into
  a 256x256 joint histogram.
* ``Variance``: population standard deviation (not variance).
* ``Avg_gradient``: MATLAB ``gradient`` (central differences inside, one-sided
  on the border), ``sum(sqrt((gx^2+gy^2)/2)) / ((r-1)(c-1))``.
* ``Spatial_frequency``: the script indexes the H x W x 3 double array as a
  2-D H x 3W matrix (channels R, G, B side by side), so row differences also
  run across the channel seams; RF and CF are divided by H*3W.
* ``Edge_intensity``: mean Sobel magnitude (``imfilter``, replicate border)
  over all pixels and channels.
* ``Qabf``: Xydeas-Petrovic (L=1, Tg=0.9994, kg=-15, Dg=0.5, Ta=0.9879,
  ka=-22, Da=0.8) with Sobel ``conv2(...,'same')`` (zero border), orientation
  ``atan(Sy/Sx)`` (pi/2 where Sx == 0); where ``g_S == g_F`` the strength ratio
  is ``g_F`` (not 1).  All three images on the 0..255 scale: the toolbox's
  values (shared ``vifb/metrics.json``) match this and *not* the literal text
  of the stored script, whose ``255*im2double(double(F))`` would scale the
  fused gradients by 255 (and give Qabf near 0).
* ``Ssim``: SSIM(VI,F) + SSIM(IR,F), 11x11 Gaussian window (sigma 1.5),
  ``filter2(...,'valid')``, C1=(0.01*255)^2, C2=(0.03*255)^2.
* ``Rmse``: mean over the two sources of ``sqrt(sum((S-F)^2)) / (H*W)`` (the
  square root is taken of the *sum*, not of the mean).
* ``Psnr``: ``20*log10(255/sqrt(MSE))`` with MSE the mean of the two
  ``Rmse``-style values above.
* ``Cross_entropy``: mean over the two sources of
  ``sum p_S log2(p_S / p_F)`` over bins where both are non-zero.

Decoding: the reference values were computed from MATLAB ``imread`` pixels;
OpenCV's libjpeg-turbo decodes the VIFB JPEGs to the same values closely enough
for 1e-3 relative agreement (see the test).  Arrays passed in follow OpenCV's
convention: 3-channel arrays are BGR, 2-D arrays are gray.
"""

from __future__ import annotations

from collections import OrderedDict
import math
from pathlib import Path
from typing import Callable
import zlib

import cv2
import numpy as np

__all__ = [
    "VIFB_METRICS",
    "compute_vifb",
    "read_image",
    "entropy",
    "mutinf",
    "variance",
    "avg_gradient",
    "spatial_frequency",
    "edge_intensity",
    "qabf",
    "ssim",
    "psnr",
    "rmse",
    "cross_entropy",
]

VIFB_METRICS: tuple[str, ...] = (
    "Entropy", "Mutinf", "Variance", "Avg_gradient", "Spatial_frequency",
    "Edge_intensity", "Qabf", "Ssim", "Psnr", "Rmse", "Cross_entropy",
)

# MATLAB rgb2gray weights (rows of inv(ntsc matrix)), applied to R, G, B.
_RGB2GRAY = np.array([0.298936021293775, 0.587043074451121, 0.114020904255103])


def read_image(path: str | Path) -> np.ndarray:
    """Read an image like MATLAB ``imread``: keep 1 or 3 channels, uint8 -> array (BGR)."""
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise FileNotFoundError(f"cannot read image {path}")
    if img.ndim == 3 and img.shape[2] == 4:
        img = img[..., :3]
    if img.dtype == np.uint16:
        img = (img.astype(np.float64) / 257.0).round().astype(np.uint8)
    return img


# --------------------------------------------------------------------------- helpers
def _as_rgb_planes(img: np.ndarray | str | Path) -> np.ndarray:
    """Return a contiguous float64 array (C, H, W), C in {1, 3}, channels in MATLAB order (RGB)."""
    if isinstance(img, (str, Path)):
        img = read_image(img)
    img = np.asarray(img)
    if img.dtype != np.uint8:
        if np.issubdtype(img.dtype, np.floating) and img.size and float(np.nanmax(img)) <= 1.0:
            img = img * 255.0  # [0, 1] float -> 0..255 (VIFB works on 0..255)
        img = np.clip(np.round(img), 0, 255)
    if img.ndim == 2:
        return img.astype(np.float64)[None]
    if img.ndim == 3 and img.shape[2] == 1:
        return np.ascontiguousarray(img.transpose(2, 0, 1), dtype=np.float64)
    if img.ndim == 3 and img.shape[2] >= 3:  # BGR -> RGB planes
        return np.ascontiguousarray(img[..., 2::-1].transpose(2, 0, 1), dtype=np.float64)
    raise ValueError(f"unsupported image shape {img.shape}")


def _rgb2gray(rgb: np.ndarray, rounded: bool) -> np.ndarray:
    """MATLAB ``rgb2gray``; ``rounded`` mimics a uint8 input (uint8 output)."""
    g = _RGB2GRAY[0] * rgb[0] + _RGB2GRAY[1] * rgb[1] + _RGB2GRAY[2] * rgb[2]
    return np.floor(g + 0.5) if rounded else g


def _channel_triples(vis: np.ndarray, ir: np.ndarray, fused: np.ndarray,
                     gray_rounded: bool = True):
    """(vis, ir, fused) 2-D planes the way VIFB pairs them (see the module docstring)."""
    if fused.shape[0] == 1:
        v = vis[0] if vis.shape[0] == 1 else _rgb2gray(vis, gray_rounded)
        i = ir[0] if ir.shape[0] == 1 else _rgb2gray(ir, gray_rounded)
        return [(v, i, fused[0])]
    return [(vis[k if vis.shape[0] > 1 else 0], ir[k if ir.shape[0] > 1 else 0], fused[k])
            for k in range(fused.shape[0])]


def _hist256(x: np.ndarray) -> np.ndarray:
    return np.bincount(x.astype(np.int64).ravel(), minlength=256)[:256].astype(np.float64)


def _entropy_from_counts(counts: np.ndarray, log: Callable = np.log2) -> float:
    p = counts[counts > 0] / counts.sum()
    return float(-(p * log(p)).sum())


def _is_integral(a: np.ndarray) -> bool:
    return bool(np.array_equal(a, np.floor(a)))


# --------------------------------------------------------------------------- per-plane quantities
_SOBEL_H1 = np.array([[1, 2, 1], [0, 0, 0], [-1, -2, -1]], np.float64)
_SOBEL_H3 = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], np.float64)


def _gauss_1d(size: int = 11, sigma: float = 1.5) -> np.ndarray:
    r = (size - 1) / 2.0
    x = np.arange(-r, r + 1)
    w = np.exp(-(x * x) / (2.0 * sigma * sigma))
    return w / w.sum()


# fspecial('gaussian', 11, 1.5) is the outer product of this normalised 1-D kernel
# (its eps-threshold removes nothing at this size), so SSIM filters separably.
_G1 = _gauss_1d()
_R = _G1.size // 2
_SSIM_C1, _SSIM_C2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2


def _ssim_filt(x: np.ndarray) -> np.ndarray:
    """filter2(w, x, 'valid')."""
    return cv2.sepFilter2D(x, cv2.CV_64F, _G1, _G1, borderType=cv2.BORDER_REFLECT)[_R:-_R, _R:-_R]


class _Plane:
    """One 2-D float64 plane and the quantities the scripts derive from it (computed lazily)."""

    def __init__(self, x: np.ndarray) -> None:
        self.x = x
        self._mi_q = self._hist = self._ssim = self._grad = None

    @property
    def mi_q(self) -> np.ndarray:
        """min-max normalise, then ``int16(a*255)`` (round half away from zero): bins 0..255."""
        if self._mi_q is None:
            a = self.x
            lo, hi = float(a.min()), float(a.max())
            if hi == lo:
                self._mi_q = np.zeros(a.shape, np.uint8)
            elif lo >= 0 and hi <= 255 and _is_integral(a):
                # The same float operations on the 256 possible values, then a look-up.
                lut = np.floor((np.arange(256, dtype=np.float64) - lo) / (hi - lo) * 255 + 0.5)
                self._mi_q = lut.astype(np.uint8)[a.astype(np.intp)]
            else:
                self._mi_q = np.floor((a - lo) / (hi - lo) * 255 + 0.5).astype(np.uint8)
        return self._mi_q

    @property
    def hist(self) -> np.ndarray:
        if self._hist is None:
            self._hist = _hist256(self.x)
        return self._hist

    @property
    def ssim(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(local mean, its square, local variance) with the 11x11 Gaussian, 'valid'."""
        if self._ssim is None:
            mu = _ssim_filt(self.x)
            mu2 = mu * mu
            self._ssim = (mu, mu2, _ssim_filt(self.x * self.x) - mu2)
        return self._ssim

    @property
    def grad(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """
        Sobel strength^2, strength and orientation (conv2 'same', zero border).

        Integer-valued planes are filtered in float32, which is exact for them
        (|S| <= 1020), so the script's exact tests ``Sx == 0`` and ``gA == gF``
        keep their meaning.
        """
        if self._grad is None:
            p = self.x.astype(np.float32) if _is_integral(self.x) else self.x
            dt = p.dtype.type
            # conv2 == correlation with the kernel flipped in both axes.
            sx = cv2.filter2D(p, -1, _SOBEL_H3[::-1, ::-1].astype(dt),
                              borderType=cv2.BORDER_CONSTANT)
            sy = cv2.filter2D(p, -1, _SOBEL_H1[::-1, ::-1].astype(dt),
                              borderType=cv2.BORDER_CONSTANT)
            g2 = sx * sx + sy * sy
            zero = sx == 0
            a = np.arctan(sy / np.where(zero, dt(1), sx))
            a[zero] = np.pi / 2
            self._grad = (g2, np.sqrt(g2), a)
        return self._grad


class _SourceCache:
    """
    Small LRU of source planes.

    The sources of one image pair are shared by every fused result judged against
    them (as when a benchmark scores many methods one image pair at a time).
    Keyed by content; holds at most one colour pair of planes up to
    ``max_pixels`` each (larger planes are not kept).
    """

    def __init__(self, size: int = 6, max_pixels: int = 1 << 20) -> None:
        self.size = size
        self.max_pixels = max_pixels
        self._items: OrderedDict[tuple, _Plane] = OrderedDict()

    def clear(self) -> None:
        self._items.clear()

    def get(self, x: np.ndarray) -> _Plane:
        if x.size > self.max_pixels:
            return _Plane(x)
        x = np.ascontiguousarray(x)
        key = (x.shape, zlib.adler32(x.data))  # fast; a hit is confirmed by comparing pixels
        plane = self._items.get(key)
        if plane is not None and np.array_equal(plane.x, x):
            self._items.move_to_end(key)
            return plane
        plane = self._items[key] = _Plane(x)
        self._items.move_to_end(key)
        if len(self._items) > self.size:
            self._items.popitem(last=False)
        return plane


_SOURCES = _SourceCache()


# --------------------------------------------------------------------------- two-source metrics
def _mutinf_pair(s: _Plane, f: _Plane) -> float:
    hab = np.bincount((s.mi_q.astype(np.intp) << 8 | f.mi_q).ravel(),
                      minlength=65536).astype(np.float64)
    ha = hab.reshape(256, 256).sum(axis=1)
    hb = hab.reshape(256, 256).sum(axis=0)
    return (_entropy_from_counts(ha, np.log) + _entropy_from_counts(hb, np.log)
            - _entropy_from_counts(hab, np.log))


def _ssim_pair(s: _Plane, f: _Plane) -> float:
    ua, ua2, sa = s.ssim
    ub, ub2, sb = f.ssim
    uab = ua * ub
    sab = _ssim_filt(s.x * f.x) - uab
    m = ((2 * uab + _SSIM_C1) * (2 * sab + _SSIM_C2)) / ((ua2 + ub2 + _SSIM_C1) *
                                                         (sa + sb + _SSIM_C2))
    return float(m.mean()) if m.size else float("nan")  # images under 11 px: NaN, as in MATLAB


def _cross_entropy_pair(s: _Plane, f: _Plane) -> float:
    n = s.x.size
    p1, p2 = s.hist / n, f.hist / n
    nz = (p1 != 0) & (p2 != 0)
    return float((p1[nz] * np.log2(p1[nz] / p2[nz])).sum())


def _qabf_q(gs2, gs, as_, gf2, gf, af) -> np.ndarray:
    tg, kg, dg, ta, ka, da = 0.9994, -15.0, 0.5, 0.9879, -22.0, 0.8
    big = gs2 > gf2
    G = np.where(big, gf, gs) / np.where(big, gs, np.where(gf2 > 0, gf, 1))
    eq = gs2 == gf2
    G[eq] = gf[eq]  # the script's quirk: ratio g_F (0 where both are 0)
    A = 1 - np.abs(as_ - af) * (2 / np.pi)
    return (tg * ta) / ((1 + np.exp(kg * (G - dg))) * (1 + np.exp(ka * (A - da))))


def _qabf_planes(a: _Plane, b: _Plane, f: _Plane) -> float:
    # 255*im2double(uint8) for all three images (see the module docstring);
    # 255*(x/255) == x exactly for every uint8 x, so the planes are used as they are.
    ga2, ga, aa = a.grad
    gb2, gb, ab = b.grad
    gf2, gf, af = f.grad
    deno = ga.sum(dtype=np.float64) + gb.sum(dtype=np.float64)
    if deno <= 0:
        return float("nan")
    nume = ((_qabf_q(ga2, ga, aa, gf2, gf, af) * ga).sum(dtype=np.float64)
            + (_qabf_q(gb2, gb, ab, gf2, gf, af) * gb).sum(dtype=np.float64))
    return float(nume / deno)


def _vifb_mse(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(np.square(a - b).sum()) / a.size)


_PAIR_FUNCS = {"Mutinf": (_mutinf_pair, 1.0), "Ssim": (_ssim_pair, 1.0),
               "Cross_entropy": (_cross_entropy_pair, 0.5)}


def _two_source_rounded(v: np.ndarray, i: np.ndarray, f: np.ndarray,
                        keys: set[str]) -> dict[str, float]:
    """Mutinf, Ssim, Cross_entropy (their scripts hand rgb2gray a uint8 source)."""
    fp = _Plane(f)
    sources = (_SOURCES.get(v), _SOURCES.get(i))
    return {key: weight * sum(func(s, fp) for s in sources)
            for key, (func, weight) in _PAIR_FUNCS.items() if key in keys}


def _two_source_double(v: np.ndarray, i: np.ndarray, f: np.ndarray,
                       keys: set[str]) -> dict[str, float]:
    """Qabf, Psnr, Rmse (their scripts convert the sources to double before rgb2gray)."""
    out = {}
    if "Qabf" in keys:
        out["Qabf"] = _qabf_planes(_SOURCES.get(v), _SOURCES.get(i), _Plane(f))
    if keys & {"Psnr", "Rmse"}:
        mes = (_vifb_mse(v, f) + _vifb_mse(i, f)) / 2.0
        out["Psnr"] = 20.0 * math.log10(255.0 / math.sqrt(mes)) if mes > 0 else float("inf")
        out["Rmse"] = mes
    return out


def _two_source(fused, ir, vis, keys: tuple[str, ...] | None = None) -> dict[str, float]:
    return _two_source_planes(*_prep(fused, ir, vis), keys)


def _two_source_planes(f: np.ndarray, i: np.ndarray, v: np.ndarray,
                       keys: tuple[str, ...] | None = None) -> dict[str, float]:
    """Channel-averaged two-source metrics (all, or ``keys``) of (C, H, W) planes."""
    acc: dict[str, list[float]] = {}
    groups = ((True, _two_source_rounded, {"Mutinf", "Ssim", "Cross_entropy"}),
              (False, _two_source_double, {"Qabf", "Psnr", "Rmse"}))
    for rounded, func, names in groups:
        wanted = names if keys is None else names & set(keys)
        if not wanted:
            continue
        for vk, ik, fk in _channel_triples(v, i, f, rounded):
            for key, val in func(vk, ik, fk, wanted).items():
                acc.setdefault(key, []).append(val)
    return {key: float(np.mean(vals)) for key, vals in acc.items()}


# --------------------------------------------------------------------------- one-image metrics
def _entropy1(f: np.ndarray) -> float:
    return _entropy_from_counts(_hist256(np.floor(f)))


def _variance1(f: np.ndarray) -> float:
    return float(np.sqrt(np.square(f - f.mean()).sum() / f.size))


def _avg_gradient(f: np.ndarray) -> float:
    _, r, c = f.shape
    vals = []
    for plane in f:
        gy, gx = np.gradient(plane)  # MATLAB gradient: central inside, one-sided at edges
        vals.append(np.sqrt((gx * gx + gy * gy) * 0.5).sum() / ((r - 1) * (c - 1)))
    return float(np.mean(vals))


def _spatial_frequency(f: np.ndarray) -> float:
    # MATLAB 2-D indexing of an H x W x C array == the H x (W*C) matrix [ch1 ch2 ch3].
    m2 = np.concatenate(list(f), axis=1)
    rf = np.square(np.diff(m2, axis=1)).sum() / m2.size
    cf = np.square(np.diff(m2, axis=0)).sum() / m2.size
    return float(np.sqrt(rf + cf))


def _edge_intensity(f: np.ndarray) -> float:
    tot = 0.0
    for plane in f:  # fspecial('sobel') with imfilter (correlation), replicate border
        gx = cv2.filter2D(plane, cv2.CV_64F, _SOBEL_H1, borderType=cv2.BORDER_REPLICATE)
        gy = cv2.filter2D(plane, cv2.CV_64F, _SOBEL_H1.T.copy(), borderType=cv2.BORDER_REPLICATE)
        tot += np.sqrt(gx * gx + gy * gy).sum()
    return float(tot / f.size)


def _mean_over_planes(func, f: np.ndarray) -> float:
    return float(np.mean([func(plane) for plane in f]))


# --------------------------------------------------------------------------- public API
def _prep(fused, ir, vis):
    f, i, v = _as_rgb_planes(fused), _as_rgb_planes(ir), _as_rgb_planes(vis)
    if not (f.shape[1:] == i.shape[1:] == v.shape[1:]):
        raise ValueError(f"image sizes differ: fused {f.shape[1:]}, ir {i.shape[1:]}, "
                         f"vis {v.shape[1:]}")
    return f, i, v


def entropy(fused, ir=None, vis=None) -> float:
    """VIFB ``metricsEntropy`` (bits, mean over channels)."""
    return _mean_over_planes(_entropy1, _as_rgb_planes(fused))


def variance(fused, ir=None, vis=None) -> float:
    """VIFB ``metricsVariance`` (population standard deviation, mean over channels)."""
    return _mean_over_planes(_variance1, _as_rgb_planes(fused))


def avg_gradient(fused, ir=None, vis=None) -> float:
    """VIFB ``metricsAvg_gradient``."""
    return _avg_gradient(_as_rgb_planes(fused))


def spatial_frequency(fused, ir=None, vis=None) -> float:
    """VIFB ``metricsSpatial_frequency`` (channels side by side, see module docstring)."""
    return _spatial_frequency(_as_rgb_planes(fused))


def edge_intensity(fused, ir=None, vis=None) -> float:
    """VIFB ``metricsEdge_intensity`` (mean Sobel magnitude)."""
    return _edge_intensity(_as_rgb_planes(fused))


def mutinf(fused, ir, vis) -> float:
    """VIFB ``metricsMutinf``: MI(VI,F) + MI(IR,F), natural log."""
    return _two_source(fused, ir, vis, ("Mutinf",))["Mutinf"]


def qabf(fused, ir, vis) -> float:
    """VIFB ``metricsQabf``."""
    return _two_source(fused, ir, vis, ("Qabf",))["Qabf"]


def ssim(fused, ir, vis) -> float:
    """VIFB ``metricsSsim``: SSIM(VI,F) + SSIM(IR,F)."""
    return _two_source(fused, ir, vis, ("Ssim",))["Ssim"]


def psnr(fused, ir, vis) -> float:
    """VIFB ``metricsPsnr``."""
    return _two_source(fused, ir, vis, ("Psnr",))["Psnr"]


def rmse(fused, ir, vis) -> float:
    """VIFB ``metricsRmse``."""
    return _two_source(fused, ir, vis, ("Rmse",))["Rmse"]


def cross_entropy(fused, ir, vis) -> float:
    """VIFB ``metricsCross_entropy``."""
    return _two_source(fused, ir, vis, ("Cross_entropy",))["Cross_entropy"]


def compute_vifb(fused, ir, vis) -> dict[str, float]:
    """
    All eleven VIFB metrics of ``fused`` against ``ir`` and ``vis``.

    Inputs are uint8 arrays as read by OpenCV (2-D gray or H x W x 3 BGR) or
    image paths.  Keys follow VIFB: Entropy, Mutinf, Variance, Avg_gradient,
    Spatial_frequency, Edge_intensity, Qabf, Ssim, Psnr, Rmse, Cross_entropy.
    """
    f, i, v = _prep(fused, ir, vis)
    out = {
        "Entropy": _mean_over_planes(_entropy1, f),
        "Variance": _mean_over_planes(_variance1, f),
        "Avg_gradient": _avg_gradient(f),
        "Spatial_frequency": _spatial_frequency(f),
        "Edge_intensity": _edge_intensity(f),
    }
    out.update(_two_source_planes(f, i, v))
    return {name: out[name] for name in VIFB_METRICS}
