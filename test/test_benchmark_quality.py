"""``tvf benchmark-quality`` on a small M3SVD-layout clips folder made here: every row is
scored against the clean frames, and ``--bounds`` shows what clean inputs are worth."""

import argparse
import json

import cv2
import numpy as np
import pytest

from thermal_visible_fusion.synthetic import SyntheticScene
from thermal_visible_fusion.tools import benchmark_quality


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """Two scenes of 5 frames: ir/, vis/ clean; ir_degraded/ (noise, column stripes) and
    vis_degraded/ (Gaussian blur), as in the M3SVD degraded clips."""
    root = tmp_path_factory.mktemp("clips")
    rng = np.random.default_rng(0)
    for seed in (1, 2):
        scene = SyntheticScene(128, 96, seed=seed)
        folders = {name: root / f"s{seed}" / name
                   for name in ("ir", "vis", "ir_degraded", "vis_degraded")}
        for folder in folders.values():
            folder.mkdir(parents=True)
        stripes = rng.normal(0, 10, (1, 128))
        for i in range(5):
            thermal, bgr = scene.frame(i)
            noisy = thermal + rng.normal(0, 15, thermal.shape) + stripes
            for name, image in (("ir", thermal), ("vis", bgr),
                                ("ir_degraded", np.clip(noisy, 0, 255).astype(np.uint8)),
                                ("vis_degraded", cv2.GaussianBlur(bgr, (0, 0), 2.0))):
                assert cv2.imwrite(str(folders[name] / f"{i:04d}.png"), image)
    return root


def run(clips, tmp_path, *flags):
    parser = argparse.ArgumentParser()
    benchmark_quality.add_arguments(parser)
    out = tmp_path / "quality.json"
    args = parser.parse_args([str(clips), "--fusers", "average,max", "--json", str(out),
                              *flags])
    assert benchmark_quality.main(args) == 0
    return json.loads(out.read_text())


def test_degraded_rows_and_bounds_are_scored_against_clean_frames(clips, tmp_path, capsys):
    report = run(clips, tmp_path, "--degraded", "--bounds")
    results = report["results"]
    assert report["degraded"] and report["scenes"] == ["s1", "s2"]
    assert list(results) == ["average", "max", "bound: clean IR", "bound: clean visible",
                             "bound: clean both"]
    table = capsys.readouterr().out
    assert "| bound: clean both |" in table and "| max |" in table
    for values in results.values():
        assert {"VIF", "Qabf", "SSIM", "flowD"} <= set(values)
    # metrics compare with the clean frames: restoring either input raises them, and
    # clean inputs fused by the multi-scale rule beat every fuser of degraded ones
    both = results["bound: clean both"]
    for row in ("bound: clean IR", "bound: clean visible"):
        assert both["VIF"] > results[row]["VIF"] and both["Qabf"] > results[row]["Qabf"]
    for row in ("average", "max"):
        assert both["VIF"] > results[row]["VIF"] and both["SSIM"] > results[row]["SSIM"]


def test_clean_inputs_score_higher_than_degraded_ones(clips, tmp_path):
    clean = run(clips, tmp_path)["results"]["average"]
    degraded = run(clips, tmp_path, "--degraded")["results"]["average"]
    assert clean["VIF"] > degraded["VIF"] and clean["Qabf"] > degraded["Qabf"]


def test_bounds_need_degraded_inputs(clips, tmp_path):
    with pytest.raises(SystemExit, match="--degraded"):
        run(clips, tmp_path, "--bounds")
