"""
Tests of ``tvf benchmark-quality`` on small data made here.

M3SVD-layout clips (every row is scored against the clean frames, ``--bounds`` shows
what clean inputs are worth), mp4 pairs and frame folders (video mode: conditions,
windows, plots, JSON), a VIFB-layout folder; the degradation protocol, the floor
checks and the block-grid energy.  The shared-data tests run the real M3SVD videos
and VIFB stills briefly.
"""

import argparse
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from thermal_visible_fusion.data.degradation import DegradationConfig, VideoDegradation
from thermal_visible_fusion.data.synthetic import SyntheticScene
from thermal_visible_fusion.metrics.artefacts import block_grid_energy, block_grid_profile
from thermal_visible_fusion.tools import benchmark_quality, quality_videos
from thermal_visible_fusion.tools.quality_floors import floor_checks


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """
    Two scenes of 5 frames, clean and degraded.

    Two scenes of 5 frames: ir/, vis/ clean; ir_degraded/ (noise, column stripes) and
    vis_degraded/ (Gaussian blur), as in the M3SVD degraded clips.
    """
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


# ---------------------------------------------------------------------- videos

FRAMES = 40
# A short schedule for 40 frames: first window 0-9, steady from 20, every 3rd scored.
SHORT = ("--first", "10", "--steady-from", "20", "--every", "3")


def write_video(path: Path, frames) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30, (64, 48))
    assert writer.isOpened()
    for frame in frames:
        writer.write(frame if frame.ndim == 3 else cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR))
    writer.release()


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """Two 40-frame 64x48 mp4 pairs, ``alpha`` and ``beta``, in the M3SVD video layout."""
    root = tmp_path_factory.mktemp("videos")
    for seed, scene in ((1, "alpha"), (2, "beta")):
        frames = [SyntheticScene(64, 48, seed=seed).frame(i) for i in range(FRAMES)]
        write_video(root / f"{scene}_infrared.mp4", [t for t, _ in frames])
        write_video(root / f"{scene}_visible.mp4", [b for _, b in frames])
    (root / "notes.txt").write_text("not a video")
    return root


def run_cli(tmp_path, *argv) -> tuple[dict, Path]:
    parser = argparse.ArgumentParser()
    benchmark_quality.add_arguments(parser)
    out = tmp_path / "out"
    args = parser.parse_args([*argv, "--fusers", "average,max", "--out", str(out)])
    assert benchmark_quality.main(args) == 0
    return json.loads((out / "quality.json").read_text()), out


def test_video_folder_runs_both_conditions_with_windows_plots_and_json(videos, tmp_path, capsys):
    report, out = run_cli(tmp_path, str(videos), *SHORT)
    assert report["mode"] == "videos" and set(report["videos"]) == {"alpha", "beta"}
    expected = list(range(10)) + list(range(11, FRAMES, 3))  # all of the first window, then 1 in 3
    for video in ("alpha", "beta"):
        for condition in ("clean", "degraded"):
            result = report["results"][video][condition]
            assert result["frames"] == FRAMES and list(result["rows"]) == ["average", "max"]
            for row in result["rows"].values():
                series = row["series"]
                assert series["frame"] == expected
                assert series["flowD"][0] is None and all(v > 0 for v in series["flowD"][1:])
                assert set(row["windows"]) == {"first", "steady"}
                steady = [v for f, v in zip(series["frame"], series["VIF"]) if f >= 20]
                assert row["windows"]["steady"]["VIF"] == pytest.approx(np.mean(steady))
        # the degradation is scored against the clean frames: it costs every fuser
        for label in ("average", "max"):
            clean = report["results"][video]["clean"]["rows"][label]["windows"]["steady"]
            degraded = report["results"][video]["degraded"]["rows"][label]["windows"]["steady"]
            assert degraded["VIF"] < clean["VIF"] and degraded["Qabf"] < clean["Qabf"]
            assert degraded["flowD"] > clean["flowD"]  # per-frame noise is not motion
    # summary = mean over videos of the per-video window means
    for condition in ("clean", "degraded"):
        summary = report["summary"][condition]["steady"]["max"]["Qabf"]
        per = [report["results"][v][condition]["rows"]["max"]["windows"]["steady"]["Qabf"]
               for v in ("alpha", "beta")]
        assert summary == pytest.approx(np.mean(per))
    assert set(report["summary"]["clean"]["first"]["average"]) == {"VIF", "Qabf", "SSIM", "flowD",
                                                                   "grid"}
    markdown = (out / "quality.md").read_text()
    printed = capsys.readouterr().out
    assert markdown.strip() == printed.strip()
    for title in ("### clean", "### degraded", "first 10 frames", "steady state (frame 20 on"):
        assert title in markdown
    assert "| alpha | max |" in markdown and "Floors: nothing to check" in markdown
    for video in ("alpha", "beta"):
        for condition in ("clean", "degraded"):
            image = cv2.imread(str(out / f"{video}_{condition}.png"))
            assert image is not None and image.shape == (700, 900, 3)


def test_conditions_metrics_and_max_frames_narrow_the_run(videos, tmp_path):
    report, out = run_cli(tmp_path, str(videos), *SHORT, "--conditions", "degraded",
                          "--max-frames", "15", "--metrics", "VIF,flowD", "--scenes", "beta")
    assert list(report["results"]) == ["beta"] and list(report["results"]["beta"]) == ["degraded"]
    result = report["results"]["beta"]["degraded"]
    assert result["frames"] == 15 and result["degradation"]["vis_blur"] > 0
    row = result["rows"]["max"]
    assert set(row["series"]) == {"frame", "VIF", "flowD"}
    assert list(row["windows"]) == ["first"]  # 15 frames never reach the steady window
    assert list(report["summary"]["degraded"]) == ["first"]
    assert sorted(p.name for p in out.glob("*.png")) == ["beta_degraded.png"]


def test_explicit_pairs_of_frame_folders(tmp_path):
    scene = SyntheticScene(64, 48, seed=3)
    ir, vis = tmp_path / "gamma_ir", tmp_path / "gamma_rgb"
    ir.mkdir(), vis.mkdir()
    for i in range(12):
        thermal, bgr = scene.frame(i)
        assert cv2.imwrite(str(ir / f"{i}.png"), thermal)
        assert cv2.imwrite(str(vis / f"{i}.png"), bgr)
    report, _ = run_cli(tmp_path, "--pair", str(ir), str(vis), "--pair", str(ir), str(vis),
                        "--first", "5", "--steady-from", "8", "--conditions", "clean")
    assert list(report["results"]) == ["gamma", "gamma-2"]
    a, b = (report["results"][n]["clean"]["rows"]["average"]["series"]
            for n in ("gamma", "gamma-2"))
    assert a["frame"] == [0, 1, 2, 3, 4, 5, 8, 11] and a == b  # same input, same numbers


def test_layouts_are_told_apart(clips, videos, tmp_path):
    assert benchmark_quality.layout(clips) == "clips"
    assert benchmark_quality.layout(videos) == "videos"
    vifb = tmp_path / "vifb"
    for name in ("ir", "vi"):
        (vifb / name).mkdir(parents=True)
    (vifb / "metrics.json").write_text("{}")
    assert benchmark_quality.layout(vifb) == "vifb"
    with pytest.raises(SystemExit, match="no scene folders"):
        benchmark_quality.layout(vifb / "ir")


def test_vifb_folder_ranks_each_fuser_among_the_published_methods(tmp_path):
    folder = tmp_path / "vifb"
    for name in ("ir", "vi"):
        (folder / name).mkdir(parents=True)
    for seed, image in ((1, "street"), (2, "yard")):
        thermal, bgr = SyntheticScene(64, 48, seed=seed).frame(0)
        assert cv2.imwrite(str(folder / "ir" / f"{image}.jpg"), thermal)
        assert cv2.imwrite(str(folder / "vi" / f"{image}.jpg"), bgr)
    top = {"Qabf": 0.99, "Ssim": 2.0, "Mutinf": 20.0}  # above any fuser
    table = {"Top": {"street": top, "yard": top},
             "Zero": {"street": dict.fromkeys(top, 0.0), "yard": dict.fromkeys(top, 0.0)},
             "Partial": {"street": top}}  # lacks an image: left out
    (folder / "metrics.json").write_text(json.dumps(table))
    report, out = run_cli(tmp_path, str(folder))
    assert report["images"] == ["street", "yard"] and set(report["published"]) == {"Top", "Zero"}
    assert list(report["ours"]) == ["average", "max"]
    for label in ("average", "max"):
        assert report["ranks"][label] == {"Qabf": 2, "Ssim": 2, "Mutinf": 2}
        assert 0 < report["ours"][label]["Qabf"] < 0.99
    assert "| **max** (ours) |" in (out / "quality.md").read_text()
    assert "2/3" in (out / "quality.md").read_text()


# ---------------------------------------------------------------------- degradation

def test_degradation_is_seeded_by_seed_and_scene():
    thermal, bgr = SyntheticScene(64, 48, seed=1).frame(0)

    def degraded(scene, seed, index=0):
        return VideoDegradation(scene, seed).apply(thermal, bgr, index)

    first, again = degraded("alpha", 0), degraded("alpha", 0)
    assert all(np.array_equal(x, y) for x, y in zip(first, again))
    for other in (degraded("beta", 0), degraded("alpha", 1)):
        assert not np.array_equal(first[0], other[0]) and not np.array_equal(first[1], other[1])
    assert first[0].dtype == np.uint8 and first[1].dtype == np.uint8
    assert first[0].shape == thermal.shape and first[1].shape == bgr.shape
    # frame i's noise does not depend on which frames were degraded before it
    video = VideoDegradation("alpha", 0)
    video.apply(thermal, bgr, 7)
    assert np.array_equal(video.apply(thermal, bgr, 0)[0], first[0])
    # per-video draws stay in the documented ranges
    cfg = DegradationConfig()
    for scene in ("alpha", "beta", "gamma"):
        d = VideoDegradation(scene, 0)
        assert cfg.ir_noise[0] <= d.ir_noise <= cfg.ir_noise[1]
        assert cfg.ir_stripe[0] <= d.ir_stripe <= cfg.ir_stripe[1]
        assert cfg.vis_blur[0] <= d.vis_blur <= cfg.vis_blur[1]


def test_stripes_are_fixed_for_the_video_while_the_noise_changes():
    flat = np.full((200, 96), 128, np.uint8)
    bgr = np.full((200, 96, 3), 128, np.uint8)
    video = VideoDegradation("alpha", 0)
    frames = [video.apply(flat, bgr, i)[0].astype(np.float64) - 128 for i in range(3)]
    columns = [f.mean(axis=0) for f in frames]
    residuals = [f - c for f, c in zip(frames, columns)]
    # column offsets repeat (up to the noise averaged over 200 rows: ~1 grey level)
    assert np.abs(columns[0] - columns[1]).max() < 4 and columns[0].std() > 3
    assert np.corrcoef(columns[0], columns[2])[0, 1] > 0.9
    # the per-pixel noise is new every frame, at the drawn sigma
    assert abs(np.corrcoef(residuals[0].ravel(), residuals[1].ravel())[0, 1]) < 0.05
    assert residuals[1].std() == pytest.approx(video.ir_noise * 255, rel=0.1)
    # the visible blur is fixed for the video and has no per-frame noise
    _, bgr_frame = SyntheticScene(64, 48, seed=1).frame(0)
    assert np.array_equal(video.apply(flat[:48, :64], bgr_frame, 0)[1],
                          video.apply(flat[:48, :64], bgr_frame, 5)[1])


def test_haze_and_low_light_keep_the_other_draws():
    thermal, bgr = SyntheticScene(64, 48, seed=1).frame(0)
    plain = VideoDegradation("alpha", 0)
    dark = VideoDegradation("alpha", 0, DegradationConfig(low_light=True))
    hazy = VideoDegradation("alpha", 0, DegradationConfig(haze=True))
    draws = [(d.ir_noise, d.ir_stripe, d.vis_blur) for d in (plain, dark, hazy)]
    assert draws[0] == draws[1] == draws[2]
    assert np.array_equal(plain.apply(thermal, bgr, 3)[0], dark.apply(thermal, bgr, 3)[0])
    assert dark.apply(thermal, bgr, 3)[1].mean() < 0.5 * plain.apply(thermal, bgr, 3)[1].mean()
    hazed = hazy.apply(thermal, bgr, 3)[1].astype(np.float64)
    assert hazed.std() < plain.apply(thermal, bgr, 3)[1].std()  # haze washes the contrast out
    assert set(dark.parameters()) >= {"low_gain", "low_gamma", "low_noise"}


# ---------------------------------------------------------------------- floors, block grid

def _results(learned: dict, no_memory: dict, classic: dict) -> dict:
    return {c: {"learned": learned[c], "learned-no-memory": no_memory[c], **classic[c]}
            for c in ("clean", "degraded")}


def test_floor_checks_pass_and_fail():
    classic = {"clean": {"multiscale": {"VIF": 1.0, "Qabf": 0.7, "flowD": 4.0},
                         "max": {"VIF": 1.1, "Qabf": 0.8, "flowD": 3.0},
                         "average": {"VIF": 0.8, "Qabf": 0.5, "flowD": 2.0}},
               "degraded": {"multiscale": {"VIF": 0.2, "Qabf": 0.14, "flowD": 20.0},
                            "max": {"VIF": 0.35, "Qabf": 0.17, "flowD": 4.0},
                            "average": {"VIF": 0.3, "Qabf": 0.2, "flowD": 6.0}}}
    good = {"clean": {"VIF": 1.0, "Qabf": 0.7, "flowD": 3.5, "grid": 1.10},
            "degraded": {"VIF": 0.6, "Qabf": 0.35, "flowD": 1.5, "grid": 1.10}}
    no_memory = {"clean": {"VIF": 1.0, "Qabf": 0.7, "flowD": 3.6, "grid": 1.09},
                 "degraded": {"VIF": 0.6, "Qabf": 0.35, "flowD": 2.0, "grid": 1.09}}
    checks = floor_checks(_results(good, no_memory, classic))
    assert len(checks) == 14 and all(c.passed for c in checks)
    by_name = {c.name: c for c in checks}
    vif = by_name["degraded: learned / best non-learned (max) VIF >= needed"]
    assert vif.needed == 1.5 and vif.measured == pytest.approx(0.6 / 0.35)
    assert by_name["degraded: learned / steadiest non-learned (max) flowD <= needed"].measured \
        == pytest.approx(1.5 / 4.0)

    bad = {"clean": {**good["clean"], "Qabf": 0.6},          # 0.857 x multiscale's
           "degraded": {**good["degraded"], "flowD": 1.9, "grid": 1.2}}  # memory: -5 %, grid +10 %
    failed = {c.name for c in floor_checks(_results(bad, no_memory, classic)) if not c.passed}
    assert failed == {"clean: learned / multiscale Qabf >= needed",
                      "clean memory: learned / learned-no-memory Qabf >= needed",
                      "degraded memory: learned / learned-no-memory flowD <= needed",
                      "degraded block grid: abs(learned / learned-no-memory - 1) <= needed"}
    # without the learned rows nothing can be checked
    assert floor_checks({c: dict(classic[c]) for c in classic}) == []


def test_block_grid_energy_detects_a_4px_block_pattern():
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:96, 0:128]
    smooth = 120 + 60 * np.sin(x / 9.0) * np.cos(y / 13.0)
    textured = smooth + rng.normal(0, 6, smooth.shape)
    blocks = np.kron(rng.normal(0, 6, (24, 32)), np.ones((4, 4)))  # one offset per 4x4 block
    for base in (smooth, textured):
        clean = np.clip(base, 0, 255).astype(np.uint8)
        gridded = np.clip(base + blocks, 0, 255).astype(np.uint8)
        assert block_grid_energy(clean) == pytest.approx(1.0, abs=0.05)
        profile = block_grid_profile(gridded)
        assert profile[4] > 1.25 and profile[8] > 1.25  # 8-px seams are 4-px seams too
        assert block_grid_energy(gridded) > 1.25
        assert block_grid_energy(cv2.cvtColor(gridded, cv2.COLOR_GRAY2BGR)) == pytest.approx(
            block_grid_energy(gridded), rel=0.02)
    flat = np.full((16, 16), 100, np.uint8)
    assert block_grid_energy(flat) == 1.0


# ---------------------------------------------------------------------- shared data

def test_m3svd_videos_are_found_and_degraded_against_clean(shared_data, tmp_path):
    folder = shared_data / "m3svd" / "videos"
    found = quality_videos.find_videos(folder)
    assert [v.name for v in found] == ["0111_1716", "0113_1714", "0117_1605", "0117_1620"]
    report, _ = run_cli(tmp_path, str(folder), "--scenes", "0111_1716", "--max-frames", "4",
                        "--first", "4", "--conditions", "clean,degraded", "--metrics", "VIF,flowD")
    rows = report["results"]["0111_1716"]
    for label in ("average", "max"):
        clean = rows["clean"]["rows"][label]["windows"]["first"]
        degraded = rows["degraded"]["rows"][label]["windows"]["first"]
        assert degraded["VIF"] < clean["VIF"]


def test_vifb_ranks_our_fusers_among_the_published_methods(shared_data, tmp_path):
    folder = shared_data / "vifb"
    report, out = run_cli(tmp_path, str(folder), "--scenes", "carLight,fight")
    assert report["mode"] == "vifb" and report["images"] == ["carLight", "fight"]
    table = json.loads((folder / "metrics.json").read_text())
    assert set(report["published"]) == set(table) and len(table) == 6
    assert report["published"]["GFF"]["Qabf"] == pytest.approx(
        np.mean([table["GFF"][n]["Qabf"] for n in ("carLight", "fight")]))
    for label in ("average", "max"):
        for key in ("Qabf", "Ssim", "Mutinf"):
            value, rank = report["ours"][label][key], report["ranks"][label][key]
            above = sum(p[key] > value for p in report["published"].values())
            assert rank == above + 1 and 1 <= rank <= 7
    # the average fuser keeps much of both sources' structure (Ssim) but blurs edges (Qabf)
    assert report["ours"]["average"]["Ssim"] > 1.0 and 0 < report["ours"]["average"]["Qabf"] < 1
    assert "| **average** (ours) |" in (out / "quality.md").read_text()
