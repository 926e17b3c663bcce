"""``tvf metrics`` end to end."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
import subprocess
import sys

import cv2
import numpy as np
import pytest

from thermal_visible_fusion import cli
from thermal_visible_fusion.metrics import image as M
from thermal_visible_fusion.metrics import vifb as V
from thermal_visible_fusion.tools import metrics_cli

REPO_ROOT = Path(__file__).resolve().parents[1]
NAMES = ["frame_2.png", "frame_10.png", "frame_1.png"]  # natural order: 1, 2, 10


def _frame(seed: int, shape=(48, 64), colour=False) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = cv2.GaussianBlur(rng.uniform(0, 255, shape), (0, 0), 1.5)
    x = np.clip(x, 0, 255).astype(np.uint8)
    return cv2.cvtColor(x, cv2.COLOR_GRAY2BGR) if colour else x


@pytest.fixture()
def folders(tmp_path: Path) -> dict[str, Path]:
    """ir/rgb/fused folders of three frames; fused = per-pixel max."""
    dirs = {k: tmp_path / k for k in ("ir", "rgb", "fused")}
    for d in dirs.values():
        d.mkdir()
    for k, name in enumerate(NAMES):
        ir, rgb = _frame(10 + k), _frame(20 + k, colour=True)
        cv2.imwrite(str(dirs["ir"] / name), ir)
        cv2.imwrite(str(dirs["rgb"] / name), rgb)
        cv2.imwrite(str(dirs["fused"] / name), np.maximum(ir, M.to_gray(rgb)))
    return dirs


def test_natural_sort(tmp_path):
    for name in NAMES + ["notes.txt"]:
        (tmp_path / name).write_bytes(b"")
    names = [p.name for p in metrics_cli.list_images(tmp_path, "x")]
    assert names == ["frame_1.png", "frame_2.png", "frame_10.png"]


def test_folders_standard_json(folders, tmp_path, capsys):
    out = tmp_path / "out" / "m.json"
    rc = cli.main(["metrics", "--ir", str(folders["ir"]), "--rgb", str(folders["rgb"]),
                   "--fused", str(folders["fused"]), "--json", str(out)])
    assert rc == 0
    table = capsys.readouterr().out
    assert "3 frames" in table and "Qabf" in table and "Nabf" in table
    result = json.loads(out.read_text())
    assert set(result) == {"mean", "frames"}
    assert list(result["frames"]) == ["frame_1.png", "frame_2.png", "frame_10.png"]
    assert list(result["mean"]) == list(M.METRICS)
    # Each frame is scored against the frames of the same (naturally sorted) name.
    for name, values in result["frames"].items():
        ir = cv2.imread(str(folders["ir"] / name), cv2.IMREAD_UNCHANGED)
        rgb = cv2.imread(str(folders["rgb"] / name), cv2.IMREAD_UNCHANGED)
        fused = cv2.imread(str(folders["fused"] / name), cv2.IMREAD_UNCHANGED)
        assert values == pytest.approx(M.compute_all(fused, ir, rgb))
    for metric, mean in result["mean"].items():
        assert mean == pytest.approx(np.mean([v[metric] for v in result["frames"].values()]))


def test_references_replace_the_inputs(folders, tmp_path):
    """Scoring against references equal to the fused frames: perfect similarity, PSNR null."""
    out = tmp_path / "ref.json"
    rc = cli.main(["metrics", "--ir", str(folders["ir"]), "--rgb", str(folders["rgb"]),
                   "--fused", str(folders["fused"]), "--ref-ir", str(folders["fused"]),
                   "--ref-rgb", str(folders["fused"]), "--metrics", "ssim,PSNR,cc", "--json",
                   str(out)])
    assert rc == 0
    result = json.loads(out.read_text())
    assert list(result["mean"]) == ["SSIM", "PSNR", "CC"]
    assert result["mean"]["SSIM"] == pytest.approx(1.0, abs=1e-6)
    assert result["mean"]["CC"] == pytest.approx(1.0)
    assert result["mean"]["PSNR"] is None  # infinite: written as null
    for values in result["frames"].values():
        assert values["PSNR"] is None


def test_degraded_inputs_score_against_clean_references(folders, tmp_path):
    noisy = tmp_path / "ir_noisy"
    noisy.mkdir()
    rng = np.random.default_rng(0)
    for name in NAMES:
        clean = cv2.imread(str(folders["ir"] / name), cv2.IMREAD_UNCHANGED)
        cv2.imwrite(str(noisy / name),
                    np.clip(clean + rng.normal(0, 20, clean.shape), 0, 255).astype(np.uint8))
    base = ["metrics", "--rgb", str(folders["rgb"]), "--fused", str(folders["fused"]), "--metrics",
            "SSIM"]
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    assert cli.main(base + ["--ir", str(noisy), "--json", str(a)]) == 0
    assert cli.main(base +
                    ["--ir", str(noisy), "--ref-ir", str(folders["ir"]), "--json", str(b)]) == 0
    clean_ref = json.loads(b.read_text())["mean"]["SSIM"]
    noisy_ref = json.loads(a.read_text())["mean"]["SSIM"]
    assert clean_ref > noisy_ref  # the fused frames were made from the clean IR


def test_mismatched_counts_are_a_clear_error(folders, capsys):
    (folders["fused"] / NAMES[0]).unlink()
    rc = cli.main(["metrics", "--ir", str(folders["ir"]), "--rgb", str(folders["rgb"]),
                   "--fused", str(folders["fused"])])
    assert rc == 2
    err = capsys.readouterr().err
    assert "counts differ" in err and "--fused: 2" in err and "--ir: 3" in err


def test_other_input_errors(folders, tmp_path, capsys):
    base = ["metrics", "--ir", str(folders["ir"]), "--rgb", str(folders["rgb"])]
    assert cli.main(base + ["--fused", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli.main(base + ["--fused", str(empty)]) == 2
    assert "no images" in capsys.readouterr().err
    assert cli.main(base + ["--fused", str(folders["fused"]), "--metrics", "EN,bogus"]) == 2
    assert "unknown metrics" in capsys.readouterr().err
    small = tmp_path / "small"
    small.mkdir()
    for name in NAMES:
        cv2.imwrite(str(small / name), _frame(0, (20, 30)))
    assert cli.main(base + ["--fused", str(small)]) == 2
    assert "sizes differ" in capsys.readouterr().err


def test_vifb_image_via_subprocess(shared_data, tmp_path):
    vifb = shared_data / "vifb"
    if not (vifb / "metrics.json").is_file():
        pytest.skip("VIFB data not found")
    name, method = "manWalking", "SeAFusion"  # its IR is a 1-channel JPEG
    out = tmp_path / "vifb.json"
    env = dict(os.environ,
               PYTHONPATH=str(REPO_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run(
        [sys.executable, "-m", "thermal_visible_fusion", "metrics",
         "--ir", str(vifb / "ir" / f"{name}.jpg"), "--rgb", str(vifb / "vi" / f"{name}.jpg"),
         "--fused", str(vifb / "fused" / method / f"{name}.jpg"), "--convention", "vifb", "--json",
         str(out)],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "vifb convention" in proc.stdout and "Spatial_frequency" in proc.stdout
    result = json.loads(out.read_text())
    assert list(result["mean"]) == list(V.VIFB_METRICS)
    assert list(result["frames"]) == [f"{name}.jpg"]
    expected = json.loads((vifb / "metrics.json").read_text())[method][name]
    for metric, value in result["mean"].items():
        assert value == pytest.approx(expected[metric], rel=1e-3, abs=1e-5), metric


def test_single_images_standard(folders, tmp_path):
    out = tmp_path / "one.json"
    name = NAMES[0]
    rc = cli.main(["metrics", "--ir", str(folders["ir"] / name), "--rgb",
                   str(folders["rgb"] / name),
                   "--fused", str(folders["fused"] / name), "--json", str(out)])
    assert rc == 0
    result = json.loads(out.read_text())
    assert list(result["frames"]) == [name]
    assert all(isinstance(v, float) and math.isfinite(v) for v in result["mean"].values())


def test_feacd_on_folders(folders, tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("efficientnet_lite_pytorch")
    out = tmp_path / "feacd.json"
    rc = cli.main(["metrics", "--ir", str(folders["ir"]), "--rgb", str(folders["rgb"]),
                   "--fused", str(folders["fused"]), "--metrics", "EN", "--feacd", "--json",
                   str(out)])
    assert rc == 0
    result = json.loads(out.read_text())
    frames = list(result["frames"].values())
    assert "feaCD" not in frames[0] and all("feaCD" in v for v in frames[1:])
    assert result["mean"]["feaCD"] == pytest.approx(np.mean([v["feaCD"] for v in frames[1:]]))
