"""
Image-fusion quality metrics of one fused frame against its two sources (ROS-free).

Twelve no-reference / two-source metrics used throughout the infrared-visible
fusion (IVIF) literature, vectorised with numpy/OpenCV: ``EN SD SF AG MI SCD VIF
Qabf SSIM PSNR CC Nabf``.  For bit-exact numbers of the VIFB benchmark (which
differ in many details) use :mod:`thermal_visible_fusion.metrics.vifb`.

Conventions
-----------
* **Input**: ``fused``, ``ir``, ``vis`` are arrays of equal height/width (or
  image paths).  3-channel arrays are BGR (OpenCV order) and are turned into gray
  with BT.601 (``cv2.cvtColor(..., COLOR_BGR2GRAY)``, rounded to uint8), so
  every metric works on one gray plane.  uint8 is used as it is; uint16 is
  divided by 257; float arrays are taken as 0..255 unless their maximum is
  <= 1, in which case they are scaled by 255.  Non-uint8 inputs are rounded
  and clipped to 0..255 uint8 first (histogram metrics need integer levels).
  Every metric works on the 0..255 scale.
* Two-source metrics take ``A`` = infrared, ``B`` = visible, ``F`` = fused.
* **EN**: Shannon entropy of the 256-bin gray histogram of F, in bits (log2).
* **SD**: population standard deviation of F.
* **SF**: ``sqrt(RF^2 + CF^2)``, ``RF^2 = sum((F[:,j]-F[:,j-1])^2) / (H*W)``
  (and likewise for columns): the MATLAB ``SF`` of the IVIF toolboxes (VIFB's
  ``Spatial_frequency`` on a gray image).
* **AG**: MATLAB ``gradient`` (central differences inside, one-sided on the
  border), ``sum(sqrt((gx^2 + gy^2)/2)) / ((H-1)(W-1))`` (VIFB's ``Avg_gradient``).
* **MI**: ``MI(F,A) + MI(F,B)`` from 256x256 joint histograms of the raw gray
  levels, in bits (log2).  ``MI(X,X) = EN(X)``.
* **SCD**: ``corr(F-B, A) + corr(F-A, B)`` (Aslantas & Bendes, 2015).
* **VIF**: ``VIFF(A,F) + VIFF(B,F)``, summed over the sources, each the
  pixel-domain multi-scale VIF (``vifp``, Sheikh & Bovik): 4 scales, Gaussian
  windows N = 17, 9, 5, 3 with sigma N/5, 'valid' filtering, 2x decimation
  between scales, ``sigma_n^2 = 2``, ratio of sums over all scales.  This is
  the convention of the MMIF / DDFM / CDDFuse evaluation code (``VIFF``).
* **Qabf**: Xydeas-Petrovic gradient-based edge preservation (L=1, Tg=0.9994,
  kg=-15, Dg=0.5, Ta=0.9879, ka=-22, Da=0.8), Sobel with zero border
  (MATLAB ``conv2(...,'same')``), orientation ``atan(Sy/Sx)``, relative
  strength ``min(g_S, g_F) / max(g_S, g_F)`` (1 where equal), weighted by the
  source gradient strengths.  Range 0..1.
* **SSIM**: ``(SSIM(F,A) + SSIM(F,B)) / 2`` -- the *mean* over the sources --
  each Wang et al. 2004 with an 11x11 Gaussian window (sigma 1.5), K1=0.01,
  K2=0.03, L=255, averaged over the 'valid' map.  Range -1..1.
* **PSNR**: ``10 log10(255^2 / MSE)`` with ``MSE = (MSE(F,A) + MSE(F,B)) / 2``
  (dB; ``inf`` when F equals both sources).
* **CC**: ``(corr(F,A) + corr(F,B)) / 2`` (Pearson).
* **Nabf**: the modified fusion-artifact measure of Kumar (2013, "Multifocus
  and multispectral image fusion based on pixel significance using discrete
  cosine harmonic wavelet transform", ``objective_fusion_perform_fn`` /
  ``analysis_nabf``): Sobel kernels / 8 on a mirror (reflect-101) extension,
  Td=2, wt_min=0.001, Lg=1.5, Nrg=0.9999, kg=19, sigma_g=0.5, Nra=0.9995,
  ka=22, sigma_a=0.5, counted where g_F exceeds both source strengths; lower
  is better.

Correlations of a constant image are defined as 0 (not NaN); VIF is 1.0 when
the reference has no variance at all (as ``compare_viff`` does for NaN).

Precision and speed: local moments for SSIM and VIF are computed in float32 on
128-centred planes and the gradient metrics (Qabf, Nabf, AG, SF) in float32
with float64 accumulation -- within ~3e-5 relative of a float64 evaluation.
:func:`compute_all` shares grayscale conversions, histograms, Gaussian
pyramids and gradients between metrics; all twelve take about 0.2 s of CPU for
a 640x480 frame.
"""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np

__all__ = [
    "METRICS",
    "HIGHER_IS_BETTER",
    "to_gray",
    "compute_all",
    "en",
    "sd",
    "sf",
    "ag",
    "mi",
    "scd",
    "vif",
    "qabf",
    "ssim",
    "psnr",
    "cc",
    "nabf",
    "entropy",
    "mutual_information",
    "ssim_pair",
    "vifp",
    "correlation",
]

METRICS: tuple[str, ...] = ("EN", "SD", "SF", "AG", "MI", "SCD", "VIF", "Qabf", "SSIM", "PSNR",
                            "CC", "Nabf")
HIGHER_IS_BETTER: dict[str, bool] = {m: m != "Nabf" for m in METRICS}


# --------------------------------------------------------------------------- input
def as_uint8(img: np.ndarray | str | Path) -> np.ndarray:
    """Convert an image (or path) to the 0..255 uint8 scale, channels kept (module conventions)."""
    if isinstance(img, (str, Path)):
        arr = cv2.imread(str(img), cv2.IMREAD_UNCHANGED)
        if arr is None:
            raise FileNotFoundError(f"cannot read image {img}")
        img = arr
    img = np.asarray(img)
    if img.dtype != np.uint8:
        if img.dtype == np.uint16:
            img = img.astype(np.float64) / 257.0
        elif np.issubdtype(img.dtype, np.floating):
            if img.size and float(np.nanmax(img)) <= 1.0:
                img = img * 255.0
        img = np.clip(np.rint(np.nan_to_num(img)), 0, 255).astype(np.uint8)
    return img


def to_gray(img: np.ndarray | str | Path) -> np.ndarray:
    """uint8 gray plane (BT.601 for colour input) following the module conventions."""
    img = as_uint8(img)
    if img.ndim == 3:
        if img.shape[2] == 1:
            img = img[..., 0]
        elif img.shape[2] == 3:
            img = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
        elif img.shape[2] == 4:
            img = cv2.cvtColor(img, cv2.COLOR_BGRA2GRAY)
        else:
            raise ValueError(f"unsupported channel count {img.shape[2]}")
    if img.ndim != 2:
        raise ValueError(f"unsupported image shape {img.shape}")
    return np.ascontiguousarray(img)


def _prep(fused, ir, vis) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    f, a, b = to_gray(fused), to_gray(ir), to_gray(vis)
    if not (f.shape == a.shape == b.shape):
        raise ValueError(f"image sizes differ: fused {f.shape}, ir {a.shape}, vis {b.shape}")
    return f, a, b


# --------------------------------------------------------------------------- building blocks
def _hist(u8: np.ndarray) -> np.ndarray:
    return np.bincount(u8.ravel(), minlength=256).astype(np.float64)


def _entropy_counts(counts: np.ndarray) -> float:
    n = counts.sum()
    p = counts[counts > 0] / n
    return float(-(p * np.log2(p)).sum())


def entropy(img) -> float:
    """Return the Shannon entropy, in bits, of the 256-bin histogram of a gray image."""
    return _entropy_counts(_hist(to_gray(img)))


def mutual_information(x, y) -> float:
    """MI (bits) between two gray images from their 256x256 joint histogram."""
    x, y = to_gray(x), to_gray(y)
    return _mi_u8(x, y, _entropy_counts(_hist(x)), _entropy_counts(_hist(y)))


def _mi_u8(x: np.ndarray, y: np.ndarray, hx: float, hy: float) -> float:
    joint = np.bincount((x.astype(np.intp) << 8 | y).ravel(), minlength=65536).astype(np.float64)
    return hx + hy - _entropy_counts(joint)


def correlation(x: np.ndarray, y: np.ndarray) -> float:
    """
    Pearson correlation of two arrays (0 if either is constant).

    Integer arrays (uint8 planes and their differences) use exact int64 moments;
    anything else float64.  No ``@``: BLAS threads are slow on a busy machine.
    """
    x = np.asarray(x).ravel()
    y = np.asarray(y).ravel()
    n = x.size
    if np.issubdtype(x.dtype, np.integer) and np.issubdtype(y.dtype, np.integer):
        xi, yi = x.astype(np.int32), y.astype(np.int32)  # |values| <= 510: products fit int32
        sx, sy = int(xi.sum(dtype=np.int64)), int(yi.sum(dtype=np.int64))
        sxx = int(np.square(xi).sum(dtype=np.int64))
        syy = int(np.square(yi).sum(dtype=np.int64))
        sxy = int((xi * yi).sum(dtype=np.int64))
        vx, vy = n * sxx - sx * sx, n * syy - sy * sy  # Python ints: exact
        den = math.sqrt(vx) * math.sqrt(vy)
        return (n * sxy - sx * sy) / den if den > 0 else 0.0
    x = x.astype(np.float64)
    y = y.astype(np.float64)
    xc, yc = x - x.mean(), y - y.mean()
    den = math.sqrt(float(np.square(xc).sum()) * float(np.square(yc).sum()))
    return float((xc * yc).sum()) / den if den > 0 else 0.0


def _gauss1d(n: int, sigma: float) -> np.ndarray:
    r = (n - 1) / 2.0
    x = np.arange(-r, r + 1)
    w = np.exp(-(x * x) / (2.0 * sigma * sigma))
    return (w / w.sum()).astype(np.float64)


_SSIM_G = _gauss1d(11, 1.5)
_SSIM_C1, _SSIM_C2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2


def _valid_filter(x: np.ndarray, g: np.ndarray) -> np.ndarray:
    """
    Separable Gaussian, 'valid' region only (MATLAB ``filter2(w, x, 'valid')``).

    Filtering runs in the input's precision; callers pass float32 planes centred
    on 128 (so second moments stay small and float32 keeps ~1e-6 relative
    accuracy on SSIM/VIF) -- both metrics only use local (co)variances and
    means that are shifted back.
    """
    r = g.size // 2
    out = cv2.sepFilter2D(x, -1, g.astype(x.dtype), g.astype(x.dtype),
                          borderType=cv2.BORDER_REFLECT)
    return out[r:-r, r:-r] if r else out


def _centred(u8: np.ndarray) -> np.ndarray:
    return u8.astype(np.float32) - np.float32(128)


def _ssim_stats(xc: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(centred local mean, local mean, local variance) of a centred plane."""
    mc = _valid_filter(xc, _SSIM_G)
    return mc, mc + np.float32(128), _valid_filter(xc * xc, _SSIM_G) - mc * mc


def _ssim_from(ac: np.ndarray, bc: np.ndarray, sa, sb) -> float:
    mca, mua, va = sa
    mcb, mub, vb = sb
    cov = _valid_filter(ac * bc, _SSIM_G) - mca * mcb
    num = (2 * mua * mub + _SSIM_C1) * (2 * cov + _SSIM_C2)
    den = (mua * mua + mub * mub + _SSIM_C1) * (va + vb + _SSIM_C2)
    return float((num / den).mean(dtype=np.float64))


def ssim_pair(x, y) -> float:
    """SSIM (Wang et al. 2004; 11x11 Gaussian sigma 1.5, 'valid' mean) of two gray images."""
    a, b = _centred(to_gray(x)), _centred(to_gray(y))
    return _ssim_from(a, b, _ssim_stats(a), _ssim_stats(b))


# VIF (pixel domain, multi-scale): windows per scale.
_VIF_WINDOWS = [_gauss1d(2 ** (4 - s + 1) + 1, (2 ** (4 - s + 1) + 1) / 5.0) for s in range(1, 5)]
_VIF_EPS = 1e-10
_VIF_SIGMA_NSQ = 2.0


def _vif_pyramid(x: np.ndarray) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per scale: (image at that scale, local mean, local variance)."""
    out = []
    for s, g in enumerate(_VIF_WINDOWS):
        if s > 0:
            x = _valid_filter(x, g)[::2, ::2]
        mu = _valid_filter(x, g)
        out.append((x, mu, _valid_filter(x * x, g) - mu * mu))
    return out


def _vif_from(ref_pyr, dist_pyr) -> float:
    """
    VIFF of the CDDFuse/MMIF ``compare_viff``.

    Its clean-up rules (gain 0 where sigma_ref^2 < eps, sigma_dist^2 < eps or the
    gain is negative) all zero the numerator term, so the term is evaluated only
    where ``sigma_ref^2, sigma_dist^2 >= eps`` and ``sigma_12 > 0``.
    """
    num = den = 0.0
    for g, (r, mu1, s1), (d, mu2, s2) in zip(_VIF_WINDOWS, ref_pyr, dist_pyr):
        s12 = _valid_filter(r * d, g) - mu1 * mu2
        s1 = np.maximum(s1, 0)
        s2 = np.maximum(s2, 0)
        gain = s12 / (s1 + _VIF_EPS)
        sv = np.maximum(s2 - gain * s12, _VIF_EPS)
        term = gain * gain * s1 / (sv + _VIF_SIGMA_NSQ)
        keep = (s1 >= _VIF_EPS) & (s2 >= _VIF_EPS) & (s12 > 0)
        num += float(np.log1p(term[keep]).sum(dtype=np.float64))
        den += float(np.log1p(np.where(s1 < _VIF_EPS, 0, s1) /
                              _VIF_SIGMA_NSQ).sum(dtype=np.float64))
    num /= math.log(10.0)
    den /= math.log(10.0)
    return num / den if den > 0 else 1.0


def vifp(ref, dist) -> float:
    """Pixel-domain multi-scale VIF of ``dist`` with ``ref`` as reference (one source)."""
    return _vif_from(_vif_pyramid(_centred(to_gray(ref))), _vif_pyramid(_centred(to_gray(dist))))


_SOBEL_H1 = np.array([[1, 2, 1], [0, 0, 0], [-1, -2, -1]], np.float32)
_SOBEL_H3 = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], np.float32)


def _qabf_grad(x32: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Strength and orientation with MATLAB ``conv2(x, h, 'same')`` (zero border)."""
    sx = cv2.filter2D(x32, -1, _SOBEL_H3[::-1, ::-1].copy(), borderType=cv2.BORDER_CONSTANT)
    sy = cv2.filter2D(x32, -1, _SOBEL_H1[::-1, ::-1].copy(), borderType=cv2.BORDER_CONSTANT)
    g = np.sqrt(sx * sx + sy * sy)
    zero = sx == 0
    a = np.arctan(sy / np.where(zero, np.float32(1), sx))
    a[zero] = np.float32(np.pi / 2)
    return g, a


def _qabf_from(gA, aA, gB, aB, gF, aF) -> float:
    tg, kg, dg, ta, ka, da = 0.9994, -15.0, 0.5, 0.9879, -22.0, 0.8

    def q(gs, as_):
        hi = np.maximum(gs, gF)
        ratio = np.where(hi > 0, np.minimum(gs, gF) / np.where(hi > 0, hi, 1), 1)
        orient = 1 - np.abs(as_ - aF) * np.float32(2 / np.pi)
        return (tg * ta) / ((1 + np.exp(kg * (ratio - dg))) * (1 + np.exp(ka * (orient - da))))

    den = gA.sum(dtype=np.float64) + gB.sum(dtype=np.float64)
    if den <= 0:
        return 0.0
    num = (q(gA, aA) * gA).sum(dtype=np.float64) + (q(gB, aB) * gB).sum(dtype=np.float64)
    return float(num / den)


_KUMAR_V = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], np.float32) / 8
_KUMAR_H = np.array([[-1, -2, -1], [0, 0, 0], [1, 2, 1]], np.float32) / 8


def _nabf_grad(x32: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """
    Compute Kumar's ``sobel_fn``.

    Sobel/8 correlation on the mirror extension (``per_extn_im_fn`` == reflect-101);
    strength and ``atan(gv/gh)`` (0 where both are 0).
    """
    gv = cv2.filter2D(x32, -1, _KUMAR_V, borderType=cv2.BORDER_REFLECT_101)
    gh = cv2.filter2D(x32, -1, _KUMAR_H, borderType=cv2.BORDER_REFLECT_101)
    with np.errstate(divide="ignore", invalid="ignore"):
        a = np.arctan(gv / gh)  # gh == 0, gv != 0 -> +-pi/2 as in MATLAB
    a[(gv == 0) & (gh == 0)] = 0
    return np.sqrt(gh * gh + gv * gv), a


def _nabf_from(gA, aA, gB, aB, gF, aF) -> float:
    td, wt_min = 2.0, 0.001  # Lg = 1.5: weights g^1.5 = g*sqrt(g)
    nrg, kg, sg, nra, ka, sa = 0.9999, 19.0, 0.5, 0.9995, 22.0, 0.5

    def q(gs, as_):
        hi = np.maximum(gs, gF)
        ratio = np.where((gs == 0) | (gF == 0), 0, np.minimum(gs, gF) / np.where(hi > 0, hi, 1))
        orient = np.abs(np.abs(as_ - aF) - np.float32(np.pi / 2)) * np.float32(2 / np.pi)
        qg = nrg / (1 + np.exp(-kg * (ratio - sg)))
        qa = nra / (1 + np.exp(-ka * (orient - sa)))
        return np.sqrt(qg * qa)

    wA = np.where(gA >= td, gA * np.sqrt(gA), np.float32(wt_min))
    wB = np.where(gB >= td, gB * np.sqrt(gB), np.float32(wt_min))
    wsum = wA.sum(dtype=np.float64) + wB.sum(dtype=np.float64)
    na = (gF > gA) & (gF > gB)
    art = ((1 - q(gA, aA)) * wA + (1 - q(gB, aB)) * wB)[na]
    return float(art.sum(dtype=np.float64) / wsum)


def _sf_u8(f: np.ndarray) -> float:
    x = f.astype(np.float32)
    rf = np.square(np.diff(x, axis=1)).sum(dtype=np.float64)
    cf = np.square(np.diff(x, axis=0)).sum(dtype=np.float64)
    return float(math.sqrt((rf + cf) / x.size))


def _ag_u8(f: np.ndarray) -> float:
    x = f.astype(np.float32)
    h, w = x.shape
    if h < 2 or w < 2:
        return 0.0
    gy, gx = np.gradient(x)
    return float(np.sqrt((gx * gx + gy * gy) * 0.5).sum(dtype=np.float64) / ((h - 1) * (w - 1)))


def _mse(x: np.ndarray, y: np.ndarray) -> float:
    d = x.astype(np.float32) - y.astype(np.float32)
    return float(np.square(d).mean(dtype=np.float64))


# --------------------------------------------------------------------------- single metrics
def en(fused, ir=None, vis=None) -> float:
    """Entropy of the fused image (bits)."""
    return entropy(fused)


def sd(fused, ir=None, vis=None) -> float:
    """Return the standard deviation of the fused image."""
    return float(to_gray(fused).std(dtype=np.float64))


def sf(fused, ir=None, vis=None) -> float:
    """Spatial frequency of the fused image."""
    return _sf_u8(to_gray(fused))


def ag(fused, ir=None, vis=None) -> float:
    """Average gradient of the fused image."""
    return _ag_u8(to_gray(fused))


def mi(fused, ir, vis) -> float:
    """MI(F,IR) + MI(F,VIS) in bits."""
    return mutual_information(fused, ir) + mutual_information(fused, vis)


def scd(fused, ir, vis) -> float:
    """Sum of the correlations of differences."""
    f, a, b = (x.astype(np.int16) for x in _prep(fused, ir, vis))
    return correlation(f - b, a) + correlation(f - a, b)


def vif(fused, ir, vis) -> float:
    """VIFF(IR,F) + VIFF(VIS,F)."""
    f, a, b = (_centred(x) for x in _prep(fused, ir, vis))
    pf = _vif_pyramid(f)
    return _vif_from(_vif_pyramid(a), pf) + _vif_from(_vif_pyramid(b), pf)


def qabf(fused, ir, vis) -> float:
    """Xydeas-Petrovic Q^{AB/F}."""
    f, a, b = (x.astype(np.float32) for x in _prep(fused, ir, vis))
    return _qabf_from(*_qabf_grad(a), *_qabf_grad(b), *_qabf_grad(f))


def ssim(fused, ir, vis) -> float:
    """(SSIM(F,IR) + SSIM(F,VIS)) / 2."""
    f, a, b = (_centred(x) for x in _prep(fused, ir, vis))
    sf_ = _ssim_stats(f)
    return (_ssim_from(a, f, _ssim_stats(a), sf_) + _ssim_from(b, f, _ssim_stats(b), sf_)) / 2.0


def psnr(fused, ir, vis) -> float:
    """10 log10(255^2 / mean(MSE(F,IR), MSE(F,VIS)))."""
    f, a, b = _prep(fused, ir, vis)
    m = (_mse(f, a) + _mse(f, b)) / 2.0
    return 10.0 * math.log10(255.0 ** 2 / m) if m > 0 else float("inf")


def cc(fused, ir, vis) -> float:
    """(corr(F,IR) + corr(F,VIS)) / 2."""
    f, a, b = _prep(fused, ir, vis)
    return (correlation(f, a) + correlation(f, b)) / 2.0


def nabf(fused, ir, vis) -> float:
    """Kumar's modified fusion-artifact measure N^{AB/F} (lower is better)."""
    f, a, b = (x.astype(np.float32) for x in _prep(fused, ir, vis))
    return _nabf_from(*_nabf_grad(a), *_nabf_grad(b), *_nabf_grad(f))


# --------------------------------------------------------------------------- all at once
def compute_all(fused, ir, vis,
                metrics: tuple[str, ...] | list[str] | None = None) -> dict[str, float]:
    """
    All (or the named subset of) :data:`METRICS` for one frame, sharing the work.

    ``ir`` and ``vis`` are the references the fused frame is judged against: the
    inputs of the fusion, or clean frames when evaluating degraded inputs.
    """
    wanted = METRICS if metrics is None else tuple(metrics)
    unknown = set(wanted) - set(METRICS)
    if unknown:
        raise ValueError(f"unknown metrics {sorted(unknown)}; choose from {METRICS}")
    f8, a8, b8 = _prep(fused, ir, vis)
    out: dict[str, float] = {}
    need = set(wanted)
    if need & {"EN", "MI"}:
        hf = _entropy_counts(_hist(f8))
        out["EN"] = hf
        if "MI" in need:
            out["MI"] = (_mi_u8(f8, a8, hf, _entropy_counts(_hist(a8)))
                         + _mi_u8(f8, b8, hf, _entropy_counts(_hist(b8))))
    if "SD" in need:
        out["SD"] = float(f8.std(dtype=np.float64))
    if "SF" in need:
        out["SF"] = _sf_u8(f8)
    if "AG" in need:
        out["AG"] = _ag_u8(f8)
    if need & {"SCD", "CC", "PSNR"}:
        fi, ai, bi = (x.astype(np.int16) for x in (f8, a8, b8))
        if "SCD" in need:
            out["SCD"] = correlation(fi - bi, ai) + correlation(fi - ai, bi)
        if "CC" in need:
            out["CC"] = (correlation(fi, ai) + correlation(fi, bi)) / 2.0
        if "PSNR" in need:
            m = (_mse(f8, a8) + _mse(f8, b8)) / 2.0
            out["PSNR"] = 10.0 * math.log10(255.0 ** 2 / m) if m > 0 else float("inf")
    if need & {"VIF", "SSIM"}:
        fc, ac, bc = (_centred(x) for x in (f8, a8, b8))
        if "VIF" in need:
            pf = _vif_pyramid(fc)
            out["VIF"] = _vif_from(_vif_pyramid(ac), pf) + _vif_from(_vif_pyramid(bc), pf)
        if "SSIM" in need:
            sf_ = _ssim_stats(fc)
            out["SSIM"] = (_ssim_from(ac, fc, _ssim_stats(ac), sf_)
                           + _ssim_from(bc, fc, _ssim_stats(bc), sf_)) / 2.0
    if "Qabf" in need:
        fa, aa, ba = (x.astype(np.float32) for x in (f8, a8, b8))
        out["Qabf"] = _qabf_from(*_qabf_grad(aa), *_qabf_grad(ba), *_qabf_grad(fa))
    if "Nabf" in need:
        fa, aa, ba = (x.astype(np.float32) for x in (f8, a8, b8))
        out["Nabf"] = _nabf_from(*_nabf_grad(aa), *_nabf_grad(ba), *_nabf_grad(fa))
    return {m: out[m] for m in wanted}
