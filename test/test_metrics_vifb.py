"""VIFB-compatible metrics against the VIFB MATLAB toolbox's own values."""

from __future__ import annotations

import json
import math

import cv2
import numpy as np
import pytest

from thermal_visible_fusion.metrics import vifb as V

REL = 1e-3      # reference values carry ~5 significant figures
ABS = 1e-5      # for values near 0


@pytest.fixture(scope="module")
def vifb_dir(shared_data):
    path = shared_data / "vifb"
    if not (path / "metrics.json").is_file():
        pytest.skip("VIFB data not found")
    return path


@pytest.fixture(scope="module")
def reference(vifb_dir) -> dict:
    return json.loads((vifb_dir / "metrics.json").read_text())


@pytest.fixture(scope="module")
def computed(vifb_dir, reference) -> dict:
    """compute_vifb for every method and image, one image pair at a time (sources read once)."""
    names = sorted({name for per_method in reference.values() for name in per_method})
    out: dict = {method: {} for method in reference}
    for name in names:
        ir = V.read_image(vifb_dir / "ir" / f"{name}.jpg")
        vis = V.read_image(vifb_dir / "vi" / f"{name}.jpg")
        for method, per_image in reference.items():
            if name in per_image:
                fused = V.read_image(vifb_dir / "fused" / method / f"{name}.jpg")
                out[method][name] = V.compute_vifb(fused, ir, vis)
    return out


def test_reference_covers_all_metrics(reference):
    assert len(reference) == 6
    for method, per_image in reference.items():
        assert len(per_image) == 21, method
        for values in per_image.values():
            assert set(V.VIFB_METRICS) <= set(values)


@pytest.mark.parametrize("method", ["ADF", "CNN", "GFF", "MSVD", "SeAFusion", "U2Fusion"])
def test_matches_vifb_toolbox(method, reference, computed):
    """Every image x each of the 11 metrics within 1e-3 relative of the toolbox's value."""
    if method not in reference:
        pytest.skip(f"{method} not in metrics.json")
    failures, worst, checks = [], 0.0, 0
    for name, expected in sorted(reference[method].items()):
        got = computed[method][name]
        assert list(got) == list(V.VIFB_METRICS)
        for metric in V.VIFB_METRICS:
            want = expected[metric]
            err = abs(got[metric] - want)
            checks += 1
            if abs(want) > ABS:
                worst = max(worst, err / abs(want))
            if not err <= max(REL * abs(want), ABS):
                failures.append(f"{name}/{metric}: got {got[metric]:.6g}, VIFB {want:.6g}")
    assert checks == 21 * len(V.VIFB_METRICS)
    assert not failures, (f"{len(failures)}/{checks} off by > {REL:g} (worst rel {worst:.2e}):\n"
                          + "\n".join(failures))


def test_single_metric_functions_match_compute_vifb(vifb_dir, computed):
    name = "carLight"
    ir = V.read_image(vifb_dir / "ir" / f"{name}.jpg")
    vis = V.read_image(vifb_dir / "vi" / f"{name}.jpg")
    fused = V.read_image(vifb_dir / "fused" / "ADF" / f"{name}.jpg")
    funcs = {"Entropy": V.entropy, "Mutinf": V.mutinf, "Variance": V.variance,
             "Avg_gradient": V.avg_gradient,
             "Spatial_frequency": V.spatial_frequency, "Edge_intensity": V.edge_intensity,
             "Qabf": V.qabf,
             "Ssim": V.ssim, "Psnr": V.psnr, "Rmse": V.rmse, "Cross_entropy": V.cross_entropy}
    for metric, fn in funcs.items():
        assert fn(fused, ir, vis) == pytest.approx(computed["ADF"][name][metric],
                                                   rel=1e-12), metric
    # paths work too
    by_path = V.compute_vifb(vifb_dir / "fused" / "ADF" / f"{name}.jpg",
                             vifb_dir / "ir" / f"{name}.jpg",
                             vifb_dir / "vi" / f"{name}.jpg")
    assert by_path == pytest.approx(computed["ADF"][name], rel=1e-12)


# ------------------------------------------------------------- data-free checks of the quirks
def _rgb_to_bgr(rgb: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(rgb[..., ::-1])


def test_spatial_frequency_runs_across_channel_seams():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (5, 4, 3)).astype(np.float64)
    m2 = np.concatenate([rgb[..., 0], rgb[..., 1], rgb[..., 2]], axis=1)  # MATLAB 2-D view
    rf = sum((m2[i, j] - m2[i, j - 1]) ** 2 for i in range(5) for j in range(1, 12)) / m2.size
    cf = sum((m2[i, j] - m2[i - 1, j]) ** 2 for j in range(12) for i in range(1, 5)) / m2.size
    got = V.spatial_frequency(_rgb_to_bgr(rgb.astype(np.uint8)))
    assert got == pytest.approx(math.sqrt(rf + cf), rel=1e-12)


def test_rmse_and_psnr_definitions():
    rng = np.random.default_rng(1)
    f, a, b = (rng.integers(0, 256, (6, 7)).astype(np.uint8) for _ in range(3))

    def vifb_mse(x, y):  # sqrt of the *sum* of squares, over the pixel count
        return math.sqrt(((x.astype(float) - y) ** 2).sum()) / x.size

    mes = (vifb_mse(b, f) + vifb_mse(a, f)) / 2
    assert V.rmse(f, a, b) == pytest.approx(mes, rel=1e-12)
    assert V.psnr(f, a, b) == pytest.approx(20 * math.log10(255 / math.sqrt(mes)), rel=1e-12)


def test_entropy_and_cross_entropy_definitions():
    x = np.repeat(np.arange(4, dtype=np.uint8) * 60, 25).reshape(10, 10)  # 4 equal bins
    assert V.entropy(x) == pytest.approx(2.0)
    assert V.cross_entropy(x, x, x) == pytest.approx(0.0, abs=1e-15)
    y = np.where(x < 100, 0, 255).astype(np.uint8)  # only 0 and 255 occur
    # sum over bins where both are present: bin 0 (p=0.25 vs 0.5) and nothing else
    assert V.cross_entropy(y, x, x) == pytest.approx(0.25 * math.log2(0.25 / 0.5))


def test_mutinf_is_natural_log_on_minmax_normalised_levels():
    rng = np.random.default_rng(2)
    a = rng.integers(0, 256, (50, 60)).astype(np.uint8)
    # min-max normalisation undoes the affine map up to rounding
    scaled = (a // 2 + 10).astype(np.uint8)

    def h_nats(x):
        p = np.bincount(x.ravel()) / x.size
        return -(p[p > 0] * np.log(p[p > 0])).sum()

    # MI(F,VI) + MI(F,IR) with F = VI = IR is twice the entropy, in nats.
    assert V.mutinf(a, a, a) == pytest.approx(2 * h_nats(a), rel=1e-12)
    assert V.mutinf(scaled, scaled, scaled) == pytest.approx(2 * h_nats(scaled), rel=1e-12)
    # a -> scaled merges pairs
    assert V.mutinf(scaled, a, a) == pytest.approx(2 * h_nats(scaled), rel=1e-12)


def test_channel_handling():
    rng = np.random.default_rng(3)
    fused = rng.integers(0, 256, (30, 40, 3)).astype(np.uint8)
    vis = rng.integers(0, 256, (30, 40, 3)).astype(np.uint8)
    ir_gray = rng.integers(0, 256, (30, 40)).astype(np.uint8)
    ir_rgb = cv2.cvtColor(ir_gray, cv2.COLOR_GRAY2BGR)
    # A 1-channel IR is used for every channel: same as replicating it.
    assert V.compute_vifb(fused, ir_gray, vis) == pytest.approx(V.compute_vifb(fused, ir_rgb, vis),
                                                                rel=1e-12)
    # Colour metrics are per-channel means.
    per_channel = [V.compute_vifb(fused[..., k], ir_gray, vis[..., k]) for k in range(3)]
    whole = V.compute_vifb(fused, ir_gray, vis)
    for metric in ("Entropy", "Mutinf", "Variance", "Avg_gradient", "Edge_intensity", "Qabf",
                   "Ssim",
                   "Psnr", "Rmse", "Cross_entropy"):
        assert whole[metric] == pytest.approx(np.mean([r[metric] for r in per_channel]),
                                              rel=1e-9), metric
    # A gray fused image judges the sources through MATLAB rgb2gray.
    gray = V.compute_vifb(fused[..., 1], ir_gray, vis)
    assert np.isfinite(list(gray.values())).all()
    with pytest.raises(ValueError):
        V.compute_vifb(fused[:-1], ir_gray, vis)
