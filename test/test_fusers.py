"""
Classic fusers and the fuser registry.

Shapes, colour from RGB, warm figures lifted out of smoke/darkness, and what
``create_fuser`` does with each name.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from thermal_visible_fusion.data.synthetic import SyntheticScene
import thermal_visible_fusion.fusers as fusers
from thermal_visible_fusion.fusers import (CLASSIC_FUSERS, create_fuser, FUSER_NAMES,
                                           MultiScaleFuser)
from thermal_visible_fusion.learned import weights as learned_weights

CLASSIC = sorted(CLASSIC_FUSERS)


def ycrcb(bgr: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2YCrCb).astype(np.int32)


def luma(bgr: np.ndarray) -> np.ndarray:
    return ycrcb(bgr)[..., 0].astype(np.float64)


def random_pair(h: int, w: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 256, (h, w), dtype=np.uint8),
            rng.integers(0, 256, (h, w, 3), dtype=np.uint8))


@pytest.fixture(scope="module")
def scene() -> SyntheticScene:
    return SyntheticScene(320, 240, seed=0)


# ---------------------------------------------------------------- output format


@pytest.mark.parametrize("name", CLASSIC)
@pytest.mark.parametrize("h,w", [(240, 320), (37, 53), (288, 382), (1, 1), (480, 640)])
def test_output_is_bgr_uint8_of_the_input_size(name, h, w):
    thermal, rgb = random_pair(h, w)
    rgb_before = rgb.copy()
    thermal_before = thermal.copy()
    out = CLASSIC_FUSERS[name]().fuse(thermal, rgb)
    assert out.shape == (h, w, 3)
    assert out.dtype == np.uint8
    # Inputs are not modified in place (the node may publish/log them).
    np.testing.assert_array_equal(rgb, rgb_before)
    np.testing.assert_array_equal(thermal, thermal_before)


@pytest.mark.parametrize("name", CLASSIC)
def test_fuser_has_its_registry_name_and_a_harmless_reset(name):
    fuser = CLASSIC_FUSERS[name]()
    assert fuser.name == name
    thermal, rgb = random_pair(24, 32)
    first = fuser.fuse(thermal, rgb)
    fuser.reset()
    np.testing.assert_array_equal(fuser.fuse(thermal, rgb), first)


@pytest.mark.parametrize("name", CLASSIC)
def test_thermal_structure_reaches_the_fused_luminance(name):
    rgb = np.full((64, 96, 3), 100, np.uint8)
    thermal = np.zeros((64, 96), np.uint8)
    thermal[20:44, 30:66] = 255
    y = luma(CLASSIC_FUSERS[name]().fuse(thermal, rgb))
    inside, outside = y[26:38, 40:56].mean(), y[:8, :8].mean()
    assert inside > outside + 40


def test_multiscale_rejects_zero_levels():
    with pytest.raises(ValueError):
        MultiScaleFuser(levels=0)


# ---------------------------------------------------------------- colour from RGB


@pytest.mark.parametrize("name", CLASSIC)
def test_chroma_comes_from_rgb(name):
    h, w = 64, 96
    rgb = np.full((h, w, 3), 128, np.uint8)
    rgb[:, : w // 2] = (0, 0, 200)                        # pure red (BGR) left half
    thermal = np.tile(np.linspace(40, 220, w).astype(np.uint8), (h, 1))
    out = CLASSIC_FUSERS[name]().fuse(thermal, rgb)

    red_out = out[:, : w // 2].astype(np.int32)
    cr_out = ycrcb(out)[:, : w // 2, 1]
    cr_rgb = ycrcb(rgb)[:, : w // 2, 1]
    assert np.abs(cr_out - cr_rgb).max() <= 12              # red stays as red as it was
    assert (red_out[..., 2] > red_out[..., 1] + 100).all()
    assert (red_out[..., 2] > red_out[..., 0] + 100).all()

    # A gray RGB region stays gray however hot the thermal is: no false colour.
    gray_out = out[:, w // 2:].astype(np.int32)
    assert np.ptp(gray_out, axis=2).max() <= 2


# ---------------------------------------------------------------- hidden warm figures


@pytest.mark.parametrize("index", [0, 45, 90])
def test_multiscale_reveals_figures_hidden_in_rgb(scene, index):
    """
    Warm people hidden by smoke/darkness in RGB must stand out in the fused image.

    Visibility of a person = mean luminance change their presence causes, measured
    on their (hidden) pixels against the identical frame rendered without people.
    """
    thermal, rgb = scene.frame(index)
    thermal0, rgb0 = scene.frame(index, figures=False)
    hidden = scene.figure_mask(index) & (scene.rgb_visibility(index) < 0.4)
    assert hidden.sum() > 200, "scene has no hidden figure at this index"

    fuser = MultiScaleFuser()
    fused, fused0 = fuser.fuse(thermal, rgb), fuser.fuse(thermal0, rgb0)
    in_rgb = np.abs(luma(rgb) - luma(rgb0))[hidden].mean()
    in_fused = np.abs(luma(fused) - luma(fused0))[hidden].mean()
    assert in_rgb < 15, "precondition: figures are hard to see in RGB"
    assert in_fused > 3 * in_rgb + 10


def test_multiscale_figures_stand_out_from_their_surroundings(scene):
    index = 30
    thermal, rgb = scene.frame(index)
    mask = scene.figure_mask(index)
    ring = cv2.dilate(mask.astype(np.uint8), np.ones((15, 15), np.uint8)).astype(bool) & ~mask
    fused = MultiScaleFuser().fuse(thermal, rgb)

    def contrast(y: np.ndarray) -> float:
        return abs(y[mask].mean() - y[ring].mean())

    assert contrast(luma(fused)) > 3 * contrast(luma(rgb)) + 10


# ---------------------------------------------------------------- registry


@pytest.mark.parametrize("name", FUSER_NAMES)
def test_every_listed_fuser_name_gives_a_working_fuser(name):
    """
    What the node's ``fuser`` parameter accepts.

    Each name fuses a pair, and with the shipped weights ``auto`` and ``learned`` are
    the learned fuser, without a warning.
    """
    fuser, warning = create_fuser(name, device="cpu")
    assert warning is None
    assert fuser.name == ("learned" if name == "auto" else name)
    thermal, rgb = random_pair(48, 64)
    fused = fuser.fuse(thermal, rgb)
    assert fused.shape == (48, 64, 3) and fused.dtype == np.uint8


@pytest.mark.parametrize("name", CLASSIC)
def test_create_classic_fuser(name):
    fuser, warning = create_fuser(name)
    assert warning is None
    assert fuser.name == name


@pytest.mark.parametrize("name", ["unet", "Multiscale", "", "avg"])
def test_create_fuser_rejects_unknown_names(name):
    with pytest.raises(ValueError) as info:
        create_fuser(name)
    message = str(info.value)
    assert repr(name) in message
    for known in FUSER_NAMES:
        assert known in message


def test_auto_without_learned_weights_fuses_and_does_not_warn(monkeypatch, tmp_path, recwarn):
    # Whether or not the learned fuser's code is installed, with no weights
    # on disk "auto" must quietly give a working fuser.
    monkeypatch.setattr(learned_weights, "default_weights", lambda: None)
    fuser, warning = create_fuser("auto", device="cpu")
    assert warning is None
    assert len(recwarn) == 0
    thermal, rgb = random_pair(48, 64)
    out = fuser.fuse(thermal, rgb)
    assert out.shape == (48, 64, 3) and out.dtype == np.uint8
    assert fuser.name == "multiscale"


def test_learned_without_any_weights_falls_back_with_a_warning(monkeypatch):
    monkeypatch.setattr(learned_weights, "default_weights", lambda: None)
    fuser, warning = create_fuser("learned")
    assert fuser.name == fusers.FALLBACK_FUSER
    assert warning and "weights" in warning


def test_auto_uses_the_shipped_weights_when_they_load(monkeypatch, request):
    """
    The ``auto`` fuser is the learned one when the package has weights.

    With weights in the package, ``auto`` is the learned fuser (whether the shipped
    file itself loads is test_shipped_weights' business).
    """
    pytest.importorskip("torch")
    weights = request.getfixturevalue("fresh_weights")
    monkeypatch.setattr(learned_weights, "default_weights", lambda: weights)
    fuser, warning = create_fuser("auto", device="cpu")
    assert warning is None and fuser.name == "learned"
    assert fuser.weights == weights
    thermal, rgb = random_pair(48, 64)
    assert fuser.fuse(thermal, rgb).shape == (48, 64, 3)


@pytest.mark.parametrize("name", ["auto", "learned"])
def test_shipped_weights_that_do_not_load_fall_back_naming_the_file(monkeypatch, tmp_path,
                                                                    name):
    """
    Weights of another network version in the package (a stale install).

    The node keeps fusing with the fallback and says which file and why.
    """
    torch = pytest.importorskip("torch")
    stale = tmp_path / "streaming_fusion.pt"
    torch.save({"format": "tvf-streaming-fusion", "version": 1, "config": {},
                "state_dict": {}}, stale)
    monkeypatch.setattr(learned_weights, "default_weights", lambda: stale)
    fuser, warning = create_fuser(name, device="cpu")
    assert fuser.name == fusers.FALLBACK_FUSER
    assert warning and str(stale) in warning and "version" in warning


def test_learned_with_missing_weights_falls_back_naming_the_file(tmp_path):
    pytest.importorskip("thermal_visible_fusion.fusers.learned")
    missing = tmp_path / "no_such_weights.pt"
    fuser, warning = create_fuser("learned", weights=str(missing), device="cpu")
    assert fuser.name == fusers.FALLBACK_FUSER
    assert warning and missing.name in warning
    assert fusers.FALLBACK_FUSER in warning
    thermal, rgb = random_pair(48, 64)
    assert fuser.fuse(thermal, rgb).shape == (48, 64, 3)


def test_auto_with_missing_explicit_weights_warns(tmp_path):
    pytest.importorskip("thermal_visible_fusion.fusers.learned")
    missing = tmp_path / "no_such_weights.pt"
    fuser, warning = create_fuser("auto", weights=str(missing), device="cpu")
    assert fuser.name == fusers.FALLBACK_FUSER
    assert warning and missing.name in warning
