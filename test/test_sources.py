"""Reading thermal/RGB pairs from folders and videos; side-by-side output."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from thermal_visible_fusion.data.sources import (FramePair, list_frames, open_pair,
                                                 SideBySideWriter, tile)

H, W = 12, 16


def _thermal(i: int, dtype=np.uint8) -> np.ndarray:
    img = np.full((H, W), 10 * i + 5, np.uint16 if dtype == np.uint16 else np.uint8)
    img[:, : W // 2] += 3
    if dtype == np.uint16:
        img = img * 100 + 7000
    return img.astype(dtype)


def _rgb(i: int) -> np.ndarray:
    img = np.zeros((H, W, 3), np.uint8)
    img[:] = (10 * i, 100, 200 - 10 * i)
    return img


def _folder(path: Path, images: list[np.ndarray], names: list[str]) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    for img, name in zip(images, names):
        assert cv2.imwrite(str(path / name), img)
    return path


def _video(path: Path, frames: list[np.ndarray], fps: float = 15.0) -> Path:
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    assert writer.isOpened()
    for f in frames:
        writer.write(f if f.ndim == 3 else cv2.cvtColor(f, cv2.COLOR_GRAY2BGR))
    writer.release()
    return path


def test_list_frames_natural_sort(tmp_path):
    names = ["10.png", "2.png", "1.png", "frame_9.jpg", "frame_10.JPG", "3.TIFF", "x.bmp"]
    _folder(tmp_path, [_rgb(0)] * len(names), names)
    (tmp_path / "notes.txt").write_text("not a frame")
    (tmp_path / "sub.png").mkdir()
    got = [p.name for p in list_frames(tmp_path)]
    assert got == ["1.png", "2.png", "3.TIFF", "10.png", "frame_9.jpg", "frame_10.JPG", "x.bmp"]


def test_list_frames_errors(tmp_path):
    assert list_frames(tmp_path) == []
    with pytest.raises(FileNotFoundError, match="nope"):
        list_frames(tmp_path / "nope")
    (tmp_path / "f.png").write_bytes(b"")
    with pytest.raises(NotADirectoryError):
        list_frames(tmp_path / "f.png")


def test_folder_pair(tmp_path):
    ir = _folder(tmp_path / "ir", [_thermal(i) for i in range(3)],
                 ["0001.png", "0002.png", "0010.png"])
    # One extra RGB frame: the pair count is the shorter stream.
    vis = _folder(tmp_path / "vis", [_rgb(i) for i in range(4)],
                  ["0001.png", "0002.png", "0010.png", "0011.png"])
    with open_pair(ir, vis) as src:
        assert len(src) == 3
        assert src.fps is None
        pairs = list(src)
        assert [p.name for p in pairs] == ["0001", "0002", "0010"]
        assert [p.index for p in pairs] == [0, 1, 2]
        for i, p in enumerate(pairs):
            assert isinstance(p, FramePair)
            assert p.thermal.shape == (H, W) and p.thermal.dtype == np.uint8
            assert p.rgb.shape == (H, W, 3) and p.rgb.dtype == np.uint8
            np.testing.assert_array_equal(p.thermal, _thermal(i))
            np.testing.assert_array_equal(p.rgb, _rgb(i))
        # Iterating again starts over.
        assert [p.name for p in src] == ["0001", "0002", "0010"]


def test_folder_thermal_colour_and_16bit(tmp_path):
    colour = [cv2.cvtColor(_thermal(i), cv2.COLOR_GRAY2BGR) for i in range(2)]
    ir8 = _folder(tmp_path / "ir8", colour, ["a.png", "b.png"])
    ir16 = _folder(tmp_path / "ir16", [_thermal(i, np.uint16) for i in range(2)],
                   ["a.png", "b.png"])
    gray = [cv2.cvtColor(_rgb(i), cv2.COLOR_BGR2GRAY) for i in range(2)]
    vis = _folder(tmp_path / "vis", gray, ["a.png", "b.png"])          # grey RGB files
    first = next(iter(open_pair(ir8, vis)))
    assert first.thermal.shape == (H, W) and first.thermal.dtype == np.uint8
    np.testing.assert_array_equal(first.thermal, _thermal(0))
    assert first.rgb.shape == (H, W, 3)
    first = next(iter(open_pair(ir16, vis)))
    assert first.thermal.dtype == np.uint16
    np.testing.assert_array_equal(first.thermal, _thermal(0, np.uint16))


def test_video_pair_round_trip(tmp_path):
    n = 8
    ir = _video(tmp_path / "ir.mp4", [np.full((48, 64), 30 * i, np.uint8) for i in range(n)])
    vis = _video(tmp_path / "vis.mp4",
                 [np.full((48, 64, 3), (20 * i, 100, 200), np.uint8) for i in range(n)])
    with open_pair(ir, vis) as src:
        assert len(src) == n
        assert src.fps == pytest.approx(15.0)
        pairs = list(src)
    assert len(pairs) == n
    assert [p.name for p in pairs[:2]] == ["0000", "0001"]
    for i, p in enumerate(pairs):
        assert p.thermal.shape == (48, 64) and p.thermal.dtype == np.uint8
        assert p.rgb.shape == (48, 64, 3) and p.rgb.dtype == np.uint8
        assert abs(float(p.thermal.mean()) - 30 * i) < 6              # lossy codec
        assert np.abs(p.rgb.reshape(-1, 3).mean(0) - (20 * i, 100, 200)).max() < 8


def test_video_and_folder_mixed(tmp_path):
    ir = _video(tmp_path / "ir.mp4", [np.full((H * 4, W * 4), 50, np.uint8)] * 5)
    vis = _folder(tmp_path / "vis", [_rgb(i) for i in range(3)], ["f1.png", "f2.png", "f3.png"])
    with open_pair(ir, vis) as src:
        assert len(src) == 3 and src.fps == pytest.approx(15.0)
        assert [p.name for p in src] == ["f1", "f2", "f3"]


def test_errors_name_the_path(tmp_path):
    vis = _folder(tmp_path / "vis", [_rgb(0)], ["0.png"])
    with pytest.raises(FileNotFoundError, match="missing_ir"):
        open_pair(tmp_path / "missing_ir", vis)
    with pytest.raises(FileNotFoundError, match="missing_vis"):
        open_pair(vis, tmp_path / "missing_vis")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="empty"):
        open_pair(empty, vis)
    bad = tmp_path / "broken.mp4"
    bad.write_text("not a video")
    with pytest.raises(ValueError, match="broken.mp4"):
        open_pair(bad, vis)
    corrupt = _folder(tmp_path / "corrupt", [_rgb(0)], ["0.png"])
    (corrupt / "1.png").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="1.png"):
        list(open_pair(corrupt, _folder(tmp_path / "vis2", [_rgb(0)] * 2, ["0.png", "1.png"])))


def test_tile_sizes_and_labels():
    thermal = np.full((30, 40), 100, np.uint8)
    rgb = np.zeros((60, 80, 3), np.uint8)
    fused = np.zeros((48, 64, 3), np.uint8)
    out = tile(thermal, rgb, fused)
    assert out.shape == (48, 3 * 64, 3) and out.dtype == np.uint8
    assert (out[:, :64] != 100).any()                       # label drawn on the thermal panel
    assert fused.max() == 0                                 # inputs untouched
    plain = tile(thermal, rgb, fused, labels=False)
    assert (plain[:, :64] == 100).all() and (plain[:, 64:] == 0).all()
    t16 = np.linspace(7000, 9000, 48 * 64).reshape(48, 64).astype(np.uint16)
    out16 = tile(t16, rgb, fused[..., 0], labels=False)     # 16-bit thermal, grey fused
    assert out16.shape == (48, 192, 3)
    assert out16[:, :64].min() == 0 and out16[:, :64].max() == 255


def test_side_by_side_writer_mp4(tmp_path):
    out = tmp_path / "out" / "run.mp4"
    with SideBySideWriter(out, fps=10) as writer:
        for i in range(3):
            writer.write(_thermal(i), _rgb(i), _rgb(i))
    assert not writer.fallback and writer.path == out and writer.frames_written == 3
    cap = cv2.VideoCapture(str(out))
    try:
        assert cap.isOpened()
        ok, frame = cap.read()
        assert ok and frame.shape == (H, 3 * W, 3)
        assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 3
    finally:
        cap.release()


def test_side_by_side_writer_png_fallback(tmp_path):
    out = tmp_path / "run.unknownext"               # no video backend takes this
    with pytest.warns(RuntimeWarning, match="PNG"):
        with SideBySideWriter(out, fps=10) as writer:
            writer.write(_thermal(0), _rgb(0), _rgb(0))
            writer.write(_thermal(1), _rgb(1), _rgb(1))
    assert writer.fallback and writer.path == tmp_path / "run"
    files = list_frames(writer.path)
    assert [p.name for p in files] == ["000000.png", "000001.png"]
    assert cv2.imread(str(files[0])).shape == (H, 3 * W, 3)


# ---------------------------------------------------------------------- real data


def test_m3svd_videos(shared_data):
    videos = shared_data / "m3svd" / "videos"
    with open_pair(videos / "0111_1716_infrared.mp4", videos / "0111_1716_visible.mp4") as src:
        assert len(src) == 151
        assert src.fps == pytest.approx(30.0)
        for pair in src:                            # only the first few: decoding is slow
            assert pair.thermal.shape == (480, 640) and pair.thermal.dtype == np.uint8
            assert pair.rgb.shape == (480, 640, 3) and pair.rgb.dtype == np.uint8
            assert pair.name == f"{pair.index:04d}"
            if pair.index == 2:
                break


def test_m3svd_clip_folders(shared_data):
    clips = sorted(p for p in (shared_data / "m3svd" / "clips").iterdir() if p.is_dir())
    assert clips
    with open_pair(clips[0] / "ir", clips[0] / "vis") as src:
        assert len(src) == 20 and src.fps is None
        pair = next(iter(src))
        assert pair.name == "0000"
        assert pair.thermal.shape == (480, 640) and pair.thermal.dtype == np.uint8
        assert pair.rgb.shape == (480, 640, 3)
